"""Log levels of the libraries orch drives, set where an orch process starts (never on import)."""

from __future__ import annotations

import logging

__all__ = ["quiet_libraries"]

#: Loggers that narrate routine work (a study created, a schema checked) at INFO.
_CHATTY = ("optuna", "alembic")
#: Loggers that print the traceback of a database error they raise right after: orch retries it
#: while the database is briefly unreachable, and reports it in one line when it gives up.
_REDUNDANT = ("mlflow.store.db.utils",)


def quiet_libraries() -> None:
    """Keep Optuna's, MLflow's store and alembic's INFO lines out of orch's output, and MLflow's
    tracebacks of database errors it raises anyway.

    Called by the ``orch`` command and by the study hub and tracker actors: processes orch owns.
    A notebook calling :func:`orchestrator.sweep` keeps its own logging setup.
    """
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _REDUNDANT:
        logging.getLogger(name).setLevel(logging.CRITICAL)
