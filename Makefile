# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv/ with foldertune installed
# (editable, with the dev extras) the first time, and reuse it afterwards.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

## Train the default backbone (pretrained mobilenet_v2) on the bundled sample photos.
demo: $(STAMP)
	$(BIN)/foldertune train

## Run the whole test suite (the report test drives a real Chromium: see `browser`).
test: $(STAMP) browser
	$(BIN)/python -m pytest

## Debian's chromium and chromedriver for the report test, installed when missing and running as root.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: no chromium/chromedriver and no root to install them: the browser test will be skipped"; fi

lint: $(STAMP)
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis src/*.egg-info
