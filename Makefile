# The two commands a newcomer needs: `make demo` (train the demo VAE) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on these machines; a plain `torch` requirement would pull a multi-GB CUDA build.
# distill-core itself is lean (the loss framework only); `make demo` needs the [train] extra (CLI, progress,
# plots, TensorBoard) and `make test` the [test] extra too, so the one venv installs both, and [metrics] (PESQ,
# STOI) for the speech columns of `distill-loss compare`.
TORCH_SPEC ?= torch==2.13.0
PLUGINS := $(wildcard plugins/*/pyproject.toml)
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(PLUGINS) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[train,test,metrics]" $(foreach p,$(dir $(PLUGINS)),-e "$(p)[test]")
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/distill-loss train --name demo --out runs

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) runs bench/results.json
