# The two commands that matter: `make demo` and `make test`. Both create the virtual environment
# from requirements.lock when it is missing or older than the lock.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-lock
DEMO_DIR ?= demo-output

.PHONY: venv test test-integration demo bench lock lint audit clean label-studio test-labelling app \
	test-browser

venv: $(INSTALLED) $(VENV)/.installed-project

# A changed lock rebuilds the environment from scratch, so nothing from an old lock lingers.
$(INSTALLED): requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --no-deps --require-hashes -r requirements.lock
	touch $@

$(VENV)/.installed-project: $(INSTALLED) pyproject.toml
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# `make test` keeps to about ten minutes on 2 cores (with the tuner's 3-trial study that
# resumes after a kill, #19); the slower integration suites (the whole demo loop, the reliability
# proofs that kill jobs and servers, several hosts) are `make test-integration`, which `.ci/run`
# runs after it.
INTEGRATION_TESTS := tests/test_demo.py tests/test_sharding.py \
	$(wildcard tests/test_reliability_*.py)

test: venv
	$(PY) -m pytest -q --ignore=tests/images --ignore=tests/labelling --ignore=tests/browser \
		$(addprefix --ignore=,$(INTEGRATION_TESTS))

test-integration: venv
	$(PY) -m pytest -q $(INTEGRATION_TESTS)

demo: venv
	$(PY) -m pipelines.demo --out $(DEMO_DIR) $(DEMO_FLAGS)

# Every benchmark in bench/ plus `make demo`, timed per step; writes BENCHMARKS.md (30 to 45 minutes on
# 2 cores). Not part of `make test` or CI.
bench: venv
	$(PY) -m bench

lint: venv
	$(VENV)/bin/ruff check .

# Known vulnerabilities in requirements.lock's pins: fails on any; says which pins it could not
# audit (pip-audit, then PyPI's project data where pip-audit cannot reach; see README).
audit: venv
	$(PY) images/audit.py requirements.lock

# Re-resolve every dependency to its newest allowed version and rewrite requirements.lock with
# each pin's file hashes (from PyPI's simple index: the one step that needs the network).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet ".[all]"
	.lock-venv/bin/python images/lock.py generate > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(EXPORT_VENV) .lock-venv .pytest_cache $(DEMO_DIR)

# ---- Images (images/, README "Images") ----------------------------------------------------------
ENGINE ?= docker
IMAGE_PREFIX ?= sagemaker-image-mlops
COMPONENTS := processing algorithm monitoring explainability
REVISION := $(or $(shell git rev-parse --short=12 HEAD 2>/dev/null),$(shell printf %.12s "$$CODEBUILD_RESOLVED_SOURCE_VERSION"),unknown)
TAG ?= $(REVISION)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# Credentials in a remote URL (an https token) never reach a label: see images/labels.py.
SOURCE_URL ?= $(shell git remote get-url origin 2>/dev/null)
# Empty: the Dockerfile's public slim Python image. CodeBuild pins it by digest (buildspec.yml).
PYTHON_IMAGE ?=
# Extra `build` flags, e.g. the local package mounts images/podman/setup.sh writes.
BUILD_FLAGS ?=
# Empty: the ECR registry of AWS_ACCOUNT_ID / AWS_REGION (or the caller's account and region).
REGISTRY ?=
PUSH_FLAGS ?=
IMAGE_URIS ?= image-uris.json
LABELS = --label org.opencontainers.image.source=$(shell $(PYTHON) images/labels.py '$(SOURCE_URL)') \
	--label org.opencontainers.image.revision=$(REVISION) --label org.opencontainers.image.version=$(VERSION)
REGISTRY_TOOL = $(PYTHON) images/registry.py --engine $(ENGINE) --prefix $(IMAGE_PREFIX) --tag $(TAG) \
	$(if $(REGISTRY),--registry $(REGISTRY))

.PHONY: build build-base $(addprefix build-,$(COMPONENTS)) image-sizes push image-uris hadolint \
	export-pipelines \
	test-images $(foreach c,$(COMPONENTS),run-$(c)-train run-$(c)-serve)

build: $(addprefix build-,$(COMPONENTS))
	@$(REGISTRY_TOOL) sizes base $(COMPONENTS)

