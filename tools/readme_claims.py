"""Write README's claims table and its opening "what this course measured" paragraph from the
shipped store's verdicts, so that README and notebook 06 (which renders the same
`claims.claims_markdown` and `verdicts.claim_paragraphs`) cannot disagree.

    python tools/readme_claims.py          # rewrite both between their markers in README.md
    python tools/readme_claims.py --check  # exit 1 if either is not the store's

`make results` runs it after rebuilding the store; tests/test_claims.py (the table) and
tests/test_verdicts.py (the paragraph) run --check's comparison.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

BEGIN = "<!-- claims table: written by tools/readme_claims.py from data/results/store -->"
END = "<!-- end of the claims table -->"
OPENING = ("<!-- what this course measured: written by tools/readme_claims.py from "
           "data/results/store -->", "<!-- end of what this course measured -->")
STORE_DIR = REPO_ROOT / "data" / "results" / "store"


def store_table(store_dir: Path = STORE_DIR) -> str:
    """What the store holds (one line from store.describe_store), then the claims table."""
    from bridgelib.claims import claim_verdicts, claims_markdown
    from bridgelib.store import describe_store, read_histories, read_store
    info = describe_store(store_dir)
    missing = len(info.missing_runs)
    status = (f"Store: {info.runs} runs of the {info.grid!r} grid"
              + (f", **{missing} of its runs still missing** (`make results` resumes the build; "
                 f"claims without their runs read `not measured`)" if missing else ", complete")
              + f"; generator weights {info.generator_fingerprint}.")
    table = claim_verdicts(read_store(store_dir), read_histories(store_dir))
    return f"{status}\n\n{claims_markdown(table)}"


def store_paragraph(store_dir: Path = STORE_DIR) -> str:
    """README's opening paragraph on what the course measured (verdicts.course_paragraph)."""
    from bridgelib.claims import claim_verdicts
    from bridgelib.store import read_histories, read_store
    from bridgelib.verdicts import course_paragraph
    store = read_store(store_dir)
    table = claim_verdicts(store, read_histories(store_dir))
    return course_paragraph(table, runs=len(store)) + "\n"


def readme_table(readme: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    begin, end = markers
    if begin not in readme or end not in readme:
        raise ValueError(f"README.md has no markers {begin!r} ... {end!r}")
    return readme.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def replace_between(readme: str, markers: tuple[str, str], text: str) -> str:
    readme_table(readme, markers)  # refuses a README without them
    head, rest = readme.split(markers[0], 1)
    return f"{head}{markers[0]}\n{text}{markers[1]}{rest.split(markers[1], 1)[1]}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="compare only; exit 1 if they differ")
    args = p.parse_args(argv)
    path = REPO_ROOT / "README.md"
    readme, table, opening = path.read_text(), store_table(), store_paragraph()
    if args.check:
        stale = [name for name, markers, text in (("claims table", (BEGIN, END), table),
                                                  ("opening paragraph", OPENING, opening))
                 if readme_table(readme, markers) != text]
        print(f"README's {' and '.join(stale)} differ(s) from the store's: run python "
              f"tools/readme_claims.py" if stale else "README's claims table and opening "
              f"paragraph are the store's")
        return 1 if stale else 0
    readme = replace_between(readme, (BEGIN, END), table)
    path.write_text(replace_between(readme, OPENING, opening))
    print(f"wrote the claims table ({table.count(chr(10)) - 2} rows) and the opening paragraph "
          f"into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
