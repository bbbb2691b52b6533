# deepocr developer commands. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0: on CPU-only machines this resolves to the local CPU wheel (no CUDA downloads);
# on a CUDA machine PyPI's default 2.13.0 build carries CUDA. Override with `make install TORCH=...`.
TORCH ?= torch==2.13.0

.PHONY: help install test lint demo bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

install:  ## create .venv and install deepocr with its dev tools
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@$(BIN)/deepocr --version

test:  ## run the whole test suite (CPU only, no network, no real weights)
	HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest -q

lint:  ## ruff
	$(BIN)/ruff check deepocr_cli tests bench

demo:  ## convert sample_docs with a small random checkpoint (or DEEPOCR_MODEL if set)
	$(BIN)/python -m deepocr_cli.sample_docs sample_docs
	$(BIN)/python -m deepocr_cli.demo sample_docs

bench:  ## CPU benchmarks (model throughput with a small random checkpoint)
	$(BIN)/python bench/model_throughput.py

clean:  ## remove caches and build junk
	rm -rf .pytest_cache build *.egg-info
