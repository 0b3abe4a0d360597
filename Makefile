# The two commands of the README. Both set up .venv first (once, and again when pyproject.toml changes).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/disaggpilot simulate

test: $(VENV)/.installed
	$(BIN)/pytest
