"""``gp.fix.try_remedies``: candidates re-checked at initialisation and ranked as the diagnosis
judges; a healthy model keeps its own init; architecture edits where no init is healthy; the
finding's remedy and the ranking agree. (Moved here from tests/diagnose/test_known_cases.py,
where the call was ``gp.diagnose.try_remedies``.)
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradprobe as gp
from diagnose import _zoo as Z  # tests/diagnose


def mlp(depth, width, act, d_in=32, d_out=10):
    layers = [nn.Linear(d_in, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(128, 32, generator=g), torch.randint(0, 10, (128,), generator=g)


def _kinds(findings):
    return {f.kind for f in findings if f.severity in ("warning", "error")}


def _first_remedy(model, *batch):
    found = [f for f in gp.check(model, *batch).findings if f.severity != "info"]
    return found[0].remedy


def test_try_remedies_ranks_a_variance_preserving_scheme_first_and_unit_gaussian_low(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(30, 64, nn.ReLU), "normal")
    before = [p.clone() for p in model.parameters()]
    ranking = gp.fix.try_remedies(model, *data)
    order = [c.scheme for c in ranking.candidates]
    assert order[0] == "kaiming_normal"  # the finding's remedy, healthy
    given = ranking.candidates[order.index("as given")]
    assert not given.healthy  # below every healthy candidate
    assert order.index("as given") >= sum(c.healthy for c in ranking.candidates)
    assert _kinds(ranking.best.findings) == set() and ranking.best.healthy
    assert ranking.best.code.startswith("gp.init.apply(model")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_check_try_remedies_attaches_the_ranking(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(6, 32, nn.Sigmoid), "standard")
    result = gp.check(model, *data, try_remedies=True)
    assert result.ranking is not None
    assert result.ranking.best.score <= result.ranking.candidates[-1].score
    assert "as given" in {c.scheme for c in result.ranking.candidates}
    rows = result.ranking.rows()
    assert rows[0]["rank"] == 1 and rows[0]["code"] == result.ranking.best.code
    assert 'id="ranking-table"' in result._repr_html_()  # Jupyter shows it too


@pytest.mark.parametrize("name", ["gpt2", "bert", "vit"])
def test_try_remedies_displaced_a_tuned_init_with_default(name):
    """GPT-2, BERT and ViT ranked their own init last of 8 and picked ``default`` (each
    module's reset_parameters), which broke GPT-2's training: a healthy model keeps it."""
    model, inputs, target = Z.HEALTHY[name](0, 0)
    ranking = gp.fix.try_remedies(model, inputs, target, seeds=2)
    assert ranking.best.scheme == "as given" and ranking.best.healthy
    assert ranking.best.code == "# keep the model's current weights"


def test_the_finding_said_xavier_for_a_deep_tanh_net_that_the_ranking_put_fourth(data):
    torch.manual_seed(0)
    model = gp.init.apply(mlp(20, 128, nn.Tanh), "standard")
    remedy = _first_remedy(model, *data)
    ranking = gp.fix.try_remedies(model, *data)
    assert ranking.recommended == remedy.code == "gp.init.apply(model, 'lecun_normal')"
    assert ranking.best.scheme == "lecun_normal" and ranking.best.healthy


@pytest.mark.parametrize(
    ("name", "best"),
    [
        ("relu_mlp_unit_gaussian", "kaiming_normal"),
        ("gelu_unit_gaussian", "kaiming_normal"),
        ("sigmoid_mlp_standard", "ReLU + kaiming_normal"),
        ("resnet_no_norm_unit_gaussian", "fixup"),
        ("transformer_unit_gaussian", "own init"),
    ],
)
def test_the_finding_and_the_ranking_agree(name, best):
    model, inputs, target = Z.BROKEN[name][0](0, 0)
    batch = (inputs,) if target is None else (inputs, target)
    remedy = _first_remedy(model, *batch)
    ranking = gp.fix.try_remedies(model, *batch, seeds=2)
    assert ranking.best.scheme == best and ranking.best.healthy
    assert ranking.best.code == ranking.recommended == remedy.code.split("  #")[0].strip()


def test_a_he_initialised_narrow_stack_was_told_to_reinitialise_with_kaiming():
    model, x, y = Z.narrow_relu(0, 0)
    ranking = gp.fix.try_remedies(model, x, y, seeds=2)
    assert not any(c.healthy for c in ranking.candidates if c.edit is None)
    assert ranking.best.scheme == "BatchNorm" and ranking.best.healthy
    assert ranking.best.code == "model = gp.fix.insert_norm(model)"


@pytest.mark.slow
def test_deep_post_ln_gets_pre_ln_where_no_init_is_healthy():
    model, ids, target = Z.deep_post_ln(0, 0)
    ranking = gp.fix.try_remedies(
        model, ids, target, schemes=("as given", "kaiming_normal", "xavier_normal"), seeds=1
    )
    assert ranking.best.scheme == "Pre-LN" and ranking.best.healthy
    assert ranking.best.code == "gp.fix.set_norm_first(model)" == ranking.recommended
    layers = [m for m in model.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    assert not any(m.norm_first for m in layers)  # the model itself is unchanged


def test_a_healthy_model_keeps_its_init_even_where_another_scores_better(data):
    """Kaiming on a ReLU stack is healthy: the model as given stays first, whatever the
    finite-width scores of orthogonal or LSUV (within the diagnosis's margins too)."""
    torch.manual_seed(0)
    model = gp.init.apply(mlp(8, 64, nn.ReLU), "kaiming_normal")
    ranking = gp.fix.try_remedies(model, *data, seeds=2)
    assert ranking.best.scheme == "as given" and ranking.best.healthy
    assert [c.healthy for c in ranking.candidates] == sorted(
        (c.healthy for c in ranking.candidates), reverse=True
    )


def test_warnings_of_a_scheme_are_notes_of_its_candidate():
    model, inputs, _ = Z.gpt2(0, 0)
    ranking = gp.fix.try_remedies(model, inputs, schemes=("as given", "kaiming_normal"), seeds=1)
    kaiming = next(c for c in ranking.candidates if c.scheme == "kaiming_normal")
    assert any("Conv1D" in n or "fan-in" in n for n in kaiming.notes)
