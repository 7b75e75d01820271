"""The judge of model inversion: a strong classifier, unlike the target, trained on the private data.

Struppek et al. 2024 (§4.1 "Attack Accuracy", Appx. B.2) judge attack images with a separately
trained evaluation model of a different architecture (Inception-v3, 93–96 % test accuracy),
standing in for a human who knows the private classes. A weak judge makes Acc@1 meaningless
(blobs can be "recognised" by a two-layer MLP), so fedls' judge is

* convolutional and different from every target architecture: :class:`JudgeNet` (VGG-style
  stacks of 3×3 conv–BatchNorm–ReLU with max pooling, dropout, no global pooling) for inputs
  up to 32 px, a ResNet of another depth than the target's above;
* trained with augmentation (random shifts, small rotations and scalings; flips only where
  the classes are flip-invariant, never for digits);
* cached on disk, and its private-test accuracy is reported with every result
  (:func:`judge_reliability` flags Acc@1 as unreliable when the judge is weaker than the target).

The judge is a scorer: only :mod:`fedls.metrics` and the federation's observers use it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fedls.cache import cache_path, cached_measurement, dataset_fingerprint, load_cached, remember_measurement, save_cached
from fedls.data import ImageDataset, dataset_tensors
from fedls.errors import CheckpointError, ConfigError
from fedls.models import MODELS, build_model
from fedls.models.base import Classifier
from fedls.schema import Options

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)
JUDGE_ARCH = "judgenet"  # JudgeNet's name in cache keys and reports


class JudgeOptions(Options):
    """``[model_attack.evaluation]``: the judge, the knowledge-extraction surrogates (ξ) and
    optional local weights for δ_face and FID."""

    model: str = Field("auto", description="judge architecture; auto = JudgeNet up to 32 px, else a ResNet unlike the target")
    epochs: int = Field(40, ge=1, le=10_000, description="judge training epochs")
    batch_size: int = Field(64, ge=1, le=65536, description="judge and surrogate batch size")
    lr: float = Field(1e-3, gt=0, le=1, description="judge and surrogate Adam learning rate")
    augment: bool = Field(True, description="train the judge with random shifts, rotations and scalings")
    flip: bool = Field(False, description="also flip horizontally while training the judge (not for digits)")
    seed: int = Field(0, ge=0, description="judge training seed")
    reliability_margin: float = Field(
        0.05, ge=0, le=1,
        description="Acc@1 is flagged unreliable when the judge's test accuracy is below the target's minus this",
    )
    surrogate_model: str = Field("auto", description="ξ surrogate architecture; auto = the judge's")
    surrogate_inits: int = Field(3, ge=1, le=100, description="surrogate initialisations for ξ")
    surrogate_epochs: int = Field(60, ge=1, le=10_000, description="surrogate training epochs")
    face_weights: str | None = Field(None, description="local VGGFace2 InceptionResnetV1 state_dict for δ_face")
    inception_weights: str | None = Field(None, description="local Inception weights for FID")


class JudgeNet(Classifier):
    """VGG-style judge for small inputs: two stages of two 3×3 conv–BatchNorm–ReLU layers with
    max pooling, flattened spatial features (no global pooling), a dropout MLP neck.

    It differs from the targets on purpose: ``cnn`` uses GroupNorm, single convolutions per
    stage and global average pooling; ``mlp`` has no convolutions."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: int = 48, feature_dim: int = 256) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.stages = nn.ModuleList([stage(in_channels, width), stage(width, 2 * width)])
        side = image_size // 4
        self.neck = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * width * side * side, feature_dim), nn.ReLU(), nn.Dropout(0.3)
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features_and_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = []
        for block in self.stages:
            x = block(x)
            hidden.append(x)
        return self.neck(x), hidden


def choose_judge_architecture(target_model: str, image_size: int, requested: str = "auto") -> str:
    """``requested`` unless "auto": :class:`JudgeNet` for inputs ≤ 32 px, otherwise a ResNet of
    another depth than the target's. The target's own architecture is refused."""
    if requested != "auto":
        if requested != JUDGE_ARCH:
            MODELS.get(requested)
        if requested == target_model:
            raise ConfigError(f"model_attack.evaluation.model: the judge must differ from the target ({target_model})")
        return requested
    if image_size <= 32:
        if image_size < 4:
            raise ConfigError(f"the judge needs inputs of at least 4 px (got {image_size})")
        return JUDGE_ARCH
    return "resnet50" if target_model == "resnet18" else "resnet18"


def build_judge(arch: str, image_shape: tuple[int, int, int], num_classes: int) -> Classifier:
    channels, size, _ = image_shape
    if arch == JUDGE_ARCH:
        return JudgeNet(channels, size, num_classes)
    return build_model(arch, image_shape, num_classes)


