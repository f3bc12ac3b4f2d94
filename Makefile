# dlogdet developer tasks. POSIX make; run `make demo` or `make test` on a fresh clone.

PYTHON = `command -v python3.11 || command -v python3`
VENV = .venv
VPY = $(VENV)/bin/python
PYTEST_ARGS =

.PHONY: venv venv-dev demo test test-slow bench clean

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
	$(VPY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: venv-dev
	$(VPY) -m pytest -m slow $(PYTEST_ARGS)

bench: venv
	$(VPY) benchmarks/exact.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache dask-worker-space dask-scratch-space
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
