"""Synthetic training sets from a text-to-image model: batched, seeded, resumable.

A set is an ImageFolder plus `metadata.jsonl` and `run.json`; `manifest.py` describes the layout
and decides what a rerun keeps.

Every image has its own seed, `image_seed(run_seed, class_idx, index)`, and its own
`torch.Generator`, so an image does not depend on the batch it was drawn in, on the order of the
work, or on an interruption. Writes are atomic (temp file + rename) and a manifest row is
appended only once its PNG is in place, so a crash leaves a folder that a rerun completes.

Launched on several processes (`accelerate launch --multi_gpu --num_processes N -m bridgelib.cli
generate ...`, or torchrun), the work is split between them: each process draws its share and
appends its rows to `metadata.rank{R}.jsonl`; rank 0 merges the parts into `metadata.jsonl`, the
same file, row for row, as one process writes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import torch

from bridgelib.config import DATA_DIR, PER_CLASS, REPO_ROOT, Config, check_value
from bridgelib.files import (atomic_write_bytes, process_state, progress, resolve_device,
                             sha256_file, write_json)
from bridgelib.manifest import (COLUMNS, check_folder, class_folders_of, image_seed,
                                manifest_parts, manifest_rows, prepare_folder, read_manifest,
                                write_manifest)
from bridgelib.prompts import (clean_class_names, make_prompt, template_strings,
                               validate_class_names)

__all__ = ["COLUMNS", "cached_synthetic_set", "generate_synthetic_set", "image_seed",
           "load_pipeline", "read_manifest"]  # the layout helpers live in manifest.py


def load_pipeline(cfg: Config, device: str | torch.device | None = None):
    """The text-to-image pipeline of `cfg.generation`, on `device` (default: cfg.device).

    The safety checker is off on purpose: it blanks images it flags, which would silently put
    black images into a training set (Stable Diffusion's own docs show how to turn it back on).
    float16 is used on CUDA only (CPU half precision is slow or unsupported); attention is
    PyTorch SDPA, diffusers' default.
    """
    from diffusers import StableDiffusionPipeline

    from bridgelib.files import keep_freed_memory, library_progress
    from bridgelib.models import WeightsError
    g = cfg.generation
    model = Path(g.model).expanduser()
    mini = cfg.profile == "mini" or model == DATA_DIR / "mini-generator"
    if not model.exists() and (model.is_absolute() or g.model.startswith((".", "~"))):
        hint = "; build the mini generator with `bridge mini build`" if mini else ""
        raise FileNotFoundError(f"generator folder {g.model!r} does not exist{hint}")
    device = resolve_device(str(device or cfg.device))
    if device.type == "cpu":
        keep_freed_memory()
    dtype = getattr(torch, g.dtype) if device.type == "cuda" else torch.float32
    try:  # diffusers 0.36+ calls the argument `dtype` and warns about `torch_dtype`
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
        dtype_kw = {"dtype": dtype}
    except ImportError:
        dtype_kw = {"torch_dtype": dtype}
    try:
        with library_progress():
            pipe = StableDiffusionPipeline.from_pretrained(
                str(model) if model.exists() else g.model, safety_checker=None,
                requires_safety_checker=False, **dtype_kw)
    except (OSError, ValueError, RuntimeError) as err:  # damaged weights, a wrong folder
        hint = "rebuild it with `bridge mini build --only generator`" if mini \
            else "check the id or folder"
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise WeightsError(f"generator {g.model!r} cannot be loaded ({type(err).__name__}: "
                           f"{first}); {hint}") from None
    pipe.scheduler = _scheduler(g.scheduler, pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _scheduler(name: str, current):
    """'dpmsolver++' (DPM-Solver++ multistep), 'default' (as saved) or a diffusers class name."""
    import diffusers
    if name == "dpmsolver++":
        return diffusers.DPMSolverMultistepScheduler.from_config(current.config,
                                                                 algorithm_type="dpmsolver++")
    if name in ("default", ""):
        return current
    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        raise ValueError(f"generation.scheduler={name!r} is invalid; valid: dpmsolver++, "
                         f"default, or a diffusers scheduler class such as DDIMScheduler")
    return cls.from_config(current.config)


def generate_synthetic_set(cfg: Config, out: str | Path, per_class: int,
                           class_names: list[str] | None = None, template: str | None = None,
                           style_token: str | Path | None = None, guidance: float | None = None,
                           steps: int | None = None, seed: int = 0, batch_size: int | None = None,
                           overwrite: bool = False, negative_prompt: str | None = None, pipe=None,
                           progress_bar: bool = True) -> Path:
    """Generate `per_class` images per class into `out`, resuming whatever is already there;
    split between processes when launched on several (see the module docstring).

    Options left as None come from `cfg.generation`; a style token (a `learned_embeds.safetensors`
    from `bridge invert`, or a token string the tokenizer knows) implies template 'dsi'. A folder
    holding a run with other options is refused unless `overwrite=True`. A larger `per_class`
    extends a set with the same seeds. `pipe`: an already loaded pipeline of cfg.generation.model.
    Reproducibility: batch sizes 1, 7 and 16 give the same uint8 pixels up to rounding; measured
    on CPU (2 and 20 steps): at most 1 of 255, on 0.002-0.004% of the values.
    """
    out, g = Path(out), cfg.generation
    batch_size = g.batch_size if batch_size is None else batch_size
    check_value("per_class", per_class, PER_CLASS)
    check_value("batch_size", batch_size, "generation.batch_size")
    options, token = generation_options(cfg, class_names, template, style_token, guidance,
                                        steps, seed, negative_prompt)
    # your own dataset folder is never written into, nor (with overwrite) deleted
    reads = Path(cfg.data_root) if cfg.dataset == "imagefolder" and cfg.data_root else None
    check_folder(out, options, overwrite, reads)  # before anything loads or changes
    state = process_state(cfg.device)
    main = state is None or state.is_main_process
    pipe = pipe if pipe is not None else load_pipeline(cfg, state and state.device)
    if token is not None:
        _check_token(pipe, token)
    if state is not None:
        state.wait_for_everyone()  # all have read the folder before rank 0 changes it
    run = {"config": cfg.to_dict(), "options": options, "versions": package_versions(),
           "request": {"per_class": per_class, "batch_size": batch_size, "dtype": str(pipe.dtype),
                       "device": str(pipe.device),
                       "processes": state.num_processes if state is not None else 1}}
    names = options["class_names"]
    slugs = class_folders_of(names)
    done = prepare_folder(out, run, overwrite, slugs, per_class) if main else None
    if state is not None:
        from accelerate.utils import broadcast_object_list
        done = broadcast_object_list([done])[0]
    if token is not None:
        _apply_token(pipe, token)
    work = [(c, i) for c in range(len(names)) for i in range(per_class) if (c, i) not in done]
    # Rank-stride shares differ by at most one image; each image's seed makes the split invisible.
    mine = work if state is None else work[state.process_index::state.num_processes]
    manifest = out / ("metadata.jsonl" if state is None else
                      f"metadata.rank{state.process_index}.jsonl")
    t0 = time.perf_counter()
    done.update(_draw_all(pipe, out, mine, batch_size, options, slugs, manifest,
                          progress_bar and main))
    if state is not None:
        state.wait_for_everyone()
        if not main:
            return out
        done.update(manifest_rows(slugs, manifest_parts(out)))
    write_manifest(out, done)
    for part in manifest_parts(out):  # merged into metadata.jsonl just now
        part.unlink()
    seconds = time.perf_counter() - t0
    run["result"] = {"images": len(done), "generated": len(work), "seconds": round(seconds, 3),
                     "images_per_s": round(len(work) / seconds, 3) if work else None}
    write_json(out / "run.json", run)
    return out


def model_fingerprint(model: str) -> str | None:
    """A short hash of a local model folder's weights (names, sizes, first MiB of each), so a
    rebuilt model never resumes a set drawn by the old one; None for hub ids."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        h.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def cached_synthetic_set(cfg: Config, per_class: int, template: str | None = None,
                         style_token: str | Path | None = None, guidance: float | None = None,
                         seed: int = 0, pipe=None, root: str | Path | None = None) -> Path:
    """A synthetic set under `cache/synthetic/`, generated once and shared by the notebooks,
    so each notebook can run on its own without regenerating what another already made."""
    template = template or ("dsi" if style_token else cfg.generation.template)
    guidance = guidance if guidance is not None else cfg.generation.guidance
    token = (f"-{sha256_file(style_token)[:8]}" if style_token and Path(style_token).is_file()
             else f"-{style_token}" if style_token else "")
    model = model_fingerprint(cfg.generation.model) or "hub"
    name = f"{cfg.profile}-{cfg.dataset}-{model[:8]}-{template}{token}-g{guidance:g}-n{per_class}-s{seed}"
    root = Path(root) if root else REPO_ROOT / "cache" / "synthetic"
    return generate_synthetic_set(cfg, root / name, per_class, template=template,
                                  style_token=style_token, guidance=guidance, seed=seed, pipe=pipe)


