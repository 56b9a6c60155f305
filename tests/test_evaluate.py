"""Evaluation metrics on a tiny hand-computed case, TTA views, and the CLI's bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from featuremaps.cli import main
from featuremaps.emotion.evaluate import metrics, tta_views


def test_metrics_hand_computed():
    # true:  0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
    m = metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3)
    np.testing.assert_array_equal(m["confusion"], [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert m["accuracy"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(m["precision"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(m["recall"], [2 / 3, 0.5, 1.0])
    np.testing.assert_allclose(m["f1"], [0.8, 0.5, 2 / 3])
    np.testing.assert_array_equal(m["support"], [3, 2, 1])


def test_metrics_class_never_predicted_has_zero_precision_not_nan():
    m = metrics([0, 1], [0, 0], 3)
    assert np.isfinite(m["precision"]).all() and m["precision"][1] == 0 and m["recall"][2] == 0


def test_tta_views():
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 1)
    v = tta_views(x, shift=1)
    assert len(v) == 10 and all(a.shape == x.shape for a in v)
    np.testing.assert_array_equal(v[0], x)
    np.testing.assert_array_equal(v[5], x[:, :, ::-1])
    np.testing.assert_array_equal(v[1][:, 1:], x[:, :-1])  # shifted down by one row


def test_evaluate_cli_bad_inputs(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "none"), "--splits", "Valid"]) == 2
    assert "unknown split 'Valid'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "w.npz"), "--data", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
