"""Build the mini text-to-image model: a real diffusers StableDiffusionPipeline, trained here.

Its "web" is captioned font glyphs (digits and lowercase letters, the generator's fonts, with
style words) plus the generator's share of the real handwritten digits (never the training pool
or the test set), half of them captioned with a loose descriptor of their look. The plain
prompt therefore draws mostly printed digits, while a handwritten region exists in text space
for Dataset Style Inversion to find. Stages: VAE (32 px <-> 4x16x16), then UNet + text encoder.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bridgelib.files import progress
from bridgelib.mini import glyphs, vocab

CORPUS_GLYPHS = 24000        # rendered glyph images, half digits and half lowercase letters
GLYPH_STYLE_PROB = 0.3       # share of glyphs drawn (and captioned) with a style word
REAL_COPIES = 4              # augmented copies of each real digit of the generator's share
CAPTION_DROPOUT = 0.1        # empty captions, so classifier-free guidance has an unconditional
VAE_STEPS, UNET_STEPS = 800, 6000
BATCH = 64


def components(tokenizer_dir: str | Path):
    """Fresh (vae, unet, text_encoder, tokenizer, scheduler) with the mini configs."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    tokenizer = vocab.build_tokenizer(tokenizer_dir)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=vocab.MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                        mid_block_add_attention=False)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 96), norm_num_groups=16, cross_attention_dim=64,
        attention_head_dim=8,
        # Text conditions the 8x8 and 4x4 levels only: enough for which glyph, 3x cheaper on CPU.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=0.00085,
                                            beta_end=0.012, beta_schedule="scaled_linear",
                                            algorithm_type="dpmsolver++", steps_offset=1)
    return vae, unet, text_encoder, tokenizer, scheduler


