"""heartlab.models: output shapes on their own input views, the baselines' faithful structure, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from heartlab.data import BEAT_LENGTH, as_view
from heartlab.models import CNN2D, ResNet1D, Transformer1D
from heartlab.models.baselines import ConvBlock

SMALL = {
    CNN2D: dict(hidden=4, num_layers=1),
    Transformer1D: dict(hidden=8, num_heads=2, num_blocks=1, dropout=0.0),
    ResNet1D: dict(channels=4, blocks=2, kernel_size=3),
}


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("num_classes", [2, 5])
@pytest.mark.parametrize("model_class", [CNN2D, Transformer1D, ResNet1D], ids=lambda c: c.__name__)
def test_output_shape(model_class, num_classes):
    model = model_class(num_classes=num_classes, **SMALL[model_class]).eval()
    x = as_view(torch.rand(3, BEAT_LENGTH), model.input_view)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()


def test_input_views():
    assert CNN2D.input_view == "2d"
    assert Transformer1D.input_view == "1d"
    assert ResNet1D.input_view == "1d"


@pytest.mark.parametrize("model_class", [CNN2D, Transformer1D, ResNet1D], ids=lambda c: c.__name__)
def test_backward_reaches_every_parameter(model_class):
    model = model_class(num_classes=3, **SMALL[model_class]).train()
    x = as_view(torch.rand(4, BEAT_LENGTH), model.input_view)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 1]))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_cnn2d_structure(num_layers):
    hidden = 6
    model = CNN2D(hidden=hidden, num_layers=num_layers, num_classes=5)
    blocks = [m for m in model.features if isinstance(m, ConvBlock)]
    assert len(blocks) == 1 + num_layers
    first_conv = blocks[0].layers[0]
    assert isinstance(first_conv, nn.Conv2d) and first_conv.in_channels == 1 and first_conv.out_channels == hidden
    for block in blocks:
        convs = [m for m in block.layers if isinstance(m, nn.Conv2d)]
        relus = [m for m in block.layers if isinstance(m, nn.ReLU)]
        assert len(convs) == 2 and len(relus) == 2
        for conv in convs:
            assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            assert conv.out_channels == hidden
        assert all(conv.in_channels == hidden for conv in convs[1:])
    for block in blocks[1:]:
        assert block.layers[0].in_channels == hidden
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 1
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(48 * hidden, hidden), (hidden, 5)]
    # the features really are (hidden, 8, 6) before flattening
    assert model.features(torch.rand(2, 1, 16, 12)).shape == (2, hidden, 8, 6)


def test_cnn2d_default_size_matches_notebook():
    model = CNN2D()
    assert [m.in_features for m in model.head if isinstance(m, nn.Linear)] == [48 * 16, 16]
    assert model.head[-1].out_features == 2


def test_transformer_embedding_is_strided_to_96_steps():
    model = Transformer1D(hidden=8, num_heads=2, num_blocks=2, num_classes=2)
    assert isinstance(model.embed, nn.Conv1d)
    assert model.embed.stride == (2,) and model.embed.kernel_size == (3,) and model.embed.padding == (1,)
    assert model.embed.in_channels == 1 and model.embed.out_channels == 8
    assert len(model.blocks) == 2
    seen = {}

    def record(module, inputs, output):
        seen["shape"] = output.shape

    model.blocks.register_forward_hook(record)
    model.eval()(as_view(torch.rand(3, BEAT_LENGTH), "1d"))
    assert seen["shape"] == (3, 96, 8)


def test_transformer_hidden_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible"):
        Transformer1D(hidden=10, num_heads=4)


def test_transformer_odd_hidden_works():
    model = Transformer1D(hidden=3, num_heads=1, num_blocks=1, num_classes=2).eval()
    assert model(torch.rand(2, 1, BEAT_LENGTH)).shape == (2, 2)


def test_resnet_even_kernel_raises():
    with pytest.raises(ValueError, match="odd"):
        ResNet1D(kernel_size=4)


def test_resnet_output_does_not_depend_on_batch_mates_in_eval():
    model = ResNet1D(num_classes=2, **SMALL[ResNet1D]).eval()
    x = as_view(torch.rand(4, BEAT_LENGTH), "1d")
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone)


@pytest.mark.parametrize("backend", ["conv2d", "conv1d"])
def test_resnet_dilation_and_squeeze_excitation(backend):
    """Dilation widens the second convolution of each block at no extra parameters; squeeze-and-excitation
    adds 2 * C * (C / r) + C / r + C parameters per block; both keep the output shape on either backend,
    and the two backends agree when given the same weights."""
    from heartlab.models.resnet1d import ResNet1D

    plain = ResNet1D(channels=16, blocks=3, num_classes=5, backend=backend)
    dilated = ResNet1D(channels=16, blocks=3, num_classes=5, backend=backend, dilation=3)
    se = ResNet1D(channels=16, blocks=3, num_classes=5, backend=backend, se_reduction=4)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(dilated) == count(plain)
    assert count(se) - count(plain) == 3 * (2 * 16 * 4 + 4 + 16)
    second = dilated.blocks[0].body[3]
    assert second.dilation[-1] == 3 and second.padding[-1] == 3 * 2
    x = torch.rand(6, 1, 187)
    for model in (dilated, se):
        model.eval()
        assert model(x).shape == (6, 5)
    gate = se.blocks[0].body[-1]
    assert type(gate).__name__ == "SqueezeExcitation"
    with torch.no_grad():
        features = torch.rand(2, 16, 1, 40) if backend == "conv2d" else torch.rand(2, 16, 40)
        scaled = gate(features)
        ratio = (scaled / features).flatten(2)
        assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), atol=1e-5)  # one gate per channel, over time
        assert ((ratio > 0) & (ratio < 1)).all()


@pytest.mark.parametrize("binding", [{"dilation": 0}, {"se_reduction": -1}, {"dilation": 1.5}])
def test_resnet_bad_dilation_or_se_raises(binding):
    from heartlab.models.resnet1d import ResNet1D

    with pytest.raises(ValueError, match="ResNet1D."):
        ResNet1D(**binding)
