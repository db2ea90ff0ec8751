"""Where a study is in the MLflow UI: the UI's address, the study's runs page, compare pages.

An http(s) tracking URI is a server that serves its own UI; any other store is served by
``orch ui``, at its default address unless the user names another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator._net import LOCALHOST, without_credentials
from orchestrator.results._ui import DEFAULT_UI_PORT, is_server
from orchestrator.tracking import compare_route, experiment_route, short_run_route

__all__ = ["MlflowUi", "experiment_urls", "mlflow_ui"]


@dataclass(frozen=True)
class MlflowUi:
    """The MLflow UI links point at: its address, and who serves it."""

    url: str
    #: ``tracking server`` (the tracking URI itself), ``orch ui``, or ``given`` (``--ui-url``).
    served_by: str

    def page(self, route: str) -> str:
        """The address of a route of the UI (``#/experiments/…``)."""
        return f"{self.url}/{route}"

    def run(self, run_id: str) -> str:
        """A run's page."""
        return self.page(short_run_route(run_id))

    def compare(self, experiment_ids: Sequence[str], run_ids: Sequence[str]) -> str:
        """The compare-runs page of ``run_ids``: their params and metrics side by side."""
        return self.page(compare_route(experiment_ids, run_ids))


def mlflow_ui(tracking_uri: str, ui_url: str | None = None) -> MlflowUi:
    """The UI for ``tracking_uri``: ``ui_url`` if given, the server, else ``orch ui``'s default."""
    if ui_url:
        return MlflowUi(ui_url.rstrip("/"), "given")
    if is_server(tracking_uri):
        return MlflowUi(without_credentials(tracking_uri).rstrip("/"), "tracking server")
    return MlflowUi(f"http://{LOCALHOST}:{DEFAULT_UI_PORT}", "orch ui")


def experiment_urls(
    base_url: str, tracking_uri: str, *, study: str | None = None, limit: int = 20
) -> dict[str, str]:
    """The runs page of experiment ``study``, or of each active one (newest first, ``limit``).

    An unknown ``study`` gives an empty dict.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    if study is not None:
        found = client.get_experiment_by_name(study)
        experiments = [found] if found is not None and found.lifecycle_stage == "active" else []
    else:
        experiments = client.search_experiments(max_results=limit, order_by=["creation_time DESC"])
    return {
        e.name: f"{base_url}/{experiment_route(e.experiment_id)}"
        for e in experiments
        if e.name != "Default"
    }
