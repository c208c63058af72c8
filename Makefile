# Developer entry points. `make help` lists them.
.PHONY: help setup test test-fast lint typecheck proto devnet bench

VENV := .venv/bin

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup:  ## create .venv, install the project editable and the pinned npm tools
	bash scripts/setup.sh

test: setup  ## run the whole test suite (what CI runs)
	$(VENV)/python -m pytest -q

test-fast: setup  ## run the tests not marked slow
	$(VENV)/python -m pytest -q -m "not slow"

lint: setup  ## ruff and the import-boundary check
	$(VENV)/ruff check .
	$(VENV)/python -m pytest -q tests/test_import_boundaries.py

typecheck: setup  ## mypy over the packages
	$(VENV)/mypy risk node bridges governance clearing_client

proto: setup  ## regenerate node/pb from proto/
	$(VENV)/python scripts/gen_proto.py

devnet: setup  ## the main job: two chains, four validators, K epochs, JSON summary
	$(VENV)/clearingd devnet --epochs 6 --json

bench: setup  ## the benchmarks (each prints JSON)
	$(VENV)/python bench/risk_bench.py --accounts 1000000
	$(VENV)/python bench/epoch_pipeline_bench.py --synthetic --accounts 1000000
	$(VENV)/python bench/epoch_pipeline_bench.py --accounts 100000
	$(VENV)/python bench/reshare_bench.py