build-base:
	$(ENGINE) build $(BUILD_FLAGS) \
		$(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
		-f images/base/Dockerfile -t $(IMAGE_PREFIX)-base:$(TAG) -t $(IMAGE_PREFIX)-base:latest .

$(addprefix build-,$(COMPONENTS)): build-%: build-base
	$(ENGINE) build $(BUILD_FLAGS) $(LABELS) --build-arg BASE_IMAGE=$(IMAGE_PREFIX)-base:$(TAG) \
		-f images/$*/Dockerfile -t $(IMAGE_PREFIX)-$*:$(TAG) -t $(IMAGE_PREFIX)-$*:latest .

image-sizes:
	@$(REGISTRY_TOOL) sizes base $(COMPONENTS)

push:
	$(REGISTRY_TOOL) push $(addprefix --engine-flag=,$(PUSH_FLAGS)) $(COMPONENTS)

image-uris:
	$(REGISTRY_TOOL) uris --out $(IMAGE_URIS) $(COMPONENTS)

# SageMaker pipeline definitions of both pipelines, naming the images of IMAGE_URIS (make push
# image-uris first): PIPELINE_ROLE is the IAM role ARN the jobs run as, PIPELINE_S3 the
# s3://bucket/prefix for their outputs, EXPORT_FLAGS more export options (--param k=v, --spot).
# The SDK comes from the lock's aws group alone, in an environment of its own (no torch).
EXPORT_VENV := .venv-export
EXPORT_PY ?= $(EXPORT_VENV)/bin/python
EXPORT = $(EXPORT_PY) -m pipelines export --images $(IMAGE_URIS) --role '$(PIPELINE_ROLE)' \
	--s3 '$(PIPELINE_S3)' $(EXPORT_FLAGS)

$(EXPORT_VENV)/.installed-lock: requirements.lock
	rm -rf $(EXPORT_VENV)
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(PYTHON) images/lock.py select --only aws > $(EXPORT_VENV)/requirements.txt
	$(EXPORT_VENV)/bin/pip install --quiet --no-deps --require-hashes -r $(EXPORT_VENV)/requirements.txt
	touch $@

export-pipelines: $(if $(filter $(EXPORT_VENV)/bin/python,$(EXPORT_PY)),$(EXPORT_VENV)/.installed-lock)
	@test -n '$(PIPELINE_ROLE)' -a -n '$(PIPELINE_S3)' || { echo "set PIPELINE_ROLE (an IAM role" \
		"ARN) and PIPELINE_S3 (s3://bucket/prefix) for the exported pipelines" >&2; exit 2; }
	$(EXPORT) pipelines/training.yaml --out training-pipeline.json
	$(EXPORT) pipelines/batch_inference.yaml --out batch-inference-pipeline.json

# The human-in-the-loop path against a real Label Studio server, installed in an environment of its
# own (labelling/label-studio-requirements.txt; never in the lock).
LABEL_STUDIO_VENV ?= build/label-studio-venv
$(LABEL_STUDIO_VENV)/.installed: labelling/label-studio-requirements.txt
	rm -rf $(LABEL_STUDIO_VENV)
	$(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/pip install --quiet -r $<
	touch $@

label-studio: $(LABEL_STUDIO_VENV)/.installed

test-labelling: venv label-studio
	LABEL_STUDIO_VENV=$(abspath $(LABEL_STUDIO_VENV)) $(PY) -m pytest -q tests/labelling

# The Streamlit app (python -m app): predict, explain, review runs, approve versions.
app: venv
	$(PY) -m app $(APP_FLAGS)

# The app in Debian's headless Chromium (and its WebDriver, whose path Selenium is given: nothing
# is looked up or downloaded at test time); the screenshot stays in build/browser-artifacts/.
test-browser: venv
	images/apt-install.sh chromium chromium-driver
	BROWSER_ARTIFACTS=$(abspath build/browser-artifacts) $(PY) -m pytest -q tests/browser

hadolint: venv
	$(VENV)/bin/hadolint images/*/Dockerfile

# `make run-algorithm-train`: the image against a local /opt/ml-style folder (RUN_DIR, made from the
# digits sample by `python -m images.local_run` when missing), as SageMaker would start it.
RUN_DIR ?= build/opt_ml
$(foreach c,$(COMPONENTS),run-$(c)-train run-$(c)-serve): run-%: venv
	$(PY) -m images.local_run --engine $(ENGINE) --prefix $(IMAGE_PREFIX) --tag $(TAG) \
		--run-dir $(RUN_DIR) $(subst -, ,$*)

# Container tests: podman set up as ../shared/DESIGN.md describes, the images built, run, pushed.
test-images: venv
	images/podman/setup.sh
	$(MAKE) build ENGINE=podman PYTHON_IMAGE=localhost/debian-python:bookworm \
		BUILD_FLAGS="$$(cat build/podman/build-flags)"
	$(PY) -m pytest -q tests/images

