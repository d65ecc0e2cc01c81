# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
# Any Python from 3.11 up: python3 when it is new enough, else the newest python3.1x on PATH.
PY ?= $(shell for p in python3 python3.14 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned, so that this machine's local CPU wheel is used instead of several GB of CUDA packages;
# the package itself keeps an unpinned torch requirement for users.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test smoke doctor venv clean bench screenshots

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || { \
	  test -n "$(PY)" || { echo "make: no Python 3.11 or newer on PATH; install one (Debian/Ubuntu: sudo apt-get install -y python3 python3-venv)" >&2; exit 1; }; \
	  echo "make: creating $(VENV) with $(PY) ($$($(PY) -c 'import sys; print(sys.version.split()[0])'))"; \
	  $(PY) -m venv $(VENV) || { echo "make: '$(PY) -m venv' failed; Debian/Ubuntu: sudo apt-get install -y python3-venv" >&2; exit 1; }; }
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH_PIN) || $(BIN)/pip install -q torch
	$(BIN)/pip install -q --disable-pip-version-check -e ".[test,gui]"
	touch $@

venv: $(BIN)/.installed

# The preflight stops with the exact install command when Qt's system libraries or a display are missing,
# instead of Qt's own abort.
demo: venv
	$(BIN)/workbench doctor --app > /dev/null
	$(BIN)/workbench --demo

doctor: venv
	$(BIN)/workbench doctor

# The app on a real (virtual) X display: catches missing system libraries that the offscreen suite cannot see.
smoke: venv
	@command -v xvfb-run >/dev/null || { echo "make smoke: xvfb-run not found; Debian/Ubuntu: sudo apt-get install -y xvfb xauth" >&2; exit 1; }
	QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1366x768x24" sh -c '$(BIN)/workbench doctor --app > /dev/null && \
	  $(BIN)/python -m pytest -q -p no:cacheprovider --timeout=300 -m display tests/test_display_smoke.py'

test: venv
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -p no:cacheprovider --timeout=300

screenshots: venv
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m workbench.gui.screenshots docs/screenshots

bench: venv
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info