def build_corpus(seed: int = 0) -> tuple[torch.Tensor, list[str], dict]:
    """The captioned corpus: images (N, 3, 32, 32) float in [-1, 1], captions, and counts."""
    from bridgelib.data import load_digits_part
    rng = np.random.default_rng(seed)
    gen_fonts, _ = glyphs.font_split()
    # Digits outnumber the real digits' plain captions many times over, so a plain digit prompt
    # draws printed glyphs; the handwritten look needs a descriptor (or a learned token).
    digit_names = [f"digit {n}" for n in glyphs.DIGIT_NAMES]
    letter_names = [f"letter {c}" for c in glyphs.LETTERS]
    parts = [glyphs.render_set(tuple(str(i) for i in range(10)), gen_fonts, CORPUS_GLYPHS // 2,
                               seed, style_prob=GLYPH_STYLE_PROB),
             glyphs.render_set(glyphs.LETTERS, gen_fonts, CORPUS_GLYPHS // 2, seed + 1,
                               style_prob=GLYPH_STYLE_PROB)]
    caps = [vocab.caption(names[l], s, rng) for names, (_, labels, styles) in
            zip((digit_names, letter_names), parts) for l, s in zip(labels, styles)]
    imgs = np.concatenate([p[0] for p in parts])
    x = torch.from_numpy(imgs).float()[:, None].expand(-1, 3, -1, -1) / 127.5 - 1
    real = load_digits_part("generator")
    rx = real.floats().repeat(REAL_COPIES, 1, 1, 1)
    rx = _augment(rx, torch.Generator().manual_seed(seed)) * 2 - 1
    rl = real.labels.repeat(REAL_COPIES)
    rcaps = [vocab.caption(digit_names[int(l)], str(rng.choice(vocab.DESCRIPTORS)) if rng.random() < 0.5
                           else None, rng) for l in rl]
    counts = {"glyphs": len(x), "real_digits": len(real), "real_samples": len(rx),
              "fonts": list(gen_fonts)}
    return torch.cat([x, rx]), caps + rcaps, counts


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small random rotation, scale and shift of a batch (white background kept)."""
    n = len(x)
    ang = (torch.rand(n, generator=gen) - 0.5) * 0.35
    scale = 0.9 + 0.2 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.25
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return 1 - F.grid_sample(1 - x, grid, align_corners=False, padding_mode="zeros")


def train_vae(vae, x: torch.Tensor, steps: int, seed: int) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    losses = []
    for step in progress(range(steps), desc="vae"):
        batch = x[torch.randint(len(x), (BATCH,), generator=gen)]
        post = vae.encode(batch).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        kl = post.kl().mean() / batch[0].numel()
        loss = F.mse_loss(rec, batch) + 1e-3 * F.l1_loss(rec, batch) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def encode_latents(vae, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([vae.encode(x[i:i + 512]).latent_dist.mean for i in range(0, len(x), 512)])


def train_unet(unet, text_encoder, tokenizer, latents: torch.Tensor, captions: list[str],
               steps: int, seed: int) -> list[float]:
    """Noise-prediction training of the UNet and (at a small lr) the text encoder."""
    from diffusers import DDPMScheduler
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                beta_schedule="scaled_linear")
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids[0]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([{"params": unet.parameters(), "lr": 1e-3},
                             {"params": text_encoder.parameters(), "lr": 2e-4, "weight_decay": 0}])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[1e-3, 2e-4], total_steps=steps,
                                                pct_start=0.05)
    losses = []
    for step in progress(range(steps), desc="unet"):
        idx = torch.randint(len(latents), (BATCH,), generator=gen)
        batch_ids = ids[idx].clone()
        batch_ids[torch.rand(BATCH, generator=gen) < CAPTION_DROPOUT] = empty
        lat = latents[idx]
        noise = torch.randn(lat.shape, generator=gen)
        t = torch.randint(0, 1000, (BATCH,), generator=gen)
        noisy = noise_sched.add_noise(lat, noise, t)
        cond = text_encoder(batch_ids)[0]
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=cond).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text_encoder.parameters()], 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def build_generator(out: str | Path, seed: int = 0, vae_steps: int = VAE_STEPS,
                    unet_steps: int = UNET_STEPS, continue_from: str | Path | None = None) -> dict:
    """Train every component and save a StableDiffusionPipeline folder at `out`.

    continue_from: a generator folder to keep training (UNet and text encoder, `unet_steps`
    more, seed + 1), keeping its VAE; the shipped generator was built in two such phases.
    """
    from diffusers import StableDiffusionPipeline
    out = Path(out)
    torch.manual_seed(seed)
    t0 = time.time()
    x, captions, counts = build_corpus(seed)
    t_corpus = time.time() - t0
    if continue_from is None:
        vae, unet, text_encoder, tokenizer, scheduler = components(out / "_tokenizer_src")
        vae_losses = train_vae(vae, x, vae_steps, seed)
        vae.eval()
        latents = encode_latents(vae, x)
        scaling = float(1 / latents.std())
        vae.register_to_config(scaling_factor=scaling)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(continue_from, safety_checker=None)
        vae, unet, text_encoder, tokenizer, scheduler = (pipe.vae.eval(), pipe.unet.train(),
                                                         pipe.text_encoder.train(), pipe.tokenizer,
                                                         pipe.scheduler)
        vae_losses, vae_steps, seed = [float("nan")], 0, seed + 1
        latents = encode_latents(vae, x)
        scaling = vae.config.scaling_factor
    unet_losses = train_unet(unet, text_encoder, tokenizer, latents * scaling, captions,
                             unet_steps, seed)
    pipe = StableDiffusionPipeline(vae=vae.eval(), unet=unet.eval(),
                                   text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    import shutil
    shutil.rmtree(out / "_tokenizer_src", ignore_errors=True)
    return {"seed": seed, "build_seconds": round(time.time() - t0, 1),
            "corpus_seconds": round(t_corpus, 1), "corpus": counts,
            "vae_steps": vae_steps, "unet_steps": unet_steps, "batch_size": BATCH,
            "vae_final_loss": float(np.mean(vae_losses[-100:])),
            "unet_final_loss": float(np.mean(unet_losses[-200:])),
            "unet_loss_curve": [float(np.mean(unet_losses[i:i + 100]))
                                for i in range(0, len(unet_losses), 100)],
            "latent_scaling_factor": scaling,
            "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in
                           (("vae", vae), ("unet", unet), ("text_encoder", text_encoder))},
            "descriptors": list(vocab.DESCRIPTORS), "glyph_styles": list(glyphs.GLYPH_STYLES)}
