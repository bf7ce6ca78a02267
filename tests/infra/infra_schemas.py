"""JSON schemas for the manifests under infra/ whose tools publish no schema we can read offline.

Written from the published field lists (KubeRay's ``ray.io/v1`` RayCluster CRD, the Compose
Specification's service keys), restricted to the parts this project uses and strict where a
mistake would otherwise pass silently: Kubernetes prunes unknown fields of a structural CRD
without an error, and Compose ignores nothing but fails late on the cluster. The Ray cluster
launcher's schema is Ray's own (``ray/autoscaler/ray-schema.json``), read from the installed Ray.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_STR_LIST = {"type": "array", "items": _STR}
_STR_OR_LIST = {"oneOf": [_STR, _STR_LIST]}
_INT_OR_STR = {"oneOf": [{"type": "integer"}, _STR]}  # Kubernetes IntOrString / Quantity

_CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": _STR,
        "image": _STR,
        "command": _STR_LIST,
        "args": _STR_LIST,
        "env": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": _STR, "value": _STR, "valueFrom": {"type": "object"}},
                "additionalProperties": False,
            },
        },
        "ports": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["containerPort"],
                "properties": {
                    "containerPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "name": {"type": "string", "maxLength": 15},
                    "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                },
                "additionalProperties": False,
            },
        },
        "resources": {
            "type": "object",
            "properties": {
                "limits": {"type": "object", "additionalProperties": _INT_OR_STR},
                "requests": {"type": "object", "additionalProperties": _INT_OR_STR},
            },
            "additionalProperties": False,
        },
        "volumeMounts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "mountPath"],
                "properties": {"name": _STR, "mountPath": _STR, "readOnly": {"type": "boolean"}},
            },
        },
    },
}

_POD_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "containers": {"type": "array", "minItems": 1, "items": _CONTAINER},
                "volumes": {
                    "type": "array",
                    "items": {"type": "object", "required": ["name"]},
                },
                "tolerations": {"type": "array", "items": {"type": "object"}},
                "nodeSelector": {"type": "object", "additionalProperties": _STR},
            },
        },
    },
}

# KubeRay: rayStartParams is a map of strings (the operator passes them to `ray start` as
# `--key=value`; a YAML number here is rejected by the API server).
_RAY_START_PARAMS = {"type": "object", "additionalProperties": _STR}

RAYCLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["headGroupSpec"],
            "properties": {
                "rayVersion": _STR,
                "enableInTreeAutoscaling": {"type": "boolean"},
                "autoscalerOptions": {"type": "object"},
                "authOptions": {
                    "type": "object",
                    "properties": {"mode": {"enum": ["disabled", "token"]}},
                    "additionalProperties": False,
                },
                "headServiceAnnotations": {"type": "object"},
                "suspend": {"type": "boolean"},
                "managedBy": _STR,
                "gcsFaultToleranceOptions": {"type": "object"},
                "headGroupSpec": {
                    "type": "object",
                    "required": ["template"],
                    "properties": {
                        "rayStartParams": _RAY_START_PARAMS,
                        "template": _POD_TEMPLATE,
                        "serviceType": _STR,
                        "headService": {"type": "object"},
                        "enableIngress": {"type": "boolean"},
                    },
                    "additionalProperties": False,
                },
                "workerGroupSpecs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["groupName", "template"],
                        "properties": {
                            "groupName": _STR,
                            "replicas": {"type": "integer", "minimum": 0},
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 0},
                            "numOfHosts": {"type": "integer", "minimum": 1},
                            "idleTimeoutSeconds": {"type": "integer"},
                            "rayStartParams": _RAY_START_PARAMS,
                            "template": _POD_TEMPLATE,
                            "scaleStrategy": {"type": "object"},
                            "suspend": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
}

_COMPOSE_SERVICE_KEYS = (
    "annotations attach build cap_add cap_drop cgroup command configs container_name cpus "
    "depends_on deploy develop devices dns domainname entrypoint env_file environment expose "
    "extends external_links extra_hosts gpus group_add healthcheck hostname image init ipc "
    "labels links logging mem_limit network_mode networks pid platform ports post_start "
    "pre_stop privileged profiles pull_policy read_only restart runtime scale secrets "
    "security_opt shm_size stdin_open stop_grace_period stop_signal sysctls tmpfs tty ulimits "
    "user userns_mode volumes volumes_from working_dir"
).split()

_SCALAR = {"type": ["string", "number", "boolean", "null"]}

COMPOSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["services"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
        "services": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"anyOf": [{"enum": _COMPOSE_SERVICE_KEYS}, {"pattern": "^x-"}]},
                "properties": {
                    "image": _STR,
                    "command": {"oneOf": [_STR, _STR_LIST, {"type": "null"}]},
                    "entrypoint": {"oneOf": [_STR, _STR_LIST, {"type": "null"}]},
                    "environment": {
                        "oneOf": [
                            {"type": "object", "additionalProperties": _SCALAR},
                            _STR_LIST,
                        ]
                    },
                    "ports": {"type": "array", "items": {"type": ["string", "number", "object"]}},
                    "volumes": {"type": "array", "items": {"type": ["string", "object"]}},
                    "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
                    "depends_on": {
                        "oneOf": [
                            _STR_LIST,
                            {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "object",
                                    "required": ["condition"],
                                    "properties": {
                                        "condition": {
                                            "enum": [
                                                "service_started",
                                                "service_healthy",
                                                "service_completed_successfully",
                                            ]
                                        },
                                        "restart": {"type": "boolean"},
                                        "required": {"type": "boolean"},
                                    },
                                    "additionalProperties": False,
                                },
                            },
                        ]
                    },
                    "healthcheck": {
                        "type": "object",
                        "properties": {
                            "test": _STR_OR_LIST,
                            "interval": _STR,
                            "timeout": _STR,
                            "start_period": _STR,
                            "start_interval": _STR,
                            "retries": {"type": "integer", "minimum": 0},
                            "disable": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    },
                },
            },
        },
        "volumes": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
        "networks": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
        "secrets": {"type": "object"},
        "configs": {"type": "object"},
        "include": {"type": "array"},
        "version": _STR,
    },
    "patternProperties": {"^x-": {}},
    "additionalProperties": False,
}
