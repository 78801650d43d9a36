# Entry points of the course. Every target installs the package first (once per pyproject or lock
# change), at the versions of requirements.lock (LOCK=0: the newest pyproject.toml allows).
#   make course   run every notebook headlessly (mini profile) -> outputs/notebooks, outputs/html
#   make test     unit tests (the rehearsal among them), then every notebook under nbval (CI: .ci/run)
#   make rehearse every notebook in the workshop and paper profiles on offline stand-ins (papermill)
#   make rehearse-full  the paper profile's code at SD v1.5's real sizes, random weights, on the CPU
#   make lab      open the notebooks in JupyterLab
#   make bench    run benchmarks/bench_*.py, then one table: outputs/bench_table.md (+ .json)
#   make lock     write requirements.lock from .venv (after a dependency change)
#   make strip    remove outputs and execution counts from notebooks before committing
#   make results  rebuild the shipped results store data/results/store (hours on a CPU; resumable)
#   make wheelhouse  a wheel of every locked dependency in $(WHEELHOUSE_DIR), for offline laptops
#   make install WHEELHOUSE=DIR  install from that folder alone (pip --no-index: no registry)
#   make check    is this machine ready for the workshop? five checks, one line each, < 1 minute
#   make slides   the opening talk and the debrief as reveal.js pages, outputs/slides/
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The Python that builds .venv: the first of these on PATH that is 3.11 or newer, or the one
# named (`make course PYTHON=/opt/python3.12/bin/python3`). Looked up only when .venv is made.
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3
IS_311_OR_NEWER := -c 'import sys; sys.exit(sys.version_info < (3, 11))'
PYTHON ?= $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell command -v $(p) >/dev/null 2>&1 \
	&& $(p) $(IS_311_OR_NEWER) 2>/dev/null && echo $(p))))
NOTEBOOKS = $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
HEADLESS := BRIDGELIB_PROFILE=mini HF_HUB_OFFLINE=1

.PHONY: install lock course test rehearse rehearse-full lab bench strip results wheelhouse check slides

install: $(VENV)/.installed

$(PY):
	@py="$(PYTHON)"; \
	if [ -z "$$py" ]; then echo "error: no Python 3.11 or newer on PATH (looked for" \
		"$(PYTHON_CANDIDATES)); install one, or name it: make PYTHON=/path/to/python3.11" >&2; exit 1; fi; \
	command -v "$$py" >/dev/null || { echo "error: PYTHON=$$py: no such program" >&2; exit 1; }; \
	if ! "$$py" $(IS_311_OR_NEWER) 2>/dev/null; then echo "error: PYTHON=$$py is" \
		"$$("$$py" -V 2>&1), not Python 3.11 or newer" >&2; exit 1; fi; \
	echo "$$py -m venv $(VENV)"; "$$py" -m venv $(VENV)

# The stamp is newer than pyproject.toml and the lock until either changes: then pip runs again.
# LOCK=1 (default): the exact versions of requirements.lock, which the course was tested with;
# LOCK=0: the newest versions pyproject.toml allows.
# WHEELHOUSE=DIR: install from the wheels in DIR only (`make wheelhouse` made it), no registry.
LOCK ?= 1
WHEELHOUSE ?=
PIP_FROM = $(if $(WHEELHOUSE),--no-index --find-links "$(abspath $(WHEELHOUSE))")
$(VENV)/.installed: pyproject.toml requirements.lock | $(PY)
	@if [ -n "$(WHEELHOUSE)" ] && [ ! -d "$(WHEELHOUSE)" ]; then echo "error: WHEELHOUSE=$(WHEELHOUSE)" \
		"is not a folder; make one with make wheelhouse on a machine with the registry" >&2; exit 1; fi
	@if [ "$(LOCK)" = 1 ]; then echo "$(VENV)/bin/pip install $(PIP_FROM) -r requirements.lock"; \
		$(VENV)/bin/pip install $(PIP_FROM) -r requirements.lock; fi
	$(VENV)/bin/pip install $(PIP_FROM) -e '.[dev]'
	touch $@

# Write requirements.lock from what .venv holds now (after a dependency change and a test run).
lock: install
	@{ sed -n '1,3p' requirements.lock; $(VENV)/bin/pip freeze --exclude-editable | \
		grep -viE '^(bridgelib|nvidia[-_]|triton==|cuda[-_])'; } > requirements.lock.tmp && \
		mv requirements.lock.tmp requirements.lock

course: install
	$(HEADLESS) $(PY) tools/run_course.py --profile mini

