#!/usr/bin/env bash
# Run the official CWL v1.2 conformance suite through bridgehead-cwl-runner against ONE long-lived
# bridgehead server (local engine, plain HTTP on loopback), so each test pays for a task, not a server.
#
#   scripts/cwl-conformance.sh SUITE_DIR [cwltest args...]     (or CWL_SUITE=SUITE_DIR)
#
# SUITE_DIR is a checkout of github.com/common-workflow-language/cwl-v1.2 (not shipped with the
# project; CI does not run this). Extra arguments go to cwltest, e.g. `--tags required` or `-n 1-30`.
# Results land in $CONFORMANCE_OUT (default /tmp/bridgehead-conformance): junit.xml, badges/*.json
# (one per tag), cwltest.log and summary.txt. A server is started unless BRIDGEHEAD_URL and
# BRIDGEHEAD_TOKEN are already set. Everything runs under `nice` ($CONFORMANCE_NICE, default 15)
# because the suite is long and this is a shared machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
suite="${1:-${CWL_SUITE:-}}"
[ $# -gt 0 ] && shift
if [ -z "$suite" ] || [ ! -f "$suite/conformance_tests.yaml" ]; then
  echo "usage: $0 SUITE_DIR [cwltest args...]  (SUITE_DIR holds conformance_tests.yaml)" >&2
  exit 2
fi
suite="$(cd "$suite" && pwd)"
bin="$root/.venv/bin"
out="${CONFORMANCE_OUT:-/tmp/bridgehead-conformance}"
niceness="${CONFORMANCE_NICE:-15}"
jobs="${CONFORMANCE_JOBS:-1}"
mkdir -p "$out"
rm -rf "$out/badges" "$out/junit.xml"
export PATH="$bin:$PATH"

server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [ -z "${BRIDGEHEAD_URL:-}" ] || [ -z "${BRIDGEHEAD_TOKEN:-}" ]; then
  data="$out/server-data"
  rm -rf "$data"
  mkdir -p "$data"
  port="$("$bin/python" -c 'from bridgehead.embedded import free_port; print(free_port())')"
  export BRIDGEHEAD_DATA_DIR="$data" BRIDGEHEAD_ENGINE=local
  BRIDGEHEAD_TOKEN="$("$bin/bridgehead" admin create-user conformance --admin | tail -n 1)"
  nice -n "$niceness" "$bin/bridgehead" serve --host 127.0.0.1 --port "$port" >"$out/server.log" 2>&1 &
  server_pid=$!
  export BRIDGEHEAD_URL="http://127.0.0.1:$port/v2" BRIDGEHEAD_TOKEN
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
    sleep 0.1
  done
  unset BRIDGEHEAD_DATA_DIR BRIDGEHEAD_ENGINE
fi

cd "$suite"
set +e
nice -n "$niceness" "$bin/cwltest" --test conformance_tests.yaml --tool bridgehead-cwl-runner \
  -j"$jobs" --timeout "${CONFORMANCE_TIMEOUT:-300}" --badgedir "$out/badges" \
  --junit-xml "$out/junit.xml" "$@" 2>&1 | tee "$out/cwltest.log"
status=${PIPESTATUS[0]}
set -e
# Per-tag counts from the junit file (cwltest's badges only carry percentages). cwltest marks a test
# that exited 33 (unsupported requirement) as skipped; those are counted apart from real failures.
# A should_fail test that succeeded has no <failure> element, only cwltest's "Test N failed" line.
# With -n, cwltest 2.7 labels case k as suite test k (tags too): see docs/conformance.md.
"$bin/python" - "$out/junit.xml" "$out/cwltest.log" <<'EOF' | tee "$out/summary.txt"
import collections, re, sys, xml.etree.ElementTree as ET
counts = collections.defaultdict(collections.Counter)
said_failed = set(re.findall(r"^Test (\d+) failed", open(sys.argv[2]).read(), re.M))
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    kind = next((k for k in ("failure", "error", "skipped") if case.find(k) is not None), "passed")
    if kind == "passed" and (case.get("url") or "").rsplit("#", 1)[-1] in said_failed:
        kind = "failure"
    kind = {"error": "failed", "failure": "failed", "skipped": "unsupported"}.get(kind, kind)
    for tag in ["all"] + [t.strip() for t in (case.get("class") or "").split(",") if t.strip()]:
        counts[tag][kind] += 1
print(f"{'tag':28} {'passed':>7} {'failed':>7} {'unsupp.':>7} {'total':>7}")
for tag in sorted(counts, key=lambda t: (t != "all", t)):
    c = counts[tag]
    total = sum(c.values())
    print(f"{tag:28} {c['passed']:7} {c['failed']:7} {c['unsupported']:7} {total:7}")
EOF
exit "$status"
