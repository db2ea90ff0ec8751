"""The object a job receives: report metrics, store files, learn its device.

A job is a plain function ``run(params: dict, trial: Trial) -> dict[str, float]``. It knows
nothing of Ray, Optuna or MLflow; everything it sends goes through the ``Trial`` it is given.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

__all__ = [
    "ARTIFACT_PART_BYTES",
    "LocalSink",
    "Trial",
    "TrialDiverged",
    "TrialPruned",
    "TrialSink",
    "local_trial",
]

#: ``Trial.log_artifact`` sends a file in parts of this size: at most two are in memory.
ARTIFACT_PART_BYTES = 8 * 1024 * 1024


class TrialPruned(Exception):
    """Raised by :meth:`Trial.report` when the study's pruner stops this trial."""


class TrialDiverged(Exception):
    """Raise from a job when its computation diverged (NaN/inf, runaway residual).

    The trial ends PRUNED with its last reported objective value and the reason recorded, so
    the sampler ranks it below every completed trial and learns to avoid that region.
    """


class TrialSink(Protocol):
    """Where a trial's reports and files go (the sweep's study hub, or a local record)."""

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        """Record metrics at ``step``; return whether the trial should be pruned."""
        ...

    def log_artifact(self, name: str, data: bytes, *, part: int = 0, last: bool = True) -> None:
        """Store ``data`` as the artifact ``name`` of this trial's run; a large file comes as
        parts 0, 1, ... in order, the whole stored when the ``last`` arrives."""
        ...

    def set_tags(self, tags: dict[str, str]) -> None:
        """Attach string tags to this trial's run."""
        ...

    def close(self) -> None:
        """Deliver everything still in flight; called once when the job returns."""
        ...


class Trial:
    """One evaluation of a job with one parameter set."""

    def __init__(
        self,
        *,
        number: int,
        params: Mapping[str, Any],
        sink: TrialSink,
        attempt: int = 0,
        gpu_ids: tuple[str, ...] | None = None,
    ) -> None:
        self.number = number
        self.attempt = attempt
        self.params: Mapping[str, Any] = MappingProxyType(dict(params))
        self.gpu_ids: tuple[str, ...] | None = gpu_ids
        self._sink = sink
        self._last_step: int | None = None
        self._workdir: Path | None = None

    @property
    def device(self) -> torch.device:
        """The torch device this trial should use: its assigned GPU if any, else the CPU."""
        import torch

        wants_gpu = self.gpu_ids is None or len(self.gpu_ids) > 0
        return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")

    @property
    def sink(self) -> TrialSink:
        """Where this trial's reports go."""
        return self._sink

    @property
    def last_step(self) -> int | None:
        """The step of the last report, or None before the first."""
        return self._last_step

    @property
    def workdir(self) -> Path:
        """A private scratch folder for this trial, removed when the trial ends."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"orch-trial-{self.number}-"))
        return self._workdir

    def report(self, step: int, **metrics: float) -> None:
        """Log ``metrics`` at ``step``; raise :class:`TrialPruned` if the pruner says stop."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"report step must be a non-negative int, got {step!r}")
        if not metrics:
            raise ValueError("report needs at least one metric, e.g. trial.report(0, loss=1.0)")
        values = {name: _to_float(name, value) for name, value in metrics.items()}
        self._last_step = step
        if self._sink.report(step, values):
            raise TrialPruned(f"pruned at step {step}")

    def log_artifact(self, path: str | Path, *, name: str | None = None) -> None:
        """Store the file at ``path`` with the trial's run (under ``name``, default its name).

        The file is streamed in parts of :data:`ARTIFACT_PART_BYTES`, never read whole.

        Raises:
            FileNotFoundError: no file at ``path``.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"log_artifact: no file at {file}")
        with file.open("rb") as stream:
            part, data = 0, stream.read(ARTIFACT_PART_BYTES)
            while True:
                following = stream.read(ARTIFACT_PART_BYTES)
                self._sink.log_artifact(name or file.name, data, part=part, last=not following)
                if not following:
                    return
                part, data = part + 1, following

    def set_tag(self, key: str, value: object) -> None:
        """Attach a string tag to the trial's run (e.g. a dataset version)."""
        self._sink.set_tags({key: str(value)})

    def close(self) -> None:
        """Deliver pending reports and remove the scratch folder (the executor calls this)."""
        try:
            self._sink.close()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)


def _to_float(name: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"metric {name!r} must be a number, got {value!r}") from None


class LocalSink:
    """Keeps a trial's reports in memory and its artifacts in a folder; never prunes.

    Lets a job run outside a sweep (a notebook, a unit test).
    """

    def __init__(self, artifact_dir: str | Path | None = None) -> None:
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.tags: dict[str, str] = {}
        self.artifact_dir = Path(artifact_dir or tempfile.mkdtemp(prefix="orch-local-"))

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        self.reports.append((step, metrics))
        return False

    def log_artifact(self, name: str, data: bytes, *, part: int = 0, last: bool = True) -> None:
        target = self.artifact_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab" if part else "wb") as file:
            file.write(data)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def close(self) -> None:
        return None

    def history(self, metric: str) -> list[tuple[int, float]]:
        """``(step, value)`` pairs reported for ``metric``."""
        return [(step, m[metric]) for step, m in self.reports if metric in m]


def local_trial(
    params: Mapping[str, Any] | None = None,
    *,
    number: int = 0,
    artifact_dir: str | Path | None = None,
) -> Trial:
    """A :class:`Trial` for running a job by hand; ``trial.sink`` holds what it reported."""
    return Trial(number=number, params=params or {}, sink=LocalSink(artifact_dir))
