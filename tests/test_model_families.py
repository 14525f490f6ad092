"""InceptionTime and CNNGRU: output shapes, sizes, the R-R option, gradients, eval-mode determinism, bf16
autocast, argument checks, and one tiny `heartlab train` run of each."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from heartlab import cli
from heartlab.data import BEAT_LENGTH, as_view
from heartlab.models import CNNGRU, InceptionTime
from heartlab.models.rr import RRFeatures
from helpers import tiny_cnn2d_config

FAMILIES = [InceptionTime, CNNGRU]

# Parameters of the default models (the arguments' defaults), by number of classes.
DEFAULT_PARAMETERS = {
    InceptionTime: {2: 11_554, 4: 11_620, 5: 11_653},
    CNNGRU: {2: 26_562, 4: 26_628, 5: 26_661},
}

# Small variants that take the other code paths: a last group of modules without a shortcut, no
# bottleneck, other kernels; three convolution blocks, two recurrent layers, the LSTM cell.
VARIANTS = [
    (InceptionTime, {}),
    (InceptionTime, dict(filters=4, depth=4, kernel_sizes=(3, 7), bottleneck=0)),
    (CNNGRU, {}),
    (CNNGRU, dict(channels=8, conv_blocks=3, hidden=8, layers=2, cell="lstm")),
]
VARIANT_IDS = [f"{cls.__name__}-{'default' if not kw else 'variant'}" for cls, kw in VARIANTS]

# The width argument of each family and a wider value than its default.
WIDER = {InceptionTime: {"filters": 16}, CNNGRU: {"hidden": 64}}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def beats(n: int, seed: int = 0) -> torch.Tensor:
    return as_view(torch.rand(n, BEAT_LENGTH, generator=torch.Generator().manual_seed(seed)), "1d")


def intervals(n: int, seed: int = 0) -> torch.Tensor:
    """R-R intervals ``(n, 4)`` in seconds (rr_pre, rr_post, rr_local, rr_average)."""
    return 0.5 + torch.rand(n, 4, generator=torch.Generator().manual_seed(seed))


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("num_classes", [2, 4, 5])
@pytest.mark.parametrize(("cls", "kwargs"), VARIANTS, ids=VARIANT_IDS)
def test_output_shape(cls, kwargs, num_classes):
    torch.manual_seed(0)
    model = cls(num_classes=num_classes, **kwargs)
    assert cls.input_view == "1d" and model.uses_rr is False
    out = model(beats(3))
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
def test_default_parameter_count(cls):
    for num_classes, expected in DEFAULT_PARAMETERS[cls].items():
        assert count(cls(num_classes=num_classes)) == expected, num_classes
    assert count(cls(num_classes=2, **WIDER[cls])) > DEFAULT_PARAMETERS[cls][2]


def test_inception_width_and_depth_follow_the_arguments():
    model = InceptionTime(num_classes=2, filters=5, depth=4, kernel_sizes=(3, 5, 7, 9))
    assert model.head.layers[1].in_features == 5 * 5  # four kernels and the max-pool branch
    assert len(model.groups) == 2  # modules 1-3 with their shortcut, module 4 alone
    assert model.groups[0].shortcut is not None and model.groups[1].shortcut is None


def test_cnn_gru_sequence_length_follows_conv_blocks():
    x = beats(2).unsqueeze(2).contiguous(memory_format=torch.channels_last)
    for blocks, steps in [(1, 94), (2, 47), (3, 24)]:
        model = CNNGRU(num_classes=2, channels=4, conv_blocks=blocks, hidden=4)
        assert model.front(x).shape == (2, 4, 1, steps)


@pytest.mark.parametrize(("cls", "kwargs"), VARIANTS, ids=VARIANT_IDS)
def test_rr_features_reach_the_output(cls, kwargs):
    torch.manual_seed(0)
    model = cls(num_classes=4, rr_features=True, beat_dropout=0.3, **kwargs)
    plain = cls(num_classes=4, **kwargs)
    assert model.uses_rr is True
    assert count(model) > count(plain)
    assert model.head.layers[1].in_features == plain.head.layers[1].in_features + RRFeatures.out_features
    model.eval()
    x, rr = beats(4), intervals(4)
    with torch.no_grad():
        out = model(x, rr)
        other = model(x, rr * torch.tensor([0.6, 1.4, 1.0, 1.0]))  # a premature beat's timing
    assert out.shape == (4, 4)
    assert not torch.allclose(out, other)
    with pytest.raises(ValueError, match="rr_features = True: pass the R-R intervals"):
        model(x)


@pytest.mark.parametrize(("cls", "kwargs"), VARIANTS, ids=VARIANT_IDS)
def test_gradients_reach_every_parameter(cls, kwargs):
    torch.manual_seed(0)
    model = cls(num_classes=5, rr_features=True, **kwargs).train()
    logits = model(beats(8), intervals(8))
    nn.functional.cross_entropy(logits, torch.arange(8) % 5).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().max() > 0, name


@pytest.mark.parametrize(("cls", "kwargs"), VARIANTS, ids=VARIANT_IDS)
def test_eval_mode_is_deterministic(cls, kwargs):
    torch.manual_seed(0)
    model = cls(num_classes=5, dropout=0.5, rr_features=True, beat_dropout=0.5, **kwargs)
    x, rr = beats(6), intervals(6)
    with torch.no_grad():
        for _ in range(3):  # training-mode passes set the BatchNorm statistics
            model(x, rr)
        model.eval()
        first, second = model(x, rr), model(x, rr)
        alone = model(x[:2], rr[:2])
    assert torch.equal(first, second)
    torch.testing.assert_close(alone, first[:2], atol=1e-5, rtol=1e-5)  # a beat's logits ignore its batch


@pytest.mark.parametrize(("cls", "kwargs"), VARIANTS, ids=VARIANT_IDS)
def test_trains_under_bf16_autocast(cls, kwargs):
    """fit.bf16 = 'auto' turns autocast on where the CPU has native bf16: every layer must accept it."""
    torch.manual_seed(0)
    model = cls(num_classes=3, rr_features=True, **kwargs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(beats(4), intervals(4))
    nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1, 2, 0])).backward()
    assert logits.shape == (4, 3) and torch.isfinite(logits.float()).all()


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (InceptionTime, dict(kernel_sizes=(9, 20, 39)), "InceptionTime.kernel_sizes must be odd"),
        (InceptionTime, dict(kernel_sizes=()), "InceptionTime.kernel_sizes must be odd"),
        (InceptionTime, dict(depth=0), "depth >= 1"),
        (InceptionTime, dict(beat_dropout=1.0, rr_features=True), "beat_dropout must be in"),
        (CNNGRU, dict(cell="rnn"), "CNNGRU.cell must be one of 'gru', 'lstm'"),
        (CNNGRU, dict(kernel_size=4), "CNNGRU.kernel_size must be odd"),
        (CNNGRU, dict(conv_blocks=0), "conv_blocks"),
    ],
)
def test_bad_arguments_raise_value_error(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(num_classes=2, **kwargs)


TINY = {
    "InceptionTime": [
        "InceptionTime.filters = 2",
        "InceptionTime.depth = 3",
        "InceptionTime.kernel_sizes = (3, 5)",
        "InceptionTime.bottleneck = 2",
    ],
    "CNNGRU": ["CNNGRU.channels = 4", "CNNGRU.conv_blocks = 3", "CNNGRU.hidden = 4"],
}


@pytest.mark.parametrize("model", sorted(TINY))
def test_heartlab_train_runs_the_family(model, tmp_path, make_beats, capsys):
    experiment = f"tiny_{model.lower()}"
    config = tiny_cnn2d_config(tmp_path, make_beats, experiment, f"fit.model = @{model}", "fit.epochs = 1", *TINY[model])
    assert cli.main(["train", str(config)]) == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs" / experiment).iterdir()
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["classes"] == ["normal", "abnormal"]
    assert 0.0 <= metrics["test/recall_macro"] <= 1.0
    assert (run / "best.pt").is_file()
    assert f"fit.model = @{model}" in (run / "config.gin").read_text()
