"""The model-inversion scorer (Struppek et al. 2024, §4.1 and Appx. C): Acc@1/Acc@5 by the
judge with a 95 % Wilson interval, the stage-1 prior baseline and the lift over it, the judge's
own accuracy and whether Acc@1 can be trusted, δ_eval, δ_face, ξ_train/ξ_test and FID.

This module and the judge are the only place where private images meet attack images: the
scorer takes the attack's images and attacked classes plus the ground truth (private
train/test tensors); the attack itself never sees either the judge or the private data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from fedls.data.base import chw_shape
from fedls.metrics.judge import Judge, JudgeOptions, judge_reliability, train_classifier
from fedls.models import build_model
from fedls.models.base import Classifier
from fedls.stats import wilson_interval

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
def _batched(
    fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device, batch: int = 512
) -> torch.Tensor:
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
    """ξ (Struppek et al. 2024, §4.1, Appx. C): train a surrogate only on attack images (labelled with their
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
        _notice_once("δ_face skipped: no local VGGFace2 FaceNet weights (set model_attack.evaluation.face_weights to a file)")
        return None
    from facenet_pytorch import InceptionResnetV1

    from fedls.models import load_weights

    net = InceptionResnetV1(pretrained=None, classify=False)
    load_weights(net, Path(weights))
    net.to(device).eval()
    embed = lambda x: net(_to_facenet_input(x))  # noqa: E731 - output is already L2-normalised
    d = nearest_same_class_sq_distance(
        _batched(embed, attack, device, 64), attack_targets, _batched(embed, train, device, 64), train_labels
    )
    return float(d.nanmean())


def frechet_inception_distance(weights: str | None, attack: torch.Tensor, train: torch.Tensor) -> float | None:
    """FID between attack images and private training images; None (with a logged notice)
    unless local Inception weights are given and torchmetrics' FID backend is installed."""
    if weights is None:
        _notice_once("FID skipped: no local Inception weights (set model_attack.evaluation.inception_weights to a weights file)")
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


@torch.no_grad()
def prior_quality(samples: torch.Tensor, judge: Classifier, device: torch.device | str = "cpu") -> dict[str, float]:
    """FID-free quality proxy of the prior with the judge (a classifier trained on real data):

    * ``confidence``: mean top-1 softmax confidence on prior samples,
    * ``class_entropy``: entropy (nats) of the mean predicted class distribution,
    * ``inception_score``: exp(E_x KL(p(y|x) ‖ p(y))), the Inception-Score formula with the
      judge in place of Inception.

    With a class-disjoint prior, low confidence on private classes is expected: the prior draws
    other classes, and that is the point.
    """
    judge.to(device).eval()
    probs = torch.softmax(_batched(judge, samples, torch.device(device)), dim=-1)
    marginal = probs.mean(0)
    kl = (probs * (probs.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(-1)
    return {
        "confidence": float(probs.max(-1).values.mean()),
        "class_entropy": float(-(marginal * marginal.clamp_min(1e-12).log()).sum()),
        "inception_score": float(kl.mean().exp()),
    }


def judged_accuracy(judge: Classifier, images: torch.Tensor, targets: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Acc@1 (with its 95 % Wilson interval), Acc@5 and mean judge confidence of ``images``
    labelled with their attacked classes."""
    logits = _batched(judge, images, device)
    hits = int((logits.argmax(-1) == targets).sum())
    low, high = wilson_interval(hits, len(targets)) if len(targets) else (float("nan"), float("nan"))
    return {
        "acc1": hits / max(len(targets), 1),
        "acc1_low": low,
        "acc1_high": high,
        "acc5": accuracy_at_k(logits, targets, 5),
        "eval_confidence": float(torch.softmax(logits, -1)[torch.arange(len(targets)), targets].mean()),
    }


def score_inversion(
    attack: torch.Tensor,
    attack_targets: torch.Tensor,
    baseline: torch.Tensor,
    baseline_targets: torch.Tensor,
    judge: Judge,
    target_accuracy: float,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    options: JudgeOptions,
    device: torch.device | str = "cpu",
    extraction: bool = True,
) -> dict[str, float]:
    """Every model-inversion number for one attack, with its controls.

    ``attack``/``attack_targets``: the attack images and their attacked classes; ``baseline``:
    the best stage-1 prior samples per class (before optimisation), judged the same way, so
    ``lift = acc1 − baseline_acc1`` is what the optimisation extracted beyond picking prior
    samples. ``train``/``test``: private images and labels (ground truth). ``target_accuracy``:
    the attacked model's private-test accuracy; ``acc1_reliable`` is 0 (and a warning is
    logged) when the judge is more than ``options.reliability_margin`` below it.
    ``extraction=False`` skips ξ (surrogate training) for quick controls.
    """
    device = torch.device(device)
    judge.model.to(device).eval()
    metrics = judged_accuracy(judge.model, attack, attack_targets, device)
    base = judged_accuracy(judge.model, baseline, baseline_targets, device)
    reliable = judge_reliability(judge.test_accuracy, target_accuracy, options.reliability_margin)
    if not reliable:
        log.warning(
            "model inversion: the judge (%s, %.1f %% test accuracy) is more than %.0f points below the target (%.1f %%); "
            "Acc@1 is unreliable (acc1_reliable = 0): train the judge longer (model_attack.evaluation.epochs)",
            judge.arch, 100 * judge.test_accuracy, 100 * options.reliability_margin, 100 * target_accuracy,
        )
    metrics.update({
        "num_images": float(len(attack_targets)),
        "baseline_acc1": base["acc1"],
        "baseline_acc1_low": base["acc1_low"],
        "baseline_acc1_high": base["acc1_high"],
        "baseline_num_images": float(len(baseline_targets)),
        "lift": metrics["acc1"] - base["acc1"],
        "judge_accuracy": judge.test_accuracy,
        "target_accuracy": target_accuracy,
        "acc1_reliable": float(reliable),
        "chance": 1.0 / max(len(attack_targets.unique()), 1),
        "delta_eval": feature_distance(judge.model, attack, attack_targets, train[0], train[1], device),
    })
    if extraction:
        surrogate = judge.arch if options.surrogate_model == "auto" else options.surrogate_model
        metrics.update(knowledge_extraction_scores(attack, attack_targets, surrogate, train, test, options, device))
    face = face_distance(options.face_weights, attack, attack_targets, train[0], train[1], device)
    if face is not None:
        metrics["delta_face"] = face
    fid = frechet_inception_distance(options.inception_weights, attack, train[0])
    if fid is not None:
        metrics["fid"] = fid
    return metrics


def knowledge_extraction_scores(
    attack: torch.Tensor,
    attack_targets: torch.Tensor,
    surrogate_arch: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    options: JudgeOptions,
    device: torch.device,
) -> dict[str, float]:
    """ξ_train and ξ_test with surrogates of ``surrogate_arch`` (see :func:`knowledge_extraction`)."""
    from fedls.metrics.judge import JUDGE_ARCH, build_judge

    shape = chw_shape(attack)
    num_classes = int(max(int(train[1].max()), int(attack_targets.max())) + 1)
    return knowledge_extraction(
        attack,
        attack_targets,
        {"xi_train": train, "xi_test": test},
        lambda: build_judge(surrogate_arch, shape, num_classes)
        if surrogate_arch == JUDGE_ARCH else build_model(surrogate_arch, shape, num_classes),
        lambda model, x, y, seed: train_classifier(
            model, x, y, options.surrogate_epochs, options.batch_size, options.lr, seed, device
        ),
        options.surrogate_inits,
        options.seed + 1000,
        device,
    )
