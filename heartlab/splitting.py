"""Row-index splits of a beat file's beats: stratified by class, or by whole records.

:func:`stratified_split` holds out a fraction of every class at random; :func:`record_split` holds out whole
records (patients) with every class's share as close to the fraction as a seeded search finds. Both return
sorted ``(keep, held_out)`` row indices: :func:`heartlab.data.load_splits` splits a training file into
train and validation with them, and the builders (``heartlab data mitbih|kaggle|split``) a file into train
and test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heartlab.errors import BeatFileError


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into ``(keep, held_out)``, holding out ``fraction`` of every class.

    Each class contributes ``round(fraction * n_class)`` rows to the held-out part (at least one when the
    class has two rows or more and ``fraction > 0``), chosen by a generator seeded with ``seed``. Both index
    arrays are sorted, so the split depends only on the labels, the fraction and the seed.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held_out = []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        count = int(round(fraction * rows.size))
        if fraction > 0 and rows.size >= 2:
            count = min(max(count, 1), rows.size - 1)
        held_out.append(rng.permutation(rows)[:count])
    held = np.sort(np.concatenate(held_out)) if held_out else np.empty(0, dtype=np.int64)
    keep = np.setdiff1d(np.arange(labels.size), held, assume_unique=True)
    return keep, held


RECORD_SPLIT_DRAWS = 4096  # random record subsets scored by load_splits(valid_split='records')


def record_split(
    records: np.ndarray, labels: np.ndarray, fraction: float, seed: int, classes: tuple[str, ...], path: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into ``(keep, held_out)`` by whole records.

    ``round(fraction x records)`` records (at least one, and one fewer than all) are held out: among
    :data:`RECORD_SPLIT_DRAWS` subsets drawn by a generator seeded with ``seed``, the one where both parts
    hold every class and the held-out share of each class is closest to ``fraction`` (least squares over
    the classes, each class weighing the same). Both index arrays are sorted.

    Raises:
        BeatFileError: fewer than two records, or no draw where both parts hold every class.
    """
    names, per_beat = np.unique(records, return_inverse=True)
    if names.size < 2:
        raise BeatFileError(
            f"{path}: load_splits.valid_split = 'records' needs beats of two records or more, the file holds "
            f"{names.size}"
        )
    num_classes = len(classes)
    counts = np.zeros((names.size, num_classes), dtype=np.int64)
    np.add.at(counts, (per_beat, labels), 1)
    totals = counts.sum(axis=0)
    size = min(max(int(round(fraction * names.size)), 1), names.size - 1)
    rng = np.random.default_rng(seed)
    draws = np.argsort(rng.random((RECORD_SPLIT_DRAWS, names.size)), axis=1)[:, :size]
    held_counts = counts[draws].sum(axis=1)  # (draws, classes)
    present = totals > 0
    valid = ((held_counts > 0) | ~present).all(axis=1) & ((totals - held_counts > 0) | ~present).all(axis=1)
    if not valid.any():
        spread = ", ".join(f"{c} in {int((counts[:, i] > 0).sum())}" for i, c in enumerate(classes) if present[i])
        raise BeatFileError(
            f"{path}: no choice of {size} of its {names.size} records gives train and validation a beat of every "
            f"class (records holding each class: {spread}); change load_splits.valid_fraction ({fraction:g}) "
            "or use valid_split = 'stratified'"
        )
    share = held_counts[:, present] / totals[present]
    cost = np.where(valid, ((share - fraction) ** 2).sum(axis=1), np.inf)
    chosen = np.zeros(names.size, dtype=bool)
    chosen[draws[int(np.argmin(cost))]] = True
    held_mask = chosen[per_beat]
    return np.flatnonzero(~held_mask), np.flatnonzero(held_mask)
