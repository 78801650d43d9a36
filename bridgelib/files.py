"""Small shared helpers: atomic writes, checksums, progress bars, devices and processes, seeding.

No notebook teaches it: every stage uses it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

# Heavy third-party modules (tqdm, diffusers, transformers, accelerate, torch) are imported inside
# the functions that use them, so that `import bridgelib` and `bridge --help` do not load them.

_PROGRESS = {"enabled": True}


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """The one writer: write to a temp file in the target's folder, then rename it over the
    target, so a crash never leaves a partial file. The target is refused (`check_target`) when
    it is anything but a regular file this user owns: a symlink (its target outside the folder
    would stay, but the link is yours), a device, a FIFO, a socket or a folder, with or without
    --overwrite. A rename never writes through a link or into another name of a hard link."""
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # read-only folder: name the file meant, not a temp name
        raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        check_target(path)  # again: the run may have lasted hours since the first look
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, tmp):  # e.g. disk full
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    return path


class UnsafeTarget(ValueError):
    """A file the project would write is not a regular file of this user's (a link, a device,
    a FIFO, a folder, another user's file): refused, whatever --overwrite says."""


_KINDS = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a symlink', 'a FIFO', ... for a stat mode that is not a regular file."""
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def check_target(path: str | Path) -> None:
    """Refuse, in one line naming it, a path the project would replace that is not a regular
    file this user owns (missing is fine). Called by the one writer, and before the work by the
    commands, so that a refused --out costs nothing."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # nothing there to replace
        return
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    why = None
    if stat.S_ISLNK(st.st_mode):
        why = f"a symlink (to {os.readlink(path)!r})"
    elif not stat.S_ISREG(st.st_mode):
        why = file_kind(st.st_mode)
    elif hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        why = f"a file of another user (uid {st.st_uid})"
    if why:
        raise UnsafeTarget(f"not writing {str(path)!r}: it is {why}; bridgelib writes only "
                           f"regular files of its own, never through a link or over a device, "
                           f"with or without --overwrite: remove it or choose another --out")


def append_bytes(path: str | Path, data: bytes, limit: int = 64 << 20) -> Path:
    """Append by reading the file (a regular file, at most `limit` bytes) and replacing it
    atomically with the old bytes plus `data`: never `open(path, "a")`, which writes through a
    symlink or into every name of a hard link."""
    path = Path(path)
    check_target(path)
    old = read_bytes(path, limit, "log") if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return atomic_write_bytes(path, old + data)


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """A matplotlib figure through the one writer (its format from the suffix): savefig(path)
    itself would write through a symlink named like the figure."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


# ---- the one reader: user-supplied files are regular files of a bounded size ------------------
MAX_JSON_BYTES = 64 << 20       # a set's record, metrics.json, config.json, splits, sweep.json
MAX_MANIFEST_BYTES = 2 << 30    # a set's manifest: ~350 B a row, 5,000 images x 1,000 classes


def _amount(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 \
        else f"{n:,} bytes"


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The one reader of a file from a user-supplied folder: opened without blocking (a FIFO
    would hang a plain open), refused in one line naming it unless it is a regular file (a
    symlink is followed to one) of at most `limit` bytes, then read; never more than `limit`."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{what} {str(path)!r} is {file_kind(st.st_mode)}, not a regular "
                             f"file; replace it with the file itself")
        if st.st_size > limit:
            raise ValueError(f"{what} {str(path)!r} is {_amount(st.st_size)}, more than the "
                             f"{_amount(limit)} such a file can be; it is not one bridgelib "
                             f"wrote: replace it")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # it grew while read
            raise ValueError(f"{what} {str(path)!r} grew beyond {_amount(limit)} while read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | Path, limit: int = MAX_JSON_BYTES, what: str = "file") -> str:
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text; it is not a file bridgelib "
                         f"wrote") from None


def read_json(path: str | Path, what: str = "file", kind: type | None = dict,
              limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file through `read_bytes`, refused in one line naming it when it is not JSON or
    (kind) not a JSON object/list as expected."""
    text = read_text(path, limit, what)
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON ({err}); it is damaged or "
                         f"not a file bridgelib wrote") from None
    if kind is not None and not isinstance(obj, kind):
        expected = {dict: "a JSON object", list: "a JSON list"}.get(kind, kind.__name__)
        raise ValueError(f"{what} {str(path)!r} holds a JSON {type(obj).__name__}; expected "
                         f"{expected}")
    return obj


def check_out(value: str, what: str = "--out", folder: bool = True) -> Path:
    """An output named on the command line: not empty, and (folder) not an existing file, or
    (not folder) not an existing folder. Refused in one line before any work."""
    if not str(value).strip():
        raise ValueError(f"{what} {value!r} is empty; name the "
                         f"{'folder' if folder else 'file'} to write")
    path = Path(value).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(value)!r} exists and is not a folder; choose another "
                         f"folder")
    base = next((p for p in path.parents if p.exists() or p.is_symlink()), None)
    if base is not None and not base.is_dir():
        raise ValueError(f"{what} {str(value)!r} is inside {str(base)!r}, which is not a "
                         f"folder; choose another folder")
    if not folder and path.is_dir():
        raise ValueError(f"{what} {str(value)!r} is a folder; name a file inside it")
    return path


def check_writable(folder: str | Path) -> Path:
    """Refuse, before any work, an output folder that cannot take files: it (or, not yet made,
    its nearest existing parent) must be a folder a temp file can be made in and written to
    (one 4 KiB block, synced), the way every file is written. Nothing is left behind: the probe
    is deleted, no folder is made."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output {str(folder)!r} exists and is not a folder; choose another "
                         f"folder")
    base = next(p for p in (folder, *folder.parents) if p.exists())
    if not base.is_dir():
        raise ValueError(f"output {str(folder)!r} is inside {str(base)!r}, which is not a "
                         f"folder; choose another folder")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".write-probe.", suffix=".tmp")
    except OSError as err:  # named as the folder meant, as a refused write is everywhere
        raise OSError(err.errno, err.strerror, str(folder)) from None
    try:  # one block, synced: a full disk makes an empty file but refuses its first block
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(folder)) from None
    finally:
        os.close(fd)
        Path(probe).unlink(missing_ok=True)
    return folder


def check_free_space(folder: str | Path, need: int, what: str) -> None:
    """Refuse, before any work, a job whose output would not fit: `need` bytes (an estimate)
    against the free space of `folder`'s file system (its nearest existing parent)."""
    folder = Path(folder).expanduser()
    base = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(base).free
    if need > free:
        raise ValueError(f"{what} need about {need / 1e9:.2g} GB and {str(base)!r} has "
                         f"{free / 1e9:.2g} GB free; free space, choose another --out or ask "
                         f"for fewer images (nothing was written)")


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def set_progress(enabled: bool) -> None:
    """Switch every progress bar of the package on or off (tests and nbval turn them off)."""
    _PROGRESS["enabled"] = enabled


def progress_enabled() -> bool:
    return _PROGRESS["enabled"] and os.environ.get("BRIDGELIB_PROGRESS") != "0"


def progress_file() -> str | None:
    """The file the bars are written to instead of the screen, or None: `$BRIDGELIB_PROGRESS_FILE`.

    `make course` (tools/run_course.py) sets it for each notebook's kernel and copies the file to
    its terminal as the notebook runs, so the bars show there and not in the executed page."""
    return os.environ.get("BRIDGELIB_PROGRESS_FILE") or None


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """The one place progress bars come from.

    Into `progress_file()` when one is set; otherwise tqdm.auto (a widget in Jupyter) when
    ipywidgets is installed, and text bars when it is not (tqdm.auto would fall back to the same
    text bars, after a TqdmWarning)."""
    target = progress_file()
    if target and progress_enabled():
        from tqdm.std import tqdm
        return tqdm(iterable, file=_open_progress_file(target), **kwargs)
    return _tqdm_class()(iterable, disable=not progress_enabled(), **kwargs)


def _tqdm_class():
    import importlib.util
    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


_PROGRESS_FILES: dict[str, Any] = {}


def _open_progress_file(path: str):
    """One handle per file for the process's life (appended to, flushed by tqdm at each update)."""
    f = _PROGRESS_FILES.get(path)
    if f is None or f.closed:
        f = _PROGRESS_FILES[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115
    return f


@contextlib.contextmanager
def library_progress():
    """With the package's bars off, diffusers' and transformers' own bars ("Loading pipeline
    components") are off too while the block runs: a quiet run (tests, CI) prints only its
    result or its one-line error. They are off as well while the bars go to `progress_file()`:
    theirs cannot follow it, and would land in the page. Otherwise the libraries' settings stand."""
    import diffusers.utils.logging as d_log
    import transformers.utils.logging as t_log
    states = [(m, m.is_progress_bar_enabled()) for m in (d_log, t_log)]
    if not progress_enabled() or progress_file():
        for m, _ in states:
            m.disable_progress_bar()
    try:
        yield
    finally:
        for m, was in states:
            (m.enable_progress_bar if was else m.disable_progress_bar)()


def resolve_device(device: str = "auto") -> "torch.device":
    """`auto`: CUDA if torch sees a GPU, else Apple's MPS (Apple-silicon Macs), else the CPU.

    MPS is untested (no Mac has run the course): the code keeps to float32 and CPU random
    generators there, but an operation torch lacks on MPS would raise;
    PYTORCH_ENABLE_MPS_FALLBACK=1 runs such operations on the CPU, `--set device=cpu` all of it."""
    import torch
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif torch.backends.mps.is_available():  # False on every machine that is not a Mac
            device = "mps"
        else:
            device = "cpu"
    return torch.device(device)


THREADS_ENV = "BRIDGELIB_THREADS"  # fixes the CPU threads of every stage (e.g. 1, or 16)


def others_busy_cores(interval: float = 0.1) -> float:
    """How many cores other processes keep busy right now: the machine's busy CPU time over
    `interval` seconds (/proc/stat) minus this process's own (os.times). Linux only (OSError
    elsewhere)."""
    def machine() -> float:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait
    def own() -> float:
        t = os.times()
        return t.user + t.system
    m0, o0, t0 = machine(), own(), time.perf_counter()
    time.sleep(interval)
    m1, o1, t1 = machine(), own(), time.perf_counter()
    return max(0.0, ((m1 - m0) - (o1 - o0)) / (t1 - t0))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)


