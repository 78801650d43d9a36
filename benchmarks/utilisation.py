"""How much of this machine's attainable FLOP/s a benchmarked stage uses (issue 14 item 1).

    utilisation = FLOPs per item x items per second / attainable FLOP/s

- *Attainable* is measured in the calling process, with the threads the stage ran with: the
  faster of a 2048^3 matmul in fp32 and in bf16 (`attainable_flops`). A stage that runs in fp32
  on a chip with fast bf16 therefore shows how much a switch to bf16 could at most bring.
- *FLOPs per item* are counted by `torch.utils.flop_counter` on the real modules while the
  package's own function runs (`generation_flops_per_image`, `inversion_flops_per_step`,
  `training_flops_per_image`): matmuls, convolutions and attention, forward and backward, the
  dense textbook count (2 per multiply-add). Norms, activations and the optimizer are not
  counted; they are a small share of the work but not of the time, which is part of what a low
  utilisation says.
- `kernels()` says which libraries and instructions are behind those figures.

The benchmarks in this folder import it (`import utilisation`: a script's folder is on
sys.path); bridgelib is imported only inside the functions that count a stage, so the
arithmetic can be tested without loading a pipeline.
"""
from __future__ import annotations

import copy
import math
import re
import time
from pathlib import Path

import torch

