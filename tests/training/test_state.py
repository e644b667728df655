"""The loop state in last.pt: checkpoint format 1's keys, as plain data that torch.load(weights_only=True) reads."""

import io
import math

import torch

from foldertune.training.state import PartialEpoch, Progress


def through_a_file(value):
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_a_partial_epoch_keeps_its_format_1_keys_and_comes_back_whole():
    partial = PartialEpoch(steps=11, loss_sum=12.5, correct=4, seen=11, seconds=3.25, rng=torch.get_rng_state())
    state = through_a_file(partial.state_dict())
    assert list(state) == ["steps", "loss_sum", "correct", "seen", "seconds", "rng"]
    again = PartialEpoch.from_state_dict(state)
    assert (again.steps, again.loss_sum, again.correct, again.seen, again.seconds) == (11, 12.5, 4, 11, 3.25)
    assert torch.equal(again.rng, partial.rng)


def test_progress_counts_epochs_without_improvement_and_comes_back_whole():
    progress = Progress()
    assert progress.record(0.5, epoch=1) and not progress.record(0.5, epoch=2) and progress.record(0.75, epoch=3)
    assert not progress.record(0.7, epoch=4)
    state = through_a_file(progress.state_dict())
    assert state == {"best": 0.75, "best_epoch": 3, "stale": 1}
    assert Progress.from_state_dict(state) == progress
    assert through_a_file(Progress().state_dict())["best"] == -math.inf  # before any epoch: anything beats it
