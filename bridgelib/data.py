"""Real and synthetic image sets, the mini world's real target, and k-shot subsets.

Every set is decoded once into an `ImageSet`: uint8 images (N, 3, H, W), labels and class names.
Small sets then train with no per-step PIL work (augmentation runs on whole batches).

The mini world's real target is Fashion-MNIST (real grayscale product photos, 10 classes), shown
as 32x32 RGB, dark on white: x -> 255 - x with 2 px of white padding, the size and polarity of
the mini generator's glyphs. Its training pool and its 10,000 test images ship in
`data/fashion-mnist/` (`bridgelib.mini.fashion` says how the split was drawn).
"""
from __future__ import annotations

import io
import json
import numbers
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bridgelib.mini.fashion import CLASSES as MINI_CLASSES
from bridgelib.mini.fashion import SHIP_DIR, to_target_look

MINI_DATASET = "fashion-mnist"
MINI_PARTS = ("pool", "test")
SHOTS = (1, 2, 4, 8, 16, "full")


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

    @classmethod
    def from_gray(cls, images: np.ndarray, labels, class_names) -> "ImageSet":
        """Grayscale uint8 images (N, H, W) as an RGB set (the channel repeated)."""
        x = torch.from_numpy(np.ascontiguousarray(images))[:, None].expand(-1, 3, -1, -1).contiguous()
        return cls(x, torch.as_tensor(labels, dtype=torch.long), list(class_names))


def load_mini_part(part: str) -> ImageSet:
    """The mini target's training pool ('pool') or test set ('test'), shipped in data/."""
    if part not in MINI_PARTS:
        raise ValueError(f"unknown part {part!r} of the mini target; valid: {', '.join(MINI_PARTS)}")
    with np.load(SHIP_DIR / f"{part}.npz") as z:
        images, labels = z["images"], z["labels"]
    return ImageSet.from_gray(to_target_look(images), labels, MINI_CLASSES)


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
    """The real target data: split 'train' (k-shot: drawn from the pool for the mini target) or
    'test'. Datasets other than the mini target come from `bridgelib.datasets` under `root`.
    """
    if dataset != MINI_DATASET:
        from bridgelib.datasets import DATASETS, load_dataset, load_kshot
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; valid: {MINI_DATASET}, {', '.join(DATASETS)}")
        if root is None:
            raise ValueError(f"dataset {dataset!r} needs a data root (config data_root or $BRIDGELIB_DATA)")
        if split == "train" and parse_shots(shots) is not None:
            return load_kshot(dataset, root, size, shots, seed)
        return load_dataset(dataset, split, root, size)
    if split == "test":
        return load_mini_part("test")
    if split == "train":
        return kshot_subset(load_mini_part("pool"), shots, seed)
    raise ValueError(f"unknown split {split!r}; valid: train, test")


def real_data(cfg, split: str, shots: int | str | None = None, seed: int = 0,
              size: int | None = None) -> ImageSet:
    """`load_real` for a config: its dataset, data root and image size (or `size`)."""
    return load_real(cfg.dataset, split, shots, seed, cfg.data_root or None, size or cfg.image_size)


