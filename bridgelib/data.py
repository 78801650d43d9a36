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

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
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
