"""Tests run offline, quietly, in the mini profile (a caller's explicit settings win)."""
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BRIDGELIB_PROGRESS", "0")
os.environ.setdefault("BRIDGELIB_PROFILE", "mini")
# split files of your own folders (imagefolder) go to $BRIDGELIB_CACHE: a temp folder, not cache/
os.environ.setdefault("BRIDGELIB_CACHE", tempfile.mkdtemp(prefix="bridgelib-cache-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from bridgelib.files import set_progress  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def quiet_single_thread():
    """Tiny models run faster on one thread, and do not fight other jobs for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    set_progress(False)
    yield
    set_progress(True)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight pipeline with the mini generator's classes and sizes, saved to disk."""
    from diffusers import StableDiffusionPipeline

    from bridgelib.mini.generator import components
    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    vae, unet, text_encoder, tokenizer, scheduler = components(root / "tok")
    pipe = StableDiffusionPipeline(vae=vae, unet=unet, text_encoder=text_encoder,
                                   tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "pipe")
    return root / "pipe"
