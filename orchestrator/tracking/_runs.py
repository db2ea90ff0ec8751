"""Reading a sweep's MLflow runs back: experiment, parent's spec, trial runs, metric histories."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from orchestrator.errors import RunError, one_line
from orchestrator.names import Tag
from orchestrator.spec import Spec

#: Runs read per MLflow search request.
SEARCH_PAGE = 1000


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run ``run_id``; a :class:`RunError` naming the tracking store if there is none.

    Raises:
        RunError: the tracking store has no such run.
    """
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise RunError(
            f"no MLflow run {run_id!r} in {client.tracking_uri} ({one_line(exc)}); "
            "pass --tracking-uri/--workspace of the sweep"
        ) from None


def experiment_id(client: MlflowClient, name: str) -> str | None:
    """The id of experiment ``name`` (a sweep's experiment is named after its study)."""
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else None


def parent_spec(client: MlflowClient, parent_run_id: str) -> Spec:
    """The effective spec a sweep ran with: the ``spec.yaml`` artifact of its parent run.

    Raises:
        RunError: the run has no readable ``spec.yaml``.
    """
    with tempfile.TemporaryDirectory(prefix="orch-spec-") as tmp, quiet_downloads():
        try:
            local = client.download_artifacts(parent_run_id, "spec.yaml", tmp)
        except (MlflowException, OSError) as exc:
            raise RunError(
                f"parent run {parent_run_id}: cannot read its spec.yaml artifact ({one_line(exc)})"
            ) from None
        data = yaml.safe_load(Path(local).read_text())
    return Spec.model_validate(data)


def running_trial_runs(
    client: MlflowClient, experiment: str, parent_run_id: str
) -> dict[int, dict[str, str]]:
    """Tags of the RUNNING child runs of a parent, by trial number (latest attempt wins)."""
    runs = client.search_runs(
        [experiment],
        filter_string=f"tags.`{Tag.PARENT_RUN_ID}` = '{parent_run_id}' "
        "and attributes.status = 'RUNNING'",
        max_results=5000,
    )
    found: dict[int, dict[str, str]] = {}
    for run in runs:
        tags = dict(run.data.tags)
        number = tags.get(Tag.TRIAL_NUMBER)
        if number is None or not number.isdigit():
            continue
        tags["run_id"] = run.info.run_id
        previous = found.get(int(number))
        if previous is None or _attempt(tags) >= _attempt(previous):
            found[int(number)] = tags
    return found


def find_trial_run(client: MlflowClient, study: str, number: int) -> str | None:
    """The run id of the latest attempt of trial ``number`` of ``study`` (from run tags)."""
    experiment = experiment_id(client, study)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment],
        filter_string=f"tags.`{Tag.STUDY_NAME}` = '{study}' "
        f"and tags.`{Tag.TRIAL_NUMBER}` = '{number}'",
        max_results=100,
    )
    latest = max(runs, key=lambda r: _attempt(r.data.tags), default=None)
    return str(latest.info.run_id) if latest is not None else None


def child_run_params(client: MlflowClient, parent_run_id: str) -> dict[str, dict[str, str]]:
    """The params of every child run of ``parent_run_id``, by run id (as MLflow stores them)."""
    experiment = get_run(client, parent_run_id).info.experiment_id
    found: dict[str, dict[str, str]] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string=f"tags.`{Tag.PARENT_RUN_ID}` = '{parent_run_id}'",
            max_results=SEARCH_PAGE,
            page_token=token,
        )
        found.update((run.info.run_id, dict(run.data.params)) for run in page)
        token = page.token
        if not token:
            return found


def metric_histories(client: MlflowClient, run: Run) -> dict[str, list[tuple[int, float]]]:
    """Every metric of ``run`` as ``(step, value)`` pairs sorted by step (last value per step)."""
    histories = {}
    for name in sorted(run.data.metrics):
        by_step: dict[int, tuple[int, float]] = {}
        for metric in client.get_metric_history(run.info.run_id, name):
            seen = by_step.get(metric.step)
            if seen is None or metric.timestamp >= seen[0]:
                by_step[metric.step] = (metric.timestamp, metric.value)
        histories[name] = [(step, value) for step, (_, value) in sorted(by_step.items())]
    return histories


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """No MLflow download progress bars on stderr (unless the user asked for them)."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if name in os.environ:
        yield
        return
    os.environ[name] = "false"
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _attempt(tags: dict[str, str]) -> int:
    value = tags.get(Tag.ATTEMPT, "0")
    return int(value) if value.isdigit() else 0
