"""heartlab.tune.ray_local: a SIGKILLed driver's leftover Ray processes are stopped by the next start, and only
when their driver is provably dead."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from heartlab.tune import ray_local

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DRIVER = (
    "import time; from heartlab.tune.ray_local import start_local_ray; "
    "start_local_ray(num_cpus=1); print('RAY UP', flush=True); time.sleep(120)"
)


def _session_processes(record: dict) -> list[psutil.Process]:
    """The running processes of a record: recorded ones with their create time, and the session's."""
    found = {}
    for entry in record["processes"]:
        proc = ray_local._alive(entry["pid"], entry["create_time"])
        if proc is not None:
            found[proc.pid] = proc
    for proc in psutil.process_iter():
        if proc.pid not in found and ray_local._in_session(proc, record["session_dir"]):
            found[proc.pid] = proc
    return list(found.values())


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=5)


@pytest.mark.parametrize("record_ray_titled", [True, False], ids=["recorded", "found-by-session-dir"])
def test_cleanup_stale_stops_a_killed_drivers_leftovers(tmp_path, record_ray_titled):
    """SIGKILL a driver; Ray's agents outlive it (~60 s with Ray 2.60). cleanup_stale stops them and
    removes the record. Without ``record_ray_titled`` the ``ray::`` processes are struck from the record,
    so they can only be found through the session dir (files they hold open under it)."""
    out = tmp_path / "driver.out"
    with out.open("w") as stdout:
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER], cwd=ROOT, stdout=stdout, stderr=subprocess.DEVNULL, start_new_session=True
        )
    record_path = ray_local.state_dir() / f"{driver.pid}.json"
    record = None
    try:
        deadline = time.monotonic() + 60
        while "RAY UP" not in out.read_text():
            assert driver.poll() is None and time.monotonic() < deadline, "the driver did not start Ray"
            time.sleep(0.2)
        record = json.loads(record_path.read_text())
        assert record["driver"]["pid"] == driver.pid
        assert Path(record["session_dir"]).is_dir() and record["processes"]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        time.sleep(1)
        if not record_ray_titled:
            record["processes"] = [p for p in record["processes"] if not p["cmd"].startswith("ray::")]
            record_path.write_text(json.dumps(record))
        survivors = _session_processes(record)
        lingering = {p.pid for p in survivors if "Agent" in " ".join(p.cmdline())}
        print("survivors 1 s after SIGKILL:", [(p.pid, " ".join(p.cmdline())[:60]) for p in survivors])

        stopped = ray_local.cleanup_stale()

        assert lingering <= set(stopped)
        assert not record_path.exists()
        deadline = time.monotonic() + 5
        while _session_processes(record):
            assert time.monotonic() < deadline, f"left running: {_session_processes(record)}"
            time.sleep(0.2)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if record is not None:
            _kill(_session_processes(record))
        record_path.unlink(missing_ok=True)


def test_cleanup_stale_leaves_a_live_drivers_record_alone():
    """A record whose driver (this process) is alive is kept with its processes; the same record with a
    reused driver pid (another create time) counts as dead and its process is stopped."""
    me = psutil.Process()
    child = subprocess.Popen(["sleep", "60"])
    path = ray_local.state_dir() / f"{me.pid}.json"
    record = {
        "driver": {"pid": me.pid, "create_time": me.create_time()},
        "session_dir": f"/tmp/ray/session_heartlab_test_no_such_session_{me.pid}",
        "processes": [{"pid": child.pid, "create_time": psutil.Process(child.pid).create_time(), "cmd": "sleep 60"}],
    }
    try:
        path.write_text(json.dumps(record))
        assert child.pid not in ray_local.cleanup_stale()
        assert child.poll() is None and path.exists()

        record["driver"]["create_time"] -= 100  # the pid now belongs to another process: the driver is dead
        path.write_text(json.dumps(record))
        assert child.pid in ray_local.cleanup_stale()
        assert not path.exists()
        assert child.wait(timeout=5) is not None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        path.unlink(missing_ok=True)
