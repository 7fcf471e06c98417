"""A tiny Functions app for the dev host's tests: each function appends what it received to
`$RECORD_DIR/<function>.jsonl`, so tests can wait on the file instead of sleeping."""

import asyncio
import json
import os
import threading
import time

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_sdk

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_lock = threading.Lock()


def record(function: str, **fields) -> None:
    line = json.dumps({"at": time.time(), **fields}, default=str)
    with _lock, open(os.path.join(os.environ["RECORD_DIR"], f"{function}.jsonl"), "a") as out:
        out.write(line + "\n")


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%OK_QUEUE%", connection="ServiceBusConnection")
def sb_echo(msg: func.ServiceBusMessage, context: func.Context) -> None:
    record("sb_echo", body=msg.get_body().decode(), message_id=msg.message_id, delivery_count=msg.delivery_count,
           content_type=msg.content_type, correlation_id=msg.correlation_id, subject=msg.subject,
           properties=msg.application_properties, enqueued=msg.enqueued_time_utc.isoformat(),
           sequence_number=msg.sequence_number, function_name=context.function_name,
           invocation_id=context.invocation_id, is_message=isinstance(msg, func.ServiceBusMessage))


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%FAIL_QUEUE%", connection="ServiceBusConnection")
async def sb_fail(msg: func.ServiceBusMessage) -> None:
    record("sb_fail", message_id=msg.message_id, delivery_count=msg.delivery_count)
    raise RuntimeError("this function always fails")


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%SLOW_QUEUE%", connection="ServiceBusConnection")
def sb_slow(msg: func.ServiceBusMessage) -> None:
    started = time.time()
    time.sleep(float(os.environ.get("SLOW_SECONDS", "2")))  # longer than the queue's lock duration
    record("sb_slow", message_id=msg.message_id, delivery_count=msg.delivery_count, start=started, end=time.time())


@app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", use_monitor=True)
def tick(timer: func.TimerRequest) -> None:
    started = time.time()
    time.sleep(float(os.environ.get("TICK_SECONDS", "1.2")))  # overruns the next occurrence on purpose
    record("tick", past_due=timer.past_due, status=timer.schedule_status, start=started, end=time.time())


@app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
def hourly(timer: func.TimerRequest) -> None:
    record("hourly", past_due=timer.past_due, status=timer.schedule_status)


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
async def on_startup(timer: func.TimerRequest) -> None:
    await asyncio.sleep(0)
    record("on_startup", past_due=timer.past_due)


