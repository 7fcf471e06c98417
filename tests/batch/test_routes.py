"""Pool resize and node removal, autoscale at fixed counts, low-priority nodes, node counts, images, usage,
service logs, job disable/enable, task reactivate and update: through the azure-batch SDK, as Batch answers."""

from __future__ import annotations

import json

import azure.batch.models as m
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from tests.batch.jobs import bash, create_job, terminate, wait_job_state, wait_tasks_done
from tests.batch.test_api import detail, raw_request
from tests.waiting import wait_until


def resize(client, pool_id: str, dedicated: int, low: int = 0, option: str | None = None):
    client.begin_resize_pool(pool_id, m.BatchPoolResizeOptions(
        target_dedicated_nodes=dedicated, target_low_priority_nodes=low, node_deallocation_option=option),
        polling_interval=0.1).result()
    return client.get_pool(pool_id)


def gated(gate) -> str:
    return bash(f"while [ ! -e {gate} ]; do sleep 0.05; done")


def test_resize_adds_and_removes_dedicated_and_low_priority_nodes(batch_client, make_pool):
    pool_id = make_pool(1)
    pool = resize(batch_client, pool_id, 2, 1)
    assert (pool.allocation_state, pool.current_dedicated_nodes, pool.current_low_priority_nodes) == ("steady", 2, 1)
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (2, 1)
    nodes = list(batch_client.list_nodes(pool_id))
    assert sorted(n.is_dedicated for n in nodes) == [False, True, True]
    assert [n.id[-2:] for n in nodes if not n.is_dedicated] == ["_p"]
    (counts,) = [c for c in batch_client.list_pool_node_counts() if c.pool_id == pool_id]
    assert (counts.dedicated.idle, counts.dedicated.total) == (2, 2)
    assert (counts.low_priority.idle, counts.low_priority.total) == (1, 1)
    pool = resize(batch_client, pool_id, 1, 0)
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (1, 0)
    assert len(list(batch_client.list_nodes(pool_id))) == 1


def test_shrinking_requeues_running_tasks_or_waits_for_them(batch_client, make_pool, job_id, scratch):
    pool_id = make_pool(2)
    gate = scratch / "gate"
    create_job(batch_client, job_id, pool_id)
    batch_client.create_tasks(job_id, [m.BatchTaskCreateOptions(id=f"t{i}", command_line=gated(gate))
                                       for i in range(2)])
    wait_until(lambda: batch_client.get_job_task_counts(job_id).task_counts.running == 2, what="both running")
    resize(batch_client, pool_id, 1, option="requeue")
    counts = batch_client.get_job_task_counts(job_id).task_counts
    assert (counts.running, counts.active) == (1, 1)
    assert sorted(t.execution_info.requeue_count for t in batch_client.list_tasks(job_id)) == [0, 1]
    poller = batch_client.begin_resize_pool(pool_id, m.BatchPoolResizeOptions(
        target_dedicated_nodes=0, node_deallocation_option="taskcompletion"), polling_interval=0.1)
    (node,) = wait_until(lambda: (ns := list(batch_client.list_nodes(pool_id))) and ns[0].state == "leavingpool"
                         and ns, what="node leaving once its task completes")
    assert node.running_tasks_count == 1
    gate.touch()
    poller.result()
    assert batch_client.get_pool(pool_id).current_dedicated_nodes == 0
    counts = batch_client.get_job_task_counts(job_id).task_counts
    assert (counts.succeeded, counts.active) == (1, 1), "the running task finished; the queued one waits"
    terminate(batch_client, job_id)


def test_remove_nodes_takes_the_named_nodes(batch_client, make_pool):
    pool_id = make_pool(3)
    victim = sorted(n.id for n in batch_client.list_nodes(pool_id))[1]
    batch_client.begin_remove_nodes(pool_id, m.BatchNodeRemoveOptions(node_ids=[victim.upper()]),
                                    polling_interval=0.1).result()
    pool = batch_client.get_pool(pool_id)
    assert (pool.target_dedicated_nodes, pool.current_dedicated_nodes) == (2, 2)
    assert victim not in {n.id for n in batch_client.list_nodes(pool_id)}
    with pytest.raises(ResourceNotFoundError):
        batch_client.begin_remove_nodes(pool_id, m.BatchNodeRemoveOptions(node_ids=["tvmps_nosuchnode"]),
                                        polling_interval=0.1).result()


