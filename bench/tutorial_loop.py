"""The reference point: the training loop the tutorial teaches, written as it teaches it (used by bench/speed.py).

    python bench/tutorial_loop.py train DATA --model resnet18 --mode finetune --epochs 2 --workers 1 --weights W.pth
    python bench/tutorial_loop.py predict DATA --model resnet18 --weights W.pth --workers 1
    python bench/tutorial_loop.py load DATA --workers 1            # one pass of the training loader, no model

DATA holds train/ and val/ class folders. What it does, as the tutorial does:
- torchvision `ImageFolder` + PIL, full-size decode, `RandomResizedCrop(224)` + flip + `ToTensor` + `Normalize`
  in the DataLoader workers; `Resize(256)` + `CenterCrop(224)` for validation; batch 32, shuffled;
- fp32, NCHW, `Adam` (lr 1e-3) and `StepLR`, cross-entropy;
- per batch: predictions and loss copied to the CPU and scored with scikit-learn, one log row per batch;
- per epoch: evaluation of the whole validation set with scikit-learn's macro metrics; the best weights saved;
- linear mode ("train only the new head"): the backbone is frozen but still runs on every batch of every epoch.
  The tutorial itself only leaves the backbone out of the optimizer, so it also back-propagates through it;
  here its parameters are frozen (requires_grad False), which makes this baseline faster than the tutorial.
- prediction: the tutorial predicts one image at a time; here the baseline predicts in batches of 32 through a
  DataLoader under `torch.no_grad()`, again the stronger variant.
The last line printed is a JSON object with the measurements.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchvision
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from torch import nn, optim
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
train_transform = transforms.Compose(
    [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
     transforms.Normalize(MEAN, STD)]
)  # fmt: skip
test_transform = transforms.Compose(
    [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
)


def build(name: str, n_class: int, weights: str | None, mode: str) -> nn.Module:
    model = getattr(torchvision.models, name)()
    if weights:
        model.load_state_dict(torch.load(weights, weights_only=True))
    if mode == "linear":
        for parameter in model.parameters():
            parameter.requires_grad = False
    if name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, n_class)
        head = model.fc
    else:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, n_class)
        head = model.classifier[-1]
    return model, head


def train(args) -> dict:
    device = torch.device("cpu")
    train_dataset = datasets.ImageFolder(str(Path(args.data) / "train"), train_transform)
    test_dataset = datasets.ImageFolder(str(Path(args.data) / "val"), test_transform)
    train_loader = DataLoader(train_dataset, batch_size=32, shuffle=True, num_workers=args.workers)
    test_loader = DataLoader(test_dataset, batch_size=32, shuffle=False, num_workers=args.workers)
    model, head = build(args.model, len(train_dataset.classes), args.weights, args.mode)
    model = model.to(device)
    optimizer = optim.Adam(head.parameters() if args.mode == "linear" else model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    lr_scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)

    def train_one_batch(images, labels):
        images, labels = images.to(device), labels.to(device)
        outputs = model(images)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _, preds = torch.max(outputs, 1)
        preds = preds.cpu().numpy()
        loss = loss.detach().cpu().numpy()
        labels = labels.detach().cpu().numpy()
        return {"train_loss": float(loss), "train_accuracy": accuracy_score(labels, preds)}

    def evaluate_testset():
        loss_list, labels_list, preds_list = [], [], []
        with torch.no_grad():
            for images, labels in test_loader:
                images, labels = images.to(device), labels.to(device)
                outputs = model(images)
                _, preds = torch.max(outputs, 1)
                loss_list.append(criterion(outputs, labels).detach().cpu().numpy())
                labels_list.extend(labels.cpu().numpy())
                preds_list.extend(preds.cpu().numpy())
        return {
            "test_loss": float(sum(loss_list) / len(loss_list)),
            "test_accuracy": accuracy_score(labels_list, preds_list),
            "test_precision": precision_score(labels_list, preds_list, average="macro", zero_division=0),
            "test_recall": recall_score(labels_list, preds_list, average="macro", zero_division=0),
            "test_f1-score": f1_score(labels_list, preds_list, average="macro", zero_division=0),
        }

    train_log, test_log, best, epoch_img_s = [], [], 0.0, []
    for epoch in range(1, args.epochs + 1):
        model.train()
        started, images_seen = time.perf_counter(), 0
        for images, labels in train_loader:
            train_log.append({"epoch": epoch, **train_one_batch(images, labels)})
            images_seen += len(labels)
        epoch_img_s.append(images_seen / (time.perf_counter() - started))
        lr_scheduler.step()
        model.eval()
        log_test = {"epoch": epoch, **evaluate_testset()}
        test_log.append(log_test)
        if log_test["test_accuracy"] > best:
            best = log_test["test_accuracy"]
            torch.save(model.state_dict(), Path(args.out) / f"best-{args.model}.pth")
    return {"epoch_img_s": epoch_img_s, "val_acc": best, "train_images": len(train_dataset)}


def predict(args) -> dict:
    files = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    model, _ = build(args.model, args.classes, None, "finetune")
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    model.eval()

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            from PIL import Image

            return test_transform(Image.open(files[i]).convert("RGB"))

    started = time.perf_counter()
    count = 0
    with torch.no_grad():
        for images in DataLoader(Files(), batch_size=32, num_workers=args.workers):
            torch.softmax(model(images), dim=1).numpy()
            count += len(images)
    return {"predict_img_s": count / (time.perf_counter() - started), "images": count}


def load(args) -> dict:
    dataset = datasets.ImageFolder(str(Path(args.data) / "train"), train_transform)
    loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=args.workers)
    started = time.perf_counter()
    count = sum(len(labels) for _, labels in loader)
    return {"load_img_s": count / (time.perf_counter() - started)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["train", "predict", "load"])
    parser.add_argument("data")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--mode", choices=["finetune", "linear"], default="finetune")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--weights")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--out", default=".")
    arguments = parser.parse_args()
    print(json.dumps({"train": train, "predict": predict, "load": load}[arguments.task](arguments)))
