"""The show pipeline on the emotion model (random weights): face crop, prediction, and folders shared with cam."""

from __future__ import annotations

import json

from conftest import EMOTION_SIDE, EXAMPLES

from featuremaps.cli import main


def test_emotion_show_crops_the_face_and_predicts_seven_emotions(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "show",
            str(EXAMPLES / "astronaut.png"),
            "--model",
            "emotion",  # trained weights: a model with random weights shows no prediction
            "--layers",
            "C1,C13",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    folder = out / "astronaut"
    for f in (
        "overview.png",
        "input.png",
        "face.png",
        "activations.npz",
        "manifest.json",
        "layers/C01_block1_conv1.png",
        "layers/C13_block5_conv3.png",
    ):
        assert (folder / f).is_file(), f
    man = json.loads((folder / "manifest.json").read_text())
    assert man["preprocessing"]["face_crop"] is True
    x, y, w, h = man["preprocessing"]["face_box_xywh"]
    assert 190 < x + w / 2 < 260 and 85 < y + h / 2 < 150  # on her face
    assert man["model"]["input_shape"] == [EMOTION_SIDE, EMOTION_SIDE, 1]
    assert sorted(p["class"] for p in man["prediction"]) == sorted(
        ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    )
    printed = capsys.readouterr().out
    assert "predicted" in printed and str(out.resolve()) in printed


def test_no_face_crop_feeds_the_whole_image(tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "show",
                str(EXAMPLES / "chelsea.png"),
                "--model",
                "emotion",
                "--weights",
                "none",
                "--layers",
                "C1",
                "--no-face-crop",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    man = json.loads((out / "chelsea" / "manifest.json").read_text())
    assert man["preprocessing"]["face_crop"] is False and not (out / "chelsea" / "face.png").exists()


def test_no_face_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(["show", str(EXAMPLES / "chelsea.png"), "--model", "emotion", "--weights", "none", "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "no face found" in err and "--no-face-crop" in err and len(err.splitlines()) == 1
    assert not out.exists()  # not even an empty output folder


def test_show_keeps_the_cam_results_of_the_same_image(tmp_path):
    out = tmp_path / "out"
    img = str(EXAMPLES / "astronaut.png")
    common = ["--model", "emotion", "--weights", "none", "--out", str(out)]
    assert main(["cam", img, *common]) == 0
    assert (out / "astronaut" / "cam" / "panel.png").is_file()
    assert main(["show", img, "--layers", "C1", *common]) == 0
    assert (out / "astronaut" / "cam" / "panel.png").is_file()
    assert (out / "astronaut" / "overview.png").is_file()
    assert not [p for p in out.rglob(".*")]  # no temporary leftovers


def test_seen_part_is_the_centre_the_model_sees():
    """A --crop 40 emotion model sees the centre 40/48 of the face fitted to 48x48: maps are laid over that part
    of the face crop, not stretched over the whole of it. Hand-checked offsets on a 96 px face and a 120x96 one."""
    import numpy as np

    from featuremaps.pipeline import seen_part

    face = np.arange(96 * 96).reshape(96, 96)
    part = seen_part(face, 40 / 48)
    assert part.shape == (80, 80) and part[0, 0] == face[8, 8] and part[-1, -1] == face[87, 87]
    tall = np.arange(120 * 96).reshape(120, 96)  # crop: the centred 96x96 square first (rows 12-107)
    part = seen_part(tall, 40 / 48)
    assert part.shape == (80, 80) and part[0, 0] == tall[20, 8]
    assert seen_part(tall, 40 / 48, "stretch").shape == (100, 80)
    assert seen_part(tall, 40 / 48, "pad") is tall
    assert seen_part(face, 1.0).shape == face.shape
