"""Log levels of the libraries orch drives, set where an orch process starts (never on import)."""

from __future__ import annotations

import logging

__all__ = ["quiet_libraries"]

#: Loggers that narrate routine work (a study created, a schema checked) at INFO.
_CHATTY = ("optuna", "mlflow.store.db.utils", "alembic")


def quiet_libraries() -> None:
    """Keep Optuna's, MLflow's store and alembic's INFO lines out of orch's output.

    Called by the ``orch`` command and by the study hub and tracker actors: processes orch owns.
    A notebook calling :func:`orchestrator.sweep` keeps its own logging setup.
    """
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
