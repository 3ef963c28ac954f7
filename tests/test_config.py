import dataclasses
from typing import List, Literal, Optional

import pytest

from lib.config import ConfigError, config_hash, format_help, parse_overrides
from tests.conftest import run_script


@dataclasses.dataclass
class Inner:
    depth: int = 2  # layers


@dataclasses.dataclass
class Example:
    model: Literal["mlp", "cnn"] = "cnn"  # model kind
    lr: float = 0.01  # learning rate
    steps: int = 100  # optimizer steps
    width: Optional[int] = 8  # hidden units
    run_name: str = ""  # run name
    label: Optional[str] = "x"  # optional label
    sizes: List[int] = dataclasses.field(default_factory=lambda: [1, 2])  # layer sizes
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_defaults_without_tokens():
    assert parse_overrides(Example, []) == Example()


def test_typed_values_are_parsed():
    config = parse_overrides(Example, ["lr=1e-3", "steps=7", "model=mlp", "inner.depth=4"])
    assert config.lr == 1e-3
    assert config.steps == 7
    assert config.model == "mlp"
    assert config.inner.depth == 4


@pytest.mark.parametrize("text", ["1e3", "on", "null", "007", "[1, 2]", "a=b"])
def test_str_field_keeps_literal_text(text):
    assert parse_overrides(Example, [f"run_name={text}"]).run_name == text


def test_null_sets_optional_fields():
    config = parse_overrides(Example, ["width=null", "label=null"])
    assert config.width is None
    assert config.label is None


def test_list_in_brackets():
    assert parse_overrides(Example, ["sizes=[3,4,5]"]).sizes == [3, 4, 5]


def test_list_without_brackets_gets_hint():
    with pytest.raises(ConfigError, match=r"sizes=\[3,4\]"):
        parse_overrides(Example, ["sizes=3,4"])
    with pytest.raises(ConfigError, match=r"sizes=\[3\]"):
        parse_overrides(Example, ["sizes=3"])


def test_duplicate_key_is_rejected():
    with pytest.raises(ConfigError, match="lr is given twice"):
        parse_overrides(Example, ["lr=0.1", "lr=0.2"])


def test_comma_in_scalar_points_to_sweeps():
    with pytest.raises(ConfigError, match="exp_sweeps.py") as error:
        parse_overrides(Example, ["lr=1e-3,1e-2"])
    assert "'1e-3,1e-2'" in str(error.value)


def test_unknown_key_names_closest_and_all():
    with pytest.raises(ConfigError) as error:
        parse_overrides(Example, ["lrr=0.1"])
    message = str(error.value)
    assert "'lrr'" in message
    assert "Did you mean 'lr'?" in message
    assert "model, lr, steps, width, run_name, label, sizes, inner.depth" in message


def test_wrong_type_names_field_value_and_type():
    with pytest.raises(ConfigError) as error:
        parse_overrides(Example, ["steps=abc"])
    message = str(error.value)
    assert "steps" in message
    assert "'abc'" in message
    assert "int" in message


def test_float_for_int_suggests_integer():
    with pytest.raises(ConfigError, match="steps=1000"):
        parse_overrides(Example, ["steps=1e3"])


def test_literal_lists_choices():
    with pytest.raises(ConfigError, match="choose one of mlp, cnn"):
        parse_overrides(Example, ["model=gru"])


def test_token_without_equals_says_how():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(Example, ["steps"])


def test_help_lists_every_field():
    text = format_help(Example, "example.py")
    for line in ["lr", "float", "0.01", "learning rate", "inner.depth", "layers", "mlp|cnn"]:
        assert line in text


def test_config_hash_ignores_labels_only():
    base = Example()
    assert config_hash(base) == config_hash(dataclasses.replace(base, run_name="other"))
    assert config_hash(base) != config_hash(dataclasses.replace(base, lr=0.1))


@pytest.mark.parametrize(
    "override, expected",
    [
        ("lrr=0.1", "Did you mean 'lr'?"),
        ("steps=abc", "invalid value for steps"),
        ("steps", "write it as key=value"),
        ("steps=0", "steps must be at least 1"),
        ("lr=-1", "lr must be positive"),
        ("device=tpu", "device must be auto, cpu, mps, cuda or cuda:N"),
    ],
)
def test_run_exp_rejects_bad_override(store, tmp_path, override, expected):
    result = run_script("run_exp.py", override)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists(), "no MLflow store may be touched"


def test_run_exp_help_lists_fields(store):
    result = run_script("run_exp.py", "--help")
    assert result.returncode == 0
    for name in ["model", "width", "lr", "weight_decay", "batch_size", "steps", "eval_every",
                 "seed", "device", "run_name", "experiment_name", "sweep"]:
        assert f"\n  {name} " in result.stdout
    assert "Adam learning rate" in result.stdout
