"""The two receptive-field engines agree: the formula that ``cvkit inspect`` follows along a traced pass
(cvkit/inspect/trace.py) and the experiment on a linear copy of the net (cvkit/models/receptive.py),
on size, jump and centre, for every layer (a sample of the larger nets) of a few architectures at a
small input size; and where the formula cannot follow a net, inspect reports the measured field."""

from __future__ import annotations

import pytest

from cvkit.inspect import inspect_arch, trace
from cvkit.inspect.trace import UNKNOWN
from cvkit.models import create_model
from cvkit.models.receptive import receptive_field

# (arch, input channels, side, every how many map layers to measure): the larger nets are sampled,
# their last map layer always included.
CASES = [("smallcnn", 1, 28, 1), ("lenet5", 1, 32, 1), ("nin", 3, 32, 1), ("vgg11", 3, 64, 2),
         ("resnet18", 3, 64, 7)]


@pytest.mark.parametrize(("arch", "in_chans", "side", "every"), CASES, ids=[c[0] for c in CASES])
def test_formula_and_experiment_agree(arch, in_chans, side, every):
    model = create_model(arch, 10, in_chans, (side, side))
    calls = trace(model, in_chans, (side, side), measure=None)
    followed = [c for c in calls if c.is_map and not c.repeat and isinstance(c.field, tuple)]
    assert len(followed) >= 5
    for call in followed[::every] + followed[-1:]:
        found = receptive_field(model, call.name, in_chans)
        assert (found.size, found.stride, found.centre) == call.field, call.name


def test_where_the_formula_stops_inspect_measures():
    """timm's VGG head stretches a map smaller than its 7x7 fc6 (adaptive pooling up, an op the trace
    does not know), so at 64 px the formula stops there; inspect fills the row from the experiment."""
    model = create_model("vgg11", 10, 3, (64, 64))
    calls = {c.name: c for c in trace(model, 3, (64, 64), measure=None)}
    assert calls["pre_logits.fc1"].field == UNKNOWN
    rows = {r.name: r for r in inspect_arch("vgg11", 10, 3, (64, 64)).rows}
    found = receptive_field(model, "pre_logits.fc1", 3)
    assert [list(found.size), list(found.stride)] == [rows["pre_logits.fc1"].receptive_field,
                                                      rows["pre_logits.fc1"].jump]
