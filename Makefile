# dlogdet developer tasks. POSIX make; run `make demo` or `make test` on a fresh clone.

PYTHON = `command -v python3.11 || command -v python3`
VENV = .venv
VPY = $(VENV)/bin/python
PYTEST_ARGS =
# tests run in parallel processes (pytest-xdist: one per core, at most 4); the ones that share one resource (the
# local Slurm cluster) are grouped onto one process
XDIST = -n auto --maxprocesses 4 --dist loadgroup

.PHONY: venv venv-dev demo test test-slow lint bench clean

venv: $(VENV)/.stamp-base

venv-dev: $(VENV)/.stamp-dev

$(VENV)/.stamp-base: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -e '.[dev]'
	touch $(VENV)/.stamp-base $@

demo: venv
	$(VENV)/bin/dlogdet demo

# the default run leaves out the tests marked slow (long validations, notebooks); CI runs both
test: venv-dev
	$(VPY) -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

test-slow: venv-dev
	$(VPY) -m pytest -m slow $(XDIST) $(PYTEST_ARGS)

# the layer contracts (import-linter, in pyproject.toml), ruff and mypy, installed into the venv (the lint extra)
lint: venv-dev $(VENV)/.stamp-lint
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check dlogdet tests benchmarks
	$(VENV)/bin/mypy

$(VENV)/.stamp-lint: pyproject.toml
	$(VPY) -m pip install -e '.[lint]'
	touch $@

bench: venv
	$(VPY) benchmarks/exact.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache dask-worker-space dask-scratch-space
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
