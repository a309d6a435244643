"""Exceptions the CLI turns into one-line messages and non-zero exit codes."""
from __future__ import annotations


class PrancError(Exception):
    """Base class: anything a user can cause with bad input. Exit code 2."""

    exit_code = 2


class InputError(PrancError):
    """Missing, unreadable or unsupported input file, or a bad output path."""


class FormatError(PrancError):
    """A ``.prc`` stream that is truncated, corrupted, or not a ``.prc`` at all."""

    exit_code = 3


class LimitError(PrancError):
    """A request or header beyond the documented limits (refused before allocating)."""

    exit_code = 4
