"""A local Ray instance that a later start can clean up after a SIGKILLed driver.

When a driver that ran ``ray.init(address="local")`` is SIGKILLed, Ray stops most of its processes itself,
but some (observed with Ray 2.60: ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent``, reparented to
PID 1) linger. :func:`start_local_ray` records this driver's Ray processes in a per-user state file
(``<tempdir>/heartlab-ray-<uid>/<driver pid>.json``); :func:`cleanup_stale`, run by the next start, stops
the recorded processes of drivers that are dead. Ray clusters joined with an address are never recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

import psutil
from loguru import logger

from heartlab.files import write_json_atomic

_SAME_START = 0.05  # seconds: two create times closer than this are the same process


def state_dir() -> Path:
    """This user's directory of driver records (created private to the user; refused if not ours)."""
    path = Path(tempfile.gettempdir()) / f"heartlab-ray-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(f"{path} is not a private directory of this user")
    return path


def _alive(pid: int, create_time: float, denied=None):
    """The process ``pid`` if it is running (not a zombie) and started at ``create_time``, else None;
    ``denied`` if it cannot be inspected."""
    try:
        proc = psutil.Process(pid)
        same = abs(proc.create_time() - create_time) < _SAME_START
        return proc if same and proc.status() != psutil.STATUS_ZOMBIE else None
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return denied


def _in_session(proc, session_dir: str) -> bool:
    """True if ``proc`` (one of this user's processes) provably belongs to the Ray session ``session_dir``:
    its command line names the session dir, or it is a ``ray::`` process (workers and agents retitle
    themselves, so their command line no longer names the session) with a file open under the session dir."""
    try:
        if proc.uids().real != os.getuid():
            return False
        cmdline = proc.cmdline()
        if any(re.search(re.escape(session_dir) + r"(/|$)", arg) for arg in cmdline):
            return True
        return bool(cmdline) and cmdline[0].startswith("ray::") and any(
            f.path.startswith(session_dir + os.sep) for f in proc.open_files()
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _terminate(procs: list) -> None:
    """SIGTERM ``procs``, wait up to 3 s, SIGKILL the rest (psutil refuses to signal a reused pid)."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, left = psutil.wait_procs(procs, timeout=3)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=2)


def start_local_ray(**init_kwargs):
    """Clean up after dead drivers (:func:`cleanup_stale`), start a local Ray instance with
    ``ray.init(address="local", include_dashboard=False, **init_kwargs)`` and record this driver's Ray
    processes: its descendants started during ``ray.init`` and every process of the new session
    (:func:`_in_session`). Returns ``ray.init``'s context; does nothing (returns None) if Ray is running."""
    import ray

    if ray.is_initialized():
        return None
    cleanup_stale()
    me = psutil.Process()
    started = time.time()
    context = ray.init(address="local", include_dashboard=False, **init_kwargs)
    session = (context.address_info or {}).get("session_dir") or ray._private.worker._global_node.get_session_dir_path()
    procs = {p.pid: p for p in psutil.process_iter() if p.pid != me.pid and _in_session(p, session)}
    procs.update((p.pid, p) for p in me.children(recursive=True))
    record = {"driver": {"pid": me.pid, "create_time": me.create_time()}, "session_dir": session, "processes": []}
    for p in procs.values():
        with contextlib.suppress(psutil.Error):
            if p.create_time() >= started - _SAME_START:  # not a child the caller started before ray.init
                record["processes"].append({"pid": p.pid, "create_time": p.create_time(), "cmd": " ".join(p.cmdline()).strip()[:200]})
    write_json_atomic(state_dir() / f"{me.pid}.json", record)
    return context


def stop_local_ray() -> None:
    """``ray.shutdown()``, then remove this driver's record (call it at normal exit and on Ctrl-C)."""
    import ray

    try:
        ray.shutdown()
    finally:
        (state_dir() / f"{os.getpid()}.json").unlink(missing_ok=True)


def cleanup_stale() -> list[int]:
    """Stop the leftover processes of every recorded driver that is dead (pid gone, a zombie, or reused
    by a process with another create time) and delete its record; records of live drivers are left alone.

    A process is stopped (SIGTERM, ~3 s, then SIGKILL) if it is still running and either is in the record
    with the same create time, or belongs to the record's session dir (:func:`_in_session`: command line
    naming the session dir, or a ``ray::`` process with files open under it), which also catches workers
    Ray started after the record was written. Never this process or its ancestors. Returns the pids stopped."""
    spared = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    stopped: list[int] = []
    for path in sorted(state_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
            driver, session = record["driver"], record["session_dir"]
            recorded = [(int(p["pid"]), float(p["create_time"])) for p in record["processes"]]
            if _alive(driver["pid"], driver["create_time"], denied=True):
                continue
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning(f"ignoring unreadable Ray driver record {path}")
            continue
        procs = {pid: _alive(pid, create_time) for pid, create_time in recorded}
        procs.update((p.pid, p) for p in psutil.process_iter() if p.pid not in procs and _in_session(p, session))
        procs = [p for pid, p in procs.items() if p is not None and pid not in spared]
        _terminate(procs)
        if procs:
            logger.info(f"stopped {len(procs)} leftover Ray process(es) of dead driver {driver['pid']} (session {session})")
        stopped += [p.pid for p in procs]
        path.unlink(missing_ok=True)
    return stopped
