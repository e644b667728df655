"""Grad-CAM heat maps: where the network looked when it chose a class.

    explainer = Explainer(Classifier.from_path("runs/mobilenet_v2-finetune"))
    cams = explainer.explain(["photo.jpg"])         # [Explanation(image=..., heatmap=..., overlay=..., label=...)]
    overlay_on_photo(photo, cams[0], classifier.preprocessing)   # the map over the whole photo, at its aspect

The maps come from the maintained pytorch-grad-cam library (PyPI: grad-cam, the extra `foldertune[explain]`)
applied to the backbone's last convolutional stage (declared per backbone in the registry), on the same
center crop the network sees. reporting/explanations.py draws them for image files (`foldertune explain`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from foldertune.data.transforms import normalize_batch
from foldertune.errors import UserError
from foldertune.inference.classifier import Classifier
from foldertune.models.build import cam_layer_of
from foldertune.preprocessing import Preprocessing

INSTALL = "pip install 'foldertune[explain]'"


@dataclass
class Explanation:
    image: np.ndarray  # (H, W, 3) uint8: the crop the network saw
    heatmap: np.ndarray  # (H, W) float in 0..1: Grad-CAM for `label`
    overlay: np.ndarray  # (H, W, 3) uint8: heat map over the image
    label: str  # the class explained (the predicted one unless asked otherwise)
    probability: float  # the network's probability for that class
    predicted: str  # the top-1 class


def cam_available() -> bool:
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        return False
    return True


class Explainer:
    """Grad-CAM over a Classifier's network, in fp32 on its device."""

    def __init__(self, classifier: Classifier) -> None:
        if not cam_available():
            raise UserError(f"class-activation maps need the grad-cam package: {INSTALL}.")
        self.classifier = classifier
        self.layer, self.reshape = cam_layer_of(classifier.model, classifier.backbone)

    def explain(
        self,
        images: list[Image.Image],
        class_names: list[str] | None = None,
        *,
        probabilities: np.ndarray | None = None,
    ) -> list[Explanation]:
        """One explanation per RGB image, for the named class or, where None, the predicted one. `probabilities`:
        the classifier's (N, classes) for these images where the caller has them already (one forward pass less)."""
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.image import show_cam_on_image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        classifier = self.classifier
        crops = torch.stack([classifier.transform(image) for image in images])
        if probabilities is None:
            probabilities = classifier.probabilities(crops)
        predicted = probabilities.argmax(axis=1)
        wanted = [
            self.class_index(name) if name else int(p)
            for name, p in zip(class_names or [None] * len(images), predicted, strict=True)
        ]
        inputs = normalize_batch(crops.to(classifier.runtime.device), classifier.preprocessing)
        # hooks on the network only while the maps are made: they would slow and grow every later prediction
        with (
            torch.enable_grad(),
            _gradients_from(self.layer, classifier.model),
            GradCAM(model=classifier.model, target_layers=[self.layer], reshape_transform=self.reshape) as cam,
        ):
            heatmaps = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(i) for i in wanted])
        explanations = []
        for crop, heatmap, index, row, top in zip(crops, heatmaps, wanted, probabilities, predicted, strict=True):
            picture = crop.permute(1, 2, 0).numpy()
            overlay = show_cam_on_image(picture.astype(np.float32) / 255, heatmap, use_rgb=True, image_weight=0.55)
            explanations.append(Explanation(picture, heatmap, overlay, classifier.classes[index], float(row[index]),
                                            classifier.classes[int(top)]))  # fmt: skip
        return explanations

    def class_index(self, name: str) -> int:
        try:
            return self.classifier.classes.index(name)
        except ValueError:
            choices = ", ".join(self.classifier.classes)
            raise UserError(f"--class {name!r} is not one of the model's classes: {choices}.") from None


@contextlib.contextmanager
def _gradients_from(layer: torch.nn.Module, model: torch.nn.Module):
    """Backpropagate from the output to `layer`'s activations and no further: Grad-CAM needs no weight's gradient,
    nor anything before the layer, so the backward pass shrinks to the network's last layers."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    # registered before Grad-CAM's own hooks, which then see this output: a new start of the graph (a clone, so
    # that an in-place activation after the layer is allowed)
    handle = layer.register_forward_hook(lambda _module, _inputs, output: output.detach().requires_grad_().clone())
    try:
        yield
    finally:
        handle.remove()
        for parameter in trainable:
            parameter.requires_grad_(True)


def overlay_on_photo(photo: Image.Image, explanation: Explanation, pre: Preprocessing, *, max_side: int = 512):
    """The heat map over the whole photo, at the photo's aspect (at most `max_side` pixels on its longer side): the
    centre crop the network saw is coloured by the map, the rest of the photo dimmed."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    scale = min(1.0, max_side / max(photo.size))
    shown = photo.convert("RGB").resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))))
    # evaluation resizes the shorter side to resize_size and keeps the centred crop_size square of it
    side = min(shown.size) * pre.crop_size / pre.resize_size
    left, top = round((shown.width - side) / 2), round((shown.height - side) / 2)
    right, bottom = left + max(1, round(side)), top + max(1, round(side))
    pixels = np.asarray(shown, dtype=np.float32) / 255
    result = pixels * 0.35  # outside the crop: dimmed, the network did not see it
    heat = Image.fromarray(np.uint8(np.clip(explanation.heatmap, 0, 1) * 255)).resize((right - left, bottom - top))
    region = show_cam_on_image(pixels[top:bottom, left:right], np.asarray(heat, dtype=np.float32) / 255, use_rgb=True,
                               image_weight=0.55)  # fmt: skip
    result[top:bottom, left:right] = region / 255
    return Image.fromarray(np.uint8(np.round(result * 255)))
