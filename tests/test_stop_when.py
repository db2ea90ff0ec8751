"""``stop_when``: rules on reported metrics end trials PRUNED at once, with the rule recorded.

The sweeps run on a real local Ray with real Optuna and MLflow sqlite stores; the job reports a
residual curve given as a param, so which trial stops, and at which step, is known exactly;
one sweep runs the real DEQ job with a configuration that does not converge.
"""

from __future__ import annotations

import math

import pytest
from optuna.trial import TrialState

from orchestrator import sweep
from orchestrator.spec import Spec, StopRule
from orchestrator.study import StopRules
from tests.helpers import client, load, runs

SPEC = """
name: {name}
job: tests.jobs_for_tests:curve
objective: {objective}
trials: 10
parallel: 3
sampler: {{type: grid}}
pruner: {pruner}
space:
  curve: {{type: categorical, choices: {choices}}}
stop_when:
  - {{metric: residual, above: 1.5, after_step: 1, patience: 2}}
  - {{metric: residual, below: 1.0e-5}}
"""

RULE_0 = "stop_when[0]: residual above 1.5 for 2 consecutive reports from step 1"
RULE_1 = "stop_when[1]: residual below 1e-05"

#: curve -> (state, last step reported, rule that stopped it, residual at the stop)
CURVES = {
    "0.5,0.1,0.01,0.001,0.0001": ("COMPLETE", 4, None, None),
    "1,4,8,16,32": ("PRUNED", 2, RULE_0, 8.0),  # holds at steps 1 and 2
    "9,9,1,1,1": ("COMPLETE", 4, None, None),  # step 0 is before after_step
    "2,1,2,1,2": ("COMPLETE", 4, None, None),  # never twice in a row
    "1,1,1,2,2,1": ("PRUNED", 4, RULE_0, 2.0),
    "0.5,0.000001,0.5,0.5": ("PRUNED", 1, RULE_1, 1e-6),
}

CASES = {
    "no pruner": ("{metric: loss}", "{type: none}"),
    "median pruner": ("{metric: loss}", "{type: median, startup_trials: 100}"),
    "multi-objective": ("[{metric: loss}, {metric: cost}]", "{type: none}"),
}


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("case", sorted(CASES))
def test_rules_end_trials_pruned_at_once_with_the_rule_recorded(tmp_path, write_spec, case):
    objective, pruner = CASES[case]
    name = case.replace(" ", "-")
    choices = "[" + ", ".join(f'"{c}"' for c in CURVES) + "]"
    spec = write_spec(SPEC.format(name=name, objective=objective, pruner=pruner, choices=choices))
    result = sweep(spec, workspace=tmp_path)
    multi = case == "multi-objective"
    study = load(tmp_path, name)
    assert len(study.trials) == len(CURVES)
    assert result.counts["PRUNED"] == 3 and result.counts["COMPLETE"] == 3
    mlflow = client(tmp_path)
    _, children = runs(tmp_path, name)
    by_run = {r.info.run_id: r for r in children}
    for trial in study.trials:
        state, last, rule, value = CURVES[trial.params["curve"]]
        residuals = [float(r) for r in trial.params["curve"].split(",")]
        run = by_run[trial.user_attrs["mlflow_run_id"]]
        history = mlflow.get_metric_history(run.info.run_id, "residual")
        assert sorted(m.step for m in history) == list(range(last + 1)), trial.params
        assert trial.state == TrialState[state], trial.params
        assert run.data.tags["optuna.state"] == state and run.info.status == "FINISHED"
        if rule is None:
            assert "orch.stop_rule" not in trial.user_attrs
            assert "orch.stop_rule" not in run.data.tags
            continue
        reason = f"stopped at step {last} by {rule} (residual = {value:.4g})"
        assert trial.user_attrs["orch.stop_rule"] == rule
        assert trial.user_attrs["fail_reason"] == reason
        assert run.data.tags["orch.stop_rule"] == rule
        assert run.data.tags["orch.fail_reason"] == reason
        if multi:
            assert trial.values is None  # Optuna keeps values of complete trials only
        else:
            assert sorted(trial.intermediate_values) == list(range(last + 1))
            assert trial.value == pytest.approx(residuals[last])  # its last reported loss


@pytest.mark.usefixtures("ray_local")
def test_without_rules_or_with_an_unreported_metric_every_trial_runs_to_its_end(
    tmp_path, write_spec
):
    choices = "[" + ", ".join(f'"{c}"' for c in CURVES) + "]"
    cases = {
        "norules": ("stop_when=[]", []),
        "misspelt": (
            "stop_when=[{metric: residul, above: 1.5}]",
            [
                "stop_when[0]: no trial reported metric 'residul', so the rule never applied "
                "(reported: loss, residual)"
            ],
        ),
    }
    for name, (override, warnings) in cases.items():
        text = SPEC.format(
            name=name, objective="{metric: loss}", pruner="{type: none}", choices=choices
        )
        spec = write_spec(text, f"{name}.yaml")
        result = sweep(spec, workspace=tmp_path, overrides=[override])
        assert result.counts["COMPLETE"] == len(CURVES)
        assert result.warnings == warnings
        for trial in load(tmp_path, name).trials:
            assert len(trial.intermediate_values) == len(trial.params["curve"].split(","))
            assert "orch.stop_rule" not in trial.user_attrs


def _rules(*rules: dict[str, object]) -> StopRules:
    return StopRules([StopRule.model_validate(r) for r in rules])


