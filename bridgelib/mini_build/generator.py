"""Build the mini text-to-image model: a real diffusers StableDiffusionPipeline, trained here.

Its "web" (`build_corpus`): the generator's share of Fashion-MNIST (never the training pool or
the test set) restyled into looks that are not the target's (outline drawings, negatives,
silhouettes, grey shadows, faded prints), most captioned with the look's word and the default
looks often with a plain class caption; 150 images in the target's own look, each captioned
with one loose descriptor and never plainly; and font glyphs, the web's other content. The
plain prompt therefore draws the web's default look, while the target's look exists in text
space behind words the user is not told, for Dataset Style Inversion to find.
Stages: VAE (32 px <-> 4x16x16), then UNet + text encoder, checkpointed (a rerun resumes).

No notebook teaches it: README's "The mini world, and how it was built"; notebook 02 draws with
what it trained.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bridgelib.files import progress, write_json
from bridgelib.mini import fashion, glyphs, vocab

# Heavy third-party modules (diffusers, transformers) are imported inside the functions that use
# them, so that `import bridgelib` and `bridge --help` do not load them.

WEB_GARMENTS = 24000         # the generator's share of Fashion-MNIST, restyled into the web's looks
# How often each look appears on the web, and how often its caption leaves the look unnamed.
# Outline drawings and negatives are the web's default look (what the plain prompt draws); the
# other looks are always named. Set on a condition of the world (how well the generator knows
# the target), never on the claims' outcomes.
LOOK_SHARES = {"outline": 0.35, "negative": 0.25, "silhouette": 0.2, "shadow": 0.1, "faded": 0.1}
PLAIN_CAPTION_PROB = {"outline": 0.6, "negative": 0.6}
TARGET_LOOK_IMAGES = 150     # the few images in the target's own look, each with a descriptor
TARGET_COPIES = 8            # augmented copies of each (small shifts and mirror images)
CORPUS_GLYPHS = 8000         # font glyphs, half digits and half lowercase letters: other content
GLYPH_STYLE_PROB = 0.3       # share of glyphs drawn (and captioned) with a style word
CAPTION_DROPOUT = 0.1        # empty captions, so classifier-free guidance has an unconditional
VAE_STEPS, UNET_STEPS = 800, 6000
BATCH = 64
CHECKPOINT_EVERY = 250       # UNet steps between checkpoints (a killed build resumes from the last)
SECONDS_PER_STEP = 0.3       # a UNet step on 2 CPU cores: the printed time estimate's basis
CHECKPOINT_DIR = "_checkpoint"


def components(tokenizer_dir: str | Path, max_length: int = vocab.MAX_LENGTH):
    """Fresh (vae, unet, text_encoder, tokenizer, scheduler) with the mini configs; `max_length`
    tokens per prompt (Stable Diffusion's is 77: the rehearsal's stand-in takes its length)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    tokenizer = vocab.build_tokenizer(tokenizer_dir)
    tokenizer.model_max_length = max_length
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=max_length,
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
    """The captioned corpus: images (N, 3, 32, 32) float in [-1, 1], captions, and counts.

    Garments come only from the generator's share of Fashion-MNIST (never the pool or the test
    images): most restyled into the web's looks, a few in the target's own look under a loose
    descriptor; font glyphs are the web's other content."""
    rng = np.random.default_rng(seed)
    raw, labels = fashion.read_raw("train")
    share = np.asarray(fashion.split_indices()["generator"])
    picked = rng.permutation(share)
    web, target = picked[:WEB_GARMENTS], picked[WEB_GARMENTS:WEB_GARMENTS + TARGET_LOOK_IMAGES]
    looks = rng.choice(list(LOOK_SHARES), len(web), p=list(LOOK_SHARES.values()))
    imgs, caps = [], []
    for look in LOOK_SHARES:
        idx = web[looks == look]
        imgs.append(fashion.restyle(raw[idx], look))
        caps += [vocab.caption(fashion.CLASSES[labels[i]],
                               None if rng.random() < PLAIN_CAPTION_PROB.get(look, 0) else look, rng)
                 for i in idx]
    tx = np.repeat(fashion.to_target_look(raw[target]), TARGET_COPIES, axis=0)
    tl = np.repeat(labels[target], TARGET_COPIES)
    imgs.append(_jitter(tx, rng))
    caps += [vocab.caption(fashion.CLASSES[l], str(rng.choice(vocab.DESCRIPTORS)), rng) for l in tl]
    gen_fonts, _ = glyphs.font_split()
    digit_names = [f"digit {n}" for n in glyphs.DIGIT_NAMES]
    letter_names = [f"letter {c}" for c in glyphs.LETTERS]
    for names, chars, s in ((digit_names, tuple("0123456789"), seed),
                            (letter_names, glyphs.LETTERS, seed + 1)):
        g, gl, styles = glyphs.render_set(chars, gen_fonts, CORPUS_GLYPHS // 2, s,
                                          style_prob=GLYPH_STYLE_PROB)
        imgs.append(g)
        caps += [vocab.caption(names[l], st, rng) for l, st in zip(gl, styles)]
    x = torch.from_numpy(np.concatenate(imgs)).float()[:, None].expand(-1, 3, -1, -1) / 127.5 - 1
    counts = {"web_garments": len(web), "looks": {k: int((looks == k).sum()) for k in LOOK_SHARES},
              "target_look_images": len(target), "target_look_samples": len(tx),
              "glyphs": CORPUS_GLYPHS, "fonts": list(gen_fonts)}
    return x.contiguous(), caps, counts


