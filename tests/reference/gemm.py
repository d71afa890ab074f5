from __future__ import annotations

import numpy as np


def gemm(a, b, c=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    y = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    if c is not None:
        y = y + beta * np.asarray(c, np.float64)
    return y
