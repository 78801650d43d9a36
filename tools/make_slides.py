"""Build the opening talk and the debrief as slides from the executed notebooks.

    python tools/make_slides.py [--executed outputs/notebooks] [--out outputs/slides]

A notebook cell tagged `slides-opening` or `slides-debrief` becomes one slide of that deck,
its output only (the figure, the rendered verdict), in course order, after a title slide. So the
decks show what the last `make course` computed, never a pasted screenshot. Each deck is written
twice: `<deck>.slides.html` (reveal.js, loaded from its CDN when opened: needs internet) and
`<deck>.html` (the same slides as one page, works offline), beside `<deck>.ipynb`.

The opening deck holds no verdict: attendees fill in their prediction sheet (notebook 06's
PREDICTIONS) after it, and the debrief scores it.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DECKS = {
    "opening": ("# Is synthetic data useful for transfer learning?\n\nThe paper (arXiv "
                "2403.19866) claims: mixing synthetic images into the real data hurts; "
                "fine-tuning on synthetic images first and real images second (bridged "
                "transfer) helps, more with a head reset and Mixup (bridged++); one learned "
                "style word (DSI) narrows the gap; more synthetic images keep helping.\n\n"
                "**Before notebook 01, write your prediction for each claim**: held, mixed, "
                "other way, or unresolved."),
    "debrief": ("# What this course measured\n\nEvery verdict is a paired difference with its "
                "95% interval, read off the shipped results store (notebook 06). Then: your "
                "prediction sheet, scored."),
}


def deck_cells(executed: Path, deck: str) -> list:
    """The tagged cells of every executed notebook, in course order, as slides."""
    import nbformat
    found = []
    for path in sorted(executed.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if f"slides-{deck}" in cell.get("metadata", {}).get("tags", []):
                if cell.cell_type == "code" and not cell.get("outputs"):
                    raise RuntimeError(f"{path} holds no output for a slides-{deck} cell: run "
                                       f"make course (it executes every notebook) first")
                cell = copy.deepcopy(cell)
                cell.metadata["slideshow"] = {"slide_type": "slide"}
                found.append(cell)
    return found


def build(executed: Path, out: Path) -> list[Path]:
    """Write every deck of DECKS into `out`; returns the files written."""
    import nbformat
    from nbconvert import HTMLExporter, SlidesExporter
    if not executed.is_dir() or not any(executed.glob("[0-9][0-9]_*.ipynb")):
        raise RuntimeError(f"no executed notebooks in {executed}: run make course first")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for deck, title in DECKS.items():
        cells = deck_cells(executed, deck)
        if not cells:
            raise RuntimeError(f"no cell tagged slides-{deck} in {executed}")
        head = nbformat.v4.new_markdown_cell(title, metadata={"slideshow": {"slide_type": "slide"}})
        nb = nbformat.v4.new_notebook(cells=[head, *cells],
                                      metadata={"kernelspec": {"name": "python3",
                                                               "display_name": "Python 3",
                                                               "language": "python"}})
        (out / f"{deck}.ipynb").write_text(nbformat.writes(nb))
        slides, _ = SlidesExporter(exclude_input=True, exclude_input_prompt=True,
                                   exclude_output_prompt=True).from_notebook_node(nb)
        page, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                               exclude_output_prompt=True).from_notebook_node(nb)
        for name, text in ((f"{deck}.slides.html", slides), (f"{deck}.html", page)):
            (out / name).write_text(text, encoding="utf-8")
            written.append(out / name)
        print(f"{deck}: {len(cells) + 1} slides -> {out / f'{deck}.slides.html'} "
              f"(offline: {out / f'{deck}.html'})")
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--executed", type=Path, default=REPO_ROOT / "outputs" / "notebooks",
                   help="the executed notebooks (make course writes them)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "slides")
    args = p.parse_args(argv)
    try:
        build(args.executed, args.out)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
