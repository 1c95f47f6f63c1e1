"""The confidentiality exceptions register: what an exception must say, and what it must not."""

from __future__ import annotations

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

from callflow.platform import keys
from callflow.platform.errors import AuditUnavailable
from callflow.records.audit import AuditKind, AuditLog
from callflow.records.register import (
    MAX_DETAIL,
    POLICY_GROUNDS,
    Agency,
    Ground,
    WhyNot,
    record_exception,
)
from tests.audit_keys import KEYS
from tests.conftest import CANARY_NUMBER, assert_no_canary, free_port, store_dump

CALL = "CA" + "0123456789abcdef" * 2


@pytest.fixture
def audit(redis) -> AuditLog:
    return AuditLog(redis, KEYS)


def record(audit: AuditLog, **overrides):
    arguments = {"actor": "alice", "call_id": CALL, "grounds": "perpetrator_risk",
                 "agency": "police", "caller_informed": True}
    arguments.update(overrides)
    return record_exception(audit, **arguments)


def test_the_grounds_are_the_policys():
    assert {g.value for g in Ground} == {
        "caller_consent", "terrorism_or_bomb_warning", "threat_to_worker", "service_interference",
        "safeguarding_child_or_vulnerable_adult", "perpetrator_risk"}
    assert set(POLICY_GROUNDS) == set(Ground)
    assert {a.value for a in Agency} == {"social_services", "police", "partner", "other"}
    assert {w.value for w in WhyNot} == {"not_safe", "not_possible"}


VALID = [
    ({}, {"call": CALL, "grounds": ["perpetrator_risk"], "agency": "police",
          "caller_informed": True}),
    ({"grounds": "caller_consent", "agency": "other"},
     {"call": CALL, "grounds": ["caller_consent"], "agency": "other", "caller_informed": True}),
    ({"grounds": ["safeguarding_child_or_vulnerable_adult", "perpetrator_risk",
                  "perpetrator_risk"], "agency": Agency.SOCIAL_SERVICES},
     {"call": CALL, "grounds": ["safeguarding_child_or_vulnerable_adult", "perpetrator_risk"],
      "agency": "social_services", "caller_informed": True}),
    ({"grounds": Ground.THREAT_TO_WORKER, "agency": "partner", "caller_informed": False,
      "why_not": "not_safe", "detail": "  telling him would put his ex-partner at risk  "},
     {"call": CALL, "grounds": ["threat_to_worker"], "agency": "partner",
      "caller_informed": False, "why_not": "not_safe",
      "detail": "telling him would put his ex-partner at risk"}),
    ({"grounds": ("terrorism_or_bomb_warning",), "caller_informed": False,
      "why_not": WhyNot.NOT_POSSIBLE},
     {"call": CALL, "grounds": ["terrorism_or_bomb_warning"], "agency": "police",
      "caller_informed": False, "why_not": "not_possible"}),
    ({"caller_informed": False, "why_not": "not_safe",
      "detail": "shared on 2026-11-25 after the second call"},
     {"call": CALL, "grounds": ["perpetrator_risk"], "agency": "police",
      "caller_informed": False, "why_not": "not_safe",
      "detail": "shared on 2026-11-25 after the second call"}),
]


@pytest.mark.parametrize("overrides, data", VALID, ids=[str(i) for i in range(len(VALID))])
def test_a_valid_exception_is_an_audit_entry(audit, overrides, data):
    entry = record(audit, **overrides)
    assert entry.kind == AuditKind.EXCEPTION_RECORDED == "exception_recorded"
    assert entry.actor == "alice"
    assert entry.data == data
    assert audit.entries(kind="exception_recorded") == [entry]
    assert audit.verify().ok


