"""Tests of the platform.yaml model, its loading and error messages, and the config CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from configkit import MINIMAL, parse_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from k3sops.config import (
    STARTER_TEMPLATE,
    Endpoint,
    Platform,
    PlatformConfigError,
    Thresholds,
    find_platform_file,
    load_platform,
    parse_platform,
    render_starter,
)
from k3sops.errors import ConfigError

pytestmark = pytest.mark.unit


def issue_lines(err: ConfigError) -> list[str]:
    """The per-problem lines of a validation error message."""
    return [line for line in err.message.splitlines() if re.match(r"^\S+:\d+: ", line)]


# ------------------------------------------------------------------------------ starter file


@pytest.mark.unit
def test_starter_template_loads() -> None:
    platform = parse_platform(STARTER_TEMPLATE, "platform.yaml")
    assert platform.name == "my-platform"
    assert list(platform.environments) == ["development", "staging", "production"]
    assert platform.environments["production"].promotion.policy == "approval"
    assert platform.environments["production"].promotion.approvers
    assert platform.backup is not None
    assert platform.backup.password_env == "RESTIC_PASSWORD"


@pytest.mark.unit
def test_render_starter_sets_the_name() -> None:
    platform = parse_platform(render_starter("edge-01"))
    assert platform.name == "edge-01"


@pytest.mark.unit
def test_render_starter_rejects_a_bad_name() -> None:
    with pytest.raises(ConfigError, match="not a valid platform name"):
        render_starter("Edge_01")


@pytest.mark.unit
def test_starter_template_explains_every_section() -> None:
    for section in ("name:", "environments:", "monitoring:", "ansible:", "backup:", "gitops:",
                    "thresholds:", "promotion:"):
        index = STARTER_TEMPLATE.index(section)
        before = STARTER_TEMPLATE[:index].rstrip().splitlines()[-3:]
        assert any("#" in line for line in before), f"{section} has no comment above it"


# ------------------------------------------------------------------------------ valid sections


@pytest.mark.unit
def test_minimal_platform_gets_defaults() -> None:
    platform = parse_platform(MINIMAL)
    env = platform.environments["development"]
    assert env.context == "dev"
    assert env.namespaces == []
    assert env.promotion.policy == "manual"
    assert env.thresholds == Thresholds()
    assert platform.monitoring.namespace == "monitoring"
    assert platform.monitoring.prometheus.service == "monitoring/prometheus-server:80"
    assert platform.monitoring.alertmanager.service == "monitoring/alertmanager:9093"
    assert platform.monitoring.grafana is None
    assert platform.ansible is None
    assert platform.backup is None
    assert platform.gitops is None


@pytest.mark.unit
def test_empty_sections_mean_defaults() -> None:
    platform = parse_platform(
        "name: demo\nenvironments:\n  staging:\n    thresholds:\n    promotion:\nmonitoring:\n"
    )
    assert platform.environments["staging"].thresholds == Thresholds()
    assert platform.monitoring.prometheus.service == "monitoring/prometheus-server:80"


@pytest.mark.unit
def test_thresholds_defaults_from_the_operations_guide() -> None:
    t = Thresholds()
    assert (t.cpu_percent, t.memory_percent, t.disk_free_percent) == (80, 80, 10)
    assert t.for_ == "5m"
    assert t.for_seconds == 300
    assert t.restarts_per_hour == 3
    assert t.http_error_rate_percent == 5.0
    assert t.p95_latency_seconds == 0.5
    assert t.cert_expiry_days == 14


@pytest.mark.unit
def test_environment_section() -> None:
    platform = parse_platform("""\
name: demo
environments:
  production:
    context: prod-admin
    namespaces: [shop, payments]
    promotion:
      policy: approval
      approvers: [ops-lead, sre-team]
    thresholds:
      cpu_percent: 70
      memory_percent: 85.5
      for: 1h30m
      restarts_per_hour: 0
      cert_expiry_days: 30
