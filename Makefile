# Two commands on a fresh machine: `make demo` and `make test`. Both install what is missing
# (Debian packages, the .venv with the pinned Python deps) and are idempotent.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The infrastructure scanner (tests/test_infra_scan.py) in a venv of its own: its pins conflict
# with the project's.
CHECKOV := .venv-checkov/bin/checkov
# Label Studio's SDK, which checks our Label Studio export (tests/test_export.py): its numpy
# cannot live beside MXNet's, so it has a venv of its own too.
LABELSTUDIO := .venv-labelstudio/.installed
APT_PACKAGES := ffmpeg libgl1 libglib2.0-0 chromium prometheus
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench bench-memory lock system-deps clean ui ui-current screenshots

demo: $(STAMP) system-deps ui-current
	$(VENV)/bin/clipwatch demo

test: $(STAMP) system-deps ui-current $(CHECKOV) $(LABELSTUDIO)
	$(PY) -m pytest -q

# The README's pictures of the review tool, by the browser test that drives it (a plain test
# run writes its screenshots to a temporary folder).
screenshots: $(STAMP) system-deps ui-current
	CLIPWATCH_SCREENSHOTS=$(CURDIR)/docs $(PY) -m pytest -q tests/test_review_browser.py

bench: $(STAMP) system-deps
	$(PY) benchmarks/endpoint.py

bench-memory: $(STAMP) system-deps
	$(PY) benchmarks/memory.py

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

# The review tool's front end (review/ui): Wavesurfer.js from the npm registry, pinned by
# package-lock.json, bundled by esbuild into review/static/dist. The bundle is committed with the
# sha256 of the sources it was built from (sources.sha256), so a checkout whose sources match
# runs without node whatever its files' times (git does not keep them); `make ui` rebuilds on
# purpose, `ui-current` only when the sources changed.
UI_SOURCES := review/ui/package.json review/ui/package-lock.json $(sort $(wildcard review/ui/src/*.js))
UI_HASH := review/static/dist/sources.sha256

ui-current:
	@[ "$$(cat $(UI_SOURCES) | sha256sum | cut -d' ' -f1)" = "$$(cat $(UI_HASH) 2>/dev/null)" ] \
	  || $(MAKE) --no-print-directory ui

ui:
	@command -v npm >/dev/null || { echo "installing Debian packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	cd review/ui && npm ci --no-audit --no-fund && npm run build
	cat $(UI_SOURCES) | sha256sum | cut -d' ' -f1 > $(UI_HASH)

# The lock pins PyTorch's CPU build (torch==…+cpu), which PyPI does not carry: found through
# pip's configured indexes and find-links where there are some, else from PyTorch's CPU index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

$(CHECKOV): infra/checkov.requirements
	[ -x .venv-checkov/bin/python ] || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install -q -r infra/checkov.requirements
	touch $(CHECKOV)

$(LABELSTUDIO): tests/labelstudio.requirements
	[ -x .venv-labelstudio/bin/python ] || $(PYTHON) -m venv .venv-labelstudio
	.venv-labelstudio/bin/python -m pip install -q -r tests/labelstudio.requirements
	touch $(LABELSTUDIO)

$(STAMP): requirements.lock pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock \
	  || { echo "retrying with PyTorch's CPU index ($(TORCH_INDEX)) for the +cpu torch build"; \
	       $(PY) -m pip install -q --extra-index-url $(TORCH_INDEX) -r requirements.lock; }
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Re-resolve the pins after editing requirements.in (needs uv: pip install uv).
lock:
	uv pip compile --python 3.11 --python-platform x86_64-manylinux_2_28 --no-header \
	  --annotation-style line --find-links /opt/wheels requirements.in -o requirements.lock

clean:
	rm -rf $(VENV) .venv-checkov .venv-labelstudio .pytest_cache
