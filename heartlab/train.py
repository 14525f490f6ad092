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
from heartlab.data import Split, Splits, as_view, get_dataset, load_splits
from heartlab.errors import HeartlabError, NonFiniteLossError
from heartlab.files import check_output_dir, check_plain_name, write_json_atomic
from heartlab.tensorboard import RunWriter, gin_bindings

SCHEDULES = ("cosine", "onecycle", "plateau", "none")


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
    bf16: bool  # resolved: fit.bf16 = 'auto' is True only on a CPU with native bf16 (see native_bf16)

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
    augment, point_settings = training_options(classes)
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
    """One epoch's validation metrics and logits; on a binary dataset also the values at the threshold
    that reaches ``operating_point.target_recall`` on these beats (``val/op/...``, ``val/threshold``,
    PR-AUC; 0.99 when the binding is None), so that the operating point can select epochs and trials."""
    values, logits = evaluate(net, loss_fn, data.valid, data.classes, "val", settings.eval_batch_size, settings.bf16)
    if len(data.classes) == 2:
        target_recall = point_settings.target_recall or op.DEFAULT_TARGET_RECALL
        probabilities = op.abnormal_probability(logits)
        threshold = op.choose_threshold(probabilities, data.valid.y, target_recall)
        values.update(op.threshold_metrics(probabilities, data.valid.y, threshold, "val"))
    return values, logits


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


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), as torch reports it."""
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def resolve_bf16(value: bool | str) -> bool:
    """``fit.bf16`` as a bool: ``'auto'`` follows :func:`native_bf16`; ``True`` without it logs a warning."""
    if value == "auto":
        return native_bf16()
    if value and not native_bf16():
        logger.warning(
            "fit.bf16 = True on a CPU without native bf16 (no AVX512-BF16 or AMX): autocast emulates it and "
            "runs several times slower than fp32 here; use fit.bf16 = 'auto' or False"
        )
    return bool(value)


def model_inputs(
    model: nn.Module, split: Split, rows: torch.Tensor | slice,
    augment: Augment | None = None, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """The arguments of ``model`` for the beats ``rows`` of ``split``: the beats in the model's view
    (augmented by ``augment`` with ``generator`` when given: training batches only), and their R-R
    intervals when the model uses them (``model.uses_rr``)."""
    x = split.x[rows]
    if augment is not None and augment.active:
        x = augment(x, generator)
    x = as_view(x, model.input_view)
    return (x, split.rr[rows]) if getattr(model, "uses_rr", False) else (x,)


def check_inputs(model: nn.Module, data: Splits) -> None:
    """A model built to use R-R intervals needs them in every split (before anything is written)."""
    if getattr(model, "uses_rr", False) and any(s.rr is None for s in (data.train, data.valid, data.test)):
        raise HeartlabError(
            f"{type(model).__name__}.rr_features = True needs the R-R interval columns (rr_pre, rr_post, rr_local, rr_average) "
            "in the training and test files; rebuild them with `heartlab data mitbih`, or set rr_features = False"
        )


def predict(model: nn.Module, split: Split, batch_size: int, bf16: bool) -> torch.Tensor:
    """Logits ``(n, C)`` of the model on every beat of ``split``, in eval mode, batch by batch."""
    model.eval()
    chunks = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(split), batch_size):
            chunks.append(model(*model_inputs(model, split, slice(start, start + batch_size))).float())
    return torch.cat(chunks)


def evaluate(
    model: nn.Module, loss_fn: nn.Module, split: Split, classes: tuple[str, ...], name: str, batch_size: int, bf16: bool
) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics of ``model`` over the whole ``split`` (loss included), and its logits."""
    logits = predict(model, split, batch_size, bf16)
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
    try:
        return config.bound(fit, name)
    except HeartlabError:
        raise HeartlabError(f"fit.{name} is not bound (e.g. fit.model = @ResNet1D)") from None


def build_configured(class_counts: list[int], **model_overrides) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """:func:`build` with the model, loss and optimizer the current gin config binds to ``fit``
    (``model_overrides`` are passed to the model, e.g. ``backend='conv1d'``)."""
    model = functools.partial(bound("model"), **model_overrides)
    return build(model, bound("loss"), bound("optimizer"), class_counts)


def check_configured(classes: tuple[str, ...]) -> LoopSettings:
    """Range-check the ``fit`` settings the current gin config binds (a study does this before Ray starts)."""
    names = ("epochs", "batch_size", "eval_batch_size", "schedule", "monitor", "patience", "seed", "sampling", "bf16")
    checks.whole("fit.num_threads", bound("num_threads"), 1, optional=True)
    check_plain_name(bound("experiment"), "fit.experiment")
    settings = LoopSettings.checked(classes, monitor_mode=bound("monitor_mode"), **{name: bound(name) for name in names})
    training_options(classes)
    return settings


def training_options(classes: tuple[str, ...]) -> tuple[Augment, op.OperatingPointSettings]:
    """The gin-bound augmentation and operating-point settings, range-checked; the selection metrics'
    settings are checked too (all three then appear in the operative config)."""
    metrics.selection()
    return Augment(), op.operating_point().check(classes)


def evaluate_test_split(
    net: nn.Module, loss_fn: nn.Module, data: Splits, batch_size: int, bf16: bool, point: op.OperatingPoint | None = None
) -> dict:
    """Test metrics plus the confusion matrix (rows: true class, columns: predicted); when the test file
    names each beat's record, 95% intervals of every per-class Se and +P from a bootstrap over its records
    (``ci95``, see :func:`heartlab.metrics.record_bootstrap`).

    ``test/...`` are :func:`heartlab.operating_point.decision_metrics`: argmax's values, and those of the
    operating point ``point`` (stored as ``operating_point``) when it is not argmax, whose confusion counts
    are ``confusion_matrix_op``; a binary dataset adds its precision-recall curve (``pr_curve``)."""
    logits = predict(net, data.test, batch_size, bf16)
    point = point or op.OperatingPoint()
    with torch.inference_mode():
        loss = float(loss_fn(logits, data.test.y))
    result = {"test/loss": loss, **op.decision_metrics(logits, data.test.y, data.classes, "test", point)}
    matrix = metrics.confusion_matrix(logits, data.test.y, len(data.classes))
    result.update({"classes": list(data.classes), "confusion_matrix": matrix.tolist(), "operating_point": point.to_dict()})
    if point.kind != "argmax":
        result["confusion_matrix_op"] = metrics.counts_matrix(point.apply(logits), data.test.y, len(data.classes)).tolist()
    if len(data.classes) == 2:
        result["pr_curve"] = op.pr_curve(op.abnormal_probability(logits), data.test.y)
    if data.test.record is not None and len(data.test.records) > 1:
        preds = logits.argmax(dim=-1)
        result["ci95"] = metrics.record_bootstrap(preds, data.test.y, data.test.record, data.classes, "test")
        result["ci95_method"] = (
            f"percentile bootstrap over the {len(data.test.records)} test records, "
            f"{metrics.BOOTSTRAP_RESAMPLES} resamples, seed 0"
        )
    return result


def format_metrics(values: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))

