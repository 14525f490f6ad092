"""``fit``: the one training loop, used by ``heartlab train`` and by every Ray Tune trial.

One call loads (or receives) the data, builds model, loss and optimizer from gin bindings, writes the
operative ``config.gin`` into the run directory, trains with per-epoch validation and TensorBoard logging,
keeps the best-validation checkpoint ``best.pt``, and finally evaluates the test split once with that
checkpoint into ``test_metrics.json``.

The loop is kept lean for CPUs: the data stays in memory as tensors and is batched by indexing with a
permutation, the step never synchronises with the host (losses are summed as tensors and read once per
epoch), and evaluation runs under ``torch.inference_mode`` in large batches.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import gin
import torch
from loguru import logger
from torch import nn

from heartlab import losses, metrics, models  # noqa: F401  (registers the configurables)
from heartlab.data import Split, Splits, as_view, load_splits
from heartlab.errors import HeartlabError, NonFiniteLossError
from heartlab.tensorboard import RunWriter

for _optimizer in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD):
    gin.external_configurable(_optimizer, module="torch.optim")

SCHEDULES = ("cosine", "onecycle", "plateau", "none")
CHECKPOINT_NAME = "best.pt"
CONFIG_NAME = "config.gin"
TEST_METRICS_NAME = "test_metrics.json"


@dataclass
class EpochReport:
    """What ``fit`` tells an ``on_epoch_end`` callback after each epoch."""

    epoch: int  # 1-based
    metrics: dict[str, float]  # train/loss, lr, val/* of this epoch
    is_best: bool  # this epoch improved the monitored metric (best.pt was just written)
    checkpoint: Path  # run_dir / best.pt: the best epoch so far
    run_dir: Path


@dataclass
class FitResult:
    """The outcome of a run: best validation epoch and metrics, the per-epoch history, test metrics."""

    run_dir: Path
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    test_metrics: dict[str, float] | None = None


def new_run_dir(runs_root: str | Path, experiment: str) -> Path:
    """A fresh ``<runs_root>/<experiment>/<YYYYmmdd-HHMMSS>-<6 hex>/``; never an existing one."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(runs_root) / experiment / f"{stamp}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def make_schedule(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int, mode: str
) -> tuple[torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None, bool]:
    """The LR schedule called ``name`` and whether it steps per batch (True) or per epoch (False)."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1)), True
    if name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 1)), True
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5, patience=2), False
    if name == "none":
        return None, False
    raise HeartlabError(f"unknown fit.schedule {name!r}: use one of {', '.join(SCHEDULES)}")


def predict(model: nn.Module, x: torch.Tensor, batch_size: int, bf16: bool) -> torch.Tensor:
    """Logits ``(n, C)`` of the model on every beat of ``x``, in eval mode, batch by batch."""
    model.eval()
    chunks = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, x.shape[0], batch_size):
            chunks.append(model(as_view(x[start : start + batch_size], model.input_view)).float())
    return torch.cat(chunks)


def evaluate(
    model: nn.Module, loss_fn: nn.Module, split: Split, classes: tuple[str, ...], name: str, batch_size: int, bf16: bool
) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics of ``model`` over the whole ``split`` (loss included), and its logits."""
    logits = predict(model, split.x, batch_size, bf16)
    with torch.inference_mode():
        loss = float(loss_fn(logits, split.y))
    return metrics.compute_metrics(logits, split.y, classes, name, loss=loss), logits


