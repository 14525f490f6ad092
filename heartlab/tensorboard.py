"""TensorBoard logging of one run: per-epoch scalars, HParams session, confusion-matrix image, test scalars.

The HParams session (hyperparameters = the run's gin bindings, or a study trial's values: see
:class:`RunWriter`) is written when the run starts and the ``best/<metric>`` scalars it compares are updated
every epoch, so a run stopped early (by ASHA, say) still shows up in the HParams dashboard with its best
values so far.
"""

from __future__ import annotations

from pathlib import Path

import torch
from gin import config_parser
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.plugins.hparams import summary_v2
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as _hparams_summaries

from heartlab import metrics

BEST_PREFIX = "best/"


class _TextDelegate(config_parser.ParserDelegate):
    """Parses references and macros into their text, so any config reads without its configurables."""

    def configurable_reference(self, scoped_selector: str, evaluate: bool) -> str:
        return f"@{scoped_selector}{'()' if evaluate else ''}"

    def macro(self, name: str) -> str:
        return f"%{name}"


def gin_bindings(config: str) -> dict[str, object]:
    """The bindings of a gin config text as ``{'scope/Configurable.param': value}``.

    References (``@ResNet1D``) become their text; values TensorBoard cannot show (lists, dicts, None)
    become strings.
    """
    bindings: dict[str, object] = {}
    parser = config_parser.ConfigParser(config, _TextDelegate())
    for statement in parser:
        if not isinstance(statement, config_parser.BindingStatement):
            continue
        scope = f"{statement.scope}/" if statement.scope else ""
        key = f"{scope}{statement.selector}.{statement.arg_name}"
        bindings[key] = _showable(statement.value)
    return bindings


def _showable(value: object) -> bool | int | float | str:
    """``value`` if TensorBoard can show it as an hparam (bool, number, string), else its ``str``."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalars, as Ray samples them
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def confusion_figure(matrix: torch.Tensor, classes: tuple[str, ...], title: str) -> Figure:
    """A matplotlib figure of a confusion matrix, each row normalised to recall, with counts.

    Drawn without pyplot on an Agg canvas, so importing or using this module never touches the
    matplotlib backend (of a notebook, say).
    """
    counts = matrix.double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = 1.2 + 0.7 * len(classes)
    figure = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    axes = figure.subplots()
    image = axes.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if rates[i, j] > 0.5 else "black"
            axes.text(j, i, f"{rates[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center", color=color, fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    return figure


class RunWriter:
    """A run's TensorBoard event file. Use as a context manager; every epoch is flushed to disk."""

    def __init__(
        self,
        run_dir: Path,
        config: str,
        classes: tuple[str, ...],
        monitor: str,
        hparams: dict[str, object] | None = None,
    ):
        """``hparams`` are the HParams session's values; ``None`` means the gin bindings of ``config``,
        logged with an HParams experiment of their own (a run on its own). Given, they are a trial's
        (``{**gin_bindings(config), **heartlab.tune.hparams.session_values(space, sampled)}``): only the
        session is written (group = the run directory's name), as the study writes the experiment once
        (:func:`heartlab.tune.hparams.write_study_experiment`). Values TensorBoard cannot show become strings.
        """
        self.classes = classes
        self.writer = SummaryWriter(log_dir=str(run_dir))
        metric_names = [f"{BEST_PREFIX}{name}" for name in metrics.metric_names(classes)]
        values = gin_bindings(config) if hparams is None else {k: _showable(v) for k, v in hparams.items()}
        experiment, start, self._end = _hparams_summaries(values, {name: 0.0 for name in metric_names})
        if hparams is None:
            self.writer.file_writer.add_summary(experiment)
            self.writer.file_writer.add_summary(start)
        else:
            self.writer.file_writer.add_summary(summary_v2.hparams_pb(values, trial_id=Path(run_dir).name))
        self.writer.add_text("config.gin", "```\n" + config + "\n```")
        self.monitor = monitor

    def epoch(self, epoch: int, row: dict[str, float], best_row: dict[str, float]) -> None:
        """Scalars of one epoch, plus the ``best/...`` values of the best epoch so far."""
        for name, value in row.items():
            self.writer.add_scalar(name, value, epoch)
        for name, value in best_row.items():
            if name.startswith("val/"):
                self.writer.add_scalar(f"{BEST_PREFIX}{name}", value, epoch)
        self.writer.flush()

    def finish(
        self,
        best_epoch: int,
        best_row: dict[str, float],
        logits: torch.Tensor,
        target: torch.Tensor,
        operating_metrics: dict[str, float] | None = None,
    ) -> None:
        """At the best epoch: the validation confusion matrix, the operating point's validation values
        (``operating_point/...``), a binary run's precision-recall curve of P(abnormal) (``val/pr_curve``),
        and the session end."""
        matrix = metrics.confusion_matrix(logits, target, len(self.classes))
        title = f"validation, best epoch {best_epoch} ({self.monitor} {best_row[self.monitor]:.3f})"
        self.writer.add_figure("val/confusion_matrix", confusion_figure(matrix, self.classes, title), best_epoch)
        for name, value in (operating_metrics or {}).items():
            self.writer.add_scalar(f"operating_point/{name}", value, best_epoch)
        if len(self.classes) == 2:
            self.pr_curve("val/pr_curve", logits, target, best_epoch)
        self.writer.file_writer.add_summary(self._end)
        self.writer.flush()

    def pr_curve(self, tag: str, logits: torch.Tensor, target: torch.Tensor, step: int) -> None:
        """The precision-recall curve of P(abnormal) (softmax of class 1) of binary ``logits``."""
        probability = torch.softmax(logits.float(), dim=-1)[:, 1]
        self.writer.add_pr_curve(tag, target.long(), probability, step, num_thresholds=201)

    def test(self, step: int, test_metrics: dict, table: str | None = None) -> None:
        """The ``test/...`` scalars at the best epoch, and the per-class table (Se, +P, FPR) as text."""
        for name, value in test_metrics.items():
            if name.startswith("test/"):
                self.writer.add_scalar(name, value, step)
        if table:
            self.writer.add_text("test/per_class", "```\n" + table + "\n```", step)
        self.writer.flush()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()
