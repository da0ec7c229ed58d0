"""Nothing recorded is lost: SIGKILL at random points, two writers, a disk that fills up."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from torch import nn

import gradprobe as gp
from gradprobe.errors import RunStoreError
from gradprobe.run import Run

# The writer imports only the run store (no torch), so 20 kills cost seconds, not minutes.
WRITER = textwrap.dedent(
    """
    import sys, time
    from gradprobe.run import Run
    run = Run.create(sys.argv[1])
    for layer in ("a", "b", "c"):
        run.add_layer(layer, "module")
    step = 0
    while True:
        rows = [(l, q, s, float(step)) for l in "abc" for q in ("activation", "grad_output")
                for s in ("std", "rms", "max_abs")]
        run.write_step(step, rows)
        print(step, flush=True)
        step += 1
        time.sleep(0.002)
    """
)


def test_sigkill_at_20_random_points_keeps_every_committed_step(tmp_path):
    rng = random.Random(0)
    procs = []
    for i in range(20):
        path = tmp_path / f"run{i}.sqlite"
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        procs.append((proc, path, rng.uniform(0.0, 0.3)))
    for proc, _, delay in procs:
        first = proc.stdout.readline()  # at least one step committed
        assert first.strip() == "0"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    for proc, path, _ in procs:
        rest = proc.communicate(timeout=30)[0]
        committed = {0} | {int(line) for line in rest.split()}
        assert proc.returncode == -signal.SIGKILL
        run = Run.load(path)
        stored = set(run.steps)
        assert committed <= stored, sorted(committed - stored)[:5]
        assert stored == set(range(len(stored)))  # no holes: steps are whole transactions
        names, steps, values = run.matrix("activation", "std")
        assert names == ["a", "b", "c"] and (values == [steps] * 3).all()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from gradprobe.run import Run
    run = Run.create(sys.argv[1])
    run.add_layer("a", "module")
    run.write_step(0, [("a", "activation", "std", 1.0)])
    print("ready", flush=True)
    sys.stdin.readline()
    run.write_step(1, [("a", "activation", "std", 2.0)])
    """
)


def test_a_second_writer_gets_a_clear_error_and_the_file_survives(tmp_path):
    path = tmp_path / "shared.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunStoreError, match=f"being written by process {holder.pid}"):
            Run.create(path, overwrite=True)
        with pytest.raises(RunStoreError, match="being written"):
            gp.watch(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), path=path, overwrite=True)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
    assert Run.load(path).steps == [0, 1]
    replacement = Run.create(path, overwrite=True)  # the writer is gone: allowed now
    replacement.close()


FILLER = textwrap.dedent(
    """
    import resource, signal, sys
    from gradprobe.errors import RunStoreError
    from gradprobe.run import Run
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk: writes fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, 96 * 1024))
    run = Run.create(sys.argv[1])
    run.add_layer("a", "module")
    step = 0
    try:
        while step < 100000:
            run.write_step(step, [("a", "activation", f"s{i}", float(step)) for i in range(40)])
            print(step, flush=True)
            step += 1
    except RunStoreError as err:
        print("ERROR", err, flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_disk_that_fills_up_keeps_the_steps_before_it(tmp_path):
    path = tmp_path / "full.sqlite"
    out = subprocess.run(
        [sys.executable, "-c", FILLER, str(path)], capture_output=True, text=True, timeout=120
    )
    lines = out.stdout.split("\n")
    error = [line for line in lines if line.startswith("ERROR")]
    assert error, out.stdout[-500:] + out.stderr[-2000:]
    assert "the steps before it are kept" in error[0]
    committed = [int(line) for line in lines if line.strip().isdigit()]
    assert committed, "the limit should allow a few steps"
    assert os.path.getsize(path) <= 96 * 1024
    run = Run.load(path)
    assert set(committed) <= set(run.steps)
