"""The best peer: timm's training pipeline as its train.py assembles it, on the CPU (used by bench/speed.py).

    python bench/timm_loop.py DATA --weights mobilenetv2_100.safetensors --epochs 3 --workers 1
    python bench/timm_loop.py DATA --weights W --epochs 3 --workers 1 --out runs/timm   # also saves the best weights

DATA holds train/ and val/ class folders. timm's `train.py` is not installed with the package, so this script
puts together the pieces it is made of, with the settings its command line
`train.py DATA --model mobilenetv2_100 --amp --amp-dtype bfloat16 --channels-last -b 32 -j WORKERS --device cpu
--no-prefetcher --warmup-epochs 0 --epochs N` gives them (all other flags at their defaults):
- `timm.data.create_dataset("", root=DATA, split="train", is_training=True)` (its folder reader, PIL, told about
  WebP files, which the sample holds) and
  `create_loader(..., is_training=True, use_prefetcher=False)` with train.py's default augmentation: random
  resized crop (scale 0.08-1, ratio 3/4-4/3) with a random interpolation, horizontal flip, colour jitter 0.4,
  ToTensor and Normalize in the loader workers; batch 32, shuffled, the last partial batch dropped, persistent
  workers; validation: create_loader(is_training=False) with the model's crop (0.875, bicubic), batch 32;
- `timm.create_model("mobilenetv2_100", num_classes=...)` started from WEIGHTS (torchvision's ImageNet weights
  converted by bench/convert_mobilenet_v2.py; the classifier is left as created), moved to channels_last;
- `timm.optim.create_optimizer_v2(model, opt="sgd", lr=0.0125, weight_decay=2e-5, momentum=0.9)`: train.py's
  defaults, the learning rate scaled from 0.1 at batch 256 to batch 32; cosine schedule stepped per epoch
  (`create_scheduler_v2`), no warm-up (train.py's 5-epoch default warm-up would leave a 3-epoch run near lr 0);
- per batch: inputs to channels_last, `torch.autocast("cpu", dtype=torch.bfloat16)` around the forward pass and
  the loss (LabelSmoothingCrossEntropy 0.1, train.py's default), backward, optimizer step, zero_grad; the loss read
  back every step (train.py's `losses_m.update(loss.item(), ...)`);
- per epoch: validation (top-1), the best weights saved (train.py's CheckpointSaver).
The last line printed is a JSON object: images/s of each epoch's training pass, its images, the best accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from timm import create_model
from timm.data import create_dataset, create_loader, resolve_data_config
from timm.data.readers.img_extensions import add_img_extensions
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

BATCH = 32
LR = 0.1 * BATCH / 256  # train.py: --lr-base 0.1 at --lr-base-size 256, scaled linearly for SGD


def main(args) -> dict:
    torch.manual_seed(42)  # train.py's --seed default
    add_img_extensions([".webp", ".bmp", ".gif", ".tif", ".tiff"])  # its folder reader lists png and jpeg alone
    device = torch.device("cpu")
    dataset_train = create_dataset("", root=args.data, split="train", is_training=True, batch_size=BATCH)
    dataset_eval = create_dataset("", root=args.data, split="val", is_training=False, batch_size=BATCH)
    classes = len(dataset_train.reader.class_to_idx)
    model = create_model("mobilenetv2_100", num_classes=classes)
    if args.weights:
        from safetensors.torch import load_file

        state = {k: v for k, v in load_file(args.weights).items() if not k.startswith("classifier.")}
        model.load_state_dict(state, strict=False)
    model.to(device=device, memory_format=torch.channels_last)
    data_config = resolve_data_config({}, model=model)
    loader_train = create_loader(
        dataset_train, input_size=data_config["input_size"], batch_size=BATCH, is_training=True,
        interpolation="random", color_jitter=0.4, mean=data_config["mean"], std=data_config["std"],
        num_workers=args.workers, device=device, use_prefetcher=False,
    )  # fmt: skip
    loader_eval = create_loader(
        dataset_eval, input_size=data_config["input_size"], batch_size=BATCH, is_training=False,
        interpolation=data_config["interpolation"], mean=data_config["mean"], std=data_config["std"],
        num_workers=args.workers, crop_pct=data_config["crop_pct"], device=device, use_prefetcher=False,
    )  # fmt: skip
    optimizer = create_optimizer_v2(model, opt="sgd", lr=LR, weight_decay=2e-5, momentum=0.9)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=args.epochs, warmup_epochs=0)
    train_loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
    amp_autocast = lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16)  # noqa: E731

    epoch_img_s, best = [], 0.0
    for epoch in range(args.epochs):
        model.train()
        started, images_seen, losses = time.perf_counter(), 0, []
        for inputs, target in loader_train:
            inputs, target = inputs.to(device=device), target.to(device=device)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            with amp_autocast():
                output = model(inputs)
                loss = train_loss_fn(output, target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            optimizer.zero_grad()
            images_seen += inputs.size(0)
        epoch_img_s.append(images_seen / (time.perf_counter() - started))
        scheduler.step(epoch + 1)
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for inputs, target in loader_eval:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
                with amp_autocast():
                    output = model(inputs)
                correct += int((output.argmax(dim=1) == target).sum())
                total += len(target)
        accuracy = correct / total
        if accuracy > best:
            best = accuracy
            if args.out:
                torch.save(model.state_dict(), Path(args.out) / "timm-best.pth")
    return {"epoch_img_s": epoch_img_s, "val_acc": best, "train_images": len(loader_train) * BATCH}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--weights", help="mobilenetv2_100 weights (safetensors); default: random")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=None, help="folder for the best weights (default: not saved)")
    print(json.dumps(main(parser.parse_args())))
