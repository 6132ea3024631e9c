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

# The main job: the fast recipe (experiment=fast: fastnet_cpu, airbench's recipe) on a 10-minute budget:
# the whole command ends within 10 minutes on any machine. CIFAR-10 is downloaded on first use;
# where the shared JPEG copy of CIFAR-10 is present (no internet needed), it is used instead.
# More Hydra overrides go in ARGS: make train ARGS="budget=20min", ARGS="model=resnet20";
# another recipe in EXPERIMENT: make train EXPERIMENT=resnet_paper ARGS="model=resnet56" (He et al.'s
# 64k iterations), make train EXPERIMENT= ARGS="trainer.max_epochs=30" (no experiment: the plain recipe by epochs).
SHARED_CIFAR := ../shared/datasets/cifar10-jpeg
DATA ?= $(if $(wildcard $(SHARED_CIFAR)/train),data=folder data.root=$(SHARED_CIFAR),)
EXPERIMENT ?= fast
train: $(STAMP)
	$(PY) train.py $(if $(EXPERIMENT),experiment=$(EXPERIMENT),) $(DATA) $(ARGS)

# The zoo's complexity table.
zoo: $(STAMP)
	$(VENV)/bin/convzoo zoo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