""")
    env = platform.environments["production"]
    assert env.context == "prod-admin"
    assert env.namespaces == ["shop", "payments"]
    assert env.promotion.approvers == ["ops-lead", "sre-team"]
    assert env.thresholds.cpu_percent == 70
    assert env.thresholds.for_seconds == 5400
    assert env.thresholds.cert_expiry_days == 30


@pytest.mark.unit
@pytest.mark.parametrize("duration", ["0", "30s", "5m", "1h30m", "2d", "1w", "1y", "250ms",
                                      "1h1m1s1ms"])
def test_prometheus_durations_accepted(duration: str) -> None:
    assert Thresholds.model_validate({"for": duration}).for_ == duration


@pytest.mark.unit
@pytest.mark.parametrize("duration", ["", "5", "5x", "m5", "30m1h", "1.5h", "5 m", "-5m"])
def test_prometheus_durations_rejected(duration: str) -> None:
    err = parse_error(MINIMAL + f"    thresholds: {{for: '{duration}'}}\n".replace(
        "    thresholds", "  staging:\n    thresholds"))
    assert "environments.staging.thresholds.for" in err.message
    assert "Prometheus duration" in err.message


@pytest.mark.unit
def test_endpoint_url_and_service_forms() -> None:
    url = Endpoint(url="https://prometheus.example.com:9090/prom")
    assert url.service_ref is None
    with pytest.raises(ValueError, match="URL endpoint"):
        url.proxy_path()

    svc = Endpoint(service="monitoring/prometheus-server:80")
    assert svc.service_ref == ("monitoring", "prometheus-server", 80)
    assert svc.proxy_path() == (
        "/api/v1/namespaces/monitoring/services/http:prometheus-server:80/proxy/"
    )

    named = Endpoint(service="obs/grafana:web", scheme="https", timeout_seconds=2.5)
    assert named.service_ref is not None
    assert named.service_ref.port == "web"
    assert named.proxy_path() == "/api/v1/namespaces/obs/services/https:grafana:web/proxy/"


@pytest.mark.unit
def test_monitoring_section() -> None:
    platform = parse_platform(MINIMAL + """\
monitoring:
  namespace: observability
  prometheus: {url: "http://127.0.0.1:9090", timeout_seconds: 3}
  alertmanager: {service: "observability/alertmanager:web"}
  grafana: {url: "https://grafana.example.com"}
  loki: {service: "observability/loki:3100", scheme: https}
""")
    m = platform.monitoring
    assert m.namespace == "observability"
    assert m.prometheus.url == "http://127.0.0.1:9090"
    assert m.prometheus.timeout_seconds == 3
    assert m.grafana is not None
    assert m.loki is not None
    assert m.loki.proxy_path() == "/api/v1/namespaces/observability/services/https:loki:3100/proxy/"


@pytest.mark.unit
def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "platform.yaml").write_text(MINIMAL + """\
kubeconfig: kube/config
ansible:
  inventory: inventory/hosts.ini
  private_key_file: /abs/id_ed25519
  user: ubuntu
backup:
  repository: ../restic-repo
  password_file: secrets/restic.pw
gitops:
  repo: ../deployments
""")
    platform = load_platform(conf / "platform.yaml")
    assert platform.kubeconfig == conf / "kube/config"
    assert platform.ansible is not None
    assert platform.ansible.inventory == conf / "inventory/hosts.ini"
    assert platform.ansible.private_key_file == Path("/abs/id_ed25519")
    assert platform.ansible.user == "ubuntu"
    assert platform.backup is not None
    assert platform.backup.repository == str(conf / "../restic-repo")
    assert platform.backup.password_file == conf / "secrets/restic.pw"
    assert platform.gitops is not None
    assert platform.gitops.repo == str(conf / "../deployments")


@pytest.mark.unit
@pytest.mark.parametrize("repository", ["sftp:backup@host:/srv/restic", "s3:s3.amazonaws.com/b",
                                        "rest:https://backup.example.com/", "b2:bucket:path"])
def test_backup_remote_repositories_are_kept(repository: str) -> None:
    platform = parse_platform(
        MINIMAL + f"backup: {{repository: '{repository}', password_env: RESTIC_PASSWORD}}\n",
        base_dir=Path("/base"),
    )
    assert platform.backup is not None
    assert platform.backup.repository == repository


@pytest.mark.unit
def test_gitops_section() -> None:
    platform = parse_platform(MINIMAL + """\
gitops:
  repo: git@git.example.com:platform/deployments.git
  branch: release/1.2
  values_path: clusters/{env}/values.yaml
