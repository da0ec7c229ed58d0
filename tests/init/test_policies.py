"""gradprobe.init.apply on whole models: roles, per-gate fans, auto activation, policies."""

import math

import pytest
import torch
from torch import nn

import gradprobe as gp
from gradprobe.errors import GradprobeError, InvalidInputError, UnknownNameError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def second_moment(t):
    return float(t.detach().double().pow(2).mean())


def test_mlp_auto_gain_follows_each_layers_activation():
    model = nn.Sequential(
        nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 10),
    )  # fmt: skip
    report = gp.init.initialize(model, "kaiming_normal", generator=gen())
    assert report["0.weight"].gain == pytest.approx(math.sqrt(2))
    assert report["4.weight"].gain == pytest.approx(5 / 3)
    assert report["6.weight"].gain == 1.0  # the head: linear
    assert second_moment(model[0].weight) == pytest.approx(2 / 512, rel=0.05)
    assert second_moment(model[4].weight) == pytest.approx((5 / 3) ** 2 / 512, rel=0.05)
    assert torch.equal(model[1].weight, torch.ones(512)) and not model[0].bias.any()
    assert "kaiming_normal" in str(report) and "0.weight" in str(report)


def test_auto_uses_execution_order_when_an_example_is_given():
    class Net(nn.Module):  # registered act1 before fc1, but runs fc1 -> act2
        def __init__(self):
            super().__init__()
            self.act1 = nn.Tanh()
            self.fc2 = nn.Linear(64, 4)
            self.act2 = nn.ReLU()
            self.fc1 = nn.Linear(64, 64)

        def forward(self, x):
            return self.fc2(self.act2(self.fc1(x)))

    net = Net()
    assert gp.init.initialize(net, "kaiming_normal")["fc1.weight"].gain == 1.0
    traced = gp.init.initialize(net, "kaiming_normal", example_input=torch.randn(2, 64))
    assert traced["fc1.weight"].gain == pytest.approx(math.sqrt(2))
    assert traced["fc2.weight"].gain == 1.0


def test_explicit_nonlinearity_name_module_callable_and_number():
    for nl, expected in [("relu", math.sqrt(2)), (nn.GELU(), gp.init.gain("gelu")), (0.5, 0.5)]:
        model = nn.Sequential(nn.Linear(4, 4))
        assert gp.init.initialize(model, "xavier_normal", nl)["0.weight"].gain == pytest.approx(
            expected
        )


def test_lstm_each_gate_has_its_own_fan_and_gain():
    lstm = nn.LSTM(512, 1024)
    gp.init.apply(lstm, "xavier_normal", generator=gen(), forget_bias=1.0)
    for weight, fan_in in [(lstm.weight_ih_l0, 512), (lstm.weight_hh_l0, 1024)]:
        for gate, chunk in zip("ifgo", weight.chunk(4), strict=True):
            g = 5 / 3 if gate == "g" else 1.0  # tanh candidate, sigmoid gates
            assert second_moment(chunk) == pytest.approx(g**2 * 2 / (fan_in + 1024), rel=0.05)
    forget = lstm.bias_ih_l0.chunk(4)[1]
    assert torch.equal(forget, torch.ones(1024))
    assert float(lstm.bias_ih_l0.detach().sum()) == 1024 and not lstm.bias_hh_l0.any()


def test_gru_recurrent_orthogonal_per_gate():
    gru = nn.GRU(32, 64, num_layers=2, bidirectional=True)
    gp.init.apply(gru, "kaiming_uniform", recurrent="orthogonal", nonlinearity=1.0)
    for name, p in gru.named_parameters():
        if name.startswith("weight_hh"):
            for chunk in p.chunk(3):
                assert torch.allclose(chunk @ chunk.T, torch.eye(64), atol=1e-5), name


def test_vanilla_rnn_uses_its_nonlinearity():
    rnn = nn.RNN(16, 16, nonlinearity="relu")
    assert gp.init.initialize(rnn, "kaiming_normal")["weight_ih_l0"].gain == pytest.approx(
        math.sqrt(2)
    )


def test_attention_packed_in_proj_is_three_projections():
    mha = nn.MultiheadAttention(256, 4)
    report = gp.init.initialize(mha, "xavier_uniform", generator=gen())
    assert "×3" in report["in_proj_weight"].rule
    for chunk in mha.in_proj_weight.chunk(3):
        assert second_moment(chunk) == pytest.approx(2 / 512, rel=0.05)  # fans (256, 256)
    assert not mha.in_proj_bias.any()


