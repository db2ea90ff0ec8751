"""A sweep's Optuna study: create or resume it, count its trials, re-queue interrupted ones."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from orchestrator.errors import StudyError
from orchestrator.names import TrialAttr
from orchestrator.spec import Spec
from orchestrator.study._driver import GRACE_S, live_driver
from orchestrator.study._samplers import build_pruner, build_sampler
from orchestrator.study._storage import study_exists

__all__ = [
    "FINISHED_STATES",
    "check_study",
    "count_states",
    "drop_stray",
    "finished_count",
    "is_finished",
    "open_study",
    "requeue",
    "trial_id_of",
]

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STRAY_REASON = "created twice while the database was unreachable; never ran"


def check_study(spec: Spec, storage: BaseStorage, *, resume: bool, storage_url: str) -> None:
    """Refuse what would clash: an existing study without resume, other directions, a live run.

    Run it on the driver before any actor starts, so the user gets the reason in one line.

    Raises:
        StudyError: naming the clash and what to do about it.
    """
    if not study_exists(storage, spec.name):
        return
    if not resume:
        raise StudyError(
            f"study {spec.name!r} already exists in {storage_url}; add --resume to continue "
            "it, or change `name` in the spec"
        )
    existing = optuna.load_study(study_name=spec.name, storage=storage)
    had = [d.name.lower() for d in existing.directions]
    wanted = [o.direction for o in spec.objectives]
    if had != wanted:
        raise StudyError(
            f"study {spec.name!r} optimises {had} but the spec asks {wanted}; "
            "use another `name` for a different objective"
        )
    record = live_driver(existing)
    if record is not None:
        raise StudyError(
            f"study {spec.name!r} is being run by orch on {record['host']} (pid {record['pid']});"
            f" stop that sweep first, or wait {GRACE_S:.0f}s after it dies"
        )


def open_study(spec: Spec, storage: BaseStorage, *, resume: bool, storage_url: str) -> optuna.Study:
    """Create the spec's study, or load it when resuming (after :func:`check_study`).

    Raises:
        StudyError: as :func:`check_study`.
    """
    check_study(spec, storage, resume=resume, storage_url=storage_url)
    earlier = 0
    if study_exists(storage, spec.name):
        earlier = len(
            storage.get_all_trials(storage.get_study_id_from_name(spec.name), deepcopy=False)
        )
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        directions=[o.direction for o in spec.objectives],
        sampler=build_sampler(spec, resumed_after=earlier),
        pruner=build_pruner(spec),
        load_if_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.metric for o in spec.objectives])
    return study


def requeue(study: optuna.Study, storage: BaseStorage, trial: FrozenTrial, reason: str) -> None:
    """End an unfinished trial as FAIL (marked interrupted) and queue its params to run again."""
    trial_id = trial_id_of(storage, study, trial.number)
    storage.set_trial_user_attr(trial_id, TrialAttr.INTERRUPTED, True)
    storage.set_trial_user_attr(trial_id, TrialAttr.FAIL_REASON, reason)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial(trial.params, user_attrs={TrialAttr.RERUN_OF: trial.number})


def drop_stray(study: optuna.Study, storage: BaseStorage, trial: FrozenTrial) -> None:
    """End a trial that no one runs (created twice during a database outage) without counting
    it: FAIL, marked interrupted, like a trial whose params were queued again."""
    trial_id = trial_id_of(storage, study, trial.number)
    storage.set_trial_user_attr(trial_id, TrialAttr.INTERRUPTED, True)
    storage.set_trial_user_attr(trial_id, TrialAttr.FAIL_REASON, STRAY_REASON)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)


def trial_id_of(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    """The storage id of trial ``number`` of ``study``."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def is_finished(trial: FrozenTrial) -> bool:
    """Whether ``trial`` ended (COMPLETE, PRUNED or FAIL) and is not queued to run again."""
    return trial.state in FINISHED_STATES and not trial.user_attrs.get(TrialAttr.INTERRUPTED)


def count_states(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials per state name; interrupted trials (queued to re-run) count as INTERRUPTED.

    Every :class:`~optuna.trial.TrialState` name is a key, plus ``INTERRUPTED``.
    """
    counts = {state.name: 0 for state in TrialState}
    counts["INTERRUPTED"] = 0
    for trial in trials:
        if trial.state == TrialState.FAIL and trial.user_attrs.get(TrialAttr.INTERRUPTED):
            counts["INTERRUPTED"] += 1
        else:
            counts[trial.state.name] += 1
    return counts


def finished_count(trials: Iterable[FrozenTrial]) -> int:
    """How many of ``trials`` ended, interrupted ones (queued to re-run) left out."""
    return sum(1 for trial in trials if is_finished(trial))
