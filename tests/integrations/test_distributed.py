"""DDP and FSDP2 on CPU (gloo, 2 processes): the combined numbers are those of one process
on the concatenated batch; two collectives per logged step; rank 0 alone writes the run."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gradprobe as gp
from gradprobe.probe.probe import Probe

from . import _dist_worker as W

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch built without torch.distributed"
)
WORLD = 2
KINDS = ["ddp", "ddp_device", "fsdp"]  # ddp_device: the accelerator code path, on the CPU
HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """Start the ranks (gloo on 127.0.0.1); always reap them, whatever happens."""
    folder = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    port = _free_port()
    worker = [sys.executable, str(HERE / "_dist_worker.py")]
    procs = [
        subprocess.Popen(
            [*worker, str(r), str(WORLD), str(port), str(folder)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(WORLD)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=150)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    return folder


@pytest.fixture(scope="module")
def reference():
    """One process, the whole batch: plain model, same init, same data and schedule."""
    torch.set_num_threads(1)
    return W.train(W.make_model(), 0, 1, None, data_world=WORLD)  # exact search every step


def _load(out: Path, kind: str, rank: int) -> dict:
    return json.loads((out / f"{kind}.rank{rank}.json").read_text())


def _table(rows) -> dict:
    return {(s, la, q, st): v for s, la, q, st, v in rows}


@pytest.mark.parametrize("kind", KINDS)
def test_combined_stats_equal_one_process_on_the_whole_batch(out, reference, kind):
    got = _table(_load(out, kind, 0)["rows"])
    want = _table(reference.rows())
    assert set(want) == set(got)
    compared = set()
    for key in want:  # steps 0-2 clean, step 4 after the NaN of step 3: NaN and Inf alike
        a, b = got[key], want[key]
        if math.isnan(b) or math.isinf(b):
            assert a == b or (math.isnan(a) and math.isnan(b)), key
            continue
        # float32 sums in another order; std of a gradient subtracts nearly equal numbers
        tol = 1e-4 if key[3] == "std" else 2e-5
        assert a == pytest.approx(b, rel=tol, abs=1e-9), key
        compared.add(key[2:])
    for needed in [
        ("activation", "rms"), ("activation", "dead"), ("activation", "saturated"),
        ("grad_output", "norm"), ("param_grad", "norm"), ("weight", "norm"),
        ("update", "ratio"), ("activation", "nonfinite"),
    ]:  # fmt: skip
        assert needed in compared, needed


def _raw_values(steps: int) -> dict:
    """Every activation and ∂L/∂output of one process on the whole batch, with plain hooks."""
    torch.set_num_threads(1)
    model = W.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen: dict = {}
    step = [0]

    def keep(name):
        def hook(module, args, out):
            seen[(step[0], name, "activation")] = out.detach().numpy().ravel().copy()
            out.register_hook(
                lambda g: seen.__setitem__((step[0], name, "grad_output"), g.numpy().ravel().copy())
            )

        return hook

    for name, module in model.named_children():
        module.register_forward_hook(keep(name))
    for i, (x, y) in enumerate(W.batches(WORLD)[:steps]):
        step[0] = i
        seen[(i, "(input)", "activation")] = x.numpy().ravel().copy()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    return seen


def _right_closed_counts(values: np.ndarray, r: float, bins: int) -> np.ndarray:
    """Counts in (e_{i-1}, e_i], e = linspace(-r, r): np.histogram counts [a, b), so count -x."""
    edges = np.linspace(-r, r, bins + 1)
    return np.histogram(-values, bins=-edges[::-1])[0][::-1]


@pytest.mark.parametrize("kind", KINDS)
def test_histograms_are_summed_on_a_common_grid(out, kind):
    """The ranks' bins are merged on [-R, R], R the widest rank's power of two: the counts are
    those of every value of the whole batch on that grid (exact zeros counted apart)."""
    hists = _load(out, kind, 0)["hists"]
    raw = _raw_values(W.UNLOGGED)
    checked = 0
    for key, h in hists.items():
        s, layer, q = key.split("|")
        if int(s) >= W.UNLOGGED:
            continue
        values = raw[(int(s), layer, q)]
        r = h["hi"]
        assert math.log2(r) == round(math.log2(r))  # a power of two
        assert np.abs(values).max() <= r < 2.01 * np.abs(values).max()
        nonzero = values[values != 0]
        assert h["zero"] == values.size - nonzero.size and h["below"] == h["above"] == 0
        np.testing.assert_array_equal(h["counts"], _right_closed_counts(nonzero, r, 16))
        checked += 1
    assert checked == 3 * 11  # 3 steps, input + 5 activations + 5 gradients


@pytest.mark.parametrize("kind", KINDS)
def test_first_nonfinite_names_its_rank(out, reference, kind):
    ranks = [_load(out, kind, r) for r in range(WORLD)]
    events = {e[1]: e for e in ranks[0]["events"]}
    ref = {e.phase: e for e in reference.events()}
    assert set(events) == set(ref) == {"forward", "backward"}
    for phase, (step, _, layer, detail) in events.items():
        assert (step, layer) == (ref[phase].step, ref[phase].layer) == (W.UNLOGGED, layer)
        assert f" on rank {WORLD - 1}" in detail  # the NaN was in the last rank's rows
        assert detail.replace(f" on rank {WORLD - 1}", "") == ref[phase].detail
    assert ranks[1]["events"] == ranks[0]["events"]  # every rank knows, rank 0 writes


@pytest.mark.parametrize("kind", KINDS)
def test_two_collectives_per_logged_step_and_only_rank0_writes(out, kind):
    ranks = [_load(out, kind, r) for r in range(WORLD)]
    logged = len(ranks[0]["steps"])
    assert logged == W.STEPS - 1
    for r, data in enumerate(ranks):
        assert data["collectives"] == 2 * logged
        assert data["meta"] == {"world_size": WORLD, "rank": r}
        assert data["rows"] == ranks[0]["rows"]  # the same combined numbers on every rank
    stored = _table(gp.Run.load(out / f"{kind}.sqlite").rows())
    combined = _table(ranks[0]["rows"])
    assert stored.keys() == combined.keys()
    assert all(stored[k] == combined[k] or math.isnan(stored[k]) for k in stored)
    assert sorted(p.name for p in out.glob(f"{kind}.*sqlite")) == [f"{kind}.sqlite"]


def test_auto_check_of_an_unlogged_step_is_the_same_on_every_rank(out, monkeypatch):
    """first_nonfinite="auto": the NaN of the unlogged step is seen in the combined gradient
    norm at the next logged step, on every rank alike (no collective of its own). One
    process on the CPU names the forward's module at the unlogged step itself (its outputs
    noted, probe/_trail.py), which ranks cannot (each holds a part of the batch): the
    events are compared with a one-process run without that."""
    ranks = [_load(out, "ddp_auto", r) for r in range(WORLD)]
    at_once = W.train(W.make_model(), 0, 1, None, data_world=WORLD, search="auto")
    assert at_once.meta["nonfinite_seen"][0]["located_step"] == W.UNLOGGED
    monkeypatch.setattr(Probe, "_locate_in_trail", lambda self, step: None)
    want = W.train(W.make_model(), 0, 1, None, data_world=WORLD, search="auto")
    [episode] = ranks[0]["meta"]["nonfinite_seen"]
    assert episode["step"] == W.UNLOGGED and "gradient" in episode["seen_in"]
    ref = want.meta["nonfinite_seen"][0]  # one process on the CPU: read at once
    assert (episode["located_step"], ref["located_step"]) == (W.UNLOGGED + 1,) * 2
    assert [e[:3] for e in ranks[0]["events"]] == [
        [e.step, e.phase, e.layer] for e in want.events()
    ]
    assert ranks[1]["meta"]["nonfinite_seen"] == ranks[0]["meta"]["nonfinite_seen"]
    assert ranks[1]["events"] == ranks[0]["events"]
    assert ranks[0]["collectives"] == 2 * len(ranks[0]["steps"])


def test_nonfinite_in_a_logged_step_names_its_rank(out):
    got = _load(out, "ddp_logged", 0)["events"]
    want = W.train(W.make_model(), 0, 1, None, data_world=WORLD, every=1).events()
    assert [e[:3] for e in got] == [[e.step, e.phase, e.layer] for e in want]
    for (*_, detail), ref in zip(got, want, strict=True):
        assert "of its values) on rank 1" in detail  # the fraction of the whole batch, and where
        assert detail.replace(" on rank 1", "") == ref.detail


def test_recurrent_time_step_norms_are_global(out):
    """‖∂L/∂h_t‖ and ‖∂L/∂x_t‖ of a GRU: sqrt of the ranks' squared norms (gradient scale 1/2)."""
    got = json.loads((out / "rnn.rank0.json").read_text())
    want = W.train_recurrent(W.Recurrent(), 0, 1, data_world=WORLD)
    assert got.keys() == want.keys() and len(got) == 4
    for key, values in want.items():
        assert len(values) == 5, key  # one per time step
        assert got[key] == pytest.approx(values, rel=2e-5), key


def test_watch_distributed_needs_a_process_group():
    model = W.make_model()
    with pytest.raises(gp.GradprobeError, match="init_process_group"):
        gp.watch(model, distributed=True)
    with (
        pytest.warns(gp.errors.GradprobeWarning, match="recorded no step"),
        gp.watch(model, distributed="auto") as probe,
    ):  # no group: a plain probe (that recorded nothing, so it warns at close)
        assert probe._dist is None
    with pytest.raises(gp.GradprobeError, match="True, False or 'auto'"):
        gp.watch(model, distributed="yes")


def test_all_ranks_write_names_a_file_per_rank(tmp_path):
    from gradprobe.probe._distributed import rank_path

    assert rank_path(tmp_path / "a.sqlite", 1) == tmp_path / "a.rank1.sqlite"
    assert rank_path(tmp_path, 3) == tmp_path / "run.rank3.sqlite"  # a folder: run.sqlite in it
