"""The Optuna study of a sweep: storage, create or resume, ownership, recovery of lost trials."""

from __future__ import annotations

import os
import socket
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from orchestrator.errors import StudyError
from orchestrator.samplers import build_pruner, build_sampler
from orchestrator.spec import Spec
from orchestrator.workspace import sqlite_path

__all__ = [
    "FINISHED_STATES",
    "Owner",
    "check_study",
    "finished_count",
    "heartbeat",
    "live_driver",
    "open_storage",
    "open_study",
    "requeue",
    "trial_id_of",
]

JOURNAL_PREFIX = "journal:"
#: Trial user attrs orch writes.
INTERRUPTED_ATTR = "orch.interrupted"
REASON_ATTR = "fail_reason"
RERUN_OF_ATTR = "orch.rerun_of"
RUN_ID_ATTR = "mlflow_run_id"
#: Study user attrs orch writes.
PARENT_RUN_ATTR = "mlflow_parent_run_id"
DRIVER_ATTR_PREFIX = "orch.driver."

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: How long a driver may miss heartbeats before its RUNNING trials count as abandoned.
GRACE_S = 60.0

optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_storage(url: str, *, read_only: bool = False) -> BaseStorage:
    """An Optuna storage for ``url``: any SQLAlchemy URL, or ``journal:PATH`` for a journal file.

    ``read_only`` (for commands that only read results) never creates a file or the tables, so
    a reader cannot race a starting sweep; a missing file is a :class:`StudyError`.
    """
    try:
        if url.startswith(JOURNAL_PREFIX):
            path = Path(url[len(JOURNAL_PREFIX) :].removeprefix("//"))
            _check_exists(path, url, read_only)
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        file = sqlite_path(url)
        if file is not None:
            _check_exists(file, url, read_only)
            file.parent.mkdir(parents=True, exist_ok=True)
            return RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}},
                skip_table_creation=read_only,
            )
        return RDBStorage(url, skip_table_creation=read_only)
    except StudyError:
        raise
    except Exception as exc:
        raise StudyError(f"storage {url!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def _check_exists(path: Path, url: str, read_only: bool) -> None:
    if read_only and not path.exists():
        raise StudyError(
            f"no study storage at {path} ({url}); run a sweep first, or pass --storage or "
            "--workspace"
        )


def study_exists(storage: BaseStorage, name: str) -> bool:
    """Whether ``storage`` holds a study called ``name``."""
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def check_study(spec: Spec, storage: BaseStorage, *, resume: bool, storage_url: str) -> None:
    """Refuse what would clash: an existing study without resume, other directions, a live run.

    Run it on the driver before any actor starts, so the user gets the reason in one line.
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
    record = live_driver(existing, grace_s=GRACE_S)
    if record is not None:
        raise StudyError(
            f"study {spec.name!r} is being run by orch on {record['host']} (pid {record['pid']});"
            f" stop that sweep first, or wait {GRACE_S:.0f}s after it dies"
        )


def open_study(spec: Spec, storage: BaseStorage, *, resume: bool, storage_url: str) -> optuna.Study:
    """Create the spec's study, or load it when resuming (after :func:`check_study`)."""
    check_study(spec, storage, resume=resume, storage_url=storage_url)
    directions = [o.direction for o in spec.objectives]
    earlier = 0
    if study_exists(storage, spec.name):
        earlier = len(
            storage.get_all_trials(storage.get_study_id_from_name(spec.name), deepcopy=False)
        )
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        directions=directions,
        sampler=build_sampler(spec, resumed_after=earlier),
        pruner=build_pruner(spec),
        load_if_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.metric for o in spec.objectives])
    return study


@dataclass(frozen=True)
class Owner:
    """The orch process that runs a study's trials: recorded on each trial it starts."""

    id: str
    host: str
    pid: int

    @classmethod
    def current(cls) -> Owner:
        """A fresh owner record for this process."""
        return cls(id=uuid.uuid4().hex[:12], host=socket.gethostname(), pid=os.getpid())


def heartbeat(study: optuna.Study, owner: Owner, *, ended: bool = False) -> None:
    """Record that ``owner`` is alive (or, with ``ended``, that it stopped cleanly)."""
    record = {"host": owner.host, "pid": owner.pid, "heartbeat": time.time(), "ended": ended}
    study.set_user_attr(DRIVER_ATTR_PREFIX + owner.id, record)


def live_driver(study: optuna.Study, *, grace_s: float) -> dict[str, Any] | None:
    """The record of an orch driver still running ``study``, if any.

    A driver is gone when it ended, stopped heartbeating for ``grace_s``, or was a process of
    this host that no longer exists. One study has at most one live driver (a second is
    refused), so every RUNNING trial belongs to it, or to none when it is gone.
    """
    now = time.time()
    for key, record in study.user_attrs.items():
        if not key.startswith(DRIVER_ATTR_PREFIX) or record.get("ended"):
            continue
        if now - record.get("heartbeat", 0) > grace_s:
            continue
        if record.get("host") == socket.gethostname() and not _pid_alive(record["pid"]):
            continue
        return record
    return None


def requeue(study: optuna.Study, storage: BaseStorage, trial: FrozenTrial, reason: str) -> None:
    """End an unfinished trial as FAIL (marked interrupted) and queue its params to run again."""
    trial_id = trial_id_of(storage, study, trial.number)
    storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
    storage.set_trial_user_attr(trial_id, REASON_ATTR, reason)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial(trial.params, user_attrs={RERUN_OF_ATTR: trial.number})


def trial_id_of(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    """The storage id of trial ``number`` of ``study``."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def finished_count(study: optuna.Study) -> int:
    """Trials that ended COMPLETE, PRUNED or FAIL, not counting interrupted ones (re-run)."""
    return sum(
        1
        for trial in study.get_trials(deepcopy=False, states=FINISHED_STATES)
        if not trial.user_attrs.get(INTERRUPTED_ATTR)
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