def load_image_folder(root: str | Path, size: int, class_names: list[str] | None = None) -> ImageSet:
    """An ImageFolder (`root/<class>/<image>`) decoded once to (N, 3, size, size) uint8.

    Synthetic sets written by `bridge generate` are ImageFolders; their metadata.jsonl names
    each folder's class. `class_names`, if given, fixes the label order and must match.
    The folder is checked as it is read (`check_image_folder`): an unreadable file is skipped
    with a warning naming it, not left to crash a DataLoader in epoch 3; a missing or empty
    folder, or a class without one readable image, stops here with a one-line ValueError.
    """
    root = Path(root).expanduser()
    if (root / "metadata.jsonl").exists():  # a synthetic set: its record is read after training
        _check_run_record(root / "run.json")
    names = _folder_class_names(root) if root.is_dir() else {}
    only = set(names) if (root / "metadata.jsonl").exists() else None
    if root.is_dir():  # every image is held decoded: refuse a set this machine cannot hold
        files = [p for f in class_folders(root) if only is None or f.name in only
                 for p in f.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        check_memory(len(files), size, str(root), copies=2)  # the images, then their stack
    report, decoded = _read_folder(root, size, 1, 0, splits=False, only=only)
    found = sorted(names[r["class"]] for r in report.rows)
    if class_names is not None and found != sorted(class_names):
        raise ValueError(f"classes of {str(root)!r} ({', '.join(found)}) do not "
                         f"match the dataset's ({', '.join(sorted(class_names))})")
    order = list(class_names) if class_names is not None else found
    if report.broken:
        warnings.warn(f"{root}: skipped {len(report.broken)} unreadable image(s): "
                      f"{', '.join(report.broken)}", stacklevel=2)
    labels = [order.index(names[folder]) for folder, _ in decoded]
    return ImageSet(torch.stack([img for _, img in decoded]), torch.tensor(labels), order)


# ---------------------------------------------------------------- your own folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
FOLDER_LAYOUT = "an ImageFolder: <root>/<class>/<image>"
SPLIT_LAYOUT = f"{FOLDER_LAYOUT} (or <root>/train/<class>/<image> and <root>/test/<class>/<image>)"


class FolderError(FileNotFoundError, ValueError):
    """A missing image folder: a ValueError like every other bad folder, and a FileNotFoundError."""


@dataclass
class FolderReport:
    """What `check_image_folder` found: one row per (split, class folder), plus what it skipped.

    `split` is 'all' for a folder of class folders, else 'train' or 'test'.
    """
    root: Path
    rows: list[dict]                  # split, class, images (readable), broken_files, odd_files
    odd: dict[str, str]               # relative path -> why it looks odd (tiny, elongated)
    ignored: list[str]                # files that are not images by their suffix (not read)
    sizes: dict[str, int]             # "WxH" -> number of readable images of that size

    @property
    def classes(self) -> list[str]:
        return sorted({r["class"] for r in self.rows})

    @property
    def counts(self) -> dict[str, int]:
        """Readable images per class (all splits together)."""
        return {c: sum(r["images"] for r in self.rows if r["class"] == c) for c in self.classes}

    @property
    def broken(self) -> list[str]:
        """Unreadable files (relative to root): reported, and skipped by every loader."""
        return [_rel(r, f) for r in self.rows for f in r["broken_files"]]

    skipped = broken

    @property
    def empty(self) -> list[str]:
        """Class folders without one readable image ('train/cat' in a split layout)."""
        return [_rel(r, "") for r in self.rows if not r["images"]]

    def table(self):
        """A pandas table: one row per split and class, with the names of unreadable files."""
        import pandas as pd
        return pd.DataFrame([{k: r[k] for k in ("split", "class", "images", "broken_files",
                                                  "odd_files")} for r in self.rows])

    def __str__(self) -> str:
        parts = []
        for split in dict.fromkeys(r["split"] for r in self.rows):
            n = [r["images"] for r in self.rows if r["split"] == split]
            parts.append(f"{'' if split == 'all' else split + ' '}{sum(n)} "
                         f"({min(n)}..{max(n)} per class)")
        common = max(self.sizes, key=self.sizes.get) if self.sizes else "-"
        lines = [f"{self.root}: {len(self.classes)} classes; readable images: {', '.join(parts)}; "
                 f"most common size {common} px"]
        lines.append(f"skipped {len(self.broken)} unreadable file(s)"
                     + (": " + ", ".join(self.broken) if self.broken else ""))
        lines += [f"odd: {path} ({why})" for path, why in self.odd.items()]
        lines += [f"empty class folder: {e}" for e in self.empty]
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} non-image file(s): "
                         f"{', '.join(self.ignored[:5])}{' ...' if len(self.ignored) > 5 else ''}")
        return "\n".join(lines)


def check_image_folder(root: str | Path, min_per_class: int = 1,
                       min_side: int = 32) -> FolderReport:
    """Read every image of your ImageFolder once and report what a training run would meet.

    The report lists the classes, readable images per class, unreadable files by name (every
    loader skips them), odd images (shorter side under `min_side` px, or longer than 4:1) and
    files that are not images. It refuses, with a one-line ValueError naming the folder, a
    folder that is missing or empty, holds no class folders, or has a class with fewer than
    `min_per_class` readable images (0: report empty classes instead of refusing).
    Both layouts the `imagefolder` dataset reads are accepted: `root/<class>/*` and
    `root/train/<class>/*` + `root/test/<class>/*`.
    """
    return _read_folder(Path(root).expanduser(), None, min_per_class, min_side, splits=True)[0]


