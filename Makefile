# The README's two commands: `make run` (the whole pipeline on the demo data) and
# `make test`. Both create .venv and install the pinned dependencies on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# dvc.yaml's stages call `postergenre` and `dvc` from the venv.
export PATH := $(BIN):$(PATH)

.PHONY: install run data repro summary plots exps screenshots real test lint compile local-run images container-run lock clean

install: $(STAMP)

# Every dependency (the dev tools too) exactly as locked, resolving nothing
# (scripts/install_lock.sh: --no-deps --require-hashes, then pip check), so a new upstream
# release cannot change or break the install. pip itself stays the venv's own: an unhashed
# upgrade would defeat the check. Then the project, which has no hash to check, without
# dependencies and built by the locked setuptools rather than one fetched for an isolated
# build.
$(STAMP): pyproject.toml requirements.lock scripts/install_lock.sh
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 needed, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	@echo "make install: about 4 GB into $(VENV); 3 to 8 minutes on 2 cores, less with pip's cache" >&2
	scripts/install_lock.sh $(BIN)/python requirements.lock --quiet
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Regenerate the demo data (params.yaml's ingest.demo) and record it in DVC's cache; with
# the committed settings the bytes, and so data.dvc, are exactly what is committed.
data: $(STAMP)
	postergenre ingest --source demo --out data
	dvc add -q data

# -q: DVC's own lines (stage headers, lock-file updates, hints) are left out; each stage
# still prints its one line, and a failing stage its error. DVC's -q also hides which
# stage failed, so say how to see it.
repro: $(STAMP)
	@dvc repro -q || { echo "dvc repro failed (the error above); 'dvc repro' without -q names the stage" >&2; exit 1; }

summary: $(STAMP)
	postergenre summary --metrics reports/metrics.json --blessing reports/blessing.json --registry registry

# Ends with what changed and where to look next. On another CPU than the one that committed
# dvc.lock the trained weights differ in their last bits, so dvc.lock and reports/ change.
run: data repro summary
	@git diff --quiet data.dvc 2>/dev/null && echo "data.dvc: unchanged (demo data identical to the committed version)" \
		|| echo "data.dvc: changed (different demo settings or library versions); see git diff data.dvc"
	@changed=$$(git status --porcelain --untracked-files=no -- dvc.lock reports 2>/dev/null | wc -l); \
		if [ "$$changed" -gt 0 ]; then echo "this run changed $$changed committed files (dvc.lock, reports/): by how much: dvc metrics diff; which: git status"; \
		else echo "dvc.lock and reports/: as committed"; fi
	@echo "next: open reports/report.html; make plots (reports/plots-html/index.html); source .venv/bin/activate, then postergenre predict POSTER.jpg"

# DVC's plots page with Vega inlined (it draws offline), from the locked vl-convert-python.
plots: $(STAMP)
	$(BIN)/python scripts/offline_plots.py --out reports/plots-html

# The experiments of a DVC project on one screen (120 columns): each commit's and
# experiment's choices and metrics, a row per model (scripts/exps.py reads `dvc exp show
# --json`). EXPS_DIR: another project (make real's OUT); EXPS_FLAGS: `dvc exp show` flags.
#   make exps [EXPS_DIR=outputs/real] [EXPS_FLAGS=-A]
EXPS_DIR ?= .
exps: $(STAMP)
	@cd "$(EXPS_DIR)" && $(BIN)/python $(CURDIR)/scripts/exps.py $(EXPS_FLAGS)

# docs/{report,dvc-plots,data-docs}.png from this run's pages (after make run), for the README.
screenshots: plots
	scripts/screenshots.sh docs

# Your own posters (a folder with labels.csv, the layout of ../shared/data): dvc.yaml's stages
# with params.yaml and the real-poster overlay, in a DVC project of its own in OUT (the
# demo run's data/ and outputs/ untouched; a rerun redoes only what changed).
#   make real DATA=../shared/data/posters-movielens [SPLIT=split.csv] [OUT=outputs/real]
#   REAL_PARAMS: the overlays over params.yaml (default params-real.yaml; several: quoted)
REAL_PARAMS ?= params-real.yaml
OUT ?= outputs/real
real: $(STAMP)
	@test -n "$(DATA)" || { echo "make real: set DATA=DIR, a folder with labels.csv and its posters" >&2; exit 2; }
	scripts/run_on_posters.sh "$(DATA)" "$(OUT)" --params params.yaml \
		$(foreach p,$(REAL_PARAMS),--params $(p)) $(if $(SPLIT),--set split.assignment=$(abspath $(SPLIT)))

# tests/test_lock.py installs a lock with the oldest pips the install supports: their
# wheels, hash-checked, once.
OLD_PIPS := $(VENV)/old-pips
$(OLD_PIPS)/.done: tests/old-pips.txt $(STAMP)
	mkdir -p $(OLD_PIPS)
	grep '^pip==' tests/old-pips.txt | while read -r pin; do echo "$$pin" > $(OLD_PIPS)/pin.txt; \
		$(BIN)/python -m pip download --quiet --no-deps --only-binary :all: --require-hashes \
			--dest $(OLD_PIPS) -r $(OLD_PIPS)/pin.txt || exit 1; done
	touch $@

test: $(STAMP) $(OLD_PIPS)/.done
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# The two images (docker/): REGISTRY=ghcr.io/acme make images compile
REGISTRY ?=
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_FLAGS = $(if $(REGISTRY),--registry $(REGISTRY) --tag $(TAG))

compile: $(STAMP)
	postergenre pipeline compile --output pipeline.yaml $(IMAGE_FLAGS)

# The whole Kubeflow pipeline on this machine (kfp.local), at the tests' size.
TINY = --params params.yaml --params params-tiny.yaml
local-run: $(STAMP)
	postergenre pipeline run --local $(TINY) -p registry=outputs/kfp-registry

# Build both images (docker/Dockerfile.cpu, docker/Dockerfile.gpu) with docker, when its
# daemon answers, else podman (which reads docker/containers.conf), and list their sizes:
# REGISTRY/postergenre[-gpu]:TAG, REGISTRY defaulting to localhost. With REGISTRY set they
# are pushed too. BASE_IMAGE: the Dockerfiles' public Python base when it can be pulled,
# else a local Debian bookworm base made with mmdebstrap; `public`, `local` or an image
# reference to choose. Details: scripts/build_images.sh.
#   make images                                     # localhost/postergenre:0.1.0 and -gpu
#   make images REGISTRY=ghcr.io/acme TAG=0.1.0      # ... built and pushed there
images:
	REGISTRY="$(REGISTRY)" TAG="$(TAG)" PUSH=$(if $(REGISTRY),1) BASE_IMAGE="$(BASE_IMAGE)" \
		scripts/build_images.sh cpu gpu

# The whole pipeline on the demo data with every task in its image (kfp.local's
# DockerRunner against docker or podman's Docker-compatible socket), read-only root, no
# network, as UID 10001; ends with the gate's decision. Builds the images first (cached
# layers: seconds when nothing changed). At the tests' size: a few minutes.
container-run: $(STAMP)
	REGISTRY="$(or $(REGISTRY),localhost)" TAG="$(TAG)" BASE_IMAGE="$(BASE_IMAGE)" \
		PYTHON=$(BIN)/python scripts/container_run.sh $(TINY)

# Re-pin every dependency of pyproject.toml's ranges (extras: dev), for CPython 3.11 on
# Linux, with the sha256 of every file PyPI lists for each pinned version (every platform's
# wheels and the sdist), as `pip install --require-hashes` needs. The resolver is uv at a
# pinned version, in a throwaway venv. Pins already in requirements.lock are kept, so a
# rerun only adds what pyproject.toml newly needs; `make lock UPGRADE=1` moves every pin
# to the newest release its range allows. docker/requirements-image.lock is the images'
# subset (no dev extra), its pins and hashes taken from requirements.lock;
# docker/requirements-gpu.lock the GPU image's: that subset plus TensorFlow's CUDA wheels
# (docker/requirements-gpu.in).
UV_VERSION := 0.13.9
UV_COMPILE = /tmp/postergenre-lock/bin/uv pip compile pyproject.toml --generate-hashes \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--index-url https://pypi.org/simple --no-config --quiet --custom-compile-command 'make lock'
lock:
	rm -rf /tmp/postergenre-lock && $(PYTHON) -m venv /tmp/postergenre-lock
	/tmp/postergenre-lock/bin/python -m pip install --quiet uv==$(UV_VERSION)
	$(UV_COMPILE) --extra dev $(if $(UPGRADE),--upgrade) --output-file requirements.lock
	$(UV_COMPILE) --constraint requirements.lock --output-file docker/requirements-image.lock
	$(UV_COMPILE) docker/requirements-gpu.in --constraint requirements.lock \
		--output-file docker/requirements-gpu.lock

clean:
	rm -rf outputs reports/per_genre.json outputs/kfp-local pipeline.yaml
