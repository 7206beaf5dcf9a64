# Everything a newcomer needs: `make demo` and `make test` work from a fresh clone, offline
# (only the package registry is reached, to fill .venv).
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
SHARED  ?= ../shared
MNIST   ?= $(SHARED)/data/mnist
# Where tfds keeps prepared data sets; outside the repo's tracked files, reused between runs.
DATA_DIR ?= .cache/tensorflow_datasets
PYTEST_ARGS ?= -n 2 --durations=20

.PHONY: demo test install clean results sweep bench proposals sprites

# -qq: pip's errors only (a failed install still stops here, saying why); its warnings about
# a machine's own index settings and setuptools' notice on editable installs are not ours.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[test]'
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

# The first paper's proposals (docs/proposals.md): every row of flags/sweeps/proposals.txt
# trained, evaluated on validation (where the rows are compared), then on test (the numbers
# reported), then the page's table and figure; resumable. SEEDS=0 for one seed.
SEEDS ?= 0,1,2
PROPOSALS = --variants=flags/sweeps/proposals.txt --runs_root=runs/proposals --seeds=$(SEEDS) \
	--manual_dir=$(abspath $(MNIST)) --data_dir=$(abspath $(DATA_DIR)) --override=--nofigures \
	--override=--checkpoint_every=5 --override=--validation_freq=5 \
	--override=--steps_per_execution=8 --iwae_sequences=250 --probe_sequences=1000
proposals: $(VENV)/.installed
	$(PY) -m dvrnn_tf.experiments.sweep $(PROPOSALS) --eval_split=validation --iwae_k=10 \
	  --metrics=likelihood,swap,concepts --eval_sequences=300 --pareto_png= \
	  --out_md=docs/proposals_validation.md --out_json=docs/proposals_validation.json
	$(PY) -m dvrnn_tf.experiments.sweep $(PROPOSALS) --eval_split=test --iwae_k=100 \
	  --eval_sequences=500 --pareto_png=docs/figures/proposals_pareto.png \
	  --out_md=docs/proposals_test.md --out_json=docs/proposals_test.json
	$(PY) scripts/proposals_report.py

# The field's Sprites table (docs/sprites.md): every row of flags/sweeps/sprites.txt trained for
# SEEDS (~35 min a run on 2 cores) and evaluated on test with the protocol; resumable.
SPRITES ?= $(SHARED)/data/sprites
sprites: $(VENV)/.installed
	$(PY) -m dvrnn_tf.experiments.sweep --variants=flags/sweeps/sprites.txt --dataset=sprites \
	  --manual_dir=$(abspath $(SPRITES)) --runs_root=runs/sprites_table --seeds=$(SEEDS) \
	  --eval_split=test --iwae_k=100 --iwae_sequences=200 --eval_sequences=1000 \
	  --probe_sequences=2000 --pareto_png= \
	  --out_md=docs/sprites_table.md --out_json=docs/sprites_table.json $(SPRITES_ARGS)

# The speed benchmark (docs/performance.md): every model, both configurations, XLA off/on.
bench: $(VENV)/.installed
	$(PY) -m dvrnn_tf.bench --out=docs/performance/bench.json $(BENCH_ARGS)

clean:
	rm -rf runs .cache .pytest_cache build dist *.egg-info
