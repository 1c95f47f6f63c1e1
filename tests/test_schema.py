"""The JSON Schema editors use: generated from the step classes, shipped as flows/schema.json."""

from __future__ import annotations

import datetime
import json

import jsonschema
import pytest

from callflow.language import schema
from callflow.language.fields import specs
from callflow.language.source import load_text
from callflow.language.steps import STEP_KINDS
from tests.conftest import FLOWS

FLOW_FILES = sorted(p.name for p in FLOWS.glob("*.yaml"))


def test_the_shipped_schema_is_the_generated_one():
    assert (FLOWS / "schema.json").read_text(encoding="utf-8") == schema.render(), (
        "flows/schema.json is stale: run `callflow schema -o flows/schema.json`")


def test_the_schema_is_stable_json():
    assert json.loads(schema.render()) == schema.generate()
    assert schema.render() == schema.render()


@pytest.mark.parametrize("kind", list(STEP_KINDS))
def test_every_step_kind_has_its_definition(kind):
    cls = STEP_KINDS[kind]
    row = schema.generate()["$defs"][kind]
    declared = specs(cls)
    assert row["title"] == kind
    assert row["description"] == cls.summary
    assert row["properties"]["kind"] == {"const": kind}
    assert set(row["properties"]) == {"kind", *declared}
    assert row["required"] == ["kind", *[n for n, s in declared.items() if s.required]]
    assert row["additionalProperties"] is False
    for name, spec in declared.items():
        assert row["properties"][name]["description"] == spec.doc


def test_no_definition_without_a_kind():
    assert set(schema.generate()["$defs"]) == set(STEP_KINDS)


def test_a_step_is_one_of_the_kinds():
    steps = schema.generate()["oneOf"][0]["properties"]["steps"]
    assert steps["additionalProperties"] == {
        "oneOf": [{"$ref": f"#/$defs/{kind}"} for kind in STEP_KINDS]}


# -- the shipped files validate against the shipped schema ---------------------------------

def _plain(value):
    """A loaded YAML value as JSON sees it (dates written unquoted become strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


@pytest.fixture(scope="module")
def validator():
    document = json.loads((FLOWS / "schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


@pytest.mark.parametrize("name", FLOW_FILES)
def test_every_shipped_file_validates_against_the_schema(validator, name):
    doc = _plain(load_text((FLOWS / name).read_text(encoding="utf-8"), name))
    assert [e.message for e in validator.iter_errors(doc)] == []


RESPECT = (FLOWS / "respect-phoneline.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(("old", "new"), [
    pytest.param("    kind: message\n", "    kind: record\n", id="a record step"),
    pytest.param("    kind: message\n", "    kind: mesage\n", id="an unknown kind"),
    pytest.param("    on_no_answer: busy\n", "    on_no_answer: busy\n    record: true\n",
                 id="a record key"),
    pytest.param("    timeout: 25\n", "    timeout: 500\n", id="too long a ring"),
    pytest.param('numbers: ["+441632960001"]', 'numbers: ["01632960001"]', id="a national number"),
    pytest.param("  monday:", "  mondy:", id="a misspelt day"),
    pytest.param('"09:00-17:00"', '"9 to 5"', id="hours in words"),
    pytest.param("      2: website\n", "      22: website\n", id="two digits"),
    pytest.param("start: welcome\n", "", id="no start"),
])
def test_the_schema_catches_mistakes_in_the_editor(validator, old, new):
    assert RESPECT.count(old) >= 1
    doc = _plain(load_text(RESPECT.replace(old, new, 1), "respect-phoneline.yaml"))
    assert list(validator.iter_errors(doc)), f"the schema accepted {new!r}"
