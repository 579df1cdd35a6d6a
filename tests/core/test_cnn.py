import pytest
import torch

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.networks.cnn import CNN


@pytest.mark.parametrize("channels", [(16, 32, 32, 16), (64, 128, 256, 128, 64), (8,), (3, 5)])
def test_output_shape(channels):
    net = CNN(channels=channels)
    x = torch.randn(2, 1, 28, 28)
    assert net(x, torch.tensor([1, 1000])).shape == x.shape
    assert net.channels == tuple(channels)


def test_structure_follows_the_study():
    net = CNN(channels=(16, 32, 32, 16))
    assert [b.conv.kernel_size for b in net.blocks] == [(7, 7)] * 4
    assert [b.conv.out_channels for b in net.blocks] == [16, 32, 32, 16]
    assert net.blocks[0].norm.normalized_shape == (16, 28, 28)
    assert net.out.kernel_size == (3, 3) and net.out.out_channels == 1


def test_time_changes_the_output_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = CNN(channels=(8, 8))
    x = torch.randn(2, 1, 28, 28)
    a, b = net(x, torch.tensor([1, 1])), net(x, torch.tensor([900, 900]))
    assert not torch.allclose(a, b)
    (a.sum() + b.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("channels", [[], [16, 0], [16, -2]])
def test_bad_channels(channels):
    with pytest.raises(DDPMError, match="non-empty list of positive integers"):
        CNN(channels=channels)
