#!/usr/bin/env python3
"""Regenerates the JSON schemas in deploy/schemas/ (run by hand; the files are committed).

  deploy/schemas/vendor.py --agones-install AGONES/install/yaml/install.yaml \
      --kubernetes-schemas KUBERNETES_JSON_SCHEMA/v1.33.0-local-strict

- agones/*.json: the openAPIV3Schema of the Fleet and FleetAutoscaler CRDs in Agones' rendered
  install.yaml, with apiVersion, kind and metadata required as the API server requires them.
- kubernetes/*.json: the Deployment (apps/v1), Service, ServiceAccount, ConfigMap (v1), Role and
  RoleBinding (rbac.authorization.k8s.io/v1) schemas of the Kubernetes
  OpenAPI spec as converted to JSON schema ("-local-strict": no unknown fields), bundled with
  the definitions they reference so that each file stands alone.
- compose-spec.json is copied as it is from the Compose specification (see README.md).
"""
import argparse
import json
import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent

CRDS = {
    "fleets.agones.dev": ("agones.dev/v1", "Fleet", "fleet-agones-v1.json"),
    "fleetautoscalers.autoscaling.agones.dev": (
        "autoscaling.agones.dev/v1", "FleetAutoscaler", "fleetautoscaler-autoscaling-v1.json"),
}
KUBERNETES = ["deployment-apps-v1.json", "service-v1.json", "serviceaccount-v1.json", "role-rbac-v1.json",
              "rolebinding-rbac-v1.json", "configmap-v1.json"]


def agones(install: pathlib.Path) -> None:
    out = HERE / "agones"
    out.mkdir(exist_ok=True)
    for doc in yaml.safe_load_all(install.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        name = doc["metadata"]["name"]
        if name not in CRDS:
            continue
        api_version, kind, file = CRDS[name]
        (version,) = [v for v in doc["spec"]["versions"] if v.get("served")]
        schema = dict(version["schema"]["openAPIV3Schema"])
        props = dict(schema.get("properties", {}))
        props["apiVersion"] = {"type": "string", "enum": [api_version]}
        props["kind"] = {"type": "string", "enum": [kind]}
        props["metadata"] = {"type": "object", "required": ["name"],
                             "properties": {"name": {"type": "string"}}}
        schema["properties"] = props
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
        # OpenAPI v3 schemas use draft-04 keywords (boolean exclusiveMinimum).
        schema["$schema"] = "http://json-schema.org/draft-04/schema#"
        schema["title"] = f"{kind} ({api_version}), from the Agones CRD {name}"
        (out / file).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


def refs(node, found):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and ("_definitions.json#/$defs/" in r or r.startswith("#/$defs/")):
            found.add(r.split("/")[-1])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def relink(node):
    if isinstance(node, dict):
        return {k: ("#/$defs/" + v.split("/")[-1]
                    if k == "$ref" and isinstance(v, str) and "_definitions.json#" in v
                    else relink(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [relink(v) for v in node]
    return node


def kubernetes(src: pathlib.Path) -> None:
    out = HERE / "kubernetes"
    out.mkdir(exist_ok=True)
    definitions = json.loads((src / "_definitions.json").read_text())["$defs"]
    for file in KUBERNETES:
        schema = json.loads((src / file).read_text())
        needed, todo = set(), set()
        refs(schema, todo)
        while todo:
            name = todo.pop()
            if name in needed:
                continue
            needed.add(name)
            refs(definitions[name], todo)
        bundled = relink(schema)
        bundled["$defs"] = {n: relink(definitions[n]) for n in sorted(needed)}
        bundled["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        bundled.pop("$id", None)
        (out / file).write_text(json.dumps(bundled, indent=1, sort_keys=True) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agones-install", type=pathlib.Path, required=True)
    p.add_argument("--kubernetes-schemas", type=pathlib.Path, required=True)
    a = p.parse_args()
    agones(a.agones_install)
    kubernetes(a.kubernetes_schemas)


if __name__ == "__main__":
    main()
