"""Real and synthetic image sets, the fixed digits split, and k-shot subsets.

Every set is decoded once into an `ImageSet`: uint8 images (N, 3, H, W), labels and class names.
Small sets then train with no per-step PIL work (augmentation runs on whole batches).

The mini world's real data are scikit-learn's 1,797 handwritten digits (8x8, ink values 0..16).
They are shown as 32x32 RGB, dark ink on white paper: x -> 1 - x/16, then bilinear upsampling
8 -> 32 (align_corners=False), the same size and polarity as the mini generator's glyphs.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bridgelib.config import DATA_DIR
from bridgelib.files import write_json

SPLIT_FILE = DATA_DIR / "digits_split.json"
SPLIT_PARTS = ("generator", "pool", "test")
SHOTS = (1, 2, 4, 8, 16, "full")
DIGIT_CLASSES = tuple(f"digit {n}" for n in
                      ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))


@dataclass
class ImageSet:
    images: torch.Tensor        # (N, 3, H, W) uint8
    labels: torch.Tensor        # (N,) int64
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "ImageSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.class_names)

    def floats(self) -> torch.Tensor:
        return self.images.float() / 255


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as (images (N, 8, 8) float in 0..16, labels (N,))."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def digits_to_32px(images8: np.ndarray) -> torch.Tensor:
    """(N, 8, 8) ink values 0..16 -> (N, 3, 32, 32) uint8, dark ink on white."""
    x = 1.0 - torch.as_tensor(images8, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def make_digits_split(seed: int = 0) -> dict[str, list[int]]:
    """Stratified thirds of the digits: per class, shuffle with `seed` and deal into 3 parts."""
    _, labels = digits_raw()
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {p: [] for p in SPLIT_PARTS}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        for part, chunk in zip(SPLIT_PARTS, np.array_split(idx, 3)):
            parts[part].extend(int(i) for i in chunk)
    return {p: sorted(v) for p, v in parts.items()}


def digits_split() -> dict[str, list[int]]:
    """The committed split (data/digits_split.json); written once from seed 0 if missing."""
    if not SPLIT_FILE.exists():
        write_json(SPLIT_FILE, {"seed": 0, **make_digits_split(0)})
    d = json.loads(SPLIT_FILE.read_text())
    return {p: d[p] for p in SPLIT_PARTS}


def load_digits_part(part: str) -> ImageSet:
    """One part of the split ('generator', 'pool' or 'test') as an ImageSet."""
    if part not in SPLIT_PARTS:
        raise ValueError(f"unknown digits part {part!r}; valid: {', '.join(SPLIT_PARTS)}")
    images, labels = digits_raw()
    idx = digits_split()[part]
    return ImageSet(digits_to_32px(images[idx]), torch.as_tensor(labels[idx]), list(DIGIT_CLASSES))


def parse_shots(shots: int | str | None) -> int | None:
    """'full' / None -> None (the whole pool); otherwise a positive int."""
    if shots is None or shots == "full":
        return None
    if isinstance(shots, str) and shots.strip().isdigit():
        shots = int(shots)
    if isinstance(shots, bool) or not isinstance(shots, numbers.Integral) or shots <= 0:
        raise ValueError(f"shots={shots!r} is invalid; expected a positive integer or 'full'")
    return int(shots)


def kshot_subset(pool: ImageSet, shots: int | str | None, seed: int = 0) -> ImageSet:
    """k images per class drawn from the pool only (seeded), or the whole pool for 'full'."""
    k = parse_shots(shots)
    if k is None:
        return pool
    labels = pool.labels.numpy()
    smallest = min(int((labels == c).sum()) for c in range(len(pool.class_names)))
    if k > smallest:
        raise ValueError(f"shots={k} is invalid; the training pool has {smallest} images in its "
                         f"smallest class (valid: 1..{smallest} or 'full')")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                          for c in range(len(pool.class_names))])
    return pool.subset(np.sort(idx))


def load_real(dataset: str, split: str, shots: int | str | None = None, seed: int = 0,
              root: str | Path | None = None, size: int = 224) -> ImageSet:
    """The real target data: split 'train' (k-shot: from the pool for digits) or 'test'.

    Datasets other than the digits come from the registry in `bridgelib.datasets` under `root`.
    """
    if dataset != "digits":
        from bridgelib.datasets import DATASETS, load_dataset, load_kshot
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; valid: digits, {', '.join(DATASETS)}")
        if root is None:
            raise ValueError(f"dataset {dataset!r} needs a data root (config data_root or $BRIDGELIB_DATA)")
        if split == "train" and parse_shots(shots) is not None:
            return load_kshot(dataset, root, size, shots, seed)
        return load_dataset(dataset, split, root, size)
    if split == "test":
        return load_digits_part("test")
    if split == "train":
        return kshot_subset(load_digits_part("pool"), shots, seed)
    raise ValueError(f"unknown split {split!r}; valid: train, test")


def real_data(cfg, split: str, shots: int | str | None = None, seed: int = 0,
              size: int | None = None) -> ImageSet:
    """`load_real` for a config: its dataset, data root and image size (or `size`)."""
    return load_real(cfg.dataset, split, shots, seed, cfg.data_root or None, size or cfg.image_size)


def load_image_folder(root: str | Path, size: int, class_names: list[str] | None = None) -> ImageSet:
    """An ImageFolder (`root/<class>/<image>`) decoded once to (N, 3, size, size) uint8.

    Synthetic sets written by `bridge generate` are ImageFolders; their metadata.jsonl names
    each folder's class. `class_names`, if given, fixes the label order and must match.
    """
    from PIL import Image
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    names = _folder_class_names(root)
    if class_names is not None and sorted(names.values()) != sorted(class_names):
        raise ValueError(f"classes of {str(root)!r} ({', '.join(sorted(names.values()))}) do not "
                         f"match the dataset's ({', '.join(sorted(class_names))})")
    order = list(class_names) if class_names is not None else sorted(names.values())
    images, labels = [], []
    for folder, name in sorted(names.items()):
        for path in sorted(p for p in (root / folder).iterdir() if p.suffix.lower() in
                           (".png", ".jpg", ".jpeg", ".bmp", ".webp")):
            with Image.open(path) as im:
                im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                images.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
            labels.append(order.index(name))
    if not images:
        raise ValueError(f"image folder {str(root)!r} holds no images")
    return ImageSet(torch.stack(images), torch.tensor(labels), order)


def _folder_class_names(root: Path) -> dict[str, str]:
    """{folder: class name}: from metadata.jsonl when present (synthetic sets), else folder names."""
    meta = root / "metadata.jsonl"
    if meta.exists():
        rows = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
        return {r["file_name"].split("/")[0]: r["class_name"] for r in rows}
    return {p.name: p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
