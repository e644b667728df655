"""The unknown_score's reference in best.pt: the head inputs of the run's training images, as best.pt computes them."""

import numpy as np
from helpers import read_csv

import foldertune as ft
from foldertune.inference.unknown import REFERENCE_KEY
from foldertune.runs.checkpoint import load_checkpoint


def test_the_reference_holds_each_training_images_features_in_split_order(chinese_run):
    run, _ = chinese_run  # trained in fp32: the end of the run computed the reference with the evaluation's network
    reference = load_checkpoint(run / "best.pt")[REFERENCE_KEY].float().numpy()
    train = [row["path"] for row in read_csv(run / "split.csv") if row["split"] == "train"]
    classifier = ft.load(run, device="cpu")
    features = np.concatenate(
        [classifier.outputs(images)[2] for *_, images in classifier.load_batches(train, progress=False)]
    )
    assert reference.shape == features.shape and np.abs(features).max() > 0.1
    assert np.allclose(reference, features, rtol=2e-3, atol=2e-3)  # float16 storage: 3 significant digits
