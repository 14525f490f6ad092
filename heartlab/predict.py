"""Predictions of a finished run on a beat file: ``heartlab predict RUN_DIR BEATS.parq --out PRED.parquet``.

The run is rebuilt from its ``best.pt`` alone, as :func:`heartlab.runs.evaluate_run` does: the checkpoint
embeds the operative gin config (model class and settings, ``fit.eval_batch_size``, ``fit.bf16``) and the
weights. The beat file is checked like a training file, except that ``target`` may be absent: a file of
unlabelled beats gets predictions only; a labelled one also gets the metrics of the predictions.

Decisions follow the run's operating point when ``best.pt`` holds one (key ``operating_point``, see
:mod:`heartlab.operating_point`), else argmax. The output parquet has one row per beat, in the input's
order: ``record`` and ``r_peak`` when the input has them, ``predicted`` (class index), ``predicted_class``
(its name) and ``prob/<class>`` (softmax probabilities, float32), with key-value metadata naming the run,
the beat file, the classes and the operating point (``heartlab.*``). It is written beside its destination
and renamed into place: a failure leaves no file (and an existing one as it was).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heartlab.errors import HeartlabError

SPLIT = "predict"  # the split name of the returned metrics: predict/recall_macro, predict/recall/<class>, ...
PREDICTED = "predicted"
PREDICTED_CLASS = "predicted_class"
PROBABILITY_PREFIX = "prob/"


# ---- the beat file ---------------------------------------------------------------------------------


def read_beats_for_prediction(path: str | Path, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`heartlab.data.read_beats` for beats to predict: ``target`` is optional (labels ``None``
    without it); every other check of a training file applies, labels in ``[0, num_classes)``."""
    from heartlab.data import read_beats

    return read_beats(path, num_classes, require_target=False)


def read_provenance(path: str | Path) -> dict[str, object]:
    """The ``record`` and ``r_peak`` columns of a beat file, as they are (polars Series), when present."""
    import polars as pl

    from heartlab.beat_context import PROVENANCE_COLUMNS

    present = [c for c in PROVENANCE_COLUMNS if c in pl.read_parquet_schema(path)]
    if not present:
        return {}
    frame = pl.read_parquet(path, columns=present)
    return {name: frame.get_column(name) for name in present}


# ---- the run ---------------------------------------------------------------------------------------


def run_classes(state: dict, source: str) -> tuple[str, ...]:
    """The class names of a run, from its checkpoint: ``classes`` when stored, else the order of the
    ``val/recall/<class>`` metrics of its best epoch, checked against the dataset its config names
    (``load_splits.dataset``; absent from the config of a Ray trial, which received its data)."""
    import gin

    from heartlab.data import get_dataset, load_splits

    from_names = [k.removeprefix("val/recall/") for k in state.get("metrics", {}) if k.startswith("val/recall/")]
    stored = state.get("classes")
    dataset = gin.get_bindings(load_splits).get("dataset")
    from_config = get_dataset(dataset).classes if dataset is not None else None
    candidates = [tuple(c) for c in (stored, from_names, from_config) if c]
    if not candidates:
        raise HeartlabError(f"{source}: cannot tell the run's classes (no classes, no val/recall/<class> metrics, no dataset)")
    if any(c != candidates[0] for c in candidates):
        raise HeartlabError(f"{source}: the run's classes disagree: {' vs '.join('/'.join(c) for c in candidates)}")
    return candidates[0]


