"""Kubeconfig discovery and loading, and the authenticated HTTP client built from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2
from lightkube.config.client_adapter import Client as _authenticated_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from k3sops.errors import ConfigError

K3S_KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class KubeconfigSource:
    """Where the kubeconfig was found, for messages (``path`` is None for in-cluster)."""

    path: Path | None
    origin: str


def discover_kubeconfig(explicit: Path | None, platform_kubeconfig: Path | None,
                        env: Mapping[str, str], home: Path, *,
                        k3s_kubeconfig: Path = K3S_KUBECONFIG,
                        service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeconfigSource:
    """Find the kubeconfig to use, in the documented order (the package docstring).

    Args:
        explicit: ``--kubeconfig`` (the CLI folds ``K3SOPS_KUBECONFIG`` into it).
        platform_kubeconfig: ``kubeconfig:`` of platform.yaml.
        env: the environment (``$KUBECONFIG``).
        home: the user's home (``~/.kube/config``).
        k3s_kubeconfig: where K3s writes its admin kubeconfig (a parameter so tests can move it).
        service_account_dir: the in-cluster service account's directory (likewise).

    Raises:
        ConfigError: an explicitly named file does not exist, or nothing was found.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"kubeconfig {explicit} (from --kubeconfig) does not exist",
                              hint="pass an existing file, or drop the flag to use discovery")
        return KubeconfigSource(explicit, "--kubeconfig")
    if platform_kubeconfig is not None:
        if not platform_kubeconfig.is_file():
            raise ConfigError(f"kubeconfig {platform_kubeconfig} (from platform.yaml) "
                              "does not exist",
                              hint="fix `kubeconfig:` in platform.yaml or pass --kubeconfig")
        return KubeconfigSource(platform_kubeconfig, "platform.yaml")
    for item in env.get("KUBECONFIG", "").split(":"):
        if item and Path(item).expanduser().is_file():
            return KubeconfigSource(Path(item).expanduser(), "$KUBECONFIG")
    for candidate, origin in ((home / ".kube" / "config", "~/.kube/config"),
                              (k3s_kubeconfig, "K3s default")):
        if candidate.is_file():
            return KubeconfigSource(candidate, origin)
    if (service_account_dir / "token").is_file():
        return KubeconfigSource(None, "in-cluster service account")
    raise ConfigError(
        "no kubeconfig found (looked at --kubeconfig, platform.yaml, $KUBECONFIG, "
        f"~/.kube/config, {k3s_kubeconfig}, in-cluster)",
        hint="pass --kubeconfig FILE, or for the local lab: k3sops lab up",
    )


def load_single(source: KubeconfigSource, context: str | None) -> SingleConfig:
    """The cluster, user and namespace of ``context`` (the current one when None).

    Raises:
        ConfigError: unreadable kubeconfig, unknown context, no current context.
    """
    try:
        kc = (KubeConfig.from_service_account() if source.path is None
              else KubeConfig.from_file(source.path))
    except (LightkubeConfigError, OSError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"cannot read kubeconfig {source.path} ({source.origin}): "
                          f"{type(e).__name__}",
                          hint="check that it is a valid kubeconfig (kubectl config view)") from e
    if context is not None and context not in kc.contexts:
        known = ", ".join(sorted(kc.contexts)) or "none"
        raise ConfigError(f"context {context!r} is not in kubeconfig {source.path}",
                          hint=f"contexts there: {known}")
    single = kc.get(context)
    if single is None:
        raise ConfigError(f"kubeconfig {source.path} has no current context",
                          hint="pass --context NAME")
    return single


def http_client(single: SingleConfig, source: KubeconfigSource, timeout: float,
                transport: httpx2.BaseTransport | None = None) -> httpx2.Client:
    """An httpx2 client with the context's server, TLS and credentials.

    ``transport`` replaces the network (tests replay recorded API server answers through it).

    Raises:
        ConfigError: the certificate or key data cannot be used.
    """
    try:
        client = _authenticated_client(single, ConnectionParams(timeout=httpx2.Timeout(timeout),
                                                                transport=transport))
    except (LightkubeConfigError, OSError, ValueError) as e:
        raise ConfigError(f"cannot use kubeconfig {source.path}: {type(e).__name__}: "
                          "bad certificate or key data",
                          hint="check the cluster and user entries") from e
    # The API server's audit log and metrics name the client by its user agent (no version:
    # reading the package metadata costs every command ~35 ms).
    client.headers["User-Agent"] = "k3sops"
    return client
