"""Spec loading and validation: the contract fields, errors naming file, line and field."""

from __future__ import annotations

import json

import jsonschema
import pytest

from orchestrator import SpecError
from orchestrator.spec import CategoricalParam, load_spec, spec_schema

ISSUE_EXAMPLE = """\
name: deq-anderson                # Optuna study name and MLflow experiment name
job: jobs.deq.train:run           # module:function
objective:                        # one {metric, direction} mapping, or a list of them
  - {metric: test_error, direction: minimize}
  - {metric: nfe, direction: minimize}
trials: 64
parallel: 8
resources: {cpus: 1, gpus: 0.5}
sampler: {type: tpe, seed: 0}
pruner: {type: none}
space:
  depth: {type: int, low: 1, high: 6}
  solver: {type: categorical, choices: [anderson, broyden, forward]}
  memory: {type: int, low: 1, high: 10, when: {solver: anderson}}
  tol: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  rank: {type: int, low: 8, high: 64, step: 8}
fixed: {epochs: 10}
"""

MINIMAL = """\
name: toy
job: jobs.quadratic:run
objective: {metric: loss, direction: minimize}
space:
  x: {type: float, low: -1.0, high: 1.0}
"""


def test_issue_example_loads_with_every_contract_field(write_spec):
    spec = load_spec(write_spec(ISSUE_EXAMPLE))
    assert spec.name == "deq-anderson"
    assert spec.job == "jobs.deq.train:run"
    assert [(o.metric, o.direction) for o in spec.objectives] == [
        ("test_error", "minimize"),
        ("nfe", "minimize"),
    ]
    assert (spec.trials, spec.parallel) == (64, 8)
    assert (spec.resources.cpus, spec.resources.gpus) == (1, 0.5)
    assert (spec.sampler.type, spec.sampler.seed) == ("tpe", 0)
    assert list(spec.space) == ["depth", "solver", "memory", "tol", "rank"]
    assert spec.space["memory"].when == {"solver": "anderson"}
    assert spec.space["tol"].log is True and spec.space["rank"].step == 8
    assert isinstance(spec.space["solver"], CategoricalParam)
    assert spec.fixed == {"epochs": 10}
    assert spec.retries == 2 and spec.pruner.type == "none"


