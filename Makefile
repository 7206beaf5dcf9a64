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

.PHONY: demo test install clean results

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m dvrnn_tf.train --flagfile=flags/demo.flags --run_dir=runs/demo --overwrite

test: $(VENV)/.installed
	DVRNN_MNIST_DIR=$(abspath $(MNIST)) DVRNN_DATA_DIR=$(abspath $(DATA_DIR)) \
	  $(PY) -m pytest $(PYTEST_ARGS)

# The measured results table (docs/results.md, docs/results.json): trains every config of
# scripts/results.py for 3 seeds into runs/results/ and evaluates each; rerun to resume.
results: $(VENV)/.installed
	$(PY) scripts/results.py --manual_dir=$(abspath $(MNIST)) --data_dir=$(abspath $(DATA_DIR)) $(RESULTS_ARGS)

clean:
	rm -rf runs .cache .pytest_cache build dist *.egg-info
