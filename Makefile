# ddpm_lightning: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# This machine and CI keep MNIST and the FID weights in ../shared; real users download them.
SHARED := $(abspath ../shared)
export DDPM_DATA_DIR ?= $(if $(wildcard $(SHARED)/data/MNIST/raw),$(SHARED)/data,)
export DDPM_FID_WEIGHTS ?= $(if $(wildcard $(SHARED)/weights/pt_inception-2015-12-05.pth),$(SHARED)/weights/pt_inception-2015-12-05.pth,)
ifeq ($(DDPM_DATA_DIR),)
unexport DDPM_DATA_DIR
endif
ifeq ($(DDPM_FID_WEIGHTS),)
unexport DDPM_FID_WEIGHTS
endif

ARGS ?=
TEST_WORKERS ?= 2
TB_HOST ?= 127.0.0.1
TB_PORT ?= 6006

.PHONY: help install train sample evaluate report lint test test-fast test-gpu tensorboard clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package (editable, with the dev extra)

train: $(STAMP) ## train the default config (ARGS="trainer.max_epochs=1 schedule=geometric" to change it; ARGS="-m ..." sweeps)
	$(PY) -m ddpm_lightning.train $(ARGS)

sample: $(STAMP) ## sample from a checkpoint (ARGS="ckpt_path=outputs/.../checkpoints/last.ckpt n=64")
	$(PY) -m ddpm_lightning.sample $(ARGS)

evaluate: $(STAMP) ## metrics of a checkpoint (ARGS="ckpt_path=... n=1000 sampler=ddim")
	$(PY) -m ddpm_lightning.evaluate $(ARGS)

report: $(STAMP) ## table + figures of a sweep or run directory (ARGS="outputs/train/multiruns/<date>/<time>")
	$(PY) -m ddpm_lightning.report $(ARGS)

lint: $(STAMP) ## ruff check and ruff format --check (rules in pyproject.toml [tool.ruff]); `ruff format .` fixes the format
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint ## lint, then the whole test suite, in TEST_WORKERS processes (a test file each at a time)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

test-fast: $(STAMP) ## the in-process tests only: no entry-point subprocess or full fit (e2e), no Inception (slow), no GPU
	$(PY) -m pytest -q -m "not e2e and not slow and not gpu" $(ARGS)

test-gpu: $(STAMP) ## the GPU tier (tests/gpu, <= 5 min on one H200; skipped without CUDA). No venv there: bash .gpu/run.sh python3 -m pytest -q tests/gpu
	$(PY) -m pytest -q tests/gpu $(ARGS)

tensorboard: $(STAMP) ## serve the runs under outputs/ on TB_HOST:TB_PORT (127.0.0.1:6006)
	$(VENV)/bin/tensorboard --logdir outputs --host $(TB_HOST) --port $(TB_PORT)

clean: ## remove caches (keeps outputs/ and .venv)
	rm -rf .pytest_cache .cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The study (conf/experiment/study.yaml): 5 runs, then the report (table + figures) in the sweep dir.
REPRO_STAMP := $(shell date +%Y-%m-%d_%H-%M-%S)
STUDY_DIR ?= outputs/study/$(REPRO_STAMP)
SMOKE_DIR ?= outputs/study-smoke/$(REPRO_STAMP)
REPORT_ARGS ?=
SMOKE_ARGS := +debug=smoke  # conf/debug/smoke.yaml: T=10, 2 epochs of 2 batches of 16, metrics on 16 samples, CPU

.PHONY: reproduce reproduce-smoke

reproduce: $(STAMP) ## the whole study (5 runs) + report into STUDY_DIR (one GPU: est. 1-4 h; 2-core CPU: weeks)
	$(PY) -m ddpm_lightning.train experiment=study hydra.sweep.dir=$(STUDY_DIR) $(ARGS); status=$$?; \
	$(PY) -m ddpm_lightning.report $(STUDY_DIR) $(REPORT_ARGS) && exit $$status

reproduce-smoke: $(STAMP) ## the same sweep + report with tiny settings on CPU (a few minutes) into SMOKE_DIR
	$(PY) -m ddpm_lightning.train experiment=study hydra.sweep.dir=$(SMOKE_DIR) $(SMOKE_ARGS) $(ARGS); status=$$?; \
	$(PY) -m ddpm_lightning.report $(SMOKE_DIR) --early-epoch 0 --late-epoch 1 $(REPORT_ARGS) && exit $$status

# Benchmarks against plain PyTorch (benchmarks/README.md); results in benchmarks/results/ (git-ignored).
.PHONY: bench bench-gpu

bench: $(STAMP) ## benchmark vs plain PyTorch: CPU, then GPU if present (~10-15 min on 2 cores; ARGS="--ckpt ...")
	$(PY) -m benchmarks.bench $(ARGS)

bench-gpu: $(STAMP) ## the GPU targets PASS/FAIL: bench sections + the five study_fast runs (2 epochs), both studies projected (<= 10 min)
	$(PY) -m benchmarks.gpu_study $(ARGS)
