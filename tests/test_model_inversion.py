"""Model inversion (Struppek et al. 2024, §4.4, Appx. B.4): losses, scorer, judge, prior, attack, threat model."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch

from fedls.attacks.model.config import PPAOptions, PriorOptions
from fedls.attacks.model.losses import logit_margin_loss, normalised_margin, poincare_loss
from fedls.attacks.model.ppa import class_scores, optimise_latents, run_ppa, sample_latents, select_results
from fedls.attacks.model.prior import load_or_train_prior, public_images, sample_prior, train_prior
from fedls.data import dataset_tensors, load_dataset
from fedls.errors import CheckpointError, ConfigError, DataError
from fedls.metrics.inversion import (
    accuracy_at_k,
    knowledge_extraction,
    nearest_same_class_sq_distance,
    score_inversion,
)
from fedls.metrics.judge import (
    JUDGE_ARCH,
    Judge,
    JudgeNet,
    JudgeOptions,
    choose_judge_architecture,
    load_or_train_judge,
    train_classifier,
)
from fedls.models import build_model
from fedls.smoothing import label_smoothing_loss
from fedls.stats import wilson_interval


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fedls-cache")


@pytest.fixture(scope="module")
def target(digits):
    """A small CNN trained centrally on the private digits (0–4) with α = 0.1."""
    x, y = dataset_tensors(digits.train)
    torch.manual_seed(0)
    model = build_model("cnn", digits.image_shape, digits.num_classes)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        for b in torch.randperm(len(y), generator=g).split(32):
            opt.zero_grad()
            label_smoothing_loss(model(x[b]), y[b], 0.1).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def prior(digits, cache):
    return load_or_train_prior("digits", digits.public, digits.image_shape, PriorOptions(steps=600), cache_dir=cache)


FAST = dict(pool_size=500, candidates_per_class=8, samples_per_class=5, steps=30, selection_augmentations=8)


def test_poincare_loss_matches_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    targets = torch.tensor([0, 1])
    got = poincare_loss(logits, targets)
    for i in range(2):
        u = logits[i] / logits[i].abs().sum()
        v = torch.zeros(3)
        v[targets[i]] = 0.9999
        arg = 1 + 2 * float(((u - v) ** 2).sum()) / ((1 - float((u**2).sum())) * (1 - float((v**2).sum())))
        assert got[i].item() == pytest.approx(math.acosh(arg), rel=1e-5)
    # confident on the target → smaller distance than confident elsewhere
    zero = torch.tensor([0])
    assert poincare_loss(torch.tensor([[5.0, 0.0, 0.0]]), zero) < poincare_loss(torch.tensor([[0.0, 5.0, 0.0]]), zero)


def test_nearest_same_class_distance_hand_made():
    query = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    qlab = torch.tensor([0, 1])
    ref = torch.tensor([[1.0, 0.0], [0.0, 3.0], [10.0, 0.5], [0.0, 0.1]])
    rlab = torch.tensor([0, 0, 1, 1])  # the closest point to query 0 overall ([0, 0.1]) is class 1: ignored
    d = nearest_same_class_sq_distance(query, qlab, ref, rlab)
    assert d.tolist() == pytest.approx([1.0, 0.25])


def test_accuracy_at_k():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert accuracy_at_k(logits, torch.tensor([1, 2]), 1) == 0.5
    assert accuracy_at_k(logits, torch.tensor([1, 1]), 2) == 1.0


def _knowledge(attack_labels: torch.Tensor) -> dict[str, float]:
    # two "classes": dark and bright 1×4×4 images; real data follows the same rule
    attack = torch.cat([torch.full((6, 1, 4, 4), -0.8), torch.full((6, 1, 4, 4), 0.8)]) + 0.05 * torch.randn(12, 1, 4, 4)
    real = torch.cat([torch.full((5, 1, 4, 4), -0.7), torch.full((5, 1, 4, 4), 0.7)])
    real_labels = torch.tensor([0] * 5 + [1] * 5)
    return knowledge_extraction(
        attack, attack_labels, {"xi": (real, real_labels)},
        lambda: build_model("mlp", (1, 4, 4), 2),
        lambda m, x, y, seed: train_classifier(m, x, y, 40, 4, 1e-2, seed),
        inits=3, seed=0, device=torch.device("cpu"),
    )


def test_knowledge_extraction_hand_made():
    torch.manual_seed(0)
    right = _knowledge(torch.tensor([0] * 6 + [1] * 6))
    wrong = _knowledge(torch.tensor([1] * 6 + [0] * 6))  # attack images depict the other class
    assert right["xi"] == 1.0 and right["xi_std"] == 0.0
    assert wrong["xi"] == 0.0


def test_logit_margin_is_scale_invariant_and_ranks_like_the_margin():
    torch.manual_seed(0)
    logits = torch.randn(6, 5)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    margin = normalised_margin(logits, targets)
    # negative smoothing inflates logits: scaling by 1000 (and shifting) must change nothing
    assert torch.allclose(normalised_margin(1000 * logits + 7, targets), margin, atol=1e-5)
    assert torch.allclose(logit_margin_loss(logits, targets), -margin)
    by_hand = [(logits[i, t] - torch.cat([logits[i, :t], logits[i, t + 1:]]).max()) / (logits[i] - logits[i].mean()).norm()
               for i, t in enumerate(targets.tolist())]
    assert margin.tolist() == pytest.approx([float(v) for v in by_hand], rel=1e-5)
    # margin ranking scores every class; softmax confidence saturates on inflated logits, the margin does not
    inflated = torch.tensor([[400.0, 0.0, 0.0], [800.0, 0.0, 0.0]])
    assert torch.equal(class_scores(inflated, "confidence")[:, 0], torch.ones(2))
    scores = class_scores(torch.tensor([[4.0, 0.0, 0.0], [8.0, 0.0, 1.0]]), "margin")
    assert scores.shape == (2, 3) and scores[0, 0] > 0 > scores[0, 1]
    assert torch.allclose(class_scores(inflated, "margin"), class_scores(inflated / 400, "margin"))


def test_wilson_interval_hand_made():
    low, high = wilson_interval(8, 10)  # textbook value: 0.8 of 10 → [0.490, 0.943]
    assert (low, high) == (pytest.approx(0.4902, abs=1e-3), pytest.approx(0.9433, abs=1e-3))
    assert wilson_interval(0, 20)[0] == 0.0 and 0.1 < wilson_interval(0, 20)[1] < 0.2
    assert wilson_interval(50, 50)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_judge_architecture_is_convolutional_and_unlike_the_target():
    assert choose_judge_architecture("cnn", 8) == JUDGE_ARCH and choose_judge_architecture("mlp", 28) == JUDGE_ARCH
    assert choose_judge_architecture("resnet18", 64) == "resnet50"
    assert choose_judge_architecture("resnet152", 224) == "resnet18"
    with pytest.raises(ConfigError, match="must differ from the target"):
        choose_judge_architecture("cnn", 8, "cnn")
    judge = JudgeNet(1, 8, 5)
    assert any(isinstance(m, torch.nn.Conv2d) for m in judge.modules())
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(judge.eval()(x), judge.head(judge.features(x)), atol=1e-5)


def test_judge_is_cached_and_its_accuracy_reported(digits, cache):
    options = JudgeOptions(epochs=15)
    judge = load_or_train_judge("digits", digits.train, digits.test, digits.image_shape, 5, "cnn", options, cache_dir=cache)
    assert judge.arch == JUDGE_ARCH and judge.test_accuracy >= 0.95  # 5 digit classes: a strong judge
    again = load_or_train_judge("digits", digits.train, digits.test, digits.image_shape, 5, "cnn", options, cache_dir=cache)
    assert again.test_accuracy == judge.test_accuracy
    for a, b in zip(judge.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_judge_accuracy_is_measured_once_per_test_split_and_weights(digits, cache, monkeypatch):
    from fedls.data import ArrayDataset
    from fedls.metrics import judge as judge_module

    options = JudgeOptions(epochs=2)
    load = lambda test: load_or_train_judge("digits", digits.train, test, digits.image_shape, 5, "cnn", options,  # noqa: E731
                                            cache_dir=cache)
    first = load(digits.test)
    measured: list[int] = []
    real_accuracy = judge_module.accuracy

    def counted_accuracy(model, x, y, device):
        measured.append(len(y))
        return real_accuracy(model, x, y, device)

    monkeypatch.setattr(judge_module, "accuracy", counted_accuracy)
    assert load(digits.test).test_accuracy == first.test_accuracy and measured == []  # kept beside the weights
    x, y = dataset_tensors(digits.test)
    half = ArrayDataset(x[: len(y) // 2], y[: len(y) // 2])
    load(half)
    assert measured == [len(y) // 2]  # another test split is measured, not read
    weights = Path(first.cache_file)
    torch.save(torch.load(weights, weights_only=True), weights)  # new weights (same values, a new file)
    assert load(digits.test).test_accuracy == first.test_accuracy and measured == [len(y) // 2, len(y)]


def test_weak_judge_flags_acc1_unreliable(digits, caplog):
    x, y = dataset_tensors(digits.test)
    weak = Judge(build_model("mlp", digits.image_shape, 5), "mlp", test_accuracy=0.80)
    common = (x[:10], y[:10], x[:5], y[:5])
    options = JudgeOptions()
    with caplog.at_level("WARNING"):
        flagged = score_inversion(*common, weak, 0.97, (x, y), (x, y), options, extraction=False)
    assert flagged["acc1_reliable"] == 0.0 and flagged["judge_accuracy"] == 0.80
    assert "unreliable" in caplog.text
    assert score_inversion(*common, weak, 0.84, (x, y), (x, y), options, extraction=False)["acc1_reliable"] == 1.0
    lenient = JudgeOptions(reliability_margin=0.2)
    assert score_inversion(*common, weak, 0.97, (x, y), (x, y), lenient, extraction=False)["acc1_reliable"] == 1.0


def test_scorer_reports_interval_baseline_and_lift(digits):
    """Real test images as 'attack' images, and a baseline of wrongly labelled ones: a perfect
    judge gives Acc@1 1 and baseline 0, so the lift is 1."""
    x, y = dataset_tensors(digits.test)

    class Oracle(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = {tuple(img.flatten().tolist()): int(label) for img, label in zip(x, y, strict=True)}

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.tensor([self.table[tuple(i.flatten().tolist())] for i in images]), 5).float()

        def features(self, images: torch.Tensor) -> torch.Tensor:
            return images.flatten(1)

    judge = Judge(Oracle(), "oracle", test_accuracy=1.0)  # type: ignore[arg-type]
    metrics = score_inversion(x[:40], y[:40], x[:20], (y[:20] + 1) % 5, judge, 0.99, (x, y), (x, y), JudgeOptions(),
                              extraction=False)
    assert metrics["acc1"] == 1.0 and metrics["baseline_acc1"] == 0.0 and metrics["lift"] == 1.0
    assert metrics["num_images"] == 40 and metrics["baseline_num_images"] == 20
    assert (metrics["acc1_low"], metrics["acc1_high"]) == pytest.approx(wilson_interval(40, 40))
    assert metrics["delta_eval"] == 0.0  # attack images are training images of their class


def test_prior_trains_generates_and_is_cached(digits, tmp_path):
    images = public_images(digits.public)
    assert images.shape[1:] == digits.image_shape
    cfg = PriorOptions(steps=5, batch_size=16)
    first = load_or_train_prior("digits", digits.public, digits.image_shape, cfg, cache_dir=tmp_path)
    samples = sample_prior(first, 12)
    assert samples.shape == (12, *digits.image_shape)
    assert samples.min() >= -1 and samples.max() <= 1
    assert first.cache_file is not None and first.cache_file.is_file()
    again = load_or_train_prior("digits", digits.public, digits.image_shape, cfg, cache_dir=tmp_path)
    assert torch.equal(sample_prior(again, 12), samples)  # loaded, not retrained with other weights
    first.cache_file.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="delete the file"):
        load_or_train_prior("digits", digits.public, digits.image_shape, cfg, cache_dir=tmp_path)
    with pytest.raises(DataError, match="at least 2 public images"):
        train_prior(images[:1], cfg)


def test_attack_beats_chance_on_smoothed_digits(digits, target, prior, cache):
    result = run_ppa(target, prior, digits.num_classes, PPAOptions(**FAST))
    assert result.images.shape == (25, *digits.image_shape)
    assert result.targets.tolist() == [c for c in range(5) for _ in range(5)]
    assert result.baseline_images.shape == (25, *digits.image_shape)
    assert torch.equal(result.baseline_targets, result.targets)
    assert len(result.grad_cosine_mean) == FAST["steps"] - 1
    assert result.final_confidence.mean() > result.initial_confidence.mean()  # the optimisation helps the target's belief
    judge = load_or_train_judge("digits", digits.train, digits.test, digits.image_shape, 5, "cnn", JudgeOptions(epochs=15),
                                cache_dir=cache)
    metrics = score_inversion(
        result.images, result.targets, result.baseline_images, result.baseline_targets, judge, 0.99,
        dataset_tensors(digits.train), dataset_tensors(digits.test), JudgeOptions(surrogate_inits=2),
    )
    # the prior never saw digits 0-4 and chance is 0.2
    assert metrics["acc1"] >= 0.5 and metrics["acc1_low"] > 0.2
    assert metrics["xi_train"] > 0.3 and metrics["delta_eval"] > 0


def test_same_seed_same_attack(digits, target, prior):
    cfg = PPAOptions(**{**FAST, "steps": 5, "classes": 3})
    a = run_ppa(target, prior, 5, cfg)
    b = run_ppa(target, prior, 5, cfg)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert a.grad_cosine_mean == b.grad_cosine_mean
    c = run_ppa(target, prior, 5, PPAOptions(**{**FAST, "steps": 5, "classes": 3, "seed": 1}))
    assert not torch.equal(a.images, c.images)


def test_attack_functions_take_no_ground_truth():
    allowed = {"target", "prior", "num_classes", "config", "device", "progress", "rng", "latents", "targets", "classes"}
    for fn in (run_ppa, sample_latents, optimise_latents, select_results):
        params = set(inspect.signature(fn).parameters)
        assert params <= allowed, f"{fn.__name__} takes {params - allowed}"
    # "targets" in stage 2/3 are the attacked classes, chosen by the attacker
    assert set(inspect.signature(run_ppa).parameters) == {"target", "prior", "num_classes", "config", "device", "progress"}


@pytest.mark.parametrize(("loss", "ranking"), [("ce", "confidence"), ("gmi", "confidence"), ("logit-margin", "margin")])
def test_alternative_losses_run(digits, target, prior, loss, ranking):
    cfg = PPAOptions(**{**FAST, "steps": 3, "classes": [2], "loss": loss, "ranking": ranking})
    result = run_ppa(target, prior, 5, cfg)
    assert result.targets.tolist() == [2] * 5 and len(result.loss_curve) == 3
    assert all(math.isfinite(v) for v in result.loss_curve)


def test_gmi_needs_a_discriminator(target, prior):
    from fedls.attacks.model.prior import Prior

    with pytest.raises(ConfigError, match="discriminator"):
        run_ppa(target, Prior(prior.generator), 5, PPAOptions(**{**FAST, "steps": 1, "loss": "gmi"}))


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 32), (3, 64)])
def test_dcgan_adapts_to_resolution(channels, size):
    from fedls.attacks.model.prior import build_dcgan

    gen, disc = build_dcgan(PriorOptions(latent_dim=16, width=32), (channels, size, size))
    images = gen.eval()(torch.randn(3, 16))
    assert images.shape == (3, channels, size, size) and images.abs().max() <= 1
    assert disc(images).shape == (3,)


def test_face_distance_with_local_weights(tmp_path):
    """δ_face path with a (randomly initialised) local InceptionResnetV1 file; None without one."""
    from facenet_pytorch import InceptionResnetV1

    from fedls.metrics.inversion import face_distance

    torch.manual_seed(0)
    weights = tmp_path / "facenet.pt"
    torch.save(InceptionResnetV1(pretrained=None, classify=False).state_dict(), weights)
    attack = torch.rand(2, 3, 16, 16) * 2 - 1
    train = torch.cat([attack[:1], torch.rand(2, 3, 16, 16) * 2 - 1])
    labels = torch.tensor([0, 0, 1])
    d = face_distance(str(weights), attack, torch.tensor([0, 1]), train, labels, torch.device("cpu"))
    assert d is not None and 0 <= d <= 4  # squared distance of unit vectors; attack[0] is in the train set
    assert face_distance(None, attack, torch.tensor([0, 1]), train, labels, torch.device("cpu")) is None


def test_attack_package_imports_no_scorer_federation_or_cli():
    """The threat-model boundary as imports: the attack cannot reach the judge, the private data
    handling of the scorer, the federation or the CLI."""
    import ast
    from pathlib import Path

    import fedls.attacks.model as package

    forbidden = ("fedls.metrics", "fedls.federation", "fedls.cli", "fedls.studies", "strategies")
    for path in Path(package.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
