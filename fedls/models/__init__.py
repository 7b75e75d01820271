"""Models by name; every one is a :class:`~fedls.models.base.Classifier`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from fedls.errors import CheckpointError, ConfigError
from fedls.models.base import Classifier
from fedls.models.cnn import SmallCNN, SmallMLP
from fedls.models.facenet import FaceNetClassifier
from fedls.models.resnet import ResNetClassifier
from fedls.registry import Registry

# factory(channels, image_size, num_classes) -> Classifier
ModelFactory = Callable[[int, int, int], Classifier]
MODELS: Registry[ModelFactory] = Registry("model")

MODELS.register("cnn")(lambda c, s, k: SmallCNN(c, k))
MODELS.register("cnn-nobias")(lambda c, s, k: SmallCNN(c, k, head_bias=False))
MODELS.register("cnn-batchnorm")(lambda c, s, k: SmallCNN(c, k, norm="batch"))
MODELS.register("mlp")(lambda c, s, k: SmallMLP(c * s * s, k))
MODELS.register("resnet18")(lambda c, s, k: ResNetClassifier(18, c, k, s))
MODELS.register("resnet50")(lambda c, s, k: ResNetClassifier(50, c, k, s))
MODELS.register("resnet152")(lambda c, s, k: ResNetClassifier(152, c, k, s))


@MODELS.register("facenet")
def _facenet(channels: int, size: int, num_classes: int) -> Classifier:
    if channels != 3 or size < 80:
        raise ConfigError("facenet needs RGB inputs of at least 80 px (160 recommended); use --image-size 160")
    return FaceNetClassifier(num_classes)


def build_model(
    name: str, image_shape: tuple[int, int, int], num_classes: int, weights: Path | None = None
) -> Classifier:
    """Build ``name`` for the given input shape; optionally load a local ``state_dict`` file."""
    channels, size, _ = image_shape
    model = MODELS.get(name)(channels, size, num_classes)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a ``state_dict`` saved with torch.save, safely (``weights_only=True``)."""
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist; check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - unpickling/shape errors all mean "bad file" here
        raise CheckpointError(
            f"cannot load weights from {path} ({type(exc).__name__}); is it a state_dict for this model?"
        ) from None


__all__ = ["Classifier", "MODELS", "build_model", "load_weights"]
