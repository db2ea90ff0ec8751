"""An Optuna storage that rides out a database restart: every call retried while it is down.

The study hub opens its storage through :class:`RetryingStorage`, so its own code reads as if
the database never went away. Each call goes through :func:`orchestrator._retry.retrying`; the
two writes that are not safe to repeat when a commit landed but its reply was lost are handled
here (a finished state is checked before it is set again) or reported to the hub (a trial may
have been created twice: :attr:`RetryingStorage.created_twice` tells the hub to look for it).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any, TypeVar

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from orchestrator._retry import Found, Outage, retrying

__all__ = ["RetryingStorage"]

T = TypeVar("T")


class RetryingStorage(BaseStorage):
    """``base`` with each call retried through the outages ``outage`` records."""

    def __init__(self, base: BaseStorage, outage: Outage) -> None:
        self.base = base
        self.outage = outage
        #: Set when a trial creation was retried: its first attempt may have created a trial
        #: nobody holds (left RUNNING or WAITING). The hub looks for it and clears the flag.
        self.created_twice = False

    def _call(
        self, call: Callable[[], T], *, recover: Callable[[], Found[T] | None] | None = None
    ) -> T:
        return retrying(call, self.outage, recover=recover)

    # Studies ----------------------------------------------------------------------------------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self._call(lambda: self.base.create_new_study(directions, study_name))

    def delete_study(self, study_id: int) -> None:
        self._call(lambda: self.base.delete_study(study_id))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call(lambda: self.base.set_study_user_attr(study_id, key, value))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call(lambda: self.base.set_study_system_attr(study_id, key, value))

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._call(lambda: self.base.get_study_id_from_name(study_name))

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._call(lambda: self.base.get_study_name_from_id(study_id))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._call(lambda: self.base.get_study_directions(study_id))

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call(lambda: self.base.get_study_user_attrs(study_id))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call(lambda: self.base.get_study_system_attrs(study_id))

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._call(self.base.get_all_studies)

    # Trials -----------------------------------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        def recover() -> None:
            self.created_twice = True  # the next attempt may create a second trial
            return None

        return self._call(
            lambda: self.base.create_new_trial(study_id, template_trial), recover=recover
        )

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        # Safe to repeat: Optuna ignores the duplicate row of a param already set.
        self._call(
            lambda: self.base.set_trial_param(
                trial_id, param_name, param_value_internal, distribution
            )
        )

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._call(
            lambda: self.base.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        )

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        def recover() -> Found[bool] | None:
            # Had the lost attempt set it? Then setting it again would fail (a finished
            # trial cannot change); the hub is the study's only writer, so it was ours.
            stored = self.base.get_trial(trial_id)
            done = stored.state == state and (values is None or stored.values == list(values))
            return Found(True) if done else None

        return self._call(
            lambda: self.base.set_trial_state_values(trial_id, state, values), recover=recover
        )

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._call(
            lambda: self.base.set_trial_intermediate_value(trial_id, step, intermediate_value)
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call(lambda: self.base.set_trial_user_attr(trial_id, key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call(lambda: self.base.set_trial_system_attr(trial_id, key, value))

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._call(lambda: self.base.get_trial(trial_id))

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        return self._call(lambda: self.base.get_all_trials(study_id, deepcopy, states))

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._call(lambda: self.base.get_best_trial(study_id))

    def remove_session(self) -> None:
        self.base.remove_session()
