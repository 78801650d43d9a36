"""The mini world's real target, Fashion-MNIST, and the looks its generator's "web" shows it in.

Fashion-MNIST (Zalando Research, MIT licence): 70,000 real grayscale product photos of 10
classes, among them the confusable tops (t-shirt, pullover, coat, shirt) and footwear (sandal,
sneaker, ankle boot). The course shows them at 32x32, dark on white (x -> 255 - x, 2 px of white
padding), the polarity of the font glyphs. A fixed seeded split of its 60,000 training images:

- the training *pool* (`POOL_PER_CLASS` per class; k-shot subsets are drawn from it), shipped in
  `data/fashion-mnist/pool.npz`;
- the *generator's share* (every other training image): the corpus of the mini generator and the
  judge, read at build time from the raw files (`source_dir`), never shipped;
- the *test set*: the 10,000 official test images, shipped in `data/fashion-mnist/test.npz`.

`load_mini_part` reads the shipped pool and test set: the `fashion-mnist` entry of the dataset
registry (`bridgelib.datasets.load_dataset`), through which runs read them.

`LOOKS` restyle an image into looks that are not the target's (line drawings, silhouettes,
negatives, faded prints): the web's default look, which DSI has to move away from.

Taught in notebooks 01, 02, 07.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from bridgelib.config import DATA_DIR
from bridgelib.data import ImageSet
from bridgelib.files import write_json

CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle boot")
DATASET = "fashion-mnist"  # its name in the dataset registry and the mini profile
SHIP_DIR = DATA_DIR / DATASET
SPLIT_FILE = SHIP_DIR / "split.json"
# 100 per class: vanilla on the full pool then sits mid-band (0.75-0.92) with the mini backbone,
# 16 shots stays well below the full pool, and the paper's 15-24 synthetic images per real image
# cost 1,500-2,400 per class, which 2 CPU cores generate in minutes, not hours.
POOL_PER_CLASS = 100
SPLIT_SEED = 0
# Where the raw idx files are looked for, in order: $BRIDGELIB_FASHION_MNIST, Debian's
# `dataset-fashion-mnist` package, torchvision's FashionMNIST(root, download=True) layout.
SOURCE_DIRS = ("/usr/share/datasets/fashion-mnist", "~/.cache/fashion-mnist/FashionMNIST/raw")
RAW_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MINI_PARTS = ("pool", "test")


def source_dir() -> Path:
    """The folder holding Fashion-MNIST's four raw idx files (gzipped or not)."""
    candidates = [os.environ.get("BRIDGELIB_FASHION_MNIST"), *SOURCE_DIRS]
    for c in filter(None, candidates):
        d = Path(c).expanduser()
        if _raw_path(d, RAW_FILES["train"][0]) is not None:
            return d
    raise FileNotFoundError(
        "Fashion-MNIST's raw files were not found in " + ", ".join(filter(None, candidates))
        + "; install Debian's dataset-fashion-mnist, or run torchvision.datasets.FashionMNIST(root, "
          "download=True) and set BRIDGELIB_FASHION_MNIST=root/FashionMNIST/raw")


def _raw_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_raw(split: str, folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), light garment on black as distributed; labels (N,) int64)."""
    folder = folder or source_dir()
    images, labels = (_read_idx(_raw_path(folder, stem)) for stem in RAW_FILES[split])
    return images, labels.astype(np.int64)


def make_split(labels: np.ndarray, seed: int = SPLIT_SEED,
               per_class: int = POOL_PER_CLASS) -> dict[str, list[int]]:
    """Indices into the 60,000 training images: the pool (per_class per class) and the rest."""
    rng = np.random.default_rng(seed)
    pool = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                           for c in range(len(CLASSES))])
    generator = np.setdiff1d(np.arange(len(labels)), pool)
    return {"pool": sorted(int(i) for i in pool), "generator": [int(i) for i in generator]}


def split_indices() -> dict[str, list[int]]:
    """The committed split (data/fashion-mnist/split.json): 'pool' and 'generator' indices."""
    d = json.loads(SPLIT_FILE.read_text())
    return {"pool": d["pool"], "generator": d["generator"]}


def to_target_look(raw: np.ndarray) -> np.ndarray:
    """(N, 28, 28) light-on-black -> (N, 32, 32) uint8, dark on white: the course's real images."""
    return np.pad(255 - raw, ((0, 0), (2, 2), (2, 2)), constant_values=255)


