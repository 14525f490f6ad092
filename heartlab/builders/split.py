"""Split one beat file into a training and a test file, stratified by class with a fixed seed.

Used e.g. to turn the PTB sample ``../shared/data/ptb/ptb_beats_sample.parq`` into ``data/heart_train.parq``
and ``data/heart_test.parq``.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from heartlab.builders.outputs import StagedOutputs, count_table, write_beat_file
from heartlab.data import get_dataset, read_beats, read_metadata
from heartlab.errors import HeartlabError
from heartlab.splitting import stratified_split

DEFAULT_SEED = 0


def split_file(
    source: str | Path,
    out_train: str | Path,
    out_test: str | Path,
    *,
    test_size: float = 0.2,
    seed: int = DEFAULT_SEED,
    dataset: str | None = None,
    force: bool = False,
) -> tuple[Path, Path]:
    """Write ``round(test_size * n_class)`` beats of every class of ``source`` to ``out_test``, the rest to
    ``out_train`` (rows keep their order). ``dataset`` (``'ptb'``/``'arrhythmia'``) checks the labels."""
    source, out_train, out_test = Path(source), Path(out_train), Path(out_test)
    if not 0.0 < test_size < 1.0:
        raise HeartlabError(f"--test-size must be between 0 and 1 (exclusive), got {test_size}")
    spec = get_dataset(dataset) if dataset else None
    if source.resolve() in (out_train.resolve(), out_test.resolve()):
        raise HeartlabError(f"{source}: the output files must differ from the input file")
    outputs = StagedOutputs([out_train, out_test], force=force)
    signals, labels = read_beats(source, spec.num_classes if spec else None)
    keep, held = stratified_split(labels, test_size, seed)
    if keep.size == 0 or held.size == 0:
        raise HeartlabError(f"{source}: too few rows ({labels.size}) to split with --test-size {test_size:g}")
    inherited = {k: v for k, v in read_metadata(source).items() if k == "synthetic"}
    meta = {**inherited, "split_of": source.name, "split_seed": str(seed), "test_size": str(test_size)}
    with outputs:
        write_beat_file(outputs, out_train, signals[keep], labels[keep], {**meta, "split": "train"})
        write_beat_file(outputs, out_test, signals[held], labels[held], {**meta, "split": "test"})
    print(f"{source} split with seed {seed}:")
    print(count_table(spec.classes if spec else None, {"train": labels[keep], "test": labels[held], "all": labels}))
    logger.info(f"split: wrote {out_train} ({keep.size} beats) and {out_test} ({held.size} beats)")
    return out_train, out_test
