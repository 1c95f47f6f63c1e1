"""Regenerate ``api_v2010.json``: the part of Twilio's OpenAPI description the service uses.

The tests check every REST request the service makes against Twilio's own description of its
API. The full description is almost 2 MB; the service calls a handful of operations, so the
repository carries only those paths and the schemas they refer to. Run it with the full
description from Twilio's twilio-oai repository (``spec/json/twilio_api_v2010.json``)::

    TWILIO_OPENAPI_SPEC=path/to/twilio_api_v2010.json python tests/twilio_spec/extract.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "api_v2010.json"
ACCOUNT = "/2010-04-01/Accounts/{AccountSid}"
# The account itself (doctor), Calls (ring, redirect, hang up, delete, list for the sweep),
# Conferences and their Participants (listen-ins, checking who is in a room, removing a
# stranger), IncomingPhoneNumbers (twilio sync).
PATHS = [
    "/2010-04-01/Accounts/{Sid}.json",
    f"{ACCOUNT}/Calls.json",
    f"{ACCOUNT}/Calls/{{Sid}}.json",
    f"{ACCOUNT}/Conferences.json",
    f"{ACCOUNT}/Conferences/{{Sid}}.json",
    f"{ACCOUNT}/Conferences/{{ConferenceSid}}/Participants.json",
    f"{ACCOUNT}/Conferences/{{ConferenceSid}}/Participants/{{CallSid}}.json",
    f"{ACCOUNT}/IncomingPhoneNumbers.json",
    f"{ACCOUNT}/IncomingPhoneNumbers/{{Sid}}.json",
]


def refs(node) -> set[str]:
    """Every ``$ref`` anywhere below ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def lookup(spec: dict, ref: str):
    node = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def extract(spec: dict) -> dict:
    paths = {path: spec["paths"][path] for path in PATHS}
    components: dict[str, dict] = {}
    pending, seen = refs(paths), set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, section, name = ref.removeprefix("#/").split("/", 2)
        value = lookup(spec, ref)
        components.setdefault(section, {})[name] = value
        pending |= refs(value) - seen
    return {"openapi": spec["openapi"], "info": spec["info"], "servers": spec.get("servers", []),
            "paths": paths,
            "components": {section: dict(sorted(items.items()))
                           for section, items in sorted(components.items())}}


def main() -> int:
    source = os.environ.get("TWILIO_OPENAPI_SPEC")
    if not source:
        print("set TWILIO_OPENAPI_SPEC to Twilio's full twilio_api_v2010.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(source).read_text(encoding="utf-8"))
    OUT.write_text(json.dumps(extract(spec), indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT.name}: {len(PATHS)} paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
