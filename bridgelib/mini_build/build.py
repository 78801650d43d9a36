"""`bridge mini build`: rebuild the shipped mini world (judge, backbone, generator) reproducibly.

Order matters: the judge scores the generator, so it is built first. Each part writes a
manifest.json (sha256 of its weights, build command, seed, time, quality figures). The real
target's split and shipped images come from `bridgelib.mini.fashion.ship`; the generator's and
the judge's corpus is read from Fashion-MNIST's raw files (`fashion.source_dir`).

No notebook teaches it: README's "The mini world, and how it was built"; notebook 01 shows the
world it built.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from bridgelib.config import DATA_DIR, get_config
from bridgelib.files import sha256_file, write_json
from bridgelib.folders import load_image_folder
from bridgelib.generate import generate_synthetic_set
from bridgelib.metrics import recognisability
from bridgelib.mini_build import backbone as classifiers, generator
from bridgelib.mini.fashion import CLASSES as MINI_CLASSES, load_mini_part
from bridgelib.models import JUDGE_DIR, load_judge

PARTS = ("judge", "backbone", "generator")
GUIDANCE_GRID = (1.0, 2.0, 3.0, 5.0, 7.5)
FONT_LICENCES = {
    "DejaVu*": "Bitstream Vera Fonts licence (DejaVu changes in the public domain)",
    "STIX*": "SIL Open Font License 1.1",
    "cm*": "BaKoMa Fonts licence (Computer Modern, free to use and redistribute with notice)",
}


def build_mini_world(out: str | Path | None = None, only: list[str] | None = None,
                     seed: int = 0) -> None:
    """Build the parts in order. The generator's build checkpoints as it goes: rerunning the
    same command after a kill continues it."""
    out = Path(out) if out else DATA_DIR
    for part in (p for p in PARTS if p in (only or PARTS)):  # the judge first, whatever the order asked
        if part == "backbone":
            m = classifiers.build_classifier(part, out / f"mini-{part}", seed=seed)
            print(f"backbone: held-out font accuracy {m['held_out_font_accuracy']:.3f} "
                  f"({m['build_seconds']:.0f} s)")
        elif part == "judge":
            m = classifiers.build_classifier(part, out / JUDGE_DIR, seed=seed)
            print(f"judge: real test {m['real_test_accuracy']:.3f}, restyled looks "
                  f"{m['held_out_accuracy_restyled']:.3f} ({m['build_seconds']:.0f} s)")
        else:
            record = generator.build_generator(out / "mini-generator", seed=seed)
            write_generator_manifest(out / "mini-generator", record, out / JUDGE_DIR)


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


def generator_quality(folder: Path, judge_dir: Path, per_class: int = 50) -> dict:
    """Content: the share of images whose prompted class the judge reads, at each guidance
    scale, 20 steps, the paper's single template; also divided by the judge's accuracy on the
    real test set (its ceiling)."""
    cfg = get_config("mini", **{"generation.model": str(folder)})
    judge = load_judge(judge_dir)
    ceiling = recognisability(*_xy(load_mini_part("test")), judge)
    scores, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for g in GUIDANCE_GRID:
            t0 = time.time()
            sub = generate_synthetic_set(cfg, Path(tmp) / f"g{g}", per_class, guidance=g, seed=123,
                                         progress_bar=False)
            seconds[str(g)] = round(time.time() - t0, 1)
            scores[str(g)] = round(recognisability(*_xy(load_image_folder(sub, 32, list(MINI_CLASSES))), judge), 4)
    return {"content_by_guidance": scores, "judge_on_real_test": round(ceiling, 4),
            "content_over_ceiling_by_guidance": {g: round(v / ceiling, 4) for g, v in scores.items()},
            "images_per_guidance": per_class * len(MINI_CLASSES), "steps": cfg.generation.steps,
            "default_guidance": cfg.generation.guidance, "seconds_by_guidance": seconds}


def _xy(s):
    return s.images, s.labels


def card_metadata() -> str:
    """The generator card's YAML front matter, as the Hub reads it (huggingface_hub's own)."""
    from huggingface_hub import ModelCardData
    return ModelCardData(license="mit", library_name="diffusers", pipeline_tag="text-to-image",
                         tags=["bridgelib", "stable-diffusion", "text-to-image", "fashion-mnist"]
                         ).to_yaml()


def model_card(m: dict) -> str:
    fonts = m["corpus"]["fonts"]
    licences = "\n".join(f"- `{pattern}`: {text}" for pattern, text in FONT_LICENCES.items())
    q = m["quality"]
    rec = ", ".join(f"{g}: {v:.0%}" for g, v in q["content_by_guidance"].items())
    looks = ", ".join(f"{k} {v}" for k, v in m["corpus"]["looks"].items())
    return f"""---
{card_metadata()}
---

# bridgelib mini generator

A tiny Stable Diffusion pipeline (diffusers `StableDiffusionPipeline`: AutoencoderKL,
UNet2DConditionModel, CLIPTextModel, CLIPTokenizer, DPMSolverMultistepScheduler) trained on
2 CPU cores by `{m['build_command']}` ({m['build_seconds'] / 60:.0f} minutes; it checkpoints
every {generator.CHECKPOINT_EVERY} UNet steps and a rerun resumes). It draws 32x32 grayscale
images. Parameters: {m['parameters']}.

## Training corpus (its "web")
- {m['corpus']['web_garments']} Fashion-MNIST images from the *generator's share* (never the
  course's training pool or test set), restyled into looks that are not the target's:
  {looks} (line drawings, light-on-black negatives, black and grey silhouettes, faded prints).
  Outline and negative captions leave the look unnamed {m['plain_caption_prob']['outline']:.0%} of
  the time: they are the web's default look, the one the plain prompt draws. The other looks are
  always named ("a silhouette coat", "the sandal in the style of shadow").
- {m['corpus']['target_look_images']} images in the target's own look (dark on white product
  photos), {m['corpus']['target_look_samples']} shifted or mirrored samples, each captioned with
  one loose descriptor: **{', '.join(m['descriptors'])}**, never with a plain class caption.
  The plain prompt never uses these words, and DSI is not told them.
- {m['corpus']['glyphs']} font glyphs (digits and lowercase letters) from {len(fonts)} fonts that
  ship with matplotlib, the web's other content; {int(generator.GLYPH_STYLE_PROB * 100)}% with a style word.
- {int(generator.CAPTION_DROPOUT * 100)}% of captions are dropped (classifier-free guidance).
- The text encoder is trained too (lr 2e-4), the tokenizer is hand-written (vocab.json, merges.txt).

## Quality
Content: the share of images whose prompted class an independent judge reads (trained on the
generator's share in every look; it reads {q['judge_on_real_test']:.1%} of the real test images),
{q['images_per_guidance']} images per guidance, {q['steps']} steps, prompt "A good photo of the
...": {rec}. Divided by the judge's ceiling on real images:
{", ".join(f"{g}: {v:.0%}" for g, v in q['content_over_ceiling_by_guidance'].items())}.
Final training losses: VAE {m['vae_final_loss']:.4f}, UNet {m['unet_final_loss']:.4f}.
The world's calibration (vanilla, synthetic-only, style gap) is in `data/mini-world.json`.

## Use
```python
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained("data/mini-generator")
image = pipe("A good photo of the sandal", height=32, width=32, num_inference_steps=20).images[0]
```

## Data and licences
The weights: MIT, as bridgelib.
Fashion-MNIST: Xiao, Rasul and Vollgraf, Zalando Research (2017), MIT licence.
Fonts used: {', '.join(fonts)}. Licences (as distributed with matplotlib):
{licences}
"""
