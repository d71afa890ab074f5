"""Float64 NumPy references of PyTorch's optimizer algorithms (torch.optim.SGD with dampening 0,
Adam, AdamW), written from their documented update rules. Each returns new arrays.

hipgrad takes the betas as float32, so adam_step uses them rounded to float32 (0.999 becomes
0.99900001287...); the bias corrections then match the averages' actual weights."""

from __future__ import annotations

import numpy as np


def sgd_step(param, grad, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """(param, buf) after one step; buf starts at zeros."""
    w = np.asarray(param, np.float64)
    g = np.asarray(grad, np.float64) + weight_decay * w
    b = None if buf is None else np.asarray(buf, np.float64)
    if momentum != 0.0:
        b = momentum * b + g
        g = g + momentum * b if nesterov else b
    return w - lr * g, b


def adam_step(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              decoupled=False):
    """(param, m, v) after step number `step` (from 1)."""
    beta1, beta2 = float(np.float32(beta1)), float(np.float32(beta2))
    w = np.asarray(param, np.float64)
    g = np.asarray(grad, np.float64)
    if decoupled:
        w = w * (1.0 - lr * weight_decay)
    else:
        g = g + weight_decay * w
    m = beta1 * np.asarray(m, np.float64) + (1.0 - beta1) * g
    v = beta2 * np.asarray(v, np.float64) + (1.0 - beta2) * g * g
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    w = w - (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + eps)
    return w, m, v
