"""The claims table said in words: one short paragraph per claim, its settings grouped.

`claims.claim_verdicts` gives one row per claim *and setting*; a reader needs one line per
claim: in which settings the paper's direction held, in which it went the other way, which are
unresolved (and how wide their intervals are, so "unresolved" is not read as "no effect"), and
why the mini world may differ from the paper's there. Every direction word ("higher", "lower",
"held", "the other way") is chosen from the row's numbers and verdict, never typed, so a rebuilt
store rewrites the paragraphs.

Reads the columns every claims table has (claim, setting, diff, ci_low, ci_high, n, verdict,
unit, paper_diff) and, when a table has them, `min_detectable` (the smallest effect the row
could resolve at 80% power) and `holm_verdict` (the verdict after Holm's correction).

Only notebooks 03-06, tools/readme_claims.py and report use this module: it imports claims,
nothing in the package imports it.
"""
from __future__ import annotations

import math

import pandas as pd

from bridgelib import claims

# A claim's status over its settings, in the order a paragraph lists them.
HELD, OPPOSITE, UNRESOLVED, UNMEASURED = "reproduced", "opposite", "within noise", "not measured"
STATUS_WORDS = {HELD: "held", OPPOSITE: "went the other way", UNRESOLVED: "unresolved",
                UNMEASURED: "not measured"}

# Why the mini world may differ from the paper's, per claim (matched on the claim's first words).
# Facts of the two worlds' design (docs/design.md, docs/paper.md), never a measured number.
WORLD = ("the mini world is Fashion-MNIST at 32 px with a backbone pretrained on glyphs and a "
         "tiny generator, not ten photo datasets with an ImageNet ResNet and Stable Diffusion")
VOLUME_WHY = ("the paper does not say whether its synthetic stage trained longer on a bigger set "
              "(its epochs are unknown), so its rising curve may be more training as much as more "
              "images; here the two protocols are scored apart. Its 500 to 3,000 images per class "
              "come from Stable Diffusion; a tiny generator may repeat itself sooner")
WHY = {
    "Mixed transfer": "the paper mixes 1,000 Stable Diffusion photos per class into full photo "
                      "datasets; here the synthetic images are outline drawings and negatives of "
                      "garments, a larger gap per image",
    "Bridged++ on DSI": "each arm's token is learned only on the real images that arm uses (40 "
                        "at 4 shots), from a generator that holds the target's look behind a few "
                        "loose words; Stable Diffusion has seen photos like each paper dataset",
    "Bridged": "the paper's backbone already knows photos (ImageNet: worth far more there than "
               "the glyph backbone's pretraining is worth here, data/mini-world.json) and its "
               "generator draws photos; here a glyph backbone meets a tiny generator's drawings, "
               "whose synthetic-only accuracy is far below vanilla's",
    "Plain bridged": "the paper finds plain bridged below vanilla on 4 of 10 datasets, so a "
                     "dataset where it is not is no contradiction",
    "Head reset": "a head reset throws away what the synthetic stage's head learned; with very "
                  "few real images per class there is little to fit a new head on",
    "Mixup": "Mixup regularises the synthetic stage; whether that helps depends on how far the "
             "synthetic images are from the real ones, and here they are far",
    "More synthetic": VOLUME_WHY,
    "Volume": VOLUME_WHY,
    "Robust to the guidance": "an equivalence: held only if the whole interval lies within the "
                              "margin; the paper does not say which scales it tried",
    "DSI": "Stable Diffusion has seen photos like each target dataset; the mini generator holds "
           "the target's look behind a few loose words, which one token may or may not find",
    "Bridged models converge": "read on a monitor subset of the test images over the first real "
                               "epochs; the paper gives no numbers for it",
    "LEEP": "LEEP scores a head against the real labels; after the synthetic stage the head is "
            "fitted to the generator's drawings, and here it is compared with a letters head, "
            "not ImageNet's (and estimated out of sample, which the paper does not say it did)",
}