def env_threads() -> int | None:
    """$BRIDGELIB_THREADS as a count, None when unset; refused in one line unless it is an
    integer from 1 to the CPUs this process may use (libgomp aborts the process, outside any
    error message, when asked for 100,000 threads)."""
    text = os.environ.get(THREADS_ENV)
    if not text:
        return None
    cores = usable_cpus()
    if not text.strip().isdigit() or not 1 <= int(text) <= cores:
        raise ValueError(f"${THREADS_ENV}={text!r} is invalid; expected a positive integer up "
                         f"to {cores} (the CPUs this process may use)")
    return int(text)


def share_cpu(device) -> int:
    """Set PyTorch's CPU threads for the stage about to run, and return them: the cores this
    process may use minus those other processes keep busy now (at least one). Why: with a
    second PyTorch process on the same cores (another notebook kernel, a sweep), threads that
    cannot all get a core spin-wait for each other (docs/design.md, "Measurements behind design
    choices"). $BRIDGELIB_THREADS fixes the count; a GPU stage is left as it is."""
    import torch
    if getattr(device, "type", str(device)) != "cpu":
        return torch.get_num_threads()
    cores = usable_cpus()
    threads = env_threads()
    if threads is None:
        try:
            threads = max(1, min(cores, round(cores - others_busy_cores())))
        except OSError:  # no /proc: PyTorch's own choice
            return torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


def machine_name() -> str:
    """The CPU model (and GPU, if one is used) a run was measured on: a store records it so that
    compared arms can be checked to share a kind of machine."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        import platform
        cpu = platform.processor() or cpu
    import torch
    gpu = f" + {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu} x{os.cpu_count()}{gpu}"


def process_state(device: str = "auto"):
    """accelerate's PartialState when launched on 2+ processes (accelerate launch, torchrun),
    else None, without importing accelerate.

    cpu=True on a CPU: without it each CPU process believes it is alone (rank 0 of 1) and all of
    them do all the work. gloo: a torch built with MPI would otherwise pick mpi, which torchrun
    does not start.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    from accelerate import PartialState
    cpu = resolve_device(device).type == "cpu"
    return PartialState(cpu=cpu, **({"backend": "gloo"} if cpu else {}))


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of returning it to the OS.

    Why: by default glibc unmaps every large freed block, so the big temporary tensors of each
    diffusion step page-fault in again; keeping them draws faster, with the same images, for a
    little more peak memory (docs/design.md, "Measurements behind design choices"). A no-op
    where glibc is absent (macOS, Windows, musl).
    """
    import ctypes
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))


def seed_everything(seed: int) -> None:
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bf16_autocast(device: "torch.device", precision: str = "auto") -> bool:
    """Whether `precision` 'auto' computes in bf16 on `device`: on CUDA, and on CPUs with AMX
    tiles; never for 'fp32'. AVX512-BF16 alone is not enough: without AMX bf16 ran slower than
    fp32 (README's "Measured speed", benchmarks/bench_precision.py)."""
    import torch
    if precision == "fp32":
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_amx())


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles and oneDNN computes bf16 on it (PyTorch's own check)."""
    import torch
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private: absent, no bf16
    return bool(amx is not None and amx() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: "torch.device", precision: str = "auto"):
    """Training's bf16 autocast where `bf16_autocast` says so (weights stay fp32; matmuls and
    convolutions run in bf16, norms and softmax in fp32), else nothing: about 1.4x on the mini
    backbone. Generation on the CPU uses the same rule (pipeline.pipeline_precision); inversion
    stays fp32 (in bf16 the CPU attention backward is 8.7x slower, and the step 0.7x)."""
    import contextlib
    import torch
    if not bf16_autocast(device, precision):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