MATMUL_N = 2048
# The instructions that decide matmul speed on x86: AVX-512 for fp32; AVX512-BF16 (dot
# products) and AMX (tile matmuls) make bf16 native rather than converted to fp32 and back.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attainable_flops(device="cpu", n: int = MATMUL_N, repeats: int = 5) -> dict:
    """GFLOP/s of an n x n x n matmul in fp32 and in bf16 (best of `repeats` after one warm-up),
    and the faster of the two as `max`: what this process can attain now, with its threads.

    Best of a few, not the mean: a repeat slowed by another job says nothing about the chip
    (one run on a shared machine measured 84 GFLOP/s on one thread at best of 3 where 160 is
    usual, and training then showed 110% of fp32).
    """
    device = torch.device(device)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        gen = torch.Generator().manual_seed(0)
        a, b = (torch.randn(n, n, generator=gen).to(device, dtype) for _ in range(2))
        torch.mm(a, b)  # warm-up: allocation and kernel choice are not the chip's speed
        _sync(device)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        out[name] = round(2 * n ** 3 / best / 1e9, 1)
    out["max"] = max(out["fp32"], out["bf16"])
    out.update(matmul=n, threads=torch.get_num_threads(), device=str(device))
    return out


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> dict | None:
    """Each of CPU_FLAGS: present or not (None where /proc/cpuinfo cannot be read: not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    flags = set(line.split(":", 1)[-1].split())
    return {f: f in flags for f in CPU_FLAGS}


def kernels() -> dict:
    """Which kernels the matmuls and convolutions run on: oneDNN, MKL, BLAS, bf16 native or not."""
    parallel = torch.__config__.parallel_info()
    flags = cpu_flags()

    def version(pattern: str, text: str) -> str | None:
        m = re.search(pattern, text)
        return m.group(1) if m else None
    return {
        "onednn": torch.backends.mkldnn.is_available(),
        "onednn_version": version(r"MKL-DNN v([\d.]+)", parallel),
        "mkl": torch.backends.mkl.is_available(),
        "mkl_version": version(r"Math Kernel Library Version ([\w.]+)", parallel),
        "blas": version(r"BLAS_INFO=(\w+)", torch.__config__.show()),
        # oneDNN "supports" bf16 on any AVX-512 core, converting to fp32 where the chip cannot
        # multiply bf16 itself; native means AVX512-BF16 or AMX is there to do it.
        "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "bf16_native": None if flags is None else flags["avx512_bf16"] or flags["amx_bf16"],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cpu_flags": flags,
    }


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_flop_count
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                            out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_backward_flop_count
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_counter():
    """A FlopCounterMode that also counts attention on the CPU.

    torch's registry has formulas for the CUDA attention kernels only: SDPA on the CPU runs
    aten._scaled_dot_product_flash_attention_for_cpu, which it would count as zero (checked
    in tests/test_utilisation.py), so the UNet's and text encoder's attention would vanish.
    """
    from torch.utils.flop_counter import FlopCounterMode
    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop})


def count_flops(fn, *args, **kwargs) -> int:
    """FLOPs of everything `fn(*args, **kwargs)` runs (forward and any backward inside it)."""
    with flop_counter() as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def generation_flops_per_image(cfg, pipe, batch_size: int | None = None) -> float:
    """FLOPs per image of `generate_synthetic_set`: one image per class, counted while it runs.

    That is every UNet call (steps x the guidance batch: 2 images per image with
    classifier-free guidance), the text encoder on each prompt and on the negative one, and
    the VAE decode, all of which grow with the images; nothing is fixed per call.
    """
    import tempfile

    from bridgelib.datasets import MINI_CLASSES
    from bridgelib.generate import generate_synthetic_set
    n = len(MINI_CLASSES)
    batch = min(n, batch_size or cfg.generation.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        flops = count_flops(generate_synthetic_set, cfg, Path(tmp) / "set", 1, batch_size=batch,
                            pipe=pipe, progress_bar=False)
    return flops / n


def inversion_flops_per_step(cfg, pipe, images, batch_size: int, steps: tuple = (2, 10)) -> float:
    """FLOPs per optimizer step of `learn_style_token` (UNet and text encoder, forward and back).

    Counted as the difference of two runs of different lengths over their difference in steps:
    that cancels what a run does once (the VAE latents of every image, the captions). The text
    encoder's share varies a little with how many distinct captions a batch holds; the
    difference averages it over the steps between (the same draws as any run with seed 0).
    """
    import tempfile

    from bridgelib.invert import learn_style_token
    few, many = steps
    flops = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in steps:
            flops.append(count_flops(learn_style_token, cfg, images, Path(tmp) / f"t{k}.safetensors",
                                     steps=k, batch_size=batch_size, pipe=pipe, overwrite=True,
                                     progress_bar=False))
    return (flops[1] - flops[0]) / (many - few)


def training_flops_per_image(cfg, model, data, stage_cfg, steps: int = 2) -> float:
    """FLOPs per training image of `train_stage` on a copy of `model`: forward, loss, backward."""
    from bridgelib.transfer import Stage, train_stage
    stage = Stage("count", data, stage_cfg, steps=steps)
    flops = count_flops(train_stage, copy.deepcopy(model), stage, None, cfg, seed=0,
                        eval_epochs=False, eval_last=False)
    return flops / (steps * stage_cfg.batch_size)


def utilisation(flops_per_item, items_per_s, attainable_gflops) -> float | None:
    """The fraction of `attainable_gflops` that `items_per_s` items of `flops_per_item` reach;
    None where any of them is missing or not a positive finite number (never a guess)."""
    values = (flops_per_item, items_per_s, attainable_gflops)
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
           or v <= 0 for v in values):
        return None
    return flops_per_item * items_per_s / (attainable_gflops * 1e9)


def fields(flops_per_item, items_per_s, attainable: dict, kernel_info: dict | None = None) -> dict:
    """The JSON keys each benchmark adds: FLOPs per item, attainable GFLOP/s, utilisation."""
    return {
        "flops_per_item": None if flops_per_item is None else round(flops_per_item),
        "attainable_gflops": {k: attainable.get(k) for k in ("fp32", "bf16", "max")},
        "attainable_threads": attainable.get("threads"),
        "utilisation": utilisation(flops_per_item, items_per_s, attainable.get("max")),
        # against the fp32 matmul too: the stages run in fp32, so this says how far they are
        # from what fp32 allows, and `utilisation` from what the chip allows in any precision
        "utilisation_vs_fp32": utilisation(flops_per_item, items_per_s, attainable.get("fp32")),
        "kernels": kernel_info if kernel_info is not None else kernels(),
    }


def measure(flops_per_item, items_per_s, device="cpu", threads: int | None = None) -> dict:
    """`fields` with the attainable FLOP/s measured now, in this process, with `threads` (the
    stage's: the ceiling of a stage that got one core is one core's) or the current ones."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return fields(flops_per_item, items_per_s, attainable_flops(device))
    finally:
        torch.set_num_threads(before)


def summary(result: dict, item: str) -> str:
    """One line for a benchmark's output: the percent of attainable and what it is made of."""
    a, u = result["attainable_gflops"], result["utilisation"]
    if u is None:
        return f"utilisation: not measured (FLOPs per {item} or items/s missing)"
    return (f"utilisation: {100 * u:.1f}% of attainable ({result['flops_per_item'] / 1e6:.1f} "
            f"MFLOP per {item}; attainable {a['max']:.0f} GFLOP/s = max of fp32 {a['fp32']:.0f}, "
            f"bf16 {a['bf16']:.0f}; {100 * result['utilisation_vs_fp32']:.1f}% of fp32)")
