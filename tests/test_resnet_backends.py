"""``ResNet1D(backend='conv2d')`` (height-1, channels-last 2D layers) computes the same function as
``backend='conv1d'``: with the same weights, the same logits in eval mode and the same gradients and
BatchNorm statistics in train mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from heartlab.data import BEAT_LENGTH, as_view
from heartlab.models import ResNet1D

CONFIGS = [
    dict(channels=4, blocks=1, kernel_size=3, dropout=0.0),
    dict(channels=8, blocks=2, kernel_size=5, dropout=0.1),
    dict(channels=6, blocks=4, kernel_size=9, dropout=0.3),
    dict(channels=8, blocks=3, kernel_size=5, dropout=0.0, dilation=2, se_reduction=4),  # dilated, squeeze-excitation
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def twin_models(num_classes: int, **kwargs) -> tuple[ResNet1D, ResNet1D]:
    """A conv1d model and a conv2d model holding the same weights (the conv2d weights are the conv1d ones
    with a height-1 axis inserted)."""
    torch.manual_seed(0)
    one_d = ResNet1D(num_classes=num_classes, backend="conv1d", **kwargs)
    torch.manual_seed(1)  # different initial weights: all that matches afterwards comes from the copy
    two_d = ResNet1D(num_classes=num_classes, backend="conv2d", **kwargs)
    source, target = one_d.state_dict(), two_d.state_dict()
    assert source.keys() == target.keys()
    converted = {}
    for name, value in source.items():
        shape = target[name].shape
        if value.shape != shape:  # a convolution weight: (out, in, k) -> (out, in, 1, k)
            assert value.dim() == 3 and shape == (value.shape[0], value.shape[1], 1, value.shape[2]), name
            value = value.unsqueeze(2)
        converted[name] = value.clone()
    two_d.load_state_dict(converted)
    return one_d, two_d


def conv_weights(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=lambda c: f"c{c['channels']}-b{c['blocks']}-k{c['kernel_size']}-d{c.get('dilation', 1)}")
def test_backends_give_the_same_logits(kwargs):
    one_d, two_d = twin_models(num_classes=5, **kwargs)
    assert len(conv_weights(one_d)) == 1 + 2 * kwargs["blocks"]
    assert all(isinstance(m, nn.Conv1d) for m in one_d.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d)))
    assert all(isinstance(m, nn.Conv2d) for m in two_d.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d)))

    # Realistic BatchNorm statistics (from a few training-mode passes of the conv1d model), copied into the
    # conv2d model, so that eval mode normalises with them and the output depends on the input.
    generator = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for _ in range(3):
            one_d(as_view(torch.rand(16, BEAT_LENGTH, generator=generator), ResNet1D.input_view))
    one_d, two_d = one_d.eval(), two_d.eval()
    state = {k: (v.unsqueeze(2) if v.dim() == 3 else v) for k, v in one_d.state_dict().items()}
    two_d.load_state_dict(state)

    x = as_view(torch.rand(7, BEAT_LENGTH, generator=torch.Generator().manual_seed(2)), ResNet1D.input_view)
    with torch.no_grad():
        a, b = one_d(x), two_d(x)
        # the feature maps before global average pooling, position by position: (B, C, L) and (B, C, 1, L)
        features_1d = one_d.blocks(one_d.stem(x))
        features_2d = two_d.blocks(two_d.stem(x.unsqueeze(2).contiguous(memory_format=torch.channels_last)))
    assert a.shape == b.shape == (7, 5)
    assert a.std(dim=0).max() > 1e-3  # not degenerate: the logits depend on the beat
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert features_2d.shape[2] == 1 and features_1d.shape[-1] == features_2d.shape[-1]
    assert features_1d.std() > 0.1
    torch.testing.assert_close(features_2d.squeeze(2), features_1d, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs", CONFIGS, ids=lambda c: f"c{c['channels']}-b{c['blocks']}-k{c['kernel_size']}-d{c.get('dilation', 1)}")
def test_backends_give_the_same_gradients(kwargs):
    one_d, two_d = twin_models(num_classes=3, **kwargs)
    x = as_view(torch.rand(6, BEAT_LENGTH, generator=torch.Generator().manual_seed(3)), ResNet1D.input_view)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    outputs = {}
    for name, model in (("conv1d", one_d), ("conv2d", two_d)):
        model.train()
        torch.manual_seed(4)  # the same dropout mask in both
        logits = model(x)
        nn.functional.cross_entropy(logits, y).backward()
        outputs[name] = logits.detach()
    torch.testing.assert_close(outputs["conv2d"], outputs["conv1d"], atol=1e-5, rtol=1e-5)

    grads_2d = dict(two_d.named_parameters())
    for name, parameter in one_d.named_parameters():
        assert parameter.grad is not None, name
        other = grads_2d[name].grad
        assert other is not None, name
        assert parameter.grad.abs().max() > 0, name
        torch.testing.assert_close(other.reshape(parameter.grad.shape), parameter.grad, atol=1e-5, rtol=1e-4, msg=name)

    # More training-mode passes (past the warm start of the BatchNorm momentum) update the running
    # statistics identically, and the eval-mode outputs that use them stay equal.
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(15):
            batch = as_view(torch.rand(6, BEAT_LENGTH, generator=generator), ResNet1D.input_view)
            one_d(batch), two_d(batch)
    buffers_2d = dict(two_d.named_buffers())
    for name, buffer in one_d.named_buffers():
        if buffer.is_floating_point():
            torch.testing.assert_close(buffers_2d[name], buffer, atol=1e-6, rtol=1e-5, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(two_d.eval()(x), one_d.eval()(x), atol=1e-5, rtol=1e-5)
