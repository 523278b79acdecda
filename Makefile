# Two entry points for a fresh machine: `make demo` trains LeNet-5, `make test` runs the tests.
# Both create the virtual environment and fetch MNIST first; both are safe to run twice.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test data install lint clean

demo: data
	$(BIN)/convnet train --epochs 3 --overwrite

test: data
	$(BIN)/python -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tf,plots,hdf5,mpi,dev]'
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/convnet data --link 0x07-cnn

lint: $(STAMP)
	$(BIN)/ruff check convnet tests benchmarks
	$(BIN)/pycodestyle 0x07-cnn

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
