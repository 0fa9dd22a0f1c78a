# The front door: `make run` (agent on the embedded file-source example) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

run: install
	$(BIN)/ssm-sidecar run -c config.example.toml

test: install
	$(BIN)/pytest

# Benchmarks (not tests; CI does not run them): every one, or `make bench ONLY=serving`.
# Writes docs/benchmarks.md. Uses wrk when installed (apt-get install wrk), else a Python client.
bench: install
	$(BIN)/python -m bench $(if $(ONLY),--only $(ONLY))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) run .mypy_cache .ruff_cache .pytest_cache
