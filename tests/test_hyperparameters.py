"""Declared settings (`shared.schema`): hyperparameters and flags from text, JSON files checked.

One set of rules serves SageMaker's hyperparameters (all strings), command-line flags, and the JSON
files the suite reads from outside; these tests pin what each accepts and what it says when not.
"""

from dataclasses import dataclass

import pytest

from algorithm.hyperparameters import Hyperparameters, hyperparameters_help
from shared import schema
from shared.sagemaker.training import SAGEMAKER_KEYS
from shared.schema import SchemaError, setting


@dataclass(frozen=True)
class Spec:
    epochs: int = setting(5, help="passes over the data", min=1)
    learning_rate: float = setting(1e-3, help="step size", min=0.0)
    optimizer: str = setting("adam", help="optimizer", choices=("adam", "adamw", "sgd"))
    online_augmentation: bool = setting(False, help="augment while training")
    pretrained_weights: str | None = setting(None, help="local weights file")


def parse(values):
    return schema.from_strings(Spec, values, what="hyperparameter", ignored_prefixes=SAGEMAKER_KEYS)


def test_string_values_are_parsed_to_their_declared_types():
    values = parse({"epochs": "12", "learning_rate": "0.01", "optimizer": "sgd",
                    "online_augmentation": "true"})
    assert values == Spec(12, 0.01, "sgd", True, None)


def test_json_encoded_strings_from_the_python_sdk_are_unquoted():
    assert parse({"optimizer": '"adamw"', "epochs": 3}).optimizer == "adamw"


def test_missing_values_take_their_defaults():
    assert parse({}) == Spec()


def test_unknown_name_is_refused_with_a_suggestion_and_the_valid_names():
    with pytest.raises(SchemaError) as err:
        parse({"epoch": "3"})
    message = str(err.value)
    assert "epoch" in message and "did you mean epochs" in message and "learning_rate" in message


def test_value_outside_the_choices_names_parameter_value_and_choices():
    with pytest.raises(SchemaError, match="optimizer='lbfgs'.*adam, adamw, sgd"):
        parse({"optimizer": "lbfgs"})


def test_badly_typed_value_names_the_parameter_and_expected_type():
    with pytest.raises(SchemaError, match="epochs='three' is not a valid integer"):
        parse({"epochs": "three"})


def test_out_of_range_value_is_refused():
    with pytest.raises(SchemaError, match="epochs='0' is out of range.*>= 1"):
        parse({"epochs": "0"})


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity"])
def test_numbers_must_be_finite(text):
    with pytest.raises(SchemaError, match="learning_rate"):
        parse({"learning_rate": text})


def test_bool_accepts_only_clear_words():
    assert parse({"online_augmentation": "False"}).online_augmentation is False
    with pytest.raises(SchemaError, match="online_augmentation"):
        parse({"online_augmentation": "maybe"})


def test_sagemaker_own_keys_are_ignored():
    assert parse({"sagemaker_program": "x", "sagemaker_region": '"eu-west-1"'}).epochs == 5


def test_a_declaration_with_an_invalid_default_is_a_programming_error():
    @dataclass(frozen=True)
    class Bad:
        optimizer: str = setting("lbfgs", choices=("adam",))

    with pytest.raises(SchemaError):
        schema.check_defaults(Bad)


def test_json_types_are_strict_and_every_float_finite():
    @dataclass(frozen=True)
    class File:
        size: int = setting(min=1, max=10)
        mean: list[float] = setting(length=3)
        names: list[str] = setting(min_length=1, unique=True)

    good = {"size": 3, "mean": [0.1, 0.2, 0.3], "names": ["a", "b"]}
    assert schema.from_json(File, good) == File(3, [0.1, 0.2, 0.3], ["a", "b"])
    for field, value, message in [
        ("size", True, "size must be an integer between 1 and 10"),  # a bool is not an integer
        ("size", "3", "size must be an integer"),
        ("size", 11, "size must be an integer between 1 and 10"),
        ("mean", [0.1, float("nan"), 0.3], "mean must be a list of 3 finite numbers"),
        ("mean", [0.1, 0.2], "mean must be a list of 3 finite numbers"),
        ("names", [], "names must be a non-empty list of strings"),
        ("names", ["a", "a"], "names has duplicates"),
    ]:
        with pytest.raises(SchemaError, match=message):
            schema.from_json(File, {**good, field: value}, "file.json")
    with pytest.raises(SchemaError, match="file.json: size is missing"):
        schema.from_json(File, {"mean": [0, 0, 0], "names": ["a"]}, "file.json")


def test_every_training_hyperparameter_is_documented_with_type_default_and_range():
    text = hyperparameters_help()
    for field, _ in schema.fields_of(Hyperparameters):
        assert f"  {field.name}: " in text
    assert "epochs: passes over the training data (integer, default 6, between 1 and 10000)" in text
    assert "optimizer: optimizer (string, default adamw, one of adam, adamw, sgd, rmsprop)" in text
