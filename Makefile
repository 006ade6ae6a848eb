# The two commands of the README: `make demo` and `make test`. Each sets up what it needs
# (scripts/bootstrap.sh: system packages when root, .venv, the package with its extras).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
RUFF := $(VENV)/bin/ruff
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k cancel -x"`.
PYTEST_ARGS ?=
# Arguments of the benchmark, e.g. `make bench BENCH_ARGS="--db postgres --runs 20"`.
BENCH_ARGS ?=
# The package tests build the distributions (make dist), the slow ones run in CI (.ci/run).
FAST := -m "not slow and not package"

.PHONY: venv venv-bench gates test test-postgres test-mysql test-all test-django52 test-django60 \
	docs dist test-package screenshots demo bench clean

venv:
	scripts/bootstrap.sh

venv-bench:
	EXTRAS=postgres,mysql,metrics,test,bench scripts/bootstrap.sh

# Checks that need no database server: system checks, migrations in step with the models, lint.
gates: venv
	$(PY) -W error -m django check --settings=tests.settings --fail-level WARNING
	$(PY) -W error -m django makemigrations --check --dry-run --settings=tests.settings
	$(RUFF) check .
	# Python only: ruff also formats code blocks in Markdown, where the README's examples are
	# laid out for readers (aligned comments, bodies written as "...").
	$(RUFF) format --check --extend-exclude '*.md' .
	$(PY) -m mypy djangotasks

# With branch coverage of djangotasks/, daemons and task processes included ([tool.coverage]
# in pyproject.toml); the report lists the files not fully covered.
test: gates
	$(PY) -m coverage erase
	# Combined even when a test failed (for `coverage report -m` or `coverage html` by hand).
	# A process killed while it saved its data (a daemon's watchdog gets SIGKILL when the
	# daemon exits) leaves an unreadable file: counted as "errored", then removed.
	status=0; $(PY) -m coverage run -m pytest $(FAST) $(PYTEST_ARGS) || status=$$?; \
	$(PY) -W "ignore:Data file" -m coverage combine; rm -f .coverage.*; exit $$status
	$(PY) -m coverage report

test-postgres: venv
	DJANGOTASKS_TEST_DB=postgres $(PY) -m pytest $(FAST) $(PYTEST_ARGS)

test-mysql: venv
	DJANGOTASKS_TEST_DB=mysql $(PY) -m pytest $(FAST) $(PYTEST_ARGS)

# The suite on Django 5.2 LTS (SQLite), in a virtualenv of its own, with the django-tasks
# backport of Django's tasks framework (the django.tasks backend's tests run on it).
test-django52:
	VENV=.venv-django52 EXTRAS=postgres,mysql,metrics,test,backport scripts/bootstrap.sh
	.venv-django52/bin/python -m pip install -q --disable-pip-version-check "Django>=5.2,<5.3"
	# The migrations and checks hold on 5.2 too (its defaults differ from 6's).
	.venv-django52/bin/python -W error -m django check --settings=tests.settings --fail-level WARNING
	.venv-django52/bin/python -W error -m django makemigrations --check --dry-run --settings=tests.settings
	.venv-django52/bin/python -m pytest $(FAST) $(PYTEST_ARGS)

# The suite on Django 6.0 (SQLite) with Python 3.12: the other Django and Python that the
# classifiers name (the main virtualenv has the newest Django on Python 3.13).
test-django60:
	VENV=.venv-django60 PYTHON_VERSION=3.12 EXTRAS=postgres,mysql,metrics,test scripts/bootstrap.sh
	.venv-django60/bin/python -m pip install -q --disable-pip-version-check "Django>=6.0,<6.1"
	.venv-django60/bin/python -W error -m django check --settings=tests.settings --fail-level WARNING
	.venv-django60/bin/python -W error -m django makemigrations --check --dry-run --settings=tests.settings
	.venv-django60/bin/python -m pytest $(FAST) $(PYTEST_ARGS)

# The admin screenshots of the documentation, taken from the demo in headless Chromium.
screenshots: venv
	$(PY) docs/screenshots.py docs/images

# The documentation (docs/, Sphinx) with warnings as errors, then its examples run (every
# {doctest} block, in the demo project with a daemon of its own).
docs:
	EXTRAS=postgres,mysql,metrics,test,docs scripts/bootstrap.sh
	rm -rf docs/_build
	$(PY) -m sphinx -q -W --keep-going -b html docs docs/_build/html
	$(PY) -m sphinx -q -W --keep-going -b doctest docs docs/_build/doctest
	@echo "docs: docs/_build/html/index.html"

# The sdist and the wheel in dist/, their metadata checked by twine.
dist:
	EXTRAS=postgres,mysql,metrics,test,dist scripts/bootstrap.sh
	rm -rf dist
	$(PY) -m build --sdist --wheel --outdir dist
	$(PY) -m twine check --strict dist/*

# The distributions tested as PyPI would get them (tests/test_package.py builds its own): file
# lists and metadata, then the wheel in a fresh virtualenv, used by a new minimal project.
test-package:
	EXTRAS=postgres,mysql,metrics,test,dist scripts/bootstrap.sh
	$(PY) -m pytest -m package $(PYTEST_ARGS)

# Every database, slow tests included.
test-all: gates
	$(PY) -m pytest $(PYTEST_ARGS)
	DJANGOTASKS_TEST_DB=postgres $(PY) -m pytest $(PYTEST_ARGS)
	DJANGOTASKS_TEST_DB=mysql $(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	$(PY) demo/manage.py rundemo

bench: venv-bench
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-django52 .venv-django60 tests/var demo/var .pytest_cache .ruff_cache \
		.coverage* htmlcov dist docs/_build
