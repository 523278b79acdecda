# Two entry points for a fresh machine: `make demo` trains LeNet-5, `make test` runs the tests.
# Both create the virtual environment and fetch MNIST first; both are safe to run twice.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test data install lint clean screenshots guide bench-frameworks notebooks

demo: data
	$(BIN)/convnet train --epochs 3 --overwrite

test: data
	$(BIN)/python -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tf,plots,hdf5,serve,mpi,dev]'
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/convnet data --link 0x07-cnn

# The guide's pictures and the numbers its section 6 quotes, from a run like `make demo`'s.
guide: data
	$(BIN)/convnet train --epochs 3 --out runs/guide --overwrite
	$(BIN)/python docs/figures/draw_guide.py --run runs/guide

# The page's screenshots in docs/figures/serve/, taken by the browser tests: every view of a
# grey LeNet-5 (the demo's checkpoint if it exists, else one the test trains on 5,000 images)
# and of a colour cifar-cnn trained on coloured shapes (colour-*.png, one at 420 pixels wide).
screenshots: data
	CONVNET_SCREENSHOTS=docs/figures/serve \
	CONVNET_SERVE_CHECKPOINT=$$(test -f runs/lenet5-numpy/checkpoint.npz && \
	  echo runs/lenet5-numpy/checkpoint.npz) \
	$(BIN)/python -m pytest -q tests/test_serve_browser.py tests/test_page_every_model.py

# The NumPy engine beside Keras, PyTorch and JAX (docs/performance.md): installs the `bench`
# extras (a CPU build of PyTorch, and JAX) into the environment, then runs the comparison;
# BENCH_ARGS passes options, e.g. BENCH_ARGS='--one-core --runs 1'.
bench-frameworks: data
	$(BIN)/python -m pip install --quiet -e '.[tf,mpi,bench]'
	$(BIN)/python -m convnet.apps.bench.frameworks $(BENCH_ARGS)

# Re-run the learner's notebooks in docs/notebooks and store them with their new outputs
# (tests/test_notebooks.py runs them too, without writing).
notebooks: data
	$(BIN)/jupyter-execute --inplace docs/notebooks/*.ipynb

lint: $(STAMP)
	$(BIN)/ruff check convnet tests docs
	$(BIN)/pycodestyle 0x07-cnn

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
