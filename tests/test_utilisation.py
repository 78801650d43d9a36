"""The utilisation figures of `make bench` (benchmarks/utilisation.py, tools/bench_table.py): the
FLOP counts against hand formulas, the arithmetic, and missing figures left as not measured."""
import importlib.util
import json
import math

import pytest
import torch
import torch.nn.functional as F

from bridgelib.config import REPO_ROOT


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


U = _load("utilisation", "benchmarks/utilisation.py")
TABLE = _load("bench_table", "tools/bench_table.py")


def test_a_linear_layer_counts_its_hand_formula_forward_and_backward():
    batch, d_in, d_out = 8, 16, 32
    layer = torch.nn.Linear(d_in, d_out)
    x = torch.randn(batch, d_in, requires_grad=True)
    assert U.count_flops(layer, x) == 2 * batch * d_in * d_out
    # backward: the gradient of the input and of the weight, each one more matmul
    assert U.count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * batch * d_in * d_out


def test_a_small_conv_net_counts_its_hand_formula():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3, stride=2, padding=1))
    x = torch.randn(2, 3, 16, 16)
    first = 2 * 2 * 8 * 16 * 16 * 3 * 3 * 3    # 2 x batch x out channels x out pixels x kernel
    second = 2 * 2 * 4 * 8 * 8 * 8 * 3 * 3
    assert U.count_flops(net, x) == first + second


def test_attention_on_the_cpu_is_counted():
    """torch's own registry counts the CPU attention kernel as zero; ours counts QK^T and AV."""
    b, h, s, d = 2, 4, 64, 16
    q, k, v = (torch.randn(b, h, s, d, requires_grad=True) for _ in range(3))
    forward = 2 * (2 * b * h * s * s * d)
    assert U.count_flops(F.scaled_dot_product_attention, q, k, v) == forward
    both = U.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert both == forward + 5 * (2 * b * h * s * s * d)  # backward: scores again + 4 matmuls


def test_utilisation_is_work_times_rate_over_attainable():
    # 2 GFLOP per item at 10 items/s on a 100 GFLOP/s machine: a fifth of it
    assert U.utilisation(2e9, 10, 100.0) == pytest.approx(0.2)


@pytest.mark.parametrize("flops, rate, attainable", [
    (None, 10, 100.0), (2e9, None, 100.0), (2e9, 10, None), (2e9, 0, 100.0),
    (2e9, 10, math.nan), (2e9, 10, -1.0), (True, 10, 100.0), ("2e9", 10, 100.0)])
def test_a_missing_or_meaningless_figure_gives_no_utilisation(flops, rate, attainable):
    assert U.utilisation(flops, rate, attainable) is None


def test_fields_and_summary_with_a_missing_count_say_not_measured():
    out = U.fields(None, 10, {"fp32": 100.0, "bf16": 400.0, "max": 400.0}, kernel_info={})
    assert out["flops_per_item"] is None and out["utilisation"] is None
    assert out["attainable_gflops"] == {"fp32": 100.0, "bf16": 400.0, "max": 400.0}
    assert "not measured" in U.summary(out, "image")
    measured = U.fields(1e9, 40, {"fp32": 100.0, "bf16": 400.0, "max": 400.0}, kernel_info={})
    assert measured["utilisation"] == pytest.approx(0.1)
    assert measured["utilisation_vs_fp32"] == pytest.approx(0.4)
    assert "10.0% of attainable" in U.summary(measured, "image")


def test_attainable_flops_reports_both_precisions_and_the_faster():
    a = U.attainable_flops(n=64, repeats=1)  # small: the structure, not the speed, is tested
    assert a["fp32"] > 0 and a["bf16"] > 0 and a["max"] == max(a["fp32"], a["bf16"])
    assert a["matmul"] == 64 and a["threads"] == torch.get_num_threads()


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_tile\n")
    assert U.cpu_flags(info) == {"avx2": True, "avx512f": True, "avx512_bf16": False,
                                 "amx_bf16": False, "amx_tile": True}
    assert U.cpu_flags(tmp_path / "absent") is None
    k = U.kernels()
    assert {"onednn", "mkl", "blas", "onednn_bf16", "bf16_native", "threads"} <= set(k)


def _write_benches(out, utilisation=True):
    extra = lambda u: ({"utilisation": u, "flops_per_item": 1000,  # noqa: E731
                        "attainable_gflops": {"fp32": 100.0, "bf16": 400.0, "max": 400.0},
                        "kernels": {"onednn": True, "onednn_version": "3.1", "mkl": True,
                                    "mkl_version": "2024", "blas": "mkl", "bf16_native": False,
                                    "cpu_capability": "AVX512",
                                    "cpu_flags": {"avx2": True, "avx512f": True,
                                                  "avx512_bf16": False}}}
                       if utilisation else {})
    (out / "bench_generate.json").write_text(json.dumps(
        {"generate_images_per_s": 16.0, "loop_images_per_s": 4.0, "speedup": 4.0, **extra(0.125)}))
    (out / "bench_train.json").write_text(json.dumps(
        {"package_images_per_s": 2800.0, "torchvision_images_per_s": 1400.0, "ratio": 2.0}))


def test_bench_table_shows_utilisation_and_not_measured_where_it_is_missing(tmp_path):
    _write_benches(tmp_path)  # generation measured, training from an older JSON, no inversion
    table = TABLE.collect(tmp_path)
    assert table["generation"]["utilisation"] == 0.125
    assert table["generation"]["items_per_s"] == 16.0 and table["generation"]["baseline_ratio"] == 4.0
    assert table["training"]["utilisation"] is None and table["training"]["baseline_ratio"] == 2.0
    assert "inversion" not in table or "utilisation" not in table["inversion"]
    text = TABLE.markdown(table)
    assert "| ratio | % of attainable |" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 4.00x | 12.5% |" in rows["generation, images/s"]
    assert "| 2.00x | not measured |" in rows["training, images/s"]
    assert "not run" in rows["inversion, steps/s"]
    assert "generation fp32 100, bf16 400" in text and "bf16 emulated" in text
    assert "training fp32" not in text  # never filled in from another benchmark's run


def test_bench_table_with_no_utilisation_anywhere(tmp_path):
    _write_benches(tmp_path, utilisation=False)
    text = TABLE.markdown(TABLE.collect(tmp_path))
    assert "Attainable GFLOP/s (a 2048^3 matmul, best of 5, in each benchmark's run): " \
           "not measured" in text
    assert "Kernels: not measured" in text


def test_bench_table_carries_the_quality_check_of_the_default_generation(tmp_path):
    _write_benches(tmp_path)
    text = TABLE.markdown(TABLE.collect(tmp_path))
    assert "Default generation against the 20-step fp32 settings" in text and "not run" in text
    default = {"recognisability_diff_points": 0.1, "recognisability_diff_ci": [-0.4, 0.6],
               "fd_minus_second_draw": 0.005, "fd_minus_second_draw_ci": [-0.05, 0.06]}
    (tmp_path / "bench_quality.json").write_text(json.dumps(
        {"speedup_vs_20step_fp32": 4.26, "quality_ok": True, "settings": {"default": default}}))
    table = TABLE.collect(tmp_path)
    assert table["generation"]["speedup_vs_20step_fp32"] == 4.26
    assert table["generation"]["quality_ok"] is True
    assert table["generation"]["items_per_s"] == 16.0  # bench_generate's figures kept
    text = TABLE.markdown(table)
    assert "4.26x the images/s (target >= 2x); judge +0.10 points [-0.40, +0.60]" in text
    assert "quality ok" in text