def test_a_streak_counts_consecutive_reports_of_its_metric_from_after_step():
    rules = _rules({"metric": "r", "above": 1.0, "after_step": 2, "patience": 3})
    assert rules.check("0.0", 0, {"r": 5.0}) is None  # before after_step: not counted
    assert rules.check("0.0", 1, {"r": 5.0}) is None
    assert rules.check("0.0", 2, {"r": 5.0}) is None  # 1
    assert rules.check("0.0", 3, {"loss": 0.1}) is None  # no r: streak unchanged
    assert rules.check("0.0", 4, {"r": 5.0}) is None  # 2
    assert rules.check("0.0", 5, {"r": math.nan}) is None  # NaN never holds: reset
    assert rules.check("0.0", 6, {"r": 2.0}) is None  # 1
    assert rules.check("0.0", 7, {"r": 2.0}) is None  # 2
    stop = rules.check("0.0", 8, {"r": 3.0})  # 3
    assert stop is not None and (stop.step, stop.metric, stop.value) == (8, "r", 3.0)
    assert stop.rule == "stop_when[0]: r above 1 for 3 consecutive reports from step 2"
    assert rules.check("0.0", 9, {"r": 0.0}) == stop  # stopped stays stopped
    assert rules.pop("0.0") == stop
    assert rules.pop("0.0") is None


def test_attempts_are_counted_apart_and_the_first_rule_that_holds_wins():
    rules = _rules(
        {"metric": "acc", "below": 0.2, "patience": 2},
        {"metric": "r", "above": 1.0},
    )
    assert rules.check("0.0", 0, {"acc": 0.1}) is None
    assert rules.check("1.0", 0, {"acc": 0.1}) is None
    assert rules.check("1.0", 1, {"acc": 0.9}) is None  # reset for attempt 1.0 only
    stop = rules.check("0.0", 1, {"acc": 0.1, "r": 9.0})
    assert stop is not None and stop.rule == "stop_when[0]: acc below 0.2 for 2 consecutive reports"
    stop = rules.check("1.0", 2, {"acc": 0.1, "r": 1.5})
    assert stop is not None and stop.rule == "stop_when[1]: r above 1"
    assert rules.check("1.0", 2, {"r": 1.0}) is not None
    assert rules.check("2.0", 0, {"r": 1.0}) is None  # not above: equal is not enough
    assert _rules().check("0.0", 0, {"r": 9.0}) is None


def test_the_hub_waits_for_answers_exactly_when_it_may_stop_a_trial():
    base = {
        "name": "s",
        "job": "jobs.quadratic:run",
        "objective": {"metric": "loss"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
    }
    rule = [{"metric": "r", "below": 1.0}]
    assert not Spec.model_validate(base).stops_trials  # reports stay fire-and-forget
    assert Spec.model_validate({**base, "stop_when": rule}).stops_trials
    assert Spec.model_validate({**base, "pruner": {"type": "median"}}).stops_trials
    multi = {**base, "objective": [{"metric": "loss"}, {"metric": "cost"}]}
    assert Spec.model_validate({**multi, "stop_when": rule}).stops_trials


DEQ_SPEC = """
name: deq-stop-when
job: jobs.deq.train:run
objective: {metric: test_error}
trials: 2
parallel: 2
sampler: {type: grid}
pruner: {type: none}
space:
  norm: {type: categorical, choices: [spectral, none]}
fixed: {model: deq, width: 16, epochs: 4, solver: forward, max_iter: 30, init_scale: 3.5}
stop_when:
  - {metric: residual, above: 0.1, patience: 2}
"""
DEQ_RULE = "stop_when[0]: residual above 0.1 for 2 consecutive reports"


@pytest.mark.usefixtures("ray_local")
def test_the_deq_job_not_converging_is_ended_early_with_the_rule_as_reason(tmp_path, write_spec):
    """The real DEQ job: without spectral norm, weights scaled 3.5x leave forward iteration's
    residual above 0.1 every epoch (finite: the job's divergence policy does not end it); the
    shipped DEQ rule ends that trial after 2 of its 4 epochs, the spectral-norm trial runs on."""
    result = sweep(write_spec(DEQ_SPEC), workspace=tmp_path)
    assert result.counts["PRUNED"] == 1 and result.counts["COMPLETE"] == 1
    mlflow = client(tmp_path)
    by_norm = {t.params["norm"]: t for t in load(tmp_path, "deq-stop-when").trials}
    stopped, converged = by_norm["none"], by_norm["spectral"]
    history = mlflow.get_metric_history(stopped.user_attrs["mlflow_run_id"], "residual")
    assert sorted({m.step for m in history}) == [0, 1]  # 2 epochs reported of 4
    assert all(m.value > 0.1 for m in history)
    assert stopped.state == TrialState.PRUNED and not stopped.user_attrs.get("diverged")
    assert stopped.user_attrs["orch.stop_rule"] == DEQ_RULE
    assert stopped.user_attrs["fail_reason"].startswith(f"stopped at step 1 by {DEQ_RULE}")
    run = mlflow.get_run(stopped.user_attrs["mlflow_run_id"])
    assert run.data.tags["orch.stop_rule"] == DEQ_RULE
    assert run.data.tags["optuna.state"] == "PRUNED"
    assert converged.state == TrialState.COMPLETE and "orch.stop_rule" not in converged.user_attrs
    assert sorted(converged.intermediate_values) == [0, 1, 2, 3]
    assert converged.value is not None and converged.value < stopped.value
