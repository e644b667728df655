"""`foldertune explain`: Grad-CAM maps of image files, each drawn beside the crop the network saw.

explain_files("runs/mobilenet_v2-finetune", ["photo.jpg"], out="cams/")   # cams/photo_cam.png: photo | overlay
"""

from __future__ import annotations

import os
from pathlib import Path

from foldertune.data.images import ImageReadError, open_image
from foldertune.data.scan import list_image_files
from foldertune.data.transforms import decode_min_side
from foldertune.inference.classifier import Classifier
from foldertune.inference.gradcam import Explainer
from foldertune.reporting.plots.gallery import save_explanation
from foldertune.runs.atomic import check_output


def explain_files(
    source: str | os.PathLike,
    paths: list[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    force: bool = False,
    class_name: str | None = None,
    device: str = "auto",
    fmt: str = "png",
    log=print,
) -> list[Path]:
    """For each image file: `<out>/<name>_cam.<fmt>`, the crop beside its Grad-CAM overlay; returns the files.

    Files with the same name in different folders get their folder's name in front (`tools_1_cam.png`). An `out`
    folder that holds files is refused unless `force`; on any refusal nothing is created.
    """
    out = check_output(out or "cams", "--out", force=force, folder=True)
    files, _ = list_image_files(list(paths))
    classifier = Classifier.from_path(source, device=device)
    explainer = Explainer(classifier)
    if class_name is not None:
        explainer.class_index(class_name)  # refuses an unknown class before anything is written
    min_side = decode_min_side(classifier.preprocessing)
    written: list[Path] = []
    for path in files:
        try:
            image = open_image(path, min_side=min_side)
        except ImageReadError as error:
            log(f"skipped {path}: {error}")
            continue
        explanation = explainer.explain([image], [class_name] if class_name else None)[0]
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{path.stem}_cam.{fmt}"
        if target in written:
            target = out / f"{path.parent.name}_{path.stem}_cam.{fmt}"
        number = 2
        while target in written:
            target, number = out / f"{path.parent.name}_{path.stem}_{number}_cam.{fmt}", number + 1
        written.append(save_explanation(explanation, target, title=path.name))
        log(f"{path}: predicted {explanation.predicted}; map for {explanation.label} "
            f"({explanation.probability:.3f}) -> {target}")  # fmt: skip
    return written
