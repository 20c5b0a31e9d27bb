"""Colours of the maps and plots: levels, nodes by outcome or by level, containers (RGB floats in [0, 1]).

Kept apart from :mod:`neckmatch.viz.scene` so that the statistics plots can use them without importing vtk.
"""

from __future__ import annotations

import colorsys

from neckmatch.model import Level

__all__ = ["RGB", "LEVEL_COLORS", "OUTCOME_COLORS", "OUTCOME_LABELS", "NODE_LEVEL_COLORS", "CONTAINER_COLOR"]

RGB = tuple[float, float, float]


def _hex(code: str) -> RGB:
    return tuple(int(code[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


# One colour per imaging level (ColorBrewer Set3: 12 pastel colours, readable when translucent).
LEVEL_COLORS: dict[str, RGB] = {
    lv.value: _hex(c)
    for lv, c in zip(
        Level,
        ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462",
         "#b3de69", "#fccde5", "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f"),
        strict=True,
    )
}
# Saturated colours for nodes by outcome; they stay distinct from the pastel level colours.
OUTCOME_COLORS: dict[str, RGB] = {
    "TP": _hex("#c8102e"),  # metastasis called malignant
    "FN": _hex("#d400d4"),  # missed metastasis
    "FP": _hex("#1f4fd6"),  # benign node called malignant
    "TN": _hex("#1b9e3a"),  # benign node called benign
    "unmatched": _hex("#5a5a5a"),  # no pathology reference (or no reading)
}
OUTCOME_LABELS: dict[str, str] = {
    "TP": "TP: metastasis, called malignant",
    "FN": "FN: metastasis, called benign",
    "FP": "FP: benign, called malignant",
    "TN": "TN: benign, called benign",
    "unmatched": "no reference (unmatched / not read)",
}
CONTAINER_COLOR: RGB = (0.15, 0.15, 0.15)


def _saturated(rgb: RGB) -> RGB:
    """The same hue, saturated and darker: a node's colour when nodes are coloured by level."""
    h, _s, _v = colorsys.rgb_to_hsv(*rgb)
    return colorsys.hsv_to_rgb(h, 0.85, 0.72) if _s > 0.05 else (0.42, 0.42, 0.42)


NODE_LEVEL_COLORS: dict[str, RGB] = {k: _saturated(v) for k, v in LEVEL_COLORS.items()}
