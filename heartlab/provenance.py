"""Where a result came from: the command, when, on how many CPUs, from which heartlab commit.

Every study and ablation stores this in its ``study.json`` / ``ablation.json`` when it starts, and adds its
wall time when it finishes, so that a number in a results folder traces back to the run that made it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def heartlab_commit() -> str | None:
    """The git commit of the heartlab checkout (``+dirty`` with uncommitted changes), or ``None`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "heartlab", "configs"],
            cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def provenance() -> dict[str, object]:
    """``command`` (as typed), ``started`` (UTC, ISO 8601), ``cpu_count``, ``heartlab_commit``."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    command = shlex.join([program if program != "__main__.py" else "heartlab", *sys.argv[1:]])
    return {
        "command": command,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "heartlab_commit": heartlab_commit(),
    }


def add_session(record: dict, wall_seconds: float, complete: bool) -> dict:
    """``record`` with this session's wall time added to the earlier sessions' (``wall_seconds``: a resumed
    study adds up its sessions) and, when the work is complete, ``finished`` (UTC)."""
    out = {**record, "wall_seconds": round(float(record.get("wall_seconds") or 0.0) + wall_seconds, 1)}
    if complete:
        out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out
