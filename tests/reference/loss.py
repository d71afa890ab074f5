"""Float64 NumPy references for the losses and softmax, written from the math."""

from __future__ import annotations

import numpy as np


def softmax(x):
    x = np.asarray(x, np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """(mean loss, probs)."""
    x = np.asarray(logits, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    picked = x[np.arange(x.shape[0]), labels]
    return float(np.mean(lse - picked)), softmax(x)


def softmax_cross_entropy_backward(probs, labels):
    p = np.asarray(probs, np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), np.asarray(labels).astype(np.int64)] = 1.0
    return (p - onehot) / p.shape[0]


def mse_loss(pred, target):
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return float(np.mean(d * d))


def mse_loss_backward(pred, target):
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return 2.0 * d / d.size