def export_image_folder(images: ImageSet, root: str | Path, class_names: list[str] | None = None,
                        overwrite: bool = False) -> Path:
    """Write an ImageSet as an ImageFolder: `root/<class>/<index:05d>.png`, one folder per class.

    `class_names` (default: the set's own, in label order) name the folders, spaces as '_'
    ('ankle boot' -> ankle_boot/), which `bridgelib.prompts.clean_class_name` turns back into
    words. Used to give the mini profile "your own folder" (notebook 07). A non-empty `root` is
    replaced only with overwrite=True, and only if it holds nothing but class folders of images.
    """
    from PIL import Image

    from bridgelib.files import atomic_write_bytes
    from bridgelib.prompts import validate_class_names
    root = Path(root).expanduser()
    names = validate_class_names(list(class_names or images.class_names))
    if len(names) != len(images.class_names):
        raise ValueError(f"got {len(names)} class names for {len(images.class_names)} classes")
    folders = [re.sub(r"\s+", "_", n.strip()) for n in names]
    shared = {f: n for f, n in zip(folders, names)}
    for f, n in zip(folders, names):
        if shared[f] != n:  # two names, one folder: the second would mix into the first
            raise ValueError(f"class names {n!r} and {shared[f]!r} share the folder {f!r}; "
                             f"rename one")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{str(root)!r} is not empty; pass overwrite=True to replace it")
        _remove_image_folder(root)
    for i, (img, y) in enumerate(zip(images.images, images.labels.tolist())):
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="PNG")
        atomic_write_bytes(root / folders[y] / f"{i:05d}.png", buf.getvalue())
    return root


def _read_folder(root: Path, size: int | None, min_per_class: int, min_side: int, splits: bool,
                 only: set[str] | None = None):
    """Walk (and decode, when `size` is given) an ImageFolder: (FolderReport, [(class, image)]).

    splits: accept the train/ + test/ layout; only: read just these class folders (the ones a
    synthetic set's metadata.jsonl lists)."""
    layout = SPLIT_LAYOUT if splits else FOLDER_LAYOUT
    if isinstance(min_per_class, bool) or not isinstance(min_per_class, int) or min_per_class < 0:
        raise ValueError(f"min_per_class={min_per_class!r} is invalid; expected an integer >= 0")
    if not root.is_dir():
        raise FolderError(f"image folder {str(root)!r} does not exist; expected {layout}")
    parts = [s for s in ("train", "test") if class_folders(root / s) and only is None]
    if parts and not splits:
        raise ValueError(f"image folder {str(root)!r} holds {' and '.join(parts)} folders of "
                         f"classes; load each one (expected {FOLDER_LAYOUT})")
    report, decoded = FolderReport(root, [], {}, [], {}), []
    for split, base in [(s, root / s) for s in parts] or [("all", root)]:
        folders = class_folders(base)
        if not folders:
            loose = [p for p in base.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            what = (f"holds {len(loose)} image(s) but no class folders" if loose else
                    "is empty" if not any(base.iterdir()) else "holds no class folders")
            raise ValueError(f"image folder {str(base)!r} {what}; expected {layout}")
        for folder in (f for f in folders if only is None or f.name in only):
            row = _read_class(folder, split, report, size, min_side, decoded)
            if row["images"] < min_per_class:
                skipped = (f" (skipped unreadable: {', '.join(row['broken_files'])})"
                           if row["broken_files"] else "")
                raise ValueError(f"class folder {str(folder)!r} has {row['images']} readable "
                                 f"image(s){skipped}; expected at least {min_per_class} in each "
                                 f"class of {FOLDER_LAYOUT}")
            report.rows.append(row)
    return report, decoded


def _read_class(folder: Path, split: str, report: FolderReport, size: int | None, min_side: int,
                decoded: list) -> dict:
    """One class folder: its report row; odd sizes, ignored files and decoded images are added
    to `report` and `decoded` as they are met."""
    row = {"split": split, "class": folder.name, "images": 0, "broken_files": [], "odd_files": []}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(report.root).as_posix()
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            report.ignored.append(rel)
            continue
        img, wh = _open_image(path, size)
        if wh is None:
            row["broken_files"].append(path.name)
            continue
        row["images"] += 1
        key = f"{wh[0]}x{wh[1]}"
        report.sizes[key] = report.sizes.get(key, 0) + 1
        if min(wh) < min_side or max(wh) > 4 * min(wh):
            report.odd[rel] = f"{key} px, {'tiny' if min(wh) < min_side else 'elongated'}"
            row["odd_files"].append(path.name)
        if img is not None:
            decoded.append((folder.name, img))
    return row


def available_memory() -> int | None:
    """Bytes the machine can still give (Linux MemAvailable), or None where it is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(n_images: int, size: int, what: str, copies: int = 1) -> None:
    """Refuse, before decoding, a set whose decoded images (n x 3 x size x size uint8, held
    `copies` times at once) need more memory than the machine has available, with the estimate."""
    need, have = copies * n_images * 3 * size * size, available_memory()
    def amount(b: int) -> str:
        return f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"
    if have is not None and need > have:
        raise ValueError(f"{what!r}: {n_images:,} images at {size} px need {amount(need)} "
                         f"decoded, more than the {amount(have)} of memory available; use "
                         f"fewer images (a smaller --per-class or volume) or a smaller size")


# ours: far above any photo a run needs (it is resized to at most a few hundred px), low enough
# that 8 decoding threads stay near 1 GB; JPEGs count at the reduced scale they decode at.
MAX_PIXELS = 50_000_000


class ImageTooLarge(ValueError):
    """An image whose decoded size would exceed MAX_PIXELS: refused, not skipped."""


def read_rgb(path: str | Path, size: int):
    """The one image decoder: a file as an 8-bit RGB PIL image (loaded, the file closed).

    JPEGs decode at the smallest scale still at least `size` px (PIL's draft); an image with more
    than MAX_PIXELS pixels even so is refused (ImageTooLarge, one line naming it) before it is
    decoded. 16-bit and 32-bit grayscale are scaled to 8 bit (PIL's own conversion clips
    them, so a 16-bit PNG came out white); palette and alpha images are composited on white.
    Other failures (corrupt, truncated, not an image) raise what PIL raises.
    """
    return _decode(Path(path), size)[0]


def _decode(path: Path, size: int):
    """read_rgb's (image, (width, height) in the file)."""
    from PIL import Image
    # PIL warns from 89 M pixels; MAX_PIXELS refuses them all with its own one line
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"image {str(path)!r} is too large to decode ({err}); downsize it "
                            f"to at most {MAX_PIXELS:,} pixels") from None
    with im:
        wh = im.size
        im.draft("RGB", (size, size))
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise ImageTooLarge(f"image {str(path)!r} is {w}x{h} px ({w * h:,} pixels); expected "
                                f"at most {MAX_PIXELS:,} pixels: downsize it (a run uses "
                                f"{size} px)")
        return to_rgb(im), wh


def to_rgb(im):
    """A PIL image of any mode as 8-bit RGB: high-bit-depth gray scaled (not clipped), alpha and
    palette transparency composited on white, everything else by PIL's conversion."""
    from PIL import Image
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max() > 255):
            a = a / 257          # 0..65535 -> 0..255
        elif im.mode == "F" and a.max() <= 1:
            a = a * 255          # float images in 0..1
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        im = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)),
                                     im).convert("RGB")
    return im.convert("RGB")


