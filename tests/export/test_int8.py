"""``cvkit export --int8``: the ONNX graph statically quantized, calibrated on train images, compared with fp32."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from cvkit.data import load_split
from cvkit.errors import OptionError
from cvkit.export.int8 import check_quantizable, quantize
from tests.conftest import run

# int8 rounding moves a probability by about a percent (export.json's max_abs_prob_diff_fp32), so the top
# class changes only on images whose two best classes are that close: 1 of the fixture's 40 val images
# (97.5%). A quantization gone wrong (scales not calibrated, the wrong input range) agrees about as often
# as guessing among the fixture's classes, far below 90% (4 flips in 40 allowed).
MIN_AGREEMENT = 0.9


def _val_images(trained):
    data = json.loads((trained / "config.json").read_text())["data"]
    info = json.loads((trained / "model.json").read_text())
    split = load_split(data, "val", tuple(info["input_size"]))
    return np.ascontiguousarray(np.asarray(split.images).transpose(0, 3, 1, 2)).astype(np.float32) / 255


def test_int8_writes_a_smaller_quantized_graph_that_predicts_as_fp32(trained, tmp_path, runner):
    out = tmp_path / "int8"
    result = run(runner, "export", trained, "--int8", "--calibration-images", "64", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out / "model.int8.onnx")
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model.int8.onnx", "model.json", "export.json", "int8.png"}
    fp32, int8 = out / "model.onnx", out / "model.int8.onnx"
    # int8 weights: a quarter of fp32's bytes, plus scales and zero points
    assert int8.stat().st_size < 0.4 * fp32.stat().st_size
    ops = [n.op_type for n in onnx.load(str(int8)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert "QuantizeLinear" not in [n.op_type for n in onnx.load(str(fp32)).graph.node]

    x = _val_images(trained)
    probs = {name: ort.InferenceSession(str(f)).run(None, {"image": x})[0] for name, f in (("fp32", fp32), ("int8", int8))}
    agreement = (probs["int8"].argmax(1) == probs["fp32"].argmax(1)).mean()
    assert agreement >= MIN_AGREEMENT
    assert np.allclose(probs["int8"].sum(1), 1, atol=1e-5)  # the softmax stays in floating point
    assert 0 < np.abs(probs["int8"] - probs["fp32"]).max() < 0.2  # quantized: close, not the same

    q = json.loads((out / "export.json").read_text())["int8"]
    assert q["file"] == "model.int8.onnx" and q["calibration"].startswith("64 train images of ")
    assert q["size_bytes"] == {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
    assert set(q["latency_ms"]) == {"fp32", "int8"} and all(set(v) == {"1", "64"} for v in q["latency_ms"].values())
    assert all(t > 0 for v in q["latency_ms"].values() for t in v.values())
    assert q["val_metric"] == "val_acc" and q["val_images"] == len(x)
    assert q["top1_agreement_fp32"] == pytest.approx(agreement, abs=1e-4)
    labels = load_split(json.loads((trained / "config.json").read_text())["data"], "val").labels
    assert q["val"]["int8"] == pytest.approx((probs["int8"].argmax(1) == labels).mean(), abs=1e-4)
    assert q["val"]["fp32"] == q["val"]["run"]
    assert "int8:" in result.stderr and "val_acc" in result.stderr and "MB ->" in result.stderr


def test_calibration_images_are_counted_and_change_the_scales(trained, tmp_path, runner):
    scales = []
    for n in ("1", "64"):
        out = tmp_path / n
        assert run(runner, "-q", "export", trained, "--int8", "--calibration-images", n, "--out", out).exit_code == 0
        assert json.loads((out / "export.json").read_text())["int8"]["calibration"].startswith(f"{n} train images")
        graph = onnx.load(str(out / "model.int8.onnx")).graph
        scales.append({t.name: onnx.numpy_helper.to_array(t).tolist() for t in graph.initializer
                       if t.name.endswith("_scale") and "Relu" in t.name})
    assert scales[0] and scales[0].keys() == scales[1].keys() and scales[0] != scales[1]


def _missing_dataset(trained, folder):
    shutil.copytree(trained, folder)
    config = json.loads((folder / "config.json").read_text())
    config["data"] = str(folder.parent / "gone")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("args,message", [
    (["--int8", "--format", "torchscript"], "Error: --int8 quantizes the ONNX graph, and --format is torchscript; use --format onnx"),
    (["--int8", "--format", "safetensors"], "Error: --int8 quantizes the ONNX graph, and --format is safetensors"),
    (["--int8", "--calibration-images", "0"], "Error: --calibration-images 0 must be a positive number of train images"),
    (["--int8", "--calibration-images", "-5"], "Error: --calibration-images -5 must be a positive number"),
    (["--calibration-images", "16"], "Error: --calibration-images sets how many train images calibrate --int8; add --int8"),
    (["--int8", "--half"], "Error: --int8 and --half both choose the weights' precision; give one of them"),
])
def test_bad_int8_options_exit_2_and_write_nothing(trained, tmp_path, runner, args, message):
    out = tmp_path / "out"
    result = run(runner, "export", trained, *args, "--out", out)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_int8_of_a_run_whose_dataset_is_gone_exits_2(trained, tmp_path, runner):
    moved = _missing_dataset(trained, tmp_path / "run")
    out = tmp_path / "out"
    result = run(runner, "export", moved, "--int8", "--out", out)
    assert result.exit_code == 2
    assert (f"Error: --int8 calibrates on the train images of the run's dataset, and its dataset {tmp_path / 'gone'} "
            f"is missing; put the dataset back") in " ".join(result.stderr.split())
    assert not out.exists()
    assert run(runner, "-q", "export", moved, "--out", out).exit_code == 0  # without --int8 it exports (random images)


def test_a_graph_without_int8_kernels_is_refused(tmp_path):
    fp32 = tmp_path / "softmax.onnx"
    node = helper.make_node("Softmax", ["image"], ["probabilities"], axis=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), fp32)
    images = np.random.default_rng(0).random((8, 4), dtype=np.float32)
    with pytest.raises(OptionError, match=r"--int8: none of toy's layers has an int8 kernel in onnxruntime \(its ops: "
                                          r"Softmax\); export it without --int8"):
        quantize(fp32, tmp_path / "int8.onnx", images, "toy")


def test_a_dense_task_is_refused():
    loaded = SimpleNamespace(task=SimpleNamespace(dense=True, name="segment"))
    with pytest.raises(OptionError, match="--int8 calibrates one input size, and a --task segment run's ONNX graph "
                                          "takes any height and width; export it without --int8"):
        check_quantizable(loaded)
