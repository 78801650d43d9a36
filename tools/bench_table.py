"""Collect the benchmark results into one table (markdown and JSON), with the machine they ran on.

    python tools/bench_table.py   (make bench runs it after benchmarks/bench_*.py)

Reads outputs/bench_generate.json, bench_train.json, bench_invert.json, bench_contention.json,
bench_quality.json and, if `make course` has run, outputs/course_times.json; writes
outputs/bench_table.md and outputs/bench_table.json, which also holds {"generation": {...}, "inversion": {...},
"training": {...}} with each stage's `items_per_s`, `baseline_ratio`, `utilisation` (the
fraction of the attainable FLOP/s of the machine, measured in the benchmark's own run:
benchmarks/utilisation.py) and `contended_ratio` (time beside one busy PyTorch process / time
alone); generation also has `speedup_vs_20step_fp32` and `quality_ok` (bench_quality.json). A
missing input is listed as "not run", a missing figure as "not measured" (null in the JSON),
never guessed.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "outputs"
# (file, what is measured, our key, baseline key, ratio key, target ratio from the issues,
#  what the baseline is)
BENCHES = (  # the first word of `what` names the stage in bench_table.json
    ("bench_generate.json", "generation, images/s", "generate_images_per_s",
     "loop_images_per_s", "speedup", 3.0, "one pipeline call per image"),
    ("bench_train.json", "training, images/s", "package_images_per_s",
     "torchvision_images_per_s", "ratio", 1.5, "torchvision ImageFolder + DataLoader loop"),
    ("bench_invert.json", "inversion, steps/s", "ours_loop_steps_per_s",
     "reference_steps_per_s", "ratio_loop", 1.0, "diffusers textual-inversion example loop"),
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}"


def collect(out: Path = OUT) -> dict:
    rows, stages = [], {}
    for file, what, ours, base, ratio, target, baseline in BENCHES:
        path = out / file
        if not path.exists():
            rows.append({"benchmark": what, "status": f"not run ({file} missing)"})
            continue
        r = json.loads(path.read_text())
        # .get: a JSON written before utilisation was measured has none of these keys
        rows.append({"benchmark": what, "ours": r[ours], "baseline": r[base],
                     "baseline_is": baseline, "ratio": r[ratio], "target": target,
                     "met": r[ratio] >= target, "utilisation": r.get("utilisation"),
                     "attainable_gflops": r.get("attainable_gflops"),
                     "kernels": r.get("kernels"), "status": "ok"})
        stages[what.split(",")[0]] = {"items_per_s": r[ours], "baseline_ratio": r[ratio],
                                      "utilisation": r.get("utilisation"),
                                      "flops_per_item": r.get("flops_per_item")}
    contention = out / "bench_contention.json"
    shared = json.loads(contention.read_text()) if contention.exists() else {}
    for stage in ("generation", "inversion", "training"):
        if stage in shared:
            stages.setdefault(stage, {}).update(
                contended_ratio=shared[stage]["contended_ratio"],
                contended_ratio_default_threads=shared[stage]["contended_ratio_default_threads"])
    quality = out / "bench_quality.json"  # the default sampler settings against 20 fp32 steps
    q = json.loads(quality.read_text()) if quality.exists() else {}
    stages.setdefault("generation", {}).update(
        speedup_vs_20step_fp32=q.get("speedup_vs_20step_fp32"), quality_ok=q.get("quality_ok"),
        quality=q.get("settings", {}).get("default"))
    course = out / "course_times.json"
    notebooks = json.loads(course.read_text()) if course.exists() else None
    return {"machine": machine(), "benchmarks": rows, "course": notebooks, **stages}


def percent(fraction) -> str:
    return "not measured" if fraction is None else f"{100 * fraction:.1f}%"


def attainable_lines(rows: list[dict]) -> list[str]:
    """The attainable FLOP/s each benchmark measured in its own run, and the kernels behind them."""
    runs = [(r["benchmark"].split(",")[0], r.get("attainable_gflops")) for r in rows
            if r["status"] == "ok"]
    measured = [f"{stage} fp32 {a['fp32']:.0f}, bf16 {a['bf16']:.0f}" for stage, a in runs
                if a and a.get("fp32") is not None and a.get("bf16") is not None]
    lines = ["Attainable GFLOP/s (a 2048^3 matmul, best of 5, in each benchmark's run): "
             + ("; ".join(measured) if measured else "not measured")]
    k = next((r["kernels"] for r in rows if r["status"] == "ok" and r.get("kernels")), None)
    if k is None:
        return lines + ["Kernels: not measured"]
    flags = k.get("cpu_flags") or {}
    native = {True: "native", False: "emulated", None: "unknown"}[k.get("bf16_native")]
    return lines + [
        f"Kernels: oneDNN {k.get('onednn_version') if k.get('onednn') else 'absent'}, "
        f"MKL {k.get('mkl_version') if k.get('mkl') else 'absent'}, BLAS {k.get('blas')}, "
        f"bf16 {native}, CPU capability {k.get('cpu_capability')}, "
        f"flags: {', '.join(f for f, on in flags.items() if on) or 'unknown'}"]


def markdown(table: dict) -> str:
    lines = [f"Machine: {table['machine']}", *attainable_lines(table["benchmarks"]), "",
             "| benchmark | ours | baseline | ratio | % of attainable | target | met |",
             "|---|---|---|---|---|---|---|"]
    for r in table["benchmarks"]:
        if r["status"] != "ok":
            lines.append(f"| {r['benchmark']} | {r['status']} | | | | | |")
            continue
        lines.append(f"| {r['benchmark']} | {r['ours']:.2f} | {r['baseline']:.2f} "
                     f"({r['baseline_is']}) | {r['ratio']:.2f}x | {percent(r.get('utilisation'))} "
                     f"| {r['target']:g}x | {'yes' if r['met'] else 'no'} |")
    lines += ["", "% of attainable: FLOPs per item (torch.utils.flop_counter on the real modules) "
              "x items/s / the faster of the fp32 and bf16 matmuls above."]
    g = table.get("generation", {})
    q = g.get("quality")
    lines += ["", "Default generation against the 20-step fp32 settings (benchmarks/bench_quality.py): "
              + ("not run (bench_quality.json)" if q is None else
                 f"{g['speedup_vs_20step_fp32']:.2f}x the images/s (target >= 2x); judge "
                 f"{q['recognisability_diff_points']:+.2f} points "
                 f"[{q['recognisability_diff_ci'][0]:+.2f}, {q['recognisability_diff_ci'][1]:+.2f}]"
                 f", Fréchet distance {q['fd_minus_second_draw']:+.3f} "
                 f"[{q['fd_minus_second_draw_ci'][0]:+.3f}, {q['fd_minus_second_draw_ci'][1]:+.3f}]"
                 f" vs a second 20-step draw: quality {'ok' if g['quality_ok'] else 'NOT equal'}")]
    lines += ["", "| stage | beside one busy PyTorch process / alone | with PyTorch's default threads |",
              "|---|---|---|"]
    for stage in ("training", "generation", "inversion"):
        r = table.get(stage, {})
        lines.append(f"| {stage} | {r['contended_ratio']:.2f}x (target <= 2.5x) | "
                     f"{r['contended_ratio_default_threads']:.2f}x |" if "contended_ratio" in r
                     else f"| {stage} | not run (bench_contention.json) | |")
    course = table["course"]
    lines += ["", "| notebook | seconds | ok |", "|---|---|---|"]
    if course is None:
        lines.append("| (run `make course` first) | | |")
    else:
        for nb in course["notebooks"]:
            lines.append(f"| {nb['notebook']} | {nb['seconds']:.0f} | {'yes' if nb['ok'] else 'no'} |")
        lines.append(f"| **make course** | {course['total_seconds']:.0f} | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    table = collect()
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_table.json").write_text(json.dumps(table, indent=2))
    text = markdown(table)
    (OUT / "bench_table.md").write_text(text)
    print(text)
    print(f"wrote {OUT / 'bench_table.md'} and {OUT / 'bench_table.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
