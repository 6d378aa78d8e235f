"""The table-view registry: every registered key names a real report type, and the reports of
`scale`, `provision` and `emergency` find their view by type (a moved or renamed report class
would otherwise only fail when a user asks for a table)."""

from __future__ import annotations

import pkgutil
from importlib import import_module

import pytest
from rich.console import Console

import k3sops.output.tables as views
from k3sops.domain.emergency import EmergencyReport
from k3sops.output.render import TABLES, table_of
from k3sops.services.provision import ProvisionReport
from k3sops.services.scale import HpaReport

pytestmark = pytest.mark.unit


def _load_views() -> None:
    for info in pkgutil.iter_modules(views.__path__):
        import_module(f"{views.__name__}.{info.name}")


def test_every_registered_key_is_an_importable_report_type() -> None:
    _load_views()
    assert TABLES
    for key, target in TABLES.items():
        module, _, qualname = key.rpartition(".")
        cls = getattr(import_module(module), qualname, None)
        assert isinstance(cls, type), f"{key} is registered but names no class"
        assert f"{cls.__module__}.{cls.__qualname__}" == key
        fn_module, fn_name = target.split(":")
        assert callable(getattr(import_module(fn_module), fn_name))


@pytest.mark.parametrize("name", [
    "k3sops.services.scale.autoscale.AutoscaleReport",
    "k3sops.services.scale.status.HpaReport",
    "k3sops.services.scale.resources.ResourcesReport",
    "k3sops.services.scale.pvc.PvcReport",
    "k3sops.services.provision.ProvisionReport",
    "k3sops.domain.emergency.models.EmergencyReport",
])
def test_scale_provision_emergency_reports_have_a_view(name: str) -> None:
    _load_views()
    assert name in TABLES


def test_views_draw_their_reports() -> None:
    out = Console(record=True, width=200)
    table_of(HpaReport(hpas=[]))(HpaReport(hpas=[]), out)
    r = ProvisionReport(title="provision", applied=False, inventory="hosts.ini",
                        ready={"node4": True})
    table_of(r)(r, out)
    e = EmergencyReport.model_validate({"procedure": "network-lost", "target": "cluster",
                                        "started_at": "2026-01-01T00:00:00Z",
                                        "next_steps": ["look"], "runbooks": ["rb"]})
    table_of(e)(e, out)
    text = out.export_text()
    assert "no HorizontalPodAutoscalers" in text
    assert "provision: nothing to do" in text and "node node4: Ready" in text
    assert "emergency network-lost: cluster" in text and "runbooks: rb" in text