@app.blob_trigger(arg_name="blob", path="%BLOB_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def blob_seen(blob: func.InputStream) -> None:
    fields = {"name": blob.name, "length": blob.length, "uri": blob.uri, "etag": blob.blob_properties["ETag"]}
    if "read" in blob.name:
        fields["content"] = blob.read().decode()
    fields["loaded"] = getattr(blob, "loaded", True)
    record("blob_seen", **fields)
    if "fail" in blob.name:
        raise RuntimeError(f"cannot handle {blob.name}")


@app.blob_trigger(arg_name="client", path="%BLOB_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def blob_client_seen(client: blob_sdk.BlobClient) -> None:
    # The SDK-type binding: a real azure-storage-blob client, the content left for the function to fetch.
    record("blob_client_seen", type=f"{type(client).__module__}.{type(client).__name__}",
           container=client.container_name, name=client.blob_name,
           size=client.get_blob_properties().size)


@app.blob_trigger(arg_name="blob", path="%EVENT_CONTAINER%/{job}/manifest.json", connection="AzureWebJobsStorage",
                  source=func.BlobSource.EVENT_GRID)
def blob_event_seen(blob: func.InputStream) -> None:
    # Event Grid source: invoked from BlobCreated events (and the start-up catch-up scan), never by polling.
    record("blob_event_seen", name=blob.name, etag=blob.blob_properties["ETag"], length=blob.length)
    if "fail" in blob.name:
        raise RuntimeError(f"cannot handle {blob.name}")


@app.route(route="items/{id:int}/{name?}", methods=["GET", "POST"])
def http_items(req: func.HttpRequest) -> func.HttpResponse:
    if req.params.get("boom"):
        raise ValueError("asked to fail")
    payload = {"method": req.method, "route": dict(req.route_params), "query": dict(req.params),
               "body": req.get_body().decode(), "header": req.headers.get("x-test"), "url": req.url}
    return func.HttpResponse(json.dumps(payload), status_code=201 if req.method == "POST" else 200,
                             mimetype="application/json")


@app.timer_trigger(schedule="*/2 * * * *", arg_name="timer", use_monitor=True)
def five_field(timer: func.TimerRequest) -> None:
    # Classic five-field cron: minute first, so it fires at second 0.
    record("five_field", past_due=timer.past_due)


@app.route(route="HttpGet")
def http_any(req: func.HttpRequest) -> func.HttpResponse:
    # No `methods`: every method, HEAD included, as the host serves it.
    return func.HttpResponse(f"{req.method} {req.route_params}", headers={"X-Method": req.method})


@app.route(route="bind/{name}", methods=["POST"])
@app.blob_input(arg_name="source", path="%BLOB_CONTAINER%/in/{name}", connection="AzureWebJobsStorage")
@app.blob_output(arg_name="copy", path="%BLOB_CONTAINER%/out/{name}", connection="AzureWebJobsStorage")
@app.service_bus_queue_output(arg_name="note", queue_name="%OUT_QUEUE%", connection="ServiceBusConnection")
@app.queue_output(arg_name="task", queue_name="%STORAGE_QUEUE%", connection="AzureWebJobsStorage")
def http_bindings(req: func.HttpRequest, source: func.InputStream, copy: func.Out[bytes],
                  note: func.Out[str], task: func.Out[str]) -> func.HttpResponse:
    # Blob in (None when missing), blob out, Service Bus out and queue out, with binding expressions.
    if source is None:
        return func.HttpResponse("no such blob", status_code=404)
    content = source.read()
    copy.set(content.upper())
    note.set(json.dumps({"copied": req.route_params["name"], "by": req.get_body().decode()}))
    task.set(f"copied {req.route_params['name']}")
    record("http_bindings", stream=isinstance(source, func.InputStream), name=source.name, length=len(content))
    return func.HttpResponse(content, status_code=200)


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%FORWARD_QUEUE%", connection="ServiceBusConnection")
@app.blob_input(arg_name="manifest", path="%BLOB_CONTAINER%/jobs/{jobId}.json", connection="AzureWebJobsStorage",
                data_type=func.DataType.STRING)
@app.queue_output(arg_name="$return", queue_name="%STORAGE_QUEUE%", connection="AzureWebJobsStorage")
async def sb_forward(msg: func.ServiceBusMessage, manifest: str) -> str:
    # {jobId} comes from the message's JSON body; the return value goes to the storage queue.
    record("sb_forward", type=type(manifest).__name__, manifest=manifest)
    if "fail" in manifest:
        raise RuntimeError("asked to fail: nothing may be written")
    return f"forwarded {json.loads(manifest)['job']}"


@app.route(route="publish", methods=["POST"])
@app.service_bus_topic_output(arg_name="event", topic_name="%EVENTS_TOPIC%", connection="ServiceBusConnection")
def http_publish(req: func.HttpRequest, event: func.Out[str]) -> func.HttpResponse:
    event.set(req.get_body().decode())
    return func.HttpResponse("published", status_code=202)


@app.service_bus_topic_trigger(arg_name="msg", topic_name="%EVENTS_TOPIC%", subscription_name="audit",
                               connection="ServiceBusConnection")
def sb_audit(msg: func.ServiceBusMessage) -> None:
    record("sb_audit", body=msg.get_body().decode(), delivery_count=msg.delivery_count,
           sequence_number=msg.sequence_number)
