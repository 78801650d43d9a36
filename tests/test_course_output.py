"""`make course`'s pages hold what a reader should read: no progress-bar residue, no warnings
from the libraries underneath, the project's own warnings, and sharp (retina) figures.

One small notebook, written here, meets every source of noise the course notebooks meet (the
package's bars, a bar inside a bar, transformers' "Loading weights" bar while the mini pipeline
loads, tqdm's "IProgress not found", deprecations raised inside diffusers, torch and
transformers) and runs through `run_one`, the function `make course` (tools/run_course.py)
runs each notebook with. About 30 s: a Jupyter kernel starts and imports the stack.
"""
import base64
import importlib.util
import io
import json
import struct
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # starts a Jupyter kernel; `-m "not slow"` skips

CELLS = [
    ('PROFILE = "mini"', ["parameters"]),
    ("import time\nimport warnings\nimport bridgelib as bl\nfrom bridgelib.files import progress\n"
     "bl.setup_notebook(seed=0);", []),
    ('for _ in progress(range(40), desc="outer bar"):\n'
     '    for _ in progress(range(3), desc="inner bar", leave=False):\n'
     "        time.sleep(0.002)\n"
     'print("bars done")', []),
    ("from bridgelib.pipeline import load_pipeline\n"
     "pipe = load_pipeline(bl.get_config(PROFILE))", []),
    # warnings raised inside library modules (as the code of a module of that name raises them)
    ('for module, category in [("diffusers.utils.deprecation_utils", FutureWarning),\n'
     '                          ("torch.nn.modules.module", UserWarning),\n'
     '                          ("transformers.modeling_utils", DeprecationWarning)]:\n'
     '    exec("import warnings\\nwarnings.warn(\'library internals of \' + __name__, C)",\n'
     '         {"__name__": module, "C": category})', []),
    # the project's own warnings still show: one raised inside the package, one it raises at you
    ('exec("import warnings\\nwarnings.warn(\'a warning of the package itself\')",\n'
     '     {"__name__": "bridgelib.demo"})\n'
     "import pathlib, tempfile\nfrom PIL import Image\n"
     'root = pathlib.Path(tempfile.mkdtemp()) / "folder"\n'
     'for name in ("a", "b"):\n'
     "    (root / name).mkdir(parents=True)\n"
     '    Image.new("RGB", (8, 8)).save(root / name / "ok.png")\n'
     '(root / "a" / "broken.png").write_bytes(b"not a png")\n'
     "images = bl.load_image_folder(root, 8)", []),
    ("import matplotlib.pyplot as plt\nplt.plot([0, 1], [0, 1])\nplt.show()", []),
    ("from matplotlib.figure import Figure\nfig = Figure(figsize=(3, 2))\n"
     "fig.subplots().plot([0, 1])\nfig", []),  # a bare Figure, as bridgelib.report returns
]
# Bars, tqdm's warning, transformers' bar, the library warnings raised above (their text as
# shown, which the cell's source, also in the HTML page, does not hold)
RESIDUE = ["it/s", "%|", "TqdmWarning", "IProgress", "Loading weights",
           "internals of diffusers", "internals of torch", "internals of transformers"]


def run_course_module():
    spec = importlib.util.spec_from_file_location("run_course", REPO_ROOT / "tools" / "run_course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_width(data: str) -> int:
    return struct.unpack(">I", base64.b64decode(data)[16:20])[0]  # IHDR's width


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The probe notebook as `make course` leaves it: (executed copy, its HTML, the terminal)."""
    tmp = tmp_path_factory.mktemp("course")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3",
                                                           "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in CELLS]
    src = tmp / "probe.ipynb"
    nbformat.write(nb, src)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("BRIDGELIB_PROGRESS", raising=False)  # conftest turns the bars off; not here
        mp.setenv("MPLBACKEND", "Agg")  # a terminal's backend must not cost the page its figures
        terminal = io.StringIO()
        record = run_course_module().run_one(src, "mini", out_dir=tmp / "out", terminal=terminal)
    assert record["ok"], record["error"]
    page = json.loads((tmp / "out" / "notebooks" / "probe.ipynb").read_text())
    html = (tmp / "out" / "html" / "probe.html").read_text()
    return page, html, terminal.getvalue()


def texts(page) -> list[str]:
    """Every text output of the executed notebook: streams, reprs, errors."""
    out = []
    for cell in page["cells"]:
        for o in cell.get("outputs", []):
            if o["output_type"] == "stream":
                out.append("".join(o["text"]))
            elif o["output_type"] == "error":
                out.append("\n".join(o["traceback"]))
            else:
                out += ["".join(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return out


def test_no_progress_bars_or_library_warnings_in_the_page(executed):
    page, html, _ = executed
    text = "\n".join(texts(page))
    assert "bars done" in text  # the cells did run
    for residue in RESIDUE + ["\r"]:
        assert residue not in text, f"{residue!r} in the executed notebook:\n{text}"
    for residue in RESIDUE:
        assert residue not in html, f"{residue!r} in the HTML page"


def test_the_projects_own_warnings_still_show(executed):
    text = "\n".join(texts(executed[0]))
    assert "a warning of the package itself" in text
    assert "skipped 1 unreadable image(s): " in text and "broken.png" in text


def test_the_bars_go_to_the_terminal(executed):
    terminal = executed[2]
    assert "outer bar" in terminal and "inner bar" in terminal and "40/40" in terminal
    assert "\r" in terminal  # redrawn in place, as in any terminal


def test_figures_are_retina_pngs(executed):
    figures = [o for cell in executed[0]["cells"] for o in cell.get("outputs", [])
               if "image/png" in o.get("data", {})]
    assert len(figures) == 2, "both the pyplot figure and the bare Figure are drawn inline"
    for o in figures:
        shown = o["metadata"]["image/png"]["width"]
        assert png_width(o["data"]["image/png"]) == pytest.approx(2 * shown, abs=2)
