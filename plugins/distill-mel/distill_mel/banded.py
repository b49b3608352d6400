"""Products with a banded matrix (a mel filterbank or its transpose) as a few dense blocks, skipping the zeros.

Each triangular mel filter covers a short run of FFT bins, so a [320, 1025] filterbank is over 99% zeros; a
dense matmul spends its time multiplying them. The output columns are cut into contiguous chunks, and each
chunk multiplies only the contiguous run of input rows that is non-zero for it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MAX_CHUNKS = 8  # few products: more calls cost more than the zeros they skip, above all with threads
MIN_CHUNK = 16


class BandedMatmul(nn.Module):
    """``x @ matrix`` for x [..., Q] and a [Q, P] matrix whose non-zeros in each column form one run of rows."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        rows, cols = self.shape = tuple(matrix.shape)
        width = max(MIN_CHUNK, math.ceil(cols / MAX_CHUNKS))
        nonzero = matrix != 0
        self.spans: list[tuple[int, int, int, int]] = []  # (row_lo, row_hi, col_lo, col_hi)
        for col_lo in range(0, cols, width):
            col_hi = min(col_lo + width, cols)
            used = nonzero[:, col_lo:col_hi].any(dim=1).nonzero().flatten()
            row_lo, row_hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 0)
            self.spans.append((row_lo, row_hi, col_lo, col_hi))
        if sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in self.spans) * 2 > rows * cols:
            self.spans = [(0, rows, 0, cols)]  # not sparse enough to pay for several products
        for i, (r0, r1, c0, c1) in enumerate(self.spans):
            self.register_buffer(f"block{i}", matrix[r0:r1, c0:c1].clone(), persistent=False)

    def forward(self, x: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
        """``x @ (factor * matrix)``: the factor scales the small blocks, not x, and each block's product is
        written straight into its columns of the result. No autograd: the terms using it compute their own
        gradients."""
        rows, cols = self.shape
        flat = x.reshape(-1, rows)
        out = x.new_empty(*x.shape[:-1], cols)
        flat_out = out.view(-1, cols)
        for i, (r0, r1, c0, c1) in enumerate(self.spans):
            if r1 > r0:
                block = getattr(self, f"block{i}").to(x.dtype)
                torch.mm(flat[:, r0:r1], block * factor if factor != 1.0 else block, out=flat_out[:, c0:c1])
            else:
                flat_out[:, c0:c1].zero_()
        return out