INVALID = [
    ({"grounds": "curiosity"}, "ground 'curiosity' is not one the policy allows"),
    ({"grounds": "perpetrator-risk"}, "did you mean 'perpetrator_risk'"),
    ({"grounds": []}, "at least one"),
    ({"grounds": ["caller_consent", "gossip"]}, "ground 'gossip'"),
    ({"agency": "press"}, "agency 'press' is not one the policy allows"),
    ({"agency": "polce"}, "did you mean 'police'"),
    ({"caller_informed": False}, "why_not: say why"),
    ({"caller_informed": False, "why_not": "   "}, "why_not: say why"),
    ({"caller_informed": False, "why_not": "it was late"}, "why_not 'it was late' is not one"),
    ({"caller_informed": False, "why_not": "not-safe"}, "did you mean 'not_safe'"),
    ({"caller_informed": False, "detail": "it was not safe"}, "why_not: say why"),
    ({"caller_informed": False, "why_not": "not_safe", "detail": "x" * (MAX_DETAIL + 1)},
     f"longer than {MAX_DETAIL}"),
    ({"caller_informed": True, "why_not": "not_safe"}, "only for when"),
    ({"caller_informed": True, "detail": "n/a"}, "only for when"),
    ({"caller_informed": "yes"}, "caller_informed must be true or false"),
    ({"grounds": "caller_consent", "caller_informed": False, "why_not": "not_safe"},
     "cannot have consented"),
    ({"actor": ""}, "actor"),
    ({"call_id": ""}, "call_id"),
    ({"call_id": CANARY_NUMBER}, "call_id"),
    ({"call_id": CANARY_NUMBER.lstrip("+")}, "call_id"),
    ({"caller_informed": False, "why_not": "not_safe", "detail": f"he gave {CANARY_NUMBER}"},
     "looks like a phone number"),
]

# What a worker might write that names or locates a caller: the register refuses it all, and
# says what it refused without repeating it.
IDENTIFYING = [
    ("lives at 14 Acacia Avenue", "address"),
    ("flat 3, above the chemist", "address"),
    ("on Acacia Avenue near the school", "address"),
    ("42 High St", "address"),
    ("postcode CN1 1AA", "postcode"),
    ("near cn11aa", "postcode"),
    ("SW1A 1AA", "postcode"),
    ("zip 90210", "postcode"),
    ("email canary@example.org", "email"),
    ("canary at example dot org", "email"),
    ("canary(at)example.org", "email"),
    ("Mr Canaryname said so", "name"),
    ("spoke to mrs. Smith", "name"),
    ("Dr Canaryname agreed", "name"),
    ("caller's name is Canaryname", "name"),
    ("his DOB is given", "date of birth"),
    ("date of birth on file", "date of birth"),
]


@pytest.mark.parametrize("text, shape", IDENTIFYING, ids=[t for t, _ in IDENTIFYING])
def test_a_detail_that_names_or_locates_someone_is_refused(audit, redis, text, shape):
    with pytest.raises(ValueError) as caught:
        record(audit, caller_informed=False, why_not="not_safe", detail=text)
    message = str(caught.value)
    assert shape in message and "never who or where" in message
    for word in text.split():
        if len(word) > 4 and word.lower() not in ("postcode", "email", "birth", "date"):
            assert word not in message  # not even echoed back
    assert_no_canary(message)
    assert redis.llen(keys.audit_entries()) == 0


ORDINARY = ["telling him would put his ex-partner at risk",
            "the call ended before the worker could say",
            "police asked us not to, at 10:30 on 2026-11-25",
            "two of us agreed with the supervisor",
            "risk to the children in the house was immediate",
            "the dr said the risk was high, 3 times in a row",
            "we did not miss anything, two of us walk through it",
            "shared by the way agreed with the police"]


@pytest.mark.parametrize("text", ORDINARY)
def test_an_ordinary_detail_is_kept(audit, text):
    entry = record(audit, caller_informed=False, why_not="not_safe", detail=text)
    assert entry.data["detail"] == text


@pytest.mark.parametrize("overrides, message", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_an_incomplete_or_identifying_exception_is_refused(audit, redis, overrides, message):
    with pytest.raises(ValueError, match=message) as caught:
        record(audit, **overrides)
    assert_no_canary(str(caught.value))
    assert redis.llen(keys.audit_entries()) == 0


def test_the_canary_number_is_never_stored(audit, redis):
    for overrides in ({"call_id": CANARY_NUMBER},
                      {"caller_informed": False, "why_not": "not_safe", "detail": CANARY_NUMBER},
                      {"caller_informed": False, "why_not": "not_safe", "detail": "CN1 1AA"}):
        with pytest.raises(ValueError):
            record(audit, **overrides)
    record(audit)
    assert_no_canary(store_dump(redis))


def test_an_unreachable_audit_log_refuses_the_record():
    import redis as redis_lib

    client = redis_lib.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2,
                             decode_responses=True, retry=Retry(NoBackoff(), 0))
    with pytest.raises(AuditUnavailable):
        record(AuditLog(client, KEYS))
    client.close()
