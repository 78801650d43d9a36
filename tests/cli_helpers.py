"""Shared by the tests: the `bridge` command lines the bad-input tests vary, a folder nobody may
write into, and a small three-class image folder (the paper-profile, streaming and
distributed tests' stand-in)."""
import errno
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def generate(t, *extra):
    return ["generate", "--per-class", "1", "--steps", "1", "--out", str(t / "set"), *extra]


def train(t, *extra):
    return ["train", "--recipe", "vanilla", "--shots", "1", "--out", str(t / "run"), *extra]


def invert(t, *extra):
    return ["invert", "--shots", "1", "--out", str(t / "tok.safetensors"), *extra]


def read_only_dir(path: Path, mp) -> Path:
    """A folder nobody may write into: chmod 0o555, or (as root, whom chmod does not stop)
    every temp file refused inside it with EACCES, which is how the package writes files."""
    path.mkdir(exist_ok=True)
    path.chmod(0o555)
    try:
        (path / "probe").touch()
    except PermissionError:
        return path
    (path / "probe").unlink()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(path.resolve()):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real(*args, dir=dir, **kwargs)
    mp.setattr(tempfile, "mkstemp", mkstemp)
    return path


def write_folder(root: Path, per_class: int, seed: int, side: int = 40, spread: int = 60,
                 step: int = 80, classes=("cat", "dog", "fox")) -> None:
    """root/<class>/<i>.png: class c is noise in [0, spread) plus step * c, side x side+8 px
    (`spread` against `step` sets how hard the classes are to tell apart)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, spread, (side, side + 8, 3), dtype=np.uint8) + np.uint8(step * c)
            Image.fromarray(img).save(root / name / f"{i}.png")
