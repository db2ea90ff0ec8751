"""A study's report: Optuna's plots as PNG and interactive HTML, and an ``index.html`` summary.

Layout of a report folder::

    index.html              summary, best trials, every plot interactive (plotly, its script
                            embedded once: self-contained, works offline, no CDN)
    plots/<name>.png        matplotlib (optuna.visualization.matplotlib)

Plots: optimisation history, parameter importances, parallel coordinates, slices, intermediate
values (single objective) and the Pareto front (2 or 3 objectives). A plot the study cannot
support yet (too few complete trials or parameters) is skipped with its reason in the index.
"""

from __future__ import annotations

import html
import logging
import multiprocessing
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from orchestrator.errors import one_line
from orchestrator.results._summary import (
    best_summary,
    metric_names,
    state_counts,
    study_summary,
)

__all__ = ["REPORT_ARTIFACT_PATH", "build_report", "log_report"]

logger = logging.getLogger(__name__)

#: Where :func:`log_report` puts the report among the parent run's artifacts.
REPORT_ARTIFACT_PATH = "report"


@dataclass
class _Plot:
    """One plot to draw: the optuna.visualization function name and its arguments."""

    name: str
    title: str
    function: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None
    fragment: str = ""
    files: list[Path] = field(default_factory=list)


def build_report(
    study: optuna.Study,
    out_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    experiment_id: str | None = None,
    processes: int = 1,
) -> list[Path]:
    """Write the plots and ``index.html`` of ``study`` into ``out_dir``; return the files.

    With ``tracking_uri`` the best-trials table links each trial's MLflow run (in the study's
    experiment ``experiment_id``, looked up when not given). ``processes`` > 1 draws that many
    plots at once in forked processes: only for a process without threads of its own (the
    report's process of ``orch sweep``).
    """
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    plots = _plan(study)
    _draw_all(study, [plot for plot in plots if plot.skip is None], out / "plots", processes)
    index = out / "index.html"
    page = _index(study, plots, tracking_uri=tracking_uri, experiment_id=experiment_id)
    index.write_text(page, encoding="utf-8")
    return [index, *(f for plot in plots for f in plot.files)]


def log_report(
    study: optuna.Study,
    *,
    tracking_uri: str,
    parent_run_id: str,
    experiment_id: str | None = None,
    artifact_uri: str | None = None,
    processes: int = 1,
) -> list[str]:
    """Build the report and store it under ``report/`` on the sweep's parent run.

    MLflow accepts artifacts on a finished run, so this may run after the sweep closed it.
    ``experiment_id`` (the study's experiment) and ``artifact_uri`` (the parent run's), when
    known, spare reading them from the tracking store; with both, and artifacts stored on this
    machine, MLflow is not imported at all. ``processes``: see :func:`build_report`. Returns the
    artifact paths written.
    """
    from orchestrator.tracking import log_folder

    with tempfile.TemporaryDirectory(prefix="orch-report-") as tmp:
        files = build_report(
            study,
            tmp,
            tracking_uri=tracking_uri,
            experiment_id=experiment_id,
            processes=processes,
        )
        log_folder(
            tracking_uri, parent_run_id, Path(tmp), REPORT_ARTIFACT_PATH, artifact_uri=artifact_uri
        )
        return [f"{REPORT_ARTIFACT_PATH}/{f.relative_to(tmp).as_posix()}" for f in files]


