"""``train --arch perceptron --optimizer perceptron``: the perceptron learning rule, image by image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import run, run_ok

FAST = ["--batch-size", "16", "--precision", "fp32", "--memory-format", "contiguous"]
RULE = ["--arch", "perceptron", "--optimizer", "perceptron", "--augment", "none", *FAST]


def write_source(root: Path, images: list[np.ndarray], labels: list[int], every: int = 5) -> Path:
    """A CSV source of 8x8 grayscale PNGs: every ``every``-th image of each class to val, the rest to train."""
    root.mkdir(parents=True, exist_ok=True)
    rows, seen = ["path,label,split"], {}
    for i, (image, label) in enumerate(zip(images, labels)):
        seen[label] = seen.get(label, -1) + 1
        Image.fromarray(image, "L").save(root / f"{i}.png")
        rows.append(f"{i}.png,c{label},{'val' if seen[label] % every == 0 else 'train'}")
    (root / "source.csv").write_text("\n".join(rows) + "\n")
    out = root / "prepared"
    assert run_ok("-q", "prepare", root / "source.csv", "--out", out, "--size", "8")
    return out


def digit_images(classes: tuple[int, ...]) -> tuple[list[np.ndarray], list[int]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.isin(digits.target, classes)
    images = np.rint(digits.images[keep] * 255 / 16).astype(np.uint8)
    return list(images), [int(t) for t in digits.target[keep]]


@pytest.fixture(scope="module")
def zero_one(tmp_path_factory) -> Path:
    """Digits 0 and 1 (linearly separable)."""
    return write_source(tmp_path_factory.mktemp("zero_one"), *digit_images((0, 1)))


@pytest.fixture(scope="module")
def three_digits(tmp_path_factory) -> Path:
    return write_source(tmp_path_factory.mktemp("three"), *digit_images((3, 5, 8)))


@pytest.fixture(scope="module")
def xor(tmp_path_factory) -> Path:
    """8x8 images whose left half is dark or bright (a) and right half too (b), with noise; the class is
    a XOR b: no weighted sum of the pixels separates it."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(240):
        a, b = (i // 2) % 2, i % 2
        image = np.empty((8, 8))
        image[:, :4], image[:, 4:] = 40 + 170 * a, 40 + 170 * b
        images.append(np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8))
        labels.append(a ^ b)
    return write_source(tmp_path_factory.mktemp("xor"), images, labels)


# ----------------------------------------------------------------------------- the rule against plain Python


def reference(w: list[list[float]], b: list[float], xs: list[list[float]], ys: list[int], eta: float):
    """The textbook rule, one image at a time. One row: the binary perceptron (labels 0/1 as -1/+1); two
    rows: the binary perceptron on the single vector w1 - w0; more: one vector per class."""
    k = len(w)
    if k == 2:  # the one vector of two classes
        w, b = [[a - c for a, c in zip(w[1], w[0])]], [b[1] - b[0]]
    mistakes = 0
    for x, y in zip(xs, ys):
        scores = [sum(wi * xi for wi, xi in zip(row, x)) + bias for row, bias in zip(w, b)]
        if len(w) == 1:
            sign = 1 if y == 1 else -1
            if sign * scores[0] <= 0:
                w[0] = [wi + eta * sign * xi for wi, xi in zip(w[0], x)]
                b[0] += eta * sign
                mistakes += 1
        else:
            predicted = scores.index(max(scores))
            if predicted != y:
                w[y] = [wi + eta * xi for wi, xi in zip(w[y], x)]
                w[predicted] = [wi - eta * xi for wi, xi in zip(w[predicted], x)]
                b[y] += eta
                b[predicted] -= eta
                mistakes += 1
    return w, b, mistakes


