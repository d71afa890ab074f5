"""Layers with explicit forward/backward, PyTorch-compatible state_dicts, and losses."""

from __future__ import annotations

from . import init
from .activation import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .container import Identity, Residual, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import LoadResult, Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, Flatten, MaxPool2d
from .transformer import MLP, Block, CausalSelfAttention, LayerNorm

__all__ = [
    "MLP",
    "Block",
    "CausalSelfAttention",
    "LayerNorm",
    "ELU",
    "GELU",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LoadResult",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "init",
]
