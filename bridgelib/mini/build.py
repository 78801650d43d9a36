"""`bridge mini build`: rebuild the shipped mini world (judge, backbone, generator) reproducibly.

Order matters: the judge scores the generator, so it is built first. Each part writes a
manifest.json (sha256 of its weights, build command, seed, time, quality figures).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from bridgelib.config import DATA_DIR, get_config
from bridgelib.files import sha256_file, write_json
from bridgelib.mini import backbone as classifiers
from bridgelib.mini import generator, glyphs, vocab

PARTS = ("judge", "backbone", "generator")
GUIDANCE_GRID = (1.0, 2.0, 3.0, 5.0, 7.5)
FONT_LICENCES = {
    "DejaVu*": "Bitstream Vera Fonts licence (DejaVu changes in the public domain)",
    "STIX*": "SIL Open Font License 1.1",
    "cm*": "BaKoMa Fonts licence (Computer Modern, free to use and redistribute with notice)",
}


def build_mini_world(out: str | Path | None = None, only: list[str] | None = None, seed: int = 0,
                     continue_steps: int | None = None) -> None:
    """Build the parts in order. `continue_steps` trains the existing generator that many more
    UNet steps instead of rebuilding it (the manifest then records both phases)."""
    out = Path(out) if out else DATA_DIR
    for part in only or PARTS:
        if part in ("judge", "backbone"):
            m = classifiers.build_classifier(part, out / f"mini-{part}", seed=seed)
            print(f"{part}: held-out font accuracy {m['held_out_font_accuracy']:.3f} "
                  f"({m['build_seconds']:.0f} s)")
        elif continue_steps:
            folder = out / "mini-generator"
            before = json.loads((folder / "manifest.json").read_text())
            record = generator.build_generator(folder, seed=seed, unet_steps=continue_steps,
                                               continue_from=folder)
            write_generator_manifest(folder, merge_phases(before, record), out / classifiers.JUDGE_DIR)
        else:
            record = generator.build_generator(out / "mini-generator", seed=seed)
            write_generator_manifest(out / "mini-generator", record, out / classifiers.JUDGE_DIR)


def merge_phases(first: dict, second: dict) -> dict:
    """One build record for a generator trained in two phases (the second continues the first)."""
    phases = first.get("phases") or [{k: first[k] for k in ("seed", "build_seconds", "unet_steps")}]
    return {**second, "vae_steps": first["vae_steps"], "vae_final_loss": first["vae_final_loss"],
            "unet_steps": first["unet_steps"] + second["unet_steps"],
            "build_seconds": round(first["build_seconds"] + second["build_seconds"], 1),
            "unet_loss_curve": first["unet_loss_curve"] + second["unet_loss_curve"],
            "phases": phases + [{k: second[k] for k in ("seed", "build_seconds", "unet_steps")}]}


def write_generator_manifest(folder: Path, record: dict, judge_dir: Path) -> dict:
    """Score the generator with the judge, then write manifest.json and README.md (model card)."""
    quality = generator_quality(folder, judge_dir)
    files = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix in (".safetensors", ".json", ".txt")
             and p.name not in ("manifest.json",)}
    manifest = {"kind": "generator", "build_command": "bridge mini build --only generator",
                **record, "files_sha256": files, "quality": quality, "torch": torch.__version__}
    write_json(folder / "manifest.json", manifest)
    (folder / "README.md").write_text(model_card(manifest))
    return manifest


def generator_quality(folder: Path, judge_dir: Path, per_class: int = 100) -> dict:
    """Recognisability of the prompted digit (the judge's accuracy) at each guidance scale,
    20 steps, the paper's single template."""
    from bridgelib.data import DIGIT_CLASSES, load_digits_part, load_image_folder
    from bridgelib.generate import generate_synthetic_set
    from bridgelib.metrics import recognisability
    cfg = get_config("mini", **{"generation.model": str(folder)})
    judge = classifiers.load_judge(judge_dir)
    scores, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for g in GUIDANCE_GRID:
            t0 = time.time()
            sub = generate_synthetic_set(cfg, Path(tmp) / f"g{g}", per_class, guidance=g, seed=123,
                                         progress_bar=False)
            seconds[str(g)] = round(time.time() - t0, 1)
            s = load_image_folder(sub, 32, list(DIGIT_CLASSES))  # labels = digit values
            scores[str(g)] = round(recognisability(s.images, s.labels, judge), 4)
    real = load_digits_part("test")
    return {"recognisability_by_guidance": scores,
            "judge_on_real_test_digits": round(recognisability(real.images, real.labels, judge), 4), "images_per_guidance": per_class * 10,
            "steps": cfg.generation.steps, "default_guidance": cfg.generation.guidance,
            "seconds_by_guidance": seconds}


def model_card(m: dict) -> str:
    fonts = m["corpus"]["fonts"]
    licences = "\n".join(f"- `{pattern}`: {text}" for pattern, text in FONT_LICENCES.items())
    rec = ", ".join(f"{g}: {v:.0%}" for g, v in m["quality"]["recognisability_by_guidance"].items())
    phases = "".join(f", then `--continue-steps {p['unet_steps']}`" for p in m.get("phases", [])[1:])
    return f"""# bridgelib mini generator

A tiny Stable Diffusion pipeline (diffusers `StableDiffusionPipeline`: AutoencoderKL,
UNet2DConditionModel, CLIPTextModel, CLIPTokenizer, DPMSolverMultistepScheduler) trained on
2 CPU cores by `{m['build_command']}`{phases} ({m['build_seconds'] / 60:.0f} minutes in all).
It draws 32x32 glyphs, dark ink on white. Parameters: {m['parameters']}.

## Training corpus (its "web")
- {m['corpus']['glyphs']} glyphs (digits 0-9, letters a-z) rendered from {len(fonts)} fonts that
  ship with matplotlib, with style variation: {', '.join(glyphs.GLYPH_STYLES)}.
  Captions name the class ("the digit seven", "the letter k") and, for {int(generator.GLYPH_STYLE_PROB * 100)}% of images, the style word; half the glyphs are digits.
- {m['corpus']['real_digits']} real handwritten digits: the *generator's share* of scikit-learn's
  digits (never the training pool or the test set), {m['corpus']['real_samples']} augmented samples.
  About half of their captions carry one loose descriptor of their look:
  **{', '.join(vocab.DESCRIPTORS)}**. The plain prompt never does. DSI is not told these words.
- {int(generator.CAPTION_DROPOUT * 100)}% of captions are dropped (classifier-free guidance).
- The text encoder is trained too (lr 2e-4), the tokenizer is hand-written (vocab.json, merges.txt).

## Quality
Share of images whose prompted digit an independent judge (trained on held-out fonts) recognises,
{m['quality']['images_per_guidance']} images per guidance, {m['quality']['steps']} steps,
prompt "A good photo of the digit ...": {rec}.
The judge knows printed glyphs only: it reads {m['quality']['judge_on_real_test_digits']:.0%} of the *real* handwritten test
digits, so these figures are a lower bound on how often the digit is right.
Final training losses: VAE {m['vae_final_loss']:.4f}, UNet {m['unet_final_loss']:.4f}.

## Fonts and licences
Fonts used: {', '.join(fonts)}. Licences (as distributed with matplotlib):
{licences}
"""