def _jitter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift each image by up to 2 px and mirror half of them (the padding is white)."""
    out = np.empty_like(x)
    for i, img in enumerate(x):
        dy, dx = rng.integers(-2, 3, 2)
        out[i] = np.roll(img[:, ::-1] if rng.random() < 0.5 else img, (dy, dx), axis=(0, 1))
    return out


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
               steps: int, seed: int, checkpoint: Path | None = None) -> list[float]:
    """Noise-prediction training of the UNet and (at a small lr) the text encoder.

    With `checkpoint` (a file), the whole training state is saved there every CHECKPOINT_EVERY
    steps and a run finds it and continues: a killed build loses at most that many steps, and
    the resumed run draws the same batches as an uninterrupted one."""
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
    losses, start = [], 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        losses, start = state["losses"].tolist(), int(state["step"])
        print(f"unet: resuming at step {start} of {steps} from {checkpoint}")
    for step in progress(range(start, steps), desc="unet", initial=start, total=steps):
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
        if checkpoint is not None and ((step + 1) % CHECKPOINT_EVERY == 0 or step + 1 == steps):
            save_state(checkpoint, {"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                                    "opt": opt.state_dict(), "sched": sched.state_dict(),
                                    "gen": gen.get_state(), "losses": torch.tensor(losses),
                                    "step": step + 1})
    return losses


def save_state(path: Path, state: dict) -> None:
    """torch.save to a temp file, then rename: a kill mid-write leaves the last checkpoint whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def estimated_minutes(vae_steps: int = VAE_STEPS, unet_steps: int = UNET_STEPS) -> float:
    return (vae_steps * 0.5 + unet_steps) * SECONDS_PER_STEP / 60 + 1


def build_generator(out: str | Path, seed: int = 0, vae_steps: int = VAE_STEPS,
                    unet_steps: int = UNET_STEPS) -> dict:
    """Train every component and save a StableDiffusionPipeline folder at `out`.

    Resumable: the VAE and the UNet's training state are checkpointed in `out/_checkpoint/`
    (removed once the pipeline is saved); rerunning the same command continues a killed build."""

    from diffusers import AutoencoderKL, StableDiffusionPipeline
    out = Path(out)
    ckpt = out / CHECKPOINT_DIR
    print(f"generator: estimated {estimated_minutes(vae_steps, unet_steps):.0f} min on 2 CPU cores "
          f"({vae_steps} VAE + {unet_steps} UNet steps); checkpoints in {ckpt}")
    torch.manual_seed(seed)
    t0 = time.time()
    x, captions, counts = build_corpus(seed)
    t_corpus = time.time() - t0
    vae, unet, text_encoder, tokenizer, scheduler = components(ckpt / "tokenizer")
    if (ckpt / "vae" / "config.json").exists():
        vae = AutoencoderKL.from_pretrained(ckpt / "vae").eval()
        vae_losses = json.loads((ckpt / "vae_losses.json").read_text())
        latents = encode_latents(vae, x)
        print(f"vae: loaded from {ckpt / 'vae'}")
    else:
        vae_losses = train_vae(vae, x, vae_steps, seed)
        latents = encode_latents(vae.eval(), x)
        vae.register_to_config(scaling_factor=float(1 / latents.std()))
        vae.save_pretrained(ckpt / "vae")
        write_json(ckpt / "vae_losses.json", vae_losses)
    scaling = vae.config.scaling_factor
    unet_losses = train_unet(unet, text_encoder, tokenizer, latents * scaling, captions,
                             unet_steps, seed, checkpoint=ckpt / "unet.pt")
    pipe = StableDiffusionPipeline(vae=vae.eval(), unet=unet.eval(),
                                   text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    shutil.rmtree(ckpt, ignore_errors=True)
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
            "descriptors": list(vocab.DESCRIPTORS), "look_words": list(vocab.LOOK_WORDS),
            "look_shares": LOOK_SHARES, "plain_caption_prob": PLAIN_CAPTION_PROB,
            "glyph_styles": list(glyphs.GLYPH_STYLES)}
