"""A full-size structural rehearsal of the paper profile on the CPU (`make rehearse-full`, not CI).

    python tools/rehearse_full.py [--keep DIR]

`make rehearse` proves every notebook runs in the GPU profiles on tiny stand-ins; this proves
the same code holds at Stable Diffusion v1.5's real sizes, where shape, dtype and memory errors
live. It builds SD v1.5's component configs at full size with random weights (UNet 860M
parameters, the VAE at 512 px, a CLIP ViT-L/14-sized text encoder), saves them as the hub lays
them out, and runs through the package's own entry points, in the paper profile:
1. one DSI step at 512 px (`learn_style_token`, batch 1) on a folder of 512 px JPEGs;
2. two 512 px images at 2 sampler steps with that token (`generate_synthetic_set`);
3. resnet18 at 224 px, a few steps of each stage of bridged on those images (`train_run`).
Prints each stage's seconds and the process's peak resident memory, and writes them to
outputs/rehearse_full.json. Not faked: every shape, the pipeline class and its loading, the
sampler, the DSI loss, the training loop. Not real: the weights (random, so images and accuracy
are noise) and the tokenizer (the mini world's, at SD's 77 tokens; the text encoder's
vocabulary is sized to it, 150 MB smaller than SD's 49,408 words).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bridgelib.config import REPO_ROOT, get_config
from bridgelib.files import set_progress, write_json

CLASSES = ("Boeing 737-800", "Airbus A320")  # two of FGVC-Aircraft's variants

# Stable Diffusion v1.5's component configs (its hub repository's unet/, vae/ and
# text_encoder/ config.json), minus what is default.
UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
            attention_head_dim=8, norm_num_groups=32,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=512,
           block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
            projection_dim=768)


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def build_pipeline(folder: Path) -> tuple[Path, dict]:
    """SD v1.5 at full size, random weights, saved in the hub's folder layout."""
    import torch
    from diffusers import (AutoencoderKL, PNDMScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel
    from bridgelib.mini import vocab
    torch.manual_seed(0)
    tokenizer = vocab.build_tokenizer(folder.parent / "tokenizer")  # it writes its files there
    tokenizer.model_max_length = 77
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TEXT))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=AutoencoderKL(**VAE), text_encoder=text_encoder,
                                   tokenizer=tokenizer, unet=UNet2DConditionModel(**UNET),
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    params = {name: sum(p.numel() for p in getattr(pipe, name).parameters())
              for name in ("unet", "vae", "text_encoder")}
    pipe.save_pretrained(folder)
    del pipe
    return folder, params


def write_images(root: Path, per_class: int, size: int = 512) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", 2)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8) + np.uint8(100 * c)
                Image.fromarray(img).save(root / split / name / f"{i}.jpg", quality=90)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keep", default=None, help="build in this folder and keep it (default: a "
                   "temporary folder, removed after)")
    p.add_argument("--out-json", default=str(REPO_ROOT / "outputs" / "rehearse_full.json"))
    args = p.parse_args(argv)
    set_progress(False)
    import timm
    import torch
    from safetensors.torch import save_file
    from bridgelib.datasets import load_dataset
    from bridgelib.generate import generate_synthetic_set
    from bridgelib.invert import learn_style_token
    from bridgelib.transfer import train_run
    times, t_all = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        t0 = time.perf_counter()
        model, params = build_pipeline(root / "sd-v1-5-random")
        write_images(root / "data", per_class=2)
        save_file(timm.create_model("resnet18").state_dict(), root / "resnet18.safetensors")
        times["build and save"] = time.perf_counter() - t0
        cfg = get_config("paper", dataset="imagefolder", data_root=str(root / "data"),
                         device="cpu", backbone_weights=str(root / "resnet18.safetensors"),
                         **{"generation.model": str(model), "generation.steps": 2,
                            "generation.batch_size": 2, "invert.steps": 1,
                            "invert.batch_size": 1, "invert.checkpoint_every": 1,
                            "train.real.steps": 3, "train.real.batch_size": 4,
                            "train.synthetic.steps": 2, "train.synthetic.batch_size": 4})
        t0 = time.perf_counter()
        images = load_dataset(cfg, "train", size=cfg.generation.resolution)
        record = learn_style_token(cfg, images, root / "token" / "learned_embeds.safetensors",
                                   progress_bar=False)
        times["DSI step, 512 px"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        synthetic = generate_synthetic_set(cfg, root / "synthetic", 1,
                                           class_names=images.class_names,  # as read: cleaned
                                           style_token=root / "token" / "learned_embeds.safetensors",
                                           progress_bar=False)
        times["two 512 px images, 2 steps"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = train_run(cfg, "bridged", root / "run", shots="full", seed=0,
                            synthetic_dir=synthetic)
        times["resnet18 at 224 px, 2 + 3 steps"] = time.perf_counter() - t0
        shapes = {"latents": [len(images), 4, 64, 64],
                  "generated": list(np.asarray(Image.open(next(synthetic.glob("*/*.png")))).shape)}
    result = {"seconds": {k: round(v, 1) for k, v in times.items()},
              "total_seconds": round(time.perf_counter() - t_all, 1),
              "peak_rss_gb": round(peak_gb(), 2), "parameters": params, "shapes": shapes,
              "dsi_loss": record["loss_curve"], "test_acc": metrics["test_acc"],
              "threads": torch.get_num_threads()}
    for k, v in result["seconds"].items():
        print(f"{k:34s} {v:7.1f} s")
    print(f"total {result['total_seconds']:.0f} s, peak memory {result['peak_rss_gb']:.2f} GB; "
          f"parameters {json.dumps(params)}")
    write_json(args.out_json, result)
    print(f"wrote {args.out_json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
