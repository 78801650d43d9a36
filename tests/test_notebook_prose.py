"""No number in a notebook's prose is typed by hand where the notebook computes it (issue 18).

A notebook's "what we saw" is rendered from its results (`IPython.display.Markdown` in a code
cell), so it cannot contradict them. This test reads every course notebook's *markdown* cells,
without running anything, and flags numbers that look like measurements:

- every decimal, percentage and signed number (0.93, 71%, +4.89, −3.41) unless it is a reference
  the notebook does not compute: the paper's own numbers (data/paper_results.csv and the paper's
  sentences in bridgelib.claims.RULES), the claims' confidence level, an unsigned value the
  notebook's parameters cell sets, or a phrase of ALLOWED_PHRASES;
- every integer unless it is small (a count of seeds, stages, cores), an enumeration, a notebook
  or section number, a model name (ResNet-18), a value the notebook's parameters cell sets, or a
  design number from the sources listed in `design_integers` (the dataset, the profiles, the
  shipped store's commands, the paper). "247 of 250 images" fails: 247 is a measurement.

Headings, code (fenced and inline), link targets, URLs and LaTeX are not prose and are skipped.
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import json
import re
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Phrases whose numbers are references, not results of the notebook; each says why.
ALLOWED_PHRASES = {
    "One test image is 0.01 points": "1/10,000: Fashion-MNIST's official test set, a dataset fact",
    "(0.5: indistinguishable)": "chance level of a classifier between two equal sets, by definition",
    "t(0.975, n − 1)": "the t quantile of a 95% interval, the formula claims.paired_interval uses",
    "a seeded 20% per class": "datasets.load_dataset's default test_fraction (checked below)",
    "arXiv 2403.19866": "the paper's arXiv id",
}
# "about 1.5 minutes in `mini`": runtimes are measured by the course runner (README's course map),
# not by the notebook itself, and are estimates for the reader's machine.
RUNTIME = re.compile(r"\b(?:about|under|~)\s*\d+(?:\.\d+)?\s*(?:minutes?|min|hours?|h|seconds?|s)\b")
SMALL = 10  # integers up to this are counts (seeds, stages, cores, shots), not measurements

SKIP = [re.compile(p, re.S | re.M | re.I) for p in (
    r"```.*?```",                      # fenced code
    r"`[^`\n]*`",                      # inline code
    r"\$[^$\n]+\$",                    # LaTeX
    r"\]\([^)]*\)",                    # link targets
    r"https?://\S+",                   # URLs
    r"\b(?:notebooks?|sections?|table|figure)\s+\d+(?:\s*[–-]\s*\d+)?",  # references
    r"\bet al\.,? \d{4}",              # a citation's year
    r"^\s*\d+[.)]\s",                  # an enumeration
    r"[A-Za-z]+[-/]\d+",               # names: ResNet-18, Food-101, ViT-B/16
)]
NUMBER = re.compile(r"(?<![\w.,/])([+±−-]?)(\d+(?:,\d{3})*(?:\.\d+)?)(%|k\b)?")


def prose(text: str) -> str:
    """A markdown cell's text without headings, code, links, LaTeX and allowed phrases."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for phrase in ALLOWED_PHRASES:
        text = text.replace(phrase, " ")
    text = RUNTIME.sub(" ", text)
    for pattern in SKIP:
        text = pattern.sub(" ", text)
    return text


def numbers(text: str):
    """(token, value, is_measurement) of each number in `text` (already `prose`)."""
    for m in NUMBER.finditer(text):
        sign, digits, suffix = m.groups()
        value = float(digits.replace(",", "")) * (1000 if suffix == "k" else 1)
        if sign in ("-", "−"):
            value = -value
        measurement = bool(sign) or "." in digits or suffix == "%"
        yield m.group(0), value, measurement


def _values_in(text: str) -> set[float]:
    return {v for _, v, _ in numbers(text)}


@lru_cache(maxsize=None)
def paper_numbers() -> frozenset:
    """The paper's reported numbers: data/paper_results.csv and the paper's sentences of the
    claims (the notebooks quote them; they are facts about the paper, never computed here)."""
    from bridgelib.claims import LEVEL, RULES
    with open(REPO / "data" / "paper_results.csv", newline="", encoding="utf-8") as f:
        values = {float(row["value"]) for row in csv.DictReader(f)}
    for rule in RULES:
        values |= _values_in(f"{rule.paper} {rule.paper_diff}")
    values.add(100 * LEVEL)  # the 95% of every interval: claims.LEVEL
    return frozenset(values)


