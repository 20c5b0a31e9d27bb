"""The assignment solver: best partial matching of MR nodes to pathology units, and the min-marginal margins.

Given pair weights ``w`` (ndarray (n, m), log-likelihood ratios, ``-inf`` = forbidden), the best joint
assignment maximises the sum of the weights of the chosen pairs; every node not in a pair is unmatched. It is
solved exactly with :func:`scipy.optimize.linear_sum_assignment` on the square cost matrix

    [[ -w      , D_mr ],
     [ D_path  , 0    ]]     (D = diagonal 0, off-diagonal +inf)

one connected component of the candidate graph at a time. The *margin* of a decision is how much the best
assignment's total weight drops when that decision is forbidden (pair forbidden, or the node forced into some
pair); margins feed the confidence calibration (:mod:`neckmatch.correlation.calibration`).

Bounded cost: one block's margins take one solve per decision, about (n + m)^4 operations for a block of n rows
and m columns, so a block larger than :data:`MAX_BLOCK` (rows + columns; a real neck level holds tens of nodes)
is refused with :class:`~neckmatch.errors.InputError` before any solve (docs/matching.md).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from neckmatch.errors import InputError

__all__ = ["best_assignment", "best_value", "assignment_margins", "check_block_sizes", "components", "soft_marginals",
           "MAX_BLOCK"]

FloatArray = NDArray[np.float64]
_PRUNE = -40.0  # pairs weaker than this are never chosen (leaving both unmatched scores 0)
MARGIN_CAP = 50.0
MAX_BLOCK = 400  # rows + columns of one connected block (about 3 s for the margins of a dense block of 400)


def check_block_sizes(w: FloatArray) -> None:
    """:class:`InputError` when a connected block of the candidate graph of ``w`` (n, m) exceeds
    :data:`MAX_BLOCK` rows + columns (the margins' cost grows as the fourth power of a block's size).

    >>> check_block_sizes(np.zeros((3, 2)))
    >>> check_block_sizes(np.zeros((400, 1)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neckmatch.errors.InputError: case: matching: 400 MR nodes and 1 pathology nodes compete in one block; at most ...
    """
    for rows, cols in components(w):
        if len(rows) + len(cols) > MAX_BLOCK:
            raise InputError("case", "matching", f"{len(rows)} MR nodes and {len(cols)} pathology nodes compete in "
                             f"one block; at most {MAX_BLOCK} nodes per block are matched (docs/matching.md)")


def soft_marginals(w: FloatArray, n_iter: int = 30) -> FloatArray:
    """Approximate pair probabilities (n, m) of the partial assignment with weights ``w`` (log-likelihood ratios
    against both unmatched): Sinkhorn balancing of ``exp(w)`` with a slack row and column of weight 1 (each
    node is in at most one pair), as in softassign / robust point matching. The slack counts "unmatched" on both
    sides, so a lone pair gets less than its exact probability ``sigmoid(w)``; the values serve as weights.

    Examples
    --------
    >>> q = soft_marginals(np.array([[3.0, -np.inf], [-np.inf, 0.0]]))
    >>> q.round(2).tolist()
    [[0.8, 0.0], [0.0, 0.38]]
    """
    n, m = w.shape
    K = np.ones((n + 1, m + 1))
    K[:n, :m] = np.where(np.isfinite(w), np.exp(np.clip(w, -50.0, 50.0)), 0.0)
    K[n, m] = 0.0
    for _ in range(n_iter):
        K[:n] /= K[:n].sum(axis=1, keepdims=True)
        K[:, :m] /= K[:, :m].sum(axis=0, keepdims=True)
    return K[:n, :m]


def _solve(w: FloatArray, force_row: int = -1, force_col: int = -1) -> tuple[NDArray[np.int64], float]:
    """Best partial assignment of one block: partner index per row (-1 = unmatched) and its total weight.

    ``force_row`` / ``force_col`` (>= 0) forbid leaving that row / column unmatched (the caller checks that it
    has an allowed partner).
    """
    n, m = w.shape
    if n == 0 or m == 0:
        return np.full(n, -1, dtype=np.int64), 0.0
    cost = np.full((n + m, m + n), np.inf)
    cost[:n, :m] = np.where(np.isfinite(w) & (w > _PRUNE), -w, np.inf)
    cost[np.arange(n), m + np.arange(n)] = 0.0
    cost[n + np.arange(m), np.arange(m)] = 0.0
    cost[n:, m:] = 0.0
    if force_row >= 0:
        cost[force_row, m + force_row] = np.inf
    if force_col >= 0:
        cost[n + force_col, force_col] = np.inf
    rows, cols = linear_sum_assignment(cost)
    partner = np.full(n, -1, dtype=np.int64)
    real = (rows < n) & (cols < m)
    partner[rows[real]] = cols[real]
    return partner, float(np.sum(w[rows[real], cols[real]]))


def best_value(w: FloatArray) -> float:
    """Total weight of the best partial assignment of ``w`` (n, m) (one block, no component split).

    Examples
    --------
    >>> best_value(np.array([[2.0, 1.0], [1.5, -1.0]]))
    2.5
    """
    return _solve(w)[1]


def components(w: FloatArray) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Connected components (row indices, column indices) of the graph of allowed pairs (w > prune level)."""
    n, m = w.shape
    r, c = np.nonzero(np.isfinite(w) & (w > _PRUNE))
    g = coo_matrix((np.ones(len(r)), (r, n + c)), shape=(n + m, n + m))
    k, lab = connected_components(g, directed=False)
    out = []
    for t in range(k):
        idx = np.flatnonzero(lab == t)
        out.append((idx[idx < n], idx[idx >= n] - n))
    return out


def _primary_first(w: FloatArray, partner: NDArray[np.int64], owner: NDArray[np.int64] | None) -> NDArray[np.int64]:
    """A second-slot row (``owner[r] != r``) never holds a partner while its MR node's own row is unmatched:
    move that partner to the node's row (dropped if that pair is not allowed)."""
    if owner is None:
        return partner
    for r in np.flatnonzero((owner != np.arange(len(owner))) & (partner >= 0)):
        i, j = owner[r], partner[r]
        if partner[i] < 0:
            partner[i] = j if np.isfinite(w[i, j]) and w[i, j] > _PRUNE else -1
            partner[r] = -1
    return partner


def best_assignment(w: FloatArray, owner: NDArray[np.int64] | None = None) -> NDArray[np.int64]:
    """Best partial assignment: ndarray (n,), int, partner column per row, -1 for unmatched rows.

    ``owner`` (n,), int, optional: the row each row belongs to (an MR node's second slot for a merged label
    names the node's own row; ``owner[r] == r`` for the node rows).

    Examples
    --------
    >>> best_assignment(np.array([[2.0, 1.0], [1.5, -1.0]])).tolist()
    [1, 0]
    >>> best_assignment(np.array([[-0.5]])).tolist()
    [-1]
    >>> best_assignment(np.array([[-np.inf, 2.0], [1.0, 3.0]]), owner=np.array([0, 0])).tolist()
    [1, 0]
    """
    partner = np.full(w.shape[0], -1, dtype=np.int64)
    for rows, cols in components(w):
        if len(rows) and len(cols):
            p, _ = _solve(w[np.ix_(rows, cols)])
            partner[rows[p >= 0]] = cols[p[p >= 0]]
    return _primary_first(w, partner, owner)


def _block_margins(w: FloatArray, partner: NDArray[np.int64], best: float, owner: NDArray[np.int64]
                   ) -> tuple[FloatArray, FloatArray]:
    """Margins of one block's row decisions (n,) and of its unmatched columns (m,), nan for matched columns.

    ``owner`` (n,) groups the rows of one MR node (block-local indices): forbidding a pair forbids it for every
    row of the node. Unmatched second-slot rows make no decision (nan)."""
    n, m = w.shape
    row_m = np.full(n, MARGIN_CAP)
    col_m = np.full(m, np.nan)
    allowed = np.isfinite(w) & (w > _PRUNE)
    for i in range(n):
        j = partner[i]
        if j >= 0:
            alt = w.copy()
            alt[owner == owner[i], j] = -np.inf
            _, val = _solve(alt)
        elif owner[i] != i:
            row_m[i] = np.nan
            continue
        elif allowed[i].any():  # force row i into a pair: the best over its allowed partners
            _, val = _solve(w, force_row=i)
        else:
            continue
        row_m[i] = best - val
    matched_cols = set(partner[partner >= 0].tolist())
    for j in range(m):
        if j in matched_cols:
            continue
        if not allowed[:, j].any():
            col_m[j] = MARGIN_CAP
            continue
        col_m[j] = best - _solve(w, force_col=j)[1]
    return np.minimum(row_m, MARGIN_CAP), np.minimum(col_m, MARGIN_CAP)


def assignment_margins(w: FloatArray, owner: NDArray[np.int64] | None = None
                       ) -> tuple[NDArray[np.int64], FloatArray, FloatArray]:
    """Best assignment and the margin of every decision.

    Parameters
    ----------
    w : ndarray (n, m), float
        Pair weights (log-likelihood ratios, ``-inf`` = forbidden).
    owner : ndarray (n,), int, optional
        Row of the MR node each row belongs to (see :func:`best_assignment`); default every row its own.

    Returns
    -------
    partner : ndarray (n,), int
        Partner column per row, -1 for unmatched rows.
    row_margin : ndarray (n,), float
        Margin (log-likelihood units, >= 0, capped at 50) of each row's decision (its pair or being unmatched);
        nan for unmatched second-slot rows.
    col_margin : ndarray (m,), float
        Margin of each unmatched column's decision; nan for matched columns (their pair's margin is the row's).
    """
    n, m = w.shape
    check_block_sizes(w)
    owner = np.arange(n) if owner is None else np.asarray(owner, dtype=np.int64)
    partner = np.full(n, -1, dtype=np.int64)
    row_m = np.full(n, MARGIN_CAP)
    col_m = np.full(m, np.nan)
    for rows, cols in components(w):
        if len(rows) == 0 or len(cols) == 0:
            col_m[cols] = MARGIN_CAP
            continue
        block = w[np.ix_(rows, cols)]
        local = {int(r): k for k, r in enumerate(rows)}
        own = np.array([local.get(int(owner[r]), k) for k, r in enumerate(rows)], dtype=np.int64)
        p = _primary_first(block, _solve(block)[0], own)
        best = float(np.sum(block[np.flatnonzero(p >= 0), p[p >= 0]]))
        rm, cm = _block_margins(block, p, best, own)
        partner[rows[p >= 0]] = cols[p[p >= 0]]
        row_m[rows], col_m[cols] = rm, cm
    return partner, np.maximum(row_m, 0.0), np.maximum(col_m, 0.0)
