import logging

from tests.conftest import RESPECT, assert_no_canary, store_dump
from webhooks.simulator import Keypad


def test_a_caller_hears_the_notice_then_reaches_a_worker(twilio, redis, caplog):
    caplog.set_level(logging.DEBUG)  # every log line the call causes, not only warnings
    transcript = twilio.call(RESPECT, Keypad(["", "1"], ["1"]))
    assert "This call is confidential" in transcript.heard()[0]
    assert transcript.connected
    assert caplog.records, "the call logged nothing: the canary check below would be empty"
    assert_no_canary(caplog.text, store_dump(redis), *twilio.responses)
