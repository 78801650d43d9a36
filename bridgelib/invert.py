"""Dataset Style Inversion: textual inversion of ONE token S* for a whole target dataset.

Every real image is captioned "A {class} photo in the style of S*" with its own class name, so
what the images share beyond their classes (their look) is what S* has to explain. Only the new
embedding row(s) of the text encoder learn; the VAE, the UNet and every other weight stay frozen.
The result is a diffusers `learned_embeds.safetensors` ({token: (num_vectors, hidden)}) that
`pipe.load_textual_inversion(path)` accepts as is (written and read by pipeline.py), plus a JSON
training record beside it.

Taught in notebooks 04, 07.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bridgelib.config import Config, cache_root, check_value
from bridgelib.data import ImageSet
from bridgelib.datasets import load_dataset
from bridgelib.files import (atomic_write_bytes, check_target, check_writable, progress,
                             read_bytes, share_cpu, write_json)
from bridgelib.locks import locks_output
from bridgelib.pipeline import (check_word, held_token_ids, load_pipeline, model_fingerprint,
                                package_versions, save_style_token, single_token_id)
from bridgelib.prompts import clean_class_names, make_prompt

MAX_NORM_FACTOR = 1.5
KEEP_CHECKPOINTS = 2
# Settings a resume must share with the interrupted run (steps may grow: a run can be extended).
RESUME_KEYS = ("token", "initializer", "num_vectors", "lr", "batch_size", "seed",
               "max_norm_factor", "images_sha256")


def add_style_token(tokenizer, text_encoder, token: str, initializer: str,
                    num_vectors: int = 1) -> list[int]:
    """Add `token` (and token_1.. token_{n-1}, the diffusers convention) initialised from a word.

    Starting from a real word's embedding puts S* where the text encoder already knows how to
    read it; the initializer must therefore be one token (a split word has no single embedding).
    """
    names = [token] + [f"{token}_{i}" for i in range(1, num_vectors)]
    vocab = tokenizer.get_vocab()
    check_word(token)
    if any(n in vocab for n in names):
        raise ValueError(f"token {token!r} is already in the tokenizer's vocabulary; choose "
                         f"another token or load the pipeline afresh")
    init_id = single_token_id(tokenizer, initializer, "initializer")
    tokenizer.add_tokens(names)
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ids = tokenizer.convert_tokens_to_ids(names)
    _initialise(text_encoder, ids, init_id)
    return ids


@torch.no_grad()
def _initialise(text_encoder, ids: list[int], init_id: int) -> None:
    weight = text_encoder.get_input_embeddings().weight
    weight[ids] = weight[init_id].clone()


@locks_output("out", is_file=True)  # one writer per token file (its lock beside it)
def learn_style_token(cfg: Config, images: ImageSet, out: str | Path, steps: int | None = None,
                      lr: float | None = None, batch_size: int | None = None, seed: int = 0,
                      resume: bool = False, overwrite: bool = False, pipe=None,
                      progress_bar: bool = True, on_checkpoint=None,
                      max_norm_factor: float | None = MAX_NORM_FACTOR) -> dict:
    """Learn cfg.invert.token for `images`; write `out` and `out.json`; return the record.

    Loss: the usual noise prediction (epsilon, or v for v_prediction models) at random DDPM
    timesteps. The VAE latents (posterior means) of all images are computed once before the loop:
    the images never change, so per-step VAE encoding (the diffusers example) is wasted work.
    `on_checkpoint(step, pipe)` runs after each checkpoint with the current token in `pipe`.
    `max_norm_factor` caps the token's norm, which guards the content (see `_TokenRows`);
    None turns the cap off. A pipeline that already holds the token has its rows re-initialised.
    Resume: checkpoints hold the rows, the optimizer and the generator state, so `resume=True`
    gives the vectors of an uninterrupted run bit for bit (torch.equal) on CPU (same threads
    and library versions). On CUDA that needs torch.use_deterministic_algorithms(True) and
    CUBLAS_WORKSPACE_CONFIG=:4096:8; without them CUDA's atomics make even two uninterrupted
    runs differ slightly (docs/design.md, "Measurements behind design choices").
    The two newest checkpoints stay in `record["checkpoints"]` after the run, so that
    `resume=True` with more steps extends it; deleting that folder loses only this.
    """
    inv, out = cfg.invert, Path(out)
    steps = inv.steps if steps is None else steps
    lr = inv.lr if lr is None else lr
    batch_size = inv.batch_size if batch_size is None else batch_size
    for name, value in (("steps", steps), ("batch_size", batch_size), ("lr", lr)):
        check_value(name, value, f"invert.{name}")  # the field's rule: finite, positive, capped
    check_value("seed", seed, "seed")
    if out.suffix == ".json":  # the record is written next to the token, as out.json
        raise ValueError(f"token file {str(out)!r} would be overwritten by its own training "
                         f"record ({out.name}); name the token *.safetensors")
    settings = {"token": inv.token, "initializer": inv.initializer, "num_vectors": inv.num_vectors,
                "steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed,
                "max_norm_factor": max_norm_factor, "images_sha256": _images_sha256(images)}
    ckpt_dir = out.parent / (out.stem + "_checkpoints")
    for path in (out, out.with_suffix(".json")):  # replaced at the end: refused now, not then
        check_target(path)
    state = _start_state(out, ckpt_dir, settings, resume, overwrite)
    check_writable(out.parent)  # the first checkpoint comes only after checkpoint_every steps
    if pipe is None:
        pipe = load_pipeline(cfg)
    share_cpu(pipe.device)  # threads for the cores free now (files.share_cpu)
    ids = held_token_ids(pipe.tokenizer, inv.token, inv.num_vectors, f"invert.token={inv.token!r}",
                         "choose a new word such as '<s*>'")
    if ids:  # an earlier run in this pipeline: start its rows afresh
        _initialise(pipe.text_encoder, ids,
                    single_token_id(pipe.tokenizer, inv.initializer, "initializer"))
    else:
        ids = add_style_token(pipe.tokenizer, pipe.text_encoder, inv.token, inv.initializer,
                              inv.num_vectors)
    token = _TokenRows(pipe, ids, lr, seed, max_norm_factor, state)
    t0 = time.perf_counter()
    latents = _latents(pipe, images, cfg.generation.resolution)
    captions = _caption_ids(pipe, images, inv.token, cfg.dataset, ids)
    t_latents, start = time.perf_counter() - t0, token.step
    from diffusers import DDPMScheduler  # heavy (seconds); loaded anyway with the pipeline
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    bar = progress(total=steps, initial=start, desc="invert") if progress_bar else None
    t1 = time.perf_counter()
    with _frozen(pipe):
        while token.step < steps:
            token.update(_batch_loss(pipe, sched, latents, captions, batch_size, token.gen))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{token.losses[-1]:.4f}")
            if token.step % inv.checkpoint_every == 0 or token.step == steps:
                if not torch.isfinite(token.rows).all():  # never saved, never written as S*
                    raise RuntimeError(f"the style token diverged (NaN or infinite values by "
                                       f"step {token.step}, lr={lr}); lower lr (--lr) and start "
                                       f"again with overwrite=True (--overwrite)")
                _save_checkpoint(ckpt_dir, token.state_dict(settings, time.perf_counter() - t1))
                if on_checkpoint is not None:
                    on_checkpoint(token.step, pipe)
    seconds = time.perf_counter() - t1
    if bar is not None:
        bar.close()
    sha = save_style_token(out, inv.token, token.rows, cfg.generation.model, steps,
                           real_per_class=real_per_class(images))
    record = {
        **settings, "token_ids": ids, "images": len(images),
        "real_per_class": real_per_class(images), "resumed_from": start,
        "max_norm": None if math.isinf(token.max_norm) else token.max_norm,
        "loss_curve": [round(x, 6) for x in token.losses], "base_model": cfg.generation.model,
        "sha256": sha, "checkpoints": str(ckpt_dir), "latent_seconds": round(t_latents, 3),
        "seconds": round(seconds, 3),
        "total_train_seconds": round(token.seconds_before + seconds, 3),
        "steps_per_s": round((steps - start) / seconds, 3) if steps > start else None,
        "config": cfg.to_dict(), "versions": package_versions()}
    write_json(out.with_suffix(".json"), record)
    return record


def real_per_class(images: ImageSet) -> int:
    """The most real images of one class a token is learned on: k for a k-shot subset. The
    science rule of the store: a k-shot arm's token never sees more than k per class."""
    return int(torch.bincount(images.labels.long()).max()) if len(images) else 0


