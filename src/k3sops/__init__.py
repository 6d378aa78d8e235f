"""k3sops: day-to-day operations for K3s platforms."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("k3sops")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
