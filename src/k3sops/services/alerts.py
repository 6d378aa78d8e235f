"""`k3sops alerts render | test | apply`: the default alert rules, proven and loaded.

* render: the rules for the platform's environments as a rule file or PrometheusRule objects;
* test: ``promtool check rules`` on the rendered file, and ``promtool test rules`` on each
  rule's generated cases (one that must fire, one that must not);
* apply: with ``monitoring.rule_files_dir`` (a Prometheus on this host), write
  ``k3sops-rules.yml`` there atomically, POST ``/-/reload`` and confirm through
  ``/api/v1/rules`` that every group is loaded; otherwise server-side-apply one PrometheusRule
  object per environment into ``monitoring.namespace`` of that environment's kube context and
  read each back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from k3sops.adapters.kube import KubeAdapter
from k3sops.adapters.prometheus import HttpApi, PrometheusAdapter
from k3sops.adapters.promtool import Promtool, rules_found, write_rule_file
from k3sops.config import ENVIRONMENT_NAMES, Environment, Platform
from k3sops.domain.rules import (
    RULE_FILE_NAME,
    RuleObject,
    RuleSet,
    build_rules,
    prometheus_rules,
    promtool_tests,
    rule_file,
    to_yaml,
    to_yaml_documents,
)
from k3sops.domain.rules.render import HEADER
from k3sops.domain.rules.reports import (
    AlertsApplyReport,
    AppliedRules,
    RenderedRules,
    RuleCheckResult,
    RuleFormat,
    RuleTestReport,
    RuleTestResult,
)
from k3sops.errors import AdapterError, NotFound, UsageError
from k3sops.services.context import Settings, kube

log = logging.getLogger(__name__)

DEFAULT_PLATFORM_NOTICE = (
    "no platform.yaml found: using a default platform (development, staging and production "
    "on the current kube context, default thresholds); pass -c/--config to use yours"
)
CONFIRM_SECONDS = 15.0
"""How long `apply` waits for Prometheus to list the new groups after a reload."""


def default_platform() -> Platform:
    """The platform assumed without a platform.yaml: three environments, default thresholds."""
    return Platform(name="k3sops",
                    environments={name: Environment() for name in ENVIRONMENT_NAMES})


def platform_of(settings: Settings) -> tuple[Platform, bool]:
    """The platform to build rules for, and whether it is the default one."""
    if settings.platform is not None:
        return settings.platform, False
    return default_platform(), True


def _select(platform: Platform, environment: str | None) -> RuleSet:
    rules = build_rules(platform)
    if environment is None:
        return rules
    if environment not in platform.environments:
        known = ", ".join(platform.environments)
        raise UsageError(f"environment {environment!r} is not in the platform",
                         hint=f"environments: {known}")
    return rules.for_environment(environment, platform)


def render(platform: Platform, fmt: RuleFormat = "rules",
           environment: str | None = None) -> RenderedRules:
    """Render the rules for ``platform``.

    Args:
        platform: the platform (thresholds, environments, monitoring settings).
        fmt: ``rules`` for a Prometheus rule file, ``prometheusrule`` for PrometheusRule
            objects in ``monitoring.namespace``.
        environment: only the rules concerning this environment (its namespace-scoped rules
            and the cluster-scoped rules of its kube context).

    Raises:
        UsageError: ``environment`` is not one of the platform's.
    """
    rules = _select(platform, environment)
    groups = len(rules.groups())
    document: Any
    if fmt == "rules":
        document = rule_file(rules)
        text = to_yaml(document, HEADER)
    else:
        objects = prometheus_rules(rules, platform.monitoring.namespace)
        document = [o.body for o in objects]
        text = to_yaml_documents(document, HEADER)
    return RenderedRules(format=fmt, environment=environment, groups=groups,
                         rules=len(rules.instances), notes=list(rules.notes),
                         document=document, text=text)


def run_tests(platform: Platform, promtool: Promtool | None = None) -> RuleTestReport:
    """Check the rendered rule file and run every rule's promtool unit test.

    Raises:
        NotFound: promtool is not installed (the hint says how to install it).
    """
    tool = promtool or Promtool.find()
    rules = build_rules(platform)
    whole = to_yaml(rule_file(rules), HEADER)
    check = tool.check_rules({RULE_FILE_NAME: whole})[RULE_FILE_NAME]
    cases = promtool_tests(rules)
    files = {RULE_FILE_NAME: whole}
    for t in cases:
        files[t.rule_file_name] = t.rule_file_text
        files[t.test_file_name] = t.test_file_text
    runs = tool.test_rules(files, [t.test_file_name for t in cases])
    results = [RuleTestResult(rule=t.rule_id, environment=t.environment, severity=t.severity,
                              passed=runs[t.test_file_name].ok,
                              output="" if runs[t.test_file_name].ok
                              else runs[t.test_file_name].output.strip())
               for t in cases]
    passed = sum(r.passed for r in results)
    return RuleTestReport(
        promtool=tool.version(),
        check=RuleCheckResult(passed=check.ok, rules_found=rules_found(check),
                              output=check.output.strip()),
        results=results, passed=passed, failed=len(results) - passed, notes=list(rules.notes))


def _validate(text: str, promtool: Promtool | None) -> None:
    """Refuse a rule file promtool rejects; without promtool, Prometheus' reload checks it."""
    try:
        tool = promtool or Promtool.find()
    except NotFound:
        log.warning("promtool not found: the rule file is not checked before it is written")
        return
    run = tool.check_rules({RULE_FILE_NAME: text})[RULE_FILE_NAME]
    if not run.ok:
        raise AdapterError(f"promtool rejects the rendered rules:\n{run.output.strip()}",
                           hint="this is a k3sops bug; please report it with your platform.yaml")


