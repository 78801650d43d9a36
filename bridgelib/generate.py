"""Synthetic training sets from a text-to-image model: batched, seeded, resumable.

A set is an ImageFolder plus a manifest (one row per image) and a record of the run;
`manifest.py` is their one home: it describes the layout, reads and writes both files, and decides
what a rerun keeps.

Every image has its own seed, `image_seed(run_seed, class_idx, index)`, and its own
`torch.Generator`, so an image does not depend on the batch it was drawn in, on the order of the
work, or on an interruption. Writes are atomic (temp file + rename) and a manifest row is
appended only once its PNG is in place, so a crash leaves a folder that a rerun completes.

Launched on several processes (`accelerate launch --multi_gpu --num_processes N -m bridgelib.cli
generate ...`, or torchrun), the work is split between them: each process draws its share and
appends its rows to a manifest part of its own (`manifest.manifest_parts`); rank 0 merges the
parts into the set's manifest, the same file, row for row, as one process writes.

Taught in notebooks 02, 03, 04, 07.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import time
import warnings
from pathlib import Path

import torch

from bridgelib.config import MINI_GENERATOR, PER_CLASS, Config, cache_root, check_value
from bridgelib.datasets import MINI_CLASSES, MINI_DATASET, dataset_class_names
from bridgelib.files import (atomic_write_bytes, check_free_space, process_state, progress,
                             resolve_device, sha256_file, share_cpu)
from bridgelib.locks import output_lock
from bridgelib.manifest import (appending_rows, check_folder, class_folders_of, image_seed,
                                manifest_part, manifest_parts, manifest_rows, prepare_folder,
                                set_class_folders, write_manifest, write_record)
from bridgelib.memory import check_generation_memory
from bridgelib.mini.vocab import unknown_objects
from bridgelib.pipeline import (StyleToken, apply_style_token, check_style_token,
                                check_token_fits, load_pipeline,
                                hub_revision, model_fingerprint, package_versions,
                                pipeline_autocast, pipeline_precision, read_style_token)
from bridgelib.prompts import (clean_class_names, make_prompt, template_strings,
                               validate_class_names)

__all__ = ["cached_synthetic_set", "generate_synthetic_set", "generation_options"]
# a set's layout and files live in manifest.py; the pipeline in pipeline.py


def generate_synthetic_set(cfg: Config, out: str | Path, per_class: int,
                           class_names: list[str] | None = None, template: str | None = None,
                           style_token: str | Path | None = None, guidance: float | None = None,
                           steps: int | None = None, seed: int = 0, batch_size: int | None = None,
                           overwrite: bool = False, negative_prompt: str | None = None, pipe=None,
                           progress_bar: bool = True, token: str | None = None) -> Path:
    """Generate `per_class` images per class into `out`, resuming whatever is already there;
    split between processes when launched on several (see the module docstring).

    Options left as None come from `cfg.generation`; a style token (a `learned_embeds.safetensors`
    from `bridge invert`, any token file diffusers loads (see pipeline.py), or a token string the
    tokenizer knows) implies template 'dsi'; `token`: the word prompts use for a token file, in
    place of its own (needed by kohya/A1111 emb_params files, which name none). A folder
    holding a run with other options is refused unless `overwrite=True`. A larger `per_class`
    extends a set with the same seeds. `pipe`: an already loaded pipeline of cfg.generation.model.
    `class_names` None: the dataset's own (datasets.dataset_class_names).
    Reproducibility: batch sizes 1, 7 and 16 give the same uint8 pixels up to rounding; measured
    on CPU (2 and 20 steps): at most 1 of 255, on 0.002-0.004% of the values.
    One writer per set (files.output_lock): a folder another process is writing is refused,
    naming its PID, before it is read; a new folder is made (and locked) only after the checks,
    so that a refused run leaves nothing, not even an empty folder inside your dataset.
    """
    out = Path(out)
    with output_lock(out) if out.is_dir() else contextlib.nullcontext():
        return _generate(cfg, out, per_class, class_names, template, style_token, guidance,
                         steps, seed, batch_size, overwrite, negative_prompt, pipe, progress_bar,
                         token)


def _generate(cfg: Config, out: Path, per_class, class_names, template, style_token, guidance,
              steps, seed, batch_size, overwrite, negative_prompt, pipe, progress_bar,
              token) -> Path:
    g, existed = cfg.generation, out.is_dir()
    batch_size = g.batch_size if batch_size is None else batch_size
    check_value("per_class", per_class, PER_CLASS)
    check_value("batch_size", batch_size, "generation.batch_size")
    check_generation_memory(cfg, batch_size)  # before anything loads or is allocated
    options, style = generation_options(cfg, class_names, template, style_token, guidance,
                                        steps, seed, negative_prompt, token)
    warn_unknown_classes(cfg, options["prompt_names"])
    # your own dataset folder is never written into, nor (with overwrite) deleted
    reads = Path(cfg.data_root) if cfg.dataset == "imagefolder" and cfg.data_root else None
    check_folder(out, options, overwrite, reads)  # before anything loads or changes
    have = sum(1 for _ in out.glob("*/*.png")) if out.is_dir() and not overwrite else 0
    to_draw = len(options["class_names"]) * per_class - have
    check_free_space(out, to_draw * png_bytes(g.resolution),
                     f"{per_class} images per class at {g.resolution} px")
    with output_lock(out):  # re-entrant when the folder existed; else it is made now
        if not existed:  # another writer may have made and filled it since: look again, locked
            check_folder(out, options, overwrite, reads)
        return _draw_set(cfg, out, per_class, batch_size, options, style, overwrite, pipe,
                         progress_bar)


def _draw_set(cfg: Config, out: Path, per_class: int, batch_size: int, options: dict, style,
              overwrite: bool, pipe, progress_bar: bool) -> Path:
    """Load the pipeline and draw what the checked folder still lacks (generate_synthetic_set)."""
    state = process_state(cfg.device)
    main = state is None or state.is_main_process
    pipe = pipe if pipe is not None else load_pipeline(cfg, state and state.device)
    share_cpu(pipe.device)  # threads for the cores free now (files.share_cpu)
    if style is not None:
        check_style_token(pipe, style)  # before the folder changes
        check_token_fits(pipe.tokenizer, style, [make_prompt("dsi", name, 0, style.name)
                                                 for name in options["prompt_names"]])
    names = options["class_names"]
    # label-ordered folders; a rerun into a set written with slug folders keeps them
    slugs = class_folders_of(names) if overwrite else set_class_folders(out, names)
    if state is not None:
        state.wait_for_everyone()  # all have read the folder before rank 0 changes it
    run = {"config": cfg.to_dict(), "options": options, "versions": package_versions(),
           "request": {"per_class": per_class, "batch_size": batch_size, "dtype": str(pipe.dtype),
                       "device": str(pipe.device), "compiled": cfg.generation.compile,
                       "model_revision": hub_revision(cfg.generation.model),
                       "processes": state.num_processes if state is not None else 1}}
    done = prepare_folder(out, run, overwrite, slugs, per_class) if main else None
    if state is not None:
        # accelerate is imported only when launched on several processes (it is then loaded)
        from accelerate.utils import broadcast_object_list
        done = broadcast_object_list([done])[0]
    if style is not None:
        apply_style_token(pipe, style)
    work = [(c, i) for c in range(len(names)) for i in range(per_class) if (c, i) not in done]
    # Rank-stride shares differ by at most one image; each image's seed makes the split invisible.
    mine = work if state is None else work[state.process_index::state.num_processes]
    manifest = manifest_part(out, None if state is None else state.process_index)
    t0 = time.perf_counter()
    done.update(_draw_all(pipe, out, mine, batch_size, options, slugs, manifest,
                          progress_bar and main))
    if state is not None:
        state.wait_for_everyone()
        if not main:
            return out
        done.update(manifest_rows(slugs, manifest_parts(out)))
    write_manifest(out, done)
    for part in manifest_parts(out):  # merged into the set's manifest just now
        part.unlink()
    seconds = time.perf_counter() - t0
    run["result"] = {"images": len(done), "generated": len(work), "seconds": round(seconds, 3),
                     "images_per_s": round(len(work) / seconds, 3) if work else None}
    write_record(out, run)
    return out


def cached_synthetic_set(cfg: Config, per_class: int, template: str | None = None,
                         style_token: str | Path | None = None, guidance: float | None = None,
                         seed: int = 0, pipe=None, root: str | Path | None = None,
                         token: str | None = None) -> Path:
    """A synthetic set under `cache/synthetic/` (config.cache_root), generated once and shared
    by the notebooks, so each notebook can run on its own without regenerating what another
    already made.
    `token`: the word prompts use for a token file (as in generate_synthetic_set)."""
    template = template or ("dsi" if style_token else cfg.generation.template)
    guidance = guidance if guidance is not None else cfg.generation.guidance
    tag = (f"-{sha256_file(style_token)[:8]}" if style_token and Path(style_token).is_file()
           else f"-{style_token}" if style_token else "")
    if token is not None:  # another word in the prompts is another set
        tag += f"-w{hashlib.sha256(token.encode()).hexdigest()[:6]}"
    model = model_fingerprint(cfg.generation.model) or "hub"
    name = (f"{cfg.profile}-{cfg.dataset}-{model[:8]}-{template}{tag}-g{guidance:g}-n{per_class}"
            f"-s{seed}")
    root = Path(root) if root else cache_root() / "synthetic"
    return generate_synthetic_set(cfg, root / name, per_class, template=template,
                                  style_token=style_token, guidance=guidance, seed=seed, pipe=pipe,
                                  token=token)


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
    with pipeline_autocast(o["precision"]):
        images = pipe(prompt=prompts, negative_prompt=[neg] * len(batch) if neg else None,
                      num_inference_steps=o["num_inference_steps"],
                      guidance_scale=o["guidance_scale"], height=res, width=res, output_type="pil",
                      generator=[torch.Generator(device).manual_seed(s) for s in seeds]).images
    meta = {"negative_prompt": neg, "guidance_scale": o["guidance_scale"],
            "num_inference_steps": o["num_inference_steps"],
            "scheduler": type(pipe.scheduler).__name__, "model": o["model"],
            "style_token": o["style_token"], "width": res, "height": res}
    rows = {}
    with appending_rows(manifest_path) as append:
        for (c, i), s, prompt, image in zip(batch, seeds, prompts, images):
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            file_name = f"{slugs[c]}/{i:05d}.png"
            atomic_write_bytes(out / file_name, buf.getvalue())
            rows[(c, i)] = {"file_name": file_name, "label": c, "class_name": o["class_names"][c],
                            "prompt": prompt, "seed": s, **meta}
            append(rows[(c, i)])
    return rows


def generation_options(cfg: Config, class_names, template, style_token, guidance, steps, seed,
                       negative_prompt, token=None) -> tuple[dict, StyleToken | None]:
    """The validated generation options (what a set's record holds and a resume must match)
    and the style token as read (pipeline.read_style_token), or None."""
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
    style = read_style_token(style_token, token)
    if template == "dsi" and style is None:
        raise ValueError("template 'dsi' needs a style token; pass style_token=FILE "
                         "(--style-token)")
    if template != "dsi" and style is not None:
        raise ValueError(f"style_token is only used by template 'dsi', not {template!r}")
    return {"model": g.model, "model_fingerprint": model_fingerprint(g.model),
            "class_names": names, "seed": seed, "template": template,
            "style_token": style and {"name": style.name, "sha256": style.sha256,
                                      **_trained_on(style)},
            "guidance_scale": float(guidance), "num_inference_steps": steps,
            "resolution": g.resolution, "scheduler": g.scheduler,
            "precision": pipeline_precision(cfg, resolve_device(cfg.device)),
            "negative_prompt": g.negative_prompt if negative_prompt is None else negative_prompt,
            "templates": templates, "prompt_names": clean_class_names(names, cfg.dataset)}, style


def _trained_on(style) -> dict:
    """How many real images per class a learned token saw (its file's metadata), if recorded."""
    n = (style.metadata or {}).get("real_per_class")
    return {"real_per_class": int(n)} if n is not None and str(n).isdigit() else {}


def png_bytes(resolution: int) -> int:
    """About what one generated RGB PNG takes on disk: half its raw size (measured: the mini
    generator's 32 px images take 1.3-2.0 KB against 3.1 KB raw), with 4 KB of file-system block."""
    return resolution * resolution * 3 // 2 + 4096


def warn_unknown_classes(cfg: Config, prompt_names: list[str]) -> list[str]:
    """One warning when the shipped mini generator is asked for classes it was never shown
    (it knows garments and digits): it draws its own glyphs for them. Returns those names."""
    if Path(cfg.generation.model).resolve() != MINI_GENERATOR.resolve():
        return []  # Stable Diffusion knows (nearly) every word; nothing to say
    unknown = unknown_objects(prompt_names)
    if unknown:
        warnings.warn(f"the mini generator was never shown {', '.join(map(repr, unknown))} (it "
                      f"knows garments and digits only) and will draw its own glyphs for them; "
                      f"use --profile workshop (Stable Diffusion) for your own classes",
                      stacklevel=3)
    return unknown


def _class_names(cfg: Config, class_names: list[str] | None) -> list[str]:
    if class_names is None:  # the dataset's own, read from its annotations or folders
        class_names = list(MINI_CLASSES) if cfg.dataset == MINI_DATASET \
            else dataset_class_names(cfg)
    names = validate_class_names(list(class_names))
    class_folders_of(names)  # two classes in one folder: refused, naming both
    return names
