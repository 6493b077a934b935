# Two commands matter: `make serve` and `make test`. Both install what is missing first,
# always the exact versions in uv.lock (`uv sync --locked`), never a fresh resolve.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL_CACHE ?= $(HOME)/.cache/speakerscribe
STAMP := $(VENV)/.installed
# uv itself, pinned, in a folder of its own when it is not on PATH already.
UV_VERSION := 0.13.9
TOOLS := .tools
UV ?= $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
LINTED := speakerscribe deployments pipeline_graph.py
SERVE_CONFIG ?= serve_config.cpu.yaml
# The job store (jobs-<app>.sqlite3) and large job payloads (blobs/) live here.
DATA_DIR ?= $(HOME)/.local/share/speakerscribe
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install models preflight serve test test-unit test-e2e test-cluster test-restart lint format lock bench clean

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --extra test --python $(PYTHON)
	$(PY) -m speakerscribe.preflight
	touch $(STAMP)

install: $(STAMP) models

# The pyannote segmentation checkpoint comes out of one pinned whisperx wheel (sha256-checked).
models: $(STAMP)
	$(PY) -m speakerscribe.fetch_models fetch --cache-dir $(MODEL_CACHE)

# One line and a non-zero exit when torch and torchaudio (or another native library) do not load.
preflight: $(STAMP)
	$(PY) -m speakerscribe.preflight

serve: install preflight
	mkdir -p $(DATA_DIR)
	SPEAKERSCRIBE_DATA_DIR=$(DATA_DIR) $(VENV)/bin/serve run $(SERVE_CONFIG)

test: install
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

test-e2e: install
	$(PY) -m pytest tests/e2e

# A local two-node Ray cluster (head + worker, 4 CPUs and 2 logical GPUs each, own temp dir
# and ports) running serve_config.yaml with bundled models: autoscaling, fractional GPUs,
# replica and node loss. Not part of `make test`.
test-cluster: install
	$(PY) -m pytest tests/cluster

# Jobs across a whole restart: `make serve`, `serve shutdown` and `ray stop`, `make serve`
# again, on SQLite and on a throwaway PostgreSQL. It stops every Ray instance on this
# machine (`ray stop`), so it runs alone. Not part of `make test`.
test-restart: install
	$(PY) -m pytest tests/restart

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(LINTED)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Re-resolve on purpose: newest versions within pyproject.toml's ranges and [tool.uv]'s pins.
# Run `make test` before committing the new uv.lock.
lock: | $(UV)
	$(UV) lock --upgrade

bench: install
	$(PY) load/bench_pipeline.py

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache test-artifacts
