"""The installed neckmatch version (from the package metadata; ``pyproject.toml`` is its one source)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neckmatch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