def _draw_all(pipe, out: Path, work: list[tuple[int, int]], batch_size: int, o: dict,
              slugs: list[str], manifest_path: Path, show_progress: bool) -> dict:
    """Draw `work` batch by batch; the progress bar shows this process's images per second."""
    rows = {}
    bar = progress(total=len(work), unit="img", desc="generate") if show_progress else None
    t0 = time.perf_counter()
    for start in range(0, len(work), batch_size):
        batch = work[start:start + batch_size]
        rows.update(_draw(pipe, out, batch, o, slugs, manifest_path))
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix(img_s=f"{(start + len(batch)) / (time.perf_counter() - t0):.2f}")
    if bar is not None:
        bar.close()
    return rows


def _draw(pipe, out: Path, batch: list[tuple[int, int]], o: dict, slugs: list[str],
          manifest_path: Path) -> dict:
    """Draw one batch (one generator per image), write each PNG, then append its manifest row."""
    seeds = [image_seed(o["seed"], c, i) for c, i in batch]
    token = o["style_token"] and o["style_token"]["name"]
    prompts = [make_prompt(o["template"], o["prompt_names"][c], s, token)
               for (c, _), s in zip(batch, seeds)]
    device = pipe.device if pipe.device.type == "cuda" else "cpu"  # cuda:R on process R
    neg, res = o["negative_prompt"], o["resolution"]
    images = pipe(prompt=prompts, negative_prompt=[neg] * len(batch) if neg else None,
                  num_inference_steps=o["num_inference_steps"], guidance_scale=o["guidance_scale"],
                  height=res, width=res, output_type="pil",
                  generator=[torch.Generator(device).manual_seed(s) for s in seeds]).images
    meta = {"negative_prompt": neg, "guidance_scale": o["guidance_scale"],
            "num_inference_steps": o["num_inference_steps"],
            "scheduler": type(pipe.scheduler).__name__, "model": o["model"],
            "style_token": o["style_token"], "width": res, "height": res}
    rows = {}
    with open(manifest_path, "a") as manifest:
        for (c, i), s, prompt, image in zip(batch, seeds, prompts, images):
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            file_name = f"{slugs[c]}/{i:05d}.png"
            atomic_write_bytes(out / file_name, buf.getvalue())
            rows[(c, i)] = {"file_name": file_name, "label": c, "class_name": o["class_names"][c],
                            "prompt": prompt, "seed": s, **meta}
            manifest.write(json.dumps({k: rows[(c, i)][k] for k in COLUMNS}) + "\n")
            manifest.flush()
    return rows


