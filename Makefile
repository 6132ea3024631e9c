# Two commands for a newcomer: `make train` runs the main job, `make test` runs the tests.
# Each creates the virtualenv and installs the project into it first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test zoo clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: train a model (default resnet20, 30 epochs). CIFAR-10 is downloaded on first use;
# where the shared JPEG copy of CIFAR-10 is present (no internet needed), it is used instead.
# More Hydra overrides go in ARGS, e.g. make train ARGS="model=mobilenet_v2_x1_0 trainer.max_epochs=5"
SHARED_CIFAR := ../shared/datasets/cifar10-jpeg
DATA ?= $(if $(wildcard $(SHARED_CIFAR)/train),data=folder data.root=$(SHARED_CIFAR),)
train: $(STAMP)
	$(PY) train.py $(DATA) $(ARGS)

# The zoo's complexity table.
zoo: $(STAMP)
	$(VENV)/bin/convzoo zoo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
