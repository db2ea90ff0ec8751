"""The study hub and tracker of a sweep as Ray actors on the driver's node."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ray
import ray.exceptions as rex
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

if TYPE_CHECKING:
    from orchestrator.spec import Spec


__all__ = ["RemoteTracker", "start_actors"]


def start_actors(
    *,
    spec: Spec,
    spec_yaml: str,
    storage_url: str,
    tracking_uri: str,
    artifact_location: str | None,
    owner: Any,
    resume: bool,
    parent_tags: Mapping[str, str],
) -> tuple[Any, Any]:
    """Start the tracker and study hub actors on this driver's node; return their handles.

    Raises:
        StudyError: the hub could not open or create the study.
    """
    # Imported here: Ray workers import this package, and must not pay for Optuna and MLflow.
    from orchestrator.study import StudyHub
    from orchestrator.tracking import Tracker

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    options = {"num_cpus": 0, "scheduling_strategy": here, "max_restarts": 0}
    remote: Any = ray.remote
    tracker = (
        remote(Tracker)
        .options(**options)
        .remote(
            tracking_uri=tracking_uri, experiment=spec.name, artifact_location=artifact_location
        )
    )
    hub = (
        remote(StudyHub)
        .options(**options)
        .remote(
            spec=spec,
            spec_yaml=spec_yaml,
            storage_url=storage_url,
            tracker=RemoteTracker(tracker),
            owner=owner,
            resume=resume,
            parent_tags=parent_tags,
        )
    )
    ray.get(hub.ping.remote())  # surfaces a StudyError from the hub's constructor
    return hub, tracker


class RemoteTracker:
    """The tracker actor as the hub's TrackerPort: writes are sent without waiting."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def start_parent(self, **kwargs: Any) -> str:
        return str(ray.get(self._actor.start_parent.remote(**kwargs)))

    def close_open_children(self, reason: str) -> None:
        self._actor.close_open_children.remote(reason)

    def start_trial(self, key: str, **kwargs: Any) -> Callable[[], str]:
        ref = self._actor.start_trial.remote(key, **kwargs)

        def run_id() -> str:
            try:
                return str(ray.get(ref))
            except rex.RayError:
                return ""

        return run_id

    def log_metrics(self, *args: Any) -> None:
        self._actor.log_metrics.remote(*args)

    def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        self._actor.set_tags.remote(key, tags)

    def log_artifact(self, key: str, name: str, data: bytes) -> None:
        self._actor.log_artifact.remote(key, name, data)

    def end_trial(self, key: str, **kwargs: Any) -> None:
        self._actor.end_trial.remote(key, **kwargs)

    def end_parent(self, **kwargs: Any) -> list[str]:
        return list(ray.get(self._actor.end_parent.remote(**kwargs)))