""", base_dir=Path("/base"))
    assert platform.gitops is not None
    assert platform.gitops.repo == "git@git.example.com:platform/deployments.git"
    assert platform.gitops.values_file("staging") == "clusters/staging/values.yaml"


@pytest.mark.unit
def test_json_dump_is_stable_and_round_trips() -> None:
    platform = parse_platform(STARTER_TEMPLATE)
    data = platform.model_dump(mode="json", by_alias=True)
    assert data["environments"]["production"]["thresholds"]["for"] == "10m"
    assert Platform.model_validate(json.loads(json.dumps(data))) == platform


# ------------------------------------------------------------------------------ error messages


@pytest.mark.unit
def test_wrong_type_names_file_line_path_and_expected_type() -> None:
    err = parse_error(MINIMAL + "  staging:\n    thresholds:\n      cpu_percent: lots\n")
    assert isinstance(err, PlatformConfigError)
    assert err.exit_code == 2
    (line,) = issue_lines(err)
    assert line.startswith("platform.yaml:7: environments.staging.thresholds.cpu_percent: ")
    assert "got string 'lots'" in line
    assert line.endswith("(allowed: number)")
    assert isinstance(err.__cause__, ValidationError)


@pytest.mark.unit
def test_booleans_are_not_numbers() -> None:
    err = parse_error(MINIMAL + "    thresholds: {restarts_per_hour: yes}\n")
    assert "restarts_per_hour: wrong type: got boolean True (allowed: whole number)" in err.message


@pytest.mark.unit
def test_out_of_range_gives_the_range() -> None:
    err = parse_error(MINIMAL + "    thresholds: {memory_percent: 120}\n")
    assert "memory_percent: out of range: got 120 (allowed: > 0, <= 100)" in err.message


@pytest.mark.unit
def test_unknown_key_lists_the_allowed_keys() -> None:
    err = parse_error(MINIMAL + "gitops:\n  repo: /srv/git/deploy\n  brnach: main\n")
    (line,) = issue_lines(err)
    assert line == ("platform.yaml:7: gitops.brnach: unknown key "
                    "(allowed: repo, branch, values_path, push, deploy, argocd_namespace, "
                    "rollout_timeout)")


@pytest.mark.unit
def test_unknown_top_level_key_lists_the_aliases() -> None:
    err = parse_error(MINIMAL + "    thresholds: {fro: 5m}\n")
    assert "thresholds.fro: unknown key (allowed: cpu_percent, memory_percent, " in err.message
    assert "for, restarts_per_hour" in err.message


@pytest.mark.unit
def test_bad_literal_lists_the_allowed_values() -> None:
    err = parse_error(MINIMAL + "    promotion: {policy: sometimes}\n")
    (line,) = issue_lines(err)
    assert line == ("platform.yaml:5: environments.development.promotion.policy: "
                    "unexpected value 'sometimes' (allowed: auto, manual, approval)")


@pytest.mark.unit
def test_unknown_environment_name_lists_the_allowed_names() -> None:
    err = parse_error("name: demo\nenvironments:\n  prod: {}\n")
    (line,) = issue_lines(err)
    assert line == ("platform.yaml:3: environments.prod: unknown key 'prod' "
                    "(allowed: development, staging, production)")


@pytest.mark.unit
def test_no_environment_at_all() -> None:
    err = parse_error("name: demo\nenvironments: {}\n")
    assert "platform.yaml:2: environments: at least one environment is needed" in err.message


@pytest.mark.unit
def test_approval_policy_needs_approvers() -> None:
    err = parse_error(MINIMAL + "    promotion:\n      policy: approval\n")
    (line,) = issue_lines(err)
    assert line.startswith("platform.yaml:5: environments.development.promotion: ")
    assert "approvers" in line
    assert err.hint is not None
    assert "approvers" in err.hint


@pytest.mark.unit
@pytest.mark.parametrize("policy", ["auto", "manual"])
def test_other_policies_need_no_approvers(policy: str) -> None:
    platform = parse_platform(MINIMAL + f"    promotion: {{policy: {policy}}}\n")
    assert platform.environments["development"].promotion.approvers == []


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "which"),
    [("{url: 'http://prom:9090', service: 'monitoring/prom:80'}", "both"),
     ("{timeout_seconds: 5}", "neither")],
)
def test_endpoint_needs_exactly_one_of_url_and_service(body: str, which: str) -> None:
    err = parse_error(MINIMAL + f"monitoring:\n  prometheus: {body}\n")
    (line,) = issue_lines(err)
    assert line.startswith(f"platform.yaml:6: monitoring.prometheus: {which} of url and service")


@pytest.mark.unit
@pytest.mark.parametrize("service", ["monitoring/prometheus", "prometheus:80", "Mon/prom:80",
                                     "mon/prom:70000", "mon/prom:0", "mon/prom:a_b"])
def test_bad_service_references(service: str) -> None:
    err = parse_error(MINIMAL + f"monitoring:\n  loki: {{service: '{service}'}}\n")
    assert "platform.yaml:6: monitoring.loki.service: " in err.message


@pytest.mark.unit
@pytest.mark.parametrize("url", ["ftp://host/", "prometheus:9090", "http://", "https://u:pw@h/"])
def test_bad_urls(url: str) -> None:
    err = parse_error(MINIMAL + f"monitoring:\n  grafana: {{url: '{url}'}}\n")
    assert "platform.yaml:6: monitoring.grafana.url: " in err.message
    assert "pw@" not in str(err)


@pytest.mark.unit
def test_password_key_is_rejected_with_a_hint() -> None:
    err = parse_error(MINIMAL + "backup:\n  repository: /srv/restic\n  password: hunter2\n")
    assert ("platform.yaml:7: backup.password: unknown key "
            "(allowed: repository, password_env, password_file, binaries, etcd, targets, drill, "
            "metrics_file, lease_namespace, work_dir, schedule)") in err.message
    assert err.hint is not None
    assert "password_env" in err.hint
    assert "password_file" in err.hint
    assert "hunter2" not in str(err)


@pytest.mark.unit
@pytest.mark.parametrize("extra", ["", "\n  password_file: /etc/restic.pw"])
def test_backup_needs_exactly_one_password_source(extra: str) -> None:
    body = "backup:\n  repository: /srv/restic" + extra + (
        "\n  password_env: RESTIC_PASSWORD\n" if extra else "\n")
    err = parse_error(MINIMAL + body)
    assert "platform.yaml:5: backup: " in err.message
    assert "exactly one is needed (allowed: password_env: VARIABLE or password_file: PATH)" in (
        err.message)


@pytest.mark.unit
def test_values_of_secret_looking_keys_are_not_echoed() -> None:
    err = parse_error(MINIMAL + """\
