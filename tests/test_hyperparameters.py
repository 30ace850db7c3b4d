import pytest

from shared.sagemaker import HyperparameterError, HyperparameterSpec, Param

SPEC = HyperparameterSpec((
    Param("epochs", int, 5, "passes over the data", min=1),
    Param("learning_rate", float, 1e-3, "step size", min=0.0),
    Param("optimizer", str, "adam", "optimizer", choices=("adam", "adamw", "sgd")),
    Param("online_augmentation", bool, False, "augment while training"),
    Param("pretrained_weights", str, None, "local weights file", optional=True),
))


def test_string_values_are_parsed_to_their_declared_types():
    values = SPEC.parse({"epochs": "12", "learning_rate": "0.01", "optimizer": "sgd",
                         "online_augmentation": "true"})
    assert values == {"epochs": 12, "learning_rate": 0.01, "optimizer": "sgd",
                      "online_augmentation": True, "pretrained_weights": None}


def test_json_encoded_strings_from_the_python_sdk_are_unquoted():
    assert SPEC.parse({"optimizer": '"adamw"', "epochs": 3})["optimizer"] == "adamw"


def test_missing_values_take_their_defaults():
    assert SPEC.parse({}) == {"epochs": 5, "learning_rate": 1e-3, "optimizer": "adam",
                              "online_augmentation": False, "pretrained_weights": None}


def test_unknown_name_is_refused_with_a_suggestion_and_the_valid_names():
    with pytest.raises(HyperparameterError) as err:
        SPEC.parse({"epoch": "3"})
    message = str(err.value)
    assert "epoch" in message and "did you mean epochs" in message and "learning_rate" in message


def test_value_outside_the_choices_names_parameter_value_and_choices():
    with pytest.raises(HyperparameterError, match="optimizer='lbfgs'.*adam, adamw, sgd"):
        SPEC.parse({"optimizer": "lbfgs"})


def test_badly_typed_value_names_the_parameter_and_expected_type():
    with pytest.raises(HyperparameterError, match="epochs='three' is not a valid int"):
        SPEC.parse({"epochs": "three"})


def test_out_of_range_value_is_refused():
    with pytest.raises(HyperparameterError, match="epochs='0' is out of range.*>= 1"):
        SPEC.parse({"epochs": "0"})


def test_bool_accepts_only_clear_words():
    assert SPEC.parse({"online_augmentation": "False"})["online_augmentation"] is False
    with pytest.raises(HyperparameterError, match="online_augmentation"):
        SPEC.parse({"online_augmentation": "maybe"})


def test_sagemaker_own_keys_are_ignored():
    assert SPEC.parse({"sagemaker_program": "x", "sagemaker_region": '"eu-west-1"'})["epochs"] == 5


def test_a_spec_with_an_invalid_default_is_a_programming_error():
    with pytest.raises(HyperparameterError):
        HyperparameterSpec((Param("optimizer", str, "lbfgs", "", choices=("adam",)),))
