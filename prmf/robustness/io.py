"""The robustness results file: a long TSV, one value per row."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

#: columns of the TSV (and of :func:`prmf.robustness.evaluate_robustness`'s frame)
COLUMNS = ("arm", "seed", "split", "condition", "metric", "value")


def write_robustness(df, path: str | Path) -> None:
    """Write the long TSV atomically (6 significant digits; raises :class:`prmf.atomic.OutputError`)."""
    from prmf.atomic import write_text

    write_text(path, df.to_csv(sep="\t", index=False, float_format="%.6g"))


def read_robustness(paths: Sequence[str | Path]):
    """Concatenate robustness TSVs into one frame (columns :data:`COLUMNS`)."""
    import pandas as pd

    frames = [pd.read_csv(p, sep="\t", dtype={"arm": str, "split": str, "condition": str, "metric": str})
              for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
