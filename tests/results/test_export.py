"""``orch export``: the trials table read back with pandas and polars matches the study."""

from __future__ import annotations

import math

import pandas as pd
import polars as pl
import pytest
from optuna.trial import TrialState

from orchestrator import OrchError
from orchestrator.results import export_study


def _same(a: object, b: object) -> bool:
    """Equal, with None, NaN and null all meaning 'no value'."""
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    return a == b


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_round_trips_through_pandas_and_polars(finished, tmp_path, orch, suffix):
    study = finished.study
    path = tmp_path / f"trials{suffix}"
    done = orch("export", "results", "-o", str(path), "--workspace", str(finished.workspace))
    assert done.returncode == 0, done.stderr
    trials_file, steps_file = path, tmp_path / f"trials.intermediate{suffix}"
    assert trials_file.exists() and steps_file.exists()

    if suffix == ".parquet":
        frames = [pd.read_parquet(trials_file), pl.read_parquet(trials_file).to_pandas()]
        steps = [pd.read_parquet(steps_file), pl.read_parquet(steps_file).to_pandas()]
        typed = pl.read_parquet(trials_file).schema
        assert typed["params_x"] == pl.Float64 and typed["params_y"] == pl.Float64
        assert typed["params_epochs"] == pl.Int64 and typed["params_shape"] == pl.String
        assert typed["values_loss"] == pl.Float64 and typed["attempt"] == pl.Int64
        assert typed["params_seed"] == pl.Int64 and typed["job_duration_s"] == pl.Float64
        assert typed["datetime_start"] == pl.Datetime("us")
    else:
        frames = [pd.read_csv(trials_file), pl.read_csv(trials_file).to_pandas()]
        steps = [pd.read_csv(steps_file), pl.read_csv(steps_file).to_pandas()]

    trials = study.get_trials()
    shapes = {t.params["shape"] for t in trials}
    assert "ridge" in shapes and shapes - {"ridge"}, "the conditional param y needs both cases"
    assert {t.state for t in trials} >= {TrialState.COMPLETE, TrialState.PRUNED}
    for frame in frames:
        assert list(frame["number"]) == [t.number for t in trials]
        rows = frame.set_index("number")
        for t in trials:
            row = rows.loc[t.number]
            assert row["state"] == t.state.name
            assert _same(row["values_loss"], t.values[0] if t.values else None)
            for name in ("x", "y", "shape", "epochs"):
                assert _same(row[f"params_{name}"], t.params.get(name)), (t.number, name)
            assert pd.Timestamp(row["datetime_start"]) == pd.Timestamp(t.datetime_start)
            assert pd.Timestamp(row["datetime_complete"]) == pd.Timestamp(t.datetime_complete)
            assert row["duration_s"] == pytest.approx(t.duration.total_seconds())
            assert row["job_duration_s"] == t.user_attrs["orch.duration_s"] <= row["duration_s"]
            assert row["attempt"] == t.user_attrs["orch.attempts"] == 1
            assert row["node"] == t.user_attrs["orch.node_ip"]
            assert row["mlflow_run_id"] == t.user_attrs["mlflow_run_id"]
            assert _same(row["user_attrs_fail_reason"], t.user_attrs.get("fail_reason"))
            assert row["params_seed"] == 7  # the spec's fixed param, from the trial's run
        # One column per fact: no user attribute repeats a column of its own.
        repeated = {"mlflow_run_id", "orch.attempts", "orch.node_ip", "orch.gpu_ids"}
        assert not {f"user_attrs_{key}" for key in {*repeated, "orch.duration_s"}} & set(frame)
        assert len(set(frame.columns)) == len(frame.columns)
        # Types, not strings: the numbers are numbers and the inactive y is missing.
        assert pd.api.types.is_float_dtype(frame["params_x"])
        assert pd.api.types.is_integer_dtype(frame["params_epochs"])
        assert frame["params_y"].isna().sum() == sum("y" not in t.params for t in trials)

    for frame in steps:
        got = {(n, s): v for n, s, v in frame[["number", "step", "value"]].itertuples(index=False)}
        want = {(t.number, s): v for t in trials for s, v in t.intermediate_values.items()}
        assert got == want


def test_export_names_the_formats_it_writes(finished, tmp_path):
    with pytest.raises(OrchError, match=r"\.parquet or \.csv"):
        export_study(finished.study, path=tmp_path / "trials.xlsx")
