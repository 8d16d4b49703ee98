# Two commands from a fresh machine: `make demo` and `make test` each set up what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IDX_DIR ?= /usr/share/datasets/fashion-mnist
OBLIVIO_HOME ?= $(HOME)/.oblivio
DEMO_DATA := $(OBLIVIO_HOME)/data/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup fashion-mnist test demo clean

setup: $(STAMP)

# The venv is rebuilt when pyproject.toml changes; pip skips what is already installed.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Real Fashion-MNIST from Debian's package, installed only when its files are missing.
fashion-mnist:
	@if [ ! -f $(IDX_DIR)/train-images-idx3-ubyte.gz ]; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

test: setup fashion-mnist
	$(VENV)/bin/pytest

demo: setup fashion-mnist
	@if [ ! -f $(DEMO_DATA)/train.parquet ]; then \
		$(VENV)/bin/oblivio data fashion-mnist --out $(DEMO_DATA) --idx-dir $(IDX_DIR); \
	fi
	$(VENV)/bin/oblivio train --data $(DEMO_DATA) --arch resnet18 --epochs 1 \
		--out $(OBLIVIO_HOME)/models/demo-resnet18

clean:
	rm -rf $(VENV) .pytest_cache