@pytest.mark.parametrize("outputs,classes", [(1, (3, 8)), (2, (3, 8)), (3, (3, 5, 8))])
@pytest.mark.parametrize("zero", [True, False])
def test_the_rule_is_the_sequential_rule_of_plain_python(outputs, classes, zero):
    from cvkit.models import create_model
    from cvkit.train.perceptron import PerceptronRule

    images, labels = digit_images(classes)
    x = torch.tensor(np.stack(images[:300]), dtype=torch.float32)[:, None] / 255 - 0.3
    y = torch.tensor([classes.index(t) for t in labels[:300]])
    torch.manual_seed(0)
    model = create_model("perceptron", outputs, 1, (8, 8))
    rule = PerceptronRule(model, lr=0.5, zero=zero)
    layer = model.get_classifier()
    w0, b0 = layer.weight.double().tolist(), layer.bias.double().tolist()
    found = sum(int(rule.step(images=x[i:i + 32], labels=y[i:i + 32])) for i in range(0, 300, 32))
    w, b, mistakes = reference(w0, b0, x.flatten(1).double().tolist(), y.tolist(), 0.5)
    assert found == mistakes > 5
    got_w, got_b = layer.weight.detach().double(), layer.bias.detach().double()
    if outputs == 2:  # the one vector the two rows hold
        got_w, got_b = got_w[1:] - got_w[:1], got_b[1:] - got_b[:1]
    assert torch.allclose(got_w, torch.tensor(w, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(got_b, torch.tensor(b, dtype=torch.float64), atol=1e-4)


def test_an_epoch_of_training_is_the_rule_over_the_shuffled_images(three_digits, tmp_path):
    """The trainer's epoch against the reference fed the same images in the same (shuffled) order."""
    from cvkit.files.config import TrainConfig
    from cvkit.train.trainer import Trainer

    cfg = TrainConfig(data=str(three_digits), out=str(tmp_path / "run"), arch="perceptron", optimizer="perceptron",
                      augment="none", batch_size=16, precision="fp32", memory_format="contiguous", seed=3)
    trainer = Trainer.build(cfg)
    order = torch.Generator()
    order.set_state(trainer.order_gen.get_state())
    xs, ys = [], []
    for images, labels in trainer.batches.epoch(order):
        xs += trainer.pre.normalize(trainer.pre.to_unit(images)).flatten(1).double().tolist()
        ys += labels.tolist()
    layer = trainer.model.get_classifier()
    assert not layer.weight.any()  # the classic start: w = 0
    row = trainer.train_epoch(1)
    w, b, mistakes = reference(layer.weight.new_zeros(layer.weight.shape).tolist(), [0.0] * 3, xs, ys, 1.0)
    assert row["errors"] == mistakes > 0
    assert row["train_acc"] == pytest.approx(1 - mistakes / len(ys))
    assert torch.allclose(layer.weight.detach().double(), torch.tensor(w, dtype=torch.float64), atol=1e-4)


# ----------------------------------------------------------------------------- through the CLI


def test_separable_digits_are_learned_to_zero_errors(zero_one, tmp_path):
    out = tmp_path / "run"
    assert run_ok("-q", "train", zero_one, "--out", out, *RULE, "--epochs", "8")
    metrics = pd.read_csv(out / "metrics.csv")
    assert "errors" in metrics.columns and metrics["errors"].iloc[0] > 0
    assert metrics["errors"].iloc[-1] == 0  # converged (Novikoff): no mistake in a whole epoch
    assert (metrics["train_acc"].iloc[-1], metrics["val_acc"].iloc[-1]) == (1.0, 1.0)
    weights = load_file(out / "model.safetensors")
    w = weights["head.fc.weight"]
    assert torch.allclose(w[0], -w[1])  # from zero, the two rows are one vector w1 - w0 = 2 w1
    assert (out / "curves.png").stat().st_size > 0


def test_one_output_with_bce_is_one_weight_vector(zero_one, tmp_path):
    out = tmp_path / "bce"
    assert run_ok("-q", "train", zero_one, "--out", out, *RULE, "--epochs", "8", "--loss", "bce")
    assert load_file(out / "model.safetensors")["head.fc.weight"].shape == (1, 64)
    assert pd.read_csv(out / "metrics.csv")["errors"].iloc[-1] == 0


def test_xor_keeps_making_errors(xor, tmp_path):
    out = tmp_path / "xor"
    assert run_ok("-q", "train", xor, "--out", out, *RULE, "--epochs", "8")
    errors = pd.read_csv(out / "metrics.csv")["errors"]
    train_images = 192
    assert errors.min() > 0.2 * train_images  # never converges: no line separates XOR


def test_the_same_seed_gives_the_same_weights(three_digits, tmp_path):
    for name in ("a", "b"):
        assert run_ok("-q", "train", three_digits, "--out", tmp_path / name, *RULE, "--epochs", "2", "--seed", "5")
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_another_arch_is_refused(zero_one, tmp_path):
    result = run(CliRunner(), "train", zero_one, "--out", tmp_path / "mlp", "--arch", "mlp", "--optimizer", "perceptron",
                 "--epochs", "1", *FAST)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --optimizer perceptron is the perceptron learning rule, for --arch "
                                    "perceptron (one linear layer); --arch mlp trains with sgd, adam or adamw")
    assert not (tmp_path / "mlp").exists()


def test_an_interrupted_run_resumes_where_the_rule_was(three_digits, tmp_path):
    from cvkit.errors import Interrupted
    from cvkit.train import TrainConfig, fit

    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_ok("-q", "train", three_digits, "--out", whole, *RULE, "--epochs", "3", "--seed", "2")

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    cfg = TrainConfig(data=str(three_digits), out=str(part), arch="perceptron", optimizer="perceptron", augment="none",
                      epochs=3, batch_size=16, precision="fp32", memory_format="contiguous", seed=2)
    with pytest.raises(Interrupted):
        fit(cfg, callbacks=(interrupt,))
    assert run_ok("-q", "train", "--resume", part)
    a, b = (load_file(r / "model.safetensors") for r in (whole, part))
    assert all(torch.equal(a[k], b[k]) for k in a)
    times = ["seconds", "images_per_s"]
    assert pd.read_csv(whole / "metrics.csv").drop(columns=times).equals(
        pd.read_csv(part / "metrics.csv").drop(columns=times))


@pytest.mark.parametrize("extra,message", [
    (["--momentum", "0.9"], "--momentum does not apply to --optimizer perceptron"),
    (["--weight-decay", "1e-4"], "--weight-decay does not apply to --optimizer perceptron"),
    (["--accumulate", "2"], "--accumulate does not apply to --optimizer perceptron"),
    (["--schedule", "cosine"], "--schedule cosine: the perceptron rule keeps eta (--lr) constant"),
    (["--precision", "bf16"], "--precision bf16: the perceptron rule runs in fp32"),
    (["--lr-find"], "--lr-find has nothing to find for --optimizer perceptron"),
])
def test_what_the_rule_cannot_take_is_refused(zero_one, tmp_path, extra, message):
    out = tmp_path / "bad"
    result = run(CliRunner(), "train", zero_one, "--out", out, *RULE, "--epochs", "1", *extra)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_mixing_policy_is_refused(zero_one, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(zero_one, mixed)
    assert run_ok("-q", "augment", mixed, "--hflip", "0", "--mixup", "0.2")
    result = run(CliRunner(), "train", mixed, "--out", tmp_path / "run", "--arch", "perceptron", "--optimizer",
                 "perceptron", "--epochs", "1", *FAST)
    assert result.exit_code == 2
    assert "mixes images (mixup/cutmix): give --augment none" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_task_other_than_one_class_per_image_is_refused(tmp_path):
    images, labels = digit_images((0, 1))
    root = tmp_path / "sizes"
    root.mkdir()
    rows = ["path,size,split"]
    for i, image in enumerate(images[:40]):
        Image.fromarray(image, "L").save(root / f"{i}.png")
        rows.append(f"{i}.png,{i % 7},{'val' if i % 5 == 0 else 'train'}")
    (root / "source.csv").write_text("\n".join(rows) + "\n")
    assert run_ok("-q", "prepare", root / "source.csv", "--out", tmp_path / "regress", "--size", "8", "--task", "regress",
                  "--targets", "size")
    result = run(CliRunner(), "train", tmp_path / "regress", "--out", tmp_path / "run", "--arch", "perceptron",
                 "--optimizer", "perceptron", "--epochs", "1", *FAST)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --optimizer perceptron learns one class per image; this run's task is "
                                    "regress")
    assert not (tmp_path / "run").exists()
