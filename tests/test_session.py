"""The local Ray a sweep starts and stops (orchestrator.engine's ray_session)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import psutil

SESSION = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import ray
    from ray._private import ray_constants, worker
    from orchestrator.engine import ray_session

    shutdown, seen = ray.shutdown, {}

    def shutdown_noting_the_monitor():
        seen["monitor_dead_at_shutdown"] = [p.poll() is not None for p in monitor]
        shutdown()

    ray.shutdown = shutdown_noting_the_monitor
    with ray_session(address=None, project=Path(sys.argv[1])):
        node = worker._global_node
        seen["pids"] = [info.process.pid for infos in node.all_processes.values() for info in infos]
        monitor = [info.process
                   for info in node.all_processes[ray_constants.PROCESS_TYPE_MONITOR]]
        seen["answer"] = ray.get(ray.remote(lambda: 42).remote())
    print(json.dumps(seen))
    """
)


def test_a_local_ray_stops_whole_without_waiting_on_its_autoscaler_monitor(tmp_path):
    """The monitor is killed before ``ray.shutdown`` (which would give it a second to answer
    a SIGTERM it cannot: see ``_stop_autoscaler_monitor``), the Ray works until then, and no
    process of that Ray outlives the session."""
    done = subprocess.run(
        [sys.executable, "-c", SESSION, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["answer"] == 42
    assert seen["monitor_dead_at_shutdown"] == [True], seen  # found where we look, and killed
    assert not [pid for pid in seen["pids"] if psutil.pid_exists(pid)], seen
