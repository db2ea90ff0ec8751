"""Trial run names: what MLflow's runs list shows for each attempt."""

from __future__ import annotations

from orchestrator._run_name import mark_run_name, state_mark, trial_run_name
from orchestrator.names import RunName


def test_a_name_is_the_trial_number_and_its_sampled_params():
    params = {"solver": "anderson", "memory": 5, "tol": 3.2e-4, "lr": 0.0123, "x": -1.4589}
    assert (
        trial_run_name(7, 0, params) == "#7 solver=anderson memory=5 tol=3.2e-04 lr=0.0123 x=-1.46"
    )
    assert trial_run_name(7, 2, {"x": 0.0, "big": 123456.0}) == "#7 retry 2 x=0 big=1.2e+05"


def test_a_long_name_stops_before_the_param_that_does_not_fit():
    params = {f"param_{i}": f"value_{i}" for i in range(20)}
    name = trial_run_name(12, 0, params)
    assert len(name) <= RunName.MAX_CHARS + 2 and name.endswith(" …")
    shown = name.removeprefix("#12 ").removesuffix(" …").split(" ")
    assert shown == [f"param_{i}=value_{i}" for i in range(len(shown))]  # whole params only


def test_ended_attempts_are_marked_after_the_number():
    assert state_mark("COMPLETE") is None
    assert state_mark("PRUNED") == "[pruned]"
    assert state_mark("PRUNED", diverged=True) == "[diverged]"
    assert state_mark("FAIL") == "[failed]"
    assert state_mark("FAIL", interrupted=True) == "[interrupted]"
    assert mark_run_name("#7 retry 1 x=1.46", "[failed]") == "#7 [failed] retry 1 x=1.46"
    assert mark_run_name("#7", "[pruned]") == "#7 [pruned]"
