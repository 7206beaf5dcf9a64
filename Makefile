# Everything a newcomer needs: `make demo` and `make test` work from a fresh clone, offline
# (only the package registry is reached, to fill .venv).
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
SHARED  ?= ../shared
MNIST   ?= $(SHARED)/data/mnist
# Where tfds keeps prepared data sets; outside the repo's tracked files, reused between runs.
DATA_DIR ?= .cache/tensorflow_datasets
PYTEST_ARGS ?= -n 2

.PHONY: demo test install clean results sweep bench

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The disentangling model on MNIST when its four files are at $(MNIST) (prepared offline by
# tfds, ~20 s once), else on the 8x8 digits that ship with scikit-learn.
DEMO_DATA = $(if $(wildcard $(MNIST)/train-images-idx3-ubyte.gz),--dataset=mnist \
	--manual_dir=$(abspath $(MNIST)) --data_dir=$(abspath $(DATA_DIR)),--batch_size=32 --epochs=40)

demo: $(VENV)/.installed
	$(PY) -m dvrnn_tf.train --flagfile=flags/demo.flags $(DEMO_DATA) --run_dir=runs/demo --overwrite

test: $(VENV)/.installed
	DVRNN_MNIST_DIR=$(abspath $(MNIST)) DVRNN_DATA_DIR=$(abspath $(DATA_DIR)) \
	  $(PY) -m pytest $(PYTEST_ARGS)

# The measured results table (docs/results.md, docs/results.json): trains every config of
# scripts/results.py for 3 seeds into runs/sweep/ (shared with `make sweep`: the same runs are
# reused) and evaluates each (IWAE K=100 on 250 held-out sequences); rerun to resume.
results: $(VENV)/.installed
	$(PY) scripts/results.py --manual_dir=$(abspath $(MNIST)) --data_dir=$(abspath $(DATA_DIR)) \
	  --iwae_k=100 --iwae_sequences=250 --override=--steps_per_execution=8 $(RESULTS_ARGS)

# The disentanglement sweep (docs/disentanglement.md, docs/figures/pareto.png); resumable.
sweep: $(VENV)/.installed
	$(PY) -m dvrnn_tf.experiments.sweep --manual_dir=$(abspath $(MNIST)) --data_dir=$(abspath $(DATA_DIR)) \
	  --iwae_k=100 --iwae_sequences=250 $(SWEEP_ARGS)

# The speed benchmark (docs/performance.md): every model, both configurations, XLA off/on.
bench: $(VENV)/.installed
	$(PY) -m dvrnn_tf.bench --out=docs/performance/bench.json $(BENCH_ARGS)

clean:
	rm -rf runs .cache .pytest_cache build dist *.egg-info
