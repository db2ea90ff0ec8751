"""The study hub and tracker of a sweep as Ray actors on the driver's node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator._retry import STATUS_GROUP
from orchestrator.engine._lost import PROBE_GROUP

if TYPE_CHECKING:
    from orchestrator.spec import Spec


__all__ = ["start_actors"]


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
    # store_status (both actors) and the hub's liveness probe answer in threads of their own
    # while a database call or a long ask blocks the actor.
    make_remote: Any = ray.remote
    tracker = (
        make_remote(concurrency_groups={STATUS_GROUP: 1})(Tracker)
        .options(**options)
        .remote(
            tracking_uri=tracking_uri,
            experiment=spec.name,
            artifact_location=artifact_location,
            store_timeout_s=spec.store_timeout_s,
        )
    )
    hub = (
        make_remote(concurrency_groups={STATUS_GROUP: 1, PROBE_GROUP: 1})(StudyHub)
        .options(**options)
        .remote(
            spec=spec,
            spec_yaml=spec_yaml,
            storage_url=storage_url,
            tracker=tracker,
            owner=owner,
            resume=resume,
            parent_tags=parent_tags,
        )
    )
    ray.get(hub.ping.remote())  # surfaces a StudyError from the hub's constructor
    return hub, tracker
