"""Read executed notebooks as a reader would and list what should not be on a page: a warning
box from a library (a Python warning, or a log line on stderr such as matplotlib's "findfont: ..."
that a font cache built mid-install printed), a table whose shot settings run in text order (1, 16, 2, ...), an internal
field name (`fixed_steps=0`, `match_compute=False`) in printed text, a bare matplotlib repr.

    python tools/check_pages.py [outputs/notebooks]     # exit 1 and one line per problem

`make course` writes the executed notebooks; tests/test_check_pages.py runs this on them when
they exist, and on made-up pages always.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# A library's warning as Python prints it: "path/to/module.py:12: SomeWarning: text".
LIBRARY_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ", re.M)
# The package's own warnings are allowed on a page (README: they still show).
OWN = re.compile(r"bridgelib[/\\]")
TEXT_ORDER = re.compile(r"\b1\s+16\s+2\s+4\s+8\b|\b1, 16, 2, 4\b|'1', '16', '2'")
FIELD = re.compile(r"\b(fixed_steps|match_compute|scratch|gen_seed)=")
BARE_REPR = re.compile(r"^\[?<matplotlib\.[\w.]+ (object )?at 0x[0-9a-f]+>", re.M)


def page_problems(nb: dict, name: str = "") -> list[str]:
    """'name cell N: what' for each problem in one executed notebook."""
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            texts = []
            if out.get("output_type") == "stream":
                texts.append(("stream", "".join(out.get("text", ""))))
            for key in ("text/plain", "text/markdown", "text/html"):
                if key in out.get("data", {}):
                    texts.append((key, "".join(out["data"][key])))
            where = f"{name} cell {i}"
            stderr = "".join(out.get("text", "")) if out.get("name") == "stderr" else ""
            if stderr.strip() and not OWN.search(stderr) and not LIBRARY_WARNING.search(stderr):
                # a library's log line (matplotlib's "findfont: ...", a logger's WARNING): a red box
                found.append(f"{where}: a library's message on stderr: {stderr.splitlines()[0][:120]}")
            for kind, text in texts:
                for m in LIBRARY_WARNING.finditer(text):
                    line = text[m.start():].splitlines()[0]
                    if not OWN.search(line):
                        found.append(f"{where}: a library's warning: {line[:120]}")
                if TEXT_ORDER.search(text):
                    found.append(f"{where}: shots in text order ({TEXT_ORDER.search(text).group(0)})")
                if FIELD.search(text):
                    found.append(f"{where}: an internal field name ({FIELD.search(text).group(0)})")
                if kind != "text/html" and BARE_REPR.search(text):
                    found.append(f"{where}: a bare matplotlib repr ({BARE_REPR.search(text).group(0)})")
    return found


def main(argv=None) -> int:
    folder = Path((argv or sys.argv[1:] or [REPO_ROOT / "outputs" / "notebooks"])[0])
    pages = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not pages:
        print(f"error: no executed notebooks in {folder}: run make course first", file=sys.stderr)
        return 1
    found = [p for page in pages for p in page_problems(json.loads(page.read_text()), page.name)]
    print("\n".join(found) if found else f"{len(pages)} pages, no problem found")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