backup:
  repository: /srv/restic
  password_env: 12345678
api_token: abcdef-secret-value
""")
    text = str(err)
    assert "backup.password_env: wrong type" in text
    assert "12345678" not in text
    assert "api_token: unknown key" in text
    assert "abcdef" not in text


@pytest.mark.unit
def test_missing_key_points_at_the_parent_mapping() -> None:
    err = parse_error(MINIMAL + "ansible:\n  user: ubuntu\n")
    (line,) = issue_lines(err)
    assert line == "platform.yaml:5: ansible.inventory: required key is missing"


@pytest.mark.unit
def test_missing_top_level_keys_point_at_the_document() -> None:
    err = parse_error("# comment\nmonitoring: {}\n")
    assert "platform.yaml:2: name: required key is missing" in err.message
    assert "platform.yaml:2: environments: required key is missing" in err.message


@pytest.mark.unit
def test_list_items_use_index_paths_and_their_own_line() -> None:
    err = parse_error(MINIMAL + "    namespaces:\n      - shop\n      - Payments\n")
    (line,) = issue_lines(err)
    assert line.startswith(
        "platform.yaml:7: environments.development.namespaces[1]: 'Payments' is not a DNS-1123"
    )


@pytest.mark.unit
def test_every_error_is_listed_in_line_order() -> None:
    err = parse_error("""\
name: Demo
environments:
  staging:
    promotion: {policy: always}
    thresholds: {cpu_percent: high}
