# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned, so that this machine's local CPU wheel is used instead of several GB of CUDA packages;
# the package itself keeps an unpinned torch requirement for users.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test venv clean bench screenshots

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH_PIN) || $(BIN)/pip install -q torch
	$(BIN)/pip install -q --disable-pip-version-check -e ".[test,gui]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/workbench --demo

test: venv
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -p no:cacheprovider --timeout=300

screenshots: venv
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m workbench.gui.screenshots docs/screenshots

bench: venv
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info
