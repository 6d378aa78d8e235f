"""platform.yaml's ``serve`` section: defaults, validation messages, secrets never inline."""

from __future__ import annotations

import pytest
from configkit import MINIMAL, parse_error

from k3sops.config import parse_platform

pytestmark = pytest.mark.unit


def test_no_serve_section_gets_the_defaults() -> None:
    serve = parse_platform(MINIMAL, "platform.yaml").serve
    assert serve.address == ("0.0.0.0", 8443)  # noqa: S104 - the in-cluster default
    assert serve.tls is None
    assert serve.schedule.crons() == {"daily": "0 7 * * *", "weekly": "0 8 * * 1",
                                      "monthly": "0 9 1 * *"}
    assert serve.schedule.timezone == "UTC"
    assert (serve.lease.namespace, serve.lease.name, serve.lease.seconds) == (
        "k3sops", "k3sops-serve", 15.0)
    assert serve.receivers == []
    assert serve.remediation.enabled is False
    assert serve.remediation.policies == []


def test_a_full_serve_section_loads() -> None:
    serve = parse_platform(MINIMAL + """\
serve:
  listen: "[::1]:21080"
  tls: {cert_file: /etc/k3sops/tls.crt, key_file: /etc/k3sops/tls.key}
  schedule: {daily: "30 6 * * *", weekly: null, timezone: Europe/Berlin}
  lease: {namespace: ops, name: serve, duration: 1m}
  alertmanager_token_env: K3SOPS_ALERTMANAGER_TOKEN
  receivers:
    - {name: ops, type: webhook, url_file: /run/secrets/ops-url}
    - {name: chat, type: slack, url_env: SLACK_WEBHOOK_URL}
  remediation:
    enabled: true
    policies:
      - {id: restart-crashloop, when: {alert: KubePodCrashLooping}, plan: restart,
         environments: [development], max_per_hour: 2}
""", "platform.yaml").serve
    assert serve.address == ("::1", 21080)
    assert serve.tls is not None and str(serve.tls.key_file) == "/etc/k3sops/tls.key"
    assert serve.schedule.crons() == {"daily": "30 6 * * *", "monthly": "0 9 1 * *"}
    assert serve.lease.seconds == 60.0
    assert [(r.name, r.type, r.url_env) for r in serve.receivers] == [
        ("ops", "webhook", None), ("chat", "slack", "SLACK_WEBHOOK_URL")]
    policy = serve.remediation.policies[0]
    assert (policy.when.alert, policy.when.check, policy.plan, policy.max_per_hour) == (
        "KubePodCrashLooping", None, "restart", 2)


@pytest.mark.parametrize(("listen", "problem"), [
    ("8443", "no HOST:PORT"), (":8443", "no HOST:PORT"), ("0.0.0.0:0", "not 1-65535"),
    ("0.0.0.0:http", "not 1-65535"), ("0.0.0.0:70000", "not 1-65535")])
def test_a_bad_listen_address_names_the_problem_and_the_form(listen: str, problem: str) -> None:
    err = parse_error(MINIMAL + f"serve:\n  listen: '{listen}'\n")
    assert "platform.yaml:6: serve.listen: " in err.message
    assert problem in err.message
    assert "HOST:PORT, e.g. 0.0.0.0:8443" in err.message


def test_bad_cron_and_time_zone_are_refused_with_the_allowed_form() -> None:
    err = parse_error(MINIMAL + "serve:\n  schedule:\n    daily: '61 * * * *'\n"
                 "    timezone: Mars/Olympus\n")
    assert "serve.schedule.daily: " in err.message
    assert "minute hour day-of-month month day-of-week" in err.message
    assert "serve.schedule.timezone: 'Mars/Olympus' is not a known time zone" in err.message


def test_a_bad_lease_duration_is_refused() -> None:
    err = parse_error(MINIMAL + "serve:\n  lease: {duration: fifteen}\n")
    assert "serve.lease.duration: 'fifteen' is not a Prometheus duration" in err.message


def test_an_inline_receiver_url_is_refused_without_echoing_it() -> None:
    err = parse_error(MINIMAL + "serve:\n  receivers:\n    - name: chat\n      type: slack\n"
                 "      url: https://hooks.chat.example/services/T000/B000/sekrit\n")
    assert "serve.receivers[0].url: unknown key" in err.message
    assert err.hint is not None and "url_env" in err.hint and "url_file" in err.hint
    assert "sekrit" not in str(err)
    assert "sekrit" not in (err.hint or "")


@pytest.mark.parametrize("body", ["{name: chat}", "{name: chat, url_env: A, url_file: /b}"])
def test_a_receiver_needs_exactly_one_url_source(body: str) -> None:
    err = parse_error(MINIMAL + f"serve:\n  receivers:\n    - {body}\n")
    assert "exactly one of url_env and url_file is needed" in err.message


def test_receiver_names_and_policy_ids_are_unique() -> None:
    err = parse_error(MINIMAL + """\
serve:
  receivers: [{name: a, url_env: A}, {name: a, url_env: B}]
  remediation:
    policies:
      - {id: p, when: {check: pod-crashloop}, plan: restart, environments: [development]}
      - {id: p, when: {check: pod-crashloop}, plan: restart, environments: [development]}
""")
    assert "receiver names used twice: a" in err.message
    assert "policy ids used twice: p" in err.message


def test_a_policy_needs_one_trigger_a_known_plan_and_an_environment() -> None:
    err = parse_error(MINIMAL + """\
serve:
  remediation:
    policies:
      - {id: p, when: {alert: A, check: c}, plan: reboot, environments: []}
""")
    assert "exactly one of alert and check is needed" in err.message
    assert "serve.remediation.policies[0].plan" in err.message
    assert "(allowed: restart, clean-pods, cordon)" in err.message
    assert "serve.remediation.policies[0].environments" in err.message


def test_alertmanager_token_inline_or_twice_is_refused() -> None:
    err = parse_error(MINIMAL + "serve:\n  alertmanager_token: abc123secret\n")
    assert "serve.alertmanager_token: unknown key" in err.message
    assert err.hint is not None and "alertmanager_token_env" in err.hint
    assert "abc123secret" not in str(err)
    err = parse_error(MINIMAL + "serve:\n  alertmanager_token_env: T\n"
                 "  alertmanager_token_file: /t\n")
    assert "both alertmanager_token_env and alertmanager_token_file given" in err.message
    err = parse_error(MINIMAL + "serve:\n  alertmanager_token_env: 'not a name'\n")
    assert "serve.alertmanager_token_env: not an environment variable name" in err.message