def load_mini_part(part: str) -> ImageSet:
    """The shipped training pool ('pool') or test set ('test') in the target's look: the
    registry's `fashion-mnist` entry reads its 'train' and 'test' splits here."""
    if part not in MINI_PARTS:
        raise ValueError(f"unknown part {part!r} of the mini target; valid: {', '.join(MINI_PARTS)}")
    with np.load(SHIP_DIR / f"{part}.npz") as z:
        images, labels = z["images"], z["labels"]
    return ImageSet.from_gray(to_target_look(images), labels, CLASSES)


def ship(folder: Path | None = None, out: Path = SHIP_DIR) -> dict:
    """Write the split (indices), the pool and the test images into `out` (compressed npz)."""
    folder = folder or source_dir()
    train_x, train_y = read_raw("train", folder)
    test_x, test_y = read_raw("test", folder)
    split = make_split(train_y)
    out.mkdir(parents=True, exist_ok=True)
    pool = np.asarray(split["pool"])
    np.savez_compressed(out / "pool.npz", images=train_x[pool], labels=train_y[pool], index=pool)
    np.savez_compressed(out / "test.npz", images=test_x, labels=test_y,
                        index=np.arange(len(test_y)))
    record = {"seed": SPLIT_SEED, "pool_per_class": POOL_PER_CLASS, "classes": list(CLASSES),
              "source": "Fashion-MNIST train (60,000) and t10k (10,000) idx files",
              "test": "all 10,000 t10k images", **split}
    write_json(out / "split.json", record)
    return record


# ---------------------------------------------------------------- looks of the generator's web
def _edges(x: np.ndarray) -> np.ndarray:
    """Line drawing: Sobel edges of the garment, dark lines on white."""
    f = x.astype(np.float32)
    p = np.pad(f, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]) * 2 + p[:, :-2, 2:] - p[:, :-2, :-2] + p[:, 2:, 2:] - p[:, 2:, :-2]
    gy = (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]) * 2 + p[:, 2:, :-2] - p[:, :-2, :-2] + p[:, 2:, 2:] - p[:, :-2, 2:]
    mag = np.hypot(gx, gy)
    mag = mag / np.maximum(mag.reshape(len(x), -1).max(1), 1)[:, None, None]
    return 255 - np.clip(mag * 1.6, 0, 1) * 255


def _silhouette(x: np.ndarray, grey: float) -> np.ndarray:
    return np.where(x > 12, grey, 255.0)


LOOKS = {
    "outline": _edges,                                      # a line drawing
    "negative": lambda x: x.astype(np.float32),             # light garment on black
    "silhouette": lambda x: _silhouette(x, 0.0),            # a filled black shape
    "shadow": lambda x: _silhouette(x, 128.0),              # a flat grey shape
    "faded": lambda x: 255 - x.astype(np.float32) * 0.35,   # the target's look at a third of its contrast
}


def restyle(raw: np.ndarray, look: str) -> np.ndarray:
    """(N, 28, 28) raw images in one of `LOOKS` (or 'target'), as (N, 32, 32) uint8."""
    if look == "target":
        return to_target_look(raw)
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; valid: target, {', '.join(LOOKS)}")
    y = np.clip(LOOKS[look](raw), 0, 255).astype(np.uint8)
    pad = 0 if look == "negative" else 255
    return np.pad(y, ((0, 0), (2, 2), (2, 2)), constant_values=pad)