def claim_paragraphs(table: pd.DataFrame, *, heading: str | None = None) -> str:
    """Markdown: a count line, then one paragraph per claim of `table` (a `claims.claim_verdicts`
    table, or a slice of it), in the table's order."""
    _check(table)
    blocks = [heading] if heading else []
    blocks.append(count_line(table))
    blocks += [claim_paragraph(table[table["claim"] == claim]) for claim in _claims(table)]
    return "\n\n".join(blocks) + "\n"


def count_line(table: pd.DataFrame) -> str:
    """"Of N claims (M settings): ..." with each claim counted once, by its status over its
    settings (held everywhere, the other way everywhere, mixed, unresolved everywhere)."""
    status = {claim: claim_status(table[table["claim"] == claim]) for claim in _claims(table)}
    order = ["held in every setting", "held in some settings", "went the other way",
             "unresolved in every setting", "not measured"]
    counts = {s: sum(v == s for v in status.values()) for s in order}
    parts = [f"**{n}** {s}" for s, n in counts.items() if n]
    return (f"Of {len(status)} claim{'s' if len(status) != 1 else ''} ({len(table)} settings, "
            f"each claim counted once): " + ", ".join(parts) + ".")


def claim_status(rows: pd.DataFrame) -> str:
    """One claim's settings summed up in a phrase of `count_line`."""
    v = set(rows["verdict"]) - {UNMEASURED}
    if not v:
        return "not measured"
    if v == {HELD}:
        return "held in every setting"
    if HELD in v:
        return "held in some settings"
    if OPPOSITE in v:
        return "went the other way"  # somewhere, and held nowhere
    return "unresolved in every setting"


def claim_paragraph(rows: pd.DataFrame) -> str:
    """One claim: what held, what went the other way, what is unresolved (with the intervals'
    widths), and why the mini world may differ. `rows`: the claim's rows of a claims table."""
    _check(rows)
    claim = rows["claim"].iloc[0]
    paper = rows["paper_diff"].iloc[0] if "paper_diff" in rows else ""
    head = f"**{claim}** (paper: {paper})" if paper else f"**{claim}**"
    counts = rows["verdict"].value_counts()
    tally = ", ".join(f"{STATUS_WORDS[v]} in {counts[v]}" for v in (HELD, OPPOSITE, UNRESOLVED,
                                                                    UNMEASURED) if counts.get(v))
    sentences = [f"{head}: {tally} of {len(rows)} setting{'s' if len(rows) != 1 else ''}."]
    for verdict, label in ((HELD, "Held"), (OPPOSITE, "Went the other way")):
        picked = rows[rows["verdict"] == verdict]
        if len(picked):
            sentences.append(f"{label}: {_measured_group(picked)}.")
    unresolved = rows[rows["verdict"] == UNRESOLVED]
    if len(unresolved):
        sentences.append(_unresolved(unresolved))
    unmeasured = rows[rows["verdict"] == UNMEASURED]
    if len(unmeasured):
        sentences.append("Not measured (fewer than 2 pairs in the store): "
                         + "; ".join(unmeasured["setting"]) + ".")
    if "holm_verdict" in rows:
        changed = rows[rows["holm_verdict"].notna() & (rows["holm_verdict"] != rows["verdict"])]
        if len(changed):
            sentences.append("After Holm's correction over every claim: " + "; ".join(
                f"{r.setting} reads *{r.holm_verdict}*" for r in changed.itertuples()) + ".")
    if set(rows["verdict"]) != {HELD}:
        sentences.append(f"*Why the paper's world may differ*: {why(claim)}.")
    return " ".join(sentences)


def why(claim: str) -> str:
    """The reason the mini world may differ for `claim` (WHY's longest matching prefix)."""
    matches = [key for key in WHY if claim.lower().startswith(key.lower())]
    return WHY[max(matches, key=len)] if matches else WORLD


