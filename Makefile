# Quick start: `make demo`, then `make test`. Both create .venv with pip when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := out/demo

.PHONY: demo test test-gpu bench docs clean

# The venv is rebuilt when pyproject.toml changes; pip takes torch from this machine's local wheels.
$(VENV): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(VENV)

demo: $(VENV)
	$(BIN)/cvkit prepare sample_data/fashion --out $(DEMO)/fashion --size 28 --val 0.2 --test 0.2 --force
	$(BIN)/cvkit normalize $(DEMO)/fashion
	$(BIN)/cvkit augment $(DEMO)/fashion --hflip 0.5 --preview 4   # train's default policy, written out and previewed
	$(BIN)/cvkit train $(DEMO)/fashion --out $(DEMO)/run --force
	$(BIN)/cvkit evaluate $(DEMO)/run --split test
	$(BIN)/cvkit predict $(DEMO)/run sample_data/fashion/bag sample_data/photos -k 3
	$(BIN)/cvkit cam $(DEMO)/run sample_data/fashion/bag sample_data/fashion/sneaker --method gradcam,layercam
	$(BIN)/cvkit visualize $(DEMO)/run --curves --filters --confusion --max-patches --units 4 --top 6 --saliency sample_data/fashion/bag/000.png --smooth 8
	$(BIN)/cvkit export $(DEMO)/run --format onnx --fuse-bn
	$(BIN)/cvkit report $(DEMO)/run   # one HTML page of the run; prints its path
	@echo "Demo outputs: dataset $(DEMO)/fashion (augment_preview.png), run $(DEMO)/run (metrics.csv, curves.png, eval_test/, predict/, cam/, visualize/, export_onnx/, report/index.html: open it in a browser)"

test: $(VENV)
	$(BIN)/python -m pytest -n 2 -q

# cvkit's CUDA path (tests/gpu/): train, resume, evaluate, predict, cam, export, retrieve, each precision,
# channels-last, --compile, torchrun, determinism, evaluation memory. Skipped, with the reason, without a GPU.
test-gpu: $(VENV)
	$(BIN)/python -m pytest tests/gpu -q -rs

bench: $(VENV)
	$(BIN)/python bench/run.py

# The command pages (docs/commands/) from the CLI's help, and bench/README.md from bench/results/*.json.
docs: $(VENV)
	$(BIN)/python docs/generate.py
	$(BIN)/python bench/report.py

clean:
	rm -rf out .pytest_cache
