# The two commands of the README:  `make run` starts the stack,  `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test faults lint bench bench-seed bench-lookups clean-data help

help:
	@echo "make run    start the whole stack (API, workers, beat, Flower, demo systems, Redis)"
	@echo "make test   run the test suite against real Redis, a real worker and the demo systems"
	@echo "make faults every fault drill: SIGKILLs, Redis/database/broker outages (~10 min)"
	@echo "make lint   static checks (ruff, import-linter layer contracts)"
	@echo "make bench  print performance figures (demo seeding, lookups under load; ~3 min)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: reinstall only when a requirements file changes.
$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

run: $(VENV)/.runtime-installed
	$(BIN)/python -m devstack run

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every fault drill, the slow ones included (make test runs only the quick ones).
faults: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

bench: bench-seed bench-lookups

bench-seed: $(VENV)/.runtime-installed
	$(BIN)/python bench/seed_demo.py

# The lookup API under load on loopback (own Redis, database, demo systems, gunicorn; < 2 min).
bench-lookups: $(VENV)/.runtime-installed
	$(BIN)/python bench/lookups.py $(BENCH_ARGS)

clean-data:
	rm -rf var
