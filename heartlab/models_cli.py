"""The ``heartlab models`` subcommand: every model class registered with gin in :mod:`heartlab.models`, its
default size for 2 and 5 classes, and its forward cost per beat.

MACs (multiply-accumulates) are counted by ``torch.utils.flop_counter.FlopCounterMode`` over a forward pass
of random beats in the model's view, with the default settings (R-R features off). Attention is counted in
torch's unfused formulation and recurrent layers without oneDNN: the counter knows no formula for the
fused CPU kernels, and would count them as nothing.
"""

from __future__ import annotations

import argparse
import inspect
import warnings
from dataclasses import dataclass

COUNT_BATCH = 4  # random beats per counted forward pass (MACs are per beat)


@dataclass(frozen=True)
class ModelSummary:
    name: str
    module: str
    input_view: str
    parameters: dict[int, int]  # number of classes -> parameter count
    macs_per_beat: int  # forward, with num_classes = 2


def model_classes() -> list[type]:
    """The model classes (``nn.Module`` subclasses declaring an ``input_view``) registered with gin in
    :mod:`heartlab.models`, by name."""
    import gin
    from torch import nn

    from heartlab.config import register_configurables

    register_configurables()
    found = {}
    for _, configurable in gin.config._REGISTRY.items():  # noqa: SLF001 (gin has no public listing)
        target = configurable.wrapped
        if (
            inspect.isclass(target)
            and issubclass(target, nn.Module)
            and target.__module__.startswith("heartlab.models")
            and hasattr(target, "input_view")
        ):
            found[target.__name__] = target
    return [found[name] for name in sorted(found, key=str.lower)]


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_macs_per_beat(model, batch: int = COUNT_BATCH) -> int:
    """Multiply-accumulates of one forward pass per beat (eval mode, random beats in the model's view)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from heartlab.data import BEAT_LENGTH, as_view

    x = as_view(torch.rand(batch, BEAT_LENGTH, generator=torch.Generator().manual_seed(0)), model.input_view)
    inputs = (x, 0.5 + torch.rand(batch, 4)) if getattr(model, "uses_rr", False) else (x,)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # oneDNN's flags context warns about Intel GPUs
        with (
            torch.no_grad(),
            sdpa_kernel(SDPBackend.MATH),
            torch.backends.mkldnn.flags(enabled=False),
            FlopCounterMode(display=False) as counter,
        ):
            model(*inputs)
    return round(counter.get_total_flops() / 2 / batch)


def summarize(model_class: type, class_counts: tuple[int, ...] = (2, 5)) -> ModelSummary:
    """``model_class`` built with its defaults for each number of classes in ``class_counts``."""
    import torch

    parameters = {}
    macs = 0
    for num_classes in class_counts:
        torch.manual_seed(0)
        model = model_class(num_classes=num_classes)
        parameters[num_classes] = parameter_count(model)
        if num_classes == class_counts[0]:
            macs = forward_macs_per_beat(model)
    return ModelSummary(model_class.__name__, model_class.__module__, model_class.input_view, parameters, macs)


def format_table(summaries: list[ModelSummary]) -> str:
    """An aligned text table, one row per model."""
    header = ("model", "view", "params (2 classes)", "params (5 classes)", "MACs/beat (forward)", "module")
    rows = [header] + [
        (
            s.name,
            s.input_view,
            f"{s.parameters[2]:,}",
            f"{s.parameters[5]:,}",
            f"{s.macs_per_beat / 1e6:,.2f} M",
            s.module,
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = {0, 1, 5}  # text columns; numbers align right

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *map(line, rows[1:])])


def models_command(args: argparse.Namespace) -> int:
    summaries = [summarize(cls) for cls in model_classes()]
    print(format_table(summaries))
    print(
        "Each class with its defaults (fit.model = @<model>), R-R features off; MACs: one forward pass per beat, "
        "2 classes"
    )
    return 0


def add_models_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model classes with their parameters and MACs per beat",
        description=(
            "List every model class a config can bind (fit.model = @<model>) with its default parameter count "
            "for 2 and 5 classes and its forward multiply-accumulates per beat."
        ),
    )
    parser.set_defaults(handler=models_command)
