# ecr-mirror developer entry points. Every target sets itself up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: setup system-deps test test-fast demo bench synth clean

system-deps:
	@missing=""; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt lambda/requirements.txt pyproject.toml package.json
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null || \
	  [ "$$(node -p 'require("./node_modules/aws-cdk/package.json").version' 2>/dev/null)" = "$$(node -p 'require("./package.json").devDependencies["aws-cdk"]')" ] || \
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