def course_paragraph(table: pd.DataFrame, runs: int | None = None) -> str:
    """README's "what this course measured": each claim named once under its status."""
    _check(table)
    status = {claim: claim_status(table[table["claim"] == claim]) for claim in _claims(table)}
    groups: dict[str, list[str]] = {}
    for claim, s in status.items():
        groups.setdefault(s, []).append(claim)
    said = {"held in every setting": "The paper's direction held in every setting tested for",
            "held in some settings": "It held in some settings and not in others for",
            "went the other way": "It went the other way, and held in no setting, for",
            "unresolved in every setting": "The store cannot tell either way (every interval "
                                           "contains 0) for",
            "not measured": "Not measured yet:"}
    source = f"the shipped results store ({runs} runs)" if runs else "the shipped results store"
    lines = [f"**What this course measured** in the mini world, from {source}, each claim as "
             f"paired differences with 95% intervals over its settings ({len(table)} in all):"]
    for s, text in said.items():
        if s in groups:
            lines.append(f"{text} " + _and([f"*{c}*" for c in groups[s]]) + ".")
    decided = table[table["verdict"].isin([HELD, OPPOSITE])]
    if "holm_verdict" in table and len(decided):
        kept = int((decided["holm_verdict"] == decided["verdict"]).sum())
        scored = int((table["verdict"] != UNMEASURED).sum())
        lines.append(f"Corrected for testing {scored} settings at once (Holm), {kept} of the "
                     f"{len(decided)} that held or went the other way keep their verdict.")
    widths = _widths(table[table["verdict"] == UNRESOLVED])
    if widths:
        lines.append(f"The unresolved intervals are {widths} wide: an effect of either sign "
                     f"inside one of them could be there unseen.")
    lines.append(f"These are findings about a small world ({WORLD}); notebook 06 shows each "
                 f"row and README's claims table below lists them.")
    return " ".join(lines)


# ---------------------------------------------------------------- the prediction sheet
# What an attendee may predict for a claim before a notebook, and the claim_status it matches.
PREDICTIONS = {"held": "held in every setting", "mixed": "held in some settings",
               "other way": "went the other way", "unresolved": "unresolved in every setting"}


def score_predictions(table: pd.DataFrame, predictions: dict[str, str] | None = None,
                      default: str = "held") -> pd.DataFrame:
    """The prediction sheet scored against the claims table: one row per claim with what was
    predicted (`predictions`: {claim: one of PREDICTIONS}; a claim not named gets `default`,
    "held": what a reader who takes the paper at its word predicts), what was measured, and
    whether they match. A claim the store has not measured is not scored (right = NA)."""
    _check(table)
    predictions = dict(predictions or {})
    unknown = sorted(set(predictions) - set(table["claim"]))
    if unknown:
        raise ValueError(f"no claim named {unknown[0]!r} in the table; valid: "
                         f"{_claims(table)}")
    for claim, said in [*predictions.items(), ("(default)", default)]:
        if said not in PREDICTIONS:
            raise ValueError(f"prediction {said!r} for {claim!r} is invalid; valid: "
                             f"{list(PREDICTIONS)}")
    word = {status: said for said, status in PREDICTIONS.items()}
    rows = []
    for claim in _claims(table):
        measured = claim_status(table[table["claim"] == claim])
        said = predictions.get(claim, default)
        rows.append({"claim": claim, "predicted": said,
                     "measured": word.get(measured, measured),
                     "right": pd.NA if measured == "not measured" else said == word[measured]})
    return pd.DataFrame(rows, columns=["claim", "predicted", "measured", "right"])


# ---------------------------------------------------------------- helpers
def _claims(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["claim"]))


