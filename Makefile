# Two commands a new user needs: `make run` and `make test`. Both set up .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export AUTOANNOTATE_HOME ?= $(CURDIR)/data

.PHONY: run test lint ui setup clean team-up team-down

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/autoannotate demo --if-empty
	$(BIN)/autoannotate run --task-file tasks/demo.yaml --version

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy  # strict on core/, store/, storage/ and engines/ ([tool.mypy] in pyproject.toml)

# Test files run side by side, each whole on one worker (module fixtures are built once; the team tests share
# one PostgreSQL server): many tests wait on subprocesses, daemons and restarts, so 3 workers fill 2 cores.
TEST_WORKERS ?= 3

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

ui: $(STAMP)
	$(BIN)/python -c "from core.settings import Settings; from pipelines.instance import prepare_dagster_home as p; s = Settings.from_env(); p(s.dagster_home, s.database_writers, s.dagster_storage)"
	DAGSTER_HOME=$(AUTOANNOTATE_HOME)/dagster $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Team mode on this machine: PostgreSQL (catalog + Dagster storage), the daemon and the webserver.
team-up: $(STAMP)
	$(BIN)/python -m apps.team_services up

team-down: $(STAMP)
	$(BIN)/python -m apps.team_services down

clean:
	rm -rf $(VENV) data
