"""Shift-and-stitch equals classifying every window; maps in the image's frame follow the object."""

from __future__ import annotations

import numpy as np
import torch

from cvkit.convolutionalize.dense import stitch, upsample
from cvkit.models import create_model
from cvkit.models.convolutional import to_convolutional
from cvkit.models.receptive import receptive_field


def test_stitch_equals_the_classifier_on_every_window_it_covers():
    torch.manual_seed(0)
    model = create_model("lenet5", 3, 1, (32, 32)).eval()  # no padding at 32 px: a window is a crop
    image = torch.randn(1, 1, 47, 45)
    reference = create_model("lenet5", 3, 1, (32, 32)).eval()
    reference.load_state_dict(model.state_dict())
    dense = to_convolutional(model, 1, (32, 32))
    rf = receptive_field(dense, f"head.{len(dense.head) - 1}", 1)
    assert rf.stride == (4, 4) and rf.size == (32, 32)
    crops = {}
    with torch.no_grad():
        maps = stitch(dense, image, rf.stride)
        top = rf.centre[0] - (rf.size[0] - 1) / 2
        assert maps.shape[1:] == (16, 12)  # (47 - 3 - 32) // 4 + 1 = 4 cells x 4 shifts; (45 - 3 - 32) // 4 + 1 = 3
        for py in range(maps.shape[1]):
            for px in range(maps.shape[2]):
                y, x = int(top) + py, int(top) + px
                crops[(py, px)] = reference(image[:, :, y:y + 32, x:x + 32])[0]
    for (py, px), logits in crops.items():
        assert torch.allclose(maps[:, py, px], logits, atol=1e-4)


def test_upsampled_peak_follows_the_object_pixel_for_pixel_up_to_the_stride():
    model = create_model("smallcnn", 2, 1, (32, 32), batchnorm=False, dropout=0.0).eval()
    with torch.no_grad():  # a brightness detector with a centred Gaussian template: peaks where the square is centred
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                m.bias.zero_()
        fc, out = model.head.pre[1], model.head.fc
        g = torch.exp(-((torch.arange(8) - 3.5) ** 2) / 4)
        fc.weight.zero_(); fc.bias.zero_(); out.weight.zero_(); out.bias.zero_()
        fc.weight[0] = (g[:, None] * g[None, :]).repeat(model.num_features, 1, 1).flatten()
        out.weight[0, 0], out.weight[1, 0] = 1.0, -1.0
    dense = to_convolutional(model, 1, (32, 32))
    rf = receptive_field(dense, f"head.{len(dense.head) - 1}", 1)
    peaks = []
    for left in range(20, 60, 3):
        canvas = torch.zeros(1, 1, 96, 96)
        canvas[:, :, 40:48, left:left + 8] = 1.0
        with torch.no_grad():
            maps = dense.score_maps(canvas)[0].numpy()
        full = upsample(maps, rf, (96, 96))
        y, x = np.unravel_index(full[0].argmax(), full[0].shape)
        peaks.append(x)
        assert abs(y - 43.5) <= rf.stride[0] and abs(x - (left + 3.5)) <= rf.stride[1]
    assert len(set(peaks)) > 5  # it moves, not stuck on one cell
