# Two entry points for a fresh machine: `make run` (the suite against the embedded
# reference host) and `make test` (the project's own tests). Both set everything up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NODE_BIN := node_modules/.bin
# Python caches its compiled modules here even where the machine turns that off (PYTHONDONTWRITEBYTECODE):
# the tests start the suite and the CLI hundreds of times, and each would compile the package anew.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: setup setup-python setup-system setup-allure run test bench captures report fuzz-long soak clean

setup: setup-python setup-system setup-allure

setup-python: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml setup.py conformance/wire/_rijndael.c
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# tshark (Wireshark cross-checks), BIND's named (DNS tests), unshare/nsenter/ip/mount (the discovery lab's
# namespace), Chromium (report check) and libfaketime (a host's clock moved by the suite), from Debian, when missing.
setup-system:
	@missing=""; command -v tshark >/dev/null || missing="$$missing tshark"; \
	command -v named >/dev/null || [ -x /usr/sbin/named ] || missing="$$missing bind9 bind9-utils"; \
	command -v unshare >/dev/null && command -v nsenter >/dev/null || missing="$$missing util-linux"; \
	command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing="$$missing iproute2"; \
	command -v mount >/dev/null || missing="$$missing mount"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing="$$missing faketime"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | $(SUDO) debconf-set-selections; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# The Allure 3 command line, from npm (no Java needed).
setup-allure: $(NODE_BIN)/allure
$(NODE_BIN)/allure: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	$(PYTEST) conformance/suite --alluredir reports/allure-results

test: setup
	$(PYTEST) -n 2 tests conformance/suite

bench: setup-python
	$(PY) -m conformance.bench --out reports/bench.json $(if $(VLMCS),--vlmcs $(VLMCS)) $(if $(VLMCSD),--vlmcsd $(VLMCSD))

captures: setup-python
	$(PY) -m conformance.pcap.generate captures/reference

# The suite's verdict is in the report, so a failing clause must not stop the report from being built.
# make report TARGET=10.0.0.5:1688 EXPECT=vlmcsd PROFILE=emulator: the suite's options, as kmsconf report takes them
report: setup
	-$(VENV)/bin/kmsconf report $(if $(TARGET),--target $(TARGET)) $(if $(EXPECT),--expect $(EXPECT)) \
	  $(if $(PROFILE),--profile $(PROFILE))

# then each parser target of the coverage-guided fuzzer (atheris) for FUZZ_SECONDS; corpora are kept between runs
FUZZ_SECONDS ?= 120
FUZZ_TARGETS := rpc ndr framing epid exchange pcap session
fuzz-long: setup-python
	$(PYTEST) -m fuzz -n auto tests --fuzz-runs 20000
	@mkdir -p reports/fuzz-crashes; for t in $(FUZZ_TARGETS); do \
	  echo "== atheris: $$t, $(FUZZ_SECONDS) s"; \
	  $(PY) -m conformance.fuzz.coverage $$t --seed-corpus reports/fuzz-corpus/$$t -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=10 -print_final_stats=1 -artifact_prefix=reports/fuzz-crashes/$$t- 2>&1 \
	    | grep -E '^#[0-9]+ +(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec)|Error:|Test unit written'; \
	  rc=$${PIPESTATUS[0]}; [ $$rc = 0 ] || { echo "$$t: libFuzzer exit $$rc (input saved under reports/fuzz-crashes/)"; exit 1; }; \
	done

# 100,000 activations from 10,000 CMIDs against one reference host, load generators on every core (about 1 minute)
soak: setup-python
	$(PYTEST) -m slow -n auto tests

clean:
	rm -rf reports/* $(VENV) node_modules
