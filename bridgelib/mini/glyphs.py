"""Glyphs rendered from the fonts that ship inside matplotlib: the mini world's "web".

Every image is dark ink on white paper, 32x32, the size and polarity of the course's real
images. Fonts are split once, by name, into the generator's fonts and held-out fonts; the
backbone trains on the generator's fonts and is scored on the held-out ones.

Taught in notebook 01.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Heavy third-party modules (matplotlib) are imported inside the functions that use them, so that
# `import bridgelib` and `bridge --help` do not load them.

SIZE = 32
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
# The backbone's pretraining classes: letters of both cases and symbols, never digits.
BACKBONE_CHARS = tuple("abcdefghijklmnopqrstuvwxyzABDEFGHIJKLMNQRTY") + tuple("+=?!@#$%&<>[]{}")
# Style words the generator's captions use for glyphs; each is a visible transformation.
GLYPH_STYLES = ("bold", "thin", "italic", "blurry", "pixelated", "noisy", "faded", "small", "large")
# Fonts whose code points do not map to the Latin letters and digits they claim.
_EXCLUDE = ("cmsy10", "cmex10", "STIXSiz", "STIXNonUni", "LastResort", "DejaVuSansDisplay",
            "DejaVuSerifDisplay")


def font_dir() -> Path:
    import matplotlib
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=None)
def list_fonts() -> tuple[str, ...]:
    """Font files that draw every digit and lowercase letter, sorted by name."""
    fonts = []
    for path in sorted(font_dir().glob("*.ttf")):
        if any(path.name.startswith(x) for x in _EXCLUDE):
            continue
        fonts.append(path.name)
    return tuple(fonts)


def font_split() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(generator fonts, held-out fonts): every fourth font by name is held out."""
    fonts = list_fonts()
    held = tuple(f for i, f in enumerate(fonts) if i % 4 == 1)
    return tuple(f for f in fonts if f not in held), held


@lru_cache(maxsize=256)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def render_glyph(char: str, font: str, rng: np.random.Generator, style: str | None = None) -> np.ndarray:
    """One glyph as a (32, 32) uint8 array, 255 = paper; random size, position and slant jitter,
    plus the named `style` transformation if given."""
    big = 2 * SIZE  # draw at 2x, then downsample: anti-aliased strokes
    size = int(rng.uniform(34, 46) * {"small": 0.6, "large": 1.25, "scan8": 1.3}.get(style, 1.0))
    stroke = int(rng.integers(2, 4)) if style in ("bold", "scan8") else 0
    img = Image.new("L", (big, big), 255)
    draw = ImageDraw.Draw(img)
    f = _font(font, size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), char, font=f, stroke_width=stroke)
    dx, dy = rng.uniform(-4, 4, size=2)
    pos = ((big - (x1 - x0)) / 2 - x0 + dx, (big - (y1 - y0)) / 2 - y0 + dy)
    draw.text(pos, char, fill=0, font=f, stroke_width=stroke, stroke_fill=0)
    if style == "thin":
        img = img.filter(ImageFilter.MaxFilter(3))
    shear = rng.uniform(0.25, 0.45) if style == "italic" else rng.uniform(-0.08, 0.08)
    img = img.transform(img.size, Image.AFFINE, (1, shear, -shear * big / 2, 0, 1, 0),
                        resample=Image.BILINEAR, fillcolor=255)
    img = img.rotate(rng.uniform(-8, 8), resample=Image.BILINEAR, fillcolor=255)
    img = img.resize((SIZE, SIZE), Image.LANCZOS)
    if style == "blurry":
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 1.8)))
    if style in ("pixelated", "scan8"):  # scan8: the digits' own 8x8 scan, upsampled bilinearly
        low = 8 if style == "scan8" else int(rng.integers(6, 11))
        img = img.resize((low, low), Image.BOX).resize((SIZE, SIZE), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)
    if style == "faded":
        arr = 255 - (255 - arr) * rng.uniform(0.3, 0.5)
    if style == "noisy":
        arr = arr + rng.normal(0, 30, arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def render_set(chars: tuple[str, ...], fonts: tuple[str, ...], n: int, seed: int,
               style_prob: float = 0.5, styles: tuple[str, ...] = GLYPH_STYLES
               ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """n random glyphs: (images uint8 (n, 32, 32), label indices into `chars`, style or None)."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, SIZE, SIZE), np.uint8)
    labels = rng.integers(0, len(chars), n)
    drawn: list[str | None] = []
    for i in range(n):
        style = str(rng.choice(styles)) if rng.random() < style_prob else None
        font = fonts[int(rng.integers(len(fonts)))]
        images[i] = render_glyph(chars[labels[i]], font, rng, style)
        drawn.append(style)
    return images, labels, drawn