def test_transformer_functional_activation_is_seen():
    layer = nn.TransformerEncoderLayer(32, 4, 64, activation="gelu")
    report = gp.init.initialize(layer, "kaiming_normal")
    assert report["linear1.weight"].gain == pytest.approx(gp.init.gain("gelu"), rel=1e-6)
    assert report["linear2.weight"].gain == 1.0
    assert torch.equal(layer.norm1.weight, torch.ones(32))


def test_conv_transpose_and_embedding_fans():
    deconv = nn.ConvTranspose2d(16, 8, kernel_size=4, stride=2)
    emb = nn.Embedding(1000, 64, padding_idx=3)
    rec = gp.init.initialize(nn.ModuleDict({"d": deconv, "e": emb}), "lecun_normal")
    assert (rec["d.weight"].fan_in, rec["d.weight"].fan_out) == (16 * 16 // 4, 8 * 16)
    assert (rec["e.weight"].fan_in, rec["e.weight"].fan_out) == (1, 64)
    assert second_moment(emb.weight) == pytest.approx(1.0, rel=0.05)
    assert not emb.weight[3].any()


def test_policy_overrides_head_and_skips_a_module():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2))
    before = model[2].weight.clone()

    def policy(module, name):
        if name == "3":
            return "zeros"
        if name == "2":
            return False
        return None

    report = gp.init.initialize(model, "kaiming_normal", policy=policy)
    assert not model[3].weight.any()
    assert torch.equal(model[2].weight, before)
    assert report["2.weight"].rule == "policy"
    scaled = gp.init.initialize(
        nn.Sequential(nn.Linear(256, 256)), "xavier_normal", policy=lambda m, n: {"gain": 0.1}
    )
    assert scaled["0.weight"].gain == 0.1


def test_shared_weights_initialised_once_and_reproducible():
    lin = nn.Linear(8, 8)
    model = nn.Sequential(lin, nn.Tanh(), lin)
    a = gp.init.initialize(model, "orthogonal", generator=gen(5))
    assert sum(r.name.endswith("weight") for r in a.records) == 1
    first = lin.weight.clone()
    gp.init.apply(model, "orthogonal", generator=gen(5))
    assert torch.equal(first, lin.weight)


def test_default_scheme_is_the_models_own_and_seeded():
    model = nn.Sequential(nn.Linear(8, 8), nn.Conv1d(2, 2, 3))
    gp.init.apply(model, "default", generator=gen(1))
    first = [p.clone() for p in model.parameters()]
    gp.init.apply(model, "zeros")
    gp.init.apply(model, "default", generator=gen(1))
    assert all(torch.equal(a, b) for a, b in zip(first, model.parameters(), strict=True))


def test_bad_input_is_explained():
    with pytest.raises(InvalidInputError, match=r"nn\.Module"):
        gp.init.apply(torch.randn(3, 3), "xavier_normal")
    with pytest.raises(InvalidInputError, match="no parameters"):
        gp.init.apply(nn.ReLU(), "xavier_normal")
    with pytest.raises(UnknownNameError, match="Did you mean 'kaiming_normal'"):
        gp.init.apply(nn.Linear(2, 2), "kaiming_normall")
    with pytest.raises(UnknownNameError, match="activation"):
        gp.init.apply(nn.Linear(2, 2), "kaiming_normal", nonlinearity="rleu")
    with pytest.raises(InvalidInputError, match="takes no option"):
        gp.init.apply(nn.Linear(2, 2), "xavier_normal", std=3)
    with pytest.raises(InvalidInputError, match="bias must be"):
        gp.init.apply(nn.Linear(2, 2), "xavier_normal", bias="ones")
    with pytest.raises(InvalidInputError, match="example input could not run"):
        gp.init.apply(nn.Linear(2, 2), "xavier_normal", example_input=torch.randn(3, 5))
    with pytest.raises(GradprobeError, match="forward pass"):
        gp.init.apply(nn.LazyLinear(2), "xavier_normal")


def test_model_on_another_device_than_generator_falls_back_to_copy():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU to put the model elsewhere than the generator")
    model = nn.Linear(64, 64).cuda()
    gp.init.apply(model, "kaiming_normal", generator=gen())
    assert model.weight.is_cuda and torch.isfinite(model.weight).all()
