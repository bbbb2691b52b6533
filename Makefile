# deepocr developer commands. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 from pip's default index, unless TORCH_INDEX names one: PyPI's Linux wheel is the CUDA build
# (GBs of NVIDIA libraries); CPU-only machines want TORCH_INDEX=https://download.pytorch.org/whl/cpu, GPU
# machines a cuXXX index (README, "Which torch you get"). Override the pin with `make install TORCH=...`.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: help install test lint demo bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

install:  ## create .venv and install deepocr with its dev tools
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"
	@$(BIN)/deepocr --version

test:  ## run the whole test suite (CPU only, no network, no real weights)
	HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest -q

lint:  ## ruff
	$(BIN)/ruff check deepocr_cli tests bench

demo:  ## regenerate sample_docs/ and convert them (DEEPOCR_MODEL if set, else a small scripted checkpoint)
	$(BIN)/python -m deepocr_cli.sample_docs sample_docs
	@if [ -n "$$DEEPOCR_MODEL" ]; then \
	  $(BIN)/deepocr convert sample_docs --force; \
	else \
	  echo "DEEPOCR_MODEL is not set: using a tiny scripted checkpoint; the outputs show the plumbing, not real OCR."; \
	  $(BIN)/python -c "from deepocr_cli.model import write_random_checkpoint as w; w('.demo-model', size='tiny', seed=1, script='<|ref|>image<|/ref|><|det|>[[100,50 ,900,\\n620]]<|/det|>\\n# Hello deepocr')"; \
	  $(BIN)/deepocr convert sample_docs --model .demo-model --force; \
	fi

bench:  ## CPU benchmarks (model throughput with a small random checkpoint)
	$(BIN)/python bench/model_throughput.py

clean:  ## remove caches and build junk
	rm -rf .pytest_cache build *.egg-info
