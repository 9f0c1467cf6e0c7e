"""The root of every error a user's input can cause, here at the bottom layer so that ``models`` and
``amc`` share one hierarchy; ``amc.errors.user_errors_exit`` turns any of them into one line and exit 2."""

from __future__ import annotations


class AmcError(ValueError):
    """A problem with the user's input (config, data, model, checkpoint), not a bug."""
