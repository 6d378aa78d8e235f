"""Settings resolved once per command (flag > K3SOPS_* env > platform.yaml > default)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from k3sops.adapters.kube import KubeAdapter, discover_kubeconfig
from k3sops.config import Monitoring, Platform, find_platform_file, load_platform


@dataclass(frozen=True)
class Settings:
    """What a service needs to reach the platform."""

    kubeconfig: Path | None
    context: str | None
    platform: Platform | None


def resolve(kubeconfig: Path | None, context: str | None, config: Path | None,
            env: Mapping[str, str], cwd: Path) -> Settings:
    """Load platform.yaml if one is named or found, and merge it under the flags."""
    path = find_platform_file(config, env, cwd)
    platform = load_platform(path) if path is not None else None
    return Settings(kubeconfig=kubeconfig, context=context, platform=platform)


def kube(settings: Settings, env: Mapping[str, str], home: Path) -> KubeAdapter:
    """A KubeAdapter from the flags, platform.yaml and kubeconfig discovery."""
    source = discover_kubeconfig(settings.kubeconfig,
                                 settings.platform.kubeconfig if settings.platform else None,
                                 env, home)
    return KubeAdapter(source, settings.context)


def monitoring(settings: Settings) -> Monitoring:
    """platform.yaml's monitoring section, or its defaults without a platform file.

    The defaults are the conventional in-cluster Services monitoring/prometheus-server:80 and
    monitoring/alertmanager:9093, declared once in the Monitoring model.
    """
    return settings.platform.monitoring if settings.platform is not None else Monitoring()
