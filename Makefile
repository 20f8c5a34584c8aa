# `make run` / `make test`: each creates .venv if missing, installs, then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
# Extra arguments for run.py / pytest, e.g. `make run ARGS="stage=mask"`.
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test install install-dev bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[tensorflow,hub]'
	touch $@

$(VENV)/.installed-dev: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[tensorflow,hub,dev,jax]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The demo overwrites its own previous exports; a user's run never does unless asked.
run: install
	$(PY) run.py export.overwrite=true $(ARGS)

# Two workers: small runs are dominated by single-threaded graph tracing, so two processes use
# both cores; loadscope keeps a module's tests (and its module-scoped fixtures) on one worker.
TEST_WORKERS ?= 2

test: install-dev
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# Every benchmark in --smoke mode, each in its own process; the record goes to a temp file (see
# benchmarks/run_all.py). The full record, docs/BENCHMARKS.md, is a run by hand without --smoke.
bench: install-dev
	$(PY) benchmarks/run_all.py --smoke

# Where the bytes go: runs/ (checkpoints, tables, plots), saved_models/ (exports), data/demo/
# (generated demo data), wandb/ (offline runs); the pixel cache lives outside the repository,
# in $$XDG_CACHE_HOME/keras_fgvc (or data.cache_dir): `rm -rf ~/.cache/keras_fgvc` to drop it.
clean:
	rm -rf runs wandb data/demo .pytest_cache
	find saved_models -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
