# Two entry points for a newcomer: `make run` (the quick job on the embedded data) and `make test`.
# TORCH_SPEC selects the PyTorch build; the default is the CPU wheel. On a CUDA machine, e.g.:
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
ASYMSR := $(VENV)/bin/asymsr
DATA := data
RUN := runs/quick
ARCHS := vdsr asym_vdsr

.PHONY: install install-dev run test lint clean

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# The quick job: embedded photographs -> patches -> train both architectures briefly on the CPU
# -> evaluate them and bicubic on the held-out test photographs -> print the comparison table.
run: install
	$(ASYMSR) fetch builtin:skimage/train --out $(DATA)/raw/skimage_train
	$(ASYMSR) fetch builtin:skimage/val --out $(DATA)/raw/skimage_val
	$(ASYMSR) fetch builtin:skimage/test --out $(DATA)/raw/skimage_test
	$(ASYMSR) prepare $(DATA)/raw/skimage_train --out $(DATA)/patches/skimage_train --downsize-factors 1.0
	$(ASYMSR) evaluate --model bicubic --data $(DATA)/raw/skimage_test --out $(RUN)/bicubic.json --quiet
	for arch in $(ARCHS); do \
	  $(ASYMSR) train --arch $$arch --config configs/quick.json --patches $(DATA)/patches/skimage_train \
	    --val $(DATA)/raw/skimage_val --out $(RUN)/$$arch || exit 1; \
	  $(ASYMSR) evaluate --model $(RUN)/$$arch/model.pt --data $(DATA)/raw/skimage_test --out $(RUN)/$$arch.json \
	    --quiet || exit 1; \
	done
	$(ASYMSR) report $(RUN)/bicubic.json $(RUN)/vdsr.json $(RUN)/asym_vdsr.json \
	  --labels bicubic,vdsr,asym_vdsr --out $(RUN)/results.md

test: install-dev
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest

lint: install-dev
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(DATA)/patches runs
