#!/usr/bin/env bash
# Install and start, idempotently, the Debian services the test suite uses, then record how to
# reach them in .test-env (sourced by `make test`). Runs as root under CI=true.
set -uo pipefail
cd "$(dirname "$0")/.."
: > .test-env

need_apt=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- PostgreSQL on loopback ------------------------------------------------------------------
if command -v pg_ctlcluster >/dev/null 2>&1; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  pg_lsclusters -h 2>/dev/null | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
  pg_ctlcluster "$version" main status >/dev/null 2>&1 || pg_ctlcluster "$version" main start
  port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
  for _ in $(seq 1 30); do
    runuser -u postgres -- psql -p "$port" -qtAc "select 1" >/dev/null 2>&1 && break
    sleep 0.5
  done
  runuser -u postgres -- psql -p "$port" -qtAc \
    "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='bridgehead') THEN CREATE ROLE bridgehead LOGIN SUPERUSER PASSWORD 'bridgehead'; END IF; END\$\$;" >/dev/null
  echo "export BRIDGEHEAD_TEST_POSTGRES_URL=postgresql+psycopg://bridgehead:bridgehead@127.0.0.1:$port/postgres" >> .test-env
  echo "PostgreSQL $version ready on 127.0.0.1:$port"
else
  echo "PostgreSQL unavailable: PostgreSQL tests will be skipped" >&2
fi

# Further services (Slurm, munge) append here.
if [ -f scripts/slurm-services.sh ]; then
  bash scripts/slurm-services.sh >> .test-env || echo "Slurm unavailable: Slurm tests will be skipped" >&2
fi
exit 0
