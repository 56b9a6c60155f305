"""Results that display themselves in a notebook (issue 26): each result's ``_repr_mimebundle_`` on the fake NumPy
model (tests/fake_adapter.py): a PNG fallback, self-contained HTML without scripts, one text line, under 2 MB."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_adapter import fake_loaded
from PIL import Image

from featuremaps import display
from featuremaps.atlas import AtlasResult, compute_atlas, open_source
from featuremaps.cam.engine import CamResult, compute_cam
from featuremaps.compare import Comparison, compare_models
from featuremaps.pipeline import ShowResult, ShowResults, show

ROOT = Path(__file__).resolve().parents[1]


def _image(path: Path, seed=0, shape=(20, 24, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def check_bundle(b: dict, min_side: int = 64) -> str:
    """The bundle IPython shows: a non-blank PNG of plausible size, HTML with inline PNGs and no script, one text
    line, under 2 MB in all. Returns the text line."""
    assert set(b) == {"text/plain", "image/png", "text/html"}
    pic = np.asarray(Image.open(io.BytesIO(b["image/png"])).convert("RGB"))
    assert min(pic.shape[:2]) >= min_side and max(pic.shape[:2]) <= 20000
    assert pic.std() > 5  # not a blank page
    page = b["text/html"]
    assert "<img" in page and 'src="data:image/png;base64,' in page and "<script" not in page.lower()
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):  # each inline picture decodes
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    text = b["text/plain"]
    assert text and "\n" not in text
    assert sum(len(v) for v in b.values()) < 2_000_000
    return text


def test_show_result_and_the_gallery_of_show(tmp_path):
    """fm.show's list displays as a gallery of overviews (read back from disk), each result as its overview."""
    lm = fake_loaded()
    images = [_image(tmp_path / "a.png"), _image(tmp_path / "b.png", seed=1)]
    res = show(images, model=lm, out=tmp_path / "out")
    assert isinstance(res, ShowResults) and isinstance(res, list) and all(isinstance(r, ShowResult) for r in res)
    text = check_bundle(res._repr_mimebundle_())
    assert "2 images" in text and "a.png" in text and "b.png" in text
    assert res._repr_mimebundle_()["text/html"].count("<img") == 2
    one = check_bundle(res[0]._repr_mimebundle_())
    assert "overview of a.png" in one and f"predicted {res[0].prediction[0]['class']}" in one


def test_cam_result_shows_its_overlay_with_class_and_probability():
    """compute_cam's result: the overlay on the input it was given, the class and p = ... in the text and HTML."""
    lm = fake_loaded()
    x = np.random.default_rng(0).uniform(0, 1, (16, 16, 3)).astype(np.float32)
    res = compute_cam(lm.model, x, "gradcam", class_index="dog", classes=lm.classes)
    assert isinstance(res, CamResult) and res.image.shape == (16, 16, 3)
    b = res._repr_mimebundle_()
    text = check_bundle(b, min_side=200)  # a 16x16 input is drawn at least 224 px wide
    want = f"dog ({display.p_equals(res.probability)})"
    assert "gradcam" in text and want in text and "conv2" in text
    assert want in b["text/html"]


def test_comparison_displays_its_picture_and_saves(tmp_path):
    """compare_models returns a Comparison: still unpacks in four, shows its picture, saves its files."""
    rgb = np.asarray(Image.open(_image(tmp_path / "c.png", shape=(30, 40, 3))))
    a, b = fake_loaded(name="small"), fake_loaded(name="wide", input_shape=(24, 24, 3), seed=1)
    cmp = compare_models([a, b], rgb, rows=2, maps=4)
    assert isinstance(cmp, Comparison)
    pic, runs, labels, picks = cmp
    text = check_bundle(cmp._repr_mimebundle_())
    assert "comparison of 2 networks" in text and "small" in text and "wide" in text
    out = cmp.save(tmp_path / "cmp", tmp_path / "c.png", maps=4)
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.json", "compare.png"]


