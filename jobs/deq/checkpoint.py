"""Save a trained model with what rebuilds it; load one from a path or an MLflow URI."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["FORMAT", "load_checkpoint", "resolve_checkpoint", "save_checkpoint"]

FORMAT = "orch-deq/1"
_MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/", "file:/", "s3://", "gs://")


def save_checkpoint(path: Path, model: nn.Module, config: Any) -> Path:
    """Write ``{format, config, state_dict}`` (``config`` a dataclass of plain values)."""
    torch.save({"format": FORMAT, "config": asdict(config), "state_dict": model.state_dict()}, path)
    return path


def resolve_checkpoint(source: str, workdir: Path) -> Path:
    """A local file for ``source``: a path, or an MLflow artifact URI downloaded to ``workdir``.

    MLflow URIs (``runs:/<run_id>/model.pt``, ``models:/<name>/<version>``, ...) are resolved
    against the tracking server in ``MLFLOW_TRACKING_URI``, which orch sets for its workers.
    """
    if source.startswith(_MLFLOW_SCHEMES):
        import mlflow

        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source,
                dst_path=str(workdir),
                tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
            )
        )
        if local.is_dir():
            found = sorted(local.rglob("*.pt"))
            if not found:
                raise FileNotFoundError(f"checkpoint {source!r}: no .pt file in the artifact")
            local = found[0]
        return local
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {source!r}: no such file (give a path or runs:/<run_id>/model.pt)"
        )
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The saved dict (tensors and plain values only: loaded with ``weights_only``)."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint written by jobs.deq.train")
    return data