def _plan(study: optuna.Study) -> list[_Plot]:
    """The plots that fit ``study``, each with the reason it is skipped, if it is."""
    metrics = metric_names(study)
    multi = len(metrics) > 1
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = {name for trial in complete for name in trial.params}
    none_yet = None if complete else "no complete trial yet"
    targets: list[tuple[str, dict[str, Any]]]
    if multi:
        targets = [
            (f"_{name}", {"target": _objective(i), "target_name": name})
            for i, name in enumerate(metrics)
        ]
    else:
        targets = [("", {"target_name": metrics[0]})]
    plots = [
        _Plot(
            f"history{sfx}",
            f"Optimisation history: {kw['target_name']}",
            "plot_optimization_history",
            kw,
            none_yet,
        )
        for sfx, kw in targets
    ]
    too_few = (
        "needs at least 2 complete trials"
        if len(complete) < 2
        else "needs at least 2 parameters"
        if len(params) < 2
        else None
    )
    plots.append(
        _Plot(
            "importances",
            "Parameter importances",
            "plot_param_importances",
            {} if multi else {"target_name": metrics[0]},
            too_few,
        )
    )
    no_params = none_yet or (None if params else "the study has no parameters")
    plots.append(
        _Plot(
            "parallel_coordinate",
            "Parallel coordinates",
            "plot_parallel_coordinate",
            {} if multi else {"target_name": metrics[0]},
            no_params,
        )
    )
    plots += [
        _Plot(f"slice{sfx}", f"Slices: {kw['target_name']}", "plot_slice", kw, no_params)
        for sfx, kw in targets
    ]
    if not multi:
        reported = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
        plots.append(
            _Plot(
                "intermediate_values",
                "Intermediate values",
                "plot_intermediate_values",
                {},
                None if reported else "no trial reported intermediate values",
            )
        )
    else:
        front = none_yet or (None if len(metrics) <= 3 else "needs 2 or 3 objectives")
        plots.append(
            _Plot(
                "pareto_front",
                "Pareto front",
                "plot_pareto_front",
                {"target_names": metrics},
                front,
            )
        )
    return plots


def _draw_all(study: optuna.Study, plots: list[_Plot], folder: Path, processes: int) -> None:
    """Draw ``plots`` (see :func:`_draw`), ``processes`` at a time."""
    if processes > 1 and len(plots) > 1:
        try:
            _draw_forked(study, plots, folder, processes)
            return
        except Exception as exc:  # e.g. no fork here, or a drawing process died
            logger.warning("report plots drawn one by one: %s", one_line(exc, with_type=True))
    for plot in plots:
        _draw_or_skip(study, plot, folder)


#: What the forked drawing processes draw from: a study in memory, the plots and their folder.
_FORKED: tuple[optuna.Study, list[_Plot], Path] | None = None


def _draw_forked(study: optuna.Study, plots: list[_Plot], folder: Path, processes: int) -> None:
    """Draw ``plots`` in forked processes, from a copy of ``study`` in memory: its database
    connections stay with this process."""
    global _FORKED
    _FORKED = (_in_memory(study), plots, folder)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(processes, len(plots)), mp_context=context) as pool:
            drawn = list(pool.map(_draw_in_child, range(len(plots))))
    finally:
        _FORKED = None
    for plot, (fragment, files, skip) in zip(plots, drawn, strict=True):
        plot.fragment, plot.files, plot.skip = fragment, files, skip


def _draw_in_child(index: int) -> tuple[str, list[Path], str | None]:
    """Draw plot ``index`` of :data:`_FORKED` (in a forked process); return what it made."""
    assert _FORKED is not None
    study, plots, folder = _FORKED
    plot = plots[index]
    _draw_or_skip(study, plot, folder)
    return plot.fragment, plot.files, plot.skip


def _in_memory(study: optuna.Study) -> optuna.Study:
    """A copy of ``study``'s trials, directions and metric names in Optuna's in-memory storage."""
    copy = optuna.create_study(study_name=study.study_name, directions=study.directions)
    copy.add_trials(study.get_trials(deepcopy=False))
    if study.metric_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental API
            copy.set_metric_names(study.metric_names)
    return copy


def _draw_or_skip(study: optuna.Study, plot: _Plot, folder: Path) -> None:
    """Draw ``plot``; one that fails is skipped with the reason (it must not cost the others)."""
    try:
        _draw(study, plot, folder)
    except Exception as exc:
        logger.warning("report plot %s failed: %s", plot.name, exc)
        plot.skip = f"failed: {one_line(exc, with_type=True)}"


