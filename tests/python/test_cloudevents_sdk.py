"""An independent client: the CloudEvents Python SDK (PyPI `cloudevents`) sends binary and
structured events of every handled type to a running server, and the replies are checked.

Environment (set by the Rust test `events::python`, or by hand):
  AQ_URL          base URL of the server, e.g. http://127.0.0.1:8080
  AQ_USER         an existing, active user the pipeline.execute events run as
  AQ_PIPELINE_ID  a pipeline that user may run, whose first subworkflow is clone_subworkflow
  AQ_STAFF_TOKEN  an access token of a staff user (for the received-events list)
  AQ_RUN_PREFIX   a prefix for event ids, so reruns against one server stay distinct
A trigger of type github_webhook_push whose filter accepts repository.full_name == "py/repo"
must exist (the Rust test creates it).
"""

import os
import uuid

import pytest
import requests

try:  # cloudevents 1.x
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent
except ImportError:  # cloudevents 2.x keeps the 1.x API under cloudevents.v1
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent

URL = os.environ.get("AQ_URL", "http://127.0.0.1:8080").rstrip("/")
USER = os.environ.get("AQ_USER", "event")
PIPELINE_ID = int(os.environ.get("AQ_PIPELINE_ID", "1"))
STAFF_TOKEN = os.environ.get("AQ_STAFF_TOKEN", "")
PREFIX = os.environ.get("AQ_RUN_PREFIX", uuid.uuid4().hex[:8])

RESPONSE = "org.eoepca.application-quality.response"
EXECUTE = "org.eoepca.application-quality.events.pipeline.execute"
PARAMETERS = {
    "parameters": {
        "clone_subworkflow": {
            "clone": {
                "repo_url": "https://github.com/SpaceApplications/eoepca-aqbb-test-files",
                "repo_branch": "main",
            }
        }
    }
}

MODES = {"binary": to_binary, "structured": to_structured}


def send(event, mode, path="/api/events/"):
    headers, body = MODES[mode](event)
    return requests.post(URL + path, headers=headers, data=body, timeout=30)


def reply_event(response):
    """The reply is a binary-mode CloudEvent: check its envelope and return its data."""
    assert response.headers["ce-specversion"] == "1.0"
    assert response.headers["ce-source"] == "/eoepca/application-quality"
    assert response.headers["ce-type"].startswith(RESPONSE + ".")
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def new_id(name):
    return f"{PREFIX}-{name}-{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("path", ["/", "/api/events/"])
def test_health(mode, path):
    ev = CloudEvent(
        {"id": new_id("health"), "type": "org.eoepca.application-quality.probes.health", "source": "pytest"},
        {"message": "Checking your health!"},
    )
    r = send(ev, mode, path)
    assert r.status_code == 200, r.text
    data = reply_event(r)
    assert r.headers["ce-type"] == RESPONSE + ".ok"
    assert r.headers["ce-id"] == ev["id"]
    assert data["status"] == "ok" and data["processed_id"] == ev["id"]


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_execute_then_duplicate(mode):
    attrs = {
        "id": new_id("exec"),
        "type": EXECUTE,
        "source": "pytest",
        "subject": f"pipelines/{PIPELINE_ID}",
        "user": USER,
        "datacontenttype": "application/json",
    }
    ev = CloudEvent(attrs, PARAMETERS)
    r = send(ev, mode)
    assert r.status_code == 200, r.text
    data = reply_event(r)
    assert r.headers["ce-type"] == RESPONSE + ".accepted"
    assert data["status"] == "accepted"
    run_id = data["run_id"]
    assert isinstance(run_id, int)
    assert r.headers["ce-subject"] == str(run_id)
    assert data["pipeline_id"] == PIPELINE_ID
    # the same event again (same source and id): same run, no new one
    again = send(CloudEvent(attrs, PARAMETERS), mode)
    assert again.status_code == 200, again.text
    assert reply_event(again)["status"] == "duplicate"
    assert again.json()["run_id"] == run_id
    assert again.headers["ce-type"] == RESPONSE + ".duplicate"


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_execute_unknown_user_is_422(mode):
    ev = CloudEvent(
        {"id": new_id("nouser"), "type": EXECUTE, "source": "pytest",
         "subject": f"pipelines/{PIPELINE_ID}", "user": "no-such-user-" + PREFIX},
        PARAMETERS,
    )
    r = send(ev, mode)
    assert r.status_code == 422, r.text
    assert "Unknown or inactive user" in r.json()["detail"]
    assert "ce-type" not in r.headers


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_execute_invalid_parameters_is_422(mode):
    ev = CloudEvent(
        {"id": new_id("badparams"), "type": EXECUTE, "source": "pytest",
         "subject": f"pipelines/{PIPELINE_ID}", "user": USER},
        {"parameters": {"clone_subworkflow": {"clone": {"repo_url": 7}}}},
    )
    r = send(ev, mode)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_github_push_runs_the_trigger(mode):
    source = "https://github.com/py/repo"
    ev = CloudEvent(
        {"id": new_id("push"), "type": "org.eoepca.webhook.github.push", "source": source,
         "webhooksource": "github", "datacontenttype": "application/json"},
        {
            "ref": "refs/heads/main",
            "repository": {"full_name": "py/repo", "clone_url": source + ".git"},
            "sender": {"login": "someone"},
        },
    )
    r = send(ev, mode)
    assert r.status_code == 200, r.text
    data = reply_event(r)
    assert data["status"] == "accepted", data
    assert len(data["run_ids"]) == 1


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_unmatched_event_is_ignored(mode):
    ev = CloudEvent({"id": new_id("other"), "type": "org.example.nothing", "source": "pytest"}, {"x": 1})
    r = send(ev, mode)
    assert r.status_code == 200, r.text
    assert reply_event(r)["status"] == "ignored"
    assert r.headers["ce-type"] == RESPONSE + ".ignored"


def test_batch_is_415():
    ev = CloudEvent({"type": "org.example.nothing", "source": "pytest"}, {"x": 1})
    _, body = to_structured(ev)
    r = requests.post(
        URL + "/api/events/",
        headers={"content-type": "application/cloudevents-batch+json"},
        data=b"[" + body + b"]",
        timeout=30,
    )
    assert r.status_code == 415, r.text


def test_plain_post_is_400():
    r = requests.post(URL + "/", json={"message": "Hello World"}, timeout=30)
    assert r.status_code == 400
    assert "ce-specversion" in r.json()["detail"]


@pytest.mark.skipif(not STAFF_TOKEN, reason="AQ_STAFF_TOKEN not set")
def test_staff_sees_received_events():
    r = requests.get(
        URL + "/api/events/?type=org.eoepca.application-quality.events.&limit=1000",
        headers={"Authorization": "Bearer " + STAFF_TOKEN},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    # `limit` asks for a page: {count, next, previous, results}
    mine = [e for e in r.json()["results"] if e["event_id"].startswith(PREFIX)]
    outcomes = sorted(e["outcome"] for e in mine)
    assert outcomes.count("accepted") == 2
    assert "rejected" in outcomes