def test_single_objective_mapping_and_defaults(write_spec):
    spec = load_spec(write_spec(MINIMAL))
    assert [o.metric for o in spec.objectives] == ["loss"]
    assert spec.trials == 20 and spec.parallel is None
    assert spec.sampler.type == "tpe" and spec.resources.cpus == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "trails: 5\n", "spec.yaml:6: trails: unknown field"),
        (
            MINIMAL.replace("high: 1.0}", "high: 1.0, lgo: true}"),
            "spec.yaml:5: space.x.lgo: unknown field",
        ),
        (
            MINIMAL.replace("direction: minimize", "direction: minimise"),
            "spec.yaml:3: objective.direction: Input should be 'minimize' or 'maximize'",
        ),
        (
            MINIMAL.replace("low: -1.0", "low: 3.0"),
            "spec.yaml:5: space.x: low (3.0) must not exceed high (1.0)",
        ),
        (
            MINIMAL + "trials: 0\n",
            "spec.yaml:6: trials: Input should be greater than or equal to 1",
        ),
        (
            MINIMAL + "sampler: {type: tpee}\n",
            "spec.yaml:6: sampler: unknown type 'tpee'",
        ),
        (
            MINIMAL.replace("float, low", "floot, low"),
            "spec.yaml:5: space.x: unknown type 'floot'",
        ),
        (
            MINIMAL + "  y: {type: int, low: 1, high: 3, when: {z: 1}}\n",
            "space.y.when: unknown parameter 'z'",
        ),
        (
            MINIMAL
            + "  s: {type: categorical, choices: [a, b]}\n"
            + "  y: {type: int, low: 1, high: 3, when: {s: c}}\n",
            "space.y.when.s: ['c'] not among s's choices ['a', 'b']",
        ),
        (
            MINIMAL
            + "  a: {type: int, low: 1, high: 3, when: {b: 1}}\n"
            + "  b: {type: int, low: 1, high: 3, when: {a: 1}}\n",
            "conditions form a cycle",
        ),
        (MINIMAL + "fixed: {x: 1}\n", "fixed: ['x'] also in space"),
        (
            MINIMAL.replace(
                "objective: {metric: loss, direction: minimize}",
                "objective: [{metric: a}, {metric: b}]\npruner: {type: median}",
            ),
            "pruner: 'median' needs a single objective",
        ),
        (MINIMAL + "sampler: {type: grid}\n", "sampler 'grid' needs a step for float space.x"),
        (MINIMAL.replace("jobs.quadratic:run", "jobs.quadratic"), "job: String should match"),
        (MINIMAL + "resources: {gpus: 1.5}\n", "more than one GPU must be a whole number"),
        (
            MINIMAL + "stop_when:\n  - {metric: residual}\n",
            "spec.yaml:7: stop_when[0]: needs exactly one of below or above",
        ),
        (
            MINIMAL
            + "stop_when:\n  - {metric: r, below: 1}\n  - {metric: r, below: 1, above: 2}\n",
            "spec.yaml:8: stop_when[1]: needs exactly one of below or above, got both (1.0, 2.0)",
        ),
        (
            MINIMAL + "stop_when:\n  - {metric: r, below: .nan}\n",
            "stop_when[0]: below must be a finite number, got nan",
        ),
        (
            MINIMAL + "stop_when:\n  - {metric: r, above: 1, patience: 0}\n",
            "spec.yaml:7: stop_when[0].patience: Input should be greater than or equal to 1",
        ),
        (
            MINIMAL + "stop_when:\n  - {metric: r, above: 1, after_step: -1}\n",
            "stop_when[0].after_step: Input should be greater than or equal to 0 (got -1)",
        ),
        (
            MINIMAL + "stop_when:\n  - {metric: r, above: high}\n",
            "stop_when[0].above: Input should be a valid number",
        ),
        (
            MINIMAL + "stop_when:\n  - {metric: r, blow: 1}\n",
            "stop_when[0].blow: unknown field",
        ),
        (MINIMAL + "stop_when:\n  - {above: 1}\n", "stop_when[0].metric: Field required"),
        (MINIMAL + "stop_when: {metric: r, above: 1}\n", "stop_when: Input should be a valid list"),
        ("name: [\n", "spec.yaml:2:1: invalid YAML"),
        ("", "a spec must be a YAML mapping of fields, got an empty file"),
        ("- a\n- b\n", "a spec must be a YAML mapping of fields, got list"),
    ],
)
def test_bad_specs_name_file_line_and_field(write_spec, text, expected):
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.yaml: no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_overrides_set_typed_values_anywhere(write_spec):
    spec = load_spec(
        write_spec(MINIMAL),
        overrides=[
            "trials=3",
            "fixed.epochs=1",
            "fixed.name=abc",
            "fixed.flags=[1, 2]",
            "space.x.high=0.5",
            "sampler.type=random",
            "resources.gpus=0.25",
        ],
    )
    assert spec.trials == 3
    assert spec.fixed == {"epochs": 1, "name": "abc", "flags": [1, 2]}
    assert spec.space["x"].high == 0.5
    assert spec.sampler.type == "random"
    assert spec.resources.gpus == 0.25


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trials", "expected key=value"),
        ("name.first=x", "name has no field 'first'"),
        ("trials=-1", "trials (from --set): Input should be greater than or equal to 1"),
        ("space.x.typo=1", "space.x.typo (from --set): unknown field"),
    ],
)
def test_bad_overrides_say_so(write_spec, override, expected):
    with pytest.raises(SpecError, match=None) as info:
        load_spec(write_spec(MINIMAL), overrides=[override])
    assert expected in str(info.value)


def test_stop_when_rules_load_with_their_defaults_and_take_overrides(write_spec):
    text = MINIMAL + (
        "stop_when:\n"
        "  - {metric: converged_fraction, below: 0.5, after_step: 1, patience: 2}\n"
        "  - {metric: spelled_by_the_job, above: 10}\n"
    )
    spec = load_spec(write_spec(text))
    first, second = spec.stop_when
    assert (first.metric, first.below, first.above) == ("converged_fraction", 0.5, None)
    assert (first.after_step, first.patience) == (1, 2)
    assert (second.above, second.after_step, second.patience) == (10, 0, 1)
    assert load_spec(write_spec(MINIMAL)).stop_when == []
    spec = load_spec(write_spec(text), overrides=["stop_when.0.below=0.8"])
    assert spec.stop_when[0].below == 0.8
    assert load_spec(write_spec(text), overrides=["stop_when=[]"]).stop_when == []
    with pytest.raises(SpecError, match=r"stop_when\[1\].patience \(from --set\)"):
        load_spec(write_spec(text), overrides=["stop_when.1.patience=0"])


