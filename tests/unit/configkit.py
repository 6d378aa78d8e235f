"""platform.yaml helpers shared by the config unit tests (a kit: test modules never import
each other)."""

from __future__ import annotations

import pytest

from k3sops.config import parse_platform
from k3sops.errors import ConfigError

MINIMAL = """\
name: demo
environments:
  development:
    context: dev
"""
"""The smallest valid platform.yaml: one environment."""


def parse_error(text: str, source: str = "platform.yaml") -> ConfigError:
    """Parse ``text`` expecting a ConfigError and return it."""
    with pytest.raises(ConfigError) as info:
        parse_platform(text, source)
    return info.value