def train_epoch(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    split: Split,
    batch_size: int,
    generator: torch.Generator,
    bf16: bool,
) -> torch.Tensor:
    """One pass over ``split`` in a random order; returns the mean training loss as a 0-d tensor.

    No host synchronisation happens inside: the loss is accumulated as a tensor. A final batch of a single
    beat is skipped (BatchNorm cannot train on it).
    """
    model.train()
    order = torch.randperm(len(split), generator=generator)
    total = torch.zeros((), dtype=torch.float32)
    seen = 0
    for index in order.split(batch_size):
        if index.numel() < 2:
            continue
        x = as_view(split.x[index], model.input_view)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), split.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.detach() * index.numel()
        seen += index.numel()
    return total / max(seen, 1)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps :func:`train_epoch` takes on ``n`` beats (batches of one beat are skipped)."""
    if batch_size < 2:
        return 0
    return n // batch_size + (1 if n % batch_size >= 2 else 0)


def is_improvement(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def save_checkpoint(path: Path, model: nn.Module, epoch: int, epoch_metrics: dict[str, float], config: str) -> None:
    """Write ``best.pt`` atomically: model weights, epoch, its metrics and the operative gin config."""
    partial = path.with_name(path.name + ".partial")
    torch.save({"model_state": model.state_dict(), "epoch": epoch, "metrics": epoch_metrics, "config": config}, partial)
    partial.replace(path)


def progress_line(epoch: int, epochs: int, row: dict[str, float], monitor: str, is_best: bool, seconds: float, n: int) -> str:
    """One console line per epoch; ``*`` marks a new best of the monitored metric."""
    shown = dict.fromkeys(["train/loss", "val/loss", "val/recall_macro", monitor])
    values = "  ".join(f"{name} {row[name]:.4f}" for name in shown)
    return (
        f"epoch {epoch:>3}/{epochs}  {values}{' *' if is_best else '  '}  lr {row['lr']:.2e}  "
        f"{seconds:.1f}s  {n / seconds:,.0f} beats/s"
    )


@gin.configurable(denylist=["data", "run_dir", "on_epoch_end", "evaluate_test"])
def fit(
    model: Callable[..., nn.Module] = gin.REQUIRED,
    loss: Callable[..., nn.Module] = losses.WeightedCrossEntropy,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.AdamW,
    *,
    experiment: str = "default",
    runs_root: str = "runs",
    epochs: int = 20,
    batch_size: int = 256,
    eval_batch_size: int = 4096,
    schedule: str = "cosine",
    monitor: str = "val/recall_macro",
    monitor_mode: str | None = None,
    patience: int | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    bf16: bool = False,
    data: Splits | None = None,
    run_dir: str | Path | None = None,
    on_epoch_end: Callable[[EpochReport], None] | None = None,
    evaluate_test: bool = True,
) -> FitResult:
    """Train one model and keep its best validation epoch.

    Args:
        model: model class, e.g. ``@ResNet1D``; called as ``model(num_classes=...)``.
        loss: loss class, e.g. ``@FocalLoss``; called as ``loss(class_counts=<training-split counts>)``.
        optimizer: optimizer class, e.g. ``@torch.optim.AdamW``; called with the model parameters.
        experiment: name of the experiment; runs go to ``<runs_root>/<experiment>/<timestamp>-<id>/``.
        runs_root: directory holding all experiments' runs.
        epochs: maximum number of passes over the training split.
        batch_size: training beats per optimizer step.
        eval_batch_size: beats per forward pass when evaluating (memory only; no effect on results).
        schedule: learning-rate schedule: ``cosine`` (to 0 over all steps), ``onecycle`` (peak = the
            optimizer's lr), ``plateau`` (halve after 2 epochs without improvement of ``monitor``), ``none``.
        monitor: validation metric that selects the best epoch and drives early stopping.
        monitor_mode: ``max`` or ``min``; ``None`` infers it from the metric (losses are minimised).
        patience: stop after this many epochs without improvement of ``monitor``; ``None`` never stops early.
        seed: seed of weight initialisation, dropout and batch order.
        num_threads: torch intra-op threads; ``None`` leaves torch's default.
        bf16: run forward passes under bfloat16 autocast (weights and optimizer stay fp32).
        data: preloaded splits (a Ray trial passes them); ``None`` calls :func:`heartlab.data.load_splits`.
        run_dir: directory to write into instead of a fresh run directory (a Ray trial passes its own).
        on_epoch_end: called with an :class:`EpochReport` after every epoch (a Ray trial reports to Tune).
        evaluate_test: evaluate the test split once with the best checkpoint (trials pass ``False``).
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    data = data if data is not None else load_splits()
    classes = data.classes
    known = metrics.metric_names(classes)
    if monitor not in known:
        raise HeartlabError(f"fit.monitor {monitor!r} is not a validation metric; choose one of: {', '.join(known)}")
    mode = monitor_mode or metrics.default_mode(monitor)
    if mode not in ("max", "min"):
        raise HeartlabError(f"fit.monitor_mode must be 'max' or 'min', got {mode!r}")

    if batch_size < 2:
        raise HeartlabError(f"fit.batch_size must be at least 2 (BatchNorm needs two beats), got {batch_size}")

    torch.manual_seed(seed)
    net, loss_fn, opt = build(model, loss, optimizer, data.train.class_counts(len(classes)).tolist())
    scheduler, per_batch = make_schedule(schedule, opt, epochs * steps_per_epoch(len(data.train), batch_size), mode)
    config = gin.operative_config_str()

    run_path = Path(run_dir) if run_dir is not None else new_run_dir(runs_root, experiment)
    run_path.mkdir(parents=True, exist_ok=True)
    with removed_if_untrained(run_path, created=run_dir is None):
        return _train(
            net=net, loss_fn=loss_fn, opt=opt, scheduler=scheduler, per_batch=per_batch, data=data,
            run_path=run_path, config=config, epochs=epochs, batch_size=batch_size,
            eval_batch_size=eval_batch_size, monitor=monitor, mode=mode, patience=patience, seed=seed, bf16=bf16,
            on_epoch_end=on_epoch_end, evaluate_test=evaluate_test,
        )


def build(
    model: Callable, loss: Callable, optimizer: Callable, class_counts: list[int]
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """Model, loss and optimizer from their classes, as every run builds them: the model sized for the
    number of classes, the loss weighted by ``class_counts`` (beats per class in the training split).

    Raises:
        HeartlabError: a configurable rejected its arguments (e.g. an even ``ResNet1D.kernel_size``).
    """
    try:
        net = model(num_classes=len(class_counts))
        loss_fn = loss(class_counts=class_counts)
        return net, loss_fn, optimizer(net.parameters())
    except (ValueError, TypeError) as exc:  # the configurables' own argument checks
        raise HeartlabError(f"cannot build the model, loss or optimizer: {str(exc).splitlines()[0]}") from None


def bound(name: str):
    """``fit.<name>`` as the current gin config binds it, or ``fit``'s default where it is unbound."""
    bindings = gin.get_bindings(fit)
    if name in bindings:
        return bindings[name]
    default = inspect.signature(fit).parameters[name].default
    if default is gin.REQUIRED:
        raise HeartlabError(f"fit.{name} is not bound (e.g. fit.model = @ResNet1D)")
    return default


def build_configured(class_counts: list[int], **model_overrides) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """:func:`build` with the model, loss and optimizer the current gin config binds to ``fit``
    (``model_overrides`` are passed to the model, e.g. ``backend='conv1d'``)."""
    model = functools.partial(bound("model"), **model_overrides)
    return build(model, bound("loss"), bound("optimizer"), class_counts)


@contextlib.contextmanager
def removed_if_untrained(run_path: Path, created: bool):
    """Remove a run directory this call created if it fails before any checkpoint exists."""
    try:
        yield
    except BaseException:
        if created and not (run_path / CHECKPOINT_NAME).exists():
            shutil.rmtree(run_path, ignore_errors=True)
        raise


def _train(
    *, net, loss_fn, opt, scheduler, per_batch, data: Splits, run_path: Path, config: str, epochs: int, batch_size: int,
    eval_batch_size: int, monitor: str, mode: str, patience: int | None, seed: int, bf16: bool, on_epoch_end,
    evaluate_test: bool,
) -> FitResult:
    """The epochs of :func:`fit`, once everything is built and the run directory exists."""
    classes = data.classes
    (run_path / CONFIG_NAME).write_text(config)
    checkpoint = run_path / CHECKPOINT_NAME
    logger.info(f"run {run_path}: {type(net).__name__} ({sum(p.numel() for p in net.parameters()):,} parameters)")
    logger.info(data.describe())

    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    best_value: float | None = None
    best_epoch, since_best = 0, 0
    with RunWriter(run_path, config, classes, monitor) as writer:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            lr = opt.param_groups[0]["lr"]
            train_loss = float(
                train_epoch(net, loss_fn, opt, scheduler if per_batch else None, data.train, batch_size, generator, bf16)
            )
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(
                    f"train/loss became {train_loss} in epoch {epoch} of {run_path}; "
                    "lower the learning rate or check the input data"
                )
            val_metrics, _ = evaluate(net, loss_fn, data.valid, classes, "val", eval_batch_size, bf16)
            row = {"train/loss": train_loss, "lr": lr, **val_metrics}
            if scheduler is not None and not per_batch:
                scheduler.step(row[monitor])
            history.append(row)
            is_best = is_improvement(row[monitor], best_value, mode)
            if is_best:
                best_value, best_epoch, since_best = row[monitor], epoch, 0
                save_checkpoint(checkpoint, net, epoch, row, config)
            else:
                since_best += 1
            writer.epoch(epoch, row, history[best_epoch - 1])
            logger.info(progress_line(epoch, epochs, row, monitor, is_best, time.perf_counter() - started, len(data.train)))
            if on_epoch_end is not None:
                on_epoch_end(EpochReport(epoch, row, is_best, checkpoint, run_path))
            if patience is not None and since_best >= patience:
                logger.info(f"early stop: {monitor} has not improved for {patience} epochs (best: epoch {best_epoch})")
                break

        net.load_state_dict(torch.load(checkpoint, weights_only=True)["model_state"])
        _, best_val_logits = evaluate(net, loss_fn, data.valid, classes, "val", eval_batch_size, bf16)
        writer.finish(best_epoch, history[best_epoch - 1], best_val_logits, data.valid.y)
        test_metrics = None
        if evaluate_test:
            test_metrics = evaluate_test_split(net, loss_fn, data, eval_batch_size, bf16)
            test_metrics["best_epoch"] = best_epoch
            write_json(run_path / TEST_METRICS_NAME, test_metrics)
            writer.test(best_epoch, test_metrics)
            logger.info("test (best checkpoint, epoch {}): {}", best_epoch, format_metrics(test_metrics))

    return FitResult(
        run_dir=run_path,
        best_epoch=best_epoch,
        best_metrics=history[best_epoch - 1],
        history=history,
        epochs_run=len(history),
        test_metrics=test_metrics,
    )


def evaluate_test_split(net: nn.Module, loss_fn: nn.Module, data: Splits, batch_size: int, bf16: bool) -> dict:
    """Test metrics plus the confusion matrix (rows: true class, columns: predicted)."""
    test_metrics, logits = evaluate(net, loss_fn, data.test, data.classes, "test", batch_size, bf16)
    matrix = metrics.confusion_matrix(logits, data.test.y, len(data.classes))
    return {**test_metrics, "classes": list(data.classes), "confusion_matrix": matrix.tolist()}


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


def format_metrics(values: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))


def evaluate_run(run_dir: str | Path, data: Splits) -> dict:
    """Evaluate a finished run's best checkpoint on ``data.test``.

    Clears the current gin config and parses ``<run_dir>/config.gin`` to rebuild the run's model and loss,
    loads ``best.pt``, and returns the ``test/...`` metrics with the confusion matrix.
    """
    run_dir = Path(run_dir)
    gin.clear_config()
    gin.parse_config_file(str(run_dir / CONFIG_NAME))
    net, loss_fn, _ = build_configured(data.train.class_counts(len(data.classes)).tolist())
    state = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)
    net.load_state_dict(state["model_state"])
    bf16 = bool(bound("bf16"))
    result = evaluate_test_split(net, loss_fn, data, 4096, bf16)
    result["best_epoch"] = state["epoch"]
    return result
