# Everything installs itself: `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint format migrate specs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

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
	$(BIN)/python -m graphql_schema.export --output specs/schema.graphql
	$(BIN)/python -m rest_facade.export --output specs/openapi.json

lint: $(STAMP)
	$(BIN)/ruff check api db rest_facade graphql_schema tests

format: $(STAMP)
	$(BIN)/ruff format api db rest_facade graphql_schema tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