def _check(table: pd.DataFrame) -> None:
    need = {"claim", "setting", "diff", "ci_low", "ci_high", "n", "verdict", "unit"}
    missing = sorted(need - set(table.columns))
    if missing:
        raise ValueError(f"a claims table needs the columns {sorted(need)}; this one lacks "
                         f"{missing} (make it with claims.claim_verdicts)")
    if table.empty:
        raise ValueError("the claims table is empty: no claim to put in words")
    odd = sorted(set(table["verdict"]) - set(claims.VERDICTS))
    if odd:
        raise ValueError(f"unknown verdict(s) {odd}; valid: {list(claims.VERDICTS)}")


def _unit(row) -> str:
    return "points" if row.unit == "points" else str(row.unit)


def _measured(row) -> str:
    """"4 shots, ...: 3.41 points lower [−6.38, −0.44], n = 5" (the method minus its comparison);
    an equivalence's row says it lies within its margin instead."""
    interval = f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}], n = {row.n}"
    if _direction(row) == 0:
        inside = row.verdict == HELD
        return (f"{row.setting}: {row.diff:+.2f} {_unit(row)} {interval}, "
                f"{'wholly inside' if inside else 'wholly outside'} the ±{_margin():g}-point "
                f"margin")
    word = "higher" if row.diff > 0 else "lower"
    return f"{row.setting}: {abs(row.diff):.2f} {_unit(row)} {word} {interval}"


def _measured_group(rows: pd.DataFrame) -> str:
    """`_measured` per row; three or more rows with one sign and unit become one range."""
    signs = set((rows["diff"] > 0).tolist())
    if len(rows) < 3 or len(signs) > 1 or rows["unit"].nunique() > 1 or \
            any(_direction(r) == 0 for r in rows.itertuples()):
        return "; ".join(_measured(r) for r in rows.itertuples())
    size = rows["diff"].abs()
    word = "higher" if signs == {True} else "lower"
    unit = _unit(next(rows.itertuples()))
    return (f"{size.min():.2f} to {size.max():.2f} {unit} {word} in all {len(rows)} "
            f"({'; '.join(rows['setting'])}), every interval on that side of 0 "
            f"(from {rows['ci_low'].min():+.2f} to {rows['ci_high'].max():+.2f})")


def _unresolved(rows: pd.DataFrame) -> str:
    """The unresolved settings with the direction their dots lean and their intervals' width."""
    parts = []
    for r in rows.itertuples():
        lean = "leans higher" if r.diff > 0 else "leans lower" if r.diff < 0 else "sits at 0"
        text = f"{r.setting} ({lean}, {r.diff:+.2f} {_unit(r)}, interval {r.ci_high - r.ci_low:.2f} wide"
        detectable = getattr(r, "min_detectable", math.nan)
        if isinstance(detectable, (int, float)) and math.isfinite(detectable):
            text += f"; it could resolve an effect of about {detectable:.2f} {_unit(r)} or more"
        parts.append(text + ")")
    return "Unresolved, the interval contains 0: " + "; ".join(parts) + "."


def _widths(rows: pd.DataFrame) -> str:
    """"0.90 to 7.80 points" over `rows`' intervals (points rows only); "" without any."""
    rows = rows[rows["unit"] == "points"]
    w = (rows["ci_high"] - rows["ci_low"]).dropna()
    if w.empty:
        return ""
    return (f"{w.min():.2f} points" if len(w) == 1 or w.min() == w.max()
            else f"{w.min():.2f} to {w.max():.2f} points")


def _direction(row) -> int:
    """The paper's sign of the row's difference: its rule's, else read off `paper_diff`."""
    for rule in getattr(claims, "RULES", []):
        if rule.claim == row.claim and rule.setting == row.setting:
            return rule.direction
    text = str(getattr(row, "paper_diff", "")).strip()
    if text.startswith("≈"):
        return 0
    return -1 if text[:1] in "−-<" else 1


def _margin() -> float:
    """The equivalence margin of a direction-0 claim, in points."""
    return getattr(claims, "EQUIVALENCE_POINTS", 2.0)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
