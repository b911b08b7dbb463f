"""Receptive fields found by experiment (cvkit.models.receptive) against values computed by hand."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from cvkit.models import create_model
from cvkit.models.hooks import forward_to
from cvkit.models.receptive import ReceptiveField, receptive_field


def by_formula(layers: list[tuple[int, int, int]]) -> ReceptiveField:
    """The textbook recursion over (kernel, stride, padding) layers: r += (k - 1) j, start += ((k - 1) / 2 - p) j,
    j *= s, with the centre of unit 0 starting at pixel 0."""
    r, j, centre = 1, 1, 0.0
    for k, s, p in layers:
        r += (k - 1) * j
        centre += ((k - 1) / 2 - p) * j
        j *= s
    return ReceptiveField((r, r), (j, j), (centre, centre))


def test_one_conv():
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3)), "0", 1) == ReceptiveField((3, 3), (1, 1), (1.0, 1.0))


def test_conv_pool_conv_by_hand():
    # conv3 (3 px), max-pool 2 (4 px, stride 2), conv3 at stride 2 (4 + 2 * 2 = 8 px); with padding 1 the window
    # of unit 0 spans pixels -3..4, centre 0.5
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1))
    assert receptive_field(net, "3", 1) == ReceptiveField((8, 8), (2, 2), (0.5, 0.5))


def test_padding_puts_the_centre_left_of_the_image():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=2), nn.Conv2d(2, 2, 5, stride=2, padding=4))
    rf = receptive_field(net, "1", 1)
    assert rf == by_formula([(3, 1, 2), (5, 2, 4)])
    # unit 0 of the first conv sees pixels -2..0 (centre -1); unit 0 of the second sees its units -4..0 (centre -2)
    assert rf.centre == (-3.0, -3.0)


@pytest.mark.parametrize("layers", [[(3, 1, 1), (3, 2, 1), (5, 1, 2), (3, 2, 0)], [(7, 2, 3), (3, 2, 1), (3, 1, 1)],
                                    [(1, 1, 0), (3, 3, 0), (2, 2, 0)]])
def test_conv_stacks_match_the_formula(layers):
    net = nn.Sequential(*(nn.Conv2d(2, 2, k, stride=s, padding=p) for k, s, p in layers))
    assert receptive_field(net, str(len(layers) - 1), 2) == by_formula(layers)


def test_dilation_and_rectangles():
    net = nn.Sequential(nn.Conv2d(1, 1, (3, 5), dilation=2), nn.Conv2d(1, 1, (1, 3), stride=(2, 1)))
    rf = receptive_field(net, "1", 1)
    assert rf.size == (5, 9 + 2) and rf.stride == (2, 1)


def test_smallcnn_stages_by_hand():
    # stage 1: conv3, conv3, max-pool 2: 3 -> 5 -> 6 px, stride 2, window of unit 0: -2..3
    # stage 2 (stride 2): conv3 (+4), conv3 (+4), max-pool 2 (+2): 16 px, stride 4, window -6..9
    model = create_model("smallcnn", 10, 1, (28, 28))
    assert receptive_field(model, "features.0", 1) == ReceptiveField((6, 6), (2, 2), (0.5, 0.5))
    assert receptive_field(model, "features.1", 1) == ReceptiveField((16, 16), (4, 4), (1.5, 1.5))
    assert receptive_field(model, "features.0.0.0", 1) == ReceptiveField((3, 3), (1, 1), (0.0, 0.0))


def test_resnet18_is_fast_and_matches_the_formula():
    model = create_model("resnet18", 10, 3, (64, 64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = time.perf_counter()
    rf = receptive_field(model, "layer1", 3)
    seconds = time.perf_counter() - start
    # stem conv7 s2 p3, max-pool 3 s2 p1, then layer1's four conv3 at stride 4: 7 + 2*2 + 4*2*4 = 43
    assert rf == by_formula([(7, 2, 3), (3, 2, 1)] + [(3, 1, 1)] * 4) == ReceptiveField((43, 43), (4, 4), (0.0, 0.0))
    assert seconds < 1.0
    assert receptive_field(model, "layer4", 3).size == (435, 435)  # + layer2/3/4: 8 + 48, 16 + 96, 32 + 192
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    assert all(not m._forward_hooks for m in model.modules())


def test_squeeze_excitation_gates_do_not_make_the_field_global():
    model = create_model("mobilenetv3_small_050", 10, 3, (64, 64))
    rf = receptive_field(model, "blocks.1", 3)
    assert rf.stride == (8, 8) and 8 < rf.size[0] < 100


def test_origin_of_a_unit_window():
    rf = ReceptiveField((16, 16), (4, 4), (1.5, 1.5))
    assert rf.origin(0, 0) == (-6, -6)
    assert rf.origin(2, 3) == (2, 6)


def test_forward_to_stops_at_the_layer_and_keeps_the_graph():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3, 1))  # the Linear cannot run
    x = torch.randn(1, 1, 5, 5, requires_grad=True)
    out = forward_to(net, "0", x)
    assert out.shape == (1, 2, 3, 3) and out.requires_grad
    assert all(not m._forward_hooks for m in net.modules())
