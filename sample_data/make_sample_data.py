"""Regenerate the committed sample data in this folder.

    python sample_data/make_sample_data.py [FASHION_MNIST_DIR]

* fashion/<class>/NNN.png: the first 20 images of each of the 10 classes of
  the Fashion-MNIST training set (train file order), as 28x28 grayscale PNGs.
* photos/*.jpg: a few public-domain / CC0 colour photographs bundled with
  scikit-image, longer side at most 320 px.

Needs numpy, Pillow and scikit-image. Deterministic: same inputs, same files.
"""

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent
DEFAULT_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_DIR = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_FASHION_DIR)
CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle_boot"]  # labels 0..9
PER_CLASS = 20
# output name -> skimage.data function (licence: see its docstring and README.md)
PHOTOS = {"cat": "chelsea", "coffee": "coffee",
          "astronaut": "astronaut", "rocket": "rocket"}
MAX_SIDE = 320


def read_idx(path):
    """Read a gzip'ed IDX file: big-endian magic (0, 0, 0x08, ndim), dims, data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def make_fashion():
    images = read_idx(FASHION_DIR / "train-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_DIR / "train-labels-idx1-ubyte.gz")
    for label, name in enumerate(CLASSES):
        folder = OUT / "fashion" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, idx in enumerate(np.flatnonzero(labels == label)[:PER_CLASS]):
            Image.fromarray(images[idx]).save(folder / f"{i:03d}.png", optimize=True)


def make_photos():
    import skimage.data

    folder = OUT / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name, func in PHOTOS.items():
        img = Image.fromarray(getattr(skimage.data, func)()).convert("RGB")
        scale = MAX_SIDE / max(img.size)
        if scale < 1:
            size = (round(img.width * scale), round(img.height * scale))
            img = img.resize(size, Image.LANCZOS)
        img.save(folder / f"{name}.jpg", quality=88, optimize=True)


if __name__ == "__main__":
    make_fashion()
    make_photos()
    print(f"sample data written to {OUT}")