@lru_cache(maxsize=None)
def design_integers() -> frozenset:
    """Integers the course is built from, not measured by a notebook: the mini dataset's sizes,
    every profile's settings, the shipped store's `bridge sweep` commands, the claims' constants
    and the paper's numbers."""
    from bridgelib import claims
    from bridgelib.config import get_config
    from bridgelib.mini import fashion
    values = {10, 32, 60000, 70000, 10000,  # Fashion-MNIST: classes, px shown, train, all, test
              fashion.POOL_PER_CLASS, 10 * fashion.POOL_PER_CLASS}
    for profile in ("mini", "workshop", "paper"):
        values |= _values_in(json.dumps(_flat(get_config(profile))))
    from bridgelib.store import describe_store
    commands = describe_store(REPO / "data" / "results" / "store").commands
    values |= _values_in(" ".join(c["command"] for c in commands))
    values |= {claims.DEFAULT_PER_CLASS, claims.FIXED_BUDGET, claims.EARLY_EPOCHS,
               *claims.SYN_PER_REAL}
    return frozenset(abs(v) for v in values | paper_numbers() if float(v).is_integer())


def _flat(cfg) -> dict:
    return {f.name: (_flat(v) if dataclasses.is_dataclass(v := getattr(cfg, f.name)) else v)
            for f in dataclasses.fields(cfg)}


def parameters(nb: dict) -> set[float]:
    """The numbers the notebook's parameters cell sets (a rerun with others re-renders)."""
    values: set[float] = set()
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            for node in ast.walk(ast.parse(_source(cell))):
                if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                        and not isinstance(node.value, bool):
                    values.add(float(node.value))
    return values


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def typed_numbers(nb: dict) -> list[str]:
    """'cell N: TOKEN in "...context..."' for every number of the markdown cells that is not a
    reference (see the module docstring)."""
    params = parameters(nb)
    allowed_ints = design_integers() | params
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = prose(_source(cell))
        for m, (token, value, measurement) in zip(NUMBER.finditer(text), numbers(text)):
            if measurement:  # a signed number must be the paper's with its sign
                signed = token[0] in "+-−±"
                ok = value in paper_numbers() if signed else \
                    value in {abs(v) for v in paper_numbers()} or \
                    (not token.endswith("%") and value in params)  # "guidance 7.5", set above
            else:
                ok = value <= SMALL or value in allowed_ints
            if not ok:
                context = " ".join(text[max(0, m.start() - 40):m.end() + 30].split())
                found.append(f"cell {i}: {token} in \"...{context}...\"")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_hand_typed_results_in_markdown(path):
    found = typed_numbers(json.loads(path.read_text(encoding="utf-8")))
    assert not found, (f"{path.name}: numbers typed into markdown; render them from the results "
                       "(a code cell with IPython.display.Markdown) or, for a reference the "
                       "notebook does not compute, add it to ALLOWED_PHRASES with why:\n  "
                       + "\n  ".join(found))


def _fake(*markdown: str, params: str = "PROFILE = \"mini\"\nPER_CLASS = 37") -> dict:
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": params}]
    return {"cells": cells + [{"cell_type": "markdown", "metadata": {}, "source": m}
                              for m in markdown]}


def test_the_scanner_flags_a_hand_typed_result():
    found = typed_numbers(_fake("## What we saw\n\n- bridged++ reads 0.93 of the test images."))
    assert len(found) == 1 and "0.93" in found[0]
    for typed in ("71% of images", "a gain of +4.89 points", "LEEP −3.42 here", "247 of 250 images",
                  "the drop: 228 to 247"):
        assert typed_numbers(_fake(typed)), typed


def test_the_scanner_passes_references_and_parameters():
    assert typed_numbers(_fake(
        "# 01 · Title with 0.93 in a heading\n"
        "The paper reports −4.30 and −3.41 (LEEP) and 79.7% on Aircraft; a 95% interval.\n"
        "Stable Diffusion v1.5, ResNet-18, notebooks 03–06, `acc = 0.93` in code, [a](x/0.93).\n"
        "1. 37 images per class (a parameter), 10,000 test images, the paper's 20k steps.\n"
        "One test image is 0.01 points. **Runtime**: about 1.5 minutes.")) == []
    assert typed_numbers(_fake("guidance 7.5 and 5.0", params="G = [5.0, 7.5]")) == []
    assert typed_numbers(_fake("37 images per class", params="PROFILE = \"mini\"")), \
        "a parameter's value is allowed only where the notebook sets it"
    assert typed_numbers(_fake("the paper's +4.30")), "a sign flipped from the paper's is not its"


def test_allowed_phrases_still_say_what_the_package_does():
    import inspect

    from bridgelib.datasets import load_dataset
    assert inspect.signature(load_dataset).parameters["test_fraction"].default == 0.2
