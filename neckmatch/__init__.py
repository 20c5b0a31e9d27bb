"""neckmatch: radiology-pathology correlation of neck lymph nodes.

Data flows one way: files -> typed case (:mod:`neckmatch.io`) -> levels and specimen (:mod:`neckmatch.geometry`)
-> matches, truth tables and statistics (:mod:`neckmatch.correlation`) -> maps and plots (:mod:`neckmatch.viz`).
All geometry is patient RAS millimetres.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neckmatch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
