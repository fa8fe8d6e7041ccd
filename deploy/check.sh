#!/usr/bin/env bash
# Validates deploy/ without Docker or a cluster:
#   - every YAML file parses, the dashboard JSON loads and every panel has queries;
#   - promtool check rules / test rules / check config (Debian: apt-get install prometheus);
#   - with KYCGATE_URL set (a running gateway, e.g. http://127.0.0.1:8080), every kycgate_*
#     metric the dashboard and the rules query is present in its /metrics output.
# The same metric check runs against a live in-test gateway in `cargo test --test telemetry`.
set -euo pipefail
cd "$(dirname "$0")"

echo "== YAML / JSON"
python3 - <<'PY'
import glob, json, sys
import yaml
bad = 0
for f in sorted(glob.glob("**/*.y*ml", recursive=True)):
    try:
        docs = [d for d in yaml.safe_load_all(open(f)) if d is not None]
        print(f"ok    {f} ({len(docs)} document(s))")
    except yaml.YAMLError as e:
        bad += 1
        print(f"FAIL  {f}: {e}")
for f in sorted(glob.glob("grafana/dashboards/*.json")):
    d = json.load(open(f))
    panels = [p for p in d["panels"] if p["type"] != "row"]
    empty = [p["title"] for p in panels if not any(t.get("expr") for t in p.get("targets", []))]
    if empty:
        bad += 1
        print(f"FAIL  {f}: panels without queries: {empty}")
    else:
        print(f"ok    {f} ({len(panels)} panels)")
for f in sorted(glob.glob("k8s/**/*.yaml", recursive=True)):
    for d in yaml.safe_load_all(open(f)):
        if d is None or d.get("kind") not in ("Deployment",):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["name"] != "kycgate":
                continue
            probes = {k: c.get(k, {}).get("httpGet", {}).get("path") for k in ("readinessProbe", "livenessProbe")}
            if probes != {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}:
                bad += 1
                print(f"FAIL  {f}: kycgate probes {probes}")
sys.exit(1 if bad else 0)
PY

echo "== promtool"
promtool check rules prometheus/alerts.yml
promtool test rules prometheus/alerts_test.yml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp prometheus/alerts.yml "$tmp/alerts.yml"
sed "s#/etc/prometheus/alerts.yml#$tmp/alerts.yml#" prometheus/prometheus.yml > "$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml"
# Dashboard queries are PromQL too: parse each one as a recording rule (Grafana variables
# replaced by plain values).
python3 - "$tmp/dashboard_rules.yml" <<'PY'
import json, sys, yaml
d = json.load(open("grafana/dashboards/kycgate.json"))
rules = []
for p in d["panels"]:
    for t in p.get("targets", []):
        expr = t["expr"].replace("$__rate_interval", "5m").replace("$provider", ".*").replace("$service", ".*")
        rules.append({"record": f"dashboard:panel{p['id']}:{t['refId'].lower()}", "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
PY
promtool check rules "$tmp/dashboard_rules.yml"

# Optional schema checks, when the tools are installed (pip install compose-spec kubernetes-validate
# pyyaml; point DEPLOY_PYTHON at that interpreter, e.g. a venv's bin/python).
PY="${DEPLOY_PYTHON:-python3}"
if "$PY" -c 'import compose_spec, yaml' >/dev/null 2>&1; then
  echo "== docker-compose.yml against the Compose specification (strict)"
  "$PY" - <<'PY'
import json, yaml, compose_spec
d = yaml.safe_load(open("docker-compose.yml"))   # resolves the `<<: *gateway` merge keys
c = compose_spec.PyCompose.from_json(json.dumps(d))
print("ok    services:", ", ".join(c.service_names()))
PY
else
  echo "skip  compose schema check (pip install compose-spec pyyaml)"
fi
kv="$(dirname "$PY")/kubernetes-validate"
[ -x "$kv" ] || kv="$(command -v kubernetes-validate || true)"
if [ -n "$kv" ]; then
  echo "== Kubernetes manifests against the API schemas (strict)"
  out=$("$kv" --strict --quiet k8s/standalone/*.yaml k8s/sidecar/*.yaml 2>&1 || true)
  # The Kustomization has no API schema; anything else reported is a failure.
  if echo "$out" | grep -v "Couldn't find schema for kind Kustomization" | grep -E "ERROR|FAIL"; then
    exit 1
  fi
  echo "ok    k8s manifests"
else
  echo "skip  Kubernetes schema check (pip install kubernetes-validate)"
fi

if [ -n "${KYCGATE_URL:-}" ]; then
  echo "== metric names against $KYCGATE_URL/metrics"
  curl -fsS "$KYCGATE_URL/metrics" > "$tmp/metrics.txt"
  served=$(grep -v '^#' "$tmp/metrics.txt" | grep -o '^kycgate_[a-z_]*' | sed -E 's/_(bucket|sum|count)$//' | sort -u)
  used=$(grep -ho 'kycgate_[a-z_]*' grafana/dashboards/*.json prometheus/alerts.yml | sed -E 's/_(bucket|sum|count)$//' | sort -u)
  missing=$(comm -13 <(echo "$served") <(echo "$used"))
  if [ -n "$missing" ]; then
    echo "FAIL  used in deploy/ but not served (a series only appears once it has a value):"
    echo "$missing"
    exit 1
  fi
  echo "ok    $(echo "$used" | wc -l) metric names used, all served"
fi
echo "all deploy checks passed"
