# Two commands on a fresh machine: `make demo` and `make test`. Both install what is missing
# (Debian packages, the .venv with the pinned Python deps) and are idempotent.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := ffmpeg libgl1 libglib2.0-0 chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench bench-memory lock system-deps clean ui

demo: $(STAMP) system-deps ui
	$(VENV)/bin/clipwatch demo

test: $(STAMP) system-deps ui
	$(PY) -m pytest -q

bench: $(STAMP) system-deps
	$(PY) benchmarks/endpoint.py

bench-memory: $(STAMP) system-deps
	$(PY) benchmarks/memory.py

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

# The review tool's front end (review/ui): Wavesurfer.js from the npm registry, pinned by
# package-lock.json, bundled by esbuild into review/static/dist (committed, so a checkout runs
# without node; rebuilt whenever the sources or the lockfile are newer than the bundle).
UI_BUNDLE := review/static/dist/clip.js
ui: $(UI_BUNDLE)

$(UI_BUNDLE): review/ui/package.json review/ui/package-lock.json $(wildcard review/ui/src/*.js)
	@command -v npm >/dev/null || { echo "installing Debian packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	cd review/ui && npm ci --no-audit --no-fund && npm run build
	touch $@

$(STAMP): requirements.lock pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Re-resolve the pins after editing requirements.in (needs uv: pip install uv).
lock:
	uv pip compile --python 3.11 --python-platform x86_64-manylinux_2_28 --no-header \
	  --annotation-style line --find-links /opt/wheels requirements.in -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache
