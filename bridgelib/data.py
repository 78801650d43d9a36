"""Images decoded once: the `ImageSet` every stage trains on, and the one image decoder.

Every set, real or synthetic, is decoded once into an `ImageSet`: uint8 images (N, 3, H, W),
labels and class names. Small sets then train with no per-step PIL work (augmentation runs on
whole batches).

Every image file is decoded by `read_rgb` (JPEG at a reduced scale, 16-bit and alpha converted,
a pixel cap), then brought to size x size by `resize_image` in one of two ways:

- `crop`: shorter side to `size` (bicubic), then the centre square: the registry's datasets
  (`bridgelib.datasets`), photos of any shape;
- `stretch`: bilinear to size x size: ImageFolders read by `bridgelib.folders.load_image_folder`
  (synthetic sets, already square).

Where the sets come from: `bridgelib.datasets.load_dataset` (the one door to real data) and
`bridgelib.folders` (ImageFolders: synthetic sets, your own folder).

Every notebook's images are ImageSets; notebook 01 shows the first ones.
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from bridgelib.files import progress

Pairs = list[tuple[Path, int]]                      # (image file, label)
RESIZES = ("crop", "stretch")


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
                         f"fewer images (a smaller --per-class) or a smaller size")


# ours: far above any photo a run needs (it is resized to at most a few hundred px), low enough
# that 8 decoding threads stay near 1 GB; JPEGs count at the reduced scale they decode at.
MAX_PIXELS = 50_000_000
# PIL warns from 89 M pixels at open; MAX_PIXELS refuses such an image in one line of its own (or
# a JPEG decodes it reduced), so the warning says nothing. Set once, for PIL's module only:
# setting a filter at each decode would also reset every module's record of warnings shown once.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning, module="PIL")


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


def resize_image(im, size: int, resize: str = "crop") -> np.ndarray:
    """A PIL RGB image as (size, size, 3) uint8: `crop` (shorter side to size, bicubic, centre
    crop) or `stretch` (bilinear to size x size); the module docstring says which sets use which."""
    if resize == "crop":
        return np.asarray(ImageOps.fit(im, (size, size), Image.BICUBIC))
    if resize == "stretch":
        return np.asarray(im.resize((size, size), Image.BILINEAR))
    raise ValueError(f"resize={resize!r} is invalid; valid: {', '.join(RESIZES)}")


def decode_image(path: str | Path, size: int, resize: str = "crop") -> np.ndarray:
    """(size, size, 3) uint8 RGB: `read_rgb`, then `resize_image`. A file that does not decode
    raises what PIL raises."""
    return resize_image(read_rgb(path, size), size, resize)


def read_image(path: Path, size: int | None,
               resize: str = "crop") -> tuple[np.ndarray | None, tuple[int, int] | None]:
    """(decode_image's array, or None when size is None; (width, height) in the file), or
    (None, None) when the file does not decode (corrupt, truncated, not an image): what every
    loader skips. An image too large to decode is refused (ImageTooLarge), not skipped."""
    if resize not in RESIZES:  # checked here: inside the try it would read as an unreadable file
        raise ValueError(f"resize={resize!r} is invalid; valid: {', '.join(RESIZES)}")
    try:
        im, wh = _decode(Path(path), size or 64)  # size None, a check: decoded small if it can be
        return (None if size is None else resize_image(im, size, resize)), wh
    except ImageTooLarge:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None, None


def decode_images(pairs: Pairs, size: int, resize: str = "crop", workers: int = 8,
                  desc: str = "decoding") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode (file, label) pairs in threads (PIL releases the GIL) into (N, 3, size, size)
    uint8 and (N,) int64, filled in place; unreadable files are skipped with one warning."""
    check_memory(len(pairs), size, desc)  # before the one tensor they all go into
    out = torch.empty((len(pairs), 3, size, size), dtype=torch.uint8)
    ok = np.ones(len(pairs), dtype=bool)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        arrays = pool.map(lambda p: read_image(p[0], size, resize)[0], pairs)
        for i, arr in enumerate(progress(arrays, total=len(pairs), desc=desc)):
            if arr is None:
                ok[i] = False
            else:
                out[i] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    labels = torch.tensor([y for _, y in pairs], dtype=torch.int64)
    if not ok.all():
        bad = [str(pairs[i][0]) for i in np.flatnonzero(~ok)]
        warnings.warn(f"{desc}: skipped {len(bad)} unreadable image(s): {', '.join(bad)}",
                      stacklevel=2)
        keep = torch.from_numpy(ok)
        return out[keep], labels[keep]
    return out, labels


# ---------------------------------------------------------------- sets that stream from disk
# ours: a set whose decoded images (n x 3 x size x size uint8) exceed this many bytes is not
# decoded into RAM but streams from disk (`StreamSet`): the paper's 1,000 synthetic images per
# class at 224 px are 15 GB for Aircraft. Every mini set is far below it (tests lower it).
STREAM_ABOVE_BYTES = 2 * 2**30


def decoded_bytes(n_images: int, size: int) -> int:
    return n_images * 3 * size * size


def streams(n_images: int, size: int) -> bool:
    """Whether a set of n images at `size` px streams from disk instead of being decoded."""
    return decoded_bytes(n_images, size) > STREAM_ABOVE_BYTES


def opens(path: Path) -> bool:
    """Whether PIL reads the file's header (not the pixels): the cheap check a streamed set
    makes before training, where the in-RAM path decodes every file."""
    try:
        with Image.open(path):
            return True
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def readable(pairs: Pairs, desc: str, workers: int = 8) -> Pairs:
    """The pairs whose files open, in threads; the others skipped with one warning naming them."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        ok = list(pool.map(lambda p: opens(p[0]), pairs))
    if not all(ok):
        bad = [str(p) for (p, _), good in zip(pairs, ok) if not good]
        warnings.warn(f"{desc}: skipped {len(bad)} unreadable image(s): {', '.join(bad)}",
                      stacklevel=2)
    return [p for p, good in zip(pairs, ok) if good]


@dataclass
class StreamSet:
    """A set too large to hold decoded (`streams`): only what each image is, decoded when a
    batch needs it, in DataLoader workers (`loader`). It has an ImageSet's `labels`,
    `class_names`, `len` and `subset`, and no `images`.

    An item is a (file, resize) pair, decoded as the in-RAM path decodes it (`decode_image`),
    or a uint8 (3, size, size) tensor (an in-RAM set joined to a streamed one, `join_sets`).
    """
    items: list
    labels: torch.Tensor        # (N,) int64
    class_names: list[str]
    size: int

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "StreamSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return StreamSet([self.items[i] for i in idx.tolist()], self.labels[idx],
                         self.class_names, self.size)

    def image(self, i: int) -> torch.Tensor:
        """Image i as (3, size, size) uint8, decoded now; a file that no longer decodes is
        refused in one line naming it (the header check found it readable)."""
        item = self.items[i]
        if isinstance(item, torch.Tensor):
            return item
        path, resize = item
        try:
            arr = decode_image(path, self.size, resize)
        except ImageTooLarge:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise ValueError(f"image {str(path)!r} does not decode ({err}); remove it") from None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def decode(self, idx=None) -> ImageSet:
        """Some of its images (all: idx None) decoded into an ImageSet, e.g. a few to look at."""
        part = self if idx is None else self.subset(idx)
        check_memory(len(part), self.size, "stream subset")
        images = torch.stack([part.image(i) for i in range(len(part))]) if len(part) else \
            torch.empty((0, 3, self.size, self.size), dtype=torch.uint8)
        return ImageSet(images, part.labels, self.class_names)

    def loader(self, batches, augment_kind: str = "none", seed: int = 0, workers: int = 0,
               pin_memory: bool = False):
        """A DataLoader of (uint8 images (B, 3, size, size), labels) over `batches` (an
        iterable of index lists, its order kept), decoded and augmented in `workers` worker
        processes (0: in this one). Each image's augmentation is drawn from a generator seeded
        by (seed, its position in the stream), so a run is the same for any number of workers."""
        from torch.utils.data import DataLoader
        keyed = _Keyed(batches)
        return DataLoader(_Decoded(self, augment_kind, seed), batch_sampler=keyed,
                          num_workers=workers, pin_memory=pin_memory,
                          generator=torch.Generator().manual_seed(seed))  # not the global one


class _Keyed:
    """A batch sampler: each index list of `batches` as (position in the stream, index) keys."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        k = 0
        for idx in self.batches:
            idx = [int(i) for i in idx]
            yield [(k + j, i) for j, i in enumerate(idx)]
            k += len(idx)


class _Decoded:
    """The map-style dataset a streamed set's DataLoader reads: key (position, index) -> one
    decoded, augmented image and its label (what runs in the workers)."""

    def __init__(self, data: StreamSet, augment_kind: str, seed: int):
        if augment_kind not in ("none", "shift", "crop-flip"):
            raise ValueError(f"augment={augment_kind!r} is invalid; valid: shift, crop-flip, none")
        self.data, self.kind, self.seed = data, augment_kind, seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key):
        k, i = key
        x = self.data.image(i)
        if self.kind != "none":
            s = int(np.random.SeedSequence([self.seed, k]).generate_state(1)[0])
            gen = torch.Generator().manual_seed(s)
            x = augment_one(x, self.kind, gen)
        return x, self.data.labels[i]