def generation_options(cfg: Config, class_names, template, style_token, guidance, steps, seed,
                       negative_prompt) -> tuple[dict, dict | None]:
    """The validated generation options (what run.json records and a resume must match)."""
    g = cfg.generation
    template = template or ("dsi" if style_token is not None else g.template)
    guidance = g.guidance if guidance is None else guidance
    steps = g.steps if steps is None else steps
    # the same rules as the config fields they override: finite, positive, capped
    check_value("steps", steps, "generation.steps")
    check_value("guidance", guidance, "generation.guidance")
    check_value("seed", seed, "seed")
    templates = template_strings(template)  # unknown template -> ValueError naming valid ones
    names = _class_names(cfg, class_names)
    token = _read_token(style_token)
    if template == "dsi" and token is None:
        raise ValueError("template 'dsi' needs a style token; pass style_token=FILE "
                         "(--style-token)")
    if template != "dsi" and token is not None:
        raise ValueError(f"style_token is only used by template 'dsi', not {template!r}")
    return {"model": g.model, "model_fingerprint": model_fingerprint(g.model),
            "class_names": names, "seed": seed, "template": template,
            "style_token": token and {"name": token["name"], "sha256": token["sha256"]},
            "guidance_scale": float(guidance), "num_inference_steps": steps,
            "resolution": g.resolution, "scheduler": g.scheduler,
            "negative_prompt": g.negative_prompt if negative_prompt is None else negative_prompt,
            "templates": templates, "prompt_names": clean_class_names(names, cfg.dataset)}, token