# pytest exits 5 when it collects nothing; for the notebook step that is a pass.
test: install
	$(PY) -m pytest tests
ifeq ($(NOTEBOOKS),)
	@echo "no notebooks/[0-9][0-9]_*.ipynb to run under nbval"
else
	$(HEADLESS) BRIDGELIB_PROGRESS=0 $(PY) -m pytest --nbval-lax --nbval-current-env \
		--nbval-cell-timeout 300 -p no:cacheprovider $(NOTEBOOKS) || [ $$? -eq 5 ]
endif

# tests/test_rehearsal.py: random-weight stand-ins with the real classes and layouts, tiny sizes.
# `make test` runs it too (it is one of tests/); this target runs it alone.
rehearse: install
	$(PY) -m pytest -m rehearsal tests/test_rehearsal.py

# SD v1.5's components at full size, random weights, on the CPU: one DSI step, two 512 px images,
# resnet18 at 224 px (tools/rehearse_full.py; measured: 3 min and 7.9 GB on one core; not in CI).
rehearse-full: install
	HF_HUB_OFFLINE=1 $(PY) tools/rehearse_full.py

lab: install
	$(VENV)/bin/jupyter lab notebooks/

# Each benchmark writes outputs/bench_*.json; the table adds notebook times if `make course` ran.
bench: install
	@for f in benchmarks/bench_*.py; do \
		[ -e "$$f" ] || continue; \
		echo "== $$f"; $(HEADLESS) BRIDGELIB_PROGRESS=0 $(PY) "$$f" || exit 1; \
	done
	$(PY) tools/bench_table.py

strip: install
	$(PY) tools/strip_notebooks.py

# Every figure family of notebooks 05-06 as one sweep into cache/sweeps/store (interrupt and
# rerun at will: finished runs are kept, and so are the runs data/results/store already holds),
# then the compact CSVs to data/results/store. It prints its plan (runs, images, tokens, hours)
# first. WORKERS=2 trains two runs at once (benchmarks/bench_workers.py measures which is faster).
WORKERS ?= 1
results: install
	$(HEADLESS) $(PY) tools/build_results_store.py --grid full --workers $(WORKERS)
	$(PY) tools/readme_claims.py
	$(PY) tools/answers.py

# Wheels for every locked dependency (and setuptools, which `pip install -e .` builds with) for this
# machine's platform and Python, into one folder a USB stick carries (docs/workshop.md has the size).
# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes torch and torchvision from that index
# instead (the CPU build: no CUDA libraries; not measured here, that index was out of reach).
WHEELHOUSE_DIR = $(or $(WHEELHOUSE),outputs/wheelhouse)
TORCH_INDEX ?=
wheelhouse: | $(PY)
	@mkdir -p "$(WHEELHOUSE_DIR)"
	@if [ -n "$(TORCH_INDEX)" ]; then \
		grep -vE '^(torch|torchvision)==' requirements.lock > "$(WHEELHOUSE_DIR)/.lock-without-torch"; \
		$(PY) -m pip download -d "$(WHEELHOUSE_DIR)" --no-deps --index-url "$(TORCH_INDEX)" \
			$$(grep -E '^(torch|torchvision)==' requirements.lock) && \
		$(PY) -m pip download -d "$(WHEELHOUSE_DIR)" -r "$(WHEELHOUSE_DIR)/.lock-without-torch"; \
	else $(PY) -m pip download -d "$(WHEELHOUSE_DIR)" -r requirements.lock; fi
	$(PY) -m pip download -d "$(WHEELHOUSE_DIR)" 'setuptools>=68'
	@echo "wheelhouse: $$(ls "$(WHEELHOUSE_DIR)" | wc -l) files, $$(du -sh "$(WHEELHOUSE_DIR)" | cut -f1) in $(WHEELHOUSE_DIR)"

# Imports, the shipped world's files, one tiny generation, one training step, the notebooks'
# kernel: one line per check (tools/check_laptop.py). Does not install: a missing .venv fails.
check:
	@[ -x $(PY) ] || { echo "FAIL install: no $(PY); run make install (offline: make install WHEELHOUSE=DIR)"; exit 1; }
	@$(HEADLESS) BRIDGELIB_PROGRESS=0 $(PY) tools/check_laptop.py

# The opening talk and the debrief as reveal.js slides, from the cells tagged for them in the
# executed notebooks (make course first; tools/make_slides.py).
slides: install
	$(PY) tools/make_slides.py
