"""Write docs/answers.md, the answer key to every exercise of the seven notebooks, with every
number that answers one rendered from the shipped results store (so the key follows the store
when `make results` rebuilds it).

    python tools/answers.py          # rewrite docs/answers.md
    python tools/answers.py --check  # exit 1 if docs/answers.md is not what the store gives

tests/test_answers.py checks that the file is current and that every exercise has an answer.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402

from bridgelib import claims  # noqa: E402
from bridgelib.claims import claim_verdicts, paired_differences, setting_runs  # noqa: E402
from bridgelib.store import hold_fixed, read_histories, read_store  # noqa: E402

STORE_DIR = REPO_ROOT / "data" / "results" / "store"
OUT = REPO_ROOT / "docs" / "answers.md"


def shipped(store: pd.DataFrame) -> pd.DataFrame:
    """The recipes family's slice (notebook 03's): the second setting with every column but
    shots held at one value (200/class, single template, generation seed 0, the recipes' own
    budgets, pretrained, not compute-matched)."""
    return hold_fixed(setting_runs(store, "second"), ("shots",))[0]


def diff(runs, a: dict, b: dict, col: str = "test_acc") -> str:
    """a − b, paired by seed, in points with its 95% interval (claims.difference_text)."""
    return claims.paired_text(paired_differences(runs, a, b, ("seed",), col, col))


def numbers() -> dict[str, str]:
    store = read_store(STORE_DIR)
    histories = read_histories(STORE_DIR)
    table = claim_verdicts(store, histories)
    runs = shipped(store)
    n = {}
    one = runs[(runs.recipe == "vanilla") & (runs.shots.astype(str) == "1")].test_acc
    n["vanilla_1shot"] = (f"{one.mean():.1%} on average over {len(one)} seeds, from {one.min():.1%} "
                          f"to {one.max():.1%} (standard deviation {100 * one.std():.1f} points)")
    scratch = store[(store.recipe == "vanilla") & store.scratch & (store.fixed_steps == 0)]
    pretrained = store[(store.recipe == "vanilla") & ~store.scratch & ~store.match_compute
                       & (store.fixed_steps == 0)]
    gaps = []
    for k in ("1", "4", "16", "full"):
        s = scratch[scratch.shots.astype(str) == k].set_index("seed").test_acc
        p = pretrained[pretrained.shots.astype(str) == k].set_index("seed").test_acc
        d = (p - s).dropna()
        if len(d):
            label = "the full pool" if k == "full" else f"{k} shot{'s' if k != '1' else ''}"
            gaps.append(f"{label} {claims.paired_text(d)}")
    n["pretrained_minus_scratch"] = "; ".join(gaps) or "not in this store"

    def row(claim: str, setting_start: str) -> pd.Series:
        hit = table[(table.claim == claim) & table.setting.str.startswith(setting_start)]
        return hit.iloc[0]

    def row_text(r) -> str:
        return (f"{r['diff']:+.2f} points [{r.ci_low:+.2f}, {r.ci_high:+.2f}], n = {r.n}, "
                f"*{r.verdict}*")
    mixup = "Mixup helps on top of the head reset (ablation)"
    n["mixup_4"] = row_text(row(mixup, "4 shots"))
    n["mixup_full"] = row_text(row(mixup, "full pool"))
    n["bpp_1shot"] = diff(runs, {"recipe": "bridged++", "shots": 1}, {"recipe": "vanilla", "shots": 1})
    n["bpp_4shot"] = diff(runs, {"recipe": "bridged++", "shots": 4}, {"recipe": "vanilla", "shots": 4})
    n["bpp_16shot"] = diff(runs, {"recipe": "bridged++", "shots": 16},
                           {"recipe": "vanilla", "shots": 16})
    guidance = row("Robust to the guidance scale", "4 shots")
    inside_1 = claims.verdict(guidance["diff"] / 100, guidance.ci_low / 100,
                              guidance.ci_high / 100, guidance.n, 0, margin=0.01)
    n["guidance_row"] = row_text(guidance)
    n["guidance_margin_1"] = inside_1
    width = guidance.ci_high - guidance.ci_low
    n["guidance_width"] = f"{width:.2f}"
    early = store.assign(early_acc=store["run"].map(claims.early_accuracy(histories)))
    early = shipped(early)
    n["early_4"] = diff(early, {"recipe": "bridged++", "shots": 4}, {"recipe": "vanilla", "shots": 4},
                        "early_acc")
    n["early_16"] = diff(early, {"recipe": "bridged++", "shots": 16},
                         {"recipe": "vanilla", "shots": 16}, "early_acc")
    n["runs"] = str(len(store))
    return n


TEMPLATE = """# Answers to the exercises

