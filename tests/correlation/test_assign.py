"""Bounded cost of the assignment's margins: a block larger than MAX_BLOCK is refused before any solve."""

from __future__ import annotations

import numpy as np
import pytest

from neckmatch.correlation.assign import MAX_BLOCK, assignment_margins, check_block_sizes
from neckmatch.errors import InputError


def test_blocks_up_to_the_limit_pass_larger_ones_are_refused():
    check_block_sizes(np.zeros((MAX_BLOCK - 1, 1)))
    w = np.full((MAX_BLOCK + 10, 3), -np.inf)
    w[:, 0] = 1.0  # one block of MAX_BLOCK + 11 nodes around column 0
    with pytest.raises(InputError, match=f"{MAX_BLOCK + 10} MR nodes and 1 pathology nodes compete in one block"):
        assignment_margins(w)


def test_many_small_blocks_are_fine_whatever_their_total():
    n = 3 * MAX_BLOCK
    w = np.full((n, n), -np.inf)
    w[np.arange(n), np.arange(n)] = 2.0  # n separate pairs
    partner, rows, _ = assignment_margins(w)
    assert partner.tolist() == list(range(n)) and np.allclose(rows, 2.0)
