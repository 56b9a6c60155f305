"""Build examples/tour.ipynb with nbformat and execute it on a Jupyter kernel in examples/, outputs kept.

Needs the notebook extra (ipykernel, nbclient, nbformat); runs offline (the bundled emotion model, keras
applications with random weights). Usage: ``python tools/make_tour.py [examples/tour.ipynb]``.
"""

import sys
from pathlib import Path

import nbclient
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

md, code = new_markdown_cell, new_code_cell
cells = [
    md(
        "# A tour of featuremaps\n\nWhat a convolutional network sees, offline, in a notebook: every result below "
        "displays itself (a picture, its class and probability), and keeps its data and files."
    ),
    code(
        "import tempfile\n\nimport featuremaps as fm\nfrom featuremaps.compare import compare_models\n"
        "from featuremaps.pipeline import prepare\n\nout = tempfile.mkdtemp()  # where show writes its files"
    ),
    md(
        "## The emotion model on a face\n\nThe bundled VGG-16 trained on FER2013 (48x48 grayscale faces, 7 emotions): "
        "the face is cropped, then the first 16 maps of each conv layer (C1...C13, F1...F16)."
    ),
    code('shown = fm.show(["astronaut.png"], out=out)\nshown'),
    code("shown[0].prediction[:3], shown[0].folder  # the data behind the picture"),
    md(
        "## Why did it decide?\n\nTwo class activation maps of the same face: Grad-CAM (gradients) and Score-CAM "
        "(no gradients: the maps as masks)."
    ),
    code(
        'lm = fm.load_model("emotion")\nface = prepare(lm, fm.load_image("astronaut.png"))\n'
        'fm.compute_cam(lm.model, face.x, method="gradcam", classes=lm.classes)'
    ),
    code('fm.compute_cam(lm.model, face.x, method="scorecam", classes=lm.classes)'),
    md(
        "## Architectures side by side\n\nThe emotion model next to two ImageNet architectures with **random "
        "weights** (no download; the title says so): layers aligned by depth."
    ),
    code(
        'others = [fm.load_model(name, weights="none") for name in ("resnet50", "mobilenetv2")]\n'
        'compare_models([lm, *others], fm.load_image("astronaut.png"), image_name="astronaut.png")'
    ),
]
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def main() -> None:
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL})
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "examples" / "tour.ipynb")
    where = {"metadata": {"path": str(path.parent)}}
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources=where).execute()
    nbformat.write(nb, path)
    print(path.stat().st_size)


if __name__ == "__main__":
    main()
