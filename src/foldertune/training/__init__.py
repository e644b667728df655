"""Training a run: `fit` / `resume`, the epoch loop, loaders, optimizer, frozen features, torchrun, trackers."""
