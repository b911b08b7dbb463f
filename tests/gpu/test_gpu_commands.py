"""train, resume, evaluate, predict, cam, export and retrieve with ``--device DEVICE`` (see conftest.py),
each checked against the same command on the CPU where the two should agree."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cvkit.data import load_split
from cvkit.runtime import load_run
from tests.conftest import SAMPLE
from tests.gpu.conftest import (DEVICE, FP32_TOLERANCE, GPU, ON_CUDA, RUN_PRECISION_TOLERANCE, cli, metrics, resolved,
                                same_device_type)

pytestmark = GPU

BAG, SNEAKER = SAMPLE / "fashion" / "bag", SAMPLE / "fashion" / "sneaker"
SIDES = {"device": DEVICE, "cpu": "cpu"}  # output folder -> --device (distinct folders when DEVICE is cpu)


def test_train_runs_on_the_device_with_its_data_resident(device_run):
    r = resolved(device_run)
    assert same_device_type(r["device"]) and r["world_size"] == 1
    assert r["resident"] is True  # the packed splits were copied to the device once, batches index them there
    if ON_CUDA:  # the auto rule on CUDA, chosen without timing
        assert r["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
        assert r["memory_format"] == "channels_last" and not r.get("speed_probe_ms_per_step")
    table = metrics(device_run)
    assert list(table["epoch"]) == [1, 2, 3, 4]
    assert table["train_loss"].iloc[-1] < table["train_loss"].iloc[0] - 0.1  # it learned
    assert (device_run / "model.safetensors").is_file() and (device_run / "last.ckpt").is_file()


def test_evaluate_on_the_device_agrees_with_the_cpu(device_run, tmp_path):
    scores = {side: json.loads(cli("-q", "evaluate", device_run, "--split", "test", "--json", "--out",
                                   tmp_path / side, device=where).stdout) for side, where in SIDES.items()}
    here, cpu = scores["device"], scores["cpu"]
    assert here["count"] == cpu["count"] == 40
    assert np.isfinite([here["accuracy"], here["log_loss"], here["ece"]]).all()
    assert here["log_loss"] == pytest.approx(cpu["log_loss"], abs=0.02)
    a, b = (pd.read_csv(tmp_path / side / "predictions.csv") for side in SIDES)
    assert list(a["path"]) == list(b["path"])
    # the run's precision on the device, fp32 on the CPU: only a near tie may be decided the other way
    assert np.abs(_probs(a) - _probs(b)).max() <= RUN_PRECISION_TOLERANCE
    top2 = np.sort(_probs(b), axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * RUN_PRECISION_TOLERANCE
    assert clear.any() and (a["predicted"] == b["predicted"])[clear].all()
    assert abs(here["accuracy"] - cpu["accuracy"]) <= (~clear).sum() / 40 + 1e-9


def _probs(table: pd.DataFrame) -> np.ndarray:
    return table[[c for c in table.columns if c.startswith("prob_")]].to_numpy(dtype=float)


def test_predict_on_the_device_agrees_with_the_cpu(device_run, tmp_path):
    tables = {}
    for side, where in SIDES.items():
        result = cli("-q", "predict", device_run, BAG, SNEAKER, "-k", "3", "--out", tmp_path / side, device=where)
        assert result.stdout.strip() == str(tmp_path / side / "predictions.csv")
        tables[side] = pd.read_csv(tmp_path / side / "predictions.csv")
    here, cpu = tables["device"], tables["cpu"]
    assert len(here) == 40 and list(here["path"]) == list(cpu["path"])
    probs = _probs(here)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-3)
    assert np.abs(probs - _probs(cpu)).max() <= RUN_PRECISION_TOLERANCE


def test_cam_on_the_device_matches_the_cpu(device_run, tmp_path):
    images = [SNEAKER / "000.png", SNEAKER / "001.png"]
    for side, where in SIDES.items():  # one class for both, so a near tie cannot explain two different classes
        cli("-q", "cam", device_run, *images, "--method", "gradcam,layercam", "--class", "sneaker", "--out",
            tmp_path / side, device=where)
    here, cpu = (pd.read_csv(tmp_path / side / "cams.csv") for side in SIDES)
    assert len(here) == 4 and set(here["method"]) == {"gradcam", "layercam"} and set(here["class"]) == {"sneaker"}
    for name in here["map"]:
        a, b = np.load(tmp_path / "device" / name), np.load(tmp_path / "cpu" / name)
        assert a.shape == (28, 28) and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1 + 1e-6
        if np.ptp(b) == 0:  # a map with nothing above zero (the class gets no positive evidence) stays so
            assert np.allclose(a, b, atol=RUN_PRECISION_TOLERANCE), name
        else:
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9, name
    assert list(here["map"]) == list(cpu["map"])


def test_export_onnx_predicts_as_the_run_does_on_the_device(device_run, data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    cli("-q", "export", device_run, "--format", "onnx", "--out", out)
    checked = json.loads((out / "export.json").read_text())  # export's own check: onnxruntime on the CPU
    assert checked["max_abs_prob_diff"] <= 1e-3 and checked["top1_agreement"] == 1.0
    cuda_ep = "CUDAExecutionProvider"
    providers = [cuda_ep, "CPUExecutionProvider"] if ON_CUDA and cuda_ep in ort.get_available_providers() \
        else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=providers)
    ran_on = session.get_providers()[0]  # onnxruntime falls back to the CPU when its CUDA libraries do not load
    images = np.asarray(load_split(data, "val", (28, 28)).images)
    got = session.run(None, {"image": images.transpose(0, 3, 1, 2).astype(np.float32) / 255})[0]
    want, _ = load_run(device_run, torch.device(DEVICE), precision="fp32").predict(images)
    assert got.shape == want.shape and np.abs(got - want).max() <= FP32_TOLERANCE, ran_on
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * FP32_TOLERANCE  # a near tie may go either way within the tolerance
    assert clear.any() and (got.argmax(1) == want.argmax(1))[clear].all()


def test_retrieve_on_the_device_finds_each_image_itself(device_run, data, tmp_path):
    for side, where in SIDES.items():
        summary = json.loads(cli("-q", "retrieve", "index", device_run, data, "--split", "train", "--out",
                                 tmp_path / f"index_{side}", "--json", device=where).stdout)
        assert summary["count"] == 120 and summary["added"] == 120
    here, cpu = (np.load(tmp_path / f"index_{side}" / "embeddings.npy") for side in SIDES)
    assert here.shape == cpu.shape and np.isfinite(here).all()
    assert np.allclose(np.linalg.norm(here, axis=1), 1, atol=1e-3)
    assert (np.sum(here * cpu, axis=1) > 0.99).all()  # cosine of each image's two embeddings
    queries = list(pd.read_csv(tmp_path / "index_device" / "items.csv")["path"][:3])
    cli("-q", "retrieve", "query", tmp_path / "index_device", *queries, "-k", "3", "--out", tmp_path / "q")
    found = pd.read_csv(tmp_path / "q" / "neighbors.csv").query("rank == 1")
    assert list(found["path"]) == queries and (found["score"] > 0.99).all()


def test_an_interrupted_run_resumes_on_the_device_as_if_uninterrupted(data, tmp_path):
    """The checkpoint keeps the CUDA generator (dropout masks) and fp16's loss scale as well as the CPU's state.

    On CUDA, cvkit leaves cuDNN free to pick its algorithms (torch.backends.cudnn.deterministic is off), and
    some weight-gradient kernels add in a different order on each run, so the comparison allows a relative
    1e-3; a lost dropout generator or loss scale changes the losses of the resumed epochs by far more. On
    the CPU the two runs are bit for bit the same."""
    from cvkit.errors import Interrupted
    from cvkit.train import TrainConfig, fit

    precision, memory_format = ("fp16", "channels_last") if ON_CUDA else ("fp32", "contiguous")
    speed = ["--precision", precision, "--memory-format", memory_format]
    whole, part = tmp_path / "whole", tmp_path / "part"
    cli("-q", "train", data, "--out", whole, "--epochs", "3", "--batch-size", "32", *speed)

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    cfg = TrainConfig(data=str(data), out=str(part), epochs=3, batch_size=32, precision=precision,
                      memory_format=memory_format, device=DEVICE)
    with pytest.raises(Interrupted, match="continue with 'cvkit train --resume"):
        fit(cfg, callbacks=(interrupt,))
    ckpt = torch.load(part / "last.ckpt", weights_only=True)
    if ON_CUDA:
        assert ckpt["rng_cuda"] is not None and ckpt["scaler"]["scale"] > 0
    result = cli("train", "--resume", part)
    assert "epoch 2/3" in result.stderr and "epoch 1/3" not in result.stderr
    a, b = metrics(whole), metrics(part)
    assert list(b["epoch"]) == [1, 2, 3] and list(a["lr"]) == list(b["lr"])
    columns = ["train_loss", "train_acc", "val_loss", "val_acc"]
    if not ON_CUDA:
        assert a[columns].equals(b[columns])
        return
    assert np.allclose(a[["train_loss", "val_loss"]], b[["train_loss", "val_loss"]], rtol=1e-3), (a, b)
    # an accuracy moves in steps of one image: 96 trained on per epoch (3 batches of 32), 40 validated
    assert (abs(a["train_acc"] - b["train_acc"]) <= 1 / 96 + 1e-9).all()
    assert (abs(a["val_acc"] - b["val_acc"]) <= 1 / 40 + 1e-9).all()
