"""How training stops when asked to: Ctrl-C, SIGTERM, Slurm's SIGUSR1 warning, or a loader worker that died.

    with StopRequest() as stop:
        for batch in loader:
            ...one step...
            if stop.requested:
                break            # the caller saves, then raises TrainingInterrupted
    DataLoader(..., worker_init_fn=ignore_stop_signals)   # workers outlive the main process's save

SIGINT, SIGTERM and SIGUSR1 (what `sbatch --signal=USR1@90` sends before a time limit) only set a flag, so the
training loop finishes its step and saves. They usually reach the whole process group at once (a terminal's
Ctrl-C, `timeout`, `systemctl stop`, Slurm's `scancel`), so loader workers ignore them and leave when the main
process closes the loader (SIGTERM from the main process itself still ends them). The same signal arriving again
within DUPLICATE_S (`timeout` signals the child and then the group; torchrun forwards what it receives) counts
once. A later second signal stops at once (`StoppedAtOnce`), for when saving itself hangs: checkpoints are written
to a temporary file and renamed, so that never leaves half a file. Outside the block the previous handlers are
back. Signal handlers can only be set from the main thread; elsewhere the block does nothing. A loader worker that
dies anyway (`loader_worker_death`) ends training with `LoaderWorkerDied`: which one, and what to try.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))
WORKER_EXIT_WAIT_S = 2.0  # a dead loader worker's broken batch to its exit being known: milliseconds in practice
DUPLICATE_S = 1.0  # the same stop delivered twice (to the process and to its group) arrives within microseconds


def launcher(plain: str = "foldertune") -> str:
    """How this process was started: under torchrun, the torchrun command (processes per node) that resumes it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
        return f"torchrun --nproc_per_node={per_node} -m foldertune"
    return plain


class TrainingStopped(Exception):
    """Training ended before its last epoch, leaving the run resumable; `exit_code` is the process's exit status."""

    exit_code = 1


class TrainingInterrupted(TrainingStopped):
    """Training stopped on a signal after saving last.pt; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int, run: Path, where: str) -> None:
        self.signum = signum
        self.run = run
        self.where = where
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted ({name}) {where}; last.pt and the logs are saved. Continue with:\n"
            f"  {launcher()} train --resume {run}"
        )


class LoaderWorkerDied(TrainingStopped):
    """A data-loader process died (out of memory, a crash in an image decoder); last.pt is the last one saved."""

    def __init__(self, what: str, run: Path, where: str) -> None:
        self.run = run
        if "Killed" in what:
            cause = "most often the kernel's out-of-memory killer: try --workers 0 or a smaller --batch-size"
        elif any(word in what for word in ("Segmentation", "Bus error", "Aborted", "Floating")):
            cause = (
                "most often an image decoder crashing on a damaged file: find it with foldertune check DATA --deep, "
                "or try --workers 0"
            )
        else:
            cause = "try --workers 0, a smaller --batch-size, or foldertune check DATA --deep for a damaged file"
        super().__init__(
            f"a data-loader process {what} {where} ({cause}); last.pt holds the last state saved, continue with "
            f"{launcher()} train --resume {run}"
        )


class StoppedAtOnce(KeyboardInterrupt):
    """A second stop signal: training ends without saving (what was saved before stays whole)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def loader_worker_death(error: BaseException) -> str | None:
    """What happened to a data-loader worker, when one died and `error` is what the main process got of it (torch's
    RuntimeError, or the EOFError / ConnectionError of a batch it was sending); None when all workers live."""
    from torch.utils.data._utils.signal_handling import _error_if_any_worker_fails

    text = str(error)
    # torch's own record of its workers says how one ended, whatever the main process met first; a batch in transit
    # can break a moment before the kernel reports its sender's end, hence a short wait for those errors
    deadline = time.monotonic() + (WORKER_EXIT_WAIT_S if isinstance(error, (EOFError, OSError)) else 0)
    while True:
        try:  # (torch's SIGCHLD handler may raise the same report while this waits)
            _error_if_any_worker_fails()
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        except RuntimeError as failed:
            text = str(failed)
            break
    match = re.search(r"DataLoader worker \(pid(?:\(s\))? ([\d, ]+)\)", text)
    if match is None:
        return None
    killed = re.search(r"killed by signal: ([^.]+)", text)
    if killed:
        return f"(pid {match.group(1).strip()}) was killed by signal: {killed.group(1).strip()}"
    return f"(pid {match.group(1).strip()}) exited unexpectedly"


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """A DataLoader's worker_init_fn: the stop signals are for the main process, which saves, then closes the loader
    (and with it the workers).

    SIGTERM from the parent itself still ends the worker: that is how torch and multiprocessing stop workers they
    could not close (after an error); ignoring it would leave the main process waiting for them forever. A thread
    tells the senders apart (sigwaitinfo); where there is none (macOS), the worker keeps torch's own SIGTERM handler.
    """
    for signum in SIGNALS:
        if signum != signal.SIGTERM:
            signal.signal(signum, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        return
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # for every thread of the worker: only ours takes it

    def obey_the_parent_only() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)  # as torch's handler does when the main process ends its worker

    threading.Thread(target=obey_the_parent_only, name="sigterm-from-parent", daemon=True).start()


class StopRequest:
    """Records SIGINT / SIGTERM / SIGUSR1 instead of dying, so that the training loop can stop between two steps."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.received = 0.0  # time.monotonic() of the first signal
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            if time.monotonic() - self.received < DUPLICATE_S:
                return  # the same stop, delivered again (to the process, then to its group)
            raise StoppedAtOnce(signum)  # asked twice: stop now
        self.signum, self.received = signum, time.monotonic()
        again = "Ctrl-C" if signum == signal.SIGINT else f"kill -{signal.Signals(signum).name.removeprefix('SIG')}"
        print(f"\n{signal.Signals(signum).name}: stopping after this step ({again} again to stop at once) ...",
              flush=True)  # fmt: skip
