"""Validating rendered objects: kubernetes-validate for built-in kinds, CRD schemas for the rest.

kubernetes-validate ships the OpenAPI schemas of each Kubernetes release (``--strict``:
unknown fields are errors). It has no schemas for custom resources, so:

- ServiceMonitor and PrometheusRule are validated against the JSON schema of the
  prometheus-operator CRDs, taken from cloudcoil's models (generated from those CRDs;
  installed from PyPI into .venv-deploy, nothing fetched at test time) and made strict the
  same way. cloudcoil registers a pytest plugin with undeclared dependencies, so it stays
  out of the workspace venv: the schema is exported by .venv-deploy's Python.
- HTTPRoute is validated against the structural schema below: the subset of
  gateway.networking.k8s.io/v1 HTTPRoute the chart emits, with the spec's enums, patterns
  and limits, strict. No PyPI package ships the Gateway API CRD schema.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv

from deploycheck.tools import DEPLOY_PYTHON

__all__ = ["CUSTOM_KINDS", "validate_object"]

# kubernetes-validate re-reads its (large) schema files on every call; they never change.
kv.schema_contents = functools.cache(kv.schema_contents)  # type: ignore[assignment]


def _strict(schema: Any) -> Any:
    """A copy of ``schema`` where every object with properties forbids unknown ones."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _prometheus_operator(kind: str) -> dict[str, Any]:
    code = (
        "import json, sys\n"
        "from cloudcoil.models.prometheus_operator import v1\n"
        f"print(json.dumps(v1.{kind}.model_json_schema(by_alias=True)))\n"
    )
    result = subprocess.run(
        [str(DEPLOY_PYTHON), "-c", code], capture_output=True, text=True, check=True
    )
    return _strict(json.loads(result.stdout))  # type: ignore[no-any-return]


_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_PATH_VALUE = {"type": "string", "maxLength": 1024, "pattern": "^/"}
_DURATION = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
_HTTPROUTE_V1 = _strict(
    {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
            "kind": {"const": "HTTPRoute"},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": _NAME,
                    "namespace": _NAME,
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "spec": {
                "type": "object",
                "properties": {
                    "parentRefs": {
                        "type": "array",
                        "maxItems": 32,
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "group": {"type": "string"},
                                "kind": {"type": "string"},
                                "namespace": _NAME,
                                "name": _NAME,
                                "sectionName": _NAME,
                                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            },
                        },
                    },
                    "hostnames": {
                        "type": "array",
                        "maxItems": 16,
                        "items": {
                            "type": "string",
                            "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                        },
                    },
                    "rules": {
                        "type": "array",
                        "maxItems": 16,
                        "items": {
                            "type": "object",
                            "properties": {
                                "matches": {
                                    "type": "array",
                                    "maxItems": 64,
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "path": {
                                                "type": "object",
                                                "properties": {
                                                    "type": {
                                                        "enum": [
                                                            "Exact",
                                                            "PathPrefix",
                                                            "RegularExpression",
                                                        ]
                                                    },
                                                    "value": _PATH_VALUE,
                                                },
                                            }
                                        },
                                    },
                                },
                                "backendRefs": {
                                    "type": "array",
                                    "maxItems": 16,
                                    "items": {
                                        "type": "object",
                                        "required": ["name"],
                                        "properties": {
                                            "group": {"type": "string"},
                                            "kind": {"type": "string"},
                                            "name": _NAME,
                                            "namespace": _NAME,
                                            "port": {
                                                "type": "integer",
                                                "minimum": 1,
                                                "maximum": 65535,
                                            },
                                            "weight": {"type": "integer", "minimum": 0},
                                        },
                                    },
                                },
                                "timeouts": {
                                    "type": "object",
                                    "properties": {
                                        "request": _DURATION,
                                        "backendRequest": _DURATION,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    }
)

#: Custom resources the chart emits, and the schema each is checked against.
CUSTOM_KINDS = ("HTTPRoute", "PrometheusRule", "ServiceMonitor")


def _custom_schema(obj: dict[str, Any]) -> dict[str, Any]:
    kind, api = obj["kind"], obj["apiVersion"]
    if kind in ("ServiceMonitor", "PrometheusRule") and api == "monitoring.coreos.com/v1":
        return _prometheus_operator(kind)
    if kind == "HTTPRoute" and api == "gateway.networking.k8s.io/v1":
        return _HTTPROUTE_V1  # type: ignore[no-any-return]
    msg = f"no schema for {api} {kind}"
    raise LookupError(msg)


def validate_object(obj: dict[str, Any], kube_version: str) -> list[str]:
    """Errors of one object against Kubernetes ``kube_version`` (strict), or []."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if obj.get("kind") in CUSTOM_KINDS:
        validator = jsonschema.Draft202012Validator(_custom_schema(obj))
        return [
            f"{where}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(copy.deepcopy(obj))
        ]
    try:
        kv.validate(obj, kube_version, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{where} (Kubernetes {exc.version}): {path}: {exc.message}"]
    except kv.SchemaNotFoundError as exc:
        return [f"{where}: {exc.message}"]
    return []
