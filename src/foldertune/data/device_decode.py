"""--decode device: loader workers read each JPEG's bytes and draw its crop; the training process decodes the batch
on its device (nvjpeg on a CUDA GPU) and crops it there.

    read = EncodedReader(pre, train=True)        # in a worker: path -> EncodedImage, or a CPU-decoded uint8 tensor
    loader = DataLoader(ImageDataset(samples, read, seed=0, augment=True), batch_sampler=..., collate_fn=pack_batch)
    for packed, labels in loader:                 # packed: a PackedImages, a few tensors for the whole batch
        images = packed.decode(pre, device)       # (N, 3, S, S) uint8 on `device`, as TrainReader would give

The random draws stay in the workers, seeded per sample by ImageDataset exactly as TrainReader's are: the crop box is
drawn on the upright size the header declares and the flip after it, so an epoch is the same pure function of the
seed and the epoch number on either path, and --resume continues exactly. Only the pixels are made elsewhere: the
whole picture is decoded on the device, turned upright by its EXIF orientation, and the box cropped and resized with
torchvision's antialiased resize (TrainReader resizes with PIL, after a reduced DCT decode: the two differ by
resampling alone). Validation decodes on the device too and applies the evaluation transform there: longer side cut
to at most MAX_ASPECT times the shorter, shorter side resized to resize_size, center crop.

Files the device does not decode (PNG, WebP, GIF, BMP, TIFF, CMYK JPEGs, files over max_pixels, files whose header
cannot be read) are read on the CPU in the worker by TrainReader or EvalReader, as without --decode device, with the
same draws, and take their place in the batch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from foldertune.data import DEFAULT_MAX_PIXELS
from foldertune.data.images import ImageReadError, inspect_image
from foldertune.data.readers import EvalReader, TrainReader, draw_crop_box
from foldertune.data.transforms import MAX_ASPECT, RANDOM_CROP_MIN_SCALE
from foldertune.preprocessing import Preprocessing

DEVICE_MODES = frozenset({"RGB", "L"})  # JPEG colour modes every decoder handles; CMYK / YCCK ones go to the CPU


@dataclass
class EncodedImage:
    """One JPEG as a worker hands it over: its bytes, its EXIF orientation, and (training) the drawn box and flip."""

    data: bytes
    orientation: int  # 1..8: the decoders here return the pixels as stored, turned upright afterwards
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, height, width (training only)
    flip: bool = False


class EncodedReader:
    """A worker's part of --decode device: a JPEG's bytes and random draws, or any other file decoded on the CPU.

    Draws from torch's global generator in TrainReader's order (box, then flip): ImageDataset seeds it per sample.
    """

    def __init__(self, pre: Preprocessing, *, train: bool, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.train = train
        self.max_pixels = max_pixels
        self.scale = (RANDOM_CROP_MIN_SCALE, 1.0)
        reader = TrainReader if train else EvalReader
        self.on_cpu = reader(pre, max_pixels=max_pixels)  # for what the device does not decode

    def __call__(self, path: str) -> EncodedImage | torch.Tensor:
        try:
            info = inspect_image(path, decode="header", max_pixels=self.max_pixels)
        except ImageReadError:
            info = None  # the CPU reader raises the same error, which ImageDataset reports as without --decode device
        if info is None or info.format != "JPEG" or info.mode not in DEVICE_MODES:
            return self.on_cpu(path)
        item = EncodedImage(Path(path).read_bytes(), info.orientation)
        if self.train:
            item.box = draw_crop_box(info.width, info.height, self.scale)
            item.flip = bool(torch.rand(1) < 0.5)
        return item


@dataclass
class PackedImages:
    """A batch of EncodedReader items in a few tensors: torch passes each tensor from a worker through its own file
    descriptor, so one per batch, not one per file."""

    data: torch.Tensor  # (total bytes,) uint8: the JPEGs end to end
    lengths: torch.Tensor  # (N,) int64: each JPEG's bytes; 0 where the image was decoded on the CPU
    orientations: torch.Tensor  # (N,) int64 EXIF orientations, from the header: the box is drawn on that upright size
    boxes: torch.Tensor  # (N, 4) int64: top, left, height, width
    flips: torch.Tensor  # (N,) bool
    decoded: torch.Tensor  # (M, 3, S, S) uint8: the images decoded on the CPU, in batch order
    train: bool

    def __len__(self) -> int:
        return len(self.lengths)

    def pin_memory(self) -> PackedImages:
        """Page-locked copies, for the DataLoader's pin_memory=True (faster, asynchronous copies to the GPU)."""
        tensors = {name: value.pin_memory() for name, value in vars(self).items() if isinstance(value, torch.Tensor)}
        return PackedImages(**tensors, train=self.train)

    def decode(self, pre: Preprocessing, device: torch.device) -> torch.Tensor:
        """(N, 3, S, S) uint8 on `device`: the JPEGs decoded and cropped there, the others copied into place."""
        size = pre.crop_size
        images = torch.empty((len(self), 3, size, size), dtype=torch.uint8, device=device)
        on_device = self.lengths > 0
        if on_device.any():
            positions = on_device.nonzero().flatten().tolist()
            encoded = torch.split(self.data, self.lengths[on_device].tolist())  # views of one tensor, no copies
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of torchcodec's
                warnings.simplefilter("ignore", DeprecationWarning)
                pictures = decode_jpeg(list(encoded), mode=ImageReadMode.RGB, device=device)
            mode = InterpolationMode(pre.interpolation)
            for position, picture in zip(positions, pictures, strict=True):
                picture = upright(picture, int(self.orientations[position]))
                if self.train:
                    images[position] = self._train_crop(picture, position, size, mode)
                else:
                    images[position] = eval_crop(picture, pre, mode)
        if len(self.decoded):
            images[~on_device] = self.decoded.to(device, non_blocking=True)
        return images

    def _train_crop(self, picture: torch.Tensor, position: int, size: int, mode: InterpolationMode) -> torch.Tensor:
        """The drawn box, resized to size x size and flipped when drawn so, as RandomResizedCrop on a tensor does."""
        top, left, height, width = self.boxes[position].tolist()
        crop = TF.resized_crop(picture, top, left, height, width, [size, size], interpolation=mode, antialias=True)
        return crop.flip(-1) if self.flips[position] else crop


