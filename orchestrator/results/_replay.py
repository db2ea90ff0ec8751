"""Re-running one trial exactly: its params (typed), its spec's fixed values, its code version.

The replay runs in this process through the spec's job, logs a new MLflow run in the sweep's
experiment tagged ``orch.replay_of=<run id>``, and measures how far its metrics land from the
original's. Seeds are params like any other (``fixed.seed`` or a sampled one), so they replay too.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities import Run as MlflowRun
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

from orchestrator.errors import OrchError, RunError, StudyError
from orchestrator.names import Tag
from orchestrator.provenance import git_state
from orchestrator.results._summary import load_study
from orchestrator.spec import Spec
from orchestrator.study import open_storage, study_exists
from orchestrator.tracking import RUN_STATUS, ArtifactSpool, RunLink, get_run, parent_spec
from orchestrator.trial import Trial, call_job, load_job, project_root

__all__ = [
    "REPLAY_TAG",
    "CodeMismatch",
    "MetricDiff",
    "MlflowSink",
    "ReplayResult",
    "recover_params",
    "replay",
]

#: Tag of a replay run: the id of the run it replays.
REPLAY_TAG = Tag.REPLAY_OF


class CodeMismatch(OrchError):
    """The project's code is not the commit the sweep recorded (replay refuses without force)."""


@dataclass(frozen=True)
class MetricDiff:
    """One final metric of the original run and of its replay."""

    name: str
    original: float | None
    replay: float | None

    @property
    def abs_diff(self) -> float | None:
        """``|replay - original|`` (None when either is missing)."""
        if self.original is None or self.replay is None:
            return None
        return abs(self.replay - self.original)

    @property
    def rel_diff(self) -> float | None:
        """``abs_diff / |original|``; 0 for two zeros, None when undefined."""
        diff = self.abs_diff
        if diff is None or self.original is None:
            return None
        if self.original == 0:
            return 0.0 if diff == 0 else None
        return diff / abs(self.original)


@dataclass
class ReplayResult:
    """What a replay did: its run, its outcome, and the distance to the original."""

    original_run_id: str
    run_id: str
    study: str | None
    trial_number: int | None
    state: str
    reason: str | None
    params: dict[str, Any]
    link: RunLink
    diffs: list[MetricDiff] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``orch replay --json`` prints)."""
        data = asdict(self)
        data["link"] = self.link.to_dict()
        data["diffs"] = [
            {**asdict(d), "abs_diff": d.abs_diff, "rel_diff": d.rel_diff} for d in self.diffs
        ]
        return data


class MlflowSink:
    """A :class:`~orchestrator.trial.TrialSink` writing straight to one MLflow run; never prunes."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.last_step: int | None = None
        self._spool = ArtifactSpool()

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=entries, synchronous=True)
        self.last_step = step if self.last_step is None else max(step, self.last_step)
        return False

    def log_artifact(self, name: str, data: bytes, *, part: int = 0, last: bool = True) -> None:
        self._spool.add(self.client, self.run_id, name, data, part=part, last=last)

    def set_tags(self, tags: dict[str, str]) -> None:
        entries = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=entries, synchronous=True)

    def close(self) -> None:
        return None


def replay(
    run_id: str,
    *,
    tracking_uri: str,
    storage_url: str | None = None,
    project: str | Path | None = None,
    force: bool = False,
) -> ReplayResult:
    """Re-run the trial of MLflow run ``run_id`` in this process and compare its metrics.

    ``project`` is the folder whose code runs (default: the project around the current
    directory); its git commit must be the one the sweep recorded unless ``force``.

    Raises:
        RunError: ``run_id`` is not a trial's run, or its params do not match its spec.
        CodeMismatch: the project is not at the sweep's commit (and not ``force``).
        SpecError: the spec's job no longer imports.
    """
    client = MlflowClient(tracking_uri)
    original = get_run(client, run_id)
    tags = original.data.tags
    parent_id = tags.get(Tag.PARENT_RUN_ID)
    if not parent_id:
        raise RunError(
            f"run {run_id} is not a trial's run (it has no parent); replay takes a trial run id, "
            "e.g. from `orch best STUDY`"
        )
    parent = get_run(client, parent_id)
    spec = parent_spec(client, parent_id)
    # project_root() looks upward from a spec file's folder: start in the current directory.
    folder = Path(project).resolve() if project else project_root(Path.cwd() / "spec.yaml")
    warnings = check_code(parent, project=folder, force=force)
    number = _int(tags.get(Tag.TRIAL_NUMBER))
    study_name = tags.get(Tag.STUDY_NAME, spec.name)
    sampled = _study_params(study_name, number, storage_url) if number is not None else None
    params = recover_params(original, spec, sampled=sampled)
    job = load_job(spec.job, search_path=[str(folder)])

    commit, dirty = git_state(folder)
    run = client.create_run(
        original.info.experiment_id,
        run_name=f"replay-trial-{number}" if number is not None else f"replay-{run_id[:8]}",
        tags={
            Tag.REPLAY_OF: run_id,
            Tag.REPLAY_OF_PARENT: parent_id,
            Tag.JOB: spec.job,
            Tag.PROJECT: str(folder),
            **{k: tags[k] for k in (Tag.STUDY_NAME, Tag.TRIAL_NUMBER) if k in tags},
            **({Tag.GIT_COMMIT: commit, Tag.SOURCE_GIT_COMMIT: commit} if commit else {}),
            Tag.GIT_DIRTY: str(dirty).lower(),
        },
    )
    new_id = run.info.run_id
    _log_params(client, new_id, params)
    sink = MlflowSink(client, new_id)
    trial = Trial(number=number or 0, params=params, sink=sink, attempt=0)
    try:
        outcome = call_job(job, trial, [o.metric for o in spec.objectives])
    except BaseException:
        client.set_terminated(new_id, "KILLED")
        raise
    finally:
        trial.close()
    final = [
        Metric(k, v, int(time.time() * 1000), sink.last_step or 0)
        for k, v in outcome.metrics.items()
        if math.isfinite(v)
    ]
    end_tags = [RunTag(Tag.STATE, outcome.state)]
    if outcome.reason:
        end_tags.append(RunTag(Tag.FAIL_REASON, outcome.reason[:5000]))
    client.log_batch(new_id, metrics=final, tags=end_tags, synchronous=True)
    client.set_terminated(new_id, RUN_STATUS[outcome.state])

    replayed = client.get_run(new_id).data.metrics
    names = sorted(set(original.data.metrics) | set(replayed))
    return ReplayResult(
        original_run_id=run_id,
        run_id=new_id,
        study=study_name,
        trial_number=number,
        state=outcome.state,
        reason=outcome.reason,
        params=params,
        link=RunLink(tracking_uri, original.info.experiment_id, new_id),
        diffs=[MetricDiff(n, original.data.metrics.get(n), replayed.get(n)) for n in names],
        warnings=warnings,
    )


