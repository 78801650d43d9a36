"""Write README's claims table from the shipped store's verdicts, so that README and notebook 06
(which renders the same `claims.claims_markdown`) cannot disagree.

    python tools/readme_claims.py          # rewrite the table between the markers in README.md
    python tools/readme_claims.py --check  # exit 1 if README's table is not the store's

`make results` runs it after rebuilding the store; tests/test_claims.py runs --check's comparison.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

BEGIN = "<!-- claims table: written by tools/readme_claims.py from data/results/store -->"
END = "<!-- end of the claims table -->"


def store_table(store_dir: Path = REPO_ROOT / "data" / "results" / "store") -> str:
    """What the store holds (one line from its store.json), then the claims table."""
    import json

    import pandas as pd
    from bridgelib.claims import claim_verdicts, claims_markdown
    from bridgelib.store import HISTORY_FILE, read_store
    histories = pd.read_csv(store_dir / HISTORY_FILE)
    meta = json.loads((store_dir / "store.json").read_text())
    missing = len(meta.get("missing_runs", []))
    status = (f"Store: {meta['runs']} runs of the {meta['grid']!r} grid"
              + (f", **{missing} of its runs still missing** (`make results` resumes the build; "
                 f"claims without their runs read `not measured`)" if missing else ", complete")
              + f"; generator weights {meta['generator_fingerprint']}.")
    return f"{status}\n\n{claims_markdown(claim_verdicts(read_store(store_dir), histories))}"


def readme_table(readme: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md has no claims-table markers ({BEGIN!r} ... {END!r})")
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="compare only; exit 1 if they differ")
    args = p.parse_args(argv)
    path = REPO_ROOT / "README.md"
    readme, table = path.read_text(), store_table()
    if args.check:
        same = readme_table(readme) == table
        print("README's claims table is the store's" if same else
              "README's claims table differs from the store's: run python tools/readme_claims.py")
        return 0 if same else 1
    head, rest = readme.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{table}{END}{rest.split(END, 1)[1]}")
    print(f"wrote the claims table ({table.count(chr(10)) - 2} rows) into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
