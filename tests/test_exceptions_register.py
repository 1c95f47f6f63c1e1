"""The confidentiality exceptions register: what an exception must say, and what it must not."""

from __future__ import annotations

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

from callflow import keys
from callflow.audit import AuditKind, AuditLog
from callflow.errors import AuditUnavailable
from callflow.exceptions_register import POLICY_GROUNDS, Agency, Ground, record_exception
from tests.audit_keys import KEYS
from tests.conftest import CANARY_NUMBER, assert_no_canary, free_port, store_dump

CALL = "CA" + "0123456789abcdef" * 2


@pytest.fixture
def audit(redis) -> AuditLog:
    return AuditLog(redis, KEYS)


def record(audit: AuditLog, **overrides):
    arguments = {"actor": "alice", "call_id": CALL, "grounds": "perpetrator_risk",
                 "agency": "police", "caller_informed": True, "not_informed_reason": None}
    arguments.update(overrides)
    return record_exception(audit, **arguments)


def test_the_grounds_are_the_policys():
    assert {g.value for g in Ground} == {
        "caller_consent", "terrorism_or_bomb_warning", "threat_to_worker", "service_interference",
        "safeguarding_child_or_vulnerable_adult", "perpetrator_risk"}
    assert set(POLICY_GROUNDS) == set(Ground)
    assert {a.value for a in Agency} == {"social_services", "police", "partner", "other"}


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
      "not_informed_reason": "  telling him would put his ex-partner at risk  "},
     {"call": CALL, "grounds": ["threat_to_worker"], "agency": "partner",
      "caller_informed": False,
      "not_informed_reason": "telling him would put his ex-partner at risk"}),
    ({"grounds": ("terrorism_or_bomb_warning",), "caller_informed": False,
      "not_informed_reason": "the caller hung up"},
     {"call": CALL, "grounds": ["terrorism_or_bomb_warning"], "agency": "police",
      "caller_informed": False, "not_informed_reason": "the caller hung up"}),
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
    ({"caller_informed": False}, "not_informed_reason: say why"),
    ({"caller_informed": False, "not_informed_reason": "   "}, "not_informed_reason: say why"),
    ({"caller_informed": False, "not_informed_reason": "x" * 1001}, "longer than 1000"),
    ({"caller_informed": True, "not_informed_reason": "n/a"}, "only for when"),
    ({"caller_informed": "yes"}, "caller_informed must be true or false"),
    ({"grounds": "caller_consent", "caller_informed": False, "not_informed_reason": "x"},
     "cannot have consented"),
    ({"actor": ""}, "actor"),
    ({"call_id": ""}, "call_id"),
    ({"call_id": CANARY_NUMBER}, "call_id"),
    ({"call_id": CANARY_NUMBER.lstrip("+")}, "call_id"),
    ({"caller_informed": False, "not_informed_reason": f"he gave {CANARY_NUMBER}"},
     "looks like a phone number"),
]


@pytest.mark.parametrize("overrides, message", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_an_incomplete_or_identifying_exception_is_refused(audit, redis, overrides, message):
    with pytest.raises(ValueError, match=message) as caught:
        record(audit, **overrides)
    assert_no_canary(str(caught.value))
    assert redis.llen(keys.audit_entries()) == 0


def test_the_canary_number_is_never_stored(audit, redis):
    for overrides in ({"call_id": CANARY_NUMBER},
                      {"caller_informed": False, "not_informed_reason": CANARY_NUMBER}):
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
