"""Build the mini world's two classifiers with the course's own training loop.

- The *backbone* stands in for an ImageNet-pretrained model: trained on letters and symbols
  (never digits, never garments) from the generator's fonts, scored on the held-out fonts.
- The *judge* is an independent garment recogniser that reads every look alike: trained on the
  generator's share of Fashion-MNIST (never the pool or the test set) in the target's look and
  in each of the web's looks. It scores whether a generated image shows the prompted class
  (content), separately from how it looks (the style gap).

Taught in notebook 01.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bridgelib.config import StageConfig, get_config
from bridgelib.data import ImageSet
from bridgelib.files import sha256_file, write_json
from bridgelib.mini import fashion, glyphs
from bridgelib.models import (MANIFEST_FILE, WEIGHTS_FILE, create_classifier, evaluate,
                              load_shipped_weights, timm_config)
from bridgelib.transfer import Stage, train_stage

# Heavy third-party modules (safetensors) are imported inside the functions that use them, so that
# `import bridgelib` and `bridge --help` do not load them.



JUDGE_LOOKS = ("target", *fashion.LOOKS)
JUDGE_PER_LOOK, JUDGE_EPOCHS, JUDGE_HELD_OUT = 8000, 5, 1000   # images per look (train, held out)


def glyph_set(chars: tuple[str, ...], fonts: tuple[str, ...], n: int, seed: int,
              style_prob: float = 0.5, styles: tuple[str, ...] = glyphs.GLYPH_STYLES) -> ImageSet:
    imgs, labels, _ = glyphs.render_set(chars, fonts, n, seed, style_prob, styles)
    return ImageSet.from_gray(imgs, labels, chars)


def train_glyph_classifier(chars: tuple[str, ...], train_fonts, eval_fonts, n_train: int,
                           epochs: int, seed: int, style_prob: float = 0.5,
                           styles: tuple[str, ...] = glyphs.GLYPH_STYLES) -> tuple[nn.Module, float]:
    """A randomly initialised mini backbone trained on rendered glyphs; returns (model, held-out acc)."""
    cfg = get_config("mini", device="cpu")
    torch.manual_seed(seed)
    model = create_classifier(cfg, len(chars), pretrained=False)
    train_set = glyph_set(chars, train_fonts, n_train, seed, style_prob, styles)
    stage = Stage("glyphs", train_set, StageConfig(epochs=epochs, lr=0.1, batch_size=128))
    train_stage(model, stage, None, cfg, seed=seed)
    held_out = glyph_set(chars, eval_fonts, max(2000, n_train // 10), seed + 1)
    return model, evaluate(model, held_out, cfg)["accuracy"]


SIZES = {"backbone": (24000, 5)}   # (rendered images, epochs)


def judge_sets(seed: int = 0) -> tuple[ImageSet, dict[str, ImageSet]]:
    """The judge's training set (JUDGE_PER_LOOK images of the generator's share in each look)
    and, per look, JUDGE_HELD_OUT other share images to score it on."""
    raw, labels = fashion.read_raw("train")
    share = np.random.default_rng(seed).permutation(fashion.split_indices()["generator"])
    n, h = JUDGE_PER_LOOK, JUDGE_HELD_OUT
    train, held = [], {}
    for i, look in enumerate(JUDGE_LOOKS):
        part = share[i * (n + h): (i + 1) * (n + h)]
        sets = [ImageSet.from_gray(fashion.restyle(raw[idx], look), labels[idx], fashion.CLASSES)
                for idx in (part[:n], part[n:])]
        train.append(sets[0])
        held[look] = sets[1]
    return ImageSet(torch.cat([t.images for t in train]), torch.cat([t.labels for t in train]),
                    list(fashion.CLASSES)), held


def build_classifier(kind: str, out: str | Path, seed: int = 0) -> dict:
    """Train and save the backbone (`kind="backbone"`) or the judge (`kind="judge"`)."""
    from safetensors.torch import save_file
    if kind not in ("backbone", "judge"):
        raise ValueError(f"unknown classifier {kind!r}; valid: backbone, judge")
    t0 = time.time()
    cfg = get_config("mini", device="cpu")
    gen_fonts, held_fonts = glyphs.font_split()
    if kind == "backbone":
        chars = glyphs.BACKBONE_CHARS
        n_train, epochs = SIZES[kind]
        model, acc = train_glyph_classifier(chars, gen_fonts, held_fonts, n_train, epochs, seed)
        quality = {"train_fonts": list(gen_fonts), "held_out_fonts": list(held_fonts),
                   "held_out_font_accuracy": round(acc, 4)}
    else:
        chars, n_train, epochs = fashion.CLASSES, JUDGE_PER_LOOK * len(JUDGE_LOOKS), JUDGE_EPOCHS
        train_set, held = judge_sets(seed)
        torch.manual_seed(seed)
        model = create_classifier(cfg, len(chars), pretrained=False)
        train_stage(model, Stage("judge", train_set, StageConfig(epochs=epochs, lr=0.1, batch_size=128)),
                    None, cfg, seed=seed)
        by_look = {look: round(evaluate(model, s, cfg)["accuracy"], 4) for look, s in held.items()}
        restyled = [by_look[look] for look in fashion.LOOKS]
        quality = {"held_out_accuracy_by_look": by_look,
                   "held_out_accuracy_restyled": round(float(np.mean(restyled)), 4),
                   "real_test_accuracy": round(evaluate(model, fashion.load_mini_part("test"), cfg)["accuracy"], 4),
                   "train_source": "generator's share of Fashion-MNIST (never the pool or the test set)"}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS_FILE)
    manifest = {
        "kind": kind, "sha256": sha256_file(out / WEIGHTS_FILE), "architecture": cfg.backbone,
        "architecture_kwargs": cfg.backbone_kwargs, "classes": list(chars),
        "train_images": n_train, "epochs": epochs, "seed": seed, **quality,
        "build_seconds": round(time.time() - t0, 1),
        "build_command": f"bridge mini build --only {kind}",
        "torch": torch.__version__,
    }
    write_json(out / MANIFEST_FILE, manifest)
    write_hub_files(out, model, manifest)
    return manifest


def write_hub_files(out: Path, model: nn.Module | None, manifest: dict) -> None:
    """Beside the weights: timm's config.json (so `timm.create_model("local-dir:data/mini-judge",
    pretrained=True)` loads the classifier) and README.md, a model card the Hub reads.
    model None: the shipped weights, checksum-verified, in the architecture they were built for."""
    cfg = get_config("mini", device="cpu")
    if model is None:
        model = create_classifier(cfg, len(manifest["classes"]), pretrained=False)
        model.load_state_dict(load_shipped_weights(out), strict=True)
    write_json(out / "config.json", timm_config(model, cfg, manifest["classes"]))
    (out / "README.md").write_text(classifier_card(manifest))


def classifier_card(m: dict) -> str:
    """The model card of the judge or the backbone: YAML front matter (licence, library,
    task) and what it was trained on, how it was built and how well it reads held-out data."""
    from huggingface_hub import ModelCardData
    judge = m["kind"] == "judge"
    data = ModelCardData(license="mit", library_name="timm", pipeline_tag="image-classification",
                         tags=["bridgelib", "resnet10t", "fashion-mnist" if judge else "fonts"])
    arch = f"timm `{m['architecture']}` with `{m['architecture_kwargs']}`"
    if judge:
        looks = ", ".join(f"{k} {v:.1%}" for k, v in m["held_out_accuracy_by_look"].items())
        what = (f"""# bridgelib mini judge

The mini world's independent garment recogniser: it reads which of the 10 Fashion-MNIST classes
an image shows, in any look, so that a generated image's *content* (does it show the prompted
class?) is scored apart from its *style*. It is {arch}, trained from scratch on 32x32 images.

## Training data
{m['train_images']} images of the {m['train_source']}, {JUDGE_PER_LOOK} per look, in the
target's own look and in each of the generator's web looks (outline, negative, silhouette,
shadow, faded), {m['epochs']} epochs, seed {m['seed']}.

## Quality
Held-out accuracy by look: {looks}. On the real Fashion-MNIST test images:
{m['real_test_accuracy']:.1%} (the ceiling the content scores are divided by).""")
    else:
        what = (f"""# bridgelib mini backbone

The mini world's stand-in for an ImageNet-pretrained model: {arch}, trained from scratch on
{len(m['classes'])} classes of font-rendered letters (lower and upper case) and symbols (never
digits, never garments) at 32x32, so that fine-tuning it on Fashion-MNIST is a transfer from another domain.

## Training data
{m['train_images']} glyph images rendered from {len(m['train_fonts'])} fonts that ship with
matplotlib ({', '.join(m['train_fonts'])}), half of them restyled
({', '.join(glyphs.GLYPH_STYLES)}), {m['epochs']} epochs, seed {m['seed']}.

## Quality
Accuracy on {len(m['held_out_fonts'])} held-out fonts ({', '.join(m['held_out_fonts'])}):
{m['held_out_font_accuracy']:.1%}.""")
    return f"""---
{data.to_yaml()}
---

{what}

## How it was built
`{m['build_command']}` ({m['build_seconds']:.0f} s on 2 CPU cores, torch {m['torch']}), with
the course's own training loop (`bridgelib/mini_build/backbone.py`). `manifest.json` records the
build and the sha256 of `model.safetensors`, which bridgelib checks before use.

## Use
```python
import timm
model = timm.create_model("local-dir:data/mini-{m['kind']}", pretrained=True).eval()
# inputs: RGB in [0, 1] at 32x32, normalised with model.pretrained_cfg's mean and std;
# model.pretrained_cfg["label_names"] names the outputs
```

## Licence
MIT, as bridgelib. {"Fashion-MNIST: Xiao, Rasul and Vollgraf, Zalando Research (2017), MIT licence." if judge else
"The fonts' licences, as distributed with matplotlib: DejaVu (Bitstream Vera licence, DejaVu changes in the public domain), STIX (SIL Open Font License 1.1), Computer Modern (BaKoMa fonts licence)."}
"""
