# Two commands do all the set-up on a fresh machine with Python 3.11 and make:
#   make run   - venv, sample data, dbt build, train, publish, then serve on 127.0.0.1
#   make test  - venv, lint, the whole test suite (slow end-to-end tests included)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov pins an old boto3 that breaks the S3 conditional writes: it has a venv of its own.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp

# dbt makes no network calls; the CLI and tests read the same settings.
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1

.PHONY: install run test lint serve bench bench-tools clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[serve,train,cloud,mlflow,spark,dev]'
	touch $(STAMP)

$(CHECKOV_STAMP): requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(CHECKOV_VENV)/bin/python -m pip install -q --no-deps -r requirements/checkov.txt
	touch $(CHECKOV_STAMP)

install: $(STAMP)

run: install
	$(BIN)/segmentation generate
	$(BIN)/segmentation features
	$(BIN)/segmentation train
	$(BIN)/segmentation score
	$(BIN)/segmentation serve

serve: install
	$(BIN)/segmentation serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/segmentation contract --check
	cd dbt_project && ../$(BIN)/sqlfluff lint models --disable-progress-bar

test: lint $(CHECKOV_STAMP)
	$(BIN)/pytest

# wrk (HTTP load from C, not Python) for bench/bench_serving.py, from Debian's packages.
bench-tools:
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)

bench: install bench-tools
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf var dbt_project/target dbt_project/logs