def _class_names(cfg: Config, class_names: list[str] | None) -> list[str]:
    if class_names is None:
        from bridgelib.datasets import MINI_CLASSES, MINI_DATASET
        if cfg.dataset != MINI_DATASET:
            raise ValueError(f"class_names is required for dataset {cfg.dataset!r}; only "
                             f"{MINI_DATASET!r} has built-in class names")
        class_names = list(MINI_CLASSES)
    names = validate_class_names(list(class_names))
    class_folders_of(names)  # two classes in one folder: refused, naming both
    return names


def _read_token(style_token: str | Path | None) -> dict | None:
    """A style token request: a safetensors file {token: tensor} or a plain token string."""
    if style_token is None:
        return None
    path = Path(style_token).expanduser()
    if path.is_file():
        from safetensors.torch import load_file
        try:
            tensors = load_file(str(path))
        except Exception as err:
            raise ValueError(f"style token {str(path)!r} is not a safetensors file "
                             f"({type(err).__name__}); expected a learned_embeds.safetensors "
                             f"from `bridge invert`") from None
        if len(tensors) != 1:
            raise ValueError(f"style token {str(path)!r} holds {len(tensors)} tensors; expected "
                             f"one {{token: tensor}} as `bridge invert` writes")
        name, vec = next(iter(tensors.items()))
        if not torch.isfinite(vec).all():
            raise ValueError(f"style token {str(path)!r} holds NaN or infinite values; learn it "
                             f"again (`bridge invert`, a lower --lr)")
        return {"name": name, "sha256": sha256_file(path), "path": path,
                "vectors": vec.reshape(-1, vec.shape[-1])}
    if path.suffix in (".safetensors", ".bin", ".pt") or os.sep in str(style_token):
        raise FileNotFoundError(f"style token file {str(style_token)!r} does not exist; "
                                f"pass a learned_embeds.safetensors from `bridge invert`")
    return {"name": str(style_token), "sha256": None, "path": None, "vectors": None}


def _check_token(pipe, token: dict) -> None:
    """Refuse a token that cannot work before anything is changed (pipeline or folder)."""
    if token["vectors"] is None:
        if token["name"] not in pipe.tokenizer.get_vocab() and \
                len(pipe.tokenizer.tokenize(token["name"])) != 1:
            raise ValueError(f"style token {token['name']!r} is neither a file nor a token of "
                             f"the tokenizer")
        return
    tok, name = pipe.tokenizer, token["name"]
    if name in tok.get_vocab() and name not in tok.get_added_vocab():
        raise ValueError(f"style token {str(token['path'])!r} names its token {name!r}, already "
                         f"a token of the tokenizer's own vocabulary; loading it would overwrite "
                         f"that token's embedding; learn it under a new word such as '<s*>' "
                         f"(invert.token)")
    width, hidden = token["vectors"].shape[-1], pipe.text_encoder.config.hidden_size
    if width != hidden:
        raise ValueError(f"style token {str(token['path'])} has width {width} but the text "
                         f"encoder expects {hidden}")


def _apply_token(pipe, token: dict) -> None:
    """Load the token; if the pipeline already has it (a rerun), overwrite its vectors in place."""
    if token["vectors"] is None:
        return
    vecs, name = token["vectors"], token["name"]
    names = [name] + [f"{name}_{k}" for k in range(1, len(vecs))]
    vocab = pipe.tokenizer.get_vocab()
    if name not in vocab:
        pipe.load_textual_inversion(str(token["path"]))
        return
    emb = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        emb[[vocab[n] for n in names]] = vecs.to(emb.device, emb.dtype)


def package_versions() -> dict[str, str]:
    """Versions recorded next to every set: a different diffusers can draw different pixels."""
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for pkg in ("torch", "diffusers", "transformers", "bridgelib"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = "not installed"
    return found