def _prometheus_api(settings: Settings, platform: Platform, env: Mapping[str, str],
                    home: Path) -> tuple[HttpApi, KubeAdapter | None]:
    endpoint = platform.monitoring.prometheus
    k = kube(settings, env, home) if endpoint.url is None else None
    return HttpApi.from_endpoint("Prometheus", endpoint, k), k


def _loaded(groups: list[dict[str, Any]], names: set[str]) -> tuple[int, int]:
    """Groups and rules Prometheus reports from our file."""
    ours = [g for g in groups if g.get("name") in names
            and Path(str(g.get("file", ""))).name == RULE_FILE_NAME]
    return len(ours), sum(len(g.get("rules") or []) for g in ours)


def _apply_rule_file(settings: Settings, platform: Platform, rules: RuleSet, dry_run: bool,
                     env: Mapping[str, str], home: Path,
                     promtool: Promtool | None) -> AlertsApplyReport:
    directory = platform.monitoring.rule_files_dir
    assert directory is not None  # noqa: S101 - the caller checked
    text = to_yaml(rule_file(rules), HEADER)
    groups = rules.groups()
    names = {name for name, _ in groups}
    target = str(directory / RULE_FILE_NAME)
    if dry_run:
        return AlertsApplyReport(
            mode="rule-file", dry_run=True, content=text, notes=list(rules.notes),
            applied=[AppliedRules(kind="rule-file", target=target, cluster=None,
                                  environment=None, groups=len(groups),
                                  rules=len(rules.instances), loaded_groups=None,
                                  loaded_rules=None)])
    _validate(text, promtool)
    write_rule_file(directory, RULE_FILE_NAME, text)
    api, k = _prometheus_api(settings, platform, env, home)
    try:
        prom = PrometheusAdapter(api)
        try:
            prom.reload()
        except AdapterError as e:
            raise AdapterError(
                f"wrote {target}, but Prometheus did not reload: {e.message}",
                hint="Prometheus needs --web.enable-lifecycle for /-/reload; its log names "
                     "the rule file it could not read") from e
        deadline = time.monotonic() + CONFIRM_SECONDS
        loaded = _loaded(prom.rules(), names)
        while loaded[0] < len(names) and time.monotonic() < deadline:
            time.sleep(0.5)
            loaded = _loaded(prom.rules(), names)
    finally:
        api.close()
        if k is not None:
            k.close()
    if loaded[0] < len(names):
        raise AdapterError(
            f"wrote {target} and reloaded Prometheus ({api.how}), but it lists only "
            f"{loaded[0]} of the {len(names)} k3sops rule groups",
            hint=f"does Prometheus' rule_files glob include {target}? "
                 "(monitoring.rule_files_dir must be the directory it reads)")
    return AlertsApplyReport(
        mode="rule-file", dry_run=False, content=None, notes=list(rules.notes),
        applied=[AppliedRules(kind="rule-file", target=target, cluster=None, environment=None,
                              groups=len(groups), rules=len(rules.instances),
                              loaded_groups=loaded[0], loaded_rules=loaded[1])])


