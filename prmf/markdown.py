"""Markdown tables: one renderer, one rule for bold best values, one missing-cell mark.

Every Markdown table the pipeline writes (``results/tables/*.md``,
``best_results.md``, ``robustness.md``, ``validation.md``) goes through
:func:`markdown_table`, and every number in it through :func:`format_stat`.

Rules shared by all of them:

* A missing value (no run, no label, NaN) is shown as :data:`MISSING_CELL`,
  an em dash ``—``.
* "mean ± std": ``std`` is shown only when it is finite (two or more seeds).
* Bold best values (:func:`best_rows`): in a column, every row whose value,
  rounded to the displayed precision, equals the best rounded value is bold,
  so ties at the displayed precision are all bold. Missing values never win.
  A table with a single row bolds nothing (there is nothing to compare).
* Cells are written with ``str``; a ``|`` inside a cell is escaped and a line
  break flattened to a space, so a cell never breaks the table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

#: the mark of a missing value in every table (TSV files leave the cell empty instead)
MISSING_CELL = "—"

_RULE = {"l": ":---", "r": "---:", "c": ":---:"}


def format_stat(mean: float | None, std: float | None = None, scale: float = 100.0, digits: int = 2) -> str:
    """``"75.93 ± 0.42"``: ``mean`` (and ``std`` when finite) x ``scale`` with ``digits`` decimals.

    A ``None``/NaN/infinite ``mean`` gives :data:`MISSING_CELL`; a ``None``/NaN
    ``std`` is left out (``"75.93"``).
    """
    if mean is None or not math.isfinite(mean):
        return MISSING_CELL
    text = f"{scale * mean:.{digits}f}"
    if std is not None and math.isfinite(std):
        text += f" ± {scale * std:.{digits}f}"
    return text


def best_rows(values: Sequence[float | None], digits: int, higher_is_better: bool = True) -> set[int]:
    """Rows holding the best value of a column, compared at the displayed precision.

    Args:
        values: one value per row, in the units shown (e.g. percent); ``None``
            or NaN where the row has no value.
        digits: decimals shown; values are compared after rounding to them, so
            ``75.934`` and ``75.931`` (both shown ``75.93``) tie.
        higher_is_better: ``False`` for errors (ECE, valence MSE).

    Returns:
        Indices of every row equal to the best rounded value; empty when fewer
        than two rows or no value at all.
    """
    if len(values) < 2:
        return set()
    shown = [None if v is None or not math.isfinite(v) else float(f"{v:.{digits}f}") for v in values]
    present = [v for v in shown if v is not None]
    if not present:
        return set()
    target = max(present) if higher_is_better else min(present)
    return {i for i, v in enumerate(shown) if v == target}


def bold(text: str) -> str:
    return f"**{text}**"


def bold_best(cells: Sequence[str], values: Sequence[float | None], digits: int,
              higher_is_better: bool = True) -> list[str]:
    """``cells`` of one column with the best ones (:func:`best_rows` of ``values``) in bold."""
    if len(cells) != len(values):
        raise ValueError(f"{len(cells)} cells for {len(values)} values")
    winners = best_rows(values, digits, higher_is_better)
    return [bold(cell) if i in winners else cell for i, cell in enumerate(cells)]


def escape_cell(value: object) -> str:
    """A Markdown table cell: pipes escaped, line breaks flattened."""
    return str(value).replace("|", r"\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object] | Mapping[str, object]],
                   align: Sequence[str] | None = None) -> str:
    """Render a GitHub-flavoured Markdown table.

    Args:
        columns: header cells.
        rows: each a sequence of cells in column order, or a mapping column ->
            cell (a column it lacks is :data:`MISSING_CELL`).
        align: ``"l"``, ``"r"`` or ``"c"`` per column; default: the first
            column left, the others right.

    Returns:
        The table lines joined by ``\\n``, without a trailing newline.

    Raises:
        ValueError: when ``align`` or a row does not have one entry per column.
    """
    columns = [str(c) for c in columns]
    if align is None:
        align = ["l"] + ["r"] * (len(columns) - 1)
    if len(align) != len(columns):
        raise ValueError(f"{len(align)} alignments for {len(columns)} columns")
    lines = [
        "| " + " | ".join(escape_cell(c) for c in columns) + " |",
        "|" + "|".join(_RULE[a] for a in align) + "|",
    ]
    for row in rows:
        cells = [row.get(c, MISSING_CELL) for c in columns] if isinstance(row, Mapping) else list(row)
        if len(cells) != len(columns):
            raise ValueError(f"a row of {len(cells)} cells for {len(columns)} columns: {cells!r:.200}")
        lines.append("| " + " | ".join(escape_cell(c) for c in cells) + " |")
    return "\n".join(lines)
