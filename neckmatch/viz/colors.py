"""Colours of the maps and plots: levels, nodes by outcome or by level, containers (RGB floats in [0, 1]).

Kept apart from :mod:`neckmatch.viz.scene` so that the statistics plots can use them without importing vtk.
"""

from __future__ import annotations

import colorsys

from neckmatch.model import Level

__all__ = ["RGB", "OKABE_ITO", "LEVEL_COLORS", "OUTCOME_COLORS", "OUTCOME_LABELS", "OUTCOME_MARKERS", "ANATOMY_COLORS",
           "NODE_LEVEL_COLORS", "CONTAINER_COLOR", "SPECIMEN_COLOR"]

RGB = tuple[float, float, float]


def _hex(code: str) -> RGB:
    return tuple(int(code[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


# Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO: dict[str, str] = {
    "orange": "#e69f00", "sky_blue": "#56b4e9", "bluish_green": "#009e73", "yellow": "#f0e442",
    "blue": "#0072b2", "vermillion": "#d55e00", "reddish_purple": "#cc79a7", "black": "#000000",
}


def _tint(code: str, white: float) -> RGB:
    """``code`` mixed with ``white`` (0-1) parts of white: a light fill that keeps the hue."""
    r, g, b = _hex(code)
    return (r + (1 - r) * white, g + (1 - g) * white, b + (1 - b) * white)


# One fill per imaging level: light tints of the Okabe-Ito hues (adjacent levels never share a hue; sub-levels
# differ in hue, not only in lightness), greys for the central compartment. Readable under the nodes.
_LEVEL_TINTS: dict[str, tuple[str, float]] = {
    "IA": ("yellow", 0.35), "IB": ("orange", 0.45), "IIA": ("sky_blue", 0.45), "IIB": ("blue", 0.55),
    "III": ("bluish_green", 0.55), "IV": ("reddish_purple", 0.40), "VA": ("vermillion", 0.55),
    "VB": ("yellow", 0.60), "VI": ("black", 0.78), "VII": ("black", 0.62), "RP": ("reddish_purple", 0.70),
    "SC": ("bluish_green", 0.78),
}
LEVEL_COLORS: dict[str, RGB] = {lv.value: _tint(OKABE_ITO[_LEVEL_TINTS[lv.value][0]], _LEVEL_TINTS[lv.value][1])
                                for lv in Level}
# Saturated Okabe-Ito colours for nodes by outcome; the PNG also draws each node's outcome as a marker shape
# (OUTCOME_MARKERS), so colour is never the only cue.
OUTCOME_COLORS: dict[str, RGB] = {
    "TP": _hex(OKABE_ITO["vermillion"]),  # metastasis called malignant
    "FN": _hex(OKABE_ITO["reddish_purple"]),  # missed metastasis
    "FP": _hex(OKABE_ITO["blue"]),  # benign node called malignant
    "TN": _hex(OKABE_ITO["bluish_green"]),  # benign node called benign
    "review": _hex(OKABE_ITO["orange"]),  # a proposed match awaiting a person's decision: no outcome yet
    "unmatched": _hex("#7f7f7f"),  # no pathology reference (or no reading)
}
OUTCOME_LABELS: dict[str, str] = {
    "TP": "TP: metastasis, called malignant",
    "FN": "FN: metastasis, called benign",
    "FP": "FP: benign, called malignant",
    "TN": "TN: benign, called benign",
    "review": "to review: proposed match, undecided",
    "unmatched": "no reference (unmatched / not read)",
}
# Marker (matplotlib code, filled) per outcome: triangle = metastasis at pathology, circle = benign; filled = called
# malignant on MR, hollow = called benign; a diamond = a match still to review; a cross = no reference.
OUTCOME_MARKERS: dict[str, tuple[str, bool]] = {
    "TP": ("^", True), "FN": ("^", False), "FP": ("o", True), "TN": ("o", False), "review": ("D", False),
    "unmatched": ("x", True),
}
# Reference structures (light, so the levels stay readable through them): bone, cartilage, vessels, muscle, gland.
ANATOMY_COLORS: dict[str, RGB] = {
    "bone": _hex("#e8e2d0"), "cartilage": _hex("#cfe3ea"), "artery": _hex("#e3a0a0"), "vein": _hex("#9fb4de"),
    "muscle": _hex("#d9b3a3"), "gland": _hex("#e6cf9c"), "airway": _hex("#f4f4f4"),
}
CONTAINER_COLOR: RGB = (0.15, 0.15, 0.15)
# Specimen nodes of an ex vivo scan registered into the patient (and their lines to the paired MR node): a dark
# violet that no outcome, level or pathology marker uses.
SPECIMEN_COLOR: RGB = _hex("#5e3c99")


def _saturated(rgb: RGB) -> RGB:
    """The same hue, saturated and darker: a node's colour when nodes are coloured by level."""
    h, _s, _v = colorsys.rgb_to_hsv(*rgb)
    return colorsys.hsv_to_rgb(h, 0.85, 0.72) if _s > 0.05 else (0.42, 0.42, 0.42)


NODE_LEVEL_COLORS: dict[str, RGB] = {k: _saturated(v) for k, v in LEVEL_COLORS.items()}