def augment_one(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """One uint8 (3, H, W) image augmented as `augment` augments a batch of one (what a streamed
    set's workers run, so that a set augments the same way in RAM and streamed)."""
    out = augment(x[None].float() / 255, kind, gen)[0]
    return (out * 255).round().to(torch.uint8)


def join_sets(a, b):
    """Two sets as one (the mixed recipe's real + synthetic): an ImageSet when both are, else a
    StreamSet (the in-RAM one's images kept as tensor items)."""
    if isinstance(a, ImageSet) and isinstance(b, ImageSet):
        return ImageSet(torch.cat([a.images, b.images]), torch.cat([a.labels, b.labels]),
                        a.class_names)
    size = a.size if isinstance(a, StreamSet) else b.size
    items = [it for s in (a, b) for it in (s.items if isinstance(s, StreamSet) else list(s.images))]
    return StreamSet(items, torch.cat([a.labels, b.labels]), a.class_names, size)


def stream_pairs(pairs: Pairs, size: int, resize: str, class_names: list[str], desc: str,
                 workers: int = 8) -> StreamSet:
    """A streamed set of (file, label) pairs: files that do not open skipped with a warning."""
    pairs = readable(pairs, desc, workers)
    return StreamSet([(p, resize) for p, _ in pairs],
                     torch.tensor([y for _, y in pairs], dtype=torch.int64), list(class_names),
                     size)


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Batch augmentation on tensors in [0, 1], every draw from `gen`: the in-RAM path's
    (`transfer.train_stage`); a streamed set runs it per image in its workers (`augment_one`).

    shift: random translation of up to 1/8 of the side, white fill (glyphs must not be flipped);
    crop-flip: random-resized crop back to H x W + horizontal flip (natural images).
    """
    if kind == "none":
        return x
    n, _, h, w = x.shape
    if kind == "crop-flip":
        out = torch.cat([F.interpolate(x[k:k + 1, :, top:top + ch, left:left + cw], size=(h, w),
                                       mode="bilinear", align_corners=False, antialias=True)
                         for k, (top, left, ch, cw) in enumerate(crop_boxes(n, h, w, gen))])
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out).clamp(0, 1)
    pad = max(1, h // 8)
    padded = F.pad(x, (pad,) * 4, mode="constant", value=1.0)
    dx, dy = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def crop_boxes(n: int, h: int, w: int, gen: torch.Generator, scale=(0.08, 1.0),
               ratio=(3 / 4, 4 / 3)) -> list[tuple[int, int, int, int]]:
    """n (top, left, height, width) boxes as torchvision's `RandomResizedCrop.get_params` draws
    them (a box of 8-100% of the area, aspect 3/4-4/3, ten tries, then the central crop), from
    `gen` instead of the global generator so that a seeded run repeats."""
    boxes, log_ratio = [], (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(n):
        for _ in range(10):
            area = h * w * (scale[0] + (scale[1] - scale[0]) * float(torch.rand(1, generator=gen)))
            aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0])
                              * float(torch.rand(1, generator=gen)))
            cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
                left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
                boxes.append((top, left, ch, cw))
                break
        else:
            cw, ch = w, h
            if w / h < ratio[0]:
                ch = round(w / ratio[0])
            elif w / h > ratio[1]:
                cw = round(h * ratio[1])
            boxes.append(((h - ch) // 2, (w - cw) // 2, ch, cw))
    return boxes