@dataclass(frozen=True)
class LoadedRun:
    """A run rebuilt from ``best.pt``: the model with its weights, and what deciding needs."""

    model: object  # nn.Module, in eval mode
    classes: tuple[str, ...]
    point: object  # heartlab.operating_point.OperatingPoint
    eval_batch_size: int
    bf16: bool
    best_epoch: int | None


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild a run from its ``best.pt``. Clears gin and parses the config stored in the checkpoint
    (as :func:`heartlab.runs.evaluate_run` does).

    Raises:
        HeartlabError: no such directory, no ``best.pt``, a checkpoint that does not load or whose weights
            do not fit the model its config builds, a bad stored operating point.
    """
    from heartlab import runs, train
    from heartlab.build import resolve_bf16
    from heartlab.config import ConfigText, bound, parse_text
    from heartlab.operating_point import OperatingPoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HeartlabError(f"{run_dir}: no such run directory")
    checkpoint = run_dir / runs.CHECKPOINT
    if not checkpoint.is_file():
        raise HeartlabError(f"{run_dir}: no {runs.CHECKPOINT} (not a run directory, or the run never finished an epoch)")
    try:
        state = runs.load_checkpoint(run_dir)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        raise HeartlabError(f"{checkpoint}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or not {"model_state", "config"} <= set(state):
        raise HeartlabError(f"{checkpoint}: not a heartlab checkpoint (expected model_state and config)")
    parse_text(ConfigText.of(state["config"], f"{checkpoint} (config)"))
    classes = run_classes(state, str(checkpoint))
    net, _, _ = train.build_configured([1] * len(classes))  # the loss is not used: its weights do not matter
    try:
        net.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise HeartlabError(
            f"{checkpoint}: the weights do not fit the {len(classes)}-class {type(net).__name__} its config builds "
            f"({str(exc).splitlines()[0]})"
        ) from None
    net.eval()
    stored = state.get("operating_point")
    point = OperatingPoint() if stored is None else OperatingPoint.from_dict(stored)
    if point.num_classes not in (None, len(classes)):
        raise HeartlabError(f"{checkpoint}: the operating point is for {point.num_classes} classes, the run has {len(classes)}")
    bf16 = resolve_bf16(bound(train.fit, "bf16"))
    return LoadedRun(net, classes, point, bound(train.fit, "eval_batch_size"), bf16, state.get("epoch"))


# ---- prediction ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """A run's predictions on a beat file (nothing written yet)."""

    run: LoadedRun
    probabilities: np.ndarray  # float32 (n, C)
    predicted: np.ndarray  # int64 (n,)
    metrics: dict[str, float] | None  # None when the file has no target
    provenance: dict[str, object]  # record / r_peak columns of the input, as they are

    def table(self, metadata: dict[str, str]):
        """The output as a pyarrow table with ``heartlab.*`` key-value ``metadata``."""
        import polars as pl

        from heartlab.data import METADATA_PREFIX

        names = np.asarray(self.run.classes, dtype=object)[self.predicted]
        columns = {**self.provenance, PREDICTED: self.predicted, PREDICTED_CLASS: names.astype(str)}
        for i, name in enumerate(self.run.classes):
            columns[f"{PROBABILITY_PREFIX}{name}"] = self.probabilities[:, i]
        table = pl.DataFrame(columns).to_arrow()
        return table.replace_schema_metadata({f"{METADATA_PREFIX}{k}".encode(): v.encode() for k, v in metadata.items()})


def predict_beats(run_dir: str | Path, beats_file: str | Path) -> Prediction:
    """Apply a run to a beat file; nothing is written.

    Raises:
        HeartlabError: see :func:`load_run`; a bad beat file, labels outside the run's classes, or a model
            that uses R-R intervals and a file without them.
    """
    import torch

    from heartlab.beat_context import read_context
    from heartlab.data import Split
    from heartlab.evaluation import predict
    from heartlab.operating_point import decision_metrics

    run = load_run(run_dir)
    signals, labels = read_beats_for_prediction(beats_file, len(run.classes))
    context = read_context(beats_file, signals.shape[0])
    if getattr(run.model, "uses_rr", False) and context.rr is None:
        raise HeartlabError(
            f"{beats_file}: the run's {type(run.model).__name__} uses R-R intervals (rr_features = True) and the file "
            "has no R-R columns (rr_pre, rr_post, rr_local, rr_average); rebuild it with `heartlab data mitbih`"
        )
    target = torch.from_numpy(labels) if labels is not None else torch.zeros(signals.shape[0], dtype=torch.int64)
    rr = None if context.rr is None else torch.from_numpy(context.rr)
    split = Split(torch.from_numpy(signals), target, context.record, rr)
    logits = predict(run.model, split, run.eval_batch_size, run.bf16)
    predicted = run.point.apply(logits)
    values = None if labels is None else decision_metrics(logits, target, run.classes, SPLIT, run.point)
    probabilities = torch.softmax(logits.float(), dim=-1).numpy()
    return Prediction(run, probabilities, predicted.numpy().astype(np.int64), values, read_provenance(beats_file))


def check_output_file(out_file: str | Path, beats_file: str | Path, force: bool) -> Path:
    """Check the destination before any work: not a folder, not below a file, not the beat file itself,
    and not an existing file unless ``force``."""
    out = Path(out_file)
    if out.is_dir():
        raise HeartlabError(f"{out}: is a folder, expected an output file name")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise HeartlabError(f"{out}: cannot write there, {parent} is a file and not a folder")
    if out.exists() and Path(beats_file).exists() and out.resolve() == Path(beats_file).resolve():
        raise HeartlabError(f"{out}: is the beat file itself; choose another output file")
    if out.exists() and not force:
        raise HeartlabError(f"{out} already exists; pass --force to replace it, or choose another output file")
    return out


def write_table(out: Path, table) -> None:
    """Write a pyarrow table atomically, creating missing folders; a failure removes the folders it made."""
    import pyarrow.parquet as pq

    from heartlab.files import write_atomic

    created = [p for p in out.parents if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, lambda partial: pq.write_table(table, partial))
    except BaseException:
        for folder in created:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def run_prediction(run_dir: str | Path, beats_file: str | Path, out_file: str | Path, *, force: bool = False) -> Prediction:
    """:func:`predict_beats`, then the output parquet (see :func:`predict_file`)."""
    from heartlab.data import is_synthetic

    out = check_output_file(out_file, beats_file, force)
    prediction = predict_beats(run_dir, beats_file)
    metadata = {
        "run": str(Path(run_dir)),
        "beats_file": str(Path(beats_file)),
        "classes": json.dumps(list(prediction.run.classes)),
        "operating_point": json.dumps(prediction.run.point.to_dict()),
        "best_epoch": str(prediction.run.best_epoch),
    }
    if is_synthetic(beats_file):
        metadata["synthetic"] = "true"
    write_table(out, prediction.table(metadata))
    return prediction


def predict_file(run_dir: str | Path, beats_file: str | Path, out_file: str | Path, *, force: bool = False) -> dict[str, float] | None:
    """Predict every beat of ``beats_file`` with the run in ``run_dir`` and write ``out_file`` (parquet).

    Clears the gin config and parses the run's own (stored in ``best.pt``).

    Args:
        run_dir: a run directory holding ``best.pt``.
        beats_file: a beat file (``target`` optional).
        out_file: the parquet to write: ``record``/``r_peak`` (when the input has them), ``predicted``,
            ``predicted_class``, ``prob/<class>``; one row per beat, in the input's order.
        force: replace ``out_file`` if it exists.

    Returns:
        With ``target`` in the file: the metrics named as in ``test_metrics.json`` with ``predict/`` for
        ``test/`` (:func:`heartlab.operating_point.decision_metrics`: argmax's, and the operating point's
        under ``predict/op/``, ``predict/threshold``; no loss, which needs the training split's class
        counts); ``None`` without ``target``.

    Raises:
        HeartlabError: one line: no run directory or ``best.pt``, a bad beat file or checkpoint, labels that
            are not the run's classes, an output file that exists (without ``force``) or cannot be written
            there. Nothing is written then.
    """
    return run_prediction(run_dir, beats_file, out_file, force=force).metrics


# ---- the command -----------------------------------------------------------------------------------


def predict_command(args: argparse.Namespace) -> int:
    from heartlab.metrics import aami_table

    prediction = run_prediction(args.run_dir, args.beats, args.out, force=args.force)
    classes = prediction.run.classes
    counts = np.bincount(prediction.predicted, minlength=len(classes))
    print(
        f"wrote {prediction.predicted.size} predictions to {args.out} "
        f"(run {args.run_dir}, best epoch {prediction.run.best_epoch}; decision: {prediction.run.point.describe()})"
    )
    print("predicted   " + ", ".join(f"{c} {n}" for c, n in zip(classes, counts.tolist())))
    values = prediction.metrics
    if values is not None:
        print("argmax:")
        print(aami_table(values, classes, split=SPLIT))
        print(f"recall_macro {values[f'{SPLIT}/recall_macro']:.4f}")
        point = prediction.run.point
        if point.kind == "threshold":
            print(
                f"at the operating point (threshold {point.value:.6g}): abnormal recall {values[f'{SPLIT}/op/recall']:.4f}, "
                f"precision {values[f'{SPLIT}/op/precision']:.4f}, specificity {values[f'{SPLIT}/op/specificity']:.4f}; "
                f"PR-AUC {values[f'{SPLIT}/average_precision']:.4f}, ROC-AUC {values[f'{SPLIT}/auroc']:.4f}"
            )
        elif point.kind == "logit_adjustment":
            print(f"at the operating point ({point.describe()}):")
            print(aami_table(values, classes, split=f"{SPLIT}/op"))
    return 0


def add_predict_parser(subparsers) -> None:
    """Register ``predict``: ``heartlab predict RUN_DIR BEATS.parq --out PRED.parquet [--force]``."""
    parser = subparsers.add_parser(
        "predict",
        help="predict the beats of a file with a finished run",
        description=(
            "Predict every beat of a beat file with a run's best checkpoint (best.pt, which holds its config) and "
            "write one row per beat: record and r_peak (when the file has them), predicted, predicted_class and "
            "prob/<class>. Decisions follow the run's operating point when it has one, else argmax. With a "
            "'target' column, the metrics of the predictions are printed too."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding best.pt, e.g. runs/ptb_resnet1d/<run>")
    parser.add_argument("beats", metavar="BEATS", help="beat file (parquet: columns '0'..'186', 'target' optional)")
    parser.add_argument("--out", required=True, metavar="FILE", help="predictions to write (parquet)")
    parser.add_argument("--force", action="store_true", help="replace the output file if it exists")
    parser.set_defaults(handler=predict_command)
