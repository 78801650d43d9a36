"""The mini generator's words, captions and hand-written CLIP tokenizer files.

The tokenizer is a real CLIP BPE tokenizer whose vocab.json/merges.txt we write ourselves:
every ASCII character (so any text tokenizes) plus one merge chain per word (so each known word
is one token, which makes "which word does the style token land nearest to" answerable).

Taught in notebook 04.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from bridgelib.mini.fashion import CLASSES, LOOKS
from bridgelib.mini.glyphs import DIGIT_NAMES, GLYPH_STYLES, LETTERS

# Heavy third-party modules (transformers) are imported inside the functions that use them, so
# that `import bridgelib` and `bridge --help` do not load them.

# Loose words a web crawl might attach to product photos. Every caption of the few images in the
# target's own look carries one (never a plain class caption); the plain prompt never does, and
# DSI is not told them: it has to find the look from the real images alone.
DESCRIPTORS = ("scanned", "catalog", "studio", "product", "retail")
# The web's own looks of garments (fashion.LOOKS); each caption of a restyled image names it,
# except a share of the default looks (outline, negative), which get plain captions.
LOOK_WORDS = tuple(LOOKS)
PLAIN_TEMPLATES = ("the {c}", "a photo of the {c}", "a good photo of the {c}", "{c}",
                   "a picture of the {c}", "an image of the {c}")
# Looks, glyph styles and descriptors share every phrasing, the DSI template's included, so no
# phrasing on its own points to the target's look.
STYLE_TEMPLATES = ("a {s} {c}", "the {c}, {s}", "the {c} in the style of {s}",
                   "a {c} photo in the style of {s}", "a {s} photo of the {c}",
                   "a good photo of the {c} in {s} style")
# Words that appear in no caption: distractors for nearest-word analysis and free prompting.
EXTRA_WORDS = ("clothing", "garment", "fashion", "shoe", "wear", "photograph", "grayscale",
               "handwritten", "printed", "font", "typed", "paper", "white", "black", "dark",
               "light", "old", "new", "small", "big", "round", "square", "sharp", "soft", "number",
               "character", "symbol", "text", "written", "drawn", "painting", "art", "sketch",
               "clean", "neat", "digital", "grey", "gray", "thick", "heavy", "simple", "fancy",
               "cursive", "script", "serif", "mono", "bright", "dim", "rough", "smooth", "scan")
FUNCTION_WORDS = ("a", "an", "the", "of", "in", "on", "with", "and", "photo", "good", "picture",
                  "image", "style", "digit", "letter", "by")
MAX_LENGTH = 20


def caption_words() -> list[str]:
    garment_words = [w for name in CLASSES for w in re.findall(r"[a-z]+", name)]
    words = [*FUNCTION_WORDS, *DIGIT_NAMES, *LETTERS, *garment_words, *GLYPH_STYLES, *LOOK_WORDS,
             *DESCRIPTORS, *EXTRA_WORDS]
    return list(dict.fromkeys(words))


def known_objects() -> frozenset[str]:
    """The words the generator was shown as a caption's object: the garments' words and the
    digits' names (letters count only as a whole one-letter class name)."""
    garment_words = [w for name in CLASSES for w in re.findall(r"[a-z]+", name)]
    return frozenset([*garment_words, *DIGIT_NAMES])


def unknown_objects(class_names) -> list[str]:
    """The class names the mini generator has never been shown: none of their words is a
    garment or a digit's name (nor the name a single letter). It draws its own glyphs for them."""
    known = known_objects()
    return [name for name in class_names
            if not (name.strip().lower() in LETTERS or
                    {w for w in re.findall(r"[a-z]+", name.lower()) if len(w) > 1} & known)]


def caption(class_name: str, style: str | None, rng: np.random.Generator) -> str:
    """A web-like caption: the class, and the style word (if any) in one of several phrasings."""
    if style is None:
        return str(rng.choice(PLAIN_TEMPLATES)).format(c=class_name)
    return str(rng.choice(STYLE_TEMPLATES)).format(c=class_name, s=style)


def write_tokenizer_files(folder: str | Path, order: list[str] | None = None) -> None:
    """Write vocab.json, merges.txt and tokenizer_config.json for a CLIPTokenizer.

    Merges are ranked word by word in `order` (longest words first by default): a merge chain
    earlier in the list wins, so each known word becomes a single token.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {}
    for tok in [*alphabet, *(c + "</w>" for c in alphabet)]:
        vocab.setdefault(tok, len(vocab))
    merges: dict[tuple[str, str], None] = {}
    for word in order or sorted(caption_words(), key=len, reverse=True):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        left = parts[0]
        for right in parts[1:]:
            merges.setdefault((left, right))
            left = left + right
            vocab.setdefault(left, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))


def build_tokenizer(folder: str | Path):
    """Write the files and load them; words split into pieces move to the front until none do."""
    from transformers import CLIPTokenizer
    order = sorted(caption_words(), key=len, reverse=True)
    for _ in range(20):
        write_tokenizer_files(folder, order)
        tokenizer = CLIPTokenizer.from_pretrained(str(folder))
        split = [w for w in order if len(tokenizer.tokenize(w)) != 1]
        if not split:
            return tokenizer
        order = split + [w for w in order if w not in split]
    raise RuntimeError(f"could not make these words single tokens: {split}")


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 bytes (`bytes_to_unicode`)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]
