"""Prompts from class names: cleaning, disambiguation and the three templates.

The paper prompts Stable Diffusion with "A good photo of the {class}" (`single`). `multi` varies
the wording per image (one of a few templates, chosen from the image's own seed so a set is
reproducible), and `dsi` puts the learned dataset-style token S* in the prompt (Dataset Style
Inversion): "A {class} photo in the style of {token}".

Taught in notebooks 02, 04.
"""
from __future__ import annotations

import re

TEMPLATES = ("single", "multi", "dsi")
SINGLE_TEMPLATE = "A good photo of the {class}"
DSI_TEMPLATE = "A {class} photo in the style of {token}"
MULTI_TEMPLATES = (
    "A good photo of the {class}",
    "A photo of a {class}",
    "A close-up photo of the {class}",
    "A bright photo of the {class}",
    "A cropped photo of a {class}",
    "A picture of the {class}",
    "An image of a {class}",
    "A photo of the small {class}",
)

# Class names that are ambiguous for a text-to-image model ("boxer" draws an athlete), per dataset.
# Keys are cleaned names, compared case-insensitively. A few examples; extend for your dataset.
DISAMBIGUATION: dict[str, dict[str, str]] = {
    "pets": {"abyssinian": "Abyssinian cat", "bengal": "Bengal cat", "birman": "Birman cat",
             "boxer": "boxer dog", "sphynx": "Sphynx cat", "persian": "Persian cat"},
    "flowers": {"bishop of llandaff": "bishop of llandaff dahlia", "bird of paradise":
                "bird of paradise flower", "sword lily": "sword lily flower"},
    "dtd": {"banded": "banded texture", "bumpy": "bumpy texture", "lined": "lined texture"},
    "aircraft": {"a300b4": "Airbus A300B4 aircraft", "747-400": "Boeing 747-400 aircraft"},
    "food101": {"club sandwich": "club sandwich food", "beignets": "beignets pastry"},
}


def _keeps_case(word: str) -> bool:
    """Acronyms ('BMW', 'SUV'), inner capitals ('McLaren') and model codes ('A320') keep case."""
    return any(c.isdigit() for c in word) or any(c.isupper() for c in word[1:])


def clean_class_name(name: str) -> str:
    """A dataset's class label as words a text encoder knows.

    Underscores and hyphens become spaces and runs of whitespace collapse ('apple_pie' ->
    'apple pie'). Case: a name written in Title Case throughout ('American Bulldog', 'Boeing
    717') is taken as a proper name and keeps its capitals; otherwise words are lowercased
    except acronyms, inner capitals and words with digits (see `_keeps_case`).
    """
    words = re.sub(r"[_\-\s]+", " ", str(name)).strip().split(" ")
    alpha = [w for w in words if w[:1].isalpha()]
    if alpha and all(w[0].isupper() for w in alpha):
        return " ".join(words)
    return " ".join(w if _keeps_case(w) else w.lower() for w in words)


def clean_class_names(names: list[str], dataset: str | None = None) -> list[str]:
    """Clean every name, then apply the dataset's DISAMBIGUATION table (if it has one)."""
    table = {k.lower(): v for k, v in DISAMBIGUATION.get(dataset or "", {}).items()}
    cleaned = [clean_class_name(n) for n in names]
    return [table.get(c.lower(), c) for c in cleaned]


def validate_class_names(names: list[str]) -> list[str]:
    """Refuse names that cannot become one folder each: empty, duplicated, '.' or '..', or
    holding a '/' (a folder named after one would leave its parent)."""
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class name {name!r} is invalid; expected a non-empty string")
        if "/" in name or "\\" in name:
            raise ValueError(f"class name {name!r} is invalid; it must not contain '/' or '\\'")
        if name.strip() in (".", ".."):
            raise ValueError(f"class name {name!r} is invalid; it must not be '.' or '..'")
        if name in seen:
            raise ValueError(f"class name {name!r} appears twice; class names must be unique")
        seen.add(name)
    return list(names)


def make_prompt(template: str, class_name: str, seed: int, token: str | None = None) -> str:
    """The prompt of one image. `seed` picks the `multi` wording; `token` is S* for `dsi`."""
    if template == "single":
        return SINGLE_TEMPLATE.format_map({"class": class_name})
    if template == "multi":
        return MULTI_TEMPLATES[seed % len(MULTI_TEMPLATES)].format_map({"class": class_name})
    if template == "dsi":
        if not token:
            raise ValueError("template 'dsi' needs a style token (token=None); learn one with "
                             "`bridge invert` and pass it as --style-token FILE")
        return DSI_TEMPLATE.format_map({"class": class_name, "token": token})
    raise ValueError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")


def template_strings(template: str) -> list[str]:
    """The wording(s) a template uses, recorded in a synthetic set's record so a changed
    wording is noticed."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")
    return {"single": [SINGLE_TEMPLATE], "multi": list(MULTI_TEMPLATES),
            "dsi": [DSI_TEMPLATE]}[template]