def test_atlas_result_displays_its_layers(tmp_path):
    """compute_atlas's result: one class x channel heatmap per conv layer."""
    root = tmp_path / "data"
    for k, cls in enumerate(("cat", "dog", "owl")):
        for i in range(2):
            _image(root / cls / f"{i}.png", seed=10 * k + i, shape=(16, 16, 3))
    lm = fake_loaded()
    res = compute_atlas(lm, open_source(root, "all", lm.classes), batch_size=4)
    assert isinstance(res, AtlasResult)
    b = res._repr_mimebundle_()
    text = check_bundle(b, min_side=32)
    assert "atlas of 6 images in 3 classes, 2 conv layers" in text
    assert b["text/html"].count("<img") == 2 and "C1 conv1" in b["text/html"]


def test_a_big_picture_is_scaled_under_the_size_bound():
    """Noise compresses worst: a 1200x1200 noise picture (4 MB raw) still makes a bundle under 2 MB."""
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    b = display.bundle("noise", [("a", noise), ("b", noise)])
    assert sum(len(v) for v in b.values()) < display.MAX_BYTES
    check_bundle(b)


def test_a_bundle_imports_no_ipython():
    """The protocol needs no IPython: importing featuremaps and building a bundle leaves it unloaded."""
    code = (
        "import sys, numpy as np, featuremaps\n"
        "from featuremaps import display\n"
        "display.bundle('x', [('x', np.zeros((8, 8, 3), np.uint8))])\n"
        "print('IPython' in sys.modules)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "False"


NOTEBOOK_CELLS = (
    "import sys\nsys.path[:0] = [{src!r}, {tests!r}]\nimport numpy as np\nfrom fake_adapter import fake_loaded\n"
    "import featuremaps as fm\nlm = fake_loaded()",
    "fm.show([{image!r}], model=lm, out={out!r})",
    "x = np.random.default_rng(0).uniform(0, 1, (16, 16, 3)).astype(np.float32)\n"
    "fm.compute_cam(lm.model, x, classes=lm.classes)",
    "from featuremaps.compare import compare_models\nrgb = np.random.default_rng(1).integers(0, 256, (20, 24, 3))\n"
    "compare_models([lm, fake_loaded(name='wide', seed=1)], rgb.astype(np.uint8), rows=2, maps=4)",
)


@pytest.mark.slow  # a Jupyter kernel
def test_a_notebook_cell_displays_the_results(tmp_path):
    """On a real Jupyter kernel: a cell ending with fm.show(...), fm.compute_cam(...) or compare_models(...) outputs
    the PNG, the HTML and our text line (not IPython's list or tuple printer), and nothing is printed."""
    why = "the notebook extra is not installed (pip install 'featuremaps[notebook]'): no Jupyter kernel to run a cell"
    nbformat = pytest.importorskip("nbformat", reason=why)
    nbclient = pytest.importorskip("nbclient", reason=why)
    pytest.importorskip("ipykernel", reason=why)
    where = {"src": str(ROOT / "src"), "tests": str(ROOT / "tests"), "out": str(tmp_path / "out")}
    where["image"] = str(_image(tmp_path / "a.png"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.format(**where)) for c in NOTEBOOK_CELLS])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = [c.outputs for c in nb.cells]
    assert outputs[0] == []  # nothing printed, no warning
    for cell, named in zip(outputs[1:], ("overviews of 1 image", "map for", "comparison of 2"), strict=True):
        assert [o.output_type for o in cell] == ["execute_result"]
        data = cell[0].data
        assert {"image/png", "text/html", "text/plain"} <= set(data) and named in data["text/plain"]
        assert "<script" not in data["text/html"]


@pytest.mark.slow  # a Jupyter kernel, the emotion model and two keras.applications models (~30 s)
@pytest.mark.parametrize("notebook", sorted((ROOT / "examples").glob("*.ipynb")), ids=lambda p: p.name)
def test_every_example_notebook_runs_top_to_bottom(notebook):
    """Every committed notebook in examples/ runs on a real Jupyter kernel, offline, without an error (CI runs
    them through this test; their committed outputs are what a reader sees on GitHub)."""
    why = "the notebook extra is not installed (pip install 'featuremaps[notebook]'): no Jupyter kernel to run it"
    nbformat = pytest.importorskip("nbformat", reason=why)
    nbclient = pytest.importorskip("nbclient", reason=why)
    pytest.importorskip("ipykernel", reason=why)
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert sum(o.output_type == "execute_result" for c in nb.cells if c.cell_type == "code" for o in c.outputs) >= 3
