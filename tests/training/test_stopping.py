"""Training stopped from outside as it happens for real: a signal to the whole process group (a terminal's Ctrl-C,
`timeout`, `systemctl stop`, Slurm), SIGTERM to torchrun, Slurm's SIGUSR1 warning followed by the same command with
`--resume auto`, and a data-loader process killed outright. Real processes, real signals, the default number of loader
workers; every resumed run must end exactly as the uninterrupted one.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_trained_alike, copy_subset, read_csv, wait_for_steps

# 18 training steps an epoch; batches.csv gets its first rows at step 10, mid-way through epoch 1
ARGS = ["--epochs", "2", "--img-size", "64", "--batch-size", "1", "--precision", "fp32", "--quiet", "--no-report"]
CLASSES = {"fishes": "fishes", "monuments": "monuments", "tools": "tools"}


def train(data: Path, project: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "foldertune", "train", str(data), *ARGS, "--project", str(project), "--name", name,
            *extra]  # fmt: skip


def resume(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "foldertune", "train", *args, "--quiet"], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return copy_subset(tmp_path_factory.mktemp("stopping") / "photos", 8, CLASSES)


@pytest.fixture(scope="module")
def whole(photos, mobilenet_weights) -> Path:
    """The uninterrupted run that every stopped and resumed run must equal."""
    subprocess.run(train(photos, photos.parent, "whole"), check=True, capture_output=True, timeout=600)
    return photos.parent / "whole"


def assert_stopped_mid_epoch_and_saved(run: Path, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert f"foldertune train --resume {run}" in stderr and "last.pt and the logs are saved" in stderr, stderr
    saved = torch.load(run / "last.pt", weights_only=True)
    steps = saved["training"]["interrupted"]["steps"]
    assert saved["epoch"] == 0 and 10 <= steps < 18  # part-way through epoch 1
    assert len(read_csv(run / "batches.csv")) == steps  # the logs are saved up to that step


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_the_whole_process_group_saves_the_step_and_resumes_exactly(signum, photos, whole, tmp_path):
    cut = tmp_path / "cut"
    process = subprocess.Popen(
        train(photos, tmp_path, "cut"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip  (its own group, as a shell makes)
    wait_for_steps(process, cut, 10)
    os.killpg(process.pid, signum)  # the main process and its loader workers alike
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, stderr
    assert_stopped_mid_epoch_and_saved(cut, stderr)
    resume("--resume", str(cut))
    assert_trained_alike(cut, whole)


def test_timeout_around_the_command_stops_it_cleanly(photos, whole, tmp_path):
    cut = tmp_path / "cut"
    command = ["timeout", "-s", "TERM", "3600", *train(photos, tmp_path, "cut")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_steps(process, cut, 10)
    # timeout's own alarm, now instead of in an hour: it sends SIGTERM to the command, then to its process group
    process.send_signal(signal.SIGALRM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 124, stderr  # timeout's "the time ran out"
    assert_stopped_mid_epoch_and_saved(cut, stderr)
    resume("--resume", str(cut))
    assert_trained_alike(cut, whole)


def test_slurm_warning_signal_then_the_same_command_with_resume_auto(photos, whole, tmp_path):
    cut = tmp_path / "cut"
    command = train(photos, tmp_path, "cut", "--resume", "auto")  # what a requeued Slurm job runs, unchanged
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    wait_for_steps(process, cut, 10)
    os.killpg(process.pid, signal.SIGUSR1)  # sbatch --signal=USR1@90: the time limit is near
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGUSR1, stderr
    assert_stopped_mid_epoch_and_saved(cut, stderr)

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert f"resuming {cut} after epoch 0 of 2, step" in again.stdout
    assert_trained_alike(cut, whole)

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0 and "nothing left to do" in finished.stdout, finished.stderr
    assert_trained_alike(cut, whole)  # untouched

    other = subprocess.run([*command, "--lr", "0.1"], capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines() == [
        f"foldertune train: error: --resume auto: run '{cut}' was started with other settings (--lr 0.0005 there, "
        "0.1 here); use its settings, or another --name for a new run."
    ]


def children(pid: int) -> list[int]:
    """The processes `pid` started (its data-loader workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_a_loader_process_killed_outright_is_one_sentence_and_keeps_last_pt(photos, tmp_path, mobilenet_weights):
    run = tmp_path / "run"
    command = train(photos, tmp_path, "run", "--epochs", "3")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_steps(process, run, 20)  # in epoch 2: last.pt holds epoch 1
    workers = children(process.pid)
    assert workers, "no loader processes (the default is at least one)"
    os.kill(workers[0], signal.SIGKILL)  # as the kernel's out-of-memory killer does
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    message = stderr.strip().splitlines()[-1]
    # torch reports the signal, or only the exit when its own check saw the process gone first
    died = ("was killed by signal: Killed", "exited unexpectedly")
    assert any(f"a data-loader process (pid {workers[0]}) {how}" in message for how in died), message
    assert "--workers 0" in message and f"foldertune train --resume {run}" in message
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] >= 1


def test_sigterm_to_torchrun_stops_every_process_cleanly_and_resumes_exactly(tmp_path, mobilenet_weights):
    photos = copy_subset(tmp_path / "photos", 28, CLASSES)  # over 30 steps an epoch per process at batch 1
    args = [str(photos), "--epochs", "1", "--img-size", "64", "--batch-size", "1", "--precision", "fp32", "--quiet",
            "--no-report", "--project", str(tmp_path)]  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "foldertune",
                "train"]  # fmt: skip
    whole = subprocess.run([*torchrun, *args, "--name", "whole"], capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    cut = tmp_path / "cut"
    process = subprocess.Popen([*torchrun, *args, "--name", "cut"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    wait_for_steps(process, cut, 10)
    process.send_signal(signal.SIGTERM)  # torchrun's agent passes it on to both processes
    _, stderr = process.communicate(timeout=300)
    ours = stderr.split("Traceback")[0]  # what follows is torchrun's own SignalException, raised after its workers end
    assert "SignalException" in stderr.split("Traceback", 1)[-1] and stderr.count("Traceback") <= 1, stderr[-3000:]
    assert "interrupted (SIGTERM) at epoch 1, step " in ours, stderr[-3000:]
    saved = torch.load(cut / "last.pt", weights_only=True)["training"]["interrupted"]
    assert saved["steps"] % 10 == 0  # the processes agree on stopping where they sum their losses, every 10 steps
    assert f"torchrun --nproc_per_node=2 -m foldertune train --resume {cut}" in ours
    resumed = subprocess.run([*torchrun, "--resume", str(cut), "--quiet"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    assert_trained_alike(cut, tmp_path / "whole")


def test_resume_auto_starts_again_a_run_stopped_before_its_first_epoch_ended(photos, tmp_path, mobilenet_weights):
    small = ["--epochs", "1", "--img-size", "32", "--batch-size", "8", "--workers", "0", "--no-report"]
    command = ["--project", str(tmp_path), "--name", "cut", *small, "--resume", "auto"]
    resume(str(photos), *command)
    cut = tmp_path / "cut"
    (cut / "last.pt").unlink()  # as a job stopped during setup (the scan, linear mode's features) leaves its folder
    done = resume(str(photos), *command)  # the requeued job: the same command
    assert f"run '{cut}' stopped before its first epoch ended; starting it again" in done.stdout, done.stdout
    assert (cut / "last.pt").is_file() and len(read_csv(cut / "epochs.csv")) == 1
    assert (tmp_path / "cut.unstarted-1" / "config.json").is_file()  # what the first job wrote is kept, not deleted