The answer key for the instructor: every exercise of the seven notebooks, in order. Where an
answer is a number, it is the shipped results store's ({runs} runs in `data/results/store`),
written here by `python tools/answers.py` (rerun it after `make results`; a test fails when
this page and the store disagree). Differences are *a − b* in points of test accuracy, paired by
training seed, with a 95% interval; "within noise" means the interval contains 0. Where an
exercise asks for a run the store does not hold, the answer says what to look for and why,
not a number nobody measured.

## 01 · The setting

1. **Change `SEED`: how much does the 1-shot accuracy move?** A lot. Vanilla at 1 shot in the
   store: {vanilla_1shot}. One image per class makes the draw of *which* image the largest
   source of variance, which is why every claim in this course is a paired comparison over
   several seeds, and why a single run never decides anything.
2. **Halve the real epochs: which suffers more, pretrained or scratch?** Not in the store (it
   trains at the default epochs only). The expectation to test: scratch suffers more, since it
   must learn its features from the real images while the pretrained body needs mostly a new
   head. At the default
   budget the store's pretrained − scratch gap is: {pretrained_minus_scratch}. Compare your
   halved-epoch numbers with these.
3. **`bridge train --recipe vanilla --shots 10 --seed 0`**: its `metrics.json` has the same
   `test_acc` as the notebook's run with the same shots and seed (both call `train_run`; seeded
   runs are byte-identical), and `--set train.real.lr=0.1` changes the learning rate alone
   (`config.json` of the run records it).

## 02 · Generating synthetic images

1. **`template="multi"`**: not in the store. Several phrasings per class vary the prompts'
   words, not the words that select a look, so look for the same web looks (outlines,
   negatives, silhouettes) in the grid; compare the two sets' recognisability, remembering that
   one set of each gives no interval. The look is the gap DSI addresses in 04.
2. **Kill `bridge generate` half-way and rerun**: the rerun resumes where it stopped and ends
   with exactly 200 images per class, 2,000 files and 2,000 manifest rows, no duplicate: every
   image has its own seed (`manifest.image_seed`) and is written atomically, so an interrupted
   image is simply drawn again.
3. **A style word from the model card**: "silhouette", "outline", "negative" give the web's
   looks; "scanned" (like catalog, studio, product, retail) gives dark-on-white product photos
   close to Fashion-MNIST's look, the look the corpus kept behind those loose words. This is
   what DSI has to find without being told the word (04's nearest words).

## 03 · Mixed vs bridged transfer

1. **`train.mixed_real_fraction=0.5`**: not in the store. Giving real images half of every batch
   means each real image is seen many more times than in the plain union (where real images are
   a small share of the batches); expect mixed to move towards vanilla on the full pool. Compare
   with notebook 06's mixing map, where the damage is largest at 15-24 synthetic per real image.
2. **Mixup alpha 0**: bridged++ with `mixup_alpha=0` *is* bridged-reinit (the recipes differ only
   by Mixup), so the two agree up to the seed's effect on the batches. What Mixup adds in the
   store: 4 shots {mixup_4}; full pool {mixup_full}.
3. **bridged++ vs vanilla at 1 shot**: in the store, {bpp_1shot}. One seed of your own can land
   anywhere in (and beyond) that interval; five seeds are what the interval is made of.

## 04 · Dataset Style Inversion

1. **Each descriptor as `HAND_WORD`**: compare the prompt-loss table row by row (not in the
   store: the notebook computes it). The words the corpus used for the target's look (scanned,
   catalog, studio, product, retail) are the candidates; S* was optimised for exactly this loss
   on the training images, so a hand-picked word that beats it on the test images would be
   worth a look. The images (section 5) and the style gap (section 6) are the check that
   matters.
