# Two commands from a fresh machine: `make demo` and `make test` each set up what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IDX_DIR ?= /usr/share/datasets/fashion-mnist
OBLIVIO_HOME ?= $(HOME)/.oblivio
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

# The main job, locally: on a fresh machine it converts Fashion-MNIST, trains and registers the
# original model (MLflow on SQLite under $(OBLIVIO_HOME)), then runs the Kubeflow pipeline with
# kfp's local runner: forget a class, evaluate, register, promote. Each further run forgets the
# next class the champion still knows, extending the lineage.
demo: setup fashion-mnist
	OBLIVIO_HOME=$(OBLIVIO_HOME) $(VENV)/bin/oblivio run

clean:
	rm -rf $(VENV) .pytest_cache
