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
        "import tempfile\n\nimport numpy as np\n\nimport featuremaps as fm\n"
        "from featuremaps.compare import compare_models\n"
        "from featuremaps.pipeline import prepare\n\nout = tempfile.mkdtemp()  # where show writes its files"
    ),
    md(
        "## The emotion model on a face\n\nThe bundled VGG-16 trained on FER2013 (48x48 grayscale faces, 7 emotions): "
        "the face is cropped to 48x48 and the model sees its centre 40x40, as in training; below, the first 16 maps "
        "of each conv layer (C1...C13, F1...F16)."
    ),
    code('shown = fm.show(["astronaut.png"], out=out)\nshown'),
    code(
        "# the data behind the picture: the prediction, and the files in the result's folder\n"
        "shown[0].prediction[:3], sorted(p.name for p in shown[0].folder.iterdir())"
    ),
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
        "## Architectures side by side\n\nThe emotion VGG-16 next to its trained ResNet-18 and MobileNetV2 siblings "
        "(the same FER2013 faces; PrivateTest 70.3%, 69.4% and 67.2%): the same face through all three, layers "
        "aligned by relative depth. All three see the 40x40 centre of the face they were trained on."
    ),
    code(
        'resnet, mobilenet = fm.load_model("emotion-resnet"), fm.load_model("emotion-mobilenet")\n'
        'compare_models([lm, resnet, mobilenet], fm.load_image("astronaut.png"), image_name="astronaut.png")'
    ),
    md(
        "## What a channel looks for\n\nFeature visualization: for each channel, the image that activates it most "
        "(a Fourier-parameterised image optimised under small random jitter, scale and rotation, Lucid's recipe), "
        "all channels of a layer in one batch. Four channels of C8 that respond most to FER2013 faces: tiled "
        "mouth corners, open mouths and eyes, all of them most active on smiling faces (with `data=` the result "
        "also shows each channel's top dataset images, cropped to its receptive "
        "field)."
    ),
    code('fm.find_patterns(lm, layers="C8", channels="F388,F439,F47,F137")'),
    md("And what the network thinks *happy* and *surprise* look like: the class's logit, maximised."),
    code('fm.find_patterns(lm, target_classes=["happy", "surprise"])'),
    md(
        "## How a network learns\n\n`FeatureMapsCallback` keeps the maps of fixed inputs after every epoch of any "
        "`model.fit` and draws them as an epoch x layer sheet. Here a tiny network learns, in a few seconds, to tell "
        "horizontal from vertical stripes; the cell's value is the callback, which shows its sheets so far (each map "
        "is the mean over the layer's channels, scaled to its own range)."
    ),
    code(
        "import keras\n\nrng = np.random.default_rng(0)\n\n\ndef stripes(n):\n"
        '    """n noisy 24x24 images of horizontal (label 0) or vertical (label 1) stripes."""\n'
        "    labels = rng.integers(0, 2, n)\n    phase = rng.integers(0, 6, n)\n"
        "    rows = (np.arange(24)[None, :] + phase[:, None]) % 6 < 3  # (n, 24)\n"
        "    x = np.where(labels[:, None, None] == 0, rows[:, :, None], rows[:, None, :]).astype(np.float32)\n"
        "    x = x + rng.normal(0, 0.3, x.shape).astype(np.float32)\n"
        "    return x[..., None], labels\n\n\n"
        "x, y = stripes(256)\nkeras.utils.set_random_seed(0)\nnet = keras.Sequential([\n"
        "    keras.Input((24, 24, 1)),\n"
        '    keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),\n'
        "    keras.layers.MaxPooling2D(),\n"
        '    keras.layers.Conv2D(8, 3, activation="relu", name="conv2"),\n'
        "    keras.layers.GlobalAveragePooling2D(),\n"
        '    keras.layers.Dense(2, activation="softmax"),\n])\n'
        'net.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])\n'
        "first = [int(np.argmax(y == 0)), int(np.argmax(y == 1))]  # one image of each kind\n"
        'cb = fm.FeatureMapsCallback(x[first], layers="all", names=["horizontal", "vertical"])\n'
        "fit = net.fit(x, y, epochs=6, batch_size=16, verbose=0, callbacks=[cb])\n"
        'print("accuracy by epoch:", [round(a, 2) for a in fit.history["accuracy"]])\ncb'
    ),
    md(
        "The same callback watched the ResNet-18 sibling learn FER2013 (`featuremaps train --arch resnet` draws it as "
        "`maps/<face>.png` in the run's folder); this sheet is the happy PrivateTest face, epochs 4 to 36 (the "
        "picture is from the repository's docs, drawn during the training run that made the shipped weights):"
    ),
    code('from IPython.display import Image\n\nImage(filename="../docs/learning_resnet_happy.png")'),
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
