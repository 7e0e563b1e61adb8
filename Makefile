# Two commands do all set-up on a fresh machine: `make run` (the app) and `make test` (the tests).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8501

.PHONY: run test test-ray test-all bench system-deps clean

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	# totalsegmentator -> nnunetv2 -> timm drags in a PyPI torchvision that cannot load beside the
	# local CPU torch build ("operator torchvision::nms does not exist"); nothing we use needs it.
	$(VENV)/bin/pip uninstall -y -q torchvision
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Headless browser (end-to-end tests) and PDF tools come from Debian.
system-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v pdftotext >/dev/null || { \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver poppler-utils >/dev/null; }

run: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --browser.gatherUsageStats false

test: $(STAMP) system-deps
	$(PY) -m pytest

test-ray: $(STAMP) system-deps  # the executor's Ray tests (a local 2-CPU cluster); CI runs them after make test
	$(VENV)/bin/pip install -q -r requirements-ray.txt
	$(PY) -m pytest -m ray

test-all: $(STAMP) system-deps
	$(VENV)/bin/pip install -q -r requirements-ray.txt  # the ray-marked tests' optional executor
	$(PY) -m pytest -m ""

bench: $(STAMP)
	$(PY) bench/phantom.py
	$(PY) bench/measure.py
	$(PY) bench/generate.py
	$(VENV)/bin/vct phantom --n 10 --seed 12 --out workspace/cohorts/holdout --quiet
	$(PY) bench/reconstruction.py --cohort workspace/cohorts/holdout

clean:
	rm -rf $(VENV) .pytest_cache
