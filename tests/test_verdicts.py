"""The verdicts in words (bridgelib.verdicts): a made-up store with a known effect, no effect and
the opposite effect, through claims.claim_verdicts, gives the three wordings; every direction word
follows the numbers."""
import numpy as np
import pandas as pd
import pytest

from bridgelib import claims, verdicts
from bridgelib.claims import Rule

SEEDS = range(5)
JITTER = np.array([0.004, -0.003, 0.001, -0.004, 0.002])  # mean 0


def _store(effects: dict[str, float]) -> pd.DataFrame:
    """Vanilla at 0.70 per seed, and one recipe per claim at 0.70 + its effect (+ jitter)."""
    rows = [{"run": f"vanilla-s{s}", "recipe": "vanilla", "shots": 4, "seed": s,
             "test_acc": 0.70 + j, "n_test": 10_000} for s, j in zip(SEEDS, JITTER)]
    for recipe, effect in effects.items():
        rows += [{"run": f"{recipe}-s{s}", "recipe": recipe, "shots": 4, "seed": s,
                  "test_acc": 0.70 + effect + j + JITTER[::-1][s] / 2, "n_test": 10_000}
                 for s, j in zip(SEEDS, JITTER)]
    return pd.DataFrame(rows)


def _rule(claim: str, recipe: str) -> Rule:
    return Rule(claim, "4 shots", {"recipe": recipe, "shots": 4}, {"recipe": "vanilla", "shots": 4},
                +1, "the paper says so", "made up", "> 0")


RULES = [_rule("Known effect beats vanilla", "known"), _rule("No effect beats vanilla", "none"),
         _rule("Opposite effect beats vanilla", "opposite")]


@pytest.fixture(scope="module")
def table():
    store = _store({"known": 0.05, "none": 0.0, "opposite": -0.05})
    t = claims.claim_verdicts(store, rules=RULES)
    assert list(t["verdict"]) == ["reproduced", "within noise", "opposite"]  # the set-up holds
    return t


def test_three_effects_three_wordings(table):
    text = {r.claim: verdicts.claim_paragraph(table[table.claim == r.claim]) for r in RULES}
    known, none, opposite = text.values()
    assert "held in 1 of 1 setting" in known and "points higher" in known
    assert "Why the paper's world may differ" not in known  # nothing to explain
    assert "unresolved in 1 of 1 setting" in none and "interval contains 0" in none
    width = table.iloc[1].ci_high - table.iloc[1].ci_low
    assert f"interval {width:.2f} wide" in none
    assert "went the other way in 1 of 1 setting" in opposite and "points lower" in opposite
    assert "Why the paper's world may differ" in opposite


def test_directions_come_from_signs_not_from_the_claim(table):
    flipped = table.copy()
    flipped.loc[0, ["diff", "ci_low", "ci_high"]] = -flipped.loc[0, ["diff", "ci_high", "ci_low"]].to_numpy()
    flipped.loc[0, "verdict"] = "opposite"
    text = verdicts.claim_paragraph(flipped.iloc[[0]])
    assert "points lower" in text and "higher" not in text and "went the other way" in text


def test_the_count_line_counts_each_claim_once():
    t = pd.DataFrame({"claim": ["A", "A", "B", "C", "C"], "setting": list("vwxyz"),
                      "diff": [1.0, 2.0, 0.1, -1.0, 0.2], "ci_low": [0.5, 1.0, -1.0, -2.0, -1.0],
                      "ci_high": [1.5, 3.0, 1.2, -0.5, 1.4], "n": 5, "unit": "points",
                      "verdict": ["reproduced", "reproduced", "within noise", "opposite",
                                  "within noise"], "paper_diff": "> 0"})
    line = verdicts.count_line(t)
    assert line.startswith("Of 3 claims (5 settings")
    assert "**1** held in every setting" in line and "**1** went the other way" in line \
        and "**1** unresolved in every setting" in line
    course = verdicts.course_paragraph(t, runs=12)
    assert "12 runs" in course and "*A*" in course and "*B*" in course and "*C*" in course
    assert "2.20 to 2.40 points wide" in course  # B's and C's unresolved intervals
    assert "Holm" not in course  # a table without the column says nothing of it
    held = t.assign(holm_verdict=["reproduced", "within noise", "within noise", "opposite",
                                  "within noise"])
    assert "Corrected for testing 5 settings at once (Holm), 2 of the 3 that held or went the " \
           "other way keep their verdict." in verdicts.course_paragraph(held)


def test_new_columns_are_used_when_present(table):
    t = table.assign(min_detectable=[1.0, 3.25, 1.0],
                     holm_verdict=["within noise", "within noise", "opposite"])
    none = verdicts.claim_paragraph(t.iloc[[1]])
    assert "an effect of about 3.25 points" in none
    known = verdicts.claim_paragraph(t.iloc[[0]])
    assert "After Holm's correction" in known and "*within noise*" in known


def test_a_table_without_the_columns_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"lacks \['ci_high', 'ci_low'"):
        verdicts.claim_paragraphs(pd.DataFrame({"claim": ["A"], "setting": ["x"], "diff": [1.0],
                                                "n": [3], "verdict": ["reproduced"],
                                                "unit": ["points"]}))


def test_the_shipped_store_renders(table):
    from bridgelib.config import REPO_ROOT
    from bridgelib.store import read_store
    store_dir = REPO_ROOT / "data" / "results" / "store"
    shipped = claims.claim_verdicts(read_store(store_dir), pd.read_csv(store_dir / "histories.csv"))
    text = verdicts.claim_paragraphs(shipped)
    assert all(f"**{c}**" in text for c in shipped.claim.unique())


def test_readme_opening_paragraph_is_the_shipped_stores():
    import importlib.util

    from bridgelib.config import REPO_ROOT
    spec = importlib.util.spec_from_file_location("readme_claims", REPO_ROOT / "tools" / "readme_claims.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    readme = (REPO_ROOT / "README.md").read_text()
    assert tool.readme_table(readme, tool.OPENING) == tool.store_paragraph(), \
        "README's opening paragraph is stale: run python tools/readme_claims.py"
    with pytest.raises(ValueError, match="has no markers"):
        tool.replace_between("no markers here", tool.OPENING, "text")


def test_the_prediction_sheet_scores_each_claim_once(table):
    sheet = verdicts.score_predictions(table, {"No effect beats vanilla": "unresolved"})
    assert list(sheet["measured"]) == ["held", "unresolved", "other way"]
    assert list(sheet["right"]) == [True, True, False]  # the default "held" misses the opposite
    with pytest.raises(ValueError, match="prediction 'yes' for 'Known effect beats vanilla' is invalid"):
        verdicts.score_predictions(table, {"Known effect beats vanilla": "yes"})
    with pytest.raises(ValueError, match="no claim named 'Nope'"):
        verdicts.score_predictions(table, {"Nope": "held"})