class _TokenRows:
    """The trainable rows of S* and what moves them: AdamW, a loss scaler, the generator.

    AdamW (weight decay 0) sees only the new rows. Adam is elementwise, so this equals AdamW on
    the whole matrix with the other rows' gradients zeroed, and it leaves every other row
    untouched bit for bit by construction; the optimizer state stays small (for checkpoints).
    After every step each row's norm is capped at `max_norm_factor` x the mean norm of the other
    rows: an unbounded token keeps growing until its attention takes over the prompt, and the
    images show the style without the class. One CPU torch.Generator draws batches, noise and
    timesteps, so the run is the same on any device and its state resumes exactly.
    """

    def __init__(self, pipe, ids, lr, seed, max_norm_factor, state=None):
        self.weight = pipe.text_encoder.get_input_embeddings().weight
        self.ids = ids
        others = torch.ones(len(self.weight), dtype=torch.bool)
        others[ids] = False
        mean_norm = self.weight.detach()[others].float().norm(dim=1).mean().item()
        self.max_norm = math.inf if max_norm_factor is None else max_norm_factor * mean_norm
        init = state["rows"] if state else self.weight.detach()[ids]
        self.rows = init.float().to(self.weight.device).requires_grad_(True)
        self.opt = torch.optim.AdamW([self.rows], lr=lr, weight_decay=0.0)
        # float16 weights (the paper profile on CUDA) underflow without loss scaling.
        self.scaler = torch.amp.GradScaler(pipe.unet.device.type,
                                           enabled=pipe.unet.dtype == torch.float16)
        self.gen = torch.Generator().manual_seed(seed)
        self.losses, self.step, self.seconds_before = [], 0, 0.0
        if state:
            self.opt.load_state_dict(state["optimizer"])
            if state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
            self.gen.set_state(state["generator"])
            self.losses, self.step, self.seconds_before = \
                list(state["losses"]), state["step"], state["seconds"]
        self._write()

    def update(self, loss) -> None:
        """Backward into the embedding matrix, step the rows, cap their norm, write them back."""
        self.weight.grad = None
        self.scaler.scale(loss).backward()
        self.rows.grad = self.weight.grad[self.ids].float()
        self.weight.grad = None
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.rows.mul_(torch.clamp(self.max_norm / self.rows.norm(dim=1, keepdim=True), max=1))
        self._write()
        self.losses.append(loss.item())
        self.step += 1

    @torch.no_grad()
    def _write(self) -> None:
        self.weight[self.ids] = self.rows.to(self.weight.dtype)

    def state_dict(self, settings: dict, seconds: float) -> dict:
        return {"step": self.step, "rows": self.rows.detach().cpu(),
                "optimizer": self.opt.state_dict(), "generator": self.gen.get_state(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "losses": list(self.losses), "settings": settings,
                "seconds": self.seconds_before + seconds}


def _batch_loss(pipe, sched, latents, captions, batch_size: int, gen):
    """Noise-prediction loss of one random batch (the caption carries the token)."""
    te, unet = pipe.text_encoder, pipe.unet
    idx = torch.randint(len(latents), (batch_size,), generator=gen)
    lat = latents[idx].to(unet.device)
    noise = torch.randn(lat.shape, generator=gen).to(unet.device)
    t = torch.randint(0, sched.config.num_train_timesteps, (batch_size,), generator=gen)
    t = t.to(unet.device)
    # The captions of a batch repeat (one per class): encode each distinct one once.
    uniq, inverse = torch.unique(captions[idx], dim=0, return_inverse=True)
    cond = te(uniq.to(te.device))[0][inverse]
    noisy = sched.add_noise(lat, noise, t)
    pred = unet(noisy.to(unet.dtype), t, encoder_hidden_states=cond.to(unet.dtype)).sample
    return F.mse_loss(pred.float(), _target(sched, lat, noise, t).float())


def _target(sched, latents, noise, t):
    kind = sched.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return sched.get_velocity(latents, noise, t)
    raise ValueError(f"prediction_type {kind!r} is not supported; valid: epsilon, v_prediction")


@contextlib.contextmanager
def _frozen(pipe):
    """Every weight frozen but the embedding matrix (its gradient feeds the rows), eval mode.

    Eval mode: nothing should be random but our generator's draws. Old flags come back after.
    """
    modules = (pipe.vae, pipe.unet, pipe.text_encoder)
    flags = {p: p.requires_grad for m in modules for p in m.parameters()}
    for module in modules:
        module.requires_grad_(False).eval()
    weight = pipe.text_encoder.get_input_embeddings().weight.requires_grad_(True)
    try:
        yield
    finally:
        weight.grad = None
        for p, flag in flags.items():
            p.requires_grad_(flag)


@torch.no_grad()
def _latents(pipe, images: ImageSet, resolution: int | None = None, chunk: int = 32):
    """Scaled VAE posterior means of all images (uint8 -> [-1, 1], resized if needed), float32."""
    vae = pipe.vae
    out = []
    for i in range(0, len(images), chunk):
        x = images.images[i:i + chunk].float() / 127.5 - 1
        if resolution and tuple(x.shape[-2:]) != (resolution, resolution):
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                              antialias=True, align_corners=False)
        x = x.to(vae.device, vae.dtype)
        out.append(vae.encode(x).latent_dist.mean.float() * vae.config.scaling_factor)
    return torch.cat(out)


