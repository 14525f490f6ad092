"""Output files and directories: atomic writes, and checks of output paths before anything is created."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(partial)`` on a hidden name beside ``path``, then rename it into place.

    A failure (or a kill) during ``write`` leaves ``path`` as it was and removes the partial file.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text))


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """``payload`` as indented JSON with a final newline."""
    return write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def check_output_dir(path: str | Path, setting: str) -> Path:
    """Check that ``path`` is, or can become, a directory; returns it. Creates nothing.

    Raises:
        HeartlabError: ``path`` is a file, or one of its parents is a file (naming ``setting``, the
            option or binding that gave the path).
    """
    from heartlab.errors import HeartlabError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise HeartlabError(f"{setting} {str(path)!r}: is a file, expected a directory")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise HeartlabError(f"{setting} {str(path)!r}: cannot create a directory there, {parent} is a file")
    return path


def check_plain_name(name: object, setting: str) -> str:
    """A name used as one directory level (an experiment or study name): no separators, not ``.``/``..``."""
    from heartlab.errors import HeartlabError

    if not isinstance(name, str) or not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        raise HeartlabError(f"{setting} {name!r}: give a plain directory name (letters, digits, - or _)")
    return name
