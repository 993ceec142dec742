# Quick start: `make repro` then `make test`. Everything runs inside .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
DMC_TASKS := cartpole-swingup reacher-easy cheetah-run finger-spin cup-catch walker-walk

.PHONY: repro quick notebook-baseline test lint bench ui scale-demo mutation benchmark gpu-check $(DMC_TASKS)

$(BIN)/dvc: requirements.txt requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .  # the `planet` command
	touch $(BIN)/dvc

repro: $(BIN)/dvc  ## run the whole pipeline with params.yaml
	dvc repro

quick: $(BIN)/dvc  ## a smoke run of the same pipeline (about 7 min on 2 CPU cores), as a DVC experiment
	dvc exp run --name quick-$$(date +%H%M%S) $$(cat profiles/quick.args)

notebook-baseline: $(BIN)/dvc  ## the tutorial notebook's Config, as a DVC experiment (profiles/notebook.args)
	dvc exp run --name notebook-config-$$(date +%H%M%S) $$(cat profiles/notebook.args)

# The paper's six DeepMind Control Suite tasks, 100k env steps each (profiles/<task>.args).
$(DMC_TASKS): $(BIN)/dvc  ## e.g. `make cartpole-swingup ARGS="-S seed=1"`: one DMC task as a DVC experiment
	dvc exp run --name $@-$$(date +%H%M%S) $$(cat profiles/$@.args) $(ARGS)

# The paper's table: six tasks x seeds 0-2; resumable (python -m experiments.benchmark --help; e.g.
# `make benchmark ARGS="-S task=cheetah-run -S seed=0 --parallel 2"`).
benchmark: $(BIN)/dvc  ## all six DMC tasks x seeds 0, 1, 2 through Ray; rerun to continue, finished trials are skipped
	$(BIN)/python -m experiments.benchmark $(ARGS)

test: $(BIN)/dvc  ## the whole test suite
	$(BIN)/python -m pytest -q --durations 10

# Mutation testing of the engine's core ([tool.mutmut] in pyproject.toml); not part of `make test`.
mutation: $(BIN)/dvc  ## mutate planet/'s core modules, run their tests on each mutant, print killed/survived
	$(BIN)/python -m pip install --quiet mutmut==3.8.0
	rm -rf mutants
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $$(nproc) >mutation.log 2>&1 || (tail -20 mutation.log; exit 1)
	$(BIN)/python scripts/mutation_report.py

lint: $(BIN)/dvc
	$(BIN)/ruff check .

gpu-check: $(BIN)/dvc  ## on a CUDA GPU: device tests, speed at the notebook's and the paper's sizes, cartpole phases (OUT=folder)
	$(BIN)/python scripts/gpu_check.py --out $(or $(OUT),gpu-check)

bench: $(BIN)/dvc  ## speed of one train step and one plan
	$(BIN)/python -m planet.bench --device auto

ui: $(BIN)/dvc  ## the MLflow UI on http://127.0.0.1:5000, opened on this project's training runs
	$(BIN)/python -m experiments.ui

scale-demo: $(BIN)/dvc  ## as root: PostgreSQL, MLflow server, two Ray nodes, git and DVC remotes on 127.0.0.1, a 2-trial sweep
	$(BIN)/python scripts/scale_demo.py
