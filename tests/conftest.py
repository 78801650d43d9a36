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


def save_tiny_pipeline(root: Path, max_length: int | None = None) -> Path:
    """A random-weight pipeline with the mini generator's classes and sizes, saved to `root` in
    the hub's folder layout: fp32 weights and an fp16 variant (`variant="fp16"`), as SD v1.5
    ships them. `max_length`: tokens per prompt (default the mini generator's 20)."""
    from diffusers import StableDiffusionPipeline

    from bridgelib.mini import vocab
    from bridgelib.mini_build.generator import components
    torch.manual_seed(0)
    vae, unet, text_encoder, tokenizer, scheduler = components(
        root / "tok", max_length or vocab.MAX_LENGTH)
    pipe = StableDiffusionPipeline(vae=vae, unet=unet, text_encoder=text_encoder,
                                   tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "pipe")
    pipe.to(torch.float16).save_pretrained(root / "pipe", variant="fp16")
    return root / "pipe"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The mini generator's architecture with random weights, saved to disk."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def sd_stand_in(tmp_path_factory) -> Path:
    """tiny_model with Stable Diffusion v1.5's prompt length (77 tokens): real class names, spelt
    out by the stand-in's byte-level tokenizer, fit as they do in SD's."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("sd-stand-in"), max_length=77)
