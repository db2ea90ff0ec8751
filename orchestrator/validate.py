"""Checking a sweep before anything runs: the spec, its overrides, and its job's import."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.jobref import load_job, project_root
from orchestrator.overrides import apply_overrides
from orchestrator.spec import Spec, load_spec

__all__ = ["prepare"]


def prepare(
    spec: Spec | str | Path,
    *,
    overrides: Sequence[str] = (),
    trials: int | None = None,
    parallel: int | None = None,
) -> tuple[Spec, Path]:
    """Load and validate a spec (with overrides) and import its job; return it and its project."""
    extra = [f"trials={trials}"] * (trials is not None) + [f"parallel={parallel}"] * (
        parallel is not None
    )
    if isinstance(spec, Spec):
        project = Path.cwd()
        data, _ = apply_overrides(spec.model_dump(mode="json"), [*overrides, *extra])
        spec = Spec.model_validate(data)
    else:
        project = project_root(spec)
        spec = load_spec(spec, overrides=[*overrides, *extra])
    load_job(spec.job, search_path=[str(project)])
    return spec, project
