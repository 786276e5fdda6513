# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build where one lies on local disk; a plain PyPI install gives a CUDA build on GPU machines.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint format test-slow test-faults test-storage test-slurm clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/snakemake --cores all --configfile example/demo.yaml
	$(BIN)/atlas stats --outdir results/demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

# The suite without the slow suites (about 6 minutes on 2 cores); CI runs `make test test-slow`.
test: lint
	$(BIN)/python -m pytest -q -ra -m "not slurm and not storage" --ignore=tests/faults

# The slow suites, each a target of its own: fault injection, S3 storage (moto), a local SLURM cluster.
test-slow: test-faults test-storage test-slurm

test-faults: install
	$(BIN)/python -m pytest -q -ra tests/faults

test-storage: install
	$(BIN)/python -m pytest -q -ra -m storage

test-slurm: install
	ATLAS_SLURM_TEST=1 $(BIN)/python -m pytest -q -ra -m slurm

clean:
	rm -rf results .snakemake
