"""Shared by the bad-input tests (test_bad_inputs, test_hostile_inputs): the `bridge` command
lines they vary, and a folder nobody may write into."""
import errno
import os
import tempfile
from pathlib import Path


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
