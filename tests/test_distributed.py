"""Several processes under torchrun train one model as one process does, write one set of files, and
survive a killed worker (elastic restart) and Ctrl-C (--resume) with the weights an uninterrupted run has.

Every group here is two gloo processes on this machine (``torchrun --standalone``, 127.0.0.1), one
thread each; everything has a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Terminal, run_cli, same_weights, synthetic_npz_file, weights

from digitrec import checkpoint

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SMALL = ["--model", "seed003-small", "--epochs", "2", "--batch-size", "32", "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05",
         "--rotation", "8", "--validation", "0.1"]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DIGITREC_CHECK_REPLICAS": "1", **extra}


def launch(*args: str, restarts: int = 0) -> list[str]:
    return [*TORCHRUN, f"--max-restarts={restarts}", "-m", "digitrec", *args]


def torchrun(*args: str, cwd: Path, restarts: int = 0, **popen: object) -> subprocess.Popen:
    return subprocess.Popen(launch(*args, restarts=restarts), cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_npz_file(tmp_path_factory.mktemp("group") / "digits.npz", 2000, seed=4)


@pytest.fixture(scope="session")
def uninterrupted(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two processes, start to end, checking after every step that both hold the same weights."""
    folder = tmp_path_factory.mktemp("whole")
    code, output = finish(torchrun("train", *SMALL, "--data", f"npz:{digits}", "--out", "run", "--quiet", cwd=folder))
    assert code == 0, output
    return folder / "run"


def test_two_processes_write_one_run_with_the_same_weights_in_both(uninterrupted: Path):
    assert sorted(p.name for p in uninterrupted.parent.iterdir()) == ["run"]  # one run directory, nothing beside it
    assert sorted(p.name for p in uninterrupted.iterdir()) == ["best.safetensors", "config.json", "curves.png", "final.onnx",
                                                               "final.safetensors", "metrics.jsonl", "state.safetensors"]
    history = [line for line in (uninterrupted / "metrics.jsonl").read_text().splitlines() if line]
    assert len(history) == 2  # one line per epoch, not one per process
    state = checkpoint.load_state(uninterrupted / "state.safetensors")
    assert state["finished"] and len(state["rank_rngs"]) == 1  # the second process's random state is kept too


def test_two_processes_train_the_weights_one_process_trains_with_the_same_global_batch(digits: Path, tmp_path: Path):
    # A CNN without BatchNorm or dropout, whose batches of 33 split unevenly (17 and 16): each share's loss must be
    # weighted by its size. The two runs differ by summation order alone, 1.2e-5 at most (1 epoch, 55 steps); weighting
    # the shares equally leaves 8e-3. BatchNorm's per-process statistics are what the recipes' accuracy under torchrun
    # is measured for, on MNIST (benchmarks/scaling.py).
    recipe = ["train", "--model", "seed001-cnn4", "--epochs", "1", "--batch-size", "33", "--optimizer", "sgd", "--momentum", "0.9",
              "--lr", "0.05", "--validation", "0.1", "--data", f"npz:{digits}", "--quiet"]
    alone = run_cli(*recipe, "--out", "alone", cwd=tmp_path, env=environment())
    assert alone.returncode == 0, alone.stderr
    code, output = finish(torchrun(*recipe, "--out", "together", cwd=tmp_path))
    assert code == 0, output
    one, two = weights(tmp_path / "alone"), weights(tmp_path / "together")
    assert one.keys() == two.keys()
    assert all(np.allclose(one[name], two[name], rtol=0, atol=1e-4) for name in one)


def _worker(parent: int, rank: int) -> int:
    """The pid of the process torchrun started as ``rank``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank} under {parent}")


def test_a_killed_worker_restarts_the_group_which_resumes_to_the_same_weights(digits: Path, uninterrupted: Path, tmp_path: Path):
    terminal = Terminal(launch("train", *SMALL, "--data", f"npz:{digits}", "--out", "run", restarts=1), environment(),
                        cwd=tmp_path)
    run = tmp_path / "run"
    assert terminal.reached(epoch=2, step=3), "the run ended before a worker could be killed"
    os.kill(_worker(terminal.process.pid, 1), signal.SIGKILL)
    code, output = terminal.finish()
    assert code == 0, output
    assert "torchrun restarted the group: continuing run" in output
    assert same_weights(run, uninterrupted)


def test_ctrl_c_stops_every_process_at_one_step_and_resume_under_torchrun_finishes_the_same(digits: Path, uninterrupted: Path,
                                                                                           tmp_path: Path):
    terminal = Terminal(launch("train", *SMALL, "--data", f"npz:{digits}", "--out", "run"), environment(), cwd=tmp_path,
                        start_new_session=True)
    run = tmp_path / "run"
    assert terminal.reached(epoch=2, step=3), "the run ended before it could be stopped"
    os.killpg(terminal.process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the launcher and both workers
    code, output = terminal.finish(timeout=120)
    assert code != 0
    command = "torchrun --nproc_per_node=2 -m digitrec train --resume run"
    assert f"continue with: {command}" in output, output
    assert checkpoint.load_state(run / "state.safetensors")["step"] > 0

    code, output = finish(subprocess.Popen([*TORCHRUN, "-m", "digitrec", "train", "--resume", "run", "--quiet"], cwd=tmp_path,
                                           env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    assert code == 0, output
    assert same_weights(run, uninterrupted)


def test_an_experiment_under_torchrun_shares_its_runs_out_and_writes_one_report(digits: Path, tmp_path: Path):
    (tmp_path / "two.toml").write_text(f"""
data = "npz:{digits}"
test = "npz:{digits}"
[overrides]
epochs = 1
batch_size = 64
[[run]]
name = "a"
model = "seed001-mlp1"
[[run]]
name = "b"
model = "seed001-mlp2"
""")
    code, output = finish(torchrun("experiment", "two.toml", "--quiet", cwd=tmp_path))
    assert code == 0, output
    assert output.count("report: ") == 1
    assert "[1/2] a/seed-0: training" in output and "[2/2] b/seed-0: training" in output
    assert (tmp_path / "reports" / "two" / "experiment.md").is_file()


@pytest.mark.parametrize(("count", "size"), [(10, 2), (11, 3), (2, 4), (0, 2)])
def test_the_shares_of_a_batch_cover_it_once_in_order_as_tensor_split_does(count: int, size: int):
    from digitrec.distributed import Group

    shares = [range(count)[Group(rank, size).share(count)] for rank in range(size)]
    assert [list(s) for s in shares] == [t.tolist() for t in torch.arange(count).tensor_split(size)]
