"""Precision/recall curves over the Hamming radius or the rank, and their plot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PrecisionRecallCurve", "plot_precision_recall"]


@dataclass(frozen=True)
class PrecisionRecallCurve:
    """Mean precision and recall over queries at a series of thresholds.

    Attributes:
        thresholds: ``(T,)`` Hamming radii (``kind="radius"``) or ranks (``kind="rank"``).
        precision: ``(T,)`` mean precision at each threshold.
        recall: ``(T,)`` mean recall at each threshold.
        kind: ``"radius"`` or ``"rank"``.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    kind: str


def plot_precision_recall(
    curves: Mapping[str, PrecisionRecallCurve] | PrecisionRecallCurve,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Write a PNG with precision against recall, one line per curve (matplotlib, Agg backend).

    Args:
        curves: a :class:`PrecisionRecallCurve`, or a mapping from a legend label to one.
        path: the PNG file to write; its folder must exist.
        title: an optional title.

    Returns:
        the path written, as a :class:`pathlib.Path`.
    """
    if isinstance(curves, PrecisionRecallCurve):
        curves = {curves.kind: curves}
    if not isinstance(curves, Mapping) or len(curves) == 0:
        raise ValueError(
            "curves must be a PrecisionRecallCurve or a non-empty mapping of label -> "
            f"PrecisionRecallCurve; got {type(curves).__name__}"
        )
    for label, curve in curves.items():
        if not isinstance(curve, PrecisionRecallCurve):
            raise ValueError(
                f"curves[{label!r}] must be a PrecisionRecallCurve; got {type(curve).__name__}"
            )
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path must be in an existing folder; got {str(path)!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    try:
        for label, curve in curves.items():
            ax.plot(curve.recall, curve.precision, marker=".", label=f"{label}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
        if title:
            ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=120)
    finally:
        plt.close(fig)
    return path
