"""Ctrl-C and SIGTERM during training: finish the current step, save last.pt and the logs, say how to resume.

    with StopRequest() as stop:
        for batch in loader:
            ...one step...
            if stop.requested:
                break            # the caller saves, then raises TrainingInterrupted

A second Ctrl-C stops at once (KeyboardInterrupt), for when saving itself hangs. Outside the block the previous
handlers are back. Signal handlers can only be set from the main thread; elsewhere the block does nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def launcher(plain: str = "foldertune") -> str:
    """How this process was started: under torchrun, the torchrun command (processes per node) that resumes it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
        return f"torchrun --nproc_per_node={per_node} -m foldertune"
    return plain


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving last.pt; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int, run: Path, where: str) -> None:
        self.signum = signum
        self.run = run
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted ({name}) {where}; last.pt and the logs are saved. Continue with:\n"
            f"  {launcher()} train --resume {run}"
        )


class StopRequest:
    """Records SIGINT / SIGTERM instead of dying, so that the training loop can stop between two steps."""

    def __init__(self) -> None:
        self.signum: int | None = None
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
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step (Ctrl-C again to stop at once) ...",
              flush=True)  # fmt: skip
