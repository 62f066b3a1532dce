# keyslot: `make run` and `make test` work on a fresh machine with python3.
# Another interpreter: `make setup PYTHON=python3.12` (the venv is rebuilt with it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Sorted, as check_stubs orders them: the descriptor set lists files in this order.
PROTOS := $(sort $(shell find protos -name '*.proto'))
GEN_OUT := clients
QUICK ?=
PLAINTEXT ?=
# `make run DB=postgres`, `make chaos DB=postgres`: the services' engine (sqlite or postgres).
DB ?= sqlite

.PHONY: all setup gen lint test chaos run bench proto-baseline docs clean distclean FORCE

all: lint test

# Python >= 3.11, as pyproject's requires-python says: "yes" for a version that is.
supported = $(shell case '$(1)' in (3.1[1-9].*|3.[2-9][0-9].*|[4-9].*) echo yes;; esac)
version_of = $(shell $(1) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)
PY_VERSION = $(call version_of,$(PYTHON))
VENV_VERSION := $(call version_of,$(BIN)/python)
# The venv is rebuilt from scratch when it does not run or has an older Python
# (a setup that failed), or when PYTHON is given and is another version.
ifeq ($(origin PYTHON),file)
REBUILD := $(if $(call supported,$(VENV_VERSION)),,yes)
else
REBUILD := $(if $(filter $(PY_VERSION),$(VENV_VERSION)),,yes)
endif

# The venv is updated when pyproject.toml changes.
$(STAMP): pyproject.toml $(if $(REBUILD),FORCE)
	@if [ -z "$(call supported,$(PY_VERSION))" ]; then \
		echo "keyslot needs Python >= 3.11 but $(PYTHON) is $(or $(PY_VERSION),not found): install a newer one and run make setup PYTHON=python3.11 (or its path)" >&2; \
		exit 1; fi
	@.ci/system-packages
	$(PYTHON) -m venv $(if $(REBUILD),--clear )$(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

FORCE:

# The venv, and the system packages the tests use (tmux: the CLI in a terminal).
setup: $(STAMP)
	@.ci/system-packages

# Python stubs with .pyi into clients/keyslot/..., mirroring the proto packages,
# and keyslot/descriptors.binpb: the descriptors with their comments (and the
# files they import), which server reflection serves so `describe` shows docs.
gen: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=$(GEN_OUT) --pyi_out=$(GEN_OUT) --grpc_python_out=$(GEN_OUT) \
		--include_imports --include_source_info \
		--descriptor_set_out=$(GEN_OUT)/keyslot/descriptors.binpb $(PROTOS)

lint: $(STAMP)
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --check --no-cache .
	cd protos && ../$(BIN)/buf lint
	cd protos && ../$(BIN)/buf format --diff --exit-code
	@if [ -f protos/baseline.binpb ]; then \
		cd protos && ../$(BIN)/buf breaking --against baseline.binpb; fi
	$(BIN)/python -m keyslot.tools.check_stubs
	$(BIN)/lint-imports
	$(BIN)/mypy clients/keyslot/client.py clients/keyslot/errors.py $(filter-out clients/keyslot/client.py,$(wildcard clients/keyslot/cli*.py))

# Two tiers at once (tests/tiers.py), each ending with a line "engine <name>: N passed":
# the whole suite on SQLite, and the e2e suite (crash tests included) again with both
# services on PostgreSQL, in a throwaway cluster the tests start (tests/pg.py).
test: $(STAMP)
	$(BIN)/python -m tests.tiers

# Randomized crash-and-race rounds against both services (tests/chaos.py).
ROUNDS ?= 10
SEED ?= 1
chaos: $(STAMP)
	KEYSLOT_TEST_ENGINE=$(DB) $(BIN)/python -m tests.chaos --rounds $(ROUNDS) --seed $(SEED)

# DB=postgres: both services on a throwaway local PostgreSQL cluster, removed on Ctrl-C.
run: $(STAMP)
	$(BIN)/python -m keyslot_server.devrun --engine $(DB)

bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,) $(if $(PLAINTEXT),--plaintext,)

# Records the current contracts as the baseline `make lint` checks against.
# README's configuration reference, from the settings declarations (a test checks it).
docs: $(STAMP)
	$(BIN)/python -m keyslot_server.settings_doc license_service.settings:Settings \
		device_service.settings:Settings

proto-baseline: $(STAMP)
	cd protos && ../$(BIN)/buf build -o baseline.binpb

# Removes the venv, caches and build artefacts; keeps var/ (the dev databases,
# certificates and tokens `make run` made).
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis \
		build dist *.egg-info
	find . \( -path ./.git -o -path ./var \) -prune -o -type d -name __pycache__ -prune \
		-exec rm -rf {} +

# clean, and var/ too: the next `make run` starts with empty databases, a new
# dev CA and new tokens.
distclean: clean
	rm -rf var
