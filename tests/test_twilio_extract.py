"""The extract of Twilio's OpenAPI description the tests carry covers every REST request the
service makes: each operation TwilioApi, provisioning and the doctor use resolves to an
operation in ``tests/twilio_spec/api_v2010.json``, and the REST mocks fail a test that sends
anything the extract refuses or anything to anywhere else."""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from callflow.language.loader import load_flowset
from callflow.operations import doctor, provisioning
from callflow.platform.config import Settings
from callflow.platform.twilio_api import TwilioApi, make_client
from tests import twilio_openapi
from tests.bridge_support import ACCOUNT_SID, MOCK_API, MockProblems, TwilioMock
from tests.conftest import FLOWS, RESPECT, ROOT
from tests.twilio_numbers import PUBLIC_URL, TwilioNumbers, fresh, wanted
from tests.twilio_spec import extract

SETTINGS = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token="test-token",
                    twilio_api_url=MOCK_API, public_url=PUBLIC_URL)
WORKER = "+447700900101"
LEG = "CA" + "ab" * 16
CONFERENCE = "CF" + "cd" * 16
URL = "https://calls.example.org/voice/worker?call=abc&leg=0"

# One way to call each public method of TwilioApi; a method added without a row here fails
# test_every_twilio_api_method_is_driven_here.
DRIVE = {
    "ring": lambda api: api.ring(to=WORKER, helpline_number=RESPECT, url=URL,
                                 status_callback=URL, timeout=20),
    "listen": lambda api: api.listen(conference_sid=CONFERENCE, to=WORKER,
                                     helpline_number=RESPECT, status_callback=URL,
                                     label="monitor"),
    "hang_up": lambda api: api.hang_up(LEG),
    "redirect": lambda api: api.redirect(LEG, URL),
    "delete_record": lambda api: api.delete_record(LEG),
    "finished_calls": lambda api: api.finished_calls(to=RESPECT, page_size=50, limit=10),
    "participants": lambda api: api.participants(CONFERENCE),
    "participant": lambda api: api.participant(CONFERENCE, LEG),
    "remove": lambda api: api.remove(CONFERENCE, LEG),
}


def operation(method: str, url: str) -> tuple[str, str]:
    """The extract's (method, path template) for a request; fails if it has none."""
    template, _operation, _params = twilio_openapi.operation_for(method, urlsplit(url).path)
    return method, template


def public_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items()
            if inspect.isfunction(value) and not name.startswith("_")}


def test_every_twilio_api_method_is_driven_here():
    assert public_methods(TwilioApi) == set(DRIVE)


@pytest.mark.parametrize("name", sorted(DRIVE))
def test_each_twilio_api_method_is_an_operation_of_the_extract(name):
    with TwilioMock() as mock:
        DRIVE[name](TwilioApi(make_client(SETTINGS)))
    assert mock.sent, f"TwilioApi.{name} sent nothing"
    for sent in mock.sent:
        operation(sent.method, sent.url)  # and the mock's exit checked its form


def test_provisioning_and_the_doctor_use_operations_of_the_extract():
    flowset = load_flowset(FLOWS)
    client = make_client(SETTINGS)
    with TwilioNumbers() as account:
        for number, _owner in flowset.answered_numbers():
            account.own(number, fresh() if number == RESPECT else wanted())
        plan = provisioning.plan(client, flowset, PUBLIC_URL)
        assert [u.error for u in provisioning.apply(client, plan)] == [""]
        assert doctor.check_twilio(SETTINGS, client).status == doctor.Status.OK
    used = {operation(s.method, MOCK_API + s.path) for s in account.sent}
    account_path = "/2010-04-01/Accounts/{Sid}.json"
    numbers_path = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers"
    assert used == {("GET", f"{numbers_path}.json"), ("POST", f"{numbers_path}/{{Sid}}.json"),
                    ("GET", account_path)}


def rest_modules() -> set[str]:
    """The modules of the service that import the twilio library's REST client."""
    found = set()
    for path in sorted((ROOT / "callflow").rglob("*.py")) + sorted((ROOT / "webhooks")
                                                                     .rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twilio.rest"):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_only_the_modules_driven_above_hold_a_rest_client():
    # Each one's requests are driven by the tests above; a new one needs its own rows there.
    assert rest_modules() == {"callflow/platform/twilio_api.py",
                              "callflow/operations/provisioning.py",
                              "callflow/operations/doctor.py", "callflow/cli/twilio.py"}


def test_the_carried_extract_holds_what_its_script_extracts():
    carried = json.loads(twilio_openapi.SPEC.read_text(encoding="utf-8"))
    assert list(carried["paths"]) == extract.PATHS
    assert (Path(extract.__file__).parent / "LICENSE-twilio-oai").is_file()


# -- the mocks fail the test that used them -----------------------------------------------------


def test_a_request_the_extract_refuses_fails_the_test_at_the_mocks_exit():
    with pytest.raises(MockProblems, match="Recordd is not a parameter"), TwilioMock():
        requests.post(f"{MOCK_API}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
                      data={"To": WORKER, "From": RESPECT, "Url": URL, "Recordd": "false"},
                      timeout=5)


@pytest.mark.parametrize("method, url", [
    ("GET", f"{MOCK_API}/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences.json"),  # not answered
    ("POST", "https://api.twilio.com/2010-04-01/Accounts/AC00/Calls.json"),  # not the mock
])
def test_a_stray_request_fails_the_test_at_the_mocks_exit(method, url):
    for mock in (TwilioMock(), TwilioNumbers()):
        with pytest.raises(MockProblems, match="sent to no Twilio endpoint"), mock, \
                pytest.raises(requests.ConnectionError):
            requests.request(method, url, timeout=5)


def test_a_mock_does_not_hide_the_tests_own_failure():
    with pytest.raises(KeyError), TwilioMock():
        with contextlib.suppress(requests.ConnectionError):
            requests.get("https://elsewhere.test/", timeout=5)  # noted: the KeyError wins
        raise KeyError("the test's own failure")
