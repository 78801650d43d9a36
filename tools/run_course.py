"""Execute every course notebook headlessly, in order, and keep executed and HTML copies.

    python tools/run_course.py [--profile mini] [NOTEBOOK ...]   (default: notebooks/NN_*.ipynb)

Each notebook runs with papermill (parameter PROFILE, kernel python3, working directory
notebooks/) into outputs/notebooks/NN_name.ipynb, then nbconvert renders outputs/html/NN_name.html.
Prints the wall time and output paths of each notebook, writes outputs/course_times.json, and
exits 1 naming the notebooks that failed (a failed notebook's executed copy shows the error).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
OUT_DIR = REPO_ROOT / "outputs"


def run_one(src: Path, profile: str) -> dict:
    """Execute one notebook and render its HTML; return its record for course_times.json."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    executed = OUT_DIR / "notebooks" / src.name
    html = OUT_DIR / "html" / f"{src.stem}.html"
    executed.parent.mkdir(parents=True, exist_ok=True)
    html.parent.mkdir(parents=True, exist_ok=True)
    error = None
    start = time.perf_counter()
    try:
        pm.execute_notebook(src, executed, parameters={"PROFILE": profile}, kernel_name="python3",
                            cwd=str(NOTEBOOK_DIR), progress_bar=False)
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


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: every notebooks/NN_*.ipynb, in order)")
    parser.add_argument("--profile", default="mini", help="mini | workshop | paper (default: mini)")
    args = parser.parse_args(argv)
    os.environ["BRIDGELIB_PROFILE"] = args.profile  # the kernel inherits the environment
    if args.profile == "mini":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the mini world never downloads
    paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"no notebooks matching {_rel(NOTEBOOK_DIR)}/[0-9][0-9]_*.ipynb")

    records = []
    for src in paths:
        print(f"running {src.name} ...", flush=True)
        rec = run_one(src, args.profile)
        records.append(rec)
        status = "ok" if rec["ok"] else f"FAILED ({rec['error']})"
        print(f"  {status} in {rec['seconds']:.1f} s", flush=True)
        print(f"  executed: {rec['executed']}\n  html:     {rec['html']}", flush=True)

    total = round(sum(r["seconds"] for r in records), 1)
    OUT_DIR.mkdir(exist_ok=True)
    times = OUT_DIR / "course_times.json"
    times.write_text(json.dumps({"profile": args.profile, "total_seconds": total,
                                 "notebooks": records}, indent=2) + "\n")
    print(f"total {total:.1f} s; times: {_rel(times)}")
    failed = [r["notebook"] for r in records if not r["ok"]]
    if failed:
        print(f"error: {len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
