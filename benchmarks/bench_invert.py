"""Steps/s of `learn_style_token` against the diffusers textual_inversion example's loop.

    python benchmarks/bench_invert.py --steps 100 --out-json outputs/bench_invert.json

(a) `learn_style_token` (VAE latents of all images computed once, distinct captions encoded
once per batch, checkpoints and files included); (b) a plain loop written here that mirrors
`examples/textual_inversion/textual_inversion.py` of diffusers: every step tokenizes the batch's
captions, VAE-encodes the batch and samples its latent, adds noise, predicts it with the UNet,
back-propagates into the whole embedding matrix, steps AdamW on that matrix and restores every
other row. Same pipeline, token, images, batch size, resolution and threads, in one process,
each after two warm-up steps. Prints both and their ratio, and writes them as JSON.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bridgelib.config import get_config
from bridgelib.datasets import load_dataset
from bridgelib.files import set_progress, share_cpu, write_json
from bridgelib.pipeline import load_pipeline, package_versions
from bridgelib.invert import add_style_token, learn_style_token
from bridgelib.prompts import make_prompt

import utilisation  # benchmarks/utilisation.py: this script's folder is on sys.path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="mini", help="config profile (default: mini)")
    p.add_argument("--model", default=None, help="diffusers folder or hub id "
                   "(default: the profile's generation.model)")
    p.add_argument("--steps", type=int, default=100, help="timed steps of each loop (30 scattered by +-5%%)")
    p.add_argument("--batch-size", type=int, default=None, help="default: invert.batch_size")
    p.add_argument("--shots", default="16", help="real images per class (default 16)")
    p.add_argument("--compile", action="store_true", help="learn_style_token with the UNet "
                   "compiled (generation.compile; compile time in its warm-up, not the timing); "
                   "the reference loop keeps the eager UNet, as the diffusers example runs")
    p.add_argument("--out-json", default="outputs/bench_invert.json")
    return p.parse_args(argv)


def reference_loop(pipe, images, token: str, steps: int, batch_size: int, resolution: int,
                   lr: float, seed: int = 0) -> float:
    """Seconds for `steps` steps of the diffusers example's loop (after 2 warm-up steps)."""
    from diffusers import DDPMScheduler
    vae, unet, te, tok = pipe.vae, pipe.unet, pipe.text_encoder, pipe.tokenizer
    for m in (vae, unet, te):
        m.requires_grad_(False).eval()
    weight = te.get_input_embeddings().weight.requires_grad_(True)
    keep = torch.ones(len(weight), dtype=torch.bool)
    keep[tok.convert_tokens_to_ids(token)] = False
    orig = weight.detach().clone()
    opt = torch.optim.AdamW([weight], lr=lr, weight_decay=0.0)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen, device = torch.Generator().manual_seed(seed), unet.device
    for step in range(steps + 2):
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        idx = torch.randint(len(images), (batch_size,), generator=gen)
        captions = [make_prompt("dsi", images.class_names[int(images.labels[i])], 0, token)
                    for i in idx]
        ids = tok(captions, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids.to(device)
        x = images.images[idx].float() / 127.5 - 1
        if x.shape[-1] != resolution:
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)
        latents = vae.encode(x.to(device, vae.dtype)).latent_dist.sample().detach()
        latents = latents * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch_size,), device=device)
        noisy = sched.add_noise(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=te(ids)[0].to(unet.dtype)).sample
        target = noise if sched.config.prediction_type == "epsilon" else \
            sched.get_velocity(latents, noise, t)
        F.mse_loss(pred.float(), target.float()).backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            weight[keep] = orig[keep]
    if device.type == "cuda":
        torch.cuda.synchronize()
    weight.requires_grad_(False)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = get_config(args.profile, **({"generation.model": args.model} if args.model else {}),
                     **{"generation.compile": args.compile})
    set_progress(False)
    inv, res = cfg.invert, cfg.generation.resolution
    batch = args.batch_size or inv.batch_size
    images = load_dataset(cfg, "train", args.shots, size=res)  # as `bridge invert` reads them
    pipe = load_pipeline(cfg)
    add_style_token(pipe.tokenizer, pipe.text_encoder, inv.token, inv.initializer, 1)
    share_cpu(pipe.device)  # the threads learn_style_token will pick: both loops get the same
    compiled = pipe.unet
    pipe.unet = getattr(compiled, "_orig_mod", compiled)  # the example's eager UNet
    t_ref = reference_loop(pipe, images, inv.token, args.steps, batch, res, inv.lr)
    pipe.unet = compiled
    with tempfile.TemporaryDirectory() as tmp:  # learn_style_token re-initialises the token
        out = Path(tmp) / "learned_embeds.safetensors"
        learn_style_token(cfg, images, out, steps=2, batch_size=batch, pipe=pipe,
                          progress_bar=False)  # warm-up
        t0 = time.perf_counter()
        rec = learn_style_token(cfg, images, out, steps=args.steps, batch_size=batch, pipe=pipe,
                                overwrite=True, progress_bar=False)
        t_ours = time.perf_counter() - t0
    ref_sps = args.steps / t_ref
    result = {
        "model": cfg.generation.model, "device": str(pipe.device), "steps": args.steps,
        "batch_size": batch, "images": len(images), "resolution": res,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "reference_steps_per_s": round(ref_sps, 3),
        "ours_loop_steps_per_s": rec["steps_per_s"],
        "ours_total_steps_per_s": round(args.steps / t_ours, 3),
        "ours_latent_seconds": rec["latent_seconds"],
        "ratio_loop": round(rec["steps_per_s"] / ref_sps, 3),
        "ratio_total": round(args.steps / t_ours / ref_sps, 3), "compiled": args.compile,
        "versions": package_versions()}
    # FLOPs counted after the timing (the counter slows what it watches), attainable measured now;
    # on the eager UNet (the same work: the counter does not see inside a compiled graph)
    pipe.unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    result.update(utilisation.measure(
        utilisation.inversion_flops_per_step(cfg, pipe, images, batch),
        rec["steps_per_s"], pipe.device, threads=result["torch_threads"]))
    print(f"reference loop (diffusers example): {ref_sps:.2f} steps/s")
    print(f"learn_style_token: {rec['steps_per_s']:.2f} steps/s in the loop, "
          f"{result['ours_total_steps_per_s']:.2f} steps/s with latents, checkpoints and files")
    print(f"ratio: {result['ratio_loop']:.2f}x (loop), {result['ratio_total']:.2f}x (total)")
    print(utilisation.summary(result, f"step of {batch} images"))
    if args.out_json:
        write_json(args.out_json, result)
        print(f"wrote {args.out_json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
