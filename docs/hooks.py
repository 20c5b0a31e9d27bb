"""MkDocs hook: every public function and class of the modules the API reference renders has a docstring.

The API pages name their modules with mkdocstrings' ``::: module`` lines; a module's public names are its
``__all__`` (else its names without a leading underscore that it defines itself). A missing docstring is logged
as a warning, which ``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.docstrings")


def _public(module: Any) -> list[tuple[str, Any]]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]  # fmt: skip
    return [(n, getattr(module, n)) for n in names if hasattr(module, n)]


def undocumented(module_name: str) -> list[str]:
    """Public functions and classes of ``module_name`` (and the module itself) without a docstring."""
    module = importlib.import_module(module_name)
    missing = [] if inspect.getdoc(module) else [module_name]
    for name, obj in _public(module):
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (obj.__doc__ or "").strip():
            missing.append(f"{module_name}.{name}")
        elif inspect.ismodule(obj) and obj.__name__.startswith("neckmatch.") and not inspect.getdoc(obj):
            missing.append(obj.__name__)
    return missing


def on_pre_build(config: Any) -> None:
    docs = Path(config["docs_dir"])
    for page in sorted((docs / "api").glob("*.md")):
        for module_name in re.findall(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), flags=re.M):
            for name in undocumented(module_name):
                log.warning("%s: %s has no docstring", page.relative_to(docs), name)
