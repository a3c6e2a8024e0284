# ecr-mirror developer entry points. Every target sets itself up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_DEFAULT_REGION ?= us-east-1

.DEFAULT_GOAL := setup
.PHONY: setup system-deps test test-fast demo bench synth clean

# Node.js >= 18 with npm, Python >= 3.11 with venv, docker-registry, skopeo: installed with apt-get
# where it can; otherwise one line naming what is missing, and the set-up stops (no stamp).
system-deps:
	@bash .ci/check-tools

# The stamp is touched only after every step worked; system-deps runs first, every time.
$(STAMP): requirements.txt lambda/requirements.txt pyproject.toml package.json package-lock.json | system-deps
	test -x $(VENV)/bin/pip || python3 -m venv --clear $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null || { \
	  have="$$(node -p 'require("./node_modules/aws-cdk/package.json").version' 2>/dev/null)"; \
	  want="$$(node -p 'require("./package.json").devDependencies["aws-cdk"]')"; \
	  [ -n "$$have" ] && [ "$$have" = "$$want" ]; } || \
	  npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: system-deps $(STAMP)

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-fast: setup
	$(PY) -m pytest -q tests/unit

demo: setup
	$(PY) demo/run.py

bench: setup
	$(PY) bench/run.py

synth: setup
	npx cdk synth --quiet

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache
