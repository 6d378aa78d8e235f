"""The ``platform.yaml`` model and its loading.

``platform.yaml`` describes the platform k3sops operates: its environments (with their
kubeconfig contexts, namespaces, promotion policy and alert thresholds), where the monitoring
stack answers, and the optional Ansible, backup and GitOps sections. It never holds secrets:
passwords live in environment variables or files that the file names.

Loading turns every problem into a :class:`~k3sops.errors.ConfigError` whose message names
``FILE:LINE: field.path: problem (allowed: ...)`` for each error, so an operator can jump to the
line. Nothing here reads the environment at import time; callers pass it in
(:func:`find_platform_file`).

The package: :mod:`~k3sops.config.schema` (the models; the only part the domain imports),
:mod:`~k3sops.config.load` (YAML reading, file choice), :mod:`~k3sops.config.issues` (error
positions and messages) and :mod:`~k3sops.config.starter` (the ``k3sops init`` template,
``starter.yaml``). This module re-exports what callers import.
"""

from k3sops.config import schema
from k3sops.config.load import find_platform_file, load_platform, parse_platform
from k3sops.config.schema import *  # noqa: F403 - every model, listed once in schema.__all__
from k3sops.config.starter import STARTER_TEMPLATE, render_starter
from k3sops.errors import ConfigIssue, PlatformConfigError  # the one error tree holds them

__all__ = [
    "STARTER_TEMPLATE",
    "ConfigIssue",
    "PlatformConfigError",
    "find_platform_file",
    "load_platform",
    "parse_platform",
    "render_starter",
]
__all__ += schema.__all__
