# Two commands do all the set-up on a fresh machine:
#   make run    builds the environment and runs the main job on the embedded SQLite registry
#   make test   builds the environment and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= zoo-run

.PHONY: run test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/zoo demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

bench: $(STAMP)
	$(BIN)/python bench/bench_registry.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
