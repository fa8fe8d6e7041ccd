#!/usr/bin/env bash
# kycgate against nginx on loopback, in front of the same simulated vendors. Method and numbers: docs/PERFORMANCE.md.
#
#   benches/gateway/run.sh            # builds the release binary if needed, 3 runs, prints the table
#   RUNS=1 STORES=memory benches/gateway/run.sh
#   SCENARIO=inflight benches/gateway/run.sh   # 10,000 tasks in flight on 2 s vendors: RSS, Redis memory
#
# Needs: nginx (Debian nginx-light), wrk, curl, python3 with the hdrhistogram package (pip),
# redis-server on 127.0.0.1:6379 for the Redis rows (KYCGATE_TEST_REDIS to use another), and the
# shared images (KYCGATE_EVAL_DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
for tool in nginx wrk curl python3 redis-cli; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y nginx-light wrk curl redis-tools)" >&2; exit 1; }
done
# The c=1 latency tail is reported through HdrHistogram's own Python port (PyPI hdrhistogram).
python3 -c 'import hdrh' 2>/dev/null || { echo "missing the Python package hdrhistogram (python3 -m pip install hdrhistogram)" >&2; exit 1; }
if [ -z "${KYCGATE_BIN:-}" ]; then
  (cd "$repo" && cargo build --release --locked --bin kycgate)
fi
exec python3 "$here/bench.py"
