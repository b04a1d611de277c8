# pocket — developer and demo entry points. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
POCKET := $(VENV)/bin/pocket
STAMP  := $(VENV)/.pocket-installed

.PHONY: venv demo test test-slow lint format bench-data bench-export bench-compress train-networks train-student train-teacher retrain-check clean

venv: $(STAMP)

# torch goes in first and alone, pinned to the CPU build, so no later resolution can pull a CUDA
# build; the check afterwards fails the install if any CUDA package slipped in anyway.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip check
	@if $(PY) -m pip list 2>/dev/null | grep -iE '^nvidia-|^triton ' ; then \
		echo "error: a CUDA package was installed next to the CPU torch build (see above)"; exit 1; fi
	$(PY) -c "import torch; v = torch.__version__; assert v.startswith('2.13.0'), v; print('torch', v)"
	touch $(STAMP)

demo: venv
	$(POCKET) run recipes/pose-mobile.yaml --force

test: venv lint
	$(PY) -m pytest -m "not slow" -q

test-slow: venv
	$(PY) -m pytest -m slow -q

lint: venv
	$(VENV)/bin/ruff check compress tests benchmarks
	$(VENV)/bin/ruff format --check compress tests benchmarks

format: venv
	$(VENV)/bin/ruff check --fix compress tests benchmarks
	$(VENV)/bin/ruff format compress tests benchmarks

bench-data: venv
	$(PY) benchmarks/data_speed.py

# Every export variant of the shipped student: time and sizes.
bench-export: venv
	POCKET_CACHE=.cache $(PY) benchmarks/export_all.py

# The compression stages on the shipped networks against their targets (about 30 min).
bench-compress: venv
	POCKET_CACHE=.cache $(PY) benchmarks/compression.py

# Reproduce the shipped networks: `make train-networks` trains both side by side, one thread
# each (about 2 hours on 2 CPU cores). Synthetic data is generated once into .cache/; the run
# folders are exported/<name>/, resumable.
TRAIN_ENV ?=
train-networks: venv
	$(MAKE) -j2 TRAIN_ENV="OMP_NUM_THREADS=1" train-student train-teacher

train-student: venv
	$(TRAIN_ENV) POCKET_CACHE=.cache $(POCKET) train recipes/student.yaml
	$(POCKET) checkpoint exported/student/best compress/checkpoints/student --dtype float16

train-teacher: venv
	$(TRAIN_ENV) POCKET_CACHE=.cache $(POCKET) train recipes/teacher.yaml
	$(POCKET) checkpoint exported/teacher/best compress/checkpoints/teacher --dtype float16

# Retrain both from their recipes and check each lands within 2 AP points of what ships.
retrain-check: venv
	POCKET_CACHE=.cache $(PY) benchmarks/retrain_check.py

clean:
	rm -rf .cache .pytest_cache .ruff_cache
