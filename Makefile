# Two entry points for a newcomer: `make run` (`dvc repro` of params.yaml) and `make test`.
# TORCH_SPEC selects the PyTorch build; the default is the CPU wheel. On a CUDA machine, e.g.:
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: install install-dev run test lint ui image clean

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -c constraints.txt -e ".[pipeline]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e ".[pipeline,kubeflow,dev]"
	touch $@

# The pipeline (dvc.yaml) with the active params.yaml: fetch -> prepare -> train both
# architectures -> evaluate them and bicubic on the held-out images -> comparison report.
# A second `make run` with nothing changed does nothing.
run: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro

test: install-dev
	$(PY) -m ruff check src tests benchmarks pipelines components
	$(PY) -m pytest

# The MLflow UI on the embedded store that `make run` fills (runs, curves, registry):
# http://127.0.0.1:$(UI_PORT). A team server has its own UI: open MLFLOW_TRACKING_URI in a browser.
UI_PORT ?= 5000
ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts --host 127.0.0.1 --port $(UI_PORT) --workers 1

lint: install-dev
	$(PY) -m ruff check src tests benchmarks pipelines components

# The one image of every Kubeflow component (components/Dockerfile; the build context is the
# repository root, filtered by .dockerignore). torch comes from BASE_IMAGE, a CUDA PyTorch image.
# Push it and compile the pipeline against it: ASYMSR_IMAGE=$(IMAGE) (components/asymsr_components.py).
IMAGE ?= asymsr:$(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
BASE_IMAGE ?= pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
image:
	@command -v docker >/dev/null 2>&1 || { echo "make image: 'docker' was not found on PATH; install Docker (or a docker-compatible CLI) to build $(IMAGE)" >&2; exit 1; }
	docker build -f components/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

clean:
	rm -rf data models mlruns .dvc/cache .dvc/tmp
