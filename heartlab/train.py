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

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gin
import torch
from loguru import logger
from torch import nn

from heartlab import checks, config, losses, metrics, models, optimizers, runs  # noqa: F401 (fit builds models, optimizers by gin name)
from heartlab import operating_point as op
from heartlab.augment import SAMPLINGS, Augment, epoch_order
from heartlab.build import SCHEDULES, build, make_schedule, resolve_bf16
from heartlab.data import Split, Splits, get_dataset, load_splits
from heartlab.errors import HeartlabError, NonFiniteLossError
from heartlab.evaluation import check_inputs, evaluate, evaluate_test_split, format_metrics, model_inputs
from heartlab.files import check_output_dir, check_plain_name, write_json_atomic
from heartlab.tensorboard import RunWriter, gin_bindings
from heartlab.thresholds import abnormal_probability, choose_threshold, threshold_metrics


@dataclass(frozen=True)
class LoopSettings:
    """What the epoch loop needs besides the built objects; see :func:`fit` for each field's meaning."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    schedule: str
    monitor: str
    mode: str  # 'max' or 'min', resolved from the monitor when fit.monitor_mode is None
    patience: int | None
    seed: int
    sampling: str
    bf16: bool  # resolved: fit.bf16 = 'auto' is True only on a CPU with native bf16 (see heartlab.build.native_bf16)

    @classmethod
    def checked(cls, classes: tuple[str, ...], *, monitor_mode: str | None, **values) -> LoopSettings:
        """The settings after a range check of every field (``HeartlabError`` naming ``fit.<field>``)."""
        checks.whole("fit.epochs", values["epochs"], 1)
        checks.whole("fit.batch_size", values["batch_size"], 2, unit="beats (BatchNorm needs two)")
        checks.whole("fit.eval_batch_size", values["eval_batch_size"], 1, unit="beats")
        checks.one_of("fit.schedule", values["schedule"], SCHEDULES)
        checks.whole("fit.patience", values["patience"], 1, optional=True, unit="epochs")
        checks.whole("fit.seed", values["seed"], 0)
        checks.one_of("fit.sampling", values["sampling"], SAMPLINGS)
        checks.one_of("fit.bf16", values["bf16"], (True, False, "auto"))
        values["bf16"] = resolve_bf16(values["bf16"])
        monitor = values["monitor"]
        known = metrics.metric_names(classes)
        if monitor not in known:
            raise HeartlabError(f"fit.monitor {monitor!r} is not a validation metric; choose one of: {', '.join(known)}")
        checks.one_of("fit.monitor_mode", monitor_mode, ("max", "min", None))
        return cls(mode=monitor_mode or metrics.default_mode(monitor), **values)


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
    operating_point: op.OperatingPoint = field(default_factory=op.OperatingPoint)
    operating_metrics: dict[str, float] = field(default_factory=dict)  # of the operating point, on validation


@gin.configurable(denylist=["data", "run_dir", "on_epoch_end", "evaluate_test", "hparams"])
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
    sampling: str = "shuffle",
    num_threads: int | None = None,
    bf16: bool | str = False,
    data: Splits | None = None,
    run_dir: str | Path | None = None,
    on_epoch_end: Callable[[EpochReport], None] | None = None,
    evaluate_test: bool = True,
    hparams: dict[str, object] | None = None,
) -> FitResult:
    """Train one model and keep its best validation epoch.

    Args:
        model: model class, e.g. ``@ResNet1D``; called as ``model(num_classes=...)``.
        loss: loss class, e.g. ``@FocalLoss``; called as ``loss(class_counts=<training-split counts>)``.
        optimizer: optimizer class, e.g. ``@torch.optim.AdamW``; called with the model parameters.
        experiment: name of the experiment (one directory level); runs go to
            ``<runs_root>/<experiment>/<timestamp>-<id>/``.
        runs_root: directory holding all experiments' runs.
        epochs: maximum number of passes over the training split (>= 1).
        batch_size: training beats per optimizer step (>= 2).
        eval_batch_size: beats per forward pass when evaluating (memory only; no effect on results).
        schedule: learning-rate schedule: ``cosine`` (to 0 over all steps), ``onecycle`` (peak = the
            optimizer's lr), ``plateau`` (halve after 2 epochs without improvement of ``monitor``), ``none``.
        monitor: validation metric that selects the best epoch and drives early stopping.
        monitor_mode: ``max`` or ``min``; ``None`` infers it from the metric (losses are minimised).
        patience: stop after this many epochs (>= 1) without improvement of ``monitor``; ``None`` never
            stops early.
        seed: seed (>= 0) of weight initialisation, dropout, batch order and augmentation.
        sampling: the order of training beats in an epoch: ``'shuffle'`` (every beat once) or ``'balanced'``
            (every class equally often, drawn with replacement; compare it with a weighted loss rather than
            combine the two, see :func:`heartlab.augment.balanced_order`).
        num_threads: torch intra-op threads (>= 1); ``None`` leaves torch's default.
        bf16: run forward passes under bfloat16 autocast (weights and optimizer stay fp32): ``True``,
            ``False``, or ``'auto'`` = only on a CPU with native bf16 (AVX512-BF16 or AMX), where it is
            ~1.7x faster for ResNet1D; without it, autocast emulates bf16 and was ~9x slower (AVX2 EPYC).
        data: preloaded splits (a Ray trial passes them); ``None`` calls :func:`heartlab.data.load_splits`.
        run_dir: directory to write into instead of a fresh run directory (a Ray trial passes its own).
        on_epoch_end: called with an :class:`EpochReport` after every epoch (a Ray trial reports to Tune).
        evaluate_test: evaluate the test split once with the best checkpoint (trials pass ``False``).
        hparams: extra TensorBoard HParams session values, over the run's gin bindings (a Ray trial passes
            its sampled values under the search-space keys, which the study's HParams experiment lists).

    The training beats are augmented by the gin-bound :class:`heartlab.augment.Augment` (off by default);
    after training, the operating point is chosen on the best checkpoint's validation logits as the
    gin-bound :func:`heartlab.operating_point.operating_point` says, stored in ``best.pt`` and applied on
    test (``test/op/...``, ``test/threshold``), beside the argmax metrics.

    Raises:
        HeartlabError: a setting out of range or a bad data file, before any directory is created.
    """
    checks.whole("fit.num_threads", num_threads, 1, optional=True)
    if run_dir is None:
        check_plain_name(experiment, "fit.experiment")
        check_output_dir(Path(runs_root) / experiment, "fit.runs_root")
    classes = data.classes if data is not None else get_dataset(config.bound(load_splits, "dataset")).classes
    settings = LoopSettings.checked(
        classes, monitor_mode=monitor_mode, epochs=epochs, batch_size=batch_size,
        eval_batch_size=eval_batch_size, schedule=schedule, monitor=monitor, patience=patience, seed=seed,
        sampling=sampling, bf16=bf16,
    )
    augment, point_settings = training_options(classes, settings.monitor)
    data = data if data is not None else load_splits()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    net, loss_fn, opt = build(model, loss, optimizer, data.train.class_counts(len(data.classes)).tolist())
    check_inputs(net, data)
    operative = gin.operative_config_str()

    run_path = Path(run_dir) if run_dir is not None else runs.new_run_dir(runs_root, experiment)
    run_path.mkdir(parents=True, exist_ok=True)
    with runs.removed_on_failure(run_path, created=run_dir is None):
        (run_path / runs.CONFIG).write_text(operative)
        session = None if hparams is None else {**gin_bindings(operative), **hparams}
        with RunWriter(run_path, operative, data.classes, settings.monitor, hparams=session) as writer:
            result = train_epochs(
                net, loss_fn, opt, data, settings, run_path=run_path, operative=operative, writer=writer,
                on_epoch_end=on_epoch_end, augment=augment, point_settings=point_settings,
            )
            if evaluate_test:
                result.test_metrics = evaluate_test_split(
                    net, loss_fn, data, settings.eval_batch_size, settings.bf16, result.operating_point
                )
                result.test_metrics["best_epoch"] = result.best_epoch
                write_json_atomic(run_path / runs.TEST_METRICS, result.test_metrics)
                table = metrics.aami_table(result.test_metrics, data.classes, ci=result.test_metrics.get("ci95"))
                writer.test(result.best_epoch, result.test_metrics, table)
                logger.info("test (best checkpoint, epoch {}): {}", result.best_epoch, format_metrics(result.test_metrics))
                logger.info("test per class (best checkpoint):\n{}", table)
    return result


def train_epochs(
    net: nn.Module, loss_fn: nn.Module, opt: torch.optim.Optimizer, data: Splits, settings: LoopSettings, *,
    run_path: Path, operative: str, writer: RunWriter, on_epoch_end: Callable[[EpochReport], None] | None,
    augment: Augment | None = None, point_settings: op.OperatingPointSettings | None = None,
) -> FitResult:
    """The epochs of :func:`fit`: train, validate, keep the best checkpoint, stop early; then load the best
    checkpoint into ``net``, choose the operating point on its validation logits (stored in ``best.pt``
    with the class names) and log its validation confusion matrix (and PR curve, binary)."""
    point_settings = point_settings or op.OperatingPointSettings()
    s = settings
    logger.info(f"run {run_path}: {type(net).__name__} ({sum(p.numel() for p in net.parameters()):,} parameters)")
    logger.info(data.describe())
    scheduler, per_batch = make_schedule(s.schedule, opt, s.epochs * steps_per_epoch(len(data.train), s.batch_size), s.mode)
    checkpoint = run_path / runs.CHECKPOINT
    generator = torch.Generator().manual_seed(s.seed)
    history: list[dict[str, float]] = []
    best_value: float | None = None
    best_epoch, since_best = 0, 0
    for epoch in range(1, s.epochs + 1):
        started = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        batch_scheduler = scheduler if per_batch else None
        train_loss = float(train_epoch(
            net, loss_fn, opt, batch_scheduler, data.train, s.batch_size, generator, s.bf16,
            augment=augment, sampling=s.sampling,
        ))
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(
                f"train/loss became {train_loss} in epoch {epoch} of {run_path}; lower the learning rate or check the input data"
            )
        val_metrics, _ = validate(net, loss_fn, data, s, point_settings)
        row = {"train/loss": train_loss, "lr": lr, **val_metrics}
        if scheduler is not None and not per_batch:
            scheduler.step(row[s.monitor])
        history.append(row)
        is_best = is_improvement(row[s.monitor], best_value, s.mode)
        if is_best:
            best_value, best_epoch, since_best = row[s.monitor], epoch, 0
            runs.save_checkpoint(checkpoint, net, epoch, row, operative)
        else:
            since_best += 1
        writer.epoch(epoch, row, history[best_epoch - 1])
        seconds = time.perf_counter() - started
        logger.info(progress_line(epoch, s.epochs, row, s.monitor, is_best, seconds, len(data.train)))
        if on_epoch_end is not None:
            on_epoch_end(EpochReport(epoch, row, is_best, checkpoint, run_path))
        if s.patience is not None and since_best >= s.patience:
            logger.info(f"early stop: {s.monitor} has not improved for {s.patience} epochs (best: epoch {best_epoch})")
            break

    if best_epoch == 0:
        raise NonFiniteLossError(f"{s.monitor} was never finite in {len(history)} epoch(s) of {run_path}: no best epoch")
    net.load_state_dict(torch.load(checkpoint, weights_only=True)["model_state"])
    _, best_val_logits = evaluate(net, loss_fn, data.valid, data.classes, "val", s.eval_batch_size, s.bf16)
    counts = data.train.class_counts(len(data.classes)).tolist()
    point, point_metrics = op.choose_operating_point(best_val_logits, data.valid.y, data.classes, counts, point_settings)
    runs.update_checkpoint(checkpoint, operating_point=point.to_dict(), classes=list(data.classes))
    if point.kind != "argmax":
        logger.info("operating point (chosen on validation): {}; {}", point.describe(), format_metrics(point_metrics))
    writer.finish(best_epoch, history[best_epoch - 1], best_val_logits, data.valid.y, point_metrics)
    return FitResult(
        run_path, best_epoch, history[best_epoch - 1], history, len(history),
        operating_point=point, operating_metrics=point_metrics,
    )


def validate(
    net: nn.Module, loss_fn: nn.Module, data: Splits, settings: LoopSettings, point_settings: op.OperatingPointSettings
) -> tuple[dict[str, float], torch.Tensor]:
    """One epoch's validation metrics and logits, and those of the epoch's own operating point, so that the
    decision rule a run ends with can select epochs and trials: on a binary dataset the values at the
    threshold that reaches ``operating_point.target_recall`` on these beats (``val/op/...``,
    ``val/threshold``, PR-AUC; 0.99 when the binding is None); on more classes, with
    ``operating_point.logit_adjustment`` on, every metric at the logit adjustment chosen on these beats by
    ``operating_point.selection_metric`` (``val/op/recall_macro``, ..., ``val/op/logit_adjustment``)."""
    values, logits = evaluate(net, loss_fn, data.valid, data.classes, "val", settings.eval_batch_size, settings.bf16)
    if len(data.classes) == 2:
        target_recall = point_settings.target_recall or op.DEFAULT_TARGET_RECALL
        probabilities = abnormal_probability(logits)
        threshold = choose_threshold(probabilities, data.valid.y, target_recall)
        values.update(threshold_metrics(probabilities, data.valid.y, threshold, "val"))
    elif point_settings.logit_adjustment:
        _, adjusted = op.choose_logit_adjustment(
            logits, data.valid.y, data.train.class_counts(len(data.classes)), point_settings.strengths,
            point_settings.selection_metric, classes=data.classes, split="val/op",
        )
        values.update(adjusted)
    return values, logits


def train_epoch(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    split: Split,
    batch_size: int,
    generator: torch.Generator,
    bf16: bool,
    *,
    augment: Augment | None = None,
    sampling: str = "shuffle",
) -> torch.Tensor:
    """One pass over ``split`` in the order ``sampling`` draws (:func:`heartlab.augment.epoch_order`), each
    batch augmented by ``augment`` when given; returns the mean training loss as a 0-d tensor.

    No host synchronisation happens inside: the loss is accumulated as a tensor. A final batch of a single
    beat is skipped (BatchNorm cannot train on it).
    """
    model.train()
    order = epoch_order(sampling, split.y, generator)
    total = torch.zeros((), dtype=torch.float32)
    seen = 0
    for index in order.split(batch_size):
        if index.numel() < 2:
            continue
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(*model_inputs(model, split, index, augment, generator)), split.y[index])
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
    """Whether ``value`` beats ``best`` (``None``: nothing yet); a NaN or infinite value never does."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def progress_line(epoch: int, epochs: int, row: dict[str, float], monitor: str, is_best: bool, seconds: float, n: int) -> str:
    """One console line per epoch; ``*`` marks a new best of the monitored metric."""
    shown = dict.fromkeys(["train/loss", "val/loss", "val/recall_macro", monitor])
    values = "  ".join(f"{name} {row[name]:.4f}" for name in shown)
    return (
        f"epoch {epoch:>3}/{epochs}  {values}{' *' if is_best else '  '}  lr {row['lr']:.2e}  "
        f"{seconds:.1f}s  {n / seconds:,.0f} beats/s"
    )


def bound(name: str):
    """``fit.<name>`` as the current gin config binds it, or ``fit``'s default where it is unbound."""
    try:
        return config.bound(fit, name)
    except HeartlabError:
        raise HeartlabError(f"fit.{name} is not bound (e.g. fit.model = @ResNet1D)") from None


def build_configured(class_counts: list[int], **model_overrides) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """:func:`heartlab.build.build` with the model, loss and optimizer the current gin config binds to ``fit``
    (``model_overrides`` are passed to the model, e.g. ``backend='conv1d'``)."""
    model = functools.partial(bound("model"), **model_overrides)
    return build(model, bound("loss"), bound("optimizer"), class_counts)


def check_configured(classes: tuple[str, ...]) -> LoopSettings:
    """Range-check the ``fit`` settings the current gin config binds (a study does this before Ray starts)."""
    names = ("epochs", "batch_size", "eval_batch_size", "schedule", "monitor", "patience", "seed", "sampling", "bf16")
    checks.whole("fit.num_threads", bound("num_threads"), 1, optional=True)
    check_plain_name(bound("experiment"), "fit.experiment")
    settings = LoopSettings.checked(classes, monitor_mode=bound("monitor_mode"), **{name: bound(name) for name in names})
    training_options(classes, settings.monitor)
    return settings


def training_options(classes: tuple[str, ...], monitor: str | None = None) -> tuple[Augment, op.OperatingPointSettings]:
    """The gin-bound augmentation and operating-point settings, range-checked; the selection metrics'
    settings are checked too (all three then appear in the operative config). A ``monitor`` of the epoch's
    operating point on a multi-class dataset (``val/op/...``) needs the logit adjustment that makes it."""
    metrics.selection()
    point = op.operating_point().check(classes)
    if monitor is not None and monitor.startswith("val/op/") and len(classes) > 2 and not point.logit_adjustment:
        raise HeartlabError(
            f"fit.monitor {monitor!r} is a value of the epoch's logit adjustment: bind "
            "operating_point.logit_adjustment = True, or monitor the argmax value "
            f"{monitor.replace('val/op/', 'val/', 1)!r}"
        )
    return Augment(), point


