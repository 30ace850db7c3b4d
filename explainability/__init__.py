"""The explainability component: integrated gradients (captum) on a model's predictions."""
