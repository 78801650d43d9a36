"""What a valid value is: the rule builders and caps that every config field (`config.RULES`)
and every value given outside a config (a function argument, a CLI flag) is checked against.

A rule is (is the value valid?, what is valid, said in the one-line error). Counts and sizes are
capped far above any profile's value and far below what exhausts a machine.

No notebook teaches it: docs/bad_inputs.md lists what it refuses.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

Rule = tuple[Callable[[Any], bool], str]  # (is the value valid?, what is valid, for the message)


def _isinteger(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # True is an int to Python, not here


def _isnumber(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(low: int, multiple_of: int = 1, high: int | None = None) -> Rule:
    """An integer from `low` up to `high` (included): counts are capped, so a typo such as
    1000000000 steps is refused here instead of exhausting memory later."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"
    if high is not None:
        what = f"{what} up to {high:,}"
    if multiple_of > 1:
        what = f"{what} that is a multiple of {multiple_of}"
    return (lambda v: _isinteger(v) and v >= low and (high is None or v <= high)
            and v % multiple_of == 0), what


def number(low: float, high: float = math.inf, open_low: bool = False) -> Rule:
    """A finite number from `low` (excluded if open_low) up to `high` (always excluded)."""
    def ok(v: Any) -> bool:
        return _isnumber(v) and (v > low if open_low else v >= low) and v < high
    if high < math.inf and open_low and low == 0:
        what = f"a positive number below {high:g}"
    elif high < math.inf:
        what = f"a number in {'(' if open_low else '['}{low:g}, {high:g})"
    else:
        what = "a positive number" if open_low and low == 0 else \
            f"a number {'>' if open_low else '>='} {low:g}"
    return ok, what


def choice(*names: str) -> Rule:
    return (lambda v: isinstance(v, str) and v in names), f"one of: {', '.join(names)}"


def optional(rule: Rule) -> Rule:
    return (lambda v: v is None or rule[0](v)), f"none or {rule[1]}"


def matches(pattern: str, what: str) -> Rule:
    return (lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None), what


TEXT = matches(r"(?s).*\S.*", "a non-empty string")
ANY_TEXT: Rule = (lambda v: isinstance(v, str)), "a string"
BOOL: Rule = (lambda v: isinstance(v, bool)), "true or false"
# Caps on counts and sizes: far above any profile's value, far below what exhausts a machine
# (a `--steps 1000000000` grew past 22 GB before these). Stated in each message.
MAX_STEPS = 1_000_000          # optimizer steps of a stage or an inversion (paper: ~20k)
MAX_SAMPLER_STEPS = 1000       # the diffusion models are trained on 1000 timesteps
MAX_EPOCHS = 10_000
MAX_BATCH = 4096
MAX_SIZE = 4096                # pixels, classifier input or generator resolution
MAX_PER_CLASS = 100_000        # synthetic images per class (paper: 1,000; its largest 5,000)
MAX_SEED = 2**32 - 1           # numpy's seed range; every seed is seeded into numpy too
MAX_GUIDANCE = 100.0
MAX_LR = 10.0
MAX_STAGE_LR = 1.0             # SGD fine-tuning: peers use 1e-3..0.1; lr 1.9 trained to chance
MAX_WEIGHT_DECAY = 1.0         # SGD's coupled decay: peers use 0..5e-3; 1e30 trained to NaN
# What a generated image costs in memory while it is drawn, per pixel (the mini generator,
# CPU, fp32, guidance on; docs/design.md, "Measurements behind design choices").
GEN_BYTES_PER_PIXEL = 640
