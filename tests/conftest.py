"""Shared fixtures: tiny real image folders built in tmp_path, and a CLI runner."""

from __future__ import annotations

import contextlib
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cvkit.cli import app

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"


def pytest_configure(config) -> None:
    # Tiny tensors on a 2-core machine shared by two xdist workers: OpenMP threads spinning against
    # each other cost more than the work (measured 30-100x slower convolutions with 2 threads each).
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str):
    """Invoke the CLI; returns the click Result (stdout, stderr and exit_code separately)."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def make_image(path: Path, seed: int, size=(12, 10), mode: str = "RGB") -> Path:
    """A random-noise image (distinct bytes for distinct seeds)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(path)
    return path


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """3 classes x 10 RGB PNGs, some nested one level deeper."""
    root = tmp_path / "src"
    for c, name in enumerate(["cat", "dog", "fox"]):
        for i in range(10):
            sub = root / name / ("nested" if i % 3 == 0 else "") / f"{i:02d}.png"
            make_image(sub, seed=c * 100 + i)
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """An MNIST-style folder: 40 train and 10 test 8x8 images over 5 classes, gzip'ed."""
    root = tmp_path / "idx"
    root.mkdir()
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("t10k", 10)):
        write_idx(root / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 8, 8)))
        write_idx(root / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 5)
    return root


# ----------------------------------------------------------------------------- a prepared dataset and a run

FAST = ["--precision", "fp32", "--memory-format", "contiguous", "--batch-size", "32"]


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("data") / "fashion"
    r = CliRunner()
    assert run(r, "-q", "prepare", SAMPLE / "fashion", "--out", out, "--size", "28", "--val", "0.2", "--test", "0.2").exit_code == 0
    assert run(r, "-q", "normalize", out).exit_code == 0
    return out


@pytest.fixture(scope="session")
def trained(data, tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("runs") / "small"
    result = run(CliRunner(), "train", data, "--out", out, "--epochs", "2", *FAST)
    assert result.exit_code == 0, result.stderr
    return out


def run_ok(*args) -> bool:
    from typer.testing import CliRunner

    result = run(CliRunner(), *args)
    assert result.exit_code == 0, result.stderr
    return True


def run_stdout(*args) -> str:
    result = run(CliRunner(), *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


# ----------------------------------------------------------------------------- a command that runs out of room


def _limit_file_size(limit: int) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def run_with_file_limit(limit: int, *args, cwd: Path | None = None):
    """``python -m cvkit ARGS`` in a child process whose files cannot grow past ``limit`` bytes (as on a full
    disk, every write past it fails with EFBIG); returns the CompletedProcess."""
    import functools
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cvkit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, preexec_fn=functools.partial(_limit_file_size, limit), timeout=300)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): to check that a folder is byte-identical."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Hidden staging or temporary files cvkit left in ``folder`` (``.NAME.*.new``, ``.*.tmp``, ``.*.old-*``)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and
                  (p.name.endswith((".new", ".tmp")) or ".old-" in p.name))


@contextlib.contextmanager
def warnings_printed():
    """Warnings print to (the current) sys.stderr as they would outside pytest, which records them."""
    import sys
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def copy_run_with(trained: Path, folder: Path, **model_json: object) -> Path:
    """A copy of the run ``trained`` in ``folder`` whose model.json has the given keys changed or added."""
    import json
    import shutil

    shutil.copytree(trained, folder)
    info = json.loads((folder / "model.json").read_text())
    info.update(model_json)
    (folder / "model.json").write_text(json.dumps(info))
    return folder


# ----------------------------------------------------------------------------- a run that knows where objects are

# The 32-64 smallcnn (the default before issue 22) the CAM, faithfulness and retrieval tests were built on.
SHAPES_TRAIN = ["--arch", "smallcnn", "--base", "32", "--head", "gap", "--epochs", "12", *FAST]


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """Generated shapes (tests/shapes.py): ``images/`` (3 classes x 60, 32 px RGB) and ``boxes.csv``."""
    from tests.shapes import write_shapes

    root = tmp_path_factory.mktemp("shapes")
    write_shapes(root, 60)
    return root


@pytest.fixture(scope="session")
def shapes_run(shapes, tmp_path_factory) -> Path:
    """smallcnn with a GAP head trained on the shapes (val accuracy 1.0 in about 8 s): CAM-ready."""
    from typer.testing import CliRunner

    data = tmp_path_factory.mktemp("shapes_data") / "data"
    r = CliRunner()
    assert run(r, "-q", "prepare", shapes / "images", "--out", data, "--size", "32", "--val", "0.2",
               "--test", "0.2").exit_code == 0
    assert run(r, "-q", "normalize", data).exit_code == 0
    out = tmp_path_factory.mktemp("shapes_runs") / "gap"
    result = run(r, "-q", "train", data, "--out", out, *SHAPES_TRAIN)
    assert result.exit_code == 0, result.stderr
    return out
