# Every target creates the virtual environment it needs in .venv and reuses it afterwards.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# `make convert`: the built-in default of the main job. It makes a Swin-T K400 checkpoint from the
# upstream reference model (fixed seed, the authors' exact layout and file name), converts it
# and prints the parity report.
DEMO_CONFIG := swin_t_k400
DEMO_PTH    := checkpoints/swin_tiny_patch244_window877_kinetics400_1k.pth

# `make release`: every official source found in $(SOURCES) becomes an asset in $(RELEASE), with
# manifest.json and MODEL_ZOO.md. `make sources` fills $(SOURCES) with generated stand-ins for the
# six official files (existing files are kept), so `make sources release` works offline.
SOURCES ?= checkpoints/sources
RELEASE ?= checkpoints/release

.PHONY: venv test test-slow convert sources release verify bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[convert,test,export]'
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q

# The long runs: full-size parity cases and the model tests on the JAX backend.
test-slow: venv
	$(PY) -m pip install --quiet -c constraints.txt -e '.[jax]'
	$(PY) -m pytest -q -m slow

convert: venv
	$(VENV)/bin/vswin-convert synthesize --config $(DEMO_CONFIG) --out $(DEMO_PTH) --force
	$(VENV)/bin/vswin-convert --config $(DEMO_CONFIG) --pth $(DEMO_PTH) --force

sources: venv
	$(VENV)/bin/vswin-convert synthesize --all --to $(SOURCES)

release: venv
	$(VENV)/bin/vswin-convert release --from $(SOURCES) --to $(RELEASE)

verify: venv
	$(VENV)/bin/vswin-convert verify --manifest $(RELEASE)/manifest.json --sources $(SOURCES)

# Conversion time and memory, and forward speed and memory against KerasCV's port and mmaction2.
bench: venv
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench,jax]'
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) *.egg-info
