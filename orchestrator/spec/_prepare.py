"""Checking a sweep before anything runs: the spec, its overrides, and its job's import."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.spec._load import load_spec
from orchestrator.spec._model import Spec
from orchestrator.spec._overrides import apply_overrides
from orchestrator.trial import load_job, project_root

__all__ = ["PreparedSweep", "prepare_sweep"]


@dataclass(frozen=True)
class PreparedSweep:
    """A validated spec (overrides applied) whose job imports, and the project folder it runs in."""

    spec: Spec
    project: Path
    #: The ``--set`` overrides applied (recorded on the sweep's parent run).
    overrides: tuple[str, ...] = ()


def prepare_sweep(
    spec: Spec | str | Path,
    *,
    overrides: Sequence[str] = (),
    trials: int | None = None,
    parallel: int | None = None,
) -> PreparedSweep:
    """Load and validate a spec file (or check a :class:`Spec`) with overrides; import its job.

    ``trials`` and ``parallel`` override the spec's fields of the same name. The project is
    the folder above the spec file holding ``pyproject.toml``, ``setup.py`` or ``.git`` (the
    current directory for a :class:`Spec`); the job is imported from there.

    Raises:
        SpecError: the spec, an override or the job is invalid (one line naming the field).
    """
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
    return PreparedSweep(spec=spec, project=project, overrides=tuple(overrides))
