"""The JSON Schema editors use for flow files, generated from the step classes themselves.

``flows/schema.json`` is this output; a test keeps the two equal.
"""

from __future__ import annotations

import json
from typing import Any

from callflow.language.fields import Spec, json_schema, specs
from callflow.language.flow import Degraded, Flow, ManagerLine, Team, Worker
from callflow.language.hours import DAYS
from callflow.language.steps import STEP_KINDS

HOURS_RANGE = r"^\s*[0-2]?\d:[0-5]\d\s*-\s*[0-2]?\d:[0-5]\d\s*$"


def _object(declared: dict[str, Spec], extra: dict[str, Any] | None = None,
            required: tuple[str, ...] = ()) -> dict[str, Any]:
    properties = {name: json_schema(spec) for name, spec in declared.items()}
    properties.update(extra or {})
    needed = [name for name, spec in declared.items() if spec.required] + list(required)
    return {"type": "object", "properties": properties, "required": needed,
            "additionalProperties": False}


def step_schema(kind: str) -> dict[str, Any]:
    cls = STEP_KINDS[kind]
    schema = _object(specs(cls), {"kind": {"const": kind}}, required=("kind",))
    schema["required"] = ["kind", *[n for n in schema["required"] if n != "kind"]]
    return {"title": kind, "description": cls.summary, **schema}


def generate() -> dict[str, Any]:
    day = {"oneOf": [{"const": "closed"}, {"type": "string", "pattern": HOURS_RANGE},
                     {"type": "array", "items": {"type": "string", "pattern": HOURS_RANGE}}]}
    flow = _object(specs(Flow), {
        "hours": {"type": "object", "description": "Weekly opening hours; absent days are closed",
                  "properties": {d: day for d in DAYS}, "additionalProperties": False},
        "closures": {"type": "array", "description": "Dates the helpline is closed",
                     "items": {"type": "string", "format": "date"}},
        "degraded": _object(specs(Degraded)),
        "steps": {"type": "object", "description": "The named steps of the call",
                  "propertyNames": {"pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"},
                  "additionalProperties": {"oneOf": [{"$ref": f"#/$defs/{k}"}
                                                     for k in STEP_KINDS]}},
    }, required=("hours", "degraded", "steps"))
    team = _object(specs(Team), {"workers": {"type": "array", "minItems": 1,
                                             "items": _object(specs(Worker))}},
                   required=("workers",))
    teams = {"type": "object", "required": ["teams"], "additionalProperties": False,
             "properties": {"teams": {"type": "object", "minProperties": 1,
                                      "additionalProperties": team}}}
    line = {"type": "object", "required": ["manager_line"], "additionalProperties": False,
            "properties": {"manager_line": _object(specs(ManagerLine))}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "callflow flow, teams or manager line file",
        "oneOf": [{"title": "flow", **flow}, {"title": "teams", **teams},
                  {"title": "manager line", **line}],
        "$defs": {kind: step_schema(kind) for kind in STEP_KINDS},
    }


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=True) + "\n"
