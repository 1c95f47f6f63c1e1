"""Checks a REST request the service made against Twilio's own OpenAPI description.

The description (``tests/twilio_spec/api_v2010.json``, the part of Twilio's own that the
service uses) names every operation's path, path parameters and form fields; a request that
names a field Twilio does not know, leaves out a required one, or sends a value of the wrong
type would be refused (or worse, ignored) by the real API, so the tests refuse it first.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# Carried in the repository; ``tests/twilio_spec/extract.py`` regenerates it.
SPEC = Path(__file__).resolve().parent / "twilio_spec" / "api_v2010.json"
FORM = "application/x-www-form-urlencoded"


@cache
def spec() -> dict:
    return json.loads(SPEC.read_text(encoding="utf-8"))


@cache
def _templates() -> list[tuple[re.Pattern, str, list[str]]]:
    """Each path of the description as a pattern, with its parameter names."""
    out = []
    for template in spec()["paths"]:
        names = re.findall(r"\{(\w+)\}", template)
        pattern = re.escape(template)
        for name in names:
            pattern = pattern.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>[^/]+)")
        out.append((re.compile(f"^{pattern}$"), template, names))
    return out


def _resolve(schema: dict) -> dict:
    ref = schema.get("$ref")
    if not ref:
        return schema
    node = spec()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _value_problem(name: str, value: str, schema: dict) -> str | None:
    schema = _resolve(schema)
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        return f"{name}={value!r} is not one of {schema['enum']}"
    if kind == "boolean" and value not in ("true", "false"):
        return f"{name}={value!r} is not a boolean"
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        return f"{name}={value!r} is not an integer"
    if kind == "number" and not re.fullmatch(r"-?\d+(\.\d+)?", value):
        return f"{name}={value!r} is not a number"
    if schema.get("format") == "uri" and not value.startswith(("https://", "http://")):
        return f"{name}={value!r} is not an absolute URL"
    if schema.get("pattern") and not re.search(schema["pattern"], value):
        return f"{name}={value!r} does not match {schema['pattern']}"
    return None


def operation_for(method: str, path: str) -> tuple[str, dict, dict[str, str]]:
    """The template, operation and path parameters the description has for a request."""
    for pattern, template, _names in _templates():
        match = pattern.match(path)
        if match:
            operation = spec()["paths"][template].get(method.lower())
            assert operation is not None, f"Twilio has no {method} on {template}"
            return template, operation, match.groupdict()
    raise AssertionError(f"Twilio's API has no path {path}")


def check(method: str, url: str, body: str | bytes | None) -> dict[str, list[str]]:
    """Assert the request is one Twilio's API accepts; return its form fields.

    Every field must be a declared property of the operation's form schema, every required
    property must be present, each value must fit its declared type (and enum, and pattern),
    and only array properties may repeat. Path parameters are checked against their patterns,
    and a query string (a list's filters and paging) against the operation's query parameters.
    """
    parts = urlsplit(url)
    template, operation, params = operation_for(method, parts.path)
    problems = []
    query = {p["name"]: p for p in operation.get("parameters", []) if p.get("in") == "query"}
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path":
            problem = _value_problem(parameter["name"], params[parameter["name"]],
                                     parameter.get("schema", {}))
            if problem:
                problems.append(problem)
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name not in query:
            problems.append(f"{name} is not a query parameter of {method} {template}")
            continue
        for value in values:
            problem = _value_problem(name, value, query[name].get("schema", {}))
            if problem:
                problems.append(problem)
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    form = parse_qs(body or "", keep_blank_values=True, strict_parsing=bool(body))
    content = operation.get("requestBody", {}).get("content", {})
    if FORM not in content:
        assert not form, f"{method} {template} takes no form body, got {sorted(form)}"
        assert not problems, problems
        return form
    schema = _resolve(content[FORM]["schema"])
    properties = schema.get("properties", {})
    for name, values in form.items():
        if name not in properties:
            problems.append(f"{name} is not a parameter of {method} {template}")
            continue
        prop = _resolve(properties[name])
        if prop.get("type") == "array":
            items = prop.get("items", {})
        else:
            items = prop
            if len(values) != 1:
                problems.append(f"{name} is sent {len(values)} times but is not an array")
        for value in values:
            problem = _value_problem(name, value, items)
            if problem:
                problems.append(problem)
    for name in schema.get("required", []):
        if name not in form:
            problems.append(f"required parameter {name} of {method} {template} is missing")
    assert not problems, f"{method} {url}: " + "; ".join(problems)
    return form
