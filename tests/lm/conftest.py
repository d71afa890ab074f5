"""Language-model tests: the ops the GPT needs come from hipgrad.ops; tests/lm/shim.py stands in
(CPU only) for any that this build lacks."""

from tests.lm import shim

MISSING = shim.install()
