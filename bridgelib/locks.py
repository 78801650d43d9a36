"""One writer per output: an exclusive lock on each --out of `generate`, `invert`, `train` and
`sweep` (and on the folders notebooks generate into and the tokens they learn), so that two
runs never write one set, one run folder or one token at once.

The lock is a file (`.bridge.lock` inside an output folder, `.<name>.lock` beside an output
file) held with flock: the kernel drops it when its holder exits, SIGKILL included, so a crash
leaves no stale lock, only a file the next writer takes over. A second writer is refused in one
line naming the holder's PID.

No notebook teaches it: docs/bad_inputs.md ("Files that are not what they claim").
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bridgelib.files import UnsafeTarget

LOCK_NAME = ".bridge.lock"     # inside an output folder; an output file's is beside it
_HELD: dict[str, list] = {}    # lock file -> [fd, depth, folders made for it]


class OutputBusy(RuntimeError):
    """Another process holds the output's lock."""


def lock_file_of(out: str | Path, is_file: bool = False) -> Path:
    """The lock of an output folder (inside it), or of an output file (beside it, hidden)."""
    out = Path(out).expanduser()
    return out.parent / f".{out.name}.lock" if is_file else out / LOCK_NAME


@contextlib.contextmanager
def output_lock(out: str | Path, is_file: bool = False):
    """Hold an exclusive lock on an output (a folder, or with is_file a file) while the block
    runs: a second writer (another process) is refused in one line naming the holder's PID.
    flock: the kernel drops it when the holder exits, killed included, so a crash leaves no
    stale lock (a leftover lock file is taken over). Re-entrant within a process. The lock file
    is removed on release, and so are the folders made only to hold it, if left empty.
    Launched on several processes (RANK > 0), only rank 0 locks."""
    path = lock_file_of(out, is_file)
    if os.environ.get("RANK", "0") != "0" or not str(out).strip() or (
            not path.parent.is_dir() and any(p.exists() and not p.is_dir()
                                             for p in (path.parent, *path.parent.parents))):
        yield  # another rank's lock, or an --out inside a file: the writer refuses it itself
        return
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    fd = _take_lock(path)
    _HELD[key] = [fd, 1, made]
    try:
        yield
    finally:
        del _HELD[key]
        try:
            if os.fstat(fd).st_ino == os.lstat(path).st_ino:
                os.unlink(path)
        except OSError:
            pass
        os.close(fd)
        for folder in made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break


def locks_output(arg: str = "out", is_file: bool = False):
    """Decorate a function that writes the output named by its argument `arg` so that it runs
    under `output_lock` (generate_synthetic_set, learn_style_token): notebooks get the same
    one-writer rule as the commands."""
    import functools
    import inspect

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            out = signature.bind(*args, **kwargs).arguments.get(arg)
            with output_lock(out, is_file) if out is not None else contextlib.nullcontext():
                return fn(*args, **kwargs)
        return locked
    return wrap


def _take_lock(path: Path) -> int:
    import fcntl
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as err:
            if os.path.islink(path):
                raise UnsafeTarget(f"lock file {str(path)!r} is a symlink; remove it") from None
            raise OSError(err.errno, err.strerror, str(path.parent)) from None  # the folder meant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            where = path.parent if path.name == LOCK_NAME else path.with_name(path.name[1:-5])
            raise OutputBusy(f"{str(where)!r} is being written by another bridgelib process "
                             f"(PID {holder}, lock {str(path)!r}); wait for it to finish or "
                             f"choose another --out") from None
        try:  # the file we locked is still the one at `path` (a releasing holder unlinks it)
            same = os.fstat(fd).st_ino == os.lstat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)
    raise OutputBusy(f"could not take the lock {str(path)!r}; another process keeps replacing it")
