# Quick start: `make run` (the IdP on embedded defaults) and `make test` (the whole suite).
# Each target installs what it needs into .venv first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
LOCK_VENV := .venv-lock

.PHONY: run test bench bench-compare bench-scale chromium axe clean lock check-lock

# Every dependency (runtime, test extra, build backend) comes pinned with hashes from
# requirements.lock; the project itself is then installed editable without resolving anything.
# --no-compile: the bytecode of only the modules a process imports is written, on first import
# (`make run` and `make test` keep bytecode caches on), not of every installed module: 12 s
# instead of 21 s for the whole lock into a fresh venv on an idle 2-core machine.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) tools/lockfile.py check
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

# A lock out of date with pyproject.toml stops here with one line saying how to refresh it.
check-lock:
	@$(PYTHON) tools/lockfile.py check

# Re-resolve requirements.lock after changing pyproject.toml's dependencies (pins already in the
# lock are kept; delete the lock first to upgrade everything). pip-tools lives in its own venv.
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet 'pip-tools>=7.4,<8'; }
	$(PYTHON) tools/lockfile.py write --pip-compile $(LOCK_VENV)/bin/pip-compile

# Bytecode caches on, as for the tests below: idp dev starts three more idp processes.
run: check-lock $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/idp dev

# Tests spend much of their time waiting on real servers and workers: four pytest-xdist workers
# keep two cores busiest (idle 2-core machine, the whole suite: -n 3 232 s, -n 4 214 s, -n 5 222 s
# with more CPU). Each worker has its own PostgreSQL and Redis database (tests/conftest.py).
# worksteal: a worker that runs out of tests takes half of a busy one's queue, so the few long
# server and worker tests do not leave the other cores idle at the end.
TEST_JOBS ?= 4

# Bytecode caches stay on even where the environment turns them off (PYTHONDONTWRITEBYTECODE, as
# container images and this project's development machines set): otherwise every `idp` process a
# test starts compiles the package's ~140 modules again (about 0.1 s of CPU each), and every run
# rewrites the assertions of every test module. Stale or missing bytecode is only slower, never wrong.
test: check-lock $(STAMP) chromium axe
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(TEST_JOBS) --dist worksteal $(PYTEST_ARGS)


# Browser tests drive Debian's Chromium (never a downloaded browser), in its headless shell (the
# package chromium-headless-shell: the same engine and version as `chromium` without the browser's
# windows, and what Playwright itself runs headless): on the page tests it spends about 45% less CPU
# than `chromium --headless`. As root it is installed here; otherwise install it yourself
# (`apt-get install chromium-headless-shell`) or those tests are skipped (in CI they fail instead).
chromium:
	@command -v chromium-headless-shell >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null) || \
		echo "note: chromium-headless-shell not installed; browser tests will be skipped"; }

# axe-core (the accessibility checker tests/pages.py injects into every page), pinned by
# tests/browser/package-lock.json and installed from it as is.
axe: tests/browser/node_modules/axe-core/axe.min.js

tests/browser/node_modules/axe-core/axe.min.js: tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --silent
	touch $@

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The IdP beside node-oidc-provider (bench/node, `npm ci` on first use), both driven by wrk; and the
# IdP's scenarios on an empty database against one seeded to issue 12's sizes. See docs/performance.md.
bench-compare: $(STAMP)
	$(BIN)/python -m bench --compare --json $(BENCH_ARGS)

bench-scale: $(STAMP)
	$(BIN)/python -m bench --scale --json $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) instance .pytest_cache tests/browser/node_modules