def _draw(study: optuna.Study, plot: _Plot, folder: Path) -> None:
    """Save ``plot`` as PNG and keep its interactive HTML fragment for the index."""
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna.visualization as interactive
    import optuna.visualization.matplotlib as static

    png = folder / f"{plot.name}.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API and few-trials notes: not news here
        with matplotlib.rc_context():  # Optuna's plots switch the global style to ggplot
            axes = getattr(static, plot.function)(study, **plot.kwargs)
            first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
            figure = first.figure
            try:
                figure.savefig(png, dpi=100, bbox_inches="tight")
            finally:
                plt.close(figure)
        figure = getattr(interactive, plot.function)(study, **plot.kwargs)
    plot.fragment = figure.to_html(full_html=False, include_plotlyjs=False)
    plot.files = [png]


def _index(
    study: optuna.Study,
    plots: list[_Plot],
    *,
    tracking_uri: str | None,
    experiment_id: str | None,
) -> str:
    """The summary page: counts, best trials, each plot inline (plotly.js embedded once)."""
    from plotly.offline import get_plotlyjs

    summary = (
        best_summary(study, top=5, tracking_uri=tracking_uri, experiment_id=experiment_id)
        if tracking_uri
        else study_summary(study, top=5)
    )
    esc = html.escape
    counts = {k: v for k, v in state_counts(study).items() if v}
    goals = ", ".join(
        f"{esc(m)} ({esc(d)})"
        for m, d in zip(summary["metrics"], summary["directions"], strict=True)
    )
    best_title = "Pareto front" if len(summary["directions"]) > 1 else "Best trials"
    sections = [
        f"<h1>{esc(study.study_name)}</h1>",
        f"<p>Objectives: {goals}. Trials: "
        + ", ".join(f"{esc(k.lower())} {v}" for k, v in counts.items())
        + (
            f". Parent run: <code>{esc(summary['parent_run_id'])}</code>"
            if summary["parent_run_id"]
            else ""
        )
        + (f" in <code>{esc(tracking_uri)}</code>" if tracking_uri else "")
        + ".</p>",
        f"<h2>{best_title}</h2>",
        _best_table(summary),
        "<h2>Plots</h2>",
        "<ul>"
        + "".join(
            f'<li><a href="#{p.name}">{esc(p.title)}</a>'
            + (f" <em>({esc(p.skip)})</em>" if p.skip else "")
            + "</li>"
            for p in plots
        )
        + "</ul>",
    ]
    for p in plots:
        if p.skip:
            continue
        sections.append(
            f'<section id="{p.name}"><h3>{esc(p.title)}</h3>{p.fragment}'
            f'<p><a href="plots/{p.name}.png">PNG</a></p></section>'
        )
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{esc(study.study_name)}: orch report</title>"
        f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>"
        + "\n".join(sections)
        + f"<footer>Generated by orch on {stamp}.</footer></body></html>\n"
    )


def _best_table(summary: dict[str, Any]) -> str:
    esc = html.escape
    trials = summary["best_trials"]
    if not trials:
        return "<p>No completed trial yet.</p>"
    metrics = summary["metrics"]
    head = "".join(f"<th>{esc(h)}</th>" for h in ("trial", *metrics, "params", "MLflow run"))
    rows = []
    for t in trials:
        link = t.get("mlflow_run") or {}
        run_id = esc(t["mlflow_run_id"] or "")
        run = f'<a href="{esc(link["url"])}">{run_id}</a>' if link.get("url") else run_id
        params = ", ".join(f"{esc(k)}={esc(_short(v))}" for k, v in t["params"].items())
        values = "".join(f"<td>{esc(_short(t['values'].get(m)))}</td>" for m in metrics)
        rows.append(f"<tr><td>{t['number']}</td>{values}<td>{params}</td><td>{run}</td></tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _objective(index: int) -> Callable[[optuna.trial.FrozenTrial], float]:
    def value(trial: optuna.trial.FrozenTrial) -> float:
        return float(trial.values[index])

    return value


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    "section{margin:2em 0}footer{color:#777;margin-top:3em}"
)
