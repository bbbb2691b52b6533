# deepocr developer commands. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 from pip's default index, unless TORCH_INDEX names one: PyPI's Linux wheel is the CUDA build
# (GBs of NVIDIA libraries); CPU-only machines want TORCH_INDEX=https://download.pytorch.org/whl/cpu, GPU
# machines a cuXXX index (README, "Which torch you get"). Override the pin with `make install TORCH=...`.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

#: The lowest versions of the libraries that read inputs, as pyproject.toml declares them (`make test-deps`).
MIN_DEPS ?= pymupdf==1.25.3 pillow==10.1.0 transformers==4.51.0
MIN_VENV ?= .venv-min
#: What `make test-deps` runs against MIN_DEPS: reading, rendering, hostile inputs, names, tokenizer loading.
DEPS_TESTS ?= tests/test_render.py tests/test_discover.py tests/test_hostile_inputs.py tests/test_names.py \
	tests/model/test_loading.py

.PHONY: help install test test-deps lint demo bench clean

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

test-deps:  ## input/render tests against the lowest supported PyMuPDF, Pillow, transformers (after make install)
	@test -x $(BIN)/python || { echo "make test-deps needs $(VENV): run make install first"; exit 1; }
	$(PY) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q $(MIN_DEPS)
	@# Everything else (torch, typer, pytest...) is the current set from $(VENV), after the pinned ones on sys.path.
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
	  > "$$($(MIN_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_deepocr_current_deps.pth"
	$(MIN_VENV)/bin/python -c "import sys, importlib.metadata as m; \
	  bad = [(p, m.version(p.split('==')[0])) for p in sys.argv[1:] if m.version(p.split('==')[0]) != p.split('==')[1]]; \
	  assert not bad, f'not the lowest versions: {bad}'; print('testing against', *sys.argv[1:])" $(MIN_DEPS)
	HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES= PYTHONPATH=$(CURDIR) $(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider $(DEPS_TESTS)

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