bogus: 1
""")
    assert isinstance(err, PlatformConfigError)
    assert [i.line for i in err.issues] == [1, 4, 5, 6]
    assert err.message.startswith("invalid platform file platform.yaml (4 problems):")
    assert len(issue_lines(err)) == 4


@pytest.mark.unit
def test_broken_yaml_names_file_line_and_column() -> None:
    err = parse_error("name: demo\nenvironments:\n  development: {\n  staging: x\n")
    assert re.match(r"^platform\.yaml:\d+:\d+: invalid YAML: ", err.message)
    assert not isinstance(err.__cause__, ConfigError)
    assert isinstance(err.__cause__, yaml.YAMLError)


@pytest.mark.unit
def test_broken_yaml_points_at_the_bad_line() -> None:
    err = parse_error("name: demo\nenvironments:\n  development:\n   bad: : :\n")
    assert err.message.startswith("platform.yaml:4:")


@pytest.mark.unit
def test_duplicate_keys_are_rejected() -> None:
    err = parse_error("name: demo\nenvironments:\n  development: {}\nname: other\n")
    assert err.message.startswith("platform.yaml:4:1: invalid YAML: duplicate key 'name'")
    assert "line 1" in err.message


@pytest.mark.unit
def test_unreadable_scalar_is_a_config_error_with_a_line() -> None:
    err = parse_error(MINIMAL + "    context: !!float nope\n")
    assert err.message.startswith("platform.yaml:5:")
    assert "nope" not in str(err)


@pytest.mark.unit
@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    err = parse_error(text)
    assert "platform.yaml" in err.message
    assert "empty" in err.message
    assert err.hint is not None
    assert "k3sops init" in err.hint


@pytest.mark.unit
@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "string"),
                                            ("42\n", "whole number")])
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    err = parse_error(text)
    assert err.message.startswith("platform.yaml:1: the top level must be a mapping")
    assert err.message.endswith(f"got {kind}")


@pytest.mark.unit
def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_platform(path)
    assert str(path) in info.value.message
    assert info.value.hint is not None
    assert "k3sops init" in info.value.hint


@pytest.mark.unit
def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_platform(tmp_path)


@pytest.mark.unit
def test_load_reports_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(MINIMAL + "    promotion: {policy: never}\n")
    with pytest.raises(ConfigError) as info:
        load_platform(path)
    assert f"{path}:5: environments.development.promotion.policy" in info.value.message


# ------------------------------------------------------------------------------ file lookup


@pytest.mark.unit
def test_find_platform_file_precedence(tmp_path: Path) -> None:
    env = {"K3SOPS_CONFIG": "/etc/k3sops/platform.yaml"}
    assert find_platform_file(Path("/x/p.yaml"), env, tmp_path) == Path("/x/p.yaml")
    assert find_platform_file(Path("rel.yaml"), env, tmp_path) == tmp_path / "rel.yaml"
    assert find_platform_file(None, env, tmp_path) == Path("/etc/k3sops/platform.yaml")
    assert find_platform_file(None, {}, tmp_path) is None
    assert find_platform_file(None, {"K3SOPS_CONFIG": ""}, tmp_path) is None
    (tmp_path / "platform.yaml").write_text(MINIMAL)
    assert find_platform_file(None, {}, tmp_path) == tmp_path / "platform.yaml"
    assert find_platform_file(None, env, tmp_path) == Path("/etc/k3sops/platform.yaml")


# ------------------------------------------------------------------------------ properties

_YAMLISH = st.text(alphabet=st.sampled_from(list("abcnmeyz019.:-_ []{},#&*!|>'\"%@?\n\t")))


@pytest.mark.unit
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.binary(), _YAMLISH, _YAMLISH.map(lambda t: MINIMAL + t)))
def test_arbitrary_input_is_a_platform_or_a_config_error(text: str | bytes) -> None:
    try:
        result = parse_platform(text, "fuzz.yaml")
    except ConfigError as e:
        assert "fuzz.yaml" in str(e)
    else:
        assert isinstance(result, Platform)


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaf_paths(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaf_paths(v, (*path, i))]
    return [path]


_STARTER_DATA = yaml.safe_load(STARTER_TEMPLATE)
_LEAVES = _leaf_paths(_STARTER_DATA)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                     st.sampled_from(["", "0", "-1", "yes", "5m", "auto", "a/b:80", "http://x"]))


@pytest.mark.unit
@settings(max_examples=300)
@given(st.sampled_from(_LEAVES), _SCALARS)
def test_mutated_values_give_a_platform_or_a_located_error(
    path: tuple[Any, ...], value: object
) -> None:
    data = json.loads(json.dumps(_STARTER_DATA))
    target = data
    for seg in path[:-1]:
        target = target[seg]
    target[path[-1]] = value
    text = yaml.safe_dump(data, sort_keys=False)
    try:
        result = parse_platform(text, "mutated.yaml")
    except ConfigError as e:
        assert re.search(r"mutated\.yaml:\d+", str(e)), str(e)
    else:
        assert isinstance(result, Platform)


_VALUE_LINES = [i for i, line in enumerate(STARTER_TEMPLATE.splitlines())
                if re.match(r"^\s*[a-z_]+: \S", line)]
_RAW_SCALARS = st.one_of(
    st.sampled_from(["~", "yes", "0x1f", "1e400", ".nan", "-.inf", "2001-13-01", "!!float x",
                     "*undefined", "&a", "[", "{a: 1}", "'unterminated", "|", "- x", "a: b",
                     "!!binary zz", "@", "`", "%x", "? x"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
            max_size=20),
)


@pytest.mark.unit
@settings(max_examples=300)
@given(st.sampled_from(_VALUE_LINES), _RAW_SCALARS)
def test_raw_scalar_mutations_give_a_platform_or_a_located_error(index: int, raw: str) -> None:
    lines = STARTER_TEMPLATE.splitlines()
    key = lines[index].split(":", 1)[0]
    lines[index] = f"{key}: {raw}"
    try:
        result = parse_platform("\n".join(lines) + "\n", "mutated.yaml")
    except ConfigError as e:
        assert re.search(r"mutated\.yaml:\d+", str(e)), str(e)
    else:
        assert isinstance(result, Platform)


# ------------------------------------------------------------------------------ CLI


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Run ``k3sops`` via ``main(argv)`` in an empty directory; returns the exit code.

    Skipped while cli/app.py cannot be imported because a sibling command module is not
    written yet or one of its third-party dependencies is not installed here.
    """
    try:
        from k3sops.cli.app import main
    except ImportError as e:
        sibling = next((m for m in ("lab_cmd", "status_cmd") if m in str(e)), None)
        if sibling is not None:
            pytest.skip(f"k3sops.cli.{sibling} does not exist yet")
        if isinstance(e, ModuleNotFoundError) and e.name and not e.name.startswith("k3sops"):
            pytest.skip(f"cli/app.py needs {e.name}, which is not installed")
        raise
    for var in ("K3SOPS_CONFIG", "K3SOPS_OUTPUT", "K3SOPS_KUBECONFIG", "K3SOPS_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> int:
        with pytest.raises(SystemExit) as info:
            main(list(argv))
        code = info.value.code
        return code if isinstance(code, int) else 1

    return run


@pytest.mark.unit
def test_cli_validate_valid_file(cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    (tmp_path / "platform.yaml").write_text(STARTER_TEMPLATE)
    assert cli("config", "validate") == 0
    out = capsys.readouterr().out
    assert out.strip() == (f"{tmp_path / 'platform.yaml'}: valid (platform my-platform, "
                           "environments: development, staging, production)")


@pytest.mark.unit
@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_cli_validate_machine_output(cli: Any, tmp_path: Path, fmt: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(STARTER_TEMPLATE)
    assert cli("-o", fmt, "config", "validate", str(path)) == 0
    out = capsys.readouterr().out
    data = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert data == load_platform(path).model_dump(mode="json", by_alias=True)
    assert data["ansible"]["inventory"] == str(tmp_path / "inventory/hosts.ini")


@pytest.mark.unit
def test_cli_validate_uses_the_config_flag(cli: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text(MINIMAL)
    assert cli("--config", str(path), "config", "validate") == 0
    assert "valid (platform demo, environments: development)" in capsys.readouterr().out


@pytest.mark.unit
def test_cli_validate_invalid_file_exits_2(cli: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "platform.yaml").write_text(MINIMAL + "    promotion: {policy: yolo}\n")
    assert cli("config", "validate", "platform.yaml") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "platform.yaml:5: environments.development.promotion.policy" in captured.err
    assert "allowed: auto, manual, approval" in captured.err


@pytest.mark.unit
def test_cli_validate_without_a_file_exits_2(cli: Any, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    assert cli("config", "validate") == 2
    assert "k3sops init" in capsys.readouterr().err


@pytest.mark.unit
def test_cli_init_writes_a_valid_starter(cli: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("init", "--name", "lab") == 0
    platform = load_platform(tmp_path / "platform.yaml")
    assert platform.name == "lab"
    assert "wrote platform.yaml" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["platform.yaml"]  # no temp file left


@pytest.mark.unit
def test_cli_init_refuses_to_overwrite(cli: Any, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text("keep me\n")
    assert cli("init") == 2
    assert "--force" in capsys.readouterr().err
    assert path.read_text() == "keep me\n"
    assert cli("init", "--force", str(path)) == 0
    assert load_platform(path).name == "my-platform"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["platform.yaml"]


@pytest.mark.unit
def test_cli_init_rejects_a_bad_name(cli: Any, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("init", "--name", "Not Valid") == 2
    assert "--name" in capsys.readouterr().err
    assert not (tmp_path / "platform.yaml").exists()


@pytest.mark.unit
def test_cli_init_into_a_missing_directory(cli: Any, tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "missing" / "platform.yaml")) == 2
    assert not (tmp_path / "missing").exists()
