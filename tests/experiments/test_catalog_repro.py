"""The options issue 18's paper-scale runs added to the catalog: He's conv net, clipping for
every adding-problem variant, more steps for deep trainability cells, the extra presets."""

import pytest
import torch

import gradprobe as gp
from gradprobe.errors import GradprobeError
from gradprobe.experiments.catalog import he2015, rnn_vs_lstm


def tiny(tmp_path, name, **overrides):
    return gp.experiments.run(name, out=tmp_path, preset="quick", quiet=True, **overrides)


@pytest.mark.parametrize(
    ("name", "preset"),
    [("he2015", "paper30"), ("rnn_vs_lstm", "t200"), ("glorot2010", "shapeset"),
     ("trainability", "edge")],
)  # fmt: skip
def test_paper_scale_presets_resolve(name, preset):
    cfg = gp.experiments.config(name, preset)
    assert cfg == gp.experiments.config(name, preset)  # frozen, reproducible


def test_he2015_conv_net_has_depth_weight_layers():
    model = he2015.convnet(30, 4, 16, 10, 8)
    assert len(he2015.weight_layer_names(model)) == 30  # 27 conv + 3 fc, as the paper's
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_he2015_conv_arch_runs_beside_the_mlp(tmp_path):
    r = tiny(tmp_path, "he2015", depths=(6,), archs=("mlp", "conv"), width=16, channels=4,
             steps=10)  # fmt: skip
    keys = {tuple(sorted(u)) for u, _ in r.units}
    assert ("depth", "init", "seed") in keys  # the MLP's unit keys are as before
    assert ("arch", "depth", "init", "seed") in keys
    conv = r.numbers["conv"]["6"]
    assert set(conv) == {"xavier", "he"} and set(r.numbers["6"]) == {"xavier", "he"}
    # 5 layers below the head, so the per-layer ratio is over 4 steps; Xavier loses ~√2 each
    assert conv["xavier"]["init_log2_ratio_per_layer"] < conv["he"]["init_log2_ratio_per_layer"]


def test_he2015_bad_arch_and_too_shallow_conv():
    with pytest.raises(GradprobeError, match="arch"):
        gp.experiments.config("he2015", archs=("resnet",))
    with pytest.raises(GradprobeError, match="depth >= 4"):
        gp.experiments.config("he2015", archs=("conv",), depths=(3,))


def test_rnn_vs_lstm_clip_reaches_every_trained_variant(tmp_path, monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        calls.append(max_norm)
        return real(params, max_norm, *a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    tiny(tmp_path, "rnn_vs_lstm", lengths=(10,), variants=("rnn",), steps=3,
         train_lengths=(10,), train_variants=("lstm_fb3", "rnn_clip"), clip=0.5)  # fmt: skip
    # lstm_fb3 takes the config's 0.5; rnn_clip keeps its own 1.0
    assert sorted(calls) == [0.5] * 3 + [1.0] * 3


def test_rnn_vs_lstm_no_clip_by_default(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(a))
    tiny(tmp_path, "rnn_vs_lstm", lengths=(10,), variants=("rnn",), steps=2,
         train_lengths=(10,), train_variants=("lstm_fb3",))  # fmt: skip
    assert calls == []


def test_rnn_vs_lstm_negative_clip():
    with pytest.raises(GradprobeError, match="clip"):
        gp.experiments.config("rnn_vs_lstm", clip=-1.0)
    assert rnn_vs_lstm.Config(clip=0.0).clip == 0.0


def test_trainability_steps_per_layer_trains_deep_cells_longer(tmp_path):
    r = tiny(tmp_path, "trainability", depths=(5, 10), sigma_w2=(1.5,), width=16, steps=20,
             steps_per_layer=3)  # fmt: skip
    assert r.numbers["steps"] == [20, 30]
    assert sorted(n["steps"] for _u, n in r.units) == [20, 30]
    with pytest.raises(GradprobeError, match="steps_per_layer"):
        gp.experiments.config("trainability", steps_per_layer=-1)


def test_rnn_vs_lstm_flush_denormal_only_while_training(tmp_path, monkeypatch):
    calls = []
    real = torch.set_flush_denormal
    monkeypatch.setattr(torch, "set_flush_denormal", lambda on: calls.append(on) or real(on))
    tiny(tmp_path, "rnn_vs_lstm", lengths=(10,), variants=("rnn",), steps=2,
         train_lengths=(10,), train_variants=("rnn",), flush_denormal=True)  # fmt: skip
    assert calls == [True, False]  # on for the one training unit, then back to the default
    assert torch.tensor(1e-40).item() != 0.0  # denormals are kept again afterwards
