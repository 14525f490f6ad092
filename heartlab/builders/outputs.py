"""Writing a command's output files all together: either every file appears, or none does.

Builders compute everything in memory first, then write each file to a hidden staging name beside its
destination and rename the staged files into place only once all of them were written. A failure on the
way removes the staged files (and any folder the command created), so ``--out`` never holds a partial
result.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from heartlab.data import METADATA_PREFIX, write_beats
from heartlab.errors import HeartlabError


class StagedOutputs:
    """A set of destination files written as one unit.

    Construct it before the expensive work (it checks the destinations up front), then::

        with outputs:
            write_beats(outputs.staged(train_path), x, y)
            ...

    Leaving the ``with`` block normally renames every staged file into place; an exception removes them.
    """

    def __init__(self, destinations: Iterable[str | Path], force: bool = False) -> None:
        self.destinations = [Path(p) for p in destinations]
        resolved = [p.resolve() for p in self.destinations]
        if len(set(resolved)) != len(resolved):
            raise HeartlabError(
                "the output files must be distinct, got " + ", ".join(str(p) for p in self.destinations)
            )
        for path in self.destinations:
            if path.is_dir():
                raise HeartlabError(f"{path}: is a folder, expected an output file name")
            for parent in path.parents:
                if parent.exists() and not parent.is_dir():
                    raise HeartlabError(f"{path}: cannot write there, {parent} is a file and not a folder")
        existing = [p for p in self.destinations if p.exists()]
        if existing and not force:
            names = ", ".join(str(p) for p in existing)
            raise HeartlabError(
                f"{names} already {'exists' if len(existing) == 1 else 'exist'}; pass --force to replace "
                f"{'it' if len(existing) == 1 else 'them'}, or choose another output location"
            )
        self._token = uuid.uuid4().hex[:8]
        self._staged: dict[Path, Path] = {}
        self._created_dirs: list[Path] = []

    def staged(self, destination: str | Path) -> Path:
        """The temporary path to write ``destination`` to (its folder is created if needed)."""
        destination = Path(destination)
        if destination not in self.destinations:
            raise ValueError(f"{destination} is not one of the declared outputs")
        self._make_parents(destination.parent)
        staged = destination.with_name(f".{destination.name}.{self._token}.staging")
        self._staged[destination] = staged
        return staged

    def _make_parents(self, folder: Path) -> None:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for path in reversed(missing):  # top-most first
            path.mkdir()
            self._created_dirs.append(path)

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            missing = [str(d) for d in self.destinations if d not in self._staged or not self._staged[d].exists()]
            if missing:
                self._discard()
                raise RuntimeError(f"outputs never written: {', '.join(missing)}")
            for destination, staged in self._staged.items():
                os.replace(staged, destination)
        else:
            self._discard()

    def _discard(self) -> None:
        for staged in self._staged.values():
            staged.unlink(missing_ok=True)
        for folder in reversed(self._created_dirs):
            with contextlib.suppress(OSError):  # not empty: something else wrote there meanwhile
                folder.rmdir()


def add_metadata(path: str | Path, metadata: Mapping[str, str]) -> None:
    """Add ``heartlab.*`` key-value entries to the footer of the parquet file ``path`` (rewritten in place).

    Used on staged files only, so the rewrite is never visible half-done.
    """
    path = Path(path)
    table = pq.read_table(path)
    merged = dict(table.schema.metadata or {})
    merged.update({f"{METADATA_PREFIX}{k}".encode(): str(v).encode() for k, v in metadata.items()})
    pq.write_table(table.replace_schema_metadata(merged), path)


def write_beat_file(
    outputs: StagedOutputs,
    destination: Path,
    signals: np.ndarray,
    labels: np.ndarray,
    metadata: Mapping[str, str] | None = None,
    columns: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write one beat file (schema from :func:`heartlab.data.write_beats`, with optional per-beat
    ``columns``) to its staged path."""
    staged = outputs.staged(destination)
    write_beats(staged, signals, labels, columns)
    if metadata:
        add_metadata(staged, metadata)


def count_table(
    classes: tuple[str, ...] | None,
    columns: Mapping[str, np.ndarray],
    reference: Mapping[str, tuple[int, ...]] | None = None,
    reference_name: str = "published",
) -> str:
    """A plain-text table of per-class counts, one column per labelled split (e.g. train/test/total).

    ``reference`` optionally gives published counts per column name; the table then shows the
    relative difference of each count to its reference.
    """
    num = max([len(classes) if classes else 0] + [int(y.max()) + 1 for y in columns.values() if y.size])
    counts = {name: np.bincount(y.astype(np.int64), minlength=num) for name, y in columns.items()}
    header = ["class", *counts]
    if reference:
        header += [f"{name} ({reference_name}, diff)" for name in reference]
    rows = []
    for label in range(num):
        name = f"{label} {classes[label]}" if classes and label < len(classes) else str(label)
        row = [name, *(str(c[label]) for c in counts.values())]
        for col, ref in (reference or {}).items():
            have = counts[col][label]
            diff = (have - ref[label]) / ref[label] * 100 if ref[label] else float("nan")
            row.append(f"{ref[label]} ({diff:+.2f}%)")
        rows.append(row)
    totals = [str(c.sum()) for c in counts.values()] + [str(sum(r)) for r in (reference or {}).values()]
    rows.append(["all", *totals])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    )
