# The front door: `make run` (agent on the embedded file-source example) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip says what goes wrong, not what goes right (warnings and errors still show).
PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/pip
PIP_FLAGS := -q --no-warn-script-location
# What `make run` runs: the example with its SDK-protocol lines on for this uid (see the file).
RUN_CONFIG := .run.toml

.PHONY: install run get test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) -c constraints.txt -e '.[test]'
	touch $@

$(RUN_CONFIG): config.example.toml
	sed -e 's/^#aws_protocols = /aws_protocols = /' \
	    -e "s/^#allowed_uids = .*/allowed_uids = [$$(id -u)]/" config.example.toml > $@

run: install $(RUN_CONFIG)
	$(BIN)/ssm-sidecar run -c $(RUN_CONFIG)

# One value from `make run`'s agent: `make get NAME=/myapp/dev/db/url` (a newline added).
get: install
	@test -n "$(NAME)" || { echo 'usage: make get NAME=/myapp/dev/db/url' >&2; exit 2; }
	@$(BIN)/ssm-sidecar get -c config.example.toml '$(NAME)' && echo

test: install
	$(BIN)/pytest

# Benchmarks (not tests; CI does not run them): every one, or `make bench ONLY=serving`.
# Writes docs/benchmarks.md. Uses wrk when installed (apt-get install wrk), else a Python client.
bench: install
	$(PIP) install $(PIP_FLAGS) -c constraints.txt -e '.[test,bench]'
	$(BIN)/python -m bench $(if $(ONLY),--only $(ONLY))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) run $(RUN_CONFIG) .mypy_cache .ruff_cache .pytest_cache
