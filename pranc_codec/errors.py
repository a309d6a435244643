"""Exceptions the CLI turns into one-line messages and non-zero exit codes."""
from __future__ import annotations

import math


class PrancError(Exception):
    """Base class: anything a user can cause with bad input. Exit code 2."""

    exit_code = 2


class InputError(PrancError):
    """Missing, unreadable or unsupported input file, or a bad output path."""


def require_positive(value: float, option: str, unit: str = "") -> None:
    """Refuse a rate or quality target that is not a finite positive number (``--bpp``, ``--psnr``); the CLI
    checks before a batch starts its children, the API for callers without the CLI."""
    if not (value > 0 and math.isfinite(value)):
        raise InputError(f"{option} must be a positive number{unit}")


class FormatError(PrancError):
    """A ``.prc`` stream that is truncated, corrupted, or not a ``.prc`` at all."""

    exit_code = 3


class LimitError(PrancError):
    """A request or header beyond the documented limits (refused before allocating)."""

    exit_code = 4
