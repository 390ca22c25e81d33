# The two commands README gives: `make demo` and `make test`. Both set up a local
# virtual environment first. torch is pinned to the exact CPU build this project tests on.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz venv bench contract wheel-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[test,plot]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m handbp demo

test: $(STAMP)
	$(BIN)/python -m pytest -n auto -q

# the long property-based fuzz profile (make test runs 100 examples)
FUZZ ?= 1000
fuzz: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/crosscheck/test_hardening.py -k fuzz --fuzz-examples $(FUZZ)

# the project as users install it: the wheel in a fresh environment outside the repository, without
# torch and then with it (builds its own environments, ~2 min; CI runs it after make test)
wheel-check:
	PYTHON=$(PYTHON) TORCH=$(TORCH) bash .ci/wheel_check

bench: $(STAMP)
	$(BIN)/python -m handbp bench

contract: $(STAMP)
	$(BIN)/python ../shared/contract/check_contract.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
