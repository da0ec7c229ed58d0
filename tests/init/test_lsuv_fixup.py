import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import InvalidInputError


def output_variances(model, x, layer_type=nn.Linear):
    out = {}

    def record(name, output):
        out.setdefault(name, float(output.var()))

    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=name: record(n, o))
        for name, m in model.named_modules()
        if isinstance(m, layer_type)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return out


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_lsuv_every_layer_has_unit_output_variance(activation):
    torch.manual_seed(0)
    layers = [nn.Linear(64, 128), activation()]
    for _ in range(19):
        layers += [nn.Linear(128, 128), activation()]
    model = nn.Sequential(*layers)
    x = torch.randn(512, 64) * 3 + 1
    report = gp.init.initialize(model, "lsuv", data=x, tol=0.1)
    variances = output_variances(model, x)
    assert len(variances) == 20
    for name, var in variances.items():
        assert abs(var - 1) < 0.1, (name, var)
    assert set(report.details["iterations"]) == set(variances)
    assert all(0 <= it <= 10 for it in report.details["iterations"].values())


def test_lsuv_on_a_cnn_and_bad_batches():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten())
    x = torch.randn(32, 3, 12, 12)
    gp.init.apply(model, "lsuv", data=x)
    for var in output_variances(model, x, nn.Conv2d).values():
        assert abs(var - 1) < 0.1
    with pytest.raises(InvalidInputError, match="data-dependent"):
        gp.init.apply(model, "lsuv")
    with pytest.raises(InvalidInputError, match="could not run the data batch"):
        gp.init.apply(model, "lsuv", data=torch.randn(4, 5))


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(width, width), nn.Linear(width, width), nn.ReLU()

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


def test_fixup_zeroes_branch_ends_and_head_and_scales_the_rest():
    torch.manual_seed(0)
    width, depth = 256, 8
    model = nn.Sequential(nn.Linear(16, width), *[Block(width) for _ in range(depth)])
    model.append(nn.Linear(width, 10))
    x = torch.randn(8, 16)
    report = gp.init.initialize(
        model, "fixup", example_input=x, generator=torch.Generator().manual_seed(0)
    )
    assert report.details["blocks"] == depth
    with torch.no_grad():
        stem = model[0](x)
        assert torch.allclose(model[1 : depth + 1](stem), stem)  # every block is the identity
        assert not model(x).any()  # zero head
    # fc1 in each branch: He std sqrt(2/width) times L^(-1/(2m-2)) = depth^(-1/2) for m = 2
    expected = (2 / width) ** 0.5 * depth**-0.5
    assert float(model[1].fc1.weight.detach().std()) == pytest.approx(expected, rel=0.05)


def test_fixup_without_blocks_explains():
    with pytest.raises(InvalidInputError, match="no residual blocks"):
        gp.init.apply(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), "fixup")
