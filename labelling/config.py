"""The Label Studio project configuration for single-label image classification, and reading one
back: one `Image` named "image", one single-choice `Choices` named "label" with the model's classes.
"""

from __future__ import annotations

from xml.etree import ElementTree

from shared.errors import UserError

FROM_NAME, TO_NAME = "label", "image"  # the names pre-annotations and annotations refer to


def label_config(classes: list[str]) -> str:
    choices = "\n".join(f'    <Choice value="{_escape(c)}"/>' for c in classes)
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def config_classes(config: str) -> list[str]:
    """The choices of a labelling configuration's `Choices` tag named "label"."""
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError as exc:
        raise UserError(f"the labelling configuration is not valid XML: {exc}") from None
    for tag in root.iter("Choices"):
        if tag.get("name") == FROM_NAME:
            return [c.get("value", "") for c in tag.iter("Choice")]
    raise UserError(f'the labelling configuration has no <Choices name="{FROM_NAME}"> tag: use'
                    " the one `python -m labelling export-tasks` writes (label_config.xml)")


def choice_result(label: str) -> list[dict]:
    """A task's result (prediction or annotation) choosing `label`."""
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
             "value": {"choices": [label]}}]


def chosen_labels(result: list[dict]) -> list[str]:
    """The classes a result chooses (its "label" choices)."""
    return [choice for item in result or [] if item.get("from_name") == FROM_NAME
            and item.get("type") == "choices" for choice in item.get("value", {}).get("choices", [])]
