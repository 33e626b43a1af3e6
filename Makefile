# The two Quick start commands: `make play` and `make test`. Each makes .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# llama-cpp-python builds llama.cpp from source. On x86-64 its default native build can crash
# on CPUs that report AMX (SIGSEGV in ggml_backend_amx_mul_mat), so build for a fixed set of
# instruction sets instead; AVX-512 only where the CPU has it. Set CMAKE_ARGS yourself to
# override (for CUDA: CMAKE_ARGS="-DGGML_CUDA=on", see the README).
ifeq ($(origin CMAKE_ARGS),undefined)
ifeq ($(shell uname -m),x86_64)
CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
ifneq ($(shell grep -m1 -o avx512f /proc/cpuinfo 2>/dev/null),)
CMAKE_ARGS += -DGGML_AVX512=ON
endif
endif
endif
export CMAKE_ARGS
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: play test lint clean llama-tools browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# pip keeps the llama-cpp-python wheel it built in its cache, so later installs take seconds.
$(VENV)/.installed-play: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --editable .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --editable '.[test]'
	touch $@ $(VENV)/.installed-play

play: $(VENV)/.installed-play
	$(BIN)/python -m game play $(ARGS)

test: $(VENV)/.installed-test llama-tools browser
	$(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The browser tests (tests/test_serve_browser.py) drive Debian's chromium headless; they fail,
# not skip, without it. Installs it when missing (needs root and apt).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# llama.cpp's own llama-server and llama-bench, built once per machine from the same vendored
# source as llama-cpp-python (cached under ~/.cache/metharme-adventure/llama-tools).
llama-tools: | $(BIN)/python
	PYTHON=$(BIN)/python scripts/build-llama-tools.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
