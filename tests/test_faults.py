"""A run never loses work: Ctrl-C saves it and prints the command that continues it, a kill at any moment
costs at most the epoch under way, and a write that fails names the file and leaves the last checkpoint whole.

Each test drives the real ``digitrec train`` in a subprocess (one thread, so that the numbers of every
run are comparable bit for bit) and acts on it as a user or the system would, at moments it sees in
the run directory.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import inotify_simple
import pytest
from conftest import Terminal, same_weights, synthetic_npz_file, wait_for

from digitrec import checkpoint

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
# dropout, momentum, augmentation and an EMA: everything whose state a resumed run must get back exactly (digitrec's SGD
# also spares each process the 2.7 s that torch.optim's first import of torch._dynamo takes)
RECIPE = ["--epochs", "2", "--batch-size", "32", "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05", "--rotation", "8",
          "--ema", "0.9", "--validation", "0.1"]
STEPS = 34  # a training epoch: 1,080 of the 1,200 digits (a tenth held out), 32 a batch


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough synthetic digits for an epoch of about two seconds on one thread."""
    return synthetic_npz_file(tmp_path_factory.mktemp("faults") / "digits.npz", 1200, seed=3)


def command(digits: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "digitrec", "train", "--model", "seed003-small", "--data", f"npz:{digits}", *RECIPE, "--out", str(out)]


def start(digits: Path, out: Path, prefix: Sequence[str] = ()) -> subprocess.Popen:
    return subprocess.Popen([*prefix, *command(digits, out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ONE_THREAD)


def resume(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitrec", "train", "--resume", str(run_dir), "--quiet"], env=ONE_THREAD,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def uninterrupted(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    process = start(digits, out)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    return out


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def writing(run_dir: Path) -> bool:
    """A file of the run is being written at this moment (its temporary twin exists)."""
    return run_dir.is_dir() and any(name.endswith(".tmp") for name in os.listdir(run_dir))


def a_file_begun(run_dir: Path) -> Callable[[Terminal], bool]:
    """Waits for the kernel to say that a temporary twin was created in ``run_dir``: a write that began (the watch
    misses none, however short the write; it starts before the process does)."""
    watch = inotify_simple.INotify()
    watch.add_watch(run_dir, inotify_simple.flags.CREATE)

    def begun(terminal: Terminal) -> bool:
        try:
            while terminal.process.poll() is None:
                if any(event.name.endswith(".tmp") for event in watch.read(timeout=100)):
                    return True
            return False
        finally:
            watch.close()

    return begun


# in the order a run reaches them, each kill landing in a run resumed after the one before; each point is made before its
# process starts and returns the wait for its moment
KILL_POINTS: dict[str, Callable[[Path], Callable[[Terminal], bool]]] = {
    "before the first checkpoint": lambda run: lambda t: wait_for(lambda: (run / "config.json").is_file(), t.process),
    "while a file is being written": a_file_begun,
    "in the middle of epoch 2": lambda run: lambda t: t.reached(epoch=2, step=STEPS // 2),
    "between the last epoch's history and its checkpoints": lambda run: lambda t: wait_for(lambda: lines(run / "metrics.jsonl") == 2,
                                                                                           t.process),
    "while the model is exported at the end": lambda run: lambda t: wait_for(lambda: (run / "curves.png").is_file(), t.process),
}


def test_a_run_killed_at_five_kinds_of_moment_resumes_each_time_and_ends_with_the_same_weights(digits: Path, uninterrupted: Path,
                                                                                                 tmp_path: Path):
    out = tmp_path / "run"
    resuming = [sys.executable, "-m", "digitrec", "train", "--resume", str(out)]
    for number, (point, moment) in enumerate(KILL_POINTS.items()):
        reached = moment(out)
        terminal = Terminal(resuming if number else command(digits, out), ONE_THREAD)
        assert reached(terminal), f"the run ended before it could be killed {point}"
        terminal.process.send_signal(signal.SIGKILL)
        code, output = terminal.finish(timeout=30)
        assert code == -signal.SIGKILL, f"the run ended before it could be killed {point}:\n{output}"
    code, output = Terminal(resuming, ONE_THREAD).finish()
    assert code == 0, output
    assert same_weights(out, uninterrupted)
    assert not any(name.endswith(".tmp") for name in os.listdir(out))  # what a kill left half-written is gone
    assert (out / "final.onnx").is_file()


def test_ctrl_c_saves_the_step_it_reached_and_prints_the_command_that_continues_it(digits: Path, uninterrupted: Path, tmp_path: Path):
    out = tmp_path / "run"
    terminal = Terminal(command(digits, out), ONE_THREAD)
    assert terminal.reached(epoch=2, step=3), "the run ended before it could be stopped"
    terminal.process.send_signal(signal.SIGINT)  # what Ctrl-C does, as the bar shows step 3 of epoch 2
    code, output = terminal.finish(timeout=60)
    assert code == 130, output
    message = output.splitlines()[-1]
    assert "stopped in epoch 2 after step" in message and "everything up to there is saved" in message
    command_given = message.split("continue with: ")[1]
    assert command_given == f"digitrec train --resume {out}"
    saved = checkpoint.load_state(out / "state.safetensors")
    assert saved["epoch"] == 1 and 3 <= saved["step"] < STEPS  # within epoch 2: the steps it took are kept

    resumed = subprocess.run([sys.executable, "-m", *command_given.split()], env=ONE_THREAD, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {saved['step'] + 1}/{STEPS}" in resumed.stdout  # "resuming ... at epoch 2/2, step N/34"
    assert same_weights(out, uninterrupted)


def test_a_write_that_fails_is_one_line_naming_the_file_and_the_last_checkpoint_stays_whole(digits: Path, uninterrupted: Path,
                                                                                             tmp_path: Path):
    out = tmp_path / "run"
    process = start(digits, out)
    wait_for(lambda: (out / "state.safetensors").is_file() and not writing(out), process)
    # from now on no file of this process may grow past 1 kB: the next checkpoint cannot be written,
    # as on a full disk (a real write failing in the kernel, not a simulated one)
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1024, 1024))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    message = stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith(f"digitrec: error: {out}") and "File too large" in message[0]
    assert not any(name.endswith(".tmp") for name in os.listdir(out))
    assert checkpoint.load_state(out / "state.safetensors")["epoch"] == 1
    assert checkpoint.read_metadata(out / "final.safetensors")["epoch"] == 1

    resumed = resume(out)  # with room again, nothing was lost
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(out, uninterrupted)


def test_a_read_only_run_directory_is_one_line_naming_it(digits: Path, tmp_path: Path):
    out = tmp_path / "run"
    if os.geteuid() != 0:
        process = start(digits, out)
        make_read_only = partial(out.chmod, 0o555)
    else:  # root writes in a folder of any mode: the run sees its folder through a bind mount of its own, remounted read-only
        if not shutil.which("unshare") or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
            pytest.skip("root writes in any folder, and this machine allows no private mount to make one read-only")
        private = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" "$0" && exec "$@"', str(tmp_path)]
        process = start(digits, out, prefix=private)
        make_read_only = partial(subprocess.run, ["nsenter", "-t", str(process.pid), "-m", "mount", "-o", "remount,bind,ro", str(tmp_path)],
                                 check=True)
    wait_for(lambda: (out / "state.safetensors").is_file() and not writing(out), process)
    make_read_only()
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        out.chmod(0o755)
    assert process.returncode == 2, stderr
    message = stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith(f"digitrec: error: {out}") and "cannot write here" in message[0]
    assert checkpoint.load_state(out / "state.safetensors")["epoch"] == 1
