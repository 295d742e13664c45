# The two commands that matter: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-slow container-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first (the local CPU wheel), otherwise pip pulls GBs of CUDA packages.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/bids_tspo-demo $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Build the CPU image and run it as users would, all with --network none (docs/hpc.md; needs a
# Docker daemon; put the torch wheel in docker/wheels/ to build offline-capably). ~10 min.
container-test:
	bash docker/container-test.sh

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