def augment_batch(images: torch.Tensor, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random affine jitter per image: shift up to 1/8 of the side, rotation ±12°, scale 0.9–1.1,
    optional horizontal flip. One resampling keeps it cheap on CPUs."""
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(12)
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.25  # [-1, 1] coordinates: 1/8 of the side
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / scale * sign
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale * sign
    theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    # background is -1 in fedls' [-1, 1] images: pad with it rather than with grey zeros
    return F.grid_sample(images + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


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
    augment: bool = False,
    flip: bool = False,
) -> Classifier:
    """Supervised training (Adam, hard-label cross-entropy, cosine learning-rate decay), seeded;
    ``augment`` applies :func:`augment_batch` to every batch."""
    device = torch.device(device)
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(labels) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    x, y = images.to(device), labels.to(device)
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=rng).to(device)
        for batch in order.split(batch_size):
            if len(batch) < 2 and len(y) >= 2:
                continue  # BatchNorm cannot train on a single image
            inputs = augment_batch(x[batch], flip, rng) if augment else x[batch]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), y[batch]).backward()
            optimizer.step()
            schedule.step()
        if progress is not None:
            progress(epoch + 1, epochs)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on a labelled tensor set (batched)."""
    model.to(device).eval()
    correct = 0
    for x, y in zip(images.split(512), labels.split(512), strict=True):
        correct += int((model(x.to(device)).argmax(-1).cpu() == y).sum())
    return correct / max(len(labels), 1)


class Judge:
    """A trained judge with its architecture and private-test accuracy."""

    def __init__(self, model: Classifier, arch: str, test_accuracy: float, cache_file: str | None = None) -> None:
        self.model = model
        self.arch = arch
        self.test_accuracy = test_accuracy
        self.cache_file = cache_file


def load_or_train_judge(
    dataset_name: str,
    train: ImageDataset,
    test: ImageDataset,
    image_shape: tuple[int, int, int],
    num_classes: int,
    target_model: str,
    options: JudgeOptions,
    cache_dir: str | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> Judge:
    """The cached judge for this private split and these options (trained on a miss), with its
    accuracy on the private test split (measured once per test split and kept in the cache)."""
    arch = choose_judge_architecture(target_model, image_shape[1], options.model)
    training = options.model_dump(include={"epochs", "batch_size", "lr", "augment", "flip", "seed"})
    key = {
        "kind": "judge",
        "dataset": dataset_name,
        "train": dataset_fingerprint(train, with_labels=True),
        "shape": list(image_shape),
        "classes": num_classes,
        "arch": arch,
        "config": training,
    }
    path = cache_path(cache_dir, "judges", key)
    model = build_judge(arch, image_shape, num_classes)
    states = load_cached(path)
    if states is not None:
        try:
            model.load_state_dict(states["model"])
        except (KeyError, RuntimeError):
            raise CheckpointError(f"cached judge {path} does not fit; delete the file to retrain") from None
    else:
        log.info("training the %s judge on %d private training images", arch, len(train))
        images, labels = dataset_tensors(train)
        train_classifier(model, images, labels, options.epochs, options.batch_size, options.lr, options.seed, device,
                         progress, augment=options.augment, flip=options.flip)
        save_cached(path, {"model": model.state_dict()}, {"dataset": dataset_name, "arch": arch, **training})
    # Measured once per weights file, test split and device kind (a run loads the judge twice,
    # and on Fashion-MNIST or CIFAR the test split costs seconds).
    weights = path.stat()
    measured_on = (f"test_accuracy:{dataset_fingerprint(test, with_labels=True)}:{torch.device(device).type}:"
                   f"{weights.st_size}:{weights.st_mtime_ns}")
    test_accuracy = cached_measurement(path, measured_on)
    if test_accuracy is None:
        x_test, y_test = dataset_tensors(test)
        test_accuracy = accuracy(model, x_test, y_test, device)
        remember_measurement(path, measured_on, test_accuracy)
    log.info("judge %s: %.1f %% private test accuracy", arch, 100 * test_accuracy)
    return Judge(model.to(device).eval(), arch, test_accuracy, str(path))


def judge_reliability(judge_accuracy: float, target_accuracy: float, margin: float) -> bool:
    """Acc@1 is trusted only when the judge is not much weaker than the target on the same
    private test data: ``judge_accuracy >= target_accuracy - margin``. A weaker judge than the
    model it judges cannot tell a good reconstruction from a texture that fools it."""
    return judge_accuracy >= target_accuracy - margin