def pack_batch(items: list[tuple[EncodedImage | torch.Tensor, int]]) -> tuple[PackedImages, torch.Tensor]:
    """The DataLoader's collate_fn for EncodedReader items: (PackedImages, labels)."""
    placeholder = EncodedImage(b"", 1)  # no bytes: an image decoded on the CPU, which `decoded` holds
    encoded = [item if isinstance(item, EncodedImage) else placeholder for item, _ in items]
    decoded = [item for item, _ in items if isinstance(item, torch.Tensor)]
    data = b"".join(item.data for item in encoded)
    packed = PackedImages(
        data=torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8),
        lengths=torch.tensor([len(item.data) for item in encoded], dtype=torch.int64),
        orientations=torch.tensor([item.orientation for item in encoded], dtype=torch.int64),
        boxes=torch.tensor([item.box for item in encoded], dtype=torch.int64).view(-1, 4),
        flips=torch.tensor([item.flip for item in encoded], dtype=torch.bool),
        decoded=torch.stack(decoded) if decoded else torch.empty((0, 3, 1, 1), dtype=torch.uint8),
        train=any(item.box[2] > 0 for item in encoded),  # a drawn box is never 0 pixels high
    )
    return packed, torch.tensor([label for _, label in items], dtype=torch.int64)


def upright(picture: torch.Tensor, orientation: int) -> torch.Tensor:
    """(C, H, W) as stored -> as a viewer shows it, for EXIF orientation 1..8 (PIL's ImageOps.exif_transpose)."""
    if orientation in (5, 6, 7, 8):  # the four that turn by 90 degrees: transpose first, then as 1..4 below
        picture = picture.transpose(-1, -2)
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    flips = {1: (), 2: (-1,), 3: (-1, -2), 4: (-2,)}[orientation]
    return picture.flip(flips) if flips else picture


def eval_crop(picture: torch.Tensor, pre: Preprocessing, mode: InterpolationMode) -> torch.Tensor:
    """build_eval_transform on a (3, H, W) tensor: aspect limited, shorter side to resize_size, center crop."""
    height, width = picture.shape[-2:]
    longest = int(MAX_ASPECT * min(width, height))
    if max(width, height) > longest:  # as preprocessing.limit_aspect cuts a strip
        top, left = max(0, (height - longest) // 2), max(0, (width - longest) // 2)
        picture = picture[:, top : top + min(height, longest), left : left + min(width, longest)]
    picture = TF.resize(picture, [pre.resize_size], interpolation=mode, antialias=True)
    return TF.center_crop(picture, [pre.crop_size, pre.crop_size])