def check_code(parent: MlflowRun, *, project: Path, force: bool) -> list[str]:
    """Compare the sweep's recorded commit with ``project``'s; raise or (``force``) warn."""
    recorded = parent.data.tags.get(Tag.GIT_COMMIT)
    current, dirty = git_state(project)
    problem = None
    if recorded is None:
        problem = "the sweep recorded no git commit, so its code version cannot be checked"
    elif current is None:
        problem = (
            f"{project} is not a git checkout, so it cannot be checked against {recorded[:12]}"
        )
    elif current != recorded:
        problem = (
            f"the sweep ran commit {recorded[:12]} but {project} is at {current[:12]}; "
            f"`git checkout {recorded[:12]}` first"
        )
    warnings = []
    if problem and not force:
        raise CodeMismatch(f"replay: {problem} (or add --force to replay anyway)")
    if problem:
        warnings.append(f"replaying anyway (--force): {problem}")
    if parent.data.tags.get(Tag.GIT_DIRTY) == "true":
        warnings.append(
            "the sweep ran with uncommitted changes (see the parent run's code/git.diff)"
        )
    if dirty:
        warnings.append(f"{project} has uncommitted changes")
    return warnings


def recover_params(
    run: MlflowRun, spec: Spec, *, sampled: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The trial's typed params: ``spec.fixed`` plus the sampled values, checked against the run.

    ``sampled`` comes from the Optuna trial when its study is at hand; otherwise each logged
    string is read back with its type from ``spec.space``.

    Raises:
        RunError: a logged param is not in the spec, or differs from the study's value.
    """
    logged = dict(run.data.params)
    if sampled is None:
        sampled = {name: _parse(name, logged[name], spec) for name in spec.space if name in logged}
    params = {**spec.fixed, **sampled}
    for name, text in logged.items():
        if name not in params:
            raise RunError(f"replay: param {name!r}={text!r} of the run is not in its sweep's spec")
        if str(params[name])[:MAX_PARAM_VAL_LENGTH] != text:
            raise RunError(
                f"replay: param {name!r} was logged as {text!r} but the study/spec gives "
                f"{params[name]!r}; pass the sweep's --storage"
            )
    return params


def _study_params(study_name: str, number: int, storage_url: str | None) -> dict[str, Any] | None:
    """The sampled params of trial ``number`` from the study, if the storage holds it."""
    if storage_url is None:
        return None
    try:
        storage = open_storage(storage_url, read_only=True)
    except StudyError:
        return None  # not at hand: the spec's space types the logged strings instead
    if not study_exists(storage, study_name):
        return None
    study = load_study(storage, study_name, storage_url=storage_url)
    for trial in study.get_trials(deepcopy=False):
        if trial.number == number:
            return dict(trial.params)
    return None


def _parse(name: str, text: str, spec: Spec) -> Any:
    param = spec.space[name]
    if param.type == "int":
        return int(text)
    if param.type == "float":
        return float(text)
    for choice in param.choices:
        if str(choice) == text:
            return choice
    raise RunError(f"replay: param {name!r}={text!r} is not one of its choices {param.choices}")


def _log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    entries = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
    for i in range(0, len(entries), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(
            run_id, params=entries[i : i + MAX_PARAMS_TAGS_PER_BATCH], synchronous=True
        )


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None
