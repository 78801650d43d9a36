"""files.py's device choice."""
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
