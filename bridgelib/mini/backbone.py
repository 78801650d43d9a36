"""Build the mini world's two glyph classifiers with the course's own training loop.

- The *backbone* stands in for an ImageNet-pretrained model: trained on letters and symbols
  (never digits) from the generator's fonts, scored on the held-out fonts.
- The *judge* is an independent digit recogniser trained on the held-out fonts only (fonts the
  generator never saw); it scores whether generated images show the prompted digit.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from bridgelib.config import StageConfig, get_config
from bridgelib.data import ImageSet
from bridgelib.files import sha256_file, write_json
from bridgelib.mini import glyphs
from bridgelib.models import MANIFEST_FILE, WEIGHTS_FILE, create_classifier, load_shipped_weights
from bridgelib.transfer import Stage, evaluate, train_stage

JUDGE_DIR = "mini-judge"


# The judge must read digits in any look the generator may draw, printed or scan-like, so it
# also sees the digits' own 8x8 scan imitated on its fonts ("scan8"), and more styled glyphs.
JUDGE_STYLES = (*glyphs.GLYPH_STYLES, "scan8", "scan8", "scan8")


def glyph_set(chars: tuple[str, ...], fonts: tuple[str, ...], n: int, seed: int,
              style_prob: float = 0.5, styles: tuple[str, ...] = glyphs.GLYPH_STYLES) -> ImageSet:
    imgs, labels, _ = glyphs.render_set(chars, fonts, n, seed, style_prob, styles)
    x = torch.from_numpy(imgs)[:, None].expand(-1, 3, -1, -1).contiguous()
    return ImageSet(x, torch.as_tensor(labels), list(chars))


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


SIZES = {"backbone": (24000, 5), "judge": (16000, 5)}   # (rendered images, epochs)


def build_classifier(kind: str, out: str | Path, seed: int = 0) -> dict:
    """Train and save the backbone (`kind="backbone"`) or the judge (`kind="judge"`)."""
    from safetensors.torch import save_file
    gen_fonts, held_fonts = glyphs.font_split()
    if kind == "backbone":
        chars, train_fonts, eval_fonts = glyphs.BACKBONE_CHARS, gen_fonts, held_fonts
    elif kind == "judge":
        chars, train_fonts, eval_fonts = tuple("0123456789"), held_fonts, gen_fonts
    else:
        raise ValueError(f"unknown classifier {kind!r}; valid: backbone, judge")
    n_train, epochs = SIZES[kind]
    t0 = time.time()
    styles = dict(style_prob=0.7, styles=JUDGE_STYLES) if kind == "judge" else {}
    model, acc = train_glyph_classifier(chars, train_fonts, eval_fonts, n_train, epochs, seed, **styles)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS_FILE)
    cfg = get_config("mini")
    manifest = {
        "kind": kind, "sha256": sha256_file(out / WEIGHTS_FILE), "architecture": cfg.backbone,
        "architecture_kwargs": cfg.backbone_kwargs, "classes": list(chars),
        "train_fonts": list(train_fonts), "held_out_fonts": list(eval_fonts),
        "train_images": n_train, "epochs": epochs, "seed": seed,
        "held_out_font_accuracy": round(acc, 4), "build_seconds": round(time.time() - t0, 1),
        "build_command": f"bridge mini build --only {kind}",
        "torch": torch.__version__,
    }
    write_json(out / MANIFEST_FILE, manifest)
    return manifest


def load_judge(folder: str | Path) -> nn.Module:
    """The digit judge, checksum-verified (see models.load_shipped_weights)."""
    state = load_shipped_weights(folder)
    model = create_classifier(get_config("mini"), 10, pretrained=False)
    model.load_state_dict(state)
    return model.eval()
