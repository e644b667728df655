"""Reading image folders: scanning, robust decoding, splitting, transforms and the Dataset."""

from pathlib import Path

# PIL refuses images above twice its MAX_IMAGE_PIXELS; we use the same limit, checked before decoding.
DEFAULT_MAX_PIXELS = 178_956_970


def sample_data_path() -> Path:
    """The bundled sample: 138 public-domain / CC0 photos in 5 classes (credits in its CREDITS.md)."""
    return Path(__file__).resolve().parent.parent / "samples" / "gcompris-photos"
