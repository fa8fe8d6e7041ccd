#!/usr/bin/env python3
"""Lints deploy/helm/kycgate and renders both modes with Helm's own Go SDK (the
`helm-python-sdk` wheel binds libhelm_c: no helm binary or Go toolchain needed), parses every
rendered manifest as YAML, writes each mode's manifests to OUT/<mode>.yaml (for
kubernetes-validate) and its gateway file to OUT/<mode>-kycgate.toml (for `kycgate check`). Exit 1 on a lint warning or error, or a template that does not render.

Usage: helm-render.py CHART_DIR OUT_DIR   (pip install helm-python-sdk pyyaml, in a venv)
"""
import sys

import helm_python as helm
import yaml

chart_dir, out = sys.argv[1], sys.argv[2]
print(f"helm sdk {helm.helm_sdk_version()}")
report = helm.lint(chart_dir, {"secrets": {"jwtSecret": "lint"}}, strict=True)
bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
for m in report.get("messages", []):
    print(f"lint  {m}")
chart = helm.Chart.load(chart_dir)
for mode in ("gateway", "sidecar"):
    values = {
        "mode": mode,
        "secrets": {"jwtSecret": "x", "apiKeys": {"app": "k1", "web": "k2"}, "operatorKey": "op"},
        "serviceMonitor": {"enabled": True},
        "redis": {"url": "redis://redis:6379"},
        "otlp": {"endpoint": "http://otel-collector:4318"},
        "gateway": {"routing": '[routing.liveness]\nchain = [{ provider = "local" }]\n'},
        "providers": {"kbyai": 'kind = "http"\nbase_url = "http://kbyai:8080"\n'},
    }
    try:
        rendered = chart.render(values, name="kycgate", namespace="kyc", is_install=True)
    except Exception as e:  # HelmRenderError / HelmValuesError
        bad.append(f"{mode}: {e}")
        continue
    kinds = []
    manifests = open(f"{out}/{mode}.yaml", "w")
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        manifests.write(f"---\n# {path}\n{text}\n")
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            kinds.append(doc["kind"])
            if doc["kind"] == "ConfigMap" and "kycgate.toml" in doc.get("data", {}):
                with open(f"{out}/{mode}-kycgate.toml", "w") as f:
                    f.write(doc["data"]["kycgate.toml"])
    manifests.close()
    print(f"ok    {mode}: {', '.join(kinds)}")
for b in bad:
    print(f"FAIL  {b}")
sys.exit(1 if bad else 0)
