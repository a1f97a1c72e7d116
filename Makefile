# The few targets a person needs. `make demo` and `make test` install everything
# themselves on a fresh Debian machine (as root): apt packages, .venv, models from PyPI.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# python3-venv: Debian's python3 has no ensurepip without it. The libxcb*/libxkbcommon-x11
# libraries are what Qt's xcb platform plugin links (`make demo` on a desktop); headless
# runs use Qt's offscreen platform, so no X server (xvfb) is needed.
APT_PACKAGES := python3 python3-venv mosquitto libportaudio2 espeak-ng sox libegl1 libgl1 \
	libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \
	libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 \
	libdbus-1-3 fontconfig fonts-wqy-microhei openssl systemd

.PHONY: deps venv demo test bench lint image image-test wheel clean

deps: .stamp-apt venv

# Re-checked when the Makefile (and so the package list) changes.
.stamp-apt: Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

venv: $(VENV)/.stamp

# After the apt packages (python3-venv), also under `make -j`.
$(VENV)/.stamp: pyproject.toml | .stamp-apt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# A window on a desktop (X11 or Wayland), else headless on Qt's offscreen platform.
demo: deps
	$(VENV)/bin/interview-kiosk --demo $(if $(DISPLAY)$(WAYLAND_DISPLAY),,--headless) --out var/demo

test: deps
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest -q

bench: deps
	$(PY) -m benchmarks analysis
	$(PY) -m benchmarks sync
	$(PY) -m benchmarks qr

lint: venv
	$(VENV)/bin/ruff check .

image: deps
	./build_image.sh

# The package's own test (CI runs it as a separate step after `make test`).
image-test: image
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest -q tests/provisioning/test_image.py

# The wheel IT installs the HR connector from (docs/connector.md): dist/interview_kiosk-*.whl.
# Offline: the venv's own setuptools, no build isolation. build/lib is cleared first so a
# module deleted from the tree cannot linger in the wheel.
wheel: venv
	rm -rf build/lib build/bdist.*
	$(PY) -m pip wheel --no-deps --no-build-isolation -q -w dist .
	cp sync/connector/requirements.txt dist/interview-hr-requirements.txt
	@ls -1 dist/interview_kiosk-*.whl dist/interview-hr-requirements.txt

clean:
	rm -rf var build dist .stamp-apt
