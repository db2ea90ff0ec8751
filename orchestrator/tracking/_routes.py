"""Where MLflow runs are in its web app: page routes and run links, built without MLflow (the
driver prints them after a sweep without importing it)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import redact

__all__ = ["RunLink", "compare_route", "experiment_route", "run_route", "short_run_route"]

# Routes of MLflow 3's web app: append them to the UI's address (``http://HOST:PORT/``).


def run_route(experiment_id: str, run_id: str) -> str:
    """A run's page."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def short_run_route(run_id: str) -> str:
    """A run's page by its id alone (the UI opens it in its experiment): fits 80 columns."""
    return f"#/runs/{run_id}"


def experiment_route(experiment_id: str) -> str:
    """An experiment's runs list (the classic ML view, not the GenAI one MLflow 3 defaults to)."""
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def compare_route(experiment_ids: Sequence[str], run_ids: Sequence[str]) -> str:
    """MLflow's compare-runs page: the runs' params and metrics side by side.

    The run and experiment ids are JSON lists, as the web app writes them, percent-encoded so
    terminals see one link.
    """

    def encoded(ids: Sequence[str]) -> str:
        return urllib.parse.quote(json.dumps(list(ids), separators=(",", ":")), safe="")

    return f"#/compare-runs?runs={encoded(run_ids)}&experiments={encoded(experiment_ids)}"


@dataclass(frozen=True)
class RunLink:
    """Where to find one MLflow run: tracking URI, experiment id and run id."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    @property
    def path(self) -> str:
        """The run's route in the MLflow UI (append it to the UI's address)."""
        return run_route(self.experiment_id, self.run_id)

    @property
    def url(self) -> str | None:
        """A clickable address for an http(s) tracking server, else None (see ``orch ui``);
        a password in the server's URL is masked."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"{redact(self.tracking_uri).rstrip('/')}/{self.path}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "tracking_uri": redact(self.tracking_uri),
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
            "url": self.url,
            "path": self.path,
        }
