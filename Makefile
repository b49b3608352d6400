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
# The anchors' own code for distill-discriminators' parity tests (--no-deps: torch stays the CPU build), in a
# folder of its own that only those tests put on sys.path: plugins/distill-discriminators/tests/disc_anchors.py
# (asteroid: its PIT wrapper and SDR losses, read by file in tests/terms/test_pit.py).
ANCHORS := $(VENV)/anchors
ANCHOR_PACKAGES := descript-audio-codec==1.0.0 descript-audiotools==0.7.2 vocos==0.1.0 bigvgan==2.4.1 \
	audiocraft==1.3.0 torchaudio==2.11.1 einops==0.8.2 julius==0.2.8 flatten-dict==0.5.0 randomname==0.2.1 \
	ffmpy==1.0.0 argbind==0.3.9 rich==15.0.0 importlib-resources==7.1.0 pyloudnorm==0.2.0 fire==0.7.1 \
	docstring-parser==0.18.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 asteroid==0.7.0 nnaudio==0.3.4

.PHONY: install anchors test demo bench mutate clean

install: $(STAMP)

$(STAMP): pyproject.toml $(PLUGINS) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[train,test,metrics]" $(foreach p,$(dir $(PLUGINS)),-e "$(p)[test]")
	touch $(STAMP)

anchors: $(ANCHORS)/.installed

$(ANCHORS)/.installed: $(STAMP)
	$(PY) -m pip install -q --no-deps --upgrade --target $(ANCHORS) $(ANCHOR_PACKAGES)
	touch $@

test: $(STAMP) $(ANCHORS)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports  # the layers: core < seed wing < training < CLI (pyproject's [tool.importlinter])
	$(PY) -m pytest -q -n 2 -m "not serial"  # two xdist workers; pyproject's markers say what "serial" is
	$(PY) -m pytest -q -m serial  # then, alone, the tests that touch state shared beyond their tmp_path

demo: $(STAMP)
	$(VENV)/bin/distill-loss train --name demo --out runs

bench: $(STAMP)
	$(PY) bench/run.py

# Mutation testing of the maths and contract modules (pyproject's [tool.mutmut], and distill-discriminators' own
# for its losses and adversarial step, run from its folder so that its mutated copy is the one imported): not
# part of `make test` or CI. One torch thread per worker; the anchors' folder named for the parity tests, which
# run from mutmut's copy of the tree. `mutmut results` (in either folder) lists the
# survivors, `mutmut show NAME` one of them; MUTANTS="distill_core.training.paired.*" runs one module's.
MUTANTS ?=
mutate: $(STAMP) $(ANCHORS)/.installed
	$(PY) -m pip install -q "mutmut>=3.8,<3.9"
	DISTILL_ANCHORS=$(abspath $(ANCHORS)) OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	$(VENV)/bin/mutmut results
	cd plugins/distill-discriminators && DISTILL_ANCHORS=$(abspath $(ANCHORS)) OMP_NUM_THREADS=1 \
		../../$(VENV)/bin/mutmut run --max-children 2
	cd plugins/distill-discriminators && ../../$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) runs bench/results.json mutants plugins/distill-discriminators/mutants