def test_autoscale_with_fixed_counts_and_anything_else_refused(batch_emulator, batch_client, make_pool):
    pool_id = make_pool(0, enable_auto_scale=True,
                        auto_scale_formula="$TargetDedicatedNodes = 2; $TargetLowPriorityNodes = 1;")
    pool = batch_client.get_pool(pool_id)
    assert (pool.enable_auto_scale, pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (True, 2, 1)
    assert pool.auto_scale_run.results == "$TargetDedicatedNodes=2;$TargetLowPriorityNodes=1"
    with pytest.raises(ResourceExistsError) as busy:
        resize(batch_client, pool_id, 5)
    assert busy.value.error.code == "AutoScalingEnabled"
    body = {"id": "metric-pool", "vmSize": "standard_d2s_v3", "enableAutoScale": True,
            "autoScaleFormula": "$TargetDedicatedNodes = $PendingTasks.GetSample(1);"}
    status, refused = raw_request(batch_emulator, "POST", "/pools?api-version=2025-06-01", json.dumps(body).encode())
    assert (status, refused["code"], detail(refused, "PropertyName")) == (400, "InvalidPropertyValue", "autoScaleFormula")
    assert "emulator supports only formulas" in detail(refused, "Reason")


@pytest.mark.parametrize(("prop", "extra"), [
    ("virtualMachineConfiguration.containerConfiguration", {"virtualMachineConfiguration": {
        "imageReference": {"publisher": "canonical"}, "nodeAgentSKUId": "batch.node.ubuntu 22.04",
        "containerConfiguration": {"type": "dockerCompatible"}}}),
    ("certificateReferences", {"certificateReferences": [{"thumbprint": "ab", "thumbprintAlgorithm": "sha1"}]}),
])
def test_pool_features_the_emulator_cannot_give_are_refused(batch_emulator, prop, extra):
    body = {"id": "refused-pool", "vmSize": "standard_d2s_v3", **extra}
    status, refused = raw_request(batch_emulator, "POST", "/pools?api-version=2025-06-01", json.dumps(body).encode())
    assert (status, detail(refused, "PropertyName")) == (400, prop)
    assert "not supported by the emulator" in detail(refused, "Reason")


def test_node_logins_and_job_schedules_are_refused(batch_client):
    node = next(iter(batch_client.list_nodes("pool-2x4")))
    with pytest.raises(HttpResponseError) as login:
        batch_client.create_node_user("pool-2x4", node.id, m.BatchNodeUserCreateOptions(name="me", password="x"))
    assert (login.value.status_code, login.value.error.code) == (400, "FeatureNotSupported")
    assert "not supported by the Batch emulator" in login.value.error.message
    with pytest.raises(HttpResponseError) as schedules:
        list(batch_client.list_job_schedules())
    assert (schedules.value.status_code, schedules.value.error.code) == (400, "FeatureNotSupported")


def test_job_disable_requeue_then_enable(batch_client, job_id, scratch):
    gate = scratch / "gate"
    create_job(batch_client, job_id, "pool-1x1")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="long", command_line=gated(gate)))
    wait_until(lambda: batch_client.get_task(job_id, "long").state == "running", what="task running")
    batch_client.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="requeue"),
                                   polling_interval=0.1).result()
    assert batch_client.get_job(job_id).state == "disabled"
    task = batch_client.get_task(job_id, "long")
    assert (task.state, task.execution_info.requeue_count) == ("active", 1)
    other = f"{job_id}-o"
    create_job(batch_client, other, "pool-1x1")
    batch_client.create_task(other, m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    wait_tasks_done(batch_client, other, 1)  # the pool's one slot was free and the disabled job left it so
    assert batch_client.get_task(job_id, "long").state == "active"
    gate.touch()
    batch_client.begin_enable_job(job_id, polling_interval=0.1).result()
    assert wait_tasks_done(batch_client, job_id, 1).succeeded == 1
    terminate(batch_client, job_id)
    terminate(batch_client, other)


def test_job_disable_terminate_ends_running_tasks(batch_client, job_id, scratch):
    create_job(batch_client, job_id, "pool-1x1")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="long", command_line=gated(scratch / "gate")))
    wait_until(lambda: batch_client.get_task(job_id, "long").state == "running", what="task running")
    batch_client.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="terminate"),
                                   polling_interval=0.1).result()
    info = batch_client.get_task(job_id, "long").execution_info
    assert (info.result, info.failure_info.code) == ("failure", "TaskEnded")
    terminate(batch_client, job_id)
    wait_job_state(batch_client, job_id, "completed")


