"""`cvkit crossval --grid`: values typed by TrainConfig's fields, readable configuration names, one-line errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cvkit.crossval.grid import expand, parse_grid
from cvkit.errors import OptionError
from tests.conftest import run


def test_values_take_the_type_of_their_train_option():
    grid = parse_grid(["weight-decay=0,1e-4", "batchnorm=true,no", "batch_size=16,32", "dropout=none,0.5",
                       "optimizer=sgd,adamw", "epochs=auto,3", "hidden=64+32,16", "--lr=0.1"])
    assert grid == {"weight_decay": [0.0, 1e-4], "batchnorm": [True, False], "batch_size": [16, 32],
                    "dropout": [None, 0.5], "optimizer": ["sgd", "adamw"], "epochs": ["auto", 3],
                    "hidden": [[64, 32], [16]], "lr": [0.1]}
    assert type(grid["batch_size"][0]) is int and type(grid["weight_decay"][0]) is float


def test_several_grids_make_a_product_with_readable_names():
    configs = expand(parse_grid(["weight_decay=0.001,0", "dropout=0.5"]))
    assert [c.name for c in configs] == ["weight_decay=0.001,dropout=0.5", "weight_decay=0.0,dropout=0.5"]
    assert configs[1].options == {"weight_decay": 0.0, "dropout": 0.5}
    assert [c.name for c in expand({})] == ["default"]
    assert [c.name for c in expand(parse_grid(["hidden=64+32,16"]))] == ["hidden=64+32", "hidden=16"]


def test_names_unsafe_as_folders_become_numbered():
    configs = expand(parse_grid(["weights=a/b.safetensors,c d.pt"]))
    assert [c.name for c in configs] == ["c0", "c1"]
    assert configs[1].options == {"weights": "c d.pt"}


@pytest.mark.parametrize("text, needle", [
    ("lrr=0.1", "--grid lrr: 'lrr' is not a train option; did you mean lr?"),
    ("lr", "--grid lr must be KEY=V1,V2,..."),
    ("lr=", "--grid lr= must be KEY=V1,V2,..."),
    ("lr=abc", "--grid lr=abc: 'abc' is not a number for --lr; for example --grid lr=0,0.5"),
    ("batch_size=1.5", "'1.5' is not a whole number for --batch-size"),
    ("pretrained=maybe", "'maybe' is not true or false for --pretrained"),
    ("epochs=0", "'0' is not a number of epochs (1 or more) or auto for --epochs"),
    ("hidden=64+x", "'64+x' is not whole numbers joined by '+' for --hidden"),
    ("batch_size=none", "'none' is not a whole number for --batch-size"),
    ("lr=0.1,1e-1", "--grid lr lists 0.1 twice"),
    ("monitor=val_acc,val_loss", "--grid monitor: the configurations are ranked on one metric; set --monitor"),
    ("budget=10", "--grid budget: crossval trains a planned number of epochs"),
])
def test_bad_grid_is_an_option_error(text, needle):
    with pytest.raises(OptionError) as e:
        parse_grid([text])
    assert needle in str(e.value)


def test_the_same_key_twice_is_refused():
    with pytest.raises(OptionError, match="--grid lr is given twice; put all its values in one --grid lr=V1,V2"):
        parse_grid(["lr=0.1", "lr=0.2"])


@pytest.mark.parametrize("args, needle", [
    (["--grid", "lrr=0.1"], "Error: --grid lrr: 'lrr' is not a train option; did you mean lr?"),
    (["--grid", "lr=abc"], "Error: --grid lr=abc: 'abc' is not a number for --lr"),
    (["--grid", "lr=0.1,0.2", "--lr", "0.3"], "Error: --grid lr=... and --lr both set lr; drop one of them"),
    (["--grid", "optimizer=sgd,foo"], "Error: --grid configuration optimizer=foo: --optimizer foo must be one of"),
])
def test_bad_grid_on_the_command_line_is_one_line_exit_2(data, tmp_path, args, needle):
    out = tmp_path / "cv"
    result = run(CliRunner(), "crossval", data, "--arch", "mlp", "--out", out, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(needle), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_crossval_takes_every_train_option_from_the_one_definition():
    import inspect

    from cvkit.cli.crossval import crossval_command
    from cvkit.cli.train import train_command
    from cvkit.files.config import cli_fields
    from cvkit.files.crossval import EXCLUDED_OPTIONS

    params = inspect.signature(crossval_command).parameters
    assert {f.name for f in cli_fields() if f.name not in EXCLUDED_OPTIONS} <= set(params)
    assert not set(EXCLUDED_OPTIONS) & set(params) and "budget" in EXCLUDED_OPTIONS
    train = inspect.signature(train_command).parameters
    for f in cli_fields():
        if f.name in params:  # same default, same help text: one definition
            assert params[f.name].default == train[f.name].default
            assert params[f.name].annotation.__metadata__[0].help == train[f.name].annotation.__metadata__[0].help


def test_seed_is_a_grid_key_for_random_restarts(data, tmp_path):
    """--grid seed=0,1: each configuration trains with its own seed (the folds stay those of --seed), and the
    refit takes the seed that ranked first."""
    import json

    from tests.conftest import FAST, run_ok

    assert parse_grid(["seed=0,7"]) == {"seed": [0, 7]}
    out = tmp_path / "cv"
    assert run_ok("-q", "crossval", data, "--arch", "mlp", "--epochs", "1", *FAST, "--folds", "2", "--grid", "seed=0,7",
                  "--out", out)
    seeds = {c: json.loads((out / "folds" / c / "0" / "config.json").read_text())["seed"] for c in ("seed=0", "seed=7")}
    assert seeds == {"seed=0": 0, "seed=7": 7}
    a, b = (out / "folds" / c / "0" / "metrics.csv" for c in ("seed=0", "seed=7"))
    assert a.read_text() != b.read_text()  # other initial weights and draws: other results
    best = json.loads((out / "best.json").read_text())
    refit = json.loads((out / "final" / "config.json").read_text())
    assert refit["seed"] == best["options"]["seed"]
    result = run(CliRunner(), "crossval", data, "--grid", "seed=-1", "--out", tmp_path / "bad")
    assert result.exit_code == 2 and "--seed -1 must be a whole number from 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