def _open_image(path: Path, size: int | None) -> tuple[torch.Tensor | None, tuple[int, int] | None]:
    """(image (3, size, size) uint8 or None when size is None, (width, height)); (None, None)
    when the file does not decode (corrupt, truncated, not an image). An image too large to
    decode is refused (ImageTooLarge), not skipped."""
    from PIL import Image
    try:
        im, wh = _decode(path, size or 64)  # a check only: decoded small where the format allows
        if size is None:
            return None, wh
        im = im.resize((size, size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1), wh
    except ImageTooLarge:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None, None


def class_folders(d: Path) -> list[Path]:
    """Class folders: not hidden, and not the `splits/` folder where split files are kept."""
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name != "splits") if d.is_dir() else []


def _rel(row: dict, name: str) -> str:
    split = "" if row["split"] == "all" else row["split"]
    return "/".join(p for p in (split, row["class"], name) if p)


def _remove_image_folder(root: Path) -> None:
    """Delete an ImageFolder, refusing anything that is not class folders of image files."""
    import shutil
    for p in root.iterdir():
        files = list(p.iterdir()) if p.is_dir() else [p]
        if not p.is_dir() or any(f.is_dir() or f.suffix.lower() not in IMAGE_SUFFIXES
                                 for f in files):
            raise FileExistsError(f"{str(root)!r} holds {p.name!r}, which is not a class folder "
                                  f"of images; not replacing it (choose another folder)")
    shutil.rmtree(root)


def _check_run_record(path: Path) -> None:
    """A synthetic set's run.json, when present, must be a JSON object whose options are one:
    refused here, before a training run that would read it only at its end."""
    if not path.exists():
        return
    try:
        run = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        run = None
    if not isinstance(run, dict) or not isinstance(run.get("options", {}), dict):
        raise ValueError(f"{str(path)!r} is not a run.json of `bridge generate` (a JSON object "
                         f"with its options); regenerate the set, or delete run.json")


def _folder_class_names(root: Path) -> dict[str, str]:
    """{folder: class name}: from metadata.jsonl when present (synthetic sets), else folder names."""
    if (root / "metadata.jsonl").exists():
        from bridgelib.manifest import read_manifest  # the one reader: it checks every row
        rows = read_manifest(root)
        return dict(zip(rows.file_name.str.split("/").str[0], rows.class_name))
    return {p.name: p.name for p in class_folders(root)}
