"""The one root exception of orch and its user-facing subclasses."""

from __future__ import annotations


class OrchError(Exception):
    """Root of every error orch raises on purpose; its message is one line for the user."""


class SpecError(OrchError):
    """A spec file, a ``--set`` override or a job reference is invalid."""


class StudyError(OrchError):
    """A study cannot be created, loaded or resumed as asked."""


class ClusterError(OrchError):
    """Ray could not be reached or refused what was asked of it."""


class RunError(OrchError):
    """An MLflow run cannot be found, read or used as asked (compare, replay, links)."""
