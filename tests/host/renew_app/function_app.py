"""A Functions app whose invocations outlive their message's lock, four at a time (host.json): only
the host's lock renewal keeps each message from being delivered again. Records go to $RECORD_DIR."""

import json
import os
import threading
import time

import azure.functions as func

app = func.FunctionApp()
_lock = threading.Lock()


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%RENEW_QUEUE%", connection="ServiceBusConnection")
def outlives_lock(msg: func.ServiceBusMessage) -> None:
    started = time.time()
    time.sleep(float(os.environ["WORK_SECONDS"]))
    line = json.dumps({"message_id": msg.message_id, "delivery_count": msg.delivery_count,
                       "start": started, "end": time.time()})
    with _lock, open(os.path.join(os.environ["RECORD_DIR"], "outlives_lock.jsonl"), "a") as out:
        out.write(line + "\n")
