# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv/ with foldertune installed
# (editable, with the dev extras) the first time, and reuse it afterwards.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

## Train the default backbone (pretrained mobilenet_v2) on the bundled sample photos.
demo: $(STAMP)
	$(BIN)/foldertune train

## Run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache src/*.egg-info
