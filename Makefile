# keyslot: `make run` and `make test` work on a fresh machine with python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')
GEN_OUT := clients
QUICK ?=
PLAINTEXT ?=

.PHONY: all setup gen lint test chaos run bench proto-baseline clean

all: lint test

# The venv is rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

setup: $(STAMP)

# Python stubs with .pyi into clients/keyslot/..., mirroring the proto packages.
gen: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=$(GEN_OUT) --pyi_out=$(GEN_OUT) --grpc_python_out=$(GEN_OUT) $(PROTOS)

lint: $(STAMP)
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --check --no-cache .
	cd protos && ../$(BIN)/buf lint
	cd protos && ../$(BIN)/buf format --diff --exit-code
	@if [ -f protos/baseline.binpb ]; then \
		cd protos && ../$(BIN)/buf breaking --against baseline.binpb; fi
	$(BIN)/python -m keyslot.tools.check_stubs
	$(BIN)/lint-imports
	$(BIN)/mypy clients/keyslot/client.py clients/keyslot/errors.py clients/keyslot/cli.py

test: $(STAMP)
	$(BIN)/pytest

# Randomized crash-and-race rounds against both services (tests/chaos.py).
ROUNDS ?= 10
SEED ?= 1
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --rounds $(ROUNDS) --seed $(SEED)

run: $(STAMP)
	$(BIN)/python -m keyslot_server.devrun

bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,) $(if $(PLAINTEXT),--plaintext,)

# Records the current contracts as the baseline `make lint` checks against.
proto-baseline: $(STAMP)
	cd protos && ../$(BIN)/buf build -o baseline.binpb

clean:
	rm -rf $(VENV) var .pytest_cache
