"""Model-inversion metrics (seed 001 §4.1 and Appx. C): Acc@1/Acc@5, δ_eval, δ_face,
ξ_train/ξ_test and FID. These are the only place private training images meet attack images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from fedls.attacks.model.config import EvalConfig
from fedls.models.base import Classifier

log = logging.getLogger(__name__)
_noticed: set[str] = set()


def _notice_once(message: str) -> None:
    """A skipped metric is announced once per process, not every attacked round."""
    if message not in _noticed:
        _noticed.add(message)
        log.info(message)


def accuracy_at_k(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Fraction of images whose attacked class is among the evaluation model's top-k."""
    k = min(k, logits.shape[-1])
    return float((logits.topk(k, dim=-1).indices == targets[:, None]).any(-1).float().mean())


def nearest_same_class_sq_distance(
    query: torch.Tensor, query_labels: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor
) -> torch.Tensor:
    """For each query feature, the squared L2 distance to the nearest reference feature of the
    same class (δ_eval / δ_face before averaging). Classes without references give NaN."""
    out = torch.full((len(query),), float("nan"))
    for c in query_labels.unique().tolist():
        q = query_labels == c
        ref = reference[reference_labels == c]
        if len(ref) == 0:
            continue
        out[q] = torch.cdist(query[q].double(), ref.double()).pow(2).min(dim=1).values.float()
    return out


@torch.no_grad()
def _batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device, batch: int = 512) -> torch.Tensor:
    return torch.cat([fn(chunk.to(device)).float().cpu() for chunk in images.split(batch)])


def feature_distance(
    model: Classifier, attack: torch.Tensor, attack_targets: torch.Tensor, train: torch.Tensor, train_labels: torch.Tensor,
    device: torch.device,
) -> float:
    """δ_eval: mean squared L2 distance in the evaluation model's penultimate features from each
    attack image to the nearest private training image of its class."""
    model.to(device).eval()
    d = nearest_same_class_sq_distance(
        _batched(model.features, attack, device), attack_targets, _batched(model.features, train, device), train_labels
    )
    return float(d.nanmean())


def knowledge_extraction(
    attack: torch.Tensor,
    attack_targets: torch.Tensor,
    evaluation_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
    make_model: Callable[[], Classifier],
    train: Callable[[Classifier, torch.Tensor, torch.Tensor, int], Classifier],
    inits: int,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """ξ (seed 001 §4.1, Appx. C): train a surrogate only on attack images (labelled with their
    attacked class) and measure its top-1 accuracy on real data. Real data is restricted to the
    attacked classes and predictions to those classes, so attacking a subset is scored fairly.
    Repeated for ``inits`` surrogate initialisations; returns ``{name}`` (mean) and
    ``{name}_std`` for every evaluation set."""
    classes = attack_targets.unique()
    results: dict[str, list[float]] = {name: [] for name in evaluation_sets}
    for i in range(inits):
        torch.manual_seed(seed + i)
        surrogate = train(make_model(), attack, attack_targets, seed + i).to(device).eval()
        for name, (images, labels) in evaluation_sets.items():
            keep = torch.isin(labels, classes)
            logits = _batched(surrogate, images[keep], device)[:, classes]
            predicted = classes[logits.argmax(-1)]
            results[name].append(float((predicted == labels[keep]).float().mean()))
    out: dict[str, float] = {}
    for name, values in results.items():
        t = torch.tensor(values)
        out[name] = float(t.mean())
        out[f"{name}_std"] = float(t.std()) if len(values) > 1 else 0.0
    return out


def _to_facenet_input(images: torch.Tensor) -> torch.Tensor:
    x = images if images.shape[1] == 3 else images.repeat(1, 3, 1, 1)
    return F.interpolate(x, size=(160, 160), mode="bilinear", align_corners=False)


def face_distance(
    weights: str | None, attack: torch.Tensor, attack_targets: torch.Tensor, train: torch.Tensor, train_labels: torch.Tensor,
    device: torch.device,
) -> float | None:
    """δ_face: as δ_eval in FaceNet space (InceptionResnetV1 trained on VGGFace2, 512-d L2-normalised
    embeddings, 160 px inputs in [-1, 1]). None (with a logged notice) without a local weights file."""
    if weights is None:
        _notice_once("δ_face skipped: no local VGGFace2 FaceNet weights (set eval_face_weights to a state_dict file)")
        return None
    from facenet_pytorch import InceptionResnetV1

    from fedls.models import load_weights

    net = InceptionResnetV1(pretrained=None, classify=False)
    load_weights(net, Path(weights))
    net.to(device).eval()
    embed = lambda x: net(_to_facenet_input(x))  # noqa: E731 - output is already L2-normalised
    d = nearest_same_class_sq_distance(_batched(embed, attack, device, 64), attack_targets, _batched(embed, train, device, 64), train_labels)
    return float(d.nanmean())


def frechet_inception_distance(weights: str | None, attack: torch.Tensor, train: torch.Tensor) -> float | None:
    """FID between attack images and private training images; None (with a logged notice)
    unless local Inception weights are given and torchmetrics' FID backend is installed."""
    if weights is None:
        _notice_once("FID skipped: no local Inception weights (set eval_inception_weights to a weights file)")
        return None
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        fid = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=weights)
    except Exception as exc:  # noqa: BLE001 - missing torch-fidelity or unreadable weights
        log.warning("FID skipped: %s", exc)
        return None

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = (x.clamp(-1, 1) + 1) / 2
        return x if x.shape[1] == 3 else x.repeat(1, 3, 1, 1)

    fid.update(prep(train), real=True)
    fid.update(prep(attack), real=False)
    return float(fid.compute())


def evaluate_inversion(
    attack: torch.Tensor,
    attack_targets: torch.Tensor,
    eval_model: Classifier,
    surrogate_arch: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    config: EvalConfig,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """All inversion metrics for one attack. ``train``/``test``: private images and labels
    (ground truth, metrics only). Keys: acc1, acc5, delta_eval, xi_train(_std), xi_test(_std),
    and delta_face / fid when their local weights exist."""
    from fedls.attacks.model.evaluation_model import train_classifier
    from fedls.models import build_model

    device = torch.device(device)
    eval_model.to(device).eval()
    logits = _batched(eval_model, attack, device)
    shape = tuple(attack.shape[1:])
    metrics = {
        "acc1": accuracy_at_k(logits, attack_targets, 1),
        "acc5": accuracy_at_k(logits, attack_targets, 5),
        "eval_confidence": float(torch.softmax(logits, -1)[torch.arange(len(attack_targets)), attack_targets].mean()),
        "delta_eval": feature_distance(eval_model, attack, attack_targets, train[0], train[1], device),
    }
    num_classes = int(logits.shape[-1])
    metrics.update(
        knowledge_extraction(
            attack,
            attack_targets,
            {"xi_train": train, "xi_test": test},
            lambda: build_model(surrogate_arch, shape, num_classes),  # type: ignore[arg-type]
            lambda model, x, y, seed: train_classifier(
                model, x, y, config.surrogate_epochs, config.batch_size, config.lr, seed, device
            ),
            config.surrogate_inits,
            config.seed + 1000,
            device,
        )
    )
    face = face_distance(config.face_weights, attack, attack_targets, train[0], train[1], device)
    if face is not None:
        metrics["delta_face"] = face
    fid = frechet_inception_distance(config.inception_weights, attack, train[0])
    if fid is not None:
        metrics["fid"] = fid
    return metrics