def test_objective_list_index_override(write_spec):
    spec = load_spec(
        write_spec(ISSUE_EXAMPLE),
        overrides=["objective.1.metric=nfe_forward", "space.rank.step=16"],
    )
    assert spec.objectives[1].metric == "nfe_forward"
    assert spec.space["rank"].step == 16


def test_schema_is_json_schema_and_accepts_the_example(write_spec):
    import yaml

    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(schema)
    for field in (
        "name",
        "job",
        "objective",
        "trials",
        "parallel",
        "resources",
        "sampler",
        "pruner",
        "space",
        "fixed",
        "retries",
        "stop_when",
    ):
        assert field in schema["properties"], field
    jsonschema.validate(yaml.safe_load(ISSUE_EXAMPLE), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**yaml.safe_load(ISSUE_EXAMPLE), "trails": 3}, schema)
    rule = {"metric": "converged_fraction", "below": 0.5, "after_step": 1, "patience": 2}
    jsonschema.validate({**yaml.safe_load(ISSUE_EXAMPLE), "stop_when": [rule]}, schema)
    for bad in ({"metric": "r"}, {"metric": "r", "below": 1, "above": 2}, {**rule, "blow": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**yaml.safe_load(ISSUE_EXAMPLE), "stop_when": [bad]}, schema)


def _billion_laughs() -> str:
    """Nine levels of ten aliases: 10**9 strings once expanded, 1 KB as text."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n" + MINIMAL + "fixed: {bomb: *a9}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_billion_laughs(), "refused: expands to more than 100,000 values"),
        (MINIMAL + "fixed: {x: &a [1, *a]}\n", "refused: an alias refers to a value that contains"),
        (
            MINIMAL + "fixed:\n  a: &s 1\n" + "".join(f"  b{i}: *s\n" for i in range(1001)),
            "refused: more than 1,000 aliases",
        ),
        (MINIMAL + "fixed: {deep: " + "[" * 150 + "]" * 150 + "}\n", "nested more than 100"),
        (MINIMAL + "# " + "x" * 1_000_001 + "\n", "over 1,000,000 bytes"),
    ],
)
def test_hostile_yaml_is_refused_before_it_expands(write_spec, text, expected):
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    message = str(info.value)
    assert message.startswith(str(write_spec("", name="x.yaml").parent / "spec.yaml"))
    assert expected in message
    assert "\n" not in message


def test_an_endless_file_is_refused_without_reading_it_all(tmp_path):
    with pytest.raises(SpecError, match=r"/dev/zero: over 1,000,000 bytes"):
        load_spec("/dev/zero")


def test_names_longer_than_mlflow_optuna_ray_or_the_file_system_take_are_refused(write_spec):
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH

    from orchestrator.spec import MAX_KEY_LENGTH, MAX_NAME_LENGTH

    assert MAX_KEY_LENGTH == MAX_ENTITY_KEY_LENGTH
    # The study name is in Ray's job log file name: job-driver-orch-NAME-DATE-TIME-HEX.log.
    assert len(f"job-driver-orch-{'n' * MAX_NAME_LENGTH}-20260101-000000-abcd.log") <= 255
    assert load_spec(write_spec(MINIMAL.replace("toy", "n" * MAX_NAME_LENGTH))).name
    cases = {
        MINIMAL.replace("toy", "n" * 5000): "spec.yaml:1: name: String should have at most 200",
        MINIMAL.replace("  x:", f"  {'p' * 251}:"): "parameter name of 251 characters; MLflow",
        MINIMAL.replace("  x:", "  'a@b':"): "parameter name 'a@b': MLflow takes letters",
        MINIMAL.replace("  x:", "  'a/../b':"): "MLflow refuses path-like names",
        MINIMAL + f"fixed: {{{'f' * 300}: 1}}\n": "parameter name of 300 characters",
        MINIMAL.replace("metric: loss", f"metric: {'m' * 251}"): "metric name of 251 characters",
        MINIMAL + f"tags: {{{'t' * 251}: v}}\n": "tag name of 251 characters",
    }
    for text, expected in cases.items():
        with pytest.raises(SpecError) as info:
            load_spec(write_spec(text))
        assert expected in str(info.value) and "\n" not in str(info.value)
