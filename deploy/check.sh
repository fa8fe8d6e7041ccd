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
    if f.startswith("helm/") and "/templates/" in f:
        continue  # Go templates, checked in the Helm section below
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

tmp_helm=$(mktemp -d)
trap 'rm -rf "$tmp_helm"' EXIT
echo "== Helm chart (helm/kycgate)"
# Without helm: the chart's own lint (values every template reads exist, templates and blocks
# balanced, every include defined). With helm on PATH: helm lint, and both modes rendered and
# parsed as YAML (and checked by kubernetes-validate when installed).
python3 - <<'PY'
import glob, re, sys
import yaml
chart = "helm/kycgate"
bad = 0
meta = yaml.safe_load(open(f"{chart}/Chart.yaml"))
for key in ("apiVersion", "name", "version", "appVersion"):
    if not meta.get(key):
        bad += 1; print(f"FAIL  Chart.yaml: no {key}")
values = yaml.safe_load(open(f"{chart}/values.yaml"))
texts = {f: open(f).read() for f in sorted(glob.glob(f"{chart}/templates/*"))}
defined = set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', "".join(texts.values())))
for f, t in texts.items():
    before = bad
    if t.count("{{") != t.count("}}"):
        bad += 1; print(f"FAIL  {f}: unbalanced {{{{ }}}}")
    actions = re.findall(r"\{\{-?\s*(if|range|with|define|end)\b", t)
    depth = 0
    for a in actions:
        depth += -1 if a == "end" else 1
        if depth < 0:
            break
    if depth != 0:
        bad += 1; print(f"FAIL  {f}: if/range/with/define and end do not balance")
    for name in re.findall(r'include\s+"([^"]+)"', t):
        if name not in defined:
            bad += 1; print(f"FAIL  {f}: include of undefined template {name}")
    for path in re.findall(r"\.Values((?:\.\w+)+)", t):
        node = values
        for part in path.strip(".").split("."):
            if not isinstance(node, dict) or part not in node:
                bad += 1; print(f"FAIL  {f}: .Values{path} is not in values.yaml"); break
            node = node[part]
    if bad == before:
        print(f"ok    {f}")
sys.exit(1 if bad else 0)
PY
HELM_PY="${HELM_PYTHON:-${DEPLOY_PYTHON:-python3}}"
if "$HELM_PY" -c 'import helm_python, yaml' >/dev/null 2>&1; then
  # Helm's Go SDK through the helm-python-sdk wheel: lint + both modes rendered and parsed; the
  # rendered gateway files checked by `kycgate check` when KYCGATE_BIN names the binary.
  "$HELM_PY" helm-render.py helm/kycgate "$tmp_helm"
  hkv="$(dirname "$HELM_PY")/kubernetes-validate"
  if [ -x "$hkv" ]; then
    out=$("$hkv" --strict --quiet "$tmp_helm/gateway.yaml" "$tmp_helm/sidecar.yaml" 2>&1 || true)
    # ServiceMonitor is a CRD without a built-in schema; anything else reported is a failure.
    if echo "$out" | grep -v "Couldn't find schema for kind ServiceMonitor" | grep -E "ERROR|FAIL"; then
      exit 1
    fi
    echo "ok    rendered chart manifests against the Kubernetes API schemas"
  fi
  if [ -n "${KYCGATE_BIN:-}" ]; then
    for mode in gateway sidecar; do
      KYCGATE_OPERATOR_KEY=x "$KYCGATE_BIN" check --config "$tmp_helm/$mode-kycgate.toml"
    done
  fi
elif command -v helm >/dev/null 2>&1; then
  helm lint helm/kycgate --set secrets.jwtSecret=lint
  for mode in gateway sidecar; do
    helm template kycgate helm/kycgate --set mode=$mode --set secrets.jwtSecret=x \
      --set secrets.apiKeys.app=k --set serviceMonitor.enabled=true > "$tmp_helm/$mode.yaml"
    python3 -c 'import sys, yaml; d=[x for x in yaml.safe_load_all(open(sys.argv[1])) if x]; print("ok    rendered", sys.argv[2], ", ".join(x["kind"] for x in d))' "$tmp_helm/$mode.yaml" $mode
  done
else
  echo "skip  helm lint / render (no helm, no helm-python-sdk: HELM_PYTHON=<venv>/bin/python with pip install helm-python-sdk pyyaml)"
fi

echo "== promtool"
promtool check rules prometheus/alerts.yml
promtool test rules prometheus/alerts_test.yml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$tmp_helm"' EXIT
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
