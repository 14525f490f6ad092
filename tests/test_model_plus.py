"""The expanded models (CNN2DPlus, Transformer1DPlus): shapes, sizes, the R-R option, gradients, a short
`heartlab train` run; and Transformer1D's fused attention path against the nn.MultiheadAttention call."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from heartlab import cli
from heartlab.beat_context import RR_COLUMNS
from heartlab.data import BEAT_LENGTH, PADDED_LENGTH, as_view, write_beats
from heartlab.models import CNN2DPlus, Transformer1D, Transformer1DPlus
from heartlab.models.baselines import TransformerBlock
from helpers import tiny_cnn2d_config

PLUS = [CNN2DPlus, Transformer1DPlus]
SMALL = {
    CNN2DPlus: dict(width=8, depth=2),
    Transformer1DPlus: dict(width=16, depth=2, heads=2, ff_width=32, stem_width=8, stem_stride=8),
}
# the defaults' parameter counts: (2 classes, 5 classes)
DEFAULT_PARAMETERS = {CNN2DPlus: (57_154, 57_253), Transformer1DPlus: (156_066, 156_261)}


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def beats(model: nn.Module, n: int, seed: int = 1) -> torch.Tensor:
    return as_view(torch.rand(n, BEAT_LENGTH, generator=torch.Generator().manual_seed(seed)), model.input_view)


def rr_intervals(n: int, seed: int = 2) -> torch.Tensor:
    return 0.4 + torch.rand(n, 4, generator=torch.Generator().manual_seed(seed))  # seconds


# ---- shapes and sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 5])
@pytest.mark.parametrize("model_class", PLUS, ids=lambda c: c.__name__)
def test_output_shape_with_defaults(model_class, num_classes):
    model = model_class(num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(beats(model, 3))
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "settings",
    [
        dict(pooling="cls"),
        dict(pooling="attention", norm_first=False),
        dict(pooling="mean", attention_dropout=0.1),
        dict(stem_stride=1, stem_kernel=3),
        dict(stem_stride=3, depth=1, heads=1),
    ],
    ids=str,
)
def test_transformer_plus_variants(settings):
    model = Transformer1DPlus(num_classes=5, **{**SMALL[Transformer1DPlus], **settings})
    x = beats(model, 4)
    assert model.train()(x).shape == (4, 5)
    with torch.no_grad():
        assert model.eval()(x).shape == (4, 5)
    assert model.steps == -(-BEAT_LENGTH // model.stem[-1].stride[0])  # ceil(187 / stride) tokens


@pytest.mark.parametrize("pooling", ["max", "avg", "none"])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_cnn2d_plus_variants(pooling, depth):
    model = CNN2DPlus(width=4, depth=depth, kernel_size=5, pooling=pooling, num_classes=2)
    pools = [m for m in model.blocks if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert len(pools) == (0 if pooling == "none" else min(depth, 2))
    x = beats(model, 3)
    expected = {0: (16, 12), 1: (8, 6), 2: (4, 3)}[len(pools)]
    assert model.blocks(model.stem(x)).shape == (3, 4, *expected)
    assert model.train()(x).shape == (3, 2)


@pytest.mark.parametrize("model_class", PLUS, ids=lambda c: c.__name__)
def test_default_parameter_counts(model_class):
    counts = tuple(sum(p.numel() for p in model_class(num_classes=c).parameters()) for c in (2, 5))
    assert counts == DEFAULT_PARAMETERS[model_class]


def test_input_views():
    assert CNN2DPlus.input_view == "2d"
    assert Transformer1DPlus.input_view == "1d"


@pytest.mark.parametrize(
    ("model_class", "settings", "message"),
    [
        (Transformer1DPlus, dict(width=30, heads=4), "divisible"),
        (Transformer1DPlus, dict(depth=0), "depth"),
        (Transformer1DPlus, dict(stem_kernel=4), "odd"),
        (Transformer1DPlus, dict(stem_stride=0), "stem_stride"),
        (Transformer1DPlus, dict(pooling="max"), "pooling"),
        (Transformer1DPlus, dict(attention_dropout=1.0), "attention_dropout"),
        (CNN2DPlus, dict(depth=0), "depth"),
        (CNN2DPlus, dict(kernel_size=4), "odd"),
        (CNN2DPlus, dict(pooling="mean"), "pooling"),
        (CNN2DPlus, dict(rr_features=True, beat_dropout=1.0), "beat_dropout"),
    ],
)
def test_bad_settings_raise(model_class, settings, message):
    with pytest.raises(ValueError, match=message):
        model_class(**settings)


# ---- R-R intervals --------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", PLUS, ids=lambda c: c.__name__)
def test_rr_option(model_class):
    model = model_class(num_classes=3, rr_features=True, **SMALL[model_class])
    assert model.uses_rr and not model_class(**SMALL[model_class]).uses_rr
    x, rr = beats(model, 6), rr_intervals(6)
    model.train()(x, rr)  # BatchNorm statistics of the R-R features
    model.eval()
    with torch.no_grad():
        out = model(x, rr)
        shifted = model(x, rr * torch.tensor([0.6, 1.4, 1.0, 1.0]))  # a premature beat: short before, long after
    assert out.shape == (6, 3)
    assert not torch.allclose(out, shifted)
    with pytest.raises(ValueError, match="rr_features"):
        model(x)


@pytest.mark.parametrize("model_class", PLUS, ids=lambda c: c.__name__)
def test_beat_dropout_leaves_the_rr_features(model_class):
    model = model_class(num_classes=2, rr_features=True, beat_dropout=0.5, **SMALL[model_class]).train()
    seen = {}
    model.head.layers.register_forward_pre_hook(lambda module, args: seen.update(features=args[0]))
    model(beats(model, 64), rr_intervals(64))
    width = model.head.layers[1].in_features - 9
    zeroed = (seen["features"][:, :width] == 0).all(dim=1)
    assert 0 < zeroed.sum() < 64  # some beats classified from their R-R intervals alone
    assert (seen["features"][zeroed, width:] != 0).any()


# ---- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rr", [False, True], ids=["beat", "beat+rr"])
@pytest.mark.parametrize(
    ("model_class", "settings"),
    [
        (CNN2DPlus, {}),
        (CNN2DPlus, dict(pooling="avg")),
        (Transformer1DPlus, dict(pooling="cls")),
        (Transformer1DPlus, dict(pooling="attention", norm_first=False)),
        (Transformer1DPlus, dict(pooling="mean")),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_backward_reaches_every_parameter(model_class, settings, rr):
    model = model_class(num_classes=3, rr_features=rr, **{**SMALL[model_class], **settings}).train()
    inputs = (beats(model, 6), rr_intervals(6)) if rr else (beats(model, 6),)
    F.cross_entropy(model(*inputs), torch.tensor([0, 1, 2, 1, 0, 2])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


# ---- Transformer1D: the fused attention path computes the nn.MultiheadAttention call's numbers --------


def reference_forward(model: Transformer1D, x: torch.Tensor) -> torch.Tensor:
    """Transformer1D's forward with each block's attention as the ``nn.MultiheadAttention`` call."""
    x = F.pad(x, (0, PADDED_LENGTH - x.shape[-1]))
    x = model.position(model.embed(x).transpose(1, 2))
    for block in model.blocks:
        attended, _ = block.attention(x, x, x, need_weights=False)
        x = block.norm1(x + attended)
        x = block.norm2(x + block.ff(x))
    return model.out(x.mean(dim=1))


def pair(dropout: float, **settings) -> tuple[Transformer1D, Transformer1D]:
    """The fused model and a copy with the same state_dict."""
    fused = Transformer1D(num_classes=5, dropout=dropout, **settings)
    reference = Transformer1D(num_classes=5, dropout=dropout, **settings)
    reference.load_state_dict(copy.deepcopy(fused.state_dict()))
    assert all(block.fused_attention for block in fused.blocks)
    return fused, reference


@pytest.mark.parametrize("settings", [{}, dict(hidden=32, num_heads=2, num_blocks=2)], ids=["default", "small"])
def test_fused_attention_outputs_and_gradients_match_the_module_call(settings):
    fused, reference = pair(dropout=0.0, **settings)
    x = torch.rand(8, 1, BEAT_LENGTH)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    out = fused.train()(x)
    expected = reference_forward(reference.train(), x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    F.cross_entropy(out, y).backward()
    F.cross_entropy(expected, y).backward()
    references = dict(reference.named_parameters())
    for name, parameter in fused.named_parameters():
        torch.testing.assert_close(parameter.grad, references[name].grad, rtol=1e-5, atol=1e-5, msg=name)


def test_fused_attention_eval_outputs_match_with_dropout_set():
    fused, reference = pair(dropout=0.1)
    x = torch.rand(16, 1, BEAT_LENGTH)
    with torch.inference_mode():  # the module call takes nn.MultiheadAttention's own inference path here
        torch.testing.assert_close(fused.eval()(x), reference_forward(reference.eval(), x), rtol=0, atol=1e-5)


def test_fused_attention_draws_the_same_dropout_in_training():
    fused, reference = pair(dropout=0.1, hidden=32, num_heads=4, num_blocks=2)
    x = torch.rand(4, 1, BEAT_LENGTH)
    torch.manual_seed(7)
    out = fused.train()(x)
    torch.manual_seed(7)
    expected = reference_forward(reference.train(), x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.manual_seed(8)
    assert not torch.allclose(fused(x), out)  # dropout is really on


def test_fused_attention_switch_calls_the_module():
    fused, reference = pair(dropout=0.0, hidden=16, num_heads=2, num_blocks=1)
    for block in reference.blocks:
        block.fused_attention = False
    calls = []
    reference.blocks[0].attention.register_forward_hook(lambda *args: calls.append(1))
    fused.blocks[0].attention.register_forward_hook(lambda *args: calls.append(2))
    x = torch.rand(3, 1, BEAT_LENGTH)
    torch.testing.assert_close(fused(x), reference(x), rtol=0, atol=1e-5)
    assert calls == [1]  # only the switched-off block called nn.MultiheadAttention.forward
    assert TransformerBlock.fused_attention


# ---- a short `heartlab train` run -----------------------------------------------------------------


TINY = {
    CNN2DPlus: ["fit.model = @CNN2DPlus", "CNN2DPlus.width = 8", "CNN2DPlus.depth = 2"],
    Transformer1DPlus: [
        "fit.model = @Transformer1DPlus",
        "Transformer1DPlus.width = 16",
        "Transformer1DPlus.depth = 1",
        "Transformer1DPlus.heads = 2",
        "Transformer1DPlus.ff_width = 32",
        "Transformer1DPlus.stem_width = 8",
        "Transformer1DPlus.stem_stride = 8",
    ],
}


@pytest.mark.parametrize("model_class", PLUS, ids=lambda c: c.__name__)
def test_heartlab_train_runs_one_epoch(model_class, tmp_path, make_beats):
    experiment = f"tiny_{model_class.__name__.lower()}"
    config = tiny_cnn2d_config(tmp_path, make_beats, experiment, *TINY[model_class], "fit.epochs = 1")
    assert cli.main(["train", str(config)]) == 0
    (run_dir,) = (tmp_path / "runs" / experiment).iterdir()
    assert {"config.gin", "best.pt", "test_metrics.json"} <= {p.name for p in run_dir.iterdir()}
    assert f"fit.model = @{model_class.__name__}" in (run_dir / "config.gin").read_text()
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and 0.0 <= metrics["test/recall_macro"] <= 1.0


def test_heartlab_train_with_rr_features(tmp_path, make_beats):
    rng = np.random.default_rng(0)
    files = []
    for name, n in (("train_rr.parq", 40), ("test_rr.parq", 20)):
        labels = np.arange(n) % 2
        signals = rng.random((n, BEAT_LENGTH)).astype(np.float32)
        columns = {column: (0.6 + 0.4 * rng.random(n)).astype(np.float32) for column in RR_COLUMNS}
        files.append(write_beats(tmp_path / name, signals, labels, columns))
    config = tiny_cnn2d_config(
        tmp_path, make_beats, "tiny_rr", *TINY[CNN2DPlus], "CNN2DPlus.rr_features = True", "fit.epochs = 1",
        f"load_splits.train_file = '{files[0]}'", f"load_splits.test_file = '{files[1]}'",
    )
    assert cli.main(["train", str(config)]) == 0
    (run_dir,) = (tmp_path / "runs" / "tiny_rr").iterdir()
    assert "rr_features = True" in (run_dir / "config.gin").read_text()
