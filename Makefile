# Two entry points for a fresh clone (see README.md):
#   make run    sets everything up, then runs the default dataset job
#   make test   sets everything up, starts a local Label Studio, runs the tests
# Both are safe to run twice: each step is skipped when its result is there.

PYTHON ?= python3
# The CPU build that lies on disk here. On a GPU machine: make run TORCH=torch
TORCH ?= torch==2.13.0
VENV := .venv
LS_VENV := .venv-labelstudio
BIN := $(VENV)/bin
STAMP := $(VENV)/.daamset-installed
LS_STAMP := $(LS_VENV)/.installed
CONFIG ?= configs/default.yaml
OUT ?= outputs/default
LS_DATA ?= .cache/labelstudio-test
LS_PORT ?= 8488

.PHONY: setup setup-labelstudio run test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, so the project's torch range is already met (else pip pulls a CUDA build)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test,spacy-model]"
	touch $(STAMP)

# Label Studio pins its own numpy, pydantic, Django...: it lives in its own venv.
setup-labelstudio: $(LS_STAMP)

$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q "label-studio==1.23.2"
	touch $(LS_STAMP)

run: setup
	$(BIN)/daamset run $(CONFIG) --out $(OUT)

test: setup setup-labelstudio
	@eval "$$($(BIN)/daamset labelstudio start --data-dir $(LS_DATA) --port $(LS_PORT))" && \
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	$(BIN)/daamset labelstudio stop --data-dir $(LS_DATA) >/dev/null 2>&1; exit $$rc

clean:
	rm -rf $(VENV) $(LS_VENV) .cache
