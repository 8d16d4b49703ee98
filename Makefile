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
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Real Fashion-MNIST from Debian's package, installed only when its files are missing.
fashion-mnist:
	@if [ ! -f $(IDX_DIR)/train-images-idx3-ubyte.gz ]; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

test: setup fashion-mnist
	$(VENV)/bin/pytest

DEMO_MODEL := $(OBLIVIO_HOME)/models/demo-resnet18
DEMO_CLASS ?= 7

# Convert the data and train a short-recipe model once (reused on later runs), then forget
# one class training-free.
demo: setup fashion-mnist
	@if [ ! -f $(DEMO_DATA)/train.parquet ]; then \
		$(VENV)/bin/oblivio data fashion-mnist --out $(DEMO_DATA) --idx-dir $(IDX_DIR); \
	fi
	@if [ ! -f $(DEMO_MODEL)/config.json ]; then \
		$(VENV)/bin/oblivio train --data $(DEMO_DATA) --arch resnet18 --epochs 1 \
			--out $(DEMO_MODEL); \
	fi
	$(VENV)/bin/oblivio forget --model $(DEMO_MODEL) --data $(DEMO_DATA) --classes $(DEMO_CLASS) \
		--out $(DEMO_MODEL)-forget$(DEMO_CLASS)

clean:
	rm -rf $(VENV) .pytest_cache
