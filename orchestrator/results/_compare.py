"""Comparing trial runs: the params that differ, final metrics side by side, metric curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from orchestrator.errors import RunError
from orchestrator.names import Tag, TrialAttr
from orchestrator.results._summary import read_study
from orchestrator.tracking import find_trial_run, get_run, metric_histories

__all__ = ["Compared", "Comparison", "compare_runs", "plot_curves", "resolve_ref"]


@dataclass(frozen=True)
class Compared:
    """One compared run and how the user named it."""

    ref: str
    run_id: str
    label: str
    status: str


@dataclass
class Comparison:
    """Runs side by side: ``differing`` and ``metrics`` hold one entry per run, in order."""

    runs: list[Compared]
    differing: dict[str, list[str | None]] = field(default_factory=dict)
    same: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    histories: dict[str, list[list[tuple[int, float]]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (curves left out)."""
        return {
            "runs": [vars(r) for r in self.runs],
            "differing_params": self.differing,
            "same_params": self.same,
            "metrics": self.metrics,
        }


def resolve_ref(ref: str, *, client: MlflowClient, storage_url: str | None) -> str:
    """The run id of ``ref``: an MLflow run id, or ``STUDY:NUMBER`` for a trial's latest run."""
    if ":" not in ref:
        return str(get_run(client, ref).info.run_id)
    study_name, _, number_text = ref.rpartition(":")
    if not number_text.isdigit():
        raise RunError(f"{ref!r}: a trial is named STUDY:NUMBER, e.g. quadratic:3")
    number = int(number_text)
    run_id = None
    if storage_url is not None:
        study = read_study(storage_url, study_name)
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not trials:
            raise RunError(f"{ref!r}: study {study_name!r} has no trial {number}")
        run_id = trials[0].user_attrs.get(TrialAttr.RUN_ID)
    run_id = run_id or find_trial_run(client, study_name, number)
    if run_id is None:
        raise RunError(f"{ref!r}: no MLflow run for trial {number} in {client.tracking_uri}")
    return run_id


def compare_runs(
    refs: list[str], *, tracking_uri: str, storage_url: str | None = None
) -> Comparison:
    """Compare the runs ``refs`` name (run ids or ``STUDY:NUMBER``); histories included.

    Raises:
        RunError: fewer than two refs, or a ref names no run or trial.
    """
    if len(refs) < 2:
        raise RunError(f"compare needs at least two runs or trials, got {len(refs)}")
    client = MlflowClient(tracking_uri)
    runs = [get_run(client, resolve_ref(r, client=client, storage_url=storage_url)) for r in refs]
    found = Comparison(
        runs=[
            Compared(
                ref=ref, run_id=run.info.run_id, label=_label(ref, run), status=run.info.status
            )
            for ref, run in zip(refs, runs, strict=True)
        ]
    )
    names = sorted({name for run in runs for name in run.data.params})
    for name in names:
        values = [run.data.params.get(name) for run in runs]
        if len(set(values)) > 1:
            found.differing[name] = values
        else:
            found.same[name] = values[0] or ""
    for name in sorted({name for run in runs for name in run.data.metrics}):
        found.metrics[name] = [run.data.metrics.get(name) for run in runs]
    histories = [metric_histories(client, run) for run in runs]
    for name in found.metrics:
        curves = [h.get(name, []) for h in histories]
        if any(len(curve) > 1 for curve in curves):
            found.histories[name] = curves
    return found


def plot_curves(comparison: Comparison, *, path: str | Path) -> Path:
    """Draw every metric logged at more than one step, one panel each, into one PNG.

    Raises:
        RunError: no metric was logged at more than one step.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not comparison.histories:
        raise RunError("compare --plot: no metric of these runs was logged at more than one step")
    names = list(comparison.histories)
    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    figure = Figure(figsize=(5 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for i, name in enumerate(names):
        axes = figure.add_subplot(rows, cols, i + 1)
        for run, curve in zip(comparison.runs, comparison.histories[name], strict=True):
            if curve:
                steps, values = zip(*curve, strict=True)
                axes.plot(steps, values, marker="." if len(curve) < 30 else None, label=run.label)
        axes.set_title(name)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
    figure.axes[0].legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, format="png")
    return path


def _label(ref: str, run: Any) -> str:
    tags = run.data.tags
    study, number = tags.get(Tag.STUDY_NAME), tags.get(Tag.TRIAL_NUMBER)
    if study and number:
        attempt = tags.get(Tag.ATTEMPT, "0")
        label = f"{study}:{number}" + (f" (attempt {attempt})" if attempt != "0" else "")
        return label + (" replay" if tags.get(Tag.REPLAY_OF) else "")
    return run.info.run_name or ref