def test_reactivate_failed_task_and_update_its_constraints(batch_client, job_id, scratch):
    runs = scratch / "runs"
    create_job(batch_client, job_id, "pool-2x4")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(
        id="flaky", command_line=bash(f"echo x >> {runs}; [ $(wc -l < {runs}) -ge 2 ]")))
    wait_tasks_done(batch_client, job_id, 1)
    assert batch_client.get_task(job_id, "flaky").execution_info.result == "failure"
    batch_client.replace_task(job_id, "flaky", m.BatchTask(constraints=m.BatchTaskConstraints(
        max_task_retry_count=2, max_wall_clock_time="PT1H")))
    batch_client.reactivate_task(job_id, "flaky")
    wait_until(lambda: (t := batch_client.get_task(job_id, "flaky")).state == "completed" and t,
               what="reactivated task completed")
    task = batch_client.get_task(job_id, "flaky")
    assert (task.execution_info.result, task.execution_info.retry_count) == ("success", 0)
    assert (task.constraints.max_task_retry_count, task.constraints.max_wall_clock_time.total_seconds()) == (2, 3600)
    with pytest.raises(ResourceExistsError) as again:
        batch_client.reactivate_task(job_id, "flaky")
    assert again.value.error.code == "TaskNotFailed"
    assert list(batch_client.list_subtasks(job_id, "flaky")) == []
    terminate(batch_client, job_id)


def test_account_lists(batch_client):
    images = {(i.image_reference.offer, i.image_reference.sku): i for i in batch_client.list_supported_images()}
    jammy = images[("0001-com-ubuntu-server-jammy", "22_04-lts")]
    assert (jammy.node_agent_sku_id, jammy.os_type, jammy.image_reference.publisher) == (
        "batch.node.ubuntu 22.04", "linux", "canonical")
    usage = {u.pool_id: u for u in batch_client.list_pool_usage_metrics()}
    assert usage["pool-2x4"].vm_size == "standard_d2s_v3" and usage["pool-2x4"].total_core_hours > 0
    assert list(batch_client.list_applications()) == []
    with pytest.raises(ResourceNotFoundError) as missing:
        batch_client.get_application("nosuchapp")
    assert missing.value.error.code == "ApplicationNotFound"


