"""amc's Python API: compress any model with your own metric, data and training loop (see docs/python-api.md)."""

from amc.api.budget import Budget, BudgetError
from amc.api.compress import METHODS, Compressed, compress, prune
from amc.api.distillation import distill
from amc.api.environment import make_env
from amc.api.inputs import InputError
from amc.api.persist import load, save
from amc.api.profiling import Profile, profile

__all__ = [
    "METHODS",
    "Budget",
    "BudgetError",
    "Compressed",
    "InputError",
    "Profile",
    "compress",
    "distill",
    "load",
    "make_env",
    "profile",
    "prune",
    "save",
]