def _apply_objects(settings: Settings, platform: Platform, rules: RuleSet, dry_run: bool,
                   env: Mapping[str, str], home: Path) -> AlertsApplyReport:
    objects = prometheus_rules(rules, platform.monitoring.namespace)
    text = to_yaml_documents([o.body for o in objects], HEADER)
    applied: list[AppliedRules] = []
    if dry_run:
        for o in objects:
            groups = o.body["spec"]["groups"]
            applied.append(AppliedRules(
                kind="prometheusrule", target=f"{o.namespace}/{o.name}",
                cluster=f"context {o.context or settings.context or '(current)'}",
                environment=o.environment, groups=len(groups),
                rules=sum(len(g["rules"]) for g in groups), loaded_groups=None,
                loaded_rules=None))
        return AlertsApplyReport(mode="prometheusrule", dry_run=True, applied=applied,
                                 content=text, notes=list(rules.notes))

    by_context: dict[str | None, list[RuleObject]] = {}
    for o in objects:
        # Precedence as everywhere: --context (flag/env) over platform.yaml's context.
        by_context.setdefault(settings.context or o.context, []).append(o)
    for context, members in by_context.items():
        k = kube(replace(settings, context=context), env, home)
        try:
            applied += [_apply_object(k, o) for o in members]
        finally:
            k.close()
    return AlertsApplyReport(mode="prometheusrule", dry_run=False, applied=applied,
                             content=None, notes=list(rules.notes))


def _apply_object(k: KubeAdapter, o: RuleObject) -> AppliedRules:
    """Server-side apply one PrometheusRule (field manager k3sops) and read it back."""
    groups = o.body["spec"]["groups"]
    try:
        k.apply(o.body, "prometheusrules")
        back = k.get("monitoring.coreos.com/v1", "prometheusrules", o.name, o.namespace)
    except NotFound as e:
        raise NotFound(e.message,
                       hint=f"is the PrometheusRule CRD (Prometheus Operator) installed, and "
                            f"does namespace {o.namespace} exist? Without the operator, set "
                            "monitoring.rule_files_dir to the directory Prometheus reads "
                            "rule files from") from e
    spec = back.get("spec") or {}
    loaded = [g for g in spec.get("groups") or [] if isinstance(g, dict)]
    return AppliedRules(kind="prometheusrule", target=f"{o.namespace}/{o.name}",
                        cluster=f"{k.server} (context {k.context})", environment=o.environment,
                        groups=len(groups), rules=sum(len(g["rules"]) for g in groups),
                        loaded_groups=len(loaded),
                        loaded_rules=sum(len(g.get("rules") or []) for g in loaded))


def apply(settings: Settings, platform: Platform, env: Mapping[str, str], home: Path,
          dry_run: bool = False, promtool: Promtool | None = None) -> AlertsApplyReport:
    """Load the rules into Prometheus (rule file) or the cluster (PrometheusRule objects).

    Args:
        settings: resolved flags and platform file.
        platform: the platform to build the rules for.
        env: process environment (kubeconfig discovery).
        home: the user's home directory (kubeconfig discovery).
        dry_run: only report what would be written.
        promtool: the promtool to validate a rule file with (default: found on PATH; without
            one the file is not pre-checked).

    Raises:
        AdapterError: writing, reloading or applying failed, or Prometheus did not load the
            groups (the message says which).
    """
    rules = build_rules(platform)
    if platform.monitoring.rule_files_dir is not None:
        return _apply_rule_file(settings, platform, rules, dry_run, env, home, promtool)
    return _apply_objects(settings, platform, rules, dry_run, env, home)
