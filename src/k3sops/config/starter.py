"""The starter ``platform.yaml`` that ``k3sops init`` writes (package data: starter.yaml)."""

from __future__ import annotations

from importlib import resources

from k3sops.config.schema.fields import DNS_LABEL, DNS_LABEL_ALLOWED
from k3sops.errors import ConfigError

STARTER_TEMPLATE = resources.files("k3sops.config").joinpath("starter.yaml").read_text(
    encoding="utf-8")
"""A commented example of every section; it validates as it is."""

_STARTER_NAME = "my-platform"


def render_starter(name: str) -> str:
    """Return the starter platform.yaml with ``name`` as the platform name.

    Args:
        name: platform name, a DNS-1123 label.

    Raises:
        ConfigError: ``name`` is not a DNS-1123 label.
    """
    if len(name) > 63 or not DNS_LABEL.match(name):
        raise ConfigError(f"{name[:70]!r} is not a valid platform name",
                          hint=f"use {DNS_LABEL_ALLOWED}, e.g. my-platform")
    return STARTER_TEMPLATE.replace(_STARTER_NAME, name)
