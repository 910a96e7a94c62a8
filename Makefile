# Two commands do everything:  make lab   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONHASHSEED := 0
# OpenMP threads sleep instead of spinning while they wait: far faster on a shared 2-core CPU.
export OMP_WAIT_POLICY := PASSIVE

ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: env lab test test-fast bench clean

env:
	@scripts/setup_env.sh

## Open JupyterLab on notebooks/ (localhost only, token-protected: open the URL it prints).
lab: env
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --ServerApp.open_browser=False $(ROOT_FLAG) \
		--ServerApp.root_dir=notebooks

## The whole test suite: library tests, nbval over every notebook, and the notebooks' widgets in
## JupyterLab in a headless Chromium (tests/browser; installs Debian's chromium when missing).
## --dist loadfile keeps each notebook's cells (and the browser tests, one module) in one worker.
test: env
	@scripts/install_browser.sh
	$(PY) -m pytest -n 2 --dist loadfile --nbval --nbval-current-env \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg tests notebooks

## Library tests only (no notebooks, no browser).
test-fast: env
	$(PY) -m pytest -n 2 -m "not browser" tests

bench: env
	$(PY) -m benchmarks.speed

clean:
	rm -rf $(VENV) .pytest_cache