2. **No norm cap (`max_norm_factor=None`)**: not in the store. Look at the token's norm
   against the vocabulary's and at recognisability: an uncapped token can grow until the style
   takes over the content (the judge then reads fewer images as their prompted class); the cap
   is there to keep S* a word among words.
3. **Kill `bridge invert` and `--resume`**: it continues from the last checkpoint (every
   `invert.checkpoint_every` steps) and ends with the same token as an uninterrupted run of the
   same steps and seed.

## 05 · How much synthetic data?

1. **Add `"mixed"` and `"bridged"` to the live sweep**: only the new cells train, two recipes
   at the two live volumes, four runs; the vanilla and bridged++ runs already on disk are
   reused (the assert cell shows nothing retrained), and no set is drawn again.
2. **`SHOTS = 16`**: the live runs train at 16 shots; the shipped volume study holds 4 shots
   only, so the figure is drawn at 4 shots without the live crosses (the notebook says so).
   Whether the synthetic stage adds less with more real images, in the store (200/class):
   bridged++ − vanilla at 4 shots {bpp_4shot}, at 16 shots {bpp_16shot}.
3. **`bridge sweep ... --guidance 1 7.5` then `bridge report`**: `accuracy_vs_guidance.png`
   shows two points per recipe; with one seed their difference is noise-sized. The store's
   guidance claim (5 seeds × 2 generation seeds) is {guidance_row}.

## 06 · Reproducing the paper

1. **Point `STORE` at your own sweep**: every cell redraws from it; claims whose runs your sweep
   does not hold read `not measured` and the figures a store cannot draw are listed with why.
2. **Equivalence margin 1 point**: the guidance row's interval is {guidance_width} points wide;
   with a margin of ±1 the verdict is *{guidance_margin_1}*. "Robust" needs an interval narrower
   than twice the margin that lies around 0, so a smaller margin needs more pairs: the interval's
   width shrinks with the square root of their number.
3. **Convergence at 16 shots**: bridged++ − vanilla in mean test accuracy over the first 3 real
   epochs, at 4 shots {early_4}, at 16 shots {early_16}. Whether the head start is smaller with
   more real images is read off these two intervals, not off the curves' shapes.

## 07 · Bring your own dataset

1. **Images of another size and a `.txt` file**: the check lists the odd images (tiny, or longer
   than 4:1) by name and the `.txt` under files that are not images; neither stops a run, and
   the loader resizes every readable image.
2. **`PER_CLASS = 100`, `INVERT_STEPS = 400`**: one seed still decides nothing: compare the
   difference with the two-standard-error line the notebook prints. In mini, the notebook's own
   export sits near the ceiling at full shots (it says so when it does); rerun at `SHOTS = 4`.
3. **One folder of classes without `test/`**: `bridge train --dataset` draws a seeded 20% per
   class as the test set and saves the split under `splits/` in the folder; with 8 images per
   class that is 2 test images per class (20 in all) and 6 training images per class (at least
   one image of a class stays in train).
"""


def render() -> str:
    return TEMPLATE.format(**numbers())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare only; exit 1 if they differ")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        same = OUT.is_file() and OUT.read_text() == text
        print("docs/answers.md is the store's" if same else
              "docs/answers.md differs from the store's: run python tools/answers.py")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
