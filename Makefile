# Two commands do all the set-up on a fresh machine:
#   make run    builds the environment and runs the main job on the embedded SQLite registry
#   make test   builds the environment, lints (ruff, the import-layer contract) and runs the test suite
#               (what CI runs, via .ci/run)
# Both install the exact versions pinned in constraints.txt, so a verdict never changes with the day's
# releases. Drift is caught on purpose, not by a red CI:
#   make test-latest   the suite on the newest releases, in a separate venv (.venv-latest)
#   make lock          re-resolve the newest releases in a throwaway venv and rewrite constraints.txt
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= zoo-run
CONSTRAINTS := constraints.txt
LATEST ?= .venv-latest
LOCKENV := .venv-lock
PYTEST_ARGS ?=

.PHONY: run test bench install clean test-latest lock

# pip itself, the runtime and test dependencies (-c) and zoo's build backend (--build-constraint) are all pinned
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) --build-constraint $(CONSTRAINTS) -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/zoo demo --out $(OUT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_registry.py

# The drift check: the newest releases of everything (no constraints; upgraded on every call; setuptools and
# wheel too, as make lock pins them), then the suite.
# It prints how the newest versions differ from the pins first. When it passes, `make lock` moves the pins.
test-latest:
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test]"
	$(LATEST)/bin/python -m pip freeze --all --exclude-editable > $(LATEST)/versions.txt
	@echo "newest releases against $(CONSTRAINTS) (< pinned, > newest):"
	@grep -v '^#' $(CONSTRAINTS) | diff - $(LATEST)/versions.txt || true
	$(LATEST)/bin/python -m pytest -q --durations=15 $(PYTEST_ARGS)

# Re-resolve the newest releases in a throwaway venv and pin every distribution there (pip, and the build
# backend zoo's editable install uses: setuptools, wheel), zoo itself excepted. Then `make test` reinstalls
# .venv from the new pins (the stamp depends on constraints.txt) and runs the suite on them.
lock:
	rm -rf $(LOCKENV)
	$(PYTHON) -m venv $(LOCKENV)
	$(LOCKENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(LOCKENV)/bin/python -m pip install --quiet -e ".[test]"
	{ printf '%s\n' \
	  "# Exact versions of every distribution of the test environment, zoo's build backend and pip included." \
	  "# make install / make test / make run (and so CI) install with pip install -c constraints.txt, so that a" \
	  "# verdict never changes with the day's releases. make test-latest runs the suite on the newest releases" \
	  "# (the drift check); make lock rewrote this file from them. Do not edit by hand: make lock, then make test." \
	  "# Resolved with $$($(LOCKENV)/bin/python -c 'import platform as p; print(p.python_implementation(), p.python_version(), p.system(), p.machine())')."; \
	  $(LOCKENV)/bin/python -m pip freeze --all --exclude-editable | grep -v -i '^zoo[=@ ]'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(LOCKENV)
	@echo "rewrote $(CONSTRAINTS); run make test to install and test the new pins"

clean:
	rm -rf $(VENV) $(LATEST) $(LOCKENV) $(OUT) .pytest_cache
