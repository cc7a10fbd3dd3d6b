# Two commands on a fresh machine: `make demo` and `make test`. Both install what is missing
# (Debian packages, the .venv with the pinned Python deps) and are idempotent.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := ffmpeg libgl1 libglib2.0-0 chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench lock system-deps clean

demo: $(STAMP) system-deps
	$(VENV)/bin/clipwatch demo

test: $(STAMP) system-deps
	$(PY) -m pytest -q

bench: $(STAMP) system-deps
	$(PY) benchmarks/endpoint.py

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

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
