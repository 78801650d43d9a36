"""Execute every course notebook headlessly, in order, and keep executed and HTML copies.

    python tools/run_course.py [--profile mini] [--download] [NOTEBOOK ...]   (default: notebooks/NN_*.ipynb)

Each notebook runs with papermill (parameter PROFILE, kernel python3, working directory
notebooks/) into outputs/notebooks/NN_name.ipynb, then nbconvert renders outputs/html/NN_name.html.
Prints the wall time and output paths of each notebook, writes outputs/course_times.json, and
exits 1 naming the notebooks that failed (a failed notebook's executed copy shows the error).

The pages hold what a reader should read: the kernel writes its progress bars to a file
($BRIDGELIB_PROGRESS_FILE, see bridgelib.files.progress) that this script copies to its own
stderr while the notebook runs, so the bars show in the terminal and not in the page
(BRIDGELIB_PROGRESS=0 turns them off altogether). Figures are drawn inline whatever MPLBACKEND
the terminal has.
"""
from __future__ import annotations

import argparse
import codecs
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
OUT_DIR = REPO_ROOT / "outputs"


def run_one(src: Path, profile: str, out_dir: Path = OUT_DIR,
            terminal: TextIO | None = None, download: bool = False) -> dict:
    """Execute one notebook and render its HTML; return its record for course_times.json.

    The kernel's progress bars go to `terminal` (default: this process's stderr) as it runs."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    executed = out_dir / "notebooks" / src.name
    html = out_dir / "html" / f"{src.stem}.html"
    executed.parent.mkdir(parents=True, exist_ok=True)
    html.parent.mkdir(parents=True, exist_ok=True)
    error = None
    start = time.perf_counter()
    try:
        with _bars_to(terminal or sys.stderr) as bars, _environment(
                BRIDGELIB_PROGRESS_FILE=bars, MPLBACKEND=INLINE_BACKEND):  # the kernel inherits it
            pm.execute_notebook(src, executed,
                                parameters={"PROFILE": profile, "DOWNLOAD": download},
                                kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=False)
    except pm.PapermillExecutionError as exc:  # a cell raised
        error = f"cell [{exc.exec_count}] raised {exc.ename}: {exc.evalue}"
    except Exception as exc:  # a dead kernel, a timeout, a malformed notebook: a failure too
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    seconds = round(time.perf_counter() - start, 1)
    if executed.exists():
        body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
        html.write_text(body, encoding="utf-8")
    return {"notebook": src.name, "seconds": seconds, "ok": error is None, "error": error,
            "executed": _rel(executed), "html": _rel(html) if html.exists() else None}


# A terminal's MPLBACKEND (Agg, a GUI) would leave the pages without their figures.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the block (a kernel started in it inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _bars_to(stream: TextIO):
    """Yield the path of an empty file; a thread copies what is appended to it to `stream`
    (a few times a second, and the rest once the block ends). Bytes are decoded as they come,
    and carriage returns kept, so tqdm's redrawn lines redraw in the terminal too."""
    with tempfile.TemporaryDirectory(prefix="bridgelib-bars-") as tmp:
        path = Path(tmp) / "progress.txt"
        path.touch()
        stop = threading.Event()

        def copy() -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            with open(path, "rb") as f:
                while True:
                    last = stop.is_set()
                    text = decoder.decode(f.read(), final=last)
                    if text:
                        stream.write(text)
                        stream.flush()
                    if last:
                        return
                    stop.wait(0.25)

        thread = threading.Thread(target=copy, name="progress-bars", daemon=True)
        thread.start()
        try:
            yield str(path)
        finally:
            stop.set()
            thread.join()


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:  # an out_dir outside the repository
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: every notebooks/NN_*.ipynb, in order)")
    parser.add_argument("--profile", default="mini", help="mini | workshop | paper (default: mini)")
    parser.add_argument("--beside-busy-kernel", action="store_true", help="run a second "
                        "PyTorch process busy beside the notebooks (a workshop laptop with two "
                        "kernels running), to time them that way; writes course_times_busy.json")
    parser.add_argument("--download", action="store_true", help="let the notebooks fetch a "
                        "missing dataset (their DOWNLOAD parameter; torchvision's download=True)")
    args = parser.parse_args(argv)
    os.environ["BRIDGELIB_PROFILE"] = args.profile  # the kernel inherits the environment
    if args.profile == "mini":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the mini world never downloads
    paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"no notebooks matching {_rel(NOTEBOOK_DIR)}/[0-9][0-9]_*.ipynb")

    records = []
    # the competitor of benchmarks/bench_contention.py: matmuls with PyTorch's default threads
    busy = subprocess.Popen([sys.executable, "-c", "import torch\nx = torch.randn(512, 512)\n"
                             "while True:\n    x = torch.tanh(x @ x)\n"]) \
        if args.beside_busy_kernel else None
    try:
        for src in paths:
            print(f"running {src.name} ...", flush=True)
            rec = run_one(src, args.profile, download=args.download)
            records.append(rec)
            status = "ok" if rec["ok"] else f"FAILED ({rec['error']})"
            print(f"  {status} in {rec['seconds']:.1f} s", flush=True)
            print(f"  executed: {rec['executed']}\n  html:     {rec['html']}", flush=True)
    finally:
        if busy is not None:
            busy.kill()
    total = round(sum(r["seconds"] for r in records), 1)
    OUT_DIR.mkdir(exist_ok=True)
    times = OUT_DIR / ("course_times_busy.json" if busy else "course_times.json")
    times.write_text(json.dumps({"profile": args.profile, "total_seconds": total,
                                 "beside_busy_kernel": busy is not None,
                                 "notebooks": records}, indent=2) + "\n")
    print(f"total {total:.1f} s; times: {_rel(times)}")
    failed = [r["notebook"] for r in records if not r["ok"]]
    if failed:
        print(f"error: {len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