def test_upload_batch_service_logs_to_a_container(batch_client, blob_service):
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = blob_service.create_container(f"servicelogs-{datetime.now(UTC):%H%M%S%f}")
    sas = generate_container_sas(blob_service.account_name, container.container_name,
                                 account_key=blob_service.credential.account_key,
                                 permission=ContainerSasPermissions(write=True, create=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    node = next(iter(batch_client.list_nodes("pool-2x4")))
    result = batch_client.upload_node_logs("pool-2x4", node.id, m.UploadBatchServiceLogsOptions(
        container_url=f"{container.url}?{sas}", start_time=datetime.now(UTC) - timedelta(hours=1)))
    assert result.number_of_files_uploaded == 1
    (blob,) = list(container.list_blobs())
    assert blob.name == f"{result.virtual_directory_name}/batch-agent.log"
    assert node.id in container.download_blob(blob.name).readall().decode()


def test_patch_pool_start_task_runs_on_the_next_reboot(batch_client, make_pool, scratch):
    from azure.batch.models._models import BatchNodeRebootOptions

    marker = scratch / "started"
    pool_id = make_pool(1)
    batch_client.update_pool(pool_id, m.BatchPoolUpdateOptions(start_task=m.BatchStartTask(
        command_line=bash(f"touch {marker}"))))
    assert batch_client.get_pool(pool_id).start_task.command_line == bash(f"touch {marker}")
    assert not marker.exists(), "a node already in the pool runs the new start task when it reboots"
    (node,) = list(batch_client.list_nodes(pool_id))
    batch_client.begin_reboot_node(pool_id, node.id, BatchNodeRebootOptions(node_reboot_kind="requeue"),
                                   polling_interval=0.1).result()
    wait_until(lambda: (n := batch_client.get_node(pool_id, node.id)).start_task_info is not None
               and n.start_task_info.state == "completed", what="start task ran after the reboot")
    assert marker.exists()


def test_task_container_settings_are_refused(batch_emulator, batch_client, job_id):
    create_job(batch_client, job_id, "pool-2x4")
    body = {"id": "in-a-box", "commandLine": "/bin/true", "containerSettings": {"imageName": "ubuntu:22.04"}}
    status, refused = raw_request(batch_emulator, "POST", f"/jobs/{job_id}/tasks?api-version=2025-06-01",
                                  json.dumps(body).encode())
    assert (status, detail(refused, "PropertyName")) == (400, "containerSettings")
    assert "not supported by the emulator" in detail(refused, "Reason")
    with pytest.raises(ResourceNotFoundError):
        batch_client.get_task(job_id, "in-a-box")
    terminate(batch_client, job_id)


def test_job_disable_wait_lets_running_tasks_finish_and_requeues_those_not_started(batch_client, job_id, scratch):
    gate, prep_gate = scratch / "gate", scratch / "prep-gate"
    create_job(batch_client, job_id, "pool-2x1")
    other = f"{job_id}-p"
    create_job(batch_client, other, "pool-2x4", prep=gated(prep_gate))
    batch_client.create_task(other, m.BatchTaskCreateOptions(id="waits-for-prep", command_line="/bin/true"))
    wait_until(lambda: batch_client.get_task(other, "waits-for-prep").state == "preparing", what="task preparing")
    batch_client.create_task(job_id, m.BatchTaskCreateOptions(id="long", command_line=gated(gate)))
    wait_until(lambda: batch_client.get_task(job_id, "long").state == "running", what="task running")
    for job in (job_id, other):
        batch_client.begin_disable_job(job, m.BatchJobDisableOptions(disable_tasks="wait"),
                                       polling_interval=0.1).result()
    assert batch_client.get_task(job_id, "long").state == "running", "wait: a running task keeps running"
    assert batch_client.get_task(other, "waits-for-prep").state == "active", "one not started goes back"
    gate.touch()
    assert wait_tasks_done(batch_client, job_id, 1).succeeded == 1
    prep_gate.touch()
    batch_client.begin_enable_job(other, polling_interval=0.1).result()
    assert wait_tasks_done(batch_client, other, 1).succeeded == 1
    terminate(batch_client, job_id)
    terminate(batch_client, other)


def test_stop_resize_leaves_the_pool_where_it_is(batch_client, make_pool):
    pool_id = make_pool(1)
    batch_client.begin_resize_pool(pool_id, m.BatchPoolResizeOptions(target_dedicated_nodes=5), polling_interval=0.1)
    batch_client.begin_stop_pool_resize(pool_id, polling_interval=0.1).result()
    pool = batch_client.get_pool(pool_id)
    # Stopped before the nodes came (the usual case) or after: either way steady, with targets as they are now.
    assert pool.allocation_state == "steady"
    assert pool.target_dedicated_nodes == pool.current_dedicated_nodes in (1, 5)
    assert len(list(batch_client.list_nodes(pool_id))) == pool.current_dedicated_nodes