def _caption_ids(pipe, images: ImageSet, token: str, dataset: str, ids: list[int]):
    """Token ids of each image's DSI caption (multi-vector tokens expanded as diffusers does)."""
    names, tok = clean_class_names(list(images.class_names), dataset), pipe.tokenizer
    prompts = [pipe.maybe_convert_prompt(make_prompt("dsi", names[int(c)], 0, token), tok)
               for c in images.labels]
    cap = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    missing = [p for p, row in zip(prompts, cap) if not set(ids) <= set(row.tolist())]
    if missing:
        raise ValueError(f"caption {missing[0]!r} is longer than the tokenizer's "
                         f"{tok.model_max_length} tokens and loses the style token")
    return cap


def _images_sha256(images: ImageSet) -> str:
    h = hashlib.sha256(images.images.contiguous().numpy().tobytes())
    h.update(images.labels.numpy().tobytes())
    return h.hexdigest()


def _start_state(out: Path, ckpt_dir: Path, settings: dict, resume: bool,
                 overwrite: bool) -> dict | None:
    """The checkpoint to resume from, or None for a fresh start; nothing is lost unasked.

    A finished `out` is replaced only with overwrite=True; an interrupted run's checkpoints are
    either resumed (resume=True) or discarded (overwrite=True), never silently.
    """
    found = sorted(ckpt_dir.glob("step_*.pt"))
    if resume and found:
        state = _read_checkpoint(found[-1])
        for key in RESUME_KEYS:
            if state["settings"].get(key) != settings[key]:
                raise ValueError(f"checkpoint {str(found[-1])!r} was made with {key}="
                                 f"{state['settings'].get(key)!r}, not {settings[key]!r}; pass "
                                 f"the same settings, or overwrite=True (--overwrite) to start "
                                 f"again")
        if any(k not in state for k in _CHECKPOINT_KEYS):  # its settings matched: damaged
            raise ValueError(f"checkpoint {str(found[-1])!r} lacks "
                             f"{next(k for k in _CHECKPOINT_KEYS if k not in state)!r}; delete "
                             f"it, or pass overwrite=True (--overwrite) to start again")
        if state["step"] > settings["steps"]:
            raise ValueError(f"checkpoint {str(found[-1])!r} is at step {state['step']}, "
                             f"beyond steps={settings['steps']}; pass steps >= {state['step']} "
                             f"(--steps) or overwrite=True (--overwrite)")
        return state
    if out.exists() and not overwrite:
        hint = "it has no checkpoint to resume" if resume else \
            "or resume=True (--resume) to continue its run"
        raise FileExistsError(f"{str(out)!r} exists; pass overwrite=True (--overwrite) to "
                              f"replace it ({hint})")
    if found and not overwrite:
        raise FileExistsError(f"{str(ckpt_dir)!r} holds checkpoints of an unfinished run; pass "
                              f"resume=True (--resume) to continue it or overwrite=True "
                              f"(--overwrite) to start again")
    record = out.with_suffix(".json")
    if record.exists() and not overwrite:  # a file of yours beside --out, not this run's record
        raise FileExistsError(f"{str(record)!r} exists and would be replaced by the token's "
                              f"training record; pass overwrite=True (--overwrite) or choose "
                              f"another --out")
    for path in found:
        path.unlink()
    return None


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint through the one reader (a regular file of at most 1 GiB), loaded weights
    only; anything else (damaged, foreign, code to run) is one line naming it."""
    data = read_bytes(path, 1 << 30, "checkpoint")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- a damaged or foreign pickle raises nearly anything
        raise ValueError(f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}); "
                         f"delete it, or pass overwrite=True (--overwrite) to start again"
                         ) from None
    if not isinstance(state, dict) or not isinstance(state.get("settings"), dict):
        raise ValueError(f"checkpoint {str(path)!r} is not a checkpoint of `bridge invert`; "
                         f"delete it, or pass overwrite=True (--overwrite) to start again")
    return state


_CHECKPOINT_KEYS = ("step", "rows", "optimizer", "generator", "scaler", "losses", "settings",
                    "seconds")


def _save_checkpoint(ckpt_dir: Path, state: dict) -> None:
    """Write step_XXXXXX.pt atomically, then keep only the newest KEEP_CHECKPOINTS."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(ckpt_dir / f"step_{state['step']:06d}.pt", buf.getvalue())
    for old in sorted(ckpt_dir.glob("step_*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink()


@torch.no_grad()
def token_loss(pipe, images: ImageSet, prompts, seed: int = 0,
               timesteps=(100, 300, 500, 700, 900), batch_size: int = 32) -> float:
    """Mean noise-prediction loss of `prompts` on `images`, with noise fixed by `seed`.

    Compares a learned token with hand-written prompts on the same real images and the same
    noise: the lower, the better the prompt explains the images. `prompts` is one string per
    image, or one string for all where '{class}' becomes each image's class name.
    """
    from diffusers import DDPMScheduler  # heavy (seconds); loaded anyway with the pipeline
    if isinstance(prompts, str):  # class names cleaned as for training and generation
        names = clean_class_names(list(images.class_names))
        prompts = [prompts.replace("{class}", names[int(c)]) for c in images.labels]
    if len(prompts) != len(images):
        raise ValueError(f"got {len(prompts)} prompts for {len(images)} images; expected one "
                         f"per image or one string for all")
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    latents = _latents(pipe, images, pipe.unet.config.sample_size * pipe.vae_scale_factor)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(timesteps), *latents.shape), generator=gen)
    cond = pipe.encode_prompt(prompts, pipe.unet.device, 1, False)[0]
    total = 0.0
    for k, step in enumerate(timesteps):
        for i in range(0, len(images), batch_size):
            lat = latents[i:i + batch_size].to(pipe.unet.device)
            eps = noise[k, i:i + batch_size].to(lat.device)
            t = torch.full((len(lat),), int(step), device=lat.device, dtype=torch.long)
            pred = pipe.unet(sched.add_noise(lat, eps, t).to(pipe.unet.dtype), t,
                             encoder_hidden_states=cond[i:i + batch_size]).sample
            total += F.mse_loss(pred.float(), _target(sched, lat, eps, t).float(),
                                reduction="sum").item()
    return total / (len(timesteps) * latents.numel())


def cached_style_token(cfg: Config, shots="full", seed: int = 0, pipe=None,
                       root: str | Path | None = None) -> Path:
    """A style token learned once under `cache/dsi/` (config.cache_root) and shared by the notebooks; the folder
    name carries the generator's fingerprint, so a rebuilt generator never reuses an old token."""
    root = Path(root) if root else cache_root() / "dsi"
    model = (model_fingerprint(cfg.generation.model) or "hub")[:8]
    name = f"{cfg.profile}-{cfg.dataset}-{model}-k{shots}-n{cfg.invert.steps}-s{seed}"
    path = root / name / "learned_embeds.safetensors"
    if not path.exists():
        images = load_dataset(cfg, "train", shots, seed, size=cfg.generation.resolution)
        learn_style_token(cfg, images, path, seed=seed, pipe=pipe, resume=True)  # after a crash
    return path
