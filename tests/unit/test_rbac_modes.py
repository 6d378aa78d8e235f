"""The chart's RBAC modes are the code's (k3sops.serve.rbac): files, README, invariants.

The proof that the rights are exactly what the commands use is on the lab's API server
(tests/lab/test_rbac_lab.py); these hold the generated files and the documentation to the
source, and the modes to their promises (no Secrets, readonly writes nothing of the cluster's).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from k3sops.domain import checks as registry
from k3sops.serve import rbac
from k3sops.serve.remediation import PLAN_RIGHTS
from k3sops.serve.runner import every_kind

ROOT = Path(__file__).parents[2]
FILES = ROOT / "deploy" / "helm" / "k3sops" / "files" / "rbac"


@pytest.mark.parametrize("mode", rbac.MODES)
def test_the_chart_s_files_are_the_generator_s_output(mode: rbac.Mode) -> None:
    assert (FILES / f"{mode}.yaml").read_text() == rbac.render(mode), (
        "regenerate: python -m k3sops.serve.rbac deploy/helm/k3sops/files/rbac")


def test_no_other_file_sits_beside_the_modes() -> None:
    assert sorted(p.name for p in FILES.iterdir()) == sorted(f"{m}.yaml" for m in rbac.MODES)


@pytest.mark.parametrize("mode", rbac.MODES)
def test_the_file_s_rules_hold_each_right_once_and_exactly_the_mode_s(mode: rbac.Mode) -> None:
    doc = yaml.safe_load((FILES / f"{mode}.yaml").read_text())
    wheres = {rbac.CLUSTER: doc["cluster"], rbac.RELEASE: doc["release"], **doc["namespaces"]}
    listed = [(where, rule["apiGroups"][0], r, v) for where, rules in wheres.items()
              for rule in rules for r in rule["resources"] for v in rule["verbs"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == rbac.atoms(mode)
    for rules in wheres.values():
        for rule in rules:
            assert len(rule["apiGroups"]) == 1 and "*" not in rule["apiGroups"]
            assert "*" not in rule["resources"] and "*" not in rule["verbs"]


def test_every_kind_is_listed_and_the_cached_ones_watched_but_secrets() -> None:
    granted = {(r, v) for where, _, r, v in rbac.atoms("readonly") if where == rbac.CLUSTER}
    watched = set(every_kind())
    assert watched < set(rbac.known_kinds())
    for kind in rbac.known_kinds():
        plain = kind.split(".")[0]
        if kind in rbac.UNGRANTED:
            assert not any(r == plain for r, _ in granted), kind
            continue
        assert (plain, "list") in granted, kind
        assert ((plain, "watch") in granted) == (kind in watched), kind


@pytest.mark.parametrize("mode", rbac.MODES)
def test_no_mode_reaches_secrets_or_changes_rbac(mode: rbac.Mode) -> None:
    for _, group, resource, verb in rbac.atoms(mode):
        assert resource.split("/")[0] != "secrets", (resource, verb)
        assert group != "rbac.authorization.k8s.io" or verb in ("list", "watch")


def test_readonly_writes_only_reviews_and_its_own_lease() -> None:
    writes = {(w, g, r) for w, g, r, v in rbac.atoms("readonly")
              if v not in ("get", "list", "watch")}
    assert writes == {(rbac.CLUSTER, "authentication.k8s.io", "tokenreviews"),
                      (rbac.CLUSTER, "authorization.k8s.io", "subjectaccessreviews"),
                      (rbac.RELEASE, "coordination.k8s.io", "leases")}


def test_operator_is_readonly_plus_every_plan_s_rights() -> None:
    operator = rbac.atoms("operator")
    assert rbac.atoms("readonly") < operator
    for plan, rules in PLAN_RIGHTS.items():
        for rule in rules:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    assert (rbac.CLUSTER, rule["apiGroups"][0], r, v) in operator, (plan, r, v)


def test_the_cost_of_not_reading_secrets_is_the_engine_s() -> None:
    skipped, partial = rbac.cost("secrets")
    assert skipped == [s.id for s in registry.selected("monthly") if "secrets" in s.reads]
    assert skipped and "secret-unused" in skipped and "ingress-tls-expiring" in skipped
    assert partial == ["pod-secret-missing"]


def test_an_unknown_mode_is_refused_naming_the_modes() -> None:
    with pytest.raises(ValueError, match="unknown RBAC mode 'admin': one of readonly, operator"):
        rbac.grants("admin")  # type: ignore[arg-type]


def test_the_readme_holds_the_modes_table_and_the_cost() -> None:
    readme = (ROOT / "README.md").read_text()
    assert rbac.readme_table() in readme
    skipped, partial = rbac.cost("secrets")
    prose = re.sub(r"\s+", " ", readme)
    assert (", ".join(skipped[:-1]) + f" and {skipped[-1]} are not evaluated and "
            + f"{partial[0]} judges from the kubelet's events") in prose


def test_the_generator_writes_both_files(tmp_path: Path) -> None:
    assert rbac.main([str(tmp_path)]) == 0
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        f"{m}.yaml": rbac.render(m) for m in rbac.MODES}
    assert rbac.main([]) == 2


def test_the_rights_the_lab_cannot_reach_are_granted_and_say_why() -> None:
    assert set(rbac.LAB_UNREACHED) <= rbac.atoms("readonly")
    assert all(len(why) > 20 for why in rbac.LAB_UNREACHED.values())
