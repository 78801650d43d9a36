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
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

# Heavy third-party modules (tqdm, diffusers, transformers, accelerate, torch) are imported inside
# the functions that use them, so that `import bridgelib` and `bridge --help` do not load them.

_PROGRESS = {"enabled": True}


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temp file in the same folder, then rename: a crash never leaves a partial file."""
    path = Path(path)
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
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, tmp):  # e.g. disk full
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    return path


def check_writable(folder: str | Path) -> Path:
    """Refuse, before any work, an output folder that cannot take files: it (or, not yet made,
    its nearest existing parent) must be a folder a temp file can be made in, the way every
    file is written. Nothing is left behind: the probe is deleted, no folder is made."""
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
    os.close(fd)
    os.unlink(probe)
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


def share_cpu(device) -> int:
    """Set PyTorch's CPU threads for the stage about to run, and return them: the cores this
    process may use minus those other processes keep busy now (at least one). Why: with a
    second PyTorch process on the same cores (another notebook kernel, a sweep), threads that
    cannot all get a core spin-wait for each other; on 2 cores a training loop ran 6-20x slower
    with 2 threads than pinned to one. $BRIDGELIB_THREADS fixes the count; a GPU stage is left
    as it is."""
    import torch
    if getattr(device, "type", str(device)) != "cpu":
        return torch.get_num_threads()
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    if os.environ.get(THREADS_ENV):
        threads = os.environ[THREADS_ENV]
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"${THREADS_ENV}={threads!r} is invalid; expected a positive integer")
        threads = int(threads)
    else:
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
    diffusion step page-fault in again (2.5 million faults per 300 mini images). Keeping them made
    mini generation 10.5-11 -> 12.9-13.7 images/s with bit-identical images and 7% more peak memory
    (measured on 2 CPU cores). A no-op where glibc is absent (macOS, Windows, musl).
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
    tiles; never for 'fp32'. AVX512-BF16 alone is not enough: on such a Xeon (no AMX) a 2048^3
    matmul ran at 148 GFLOP/s in bf16 against 309 in fp32, and the mini generation and training
    at 0.87x and 0.91x of fp32 (benchmarks/bench_precision.py), where AMX gave 2,200 against
    350 GFLOP/s."""
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
