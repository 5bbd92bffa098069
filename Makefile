# One entry point for developers and CI.  Every target creates the virtualenv when needed.
#   make demo    set up, then watch kidecar work locally (no cluster needed)
#   make test    set up, build/cache the test kube-apiserver and OKG managers, lint, type-check and
#                run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: dev demo test lint typecheck pytest apiserver okg imagecheck bench clean

# The runtime alone (enough for the demo) ...
$(BIN)/kidecar: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/kidecar

# ... and what development and the tests need on top.  The contrib plugin is installed like any
# third-party plugin, and tested with the rest.
$(VENV)/.dev-installed: $(BIN)/kidecar pyproject.toml contrib/kidecar-tcp-probe/pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]' -e contrib/kidecar-tcp-probe
	touch $@

dev: $(VENV)/.dev-installed

demo: $(BIN)/kidecar
	$(BIN)/kidecar demo

# KIDECAR_SKIP_KUBE=1 skips the build (and the tests that need the API server).
apiserver: dev
	@if [ "$$KIDECAR_SKIP_KUBE" = 1 ]; then echo "KIDECAR_SKIP_KUBE=1: not building kube-apiserver"; \
	else bash hack/test-apiserver.sh; fi

# The okg e2e tier's OpenKruiseGame managers (release + pinned master; hack/test-okg.sh). A
# failed build does not stop `make`: the okg tests then fail, each with the script's reason.
okg: dev
	@if [ "$$KIDECAR_SKIP_KUBE" = 1 ]; then echo "KIDECAR_SKIP_KUBE=1: not building OKG's manager"; \
	else bash hack/test-okg.sh || echo "hack/test-okg.sh failed: the okg tier will fail and say why"; fi

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: dev
	$(BIN)/mypy
	$(BIN)/mypy contrib/kidecar-tcp-probe/kidecar_tcp_probe contrib/overrides

pytest: dev apiserver okg
	$(BIN)/python -m pytest tests contrib

# The Dockerfile's install steps without a container engine: hadolint, wheel, fresh venv.
imagecheck: dev
	bash hack/check-image.sh

test: lint typecheck pytest imagecheck

bench: dev apiserver
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info
