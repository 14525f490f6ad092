"""Run directories: their file names, a fresh directory per run, the best checkpoint, cleanup, re-evaluation.

A run directory holds ``config.gin`` (the operative config), TensorBoard events, ``best.pt`` (weights of
the best validation epoch, with its epoch, metrics and the operative config) and ``test_metrics.json``.
A Ray trial's directory also holds ``fit_result.json`` once ``fit`` returned.

The file names here are the only spelling of them; torch is imported only where a checkpoint is touched,
so reading results stays light.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from heartlab.files import write_atomic

CONFIG = "config.gin"
CHECKPOINT = "best.pt"
TEST_METRICS = "test_metrics.json"
FIT_RESULT = "fit_result.json"  # a trial's summary, written when fit returned (not stopped by ASHA)
EVENTS_GLOB = "events.out.tfevents.*"


def new_run_dir(runs_root: str | Path, experiment: str) -> Path:
    """A fresh ``<runs_root>/<experiment>/<YYYYmmdd-HHMMSS>-<6 hex>/``; never an existing one."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(runs_root) / experiment / f"{stamp}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def save_checkpoint(path: Path, model, epoch: int, epoch_metrics: dict[str, float], config: str) -> None:
    """Write ``best.pt`` atomically: model weights, epoch, its metrics and the operative gin config."""
    import torch

    state = {"model_state": model.state_dict(), "epoch": epoch, "metrics": epoch_metrics, "config": config}
    write_atomic(path, lambda partial: torch.save(state, partial))


def update_checkpoint(path: Path, **values) -> None:
    """Add ``values`` (plain Python types) to the checkpoint at ``path``, atomically (e.g. the operating
    point chosen after training, and the class names)."""
    import torch

    state = torch.load(path, weights_only=True)
    state.update(values)
    write_atomic(path, lambda partial: torch.save(state, partial))


def load_checkpoint(run_dir: str | Path) -> dict:
    """The ``best.pt`` of a run: ``model_state``, ``epoch``, ``metrics``, ``config``; after training also
    ``operating_point`` (:meth:`heartlab.operating_point.OperatingPoint.to_dict`) and ``classes``."""
    import torch

    return torch.load(Path(run_dir) / CHECKPOINT, weights_only=True)


@contextlib.contextmanager
def removed_on_failure(run_dir: Path, created: bool) -> Iterator[None]:
    """Remove ``run_dir`` if the block fails before any checkpoint exists and this run created it.

    A directory the caller passed in (a Ray trial's) is never removed; a run that failed after writing
    ``best.pt`` is kept, since its best epoch is usable.
    """
    try:
        yield
    except BaseException:
        if created and not (run_dir / CHECKPOINT).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def clear_attempt(run_dir: Path) -> None:
    """Drop the files an interrupted attempt left in ``run_dir`` (a restarted trial trains from epoch 1)."""
    for name in (CONFIG, CHECKPOINT, FIT_RESULT, TEST_METRICS):
        (run_dir / name).unlink(missing_ok=True)
    for events in run_dir.rglob(EVENTS_GLOB):
        if not any(part.startswith("checkpoint_") for part in events.relative_to(run_dir).parts):
            events.unlink(missing_ok=True)


def evaluate_run(run_dir: str | Path, data) -> dict:
    """Evaluate a finished run's best checkpoint on ``data.test`` from ``best.pt`` alone.

    Clears gin and parses the config stored inside ``best.pt`` to rebuild the run's model and loss, loads
    the weights, and returns the ``test/...`` metrics with the confusion matrix and ``best_epoch``.
    """
    from heartlab import train
    from heartlab.build import resolve_bf16
    from heartlab.config import ConfigText, bound, parse_text
    from heartlab.evaluation import evaluate_test_split
    from heartlab.operating_point import OperatingPoint

    state = load_checkpoint(run_dir)
    config = state["config"]
    parse_text(ConfigText.of(config, f"{Path(run_dir) / CHECKPOINT} (config)"))
    net, loss_fn, _ = train.build_configured(data.train.class_counts(len(data.classes)).tolist())
    net.load_state_dict(state["model_state"])
    bf16 = resolve_bf16(bound(train.fit, "bf16"))
    stored = state.get("operating_point")
    point = OperatingPoint() if stored is None else OperatingPoint.from_dict(stored)
    result = evaluate_test_split(net, loss_fn, data, bound(train.fit, "eval_batch_size"), bf16, point)
    result["best_epoch"] = state["epoch"]
    return result
