"""The neckmatch exception family.

Every failure caused by a user's files is an :class:`InputError`: it names the file, the field and the value
received, and states the rule, so the CLI can print it as one line and exit with code 2.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NeckmatchError", "InputError", "RenderError"]


class NeckmatchError(Exception):
    """Base class of every error neckmatch raises on purpose."""


class InputError(NeckmatchError, ValueError):
    """Bad input: a file, a field in it and the offending value.

    Parameters
    ----------
    file : str or Path
        The file (or folder) the bad value came from, as the user named it.
    field : str
        Where in the file: a JSON key, ``row 12: level``, a header field, a landmark name.
    message : str
        The rule that was broken and the value received, e.g. ``"'IIc' is not a surgical level (I, IA, ...)"``.
        Always shown on one line: a line break in a value appears escaped (backslash n).

    Examples
    --------
    >>> str(InputError("P1/pathology/nodes.csv", "row 3: size_mm", "must be > 0, got -2"))
    'P1/pathology/nodes.csv: row 3: size_mm: must be > 0, got -2'
    """

    def __init__(self, file: str | Path, field: str, message: str) -> None:
        self.file = str(file)
        self.field = field
        self.message = message
        text = f"{self.file}: {field}: {message}" if field else f"{self.file}: {message}"
        super().__init__(_one_line(text))


def _one_line(text: str) -> str:
    r"""Line breaks (from a value in the file) shown escaped, so an error is always one line.

    >>> _one_line("got '0" + chr(10) + "0'")
    "got '0\\n0'"
    """
    return text.replace("\r", "\\r").replace("\n", "\\n")


class RenderError(NeckmatchError):
    """A 3-D scene could not be rendered (no usable OpenGL context, for example)."""
