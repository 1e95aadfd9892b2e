# The two commands: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REVIEWS ?= 100000
SCALE ?= 1000000

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed

install: $(VENV)/.installed

demo: install
	$(BIN)/amazon-reviews demo --reviews $(REVIEWS)

test: install
	$(BIN)/ruff check amazon_reviews amazon_reviews_tests benchmarks
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check amazon_reviews amazon_reviews_tests benchmarks
	$(BIN)/ruff format --check amazon_reviews amazon_reviews_tests benchmarks

bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run --reviews $(SCALE)

clean:
	-$(BIN)/amazon-reviews db down
	rm -rf data/bronze data/silver data/gold data/postgres data/dagster_home
