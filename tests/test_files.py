"""files.py's device choice and progress bars (where they go, and when they are off)."""
import pytest
import torch

from bridgelib import files
from bridgelib.config import get_config


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_is_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert files.resolve_device("auto").type == expected
    assert files.resolve_device("cpu").type == "cpu"  # a device named is the device used


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_device_names_the_config_accepts(device):
    assert get_config("mini", device=device).device == device


@pytest.fixture
def bars_on(monkeypatch):
    monkeypatch.delenv("BRIDGELIB_PROGRESS", raising=False)
    files.set_progress(True)
    yield
    files.set_progress(False)  # as conftest leaves it


def test_bars_go_to_the_progress_file(bars_on, monkeypatch, tmp_path):
    target = tmp_path / "bars.txt"
    monkeypatch.setenv("BRIDGELIB_PROGRESS_FILE", str(target))
    for _ in files.progress(range(5), desc="to the file"):
        pass
    text = target.read_text(encoding="utf-8")
    assert "to the file" in text and "5/5" in text


def test_no_bars_when_off_even_with_a_file(monkeypatch, tmp_path):
    target = tmp_path / "bars.txt"
    monkeypatch.setenv("BRIDGELIB_PROGRESS_FILE", str(target))
    monkeypatch.setenv("BRIDGELIB_PROGRESS", "0")
    for _ in files.progress(range(5), desc="nowhere"):
        pass
    assert not target.exists() or "nowhere" not in target.read_text()


def test_library_bars_are_off_while_ours_go_to_a_file(bars_on, monkeypatch, tmp_path):
    import transformers.utils.logging as t_log
    t_log.enable_progress_bar()
    monkeypatch.setenv("BRIDGELIB_PROGRESS_FILE", str(tmp_path / "bars.txt"))
    with files.library_progress():
        assert not t_log.is_progress_bar_enabled()  # it would land in the page
    assert t_log.is_progress_bar_enabled()  # and is given back as it was
    monkeypatch.delenv("BRIDGELIB_PROGRESS_FILE")
    with files.library_progress():
        assert t_log.is_progress_bar_enabled()


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_env_fixes_the_cpu_threads(monkeypatch, threads):
    monkeypatch.setenv(files.THREADS_ENV, "1")
    assert files.share_cpu(torch.device("cpu")) == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv(files.THREADS_ENV, "two")
    with pytest.raises(ValueError, match=r"BRIDGELIB_THREADS='two' is invalid; expected a positive"):
        files.share_cpu(torch.device("cpu"))


def test_a_gpu_stage_keeps_its_threads(monkeypatch, threads):
    monkeypatch.setenv(files.THREADS_ENV, "1")
    before = torch.get_num_threads()
    assert files.share_cpu(torch.device("meta")) == before  # not the CPU: left as it is


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="Linux only")
def test_busy_neighbours_take_cores_away(monkeypatch, threads):
    """Every core kept busy by other processes: the stage runs on one thread, not on threads
    that would wait for cores they do not get."""
    import os
    import subprocess
    import sys
    monkeypatch.delenv(files.THREADS_ENV, raising=False)
    cores = len(os.sched_getaffinity(0))
    spin = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\n"
                              "while time.time() - t < 20: pass"]) for _ in range(cores)]
    try:
        import time
        time.sleep(0.5)  # let them start spinning
        assert files.others_busy_cores(0.5) > cores - 0.6
        assert files.share_cpu(torch.device("cpu")) == 1
    finally:
        for p in spin:
            p.kill()


def test_bf16_autocast_only_where_bf16_is_faster(monkeypatch):
    """CUDA and AMX CPUs compute in bf16 under 'auto'; a CPU without AMX (AVX512-BF16 alone ran
    bf16 slower than fp32) and 'fp32' never do."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for amx in (False, True):
        monkeypatch.setattr(files, "cpu_has_amx", lambda amx=amx: amx)
        assert files.bf16_autocast(cpu) is amx and files.bf16_autocast(cuda)
        assert not files.bf16_autocast(cpu, "fp32") and not files.bf16_autocast(cuda, "fp32")
    monkeypatch.setattr(files, "cpu_has_amx", lambda: False)
    with files.autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(files, "cpu_has_amx", lambda: True)
    with files.autocast(cpu):
        assert torch.is_autocast_enabled("cpu")
