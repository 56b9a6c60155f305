"""Finding conv layers (forward order, nested, never-built models) and parsing --layers specs."""

from __future__ import annotations

import pytest

from featuremaps import UserError, conv_layers, select_layers


def test_sequential_numbered_in_forward_order(tiny_sequential):
    convs = conv_layers(tiny_sequential)
    assert [(c.label, c.name, c.kind) for c in convs] == [
        ("C1", "conv_a", "Conv2D"),
        ("C2", "conv_b", "Conv2D"),
    ]
    assert [c.channels for c in convs] == [4, 6]
    assert convs[0].params == 3 * 3 * 3 * 4 + 4


def test_all_conv2d_family_kinds(tiny_functional):
    convs = conv_layers(tiny_functional)
    assert [c.kind for c in convs] == ["Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose"]
    assert [c.name for c in convs] == ["c1", "c2", "c3", "c4"]


def test_nested_model_layers_have_paths(tiny_nested):
    convs = conv_layers(tiny_nested)
    assert [c.name for c in convs] == ["base/block1_conv1", "base/block2_conv1"]
    assert [c.short_name for c in convs] == ["block1_conv1", "block2_conv1"]
    assert [c.channels for c in convs] == [4, 8]


def test_never_built_model(tiny_unbuilt):
    convs = conv_layers(tiny_unbuilt)
    assert [c.name for c in convs] == ["u1", "u2"]
    assert convs[0].channels is None  # no output shape before the model is called


def test_subclass_of_conv2d_counts():
    import keras

    class MyConv(keras.layers.Conv2D):
        pass

    m = keras.Sequential([keras.Input((8, 8, 1)), MyConv(2, 3, name="mine")])
    assert [(c.name, c.kind) for c in conv_layers(m)] == [("mine", "Conv2D")]


@pytest.mark.parametrize("layer", ["Conv1D", "Conv3D"])
def test_1d_3d_convs_are_not_supported(layer):
    import keras

    shape = (16, 2) if layer == "Conv1D" else (8, 8, 8, 1)
    m = keras.Sequential([keras.Input(shape), getattr(keras.layers, layer)(2, 3, name="c")], name="m")
    with pytest.raises(UserError, match="not support") as e:
        conv_layers(m)
    assert layer in str(e.value) and "\n" not in str(e.value)


def test_no_conv_layers():
    import keras

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="mlp")
    with pytest.raises(UserError, match="no convolutional layers"):
        conv_layers(m)


@pytest.fixture
def convs(tiny_functional):
    return conv_layers(tiny_functional)


@pytest.mark.parametrize(
    "spec, want",
    [
        (None, ["c1", "c2", "c3", "c4"]),
        ("all", ["c1", "c2", "c3", "c4"]),
        (["all"], ["c1", "c2", "c3", "c4"]),
        ("c3", ["c3"]),
        ("C2", ["c2"]),
        ("c2", ["c2"]),  # a name wins over nothing: c2 is both a name and C2
        ("C4,C1", ["c1", "c4"]),  # model order, not spec order
        ("C2-C3", ["c2", "c3"]),
        ("c1 - c2", ["c1", "c2"]),
        ("C1-3", ["c1", "c2", "c3"]),
        ("c[34]", ["c3", "c4"]),
        ("*", ["c1", "c2", "c3", "c4"]),
        (["C1", "c4"], ["c1", "c4"]),
        ("C1,C1-C2", ["c1", "c2"]),
    ],
)
def test_select_layers(convs, spec, want):
    assert [c.name for c in select_layers(convs, spec)] == want


def test_select_nested_by_short_full_name_and_glob(tiny_nested):
    convs = conv_layers(tiny_nested)
    assert [c.label for c in select_layers(convs, "block2_conv1")] == ["C2"]
    assert [c.label for c in select_layers(convs, "base/block1_conv1")] == ["C1"]
    assert [c.label for c in select_layers(convs, "block*_conv1")] == ["C1", "C2"]
    assert [c.label for c in select_layers(convs, "base/*")] == ["C1", "C2"]


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nope", r"no conv layer matches 'nope'.*c1, c2, c3, c4"),
        ("C9", r"no layer C9: the model has C1-C4"),
        ("C0", r"C1-C4"),
        ("C3-C9", r"outside C1-C4"),
        ("C3-C2", r"is reversed; write it low to high: C2-C3"),
        ("x*", r"no conv layer matches 'x\*'"),
        (",", r"empty"),
    ],
)
def test_select_errors_list_what_exists(convs, spec, match):
    with pytest.raises(UserError, match=match) as e:
        select_layers(convs, spec)
    assert "\n" not in str(e.value)


def test_call_counts_are_read_once_and_do_not_keep_the_model_alive():
    """Listing a functional model's layers reads its config once; the memo holds no strong reference."""
    import gc
    import weakref

    import keras

    from featuremaps import layers as L

    inp = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(2, 3, name="shared")
    m = keras.Model(inp, keras.layers.Add()([shared(inp), shared(inp)]), name="twice")
    calls, ref = [], weakref.ref(m)

    def counted():
        calls.append(1)
        return type(ref()).get_config(ref())

    m.get_config = counted
    assert [c.name for c in L.conv_layers(m)] == ["shared", "shared@2"]
    assert [c.name for c in L.conv_layers(m)] == ["shared", "shared@2"] and len(calls) == 1
    del m
    gc.collect()
    assert ref() is None
