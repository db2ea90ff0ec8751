"""A rich progress bar for a running sweep: finished/target, states, best so far."""

from __future__ import annotations

from collections import Counter
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.engine import Listener
from orchestrator.spec import Spec
from orchestrator.trial import Outcome, Ticket

__all__ = ["SweepProgress"]


class SweepProgress(Listener):
    """Draws a sweep's progress on stderr; use as a context manager around ``sweep()``."""

    def __init__(self, spec: Spec, *, console: Console | None = None) -> None:
        self._spec = spec
        self._console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[states]}"),
            TextColumn("{task.fields[best]}"),
            console=self._console,
            transient=False,
        )
        self._task = self._progress.add_task(spec.name, total=spec.trials, states="", best="")
        self._states: Counter[str] = Counter()
        self._running = 0
        self._values: list[tuple[int, list[float]]] = []
        self._phase = ""
        #: How many attempts were lost and run again (their worker or node died).
        self.retried = 0

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._phase = ""  # the last frame stays on screen: states and best, not "stopping Ray"
        if exc is not None:  # interrupted or lost: its running trials were closed
            self._running = 0
        self._refresh()
        self._progress.stop()

    def phase(self, step: str) -> None:
        self._phase = f"{step}…"
        self._refresh()
        self._progress.refresh()  # drawn now: a short phase may end before the next auto-refresh

    def started(self, ticket: Ticket) -> None:
        self._running += 1
        self._phase = ""
        self._refresh()

    def finished(self, ticket: Ticket, outcome: Outcome) -> None:
        self._running -= 1
        self._states[outcome.state] += 1
        if outcome.state == "COMPLETE" and outcome.values is not None:
            self._values.append((ticket.number, outcome.values))
        if outcome.state == "FAIL":
            self._console.print(f"[red]trial {ticket.number} FAILED[/]: {outcome.reason}")
        self._progress.advance(self._task)
        self._refresh()

    def retrying(self, ticket: Ticket, reason: str) -> None:
        self._running -= 1
        self.retried += 1
        self._console.print(
            f"[yellow]trial {ticket.number} attempt {ticket.attempt} lost[/]: {reason}; retrying"
        )

    def waiting(self, message: str) -> None:
        self._console.print(f"[yellow]{escape(message)}[/]")  # a driver's [bracketed] text

    def stopping(self, running: int) -> None:
        self._console.print(
            f"[yellow]stopping: closing {running} running trial(s) so --resume re-runs them; "
            "Ctrl-C again quits at once[/]"
        )

    def _refresh(self) -> None:
        states = " ".join(
            f"{label}={count}"
            for label, count in (
                ("running", self._running),
                ("done", self._states["COMPLETE"]),
                ("pruned", self._states["PRUNED"]),
                ("failed", self._states["FAIL"]),
            )
            if count
        )
        if self._phase:
            states = f"{states} {self._phase}" if states else self._phase
        self._progress.update(self._task, states=states, best=self._best())

    def _best(self) -> str:
        if not self._values:
            return ""
        objectives = self._spec.objectives
        if len(objectives) == 1:
            sign = 1.0 if objectives[0].direction == "minimize" else -1.0
            number, values = min(self._values, key=lambda item: sign * item[1][0])
            return f"best {objectives[0].metric}={values[0]:.4g} (#{number})"
        signs = [1.0 if o.direction == "minimize" else -1.0 for o in objectives]
        points = [[s * v for s, v in zip(signs, values, strict=True)] for _, values in self._values]
        front = sum(
            1
            for p in points
            if not any(all(a <= b for a, b in zip(q, p, strict=True)) and q != p for q in points)
        )
        return f"pareto front: {front} trial(s)"
