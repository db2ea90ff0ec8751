"""A study as tables: one typed row per trial, and its intermediate values; Parquet or CSV.

Trials table columns, in order:

- ``number`` (int64), ``state`` (string: COMPLETE, PRUNED, FAIL, RUNNING, WAITING)
- ``values_<metric>`` (float64): one per objective, null unless COMPLETE (PRUNED: last report)
- ``params_<name>``: float64, int64, bool or string by the values sampled; null where a
  conditional parameter was inactive (a categorical mixing types is a string column, non-strings
  JSON-encoded). Then the fixed params (the spec's ``fixed``), as each trial's MLflow run logged
  them, read back as Python literals (null for a trial without a run)
- ``datetime_start``, ``datetime_complete`` (timestamp[us], the study's local time)
- ``duration_s``: the trial's wall time in the study, from its start (asked) to its end (told):
  waiting for a worker, the worker's start, every attempt, reporting back
- ``job_duration_s``: the time the job function ran in its worker, last attempt (orch.duration_s)
- ``attempt`` (orch.attempts), ``node`` (orch.node_ip), ``gpu_ids`` (orch.gpu_ids, comma
  separated), ``mlflow_run_id``
- ``user_attrs_<key>``: every other trial user attribute, typed like params; lists and dicts as
  JSON

Intermediate values (what the job reported for the objective at each step) go to a second table
of ``number, step, value`` rows, written next to the first as ``<name>.intermediate.<suffix>``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from optuna.trial import FrozenTrial

from orchestrator.errors import OrchError, one_line
from orchestrator.names import StudyAttr, TrialAttr
from orchestrator.results._summary import metric_names
from orchestrator.tracking import child_run_params
from orchestrator.workspace import sqlite_path

__all__ = [
    "FORMATS",
    "export_study",
    "fixed_params",
    "intermediate_path",
    "intermediate_table",
    "trials_table",
]

#: File suffixes :func:`export_study` writes.
FORMATS = (".parquet", ".csv")
#: User attributes that have a column of their own (not repeated as ``user_attrs_<key>``).
_OWN_COLUMNS = {
    TrialAttr.RUN_ID: "mlflow_run_id",
    TrialAttr.ATTEMPTS: "attempt",
    TrialAttr.NODE_IP: "node",
    TrialAttr.GPU_IDS: "gpu_ids",
    TrialAttr.DURATION_S: "job_duration_s",
}


def fixed_params(study: optuna.Study, *, tracking_uri: str) -> dict[int, dict[str, Any]]:
    """The params each trial's MLflow run logged beyond the sampled ones, by trial number.

    These are the spec's ``fixed`` params as that trial got them (a resume may change them),
    read back from MLflow's strings as Python literals (``5``, ``0.001``, ``True``, ``[1, 2]``;
    other text stays a string). Empty when the study has no runs to read.

    Raises:
        OrchError: the tracking store could not be read.
    """
    from mlflow import MlflowClient

    parent = study.user_attrs.get(StudyAttr.PARENT_RUN_ID)
    database = sqlite_path(tracking_uri)
    if parent is None or (database is not None and not database.exists()):
        return {}
    try:
        logged = child_run_params(MlflowClient(tracking_uri), parent)
    except Exception as exc:
        raise OrchError(
            f"export: cannot read the trials' fixed params from {tracking_uri} "
            f"({one_line(exc, limit=200)}); pass the sweep's --tracking-uri"
        ) from None
    trials = study.get_trials(deepcopy=False)
    sampled = {name for t in trials for name in t.distributions}
    found = {}
    for trial in trials:
        params = logged.get(trial.user_attrs.get(TrialAttr.RUN_ID) or "")
        if params is not None:
            found[trial.number] = {k: _literal(v) for k, v in params.items() if k not in sampled}
    return found


def trials_table(
    study: optuna.Study, *, fixed: Mapping[int, Mapping[str, Any]] | None = None
) -> pa.Table:
    """One row per trial of ``study`` with typed columns (see the module docstring).

    ``fixed`` adds the fixed params (:func:`fixed_params`) as ``params_<name>`` columns.
    """
    fixed = fixed or {}
    trials = study.get_trials(deepcopy=False)
    columns: dict[str, pa.Array] = {
        "number": pa.array([t.number for t in trials], pa.int64()),
        "state": pa.array([t.state.name for t in trials], pa.string()),
    }
    for i, name in enumerate(metric_names(study)):
        columns[f"values_{name}"] = pa.array(
            [t.values[i] if t.values is not None else None for t in trials], pa.float64()
        )
    for name in _keys(t.params for t in trials):
        columns[f"params_{name}"] = typed_array([t.params.get(name) for t in trials])
    for name in _keys(fixed.values()):
        values = [fixed.get(t.number, {}).get(name) for t in trials]
        columns[f"params_{name}"] = typed_array(values)
    columns["datetime_start"] = pa.array([t.datetime_start for t in trials], pa.timestamp("us"))
    columns["datetime_complete"] = pa.array(
        [t.datetime_complete for t in trials], pa.timestamp("us")
    )
    columns["duration_s"] = pa.array(
        [t.duration.total_seconds() if t.duration else None for t in trials], pa.float64()
    )
    columns["job_duration_s"] = _attr(trials, TrialAttr.DURATION_S, pa.float64(), float)
    columns["attempt"] = _attr(trials, TrialAttr.ATTEMPTS, pa.int64(), int)
    columns["node"] = _attr(trials, TrialAttr.NODE_IP, pa.string(), str)
    columns["gpu_ids"] = _attr(trials, TrialAttr.GPU_IDS, pa.string(), str)
    columns["mlflow_run_id"] = _attr(trials, TrialAttr.RUN_ID, pa.string(), str)
    for key in _keys(t.user_attrs for t in trials):
        if key in _OWN_COLUMNS:
            continue
        columns[f"user_attrs_{key}"] = typed_array([t.user_attrs.get(key) for t in trials])
    return pa.table(columns)


def intermediate_table(study: optuna.Study) -> pa.Table:
    """The objective's reports: one ``number, step, value`` row per trial and step."""
    rows = [
        (t.number, step, value)
        for t in study.get_trials(deepcopy=False)
        for step, value in sorted(t.intermediate_values.items())
    ]
    return pa.table(
        {
            "number": pa.array([r[0] for r in rows], pa.int64()),
            "step": pa.array([r[1] for r in rows], pa.int64()),
            "value": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def intermediate_path(path: str | Path) -> Path:
    """Where the intermediate values of an export to ``path`` go: ``<stem>.intermediate<sfx>``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.intermediate{path.suffix}")


def export_study(
    study: optuna.Study, *, path: str | Path, tracking_uri: str | None = None
) -> list[Path]:
    """Write the trials table to ``path`` (.parquet or .csv) and the intermediate values beside it.

    With ``tracking_uri`` (the sweep's MLflow store) the fixed params are columns too. Returns
    the files written.

    Raises:
        OrchError: ``path`` is neither .parquet nor .csv, or the tracking store is unreadable.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise OrchError(
            f"export: cannot write {path.name!r}; name the file .parquet or .csv "
            "(the format follows the suffix)"
        )
    fixed = fixed_params(study, tracking_uri=tracking_uri) if tracking_uri else None
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for table, target in (
        (trials_table(study, fixed=fixed), path),
        (intermediate_table(study), intermediate_path(path)),
    ):
        if suffix == ".parquet":
            pq.write_table(table, target)
        else:
            pacsv.write_csv(table, target)
        written.append(target)
    return written


def typed_array(values: list[Any]) -> pa.Array:
    """The narrowest column type for ``values`` (None stays null): bool, int64, float64, string.

    Values of mixed or non-scalar types become strings; non-strings among them as JSON.
    """
    present = [v for v in values if v is not None]
    if not present:
        return pa.array(values, pa.null())
    if all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _literal(text: str) -> Any:
    """What a param's string stands for: a Python literal, or the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def _keys(mappings: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``mappings`` in first-seen order."""
    seen: dict[str, None] = {}
    for mapping in mappings:
        seen.update(dict.fromkeys(mapping))
    return list(seen)


def _attr(
    trials: list[FrozenTrial], key: str, kind: pa.DataType, cast: Callable[[Any], Any]
) -> pa.Array:
    values = [t.user_attrs.get(key) for t in trials]
    return pa.array([None if v is None else cast(v) for v in values], kind)
