"""The evaluation model: a classifier of a different architecture than the target, trained
centrally on the private training data, judging whether attack images show their class
(seed 001 §4.1 "Attack Accuracy", Appx. B.2). It is the stand-in for a human evaluator, so
it only ever feeds metrics; the attack never sees it. Cached on disk like the prior.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fedls.attacks.model.cache import cache_path, dataset_fingerprint, load_cached, save_cached
from fedls.attacks.model.config import EvalConfig
from fedls.errors import CheckpointError, ConfigError
from fedls.models import MODELS, build_model
from fedls.models.base import Classifier

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def dataset_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [-1, 1] and labels of a whole (small) dataset."""
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        x = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
        return x, labels.long()
    pairs = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack([torch.as_tensor(p[0]) for p in pairs]).float(), torch.tensor([int(p[1]) for p in pairs])


def choose_eval_architecture(target_model: str, image_size: int, requested: str = "auto") -> str:
    """``requested`` unless "auto": an architecture unlike the target's (MLP vs. CNN for small
    inputs, a different ResNet depth for large ones). Same as the target is refused."""
    if requested != "auto":
        MODELS.get(requested)
        if requested == target_model:
            raise ConfigError(f"the evaluation model must differ from the target ({target_model}); pass another eval_model")
        return requested
    if target_model == "mlp":
        return "cnn"
    if image_size <= 32:
        return "mlp"
    return "resnet50" if target_model == "resnet18" else "resnet18"


def train_classifier(
    model: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> Classifier:
    """Plain supervised training (Adam, hard-label cross-entropy), seeded."""
    device = torch.device(device)
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = images.to(device), labels.to(device)
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=rng).to(device)
        for batch in order.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        if progress is not None:
            progress(epoch + 1, epochs)
    return model.eval()


def load_or_train_eval_model(
    dataset_name: str,
    train: Dataset,
    image_shape: tuple[int, int, int],
    num_classes: int,
    target_model: str,
    config: EvalConfig,
    cache_dir: str | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> tuple[Classifier, str]:
    """The cached evaluation model for this private split and config (trained on a miss)."""
    arch = choose_eval_architecture(target_model, image_shape[1], config.model)
    training = {k: v for k, v in asdict(config).items() if k in ("epochs", "batch_size", "lr", "seed")}
    key = {
        "kind": "eval",
        "dataset": dataset_name,
        "train": dataset_fingerprint(train, with_labels=True),
        "shape": list(image_shape),
        "arch": arch,
        "seed": config.seed,
        "config": training,
    }
    path = cache_path(cache_dir, "eval_models", key)
    model = build_model(arch, image_shape, num_classes)
    states = load_cached(path)
    if states is not None:
        try:
            model.load_state_dict(states["model"])
        except (KeyError, RuntimeError):
            raise CheckpointError(f"cached evaluation model {path} does not fit; delete the file to retrain") from None
        return model.to(device).eval(), arch
    log.info("training the %s evaluation model on %d private training images", arch, len(train))  # type: ignore[arg-type]
    images, labels = dataset_tensors(train)
    train_classifier(model, images, labels, config.epochs, config.batch_size, config.lr, config.seed, device, progress)
    save_cached(path, {"model": model.state_dict()}, {"dataset": dataset_name, "arch": arch, **training})
    return model.eval(), arch
