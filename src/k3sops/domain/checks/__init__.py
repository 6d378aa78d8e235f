"""The checks of `k3sops check`; importing this package registers every one of them.

Every module of this package registers its checks with ``@check`` when imported; a new area
is a new module (``base`` is the registry; ``scheduling`` and ``network`` are helpers without
checks).
"""

import importlib
import pkgutil

from k3sops.domain.checks.base import MANUAL, REGISTRY, CheckContext, CheckSpec, check, selected

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["MANUAL", "REGISTRY", "CheckContext", "CheckSpec", "check", "selected"]
