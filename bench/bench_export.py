"""Inference speed of a network as trained, after --fuse-bn, as TorchScript and in ONNX Runtime.

Two networks, randomly initialized (speed does not depend on the weights): cvkit's smallcnn at 28x28x1
(the Fashion-MNIST default) and timm's resnet18 at 64x64x3. Each is wrapped as `cvkit export` writes it
(normalization + network + probabilities, cvkit.export.deploy.Deployed) and timed on the CPU with 2
threads, fp32: PyTorch eager, eager after BatchNorm folding, TorchScript (traced, folded) and ONNX
Runtime (folded). Images/s at batch 256 and at batch 1, the median of 3 timed repeats after a warm-up.
Results: bench/results/export.json.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import write_result  # noqa: E402

from cvkit.export.deploy import Deployed  # noqa: E402
from cvkit.export.fuse import fuse_batchnorm  # noqa: E402
from cvkit.models import create_model  # noqa: E402

NETS = {"smallcnn": (1, 28), "resnet18": (3, 64)}
BATCHES = (256, 1)


def rate(fn, x: np.ndarray | torch.Tensor, seconds: float = 1.5) -> float:
    fn(x)
    rates = []
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            fn(x)
            n += len(x)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    torch.set_num_threads(2)
    import onnxruntime as ort

    result: dict = {"threads": 2, "onnxruntime": ort.__version__}
    for arch, (chans, size) in NETS.items():
        model = create_model(arch, 10, chans, (size, size)).eval()
        fused, folded, left = fuse_batchnorm(model, arch)
        plain, folded_net = (Deployed(m, [0.5] * chans, [0.25] * chans, "ce").eval() for m in (model, fused))
        example = torch.rand(2, chans, size, size)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            scripted = torch.jit.freeze(torch.jit.trace(folded_net, example))
            path = Path(tempfile.mkdtemp()) / "model.onnx"
            torch.onnx.export(folded_net, (example,), str(path), dynamo=False, opset_version=18,
                              input_names=["image"], output_names=["p"], dynamic_axes={"image": {0: "b"}, "p": {0: "b"}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        row: dict = {"input": [chans, size, size], "batchnorms_folded": folded, "batchnorms_left": left}
        for batch in BATCHES:
            x = torch.rand(batch, chans, size, size)
            with torch.inference_mode():
                timings = {"eager": rate(plain, x), "eager_fused": rate(folded_net, x),
                           "torchscript_fused": rate(scripted, x)}
            timings["onnxruntime_fused"] = rate(lambda a, s=session: s.run(None, {"image": a}), x.numpy())
            row[f"batch_{batch}_images_per_s"] = {k: round(v, 1) for k, v in timings.items()}
            row[f"batch_{batch}_speedup_vs_eager"] = {k: round(v / timings["eager"], 2) for k, v in timings.items()}
        result[arch] = row
    write_result("export", result)


if __name__ == "__main__":
    main()
