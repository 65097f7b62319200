# The two commands of the README. Both create .venv and install tfzoo into it when needed.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo

.PHONY: install demo test test-e2e test-slow bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# beam: tests/data/test_data_beam.py runs prepare on Beam's DirectRunner (apache-beam caps protobuf
# below 7; the resolver picks a protobuf that TF 2.21 and serving-api 2.21 accept too).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[test,serving,beam]"
	touch $@

install: $(VENV)/.installed

# Train T-ResNet on the embedded synthetic dataset, evaluate, export, classify a real clip.
demo: install
	$(BIN)/python -m tfzoo.demo --model_dir=$(RUN_DIR)

# One pytest-xdist worker per core (TEST_WORKERS=0: serial); whole files per worker, so a
# module's shared fixtures (trained runs, exports) are built once.
TEST_WORKERS ?= 2

XDIST = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Under 10 minutes on 2 cores: every unit, layer, model contract and CLI table, and one
# real-consumer check per artefact (session loader, saved_model_cli, TF Serving stubs).
test: install
	$(BIN)/python -m pytest -q $(XDIST) tests

# The heavy end-to-end runs (kill and resume, multi-worker, the recipe on its official layout,
# the wheel in a fresh venv, Beam, the tf.data service, ...): about 10 minutes more; CI runs both.
test-e2e: install
	$(BIN)/python -m pytest -q $(XDIST) -m e2e tests

# Everything `make test` leaves out: full-size models, every registered model and recipe, the
# documented commands, and the e2e runs (an hour or more on 2 cores).
test-slow: install
	$(BIN)/python -m pytest -q -m "slow or e2e" tests

bench: install
	$(BIN)/python -m tfzoo.bench --model=resnet50 --model=tresnet50

clean:
	rm -rf $(VENV) runs
