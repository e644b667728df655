"""--balance: the class-weighted loss and the class-balanced sampler."""

import torch

from foldertune.config import TrainConfig
from foldertune.data.dataset import EpochBatchSampler
from foldertune.device import choose_runtime
from foldertune.training.loaders import class_weights
from foldertune.training.optim import Optimization


def test_the_weighted_loss_gives_a_rare_class_a_larger_gradient():
    labels = [0] * 30 + [1] * 30 + [2] * 5  # class 2 is six times rarer
    weights = class_weights(labels, 3)
    assert weights[2] == len(labels) / (3 * 5) and weights[0] == weights[1] < 1 < weights[2]
    runtime = choose_runtime("cpu", "fp32")
    model = torch.nn.Linear(4, 3)
    gradients = {}
    for balance, smoothing in (("none", 0.0), ("weights", 0.0), ("weights", None)):  # None: fine-tune's default
        cfg = TrainConfig(balance=balance, label_smoothing=smoothing)
        opt = Optimization.build(model, cfg, runtime, steps_per_epoch=1, class_weights=weights)
        logits = torch.zeros(2, 3, requires_grad=True)  # one image of a common class, one of the rare class
        opt.criterion(logits, torch.tensor([0, 2])).backward()
        gradients[balance, cfg.label_smoothing] = logits.grad.abs().sum(dim=1)
    assert torch.isclose(gradients["none", 0.0][0], gradients["none", 0.0][1])  # unweighted: the two pull alike
    assert gradients["weights", 0.0][1] / gradients["weights", 0.0][0] == torch.tensor(weights[2] / weights[0])
    smoothed = gradients["weights", 0.1]  # with label smoothing the rare class still pulls harder
    assert smoothed[1] > 2 * smoothed[0]


def test_the_balanced_sampler_draws_every_class_about_as_often_and_the_same_under_torchrun():
    labels = [0] * 90 + [1] * 9 + [2] * 3
    per_class = class_weights(labels, 3)
    draw = [per_class[label] for label in labels]
    counts = torch.zeros(3)
    for epoch in range(1, 21):
        sampler = EpochBatchSampler(len(labels), 16, shuffle=True, seed=0, weights=draw)
        sampler.set_epoch(epoch)
        indices = [index for batch in sampler for index, _ in batch]
        assert len(indices) == len(labels)  # an epoch is as long as without the sampler
        counts += torch.bincount(torch.tensor([labels[i] for i in indices]), minlength=3)
        sharded = [EpochBatchSampler(len(labels), 16, shuffle=True, seed=0, weights=draw, rank=r, world_size=2)
                   for r in (0, 1)]  # fmt: skip
        for part in sharded:
            part.set_epoch(epoch)
        assert sorted(sharded[0].indices() + sharded[1].indices()) == sorted(sampler.indices())  # the same draws
    shares = counts / counts.sum()
    assert (abs(shares - 1 / 3) < 0.05).all(), shares  # unbalanced, the rarest class would get 3%
