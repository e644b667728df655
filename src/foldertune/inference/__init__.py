"""Using a trained checkpoint: the `Classifier`, what a prediction is, Grad-CAM maps."""
