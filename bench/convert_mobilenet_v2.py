"""torchvision's mobilenet_v2 ImageNet weights as timm's mobilenetv2_100, checked on the sample photos.

    python bench/convert_mobilenet_v2.py                          # writes mobilenetv2_100-from-torchvision.safetensors
    python bench/convert_mobilenet_v2.py --out weights/mnv2.safetensors
    foldertune train photos/ --model timm/mobilenetv2_100 --weights mobilenetv2_100-from-torchvision.safetensors

The torchvision file comes from foldertune's own sources (hub cache, download, or the package index: it works
offline). Both implementations hold the same 314 tensors in the same order (models/convert.py pairs them by
position, shapes checked). Then both networks classify every sample photo into the 1000 ImageNet classes,
fed the same input (torchvision's preprocessing, then timm's): the converted file is the same network only if they
agree on every photo with probabilities equal up to float rounding. Last, each with its own declared preprocessing
(torchvision: bilinear, resize 256; timm: bicubic, crop 0.875), which changes some answers.

Measured on the bundled sample (138 photos): 100% agreement, largest probability difference 0.0, with either
preprocessing fed to both; 89.1% top-1 agreement (largest difference 0.286) each with its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from foldertune.data import sample_data_path
from foldertune.data.readers import EvalReader
from foldertune.data.scan import list_image_files
from foldertune.data.transforms import normalize_batch
from foldertune.models.build import build_model
from foldertune.models.convert import convert_by_position
from foldertune.models.registry import get_backbone
from foldertune.models.weights import resolve_weights


def convert(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import save_file

    state, origin = resolve_weights(get_backbone("mobilenet_v2"), log=lambda *_: None)
    converted = convert_by_position(state, get_backbone("timm/mobilenetv2_100").build())
    save_file(converted, str(out))
    print(f"{out}: {len(converted)} tensors from torchvision's mobilenet_v2 ({origin})")
    return converted


def imagenet_probabilities(name: str, state: dict[str, torch.Tensor], paths: list[str], pre_of: str) -> torch.Tensor:
    """(N, 1000) probabilities of the ImageNet classes from backbone `name`, its input prepared as `pre_of`'s."""
    model = build_model(name, num_classes=None, state_dict=state).eval()
    pre = get_backbone(pre_of).preprocessing
    read = EvalReader(pre)
    images = torch.stack([read(path) for path in paths])
    with torch.inference_mode():
        return model(normalize_batch(images, pre)).softmax(dim=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("mobilenetv2_100-from-torchvision.safetensors"))
    args = parser.parse_args(argv)
    converted = convert(args.out)
    paths = [str(path) for path in list_image_files([sample_data_path()])[0]]
    torchvision_state, _ = resolve_weights(get_backbone("mobilenet_v2"), log=lambda *_: None)
    for pre_of in ("mobilenet_v2", "timm/mobilenetv2_100"):
        ours = imagenet_probabilities("mobilenet_v2", torchvision_state, paths, pre_of)
        theirs = imagenet_probabilities("timm/mobilenetv2_100", converted, paths, pre_of)
        same = "timm's" if pre_of.startswith("timm/") else "torchvision's"
        agree = (ours.argmax(1) == theirs.argmax(1)).float().mean().item()
        print(f"{len(paths)} sample photos, both networks fed {same} preprocessing: top-1 ImageNet class agrees on "
              f"{agree:.1%}; largest probability difference {(ours - theirs).abs().max().item():.2e}")  # fmt: skip
    ours = imagenet_probabilities("mobilenet_v2", torchvision_state, paths, "mobilenet_v2")
    agree = (ours.argmax(1) == theirs.argmax(1)).float().mean().item()
    print(f"each with its own preprocessing (torchvision bilinear, resize 256; timm bicubic, crop 0.875): top-1 agrees "
          f"on {agree:.1%}; largest probability difference {(ours - theirs).abs().max().item():.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
