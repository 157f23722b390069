# Everything installs itself: `make run` and `make test` work on a fresh clone.
# The dependencies are the locked ones (decision 18): uv.lock, and its hash-pinned exports for
# pip, requirements.lock (the runtime: the Docker image's) and requirements-test.lock (every
# extra). With uv on PATH the venv is synced from uv.lock (exactly: what is not locked goes);
# without it (or with `make UV=`) pip installs requirements-test.lock, then the package.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
UV     ?= $(shell command -v uv 2>/dev/null)
# `make lock` and `make lock-check` run the venv's uv, the version uv.lock pins.
LOCK_UV := $(BIN)/uv
EXPORT_HEADER := \# Generated from uv.lock by `make lock`: do not edit. pip install --require-hashes -r FILE
# $(call exported,FLAGS): uv.lock exported for pip on stdout, every file hash-pinned.
exported = { echo '$(EXPORT_HEADER)'; $(LOCK_UV) export --quiet --frozen --no-emit-project --no-header --format requirements-txt $(1); }

.PHONY: install run test lint format migrate specs clean lock lock-check

$(STAMP): pyproject.toml uv.lock requirements-test.lock
ifneq ($(UV),)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --all-extras --python $(PYTHON)
else
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
endif
	touch $(STAMP)

install: $(STAMP)

## After changing pyproject.toml's dependencies: re-resolve uv.lock (keeping every version it
## can) and re-export it. LOCK_ARGS='--upgrade-package NAME' moves one package, '--upgrade' all.
lock: $(STAMP)
	$(LOCK_UV) lock $(LOCK_ARGS)
	$(call exported,) > requirements.lock.new && mv requirements.lock.new requirements.lock
	$(call exported,--all-extras) > requirements-test.lock.new && \
	  mv requirements-test.lock.new requirements-test.lock

## CI: fail while uv.lock disagrees with pyproject.toml or the exports with uv.lock.
lock-check: $(STAMP)
	$(LOCK_UV) lock --check
	$(call exported,) | cmp -s - requirements.lock || \
	  { echo 'requirements.lock is stale: run `make lock`' >&2; exit 1; }
	$(call exported,--all-extras) | cmp -s - requirements-test.lock || \
	  { echo 'requirements-test.lock is stale: run `make lock`' >&2; exit 1; }

## Start the service (SQLite in ./data unless DATABASE_URL says otherwise).
run: $(STAMP)
	$(BIN)/python -m api serve

## Run the tests. PostgreSQL cases run when TEST_DATABASE_URL is set (skipped otherwise).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Apply the database migrations (DATABASE_URL, or the SQLite default).
migrate: $(STAMP)
	$(BIN)/python -m api migrate

## Regenerate the served contracts kept in specs/ (tests fail while they are stale).
specs: $(STAMP)
	$(BIN)/python -m api export-schema --output specs/schema.graphql
	$(BIN)/python -m api export-openapi --output specs/openapi.json

lint: $(STAMP)
	$(BIN)/ruff check api core db rest_facade graphql_schema tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format api core db rest_facade graphql_schema tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
