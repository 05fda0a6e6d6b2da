"""Errors of the results folder, kept apart from configuration errors.

A :class:`~stdp_bench.levels.spec.ConfigError` says the grid or an option is wrong; an
:class:`OutputError` says the results folder cannot be written (a full disk, lost
permission, a file where a folder should be): nothing the user wrote is at fault, and
rerunning after the cause is fixed resumes. The command line reports both as one line
and exits 1.
"""

from __future__ import annotations


class OutputError(Exception):
    """The results folder cannot be written; the message names it and the cause."""
