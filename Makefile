# BuildIt — every target works from a fresh clone as root on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GEN := agent/contract/_gen

.PHONY: install run test lint proto proto-check bench clean deps-system test-deps image test-image

$(STAMP): pyproject.toml constraints.txt
	@scripts/ensure-python.sh "$(PYTHON)"
	@scripts/ensure-git.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "make: installing BuildIt into $(VENV) (pyproject.toml or constraints.txt changed)"
	@$(PY) -m pip install -q --upgrade pip
	@# setuptools warns on every editable install that same-named folders may shadow the package
	@# (they cannot here: the package is this directory); the warning says nothing about the project.
	@PYTHONWARNINGS="ignore:Editable installation.:UserWarning" $(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@# Editable installs get no bytecode when PYTHONDONTWRITEBYTECODE is set; compile it once.
	@$(PY) -m compileall -q controller agent >/dev/null
	@touch $(STAMP)

# The web UI's front-end libraries: npm packages from web/package-lock.json, copied into
# web/static/vendor/ (gitignored) for the controller to serve.
WEB_VENDOR := web/static/vendor/.installed
$(WEB_VENDOR): web/package.json web/package-lock.json
	@scripts/ensure-node.sh
	cd web && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p web/static/vendor
	cp web/node_modules/htmx.org/dist/htmx.min.js web/node_modules/ansi_up/ansi_up.js web/static/vendor/
	@touch $(WEB_VENDOR)

install: $(STAMP) $(WEB_VENDOR)

# The embedded default: controller + one local agent on SQLite under ./.buildit, with the examples
# registered, watching a demo repository (.buildit/demo-repo: examples/dag.kdl as its .buildit.kdl)
# and running its head commit once. A restart with nothing changed adds no commit and no run; the
# banner, printed last, links to the run's page. Ctrl-C stops it.
DEMO_REPO := .buildit/demo-repo
run: install
	@scripts/demo-repo.sh sync $(DEMO_REPO)
	@exec $(VENV)/bin/buildit up --pipelines examples --repo $(DEMO_REPO) --trigger demo-repo

# Tests need a real Docker engine with the local busybox test image, a real PostgreSQL and
# Debian's chromium (the browser tests).
test-deps:
	@scripts/ensure-docker.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-postgres.sh >/dev/null

# Two pytest workers (pytest-xdist), each taking whole modules (their module-scoped controllers stay
# in one worker): the suite mostly waits on the processes it starts, so two halve its time on two
# cores. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: install test-deps proto-check lint
	BUILDIT_TEST_DOCKER=required BUILDIT_TEST_POSTGRES=required BUILDIT_TEST_BROWSER=required $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m 'not image' tests

lint: install
	$(VENV)/bin/ruff check controller agent tests
	$(VENV)/bin/ruff format --check controller agent tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

proto: install
	@scripts/gen-proto.sh "$(PY)" "$(GEN)"

proto-check: install
	@scripts/gen-proto.sh "$(PY)" "$$(mktemp -d)" --check "$(GEN)"

# The container image (Dockerfile): the web UI's vendored files (install), then the wheels of BuildIt
# and its dependencies, built here with constraints.txt, so the build takes Python packages from the
# context and not from a package index (when this Python is the image's 3.11; else the build
# fetches them). --network host: the build installs Debian packages, and a dockerd without a bridge
# network (as here) gives a build no network otherwise.
IMAGE ?= buildit:dev
IMAGE_BASE ?= debian:bookworm-slim
DOCKER_BUILD_FLAGS ?= --network host
image: install
	@rm -rf dist/wheels
	@set -e; if $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	    echo "make: building wheels into dist/wheels"; \
	    $(PY) -m pip wheel -q -c constraints.txt --wheel-dir dist/wheels .; \
	else echo "make: $(PY) is not Python 3.11 (the image's): the build fetches packages from the index"; fi
	docker build $(DOCKER_BUILD_FLAGS) --build-arg BASE=$(IMAGE_BASE) -t $(IMAGE) .

# The image test (tests/integration/image): makes a Debian base with debootstrap (once, cached as
# buildit-test/debian-base:bookworm), builds the image on it and runs a controller and a Docker agent
# from it; checks compose.yaml with Compose (Debian's docker-compose when missing). Minutes on a
# fresh machine, so apart from `make test`.
test-image: install
	@scripts/ensure-docker.sh
	@scripts/ensure-image-base.sh
	@scripts/ensure-compose.sh
	BUILDIT_TEST_DOCKER=required $(PY) -m pytest -q -m image tests/integration/image

bench: install test-deps
	$(PY) -m tests.bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
