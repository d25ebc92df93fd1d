# Two entry points for a newcomer: `make run` (`dvc repro` of params.yaml) and `make test`.
# While editing: `make test-fast` (unit tests, under 3 minutes on 2 cores).
# TORCH_SPEC selects the PyTorch build; the default is the CPU wheel. On a CUDA machine, e.g.:
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: install install-dev run test test-fast lint deps ui image image-offline wheelhouse clean

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

LINTED = src tests benchmarks pipelines components tools

# The whole suite, as CI runs it (.ci/run): lint, then unit and integration tests, two at a time
# (pytest-xdist; most of the slow tests wait on subprocesses: dvc, kfp.local, torchrun, MLflow).
TEST_WORKERS ?= 2
test: install-dev lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup tests

# The edit loop: lint and the unit tests only (tests/unit).
test-fast: install-dev lint
	$(PY) -m pytest tests/unit

# The MLflow UI on the embedded store that `make run` fills (runs, curves, registry):
# http://127.0.0.1:$(UI_PORT). A team server has its own UI: open MLFLOW_TRACKING_URI in a browser.
UI_PORT ?= 5000
ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts --host 127.0.0.1 --port $(UI_PORT) --workers 1

lint: install-dev
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) tools/dvc_deps.py

# Rewrite each dvc.yaml stage's code deps to the import closure of its stage module.
deps: install
	$(PY) tools/dvc_deps.py --write

# The one image of every Kubeflow component (components/Dockerfile; the build context is the
# repository root, filtered by .dockerignore). torch comes from BASE_IMAGE, a CUDA PyTorch image.
# Push it and compile the pipeline against it: ASYMSR_IMAGE=$(IMAGE) (components/asymsr_components.py).
IMAGE ?= asymsr:$(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
BASE_IMAGE ?= pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
image:
	@command -v docker >/dev/null 2>&1 || { echo "make image: 'docker' was not found on PATH; install Docker (or a docker-compatible CLI) to build $(IMAGE)" >&2; exit 1; }
	docker build -f components/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# The same image without a registry (air-gapped sites, this project's machines):
# components/Dockerfile.offline on two local Debian bases (tools/image_bases.sh: debootstrap +
# docker import, made once) with every Python package from a host wheelhouse. The build context is
# a tar of exactly what the Dockerfile copies, so no .dockerignore is involved.
# The wheelhouse lives in a cache outside the clone, named by the hash of the dependency pins, so
# fresh clones on one machine share it and a change of the pins makes a new one.
ASYMSR_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/asymsr
DEPS_KEY := $(shell printf '%s' "$(TORCH_SPEC)" | cat - pyproject.toml constraints.txt | sha256sum | cut -c1-12)
WHEELHOUSE ?= $(ASYMSR_CACHE)/wheelhouse-$(DEPS_KEY)
OFFLINE_BASE ?= asymsr-base:bookworm
OFFLINE_BUILDER ?= asymsr-builder:bookworm
OFFLINE_CONTEXT = components/Dockerfile.offline pyproject.toml constraints.txt README.md src profiles

# pip inside the build needs the build backend of pyproject.toml too, as wheels (no index there)
BUILD_REQUIRES = $$($(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"])')
$(WHEELHOUSE)/.complete: | $(VENV)/.installed
	$(PY) -m pip wheel -q -w $(WHEELHOUSE) -c constraints.txt "$(TORCH_SPEC)" ".[pipeline,kubeflow]" $(BUILD_REQUIRES)
	rm -f $(WHEELHOUSE)/asymsr-*.whl  # the package itself is installed from src/ in the image
	touch $@
wheelhouse: $(WHEELHOUSE)/.complete

image-offline: $(WHEELHOUSE)/.complete
	@command -v docker >/dev/null 2>&1 || { echo "make image-offline: 'docker' was not found on PATH (apt-get install docker.io)" >&2; exit 1; }
	tools/image_bases.sh $(OFFLINE_BASE) $(OFFLINE_BUILDER)
	tar --exclude=__pycache__ --exclude='*.egg-info' -cf - $(OFFLINE_CONTEXT) -C $(dir $(WHEELHOUSE)) $(notdir $(WHEELHOUSE)) \
		| DOCKER_BUILDKIT=0 docker build -q -f components/Dockerfile.offline --build-arg BASE_IMAGE=$(OFFLINE_BASE) \
			--build-arg BUILDER_IMAGE=$(OFFLINE_BUILDER) --build-arg WHEELHOUSE=$(notdir $(WHEELHOUSE)) -t $(IMAGE) -
	@docker image inspect -f '$(IMAGE): {{.Size}} bytes' $(IMAGE)

clean:
	rm -rf data models mlruns .dvc/cache .dvc/tmp

# Mutation testing, not in CI (about 40 minutes on 2 cores): mutmut (pinned in constraints.txt) puts
# small bugs into the modules whose bugs would silently change results (pyproject.toml
# [tool.mutmut]) and runs, for each, the fast unit tests that reach the mutated function; then
# reports/mutation/hand_mutants.py runs the bugs mutmut cannot make (decorated functions, module
# constants) and the audit's table of issue 17. Prints every mutant that no test killed. It works in a
# scratch copy (MUTATE_DIR, with no ../shared beside it), so the tree stays clean and no kill needs the
# datasets. The last report, with the equivalent mutants: reports/mutation/README.md.
MUTATE_DIR ?= /tmp/asymsr-mutate
# training/loop.py: the training step, its validation and its checkpoint; not the progress printing.
LOOP_MUTATED = train load_validation_pairs validation_psnr _setup _resume _make_optimizer _loss_function \
	_clip_gradients _loader _feed _optimize _run_epoch _validate _finish_epoch _save
MUTANTS = 'asymsr.sr.*' 'asymsr.data.*' 'asymsr.mlops.*' 'asymsr.nn.*' \
	$(foreach name,$(LOOP_MUTATED),'asymsr.training.loop.x_$(name)__mutmut_*')
.PHONY: mutate
mutate: install-dev
	rm -rf $(MUTATE_DIR) && mkdir -p $(MUTATE_DIR)
	tar --exclude=__pycache__ -cf - src tests pyproject.toml | tar -xf - -C $(MUTATE_DIR)
	@date -u +"mutation run started %Y-%m-%dT%H:%M:%SZ"
	cd $(MUTATE_DIR) && OMP_NUM_THREADS=1 $(CURDIR)/$(PY) -m mutmut run --max-children 2 $(MUTANTS)
	@date -u +"mutmut finished %Y-%m-%dT%H:%M:%SZ"
	@cd $(MUTATE_DIR) && $(CURDIR)/$(PY) -m mutmut results --all true | grep -v ": not checked$$" > results.txt; \
		echo "mutants by status:"; sed 's/.*: //' results.txt | sort | uniq -c; \
		echo "not killed:"; grep -v ": killed$$" results.txt || echo "    none"
	$(PY) reports/mutation/hand_mutants.py $(MUTATE_DIR)/hand
	@date -u +"mutation run finished %Y-%m-%dT%H:%M:%SZ"
