"""`cvkit convolutionalize`: one 512x512 image through the converted VGG16 (random init, 1000 classes,
224 training size) against the naive sliding window: every 224x224 crop at the same stride (32),
classified one at a time by the original net, and in batches of 10. Same process, 2 threads, fp32."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import best_time, write_result  # noqa: E402

SIZE, TRAIN, STRIDE = 512, 224, 32


def main() -> None:
    from cvkit.models import create_model
    from cvkit.models.convolutional import to_convolutional

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = create_model("vgg16", 1000, 3, (TRAIN, TRAIN)).eval()
    image = torch.randn(1, 3, SIZE, SIZE)
    starts = range(0, SIZE - TRAIN + 1, STRIDE)
    crops = [image[:, :, y:y + TRAIN, x:x + TRAIN] for y in starts for x in starts]
    with torch.inference_mode():
        model(crops[0])  # warm-up
        naive_one = best_time(lambda: [model(c) for c in crops], 1)
        batch = torch.cat(crops)
        naive_batched = best_time(lambda: [model(batch[b:b + 10]) for b in range(0, len(batch), 10)], 1)
        reference = torch.cat([model(c) for c in crops[:3]])
    dense = to_convolutional(model, 3, (TRAIN, TRAIN))
    with torch.inference_mode():
        dense.score_maps(image)
        seconds = best_time(lambda: dense.score_maps(image), 3)
        maps = dense.score_maps(image)[0]
    got = maps.flatten(1).T[:3]
    write_result("convolutionalize", {
        "model": "vgg16 (timm, random init), 1000 classes, trained size 224", "image": f"{SIZE}x{SIZE}",
        "crops": len(crops), "map": list(maps.shape[1:]), "threads": 2,
        "dense_seconds": round(seconds, 3), "naive_per_crop_seconds": round(naive_one, 2),
        "naive_batch10_seconds": round(naive_batched, 2),
        "speedup_vs_per_crop": round(naive_one / seconds, 1), "speedup_vs_batch10": round(naive_batched / seconds, 1),
        "note": "dense map cells differ from crop logits where the crop's zero padding differs from the image's "
                "own pixels; first cells max abs diff vs crops: " + f"{float((got - reference).abs().max()):.3g}"})


if __name__ == "__main__":
    main()
