# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The suite runs on the PostgreSQL that every developer and CI machine has.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/dynoscaler
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: setup run test typecheck bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

run: setup
	DEBUG=1 $(PY) manage.py runlocal

test: setup
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) SECRET_KEY=test-only-key \
		$(PY) -m pytest $(PYTEST_ARGS)
	SECRET_KEY=test-only-key $(VENV)/bin/mypy
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .broker db.sqlite3* .mypy_cache .pytest_cache
