"""The 2-D toy example of Struppek et al. (2024) §3 (Fig. 1) and Appx. B.6 (details, Fig. 8).

Three Gaussian classes in the plane; a 3-layer MLP (2 → 20 → 20 → 3, BatchNorm after the
first and second linear layers, each followed by ReLU) is trained with label smoothing
factor α by full-batch SGD (lr 0.001, momentum 0.9, 5000 iterations). A model inversion
attack in its simplest form then starts from a fixed point of the *source* class and
optimises the input itself by plain SGD (lr 0.1) on the cross-entropy toward the *target*
class, until the target confidence exceeds 95% (Fig. 1) or for a fixed 5000 steps
(Fig. 8). The attack is scored by the L2 distance of its result to the nearest training
point of the target class: the closer, the more the model leaked about where that class's
data lies.

Every (seed, α) pair is one model, and all of them are trained and attacked *at once*:
the parameters carry a leading model dimension and the loss is the sum of the per-model
losses, so each model's gradient — and hence its SGD trajectory — is exactly what it
would be if trained alone. Models of one seed share data and initial weights, so α is the
only difference between them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedls.errors import ConfigError
from fedls.smoothing import smoothed_targets, soft_target_cross_entropy, validate_alpha
from fedls.training.seeding import derive_seed

log = logging.getLogger(__name__)

# Class names follow Fig. 1; the geometry is ours (the paper does not give coordinates).
CLASS_NAMES = ("blue squares", "green circles", "orange pentagons")
# Equilateral-ish triangle: "blue" on top, "green" bottom-left, "orange" bottom-right.
DEFAULT_CENTERS = ((0.0, 2.5), (-2.5, -1.5), (2.5, -1.5))

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ToyConfig:
    """Hyper-parameters of the toy experiment (defaults: Struppek et al. (2024) Appx. B.6)."""

    alphas: tuple[float, ...] = (0.0, 0.05, -0.05)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    # data: isotropic Gaussian blobs
    centers: tuple[tuple[float, float], ...] = DEFAULT_CENTERS
    std: float = 0.6
    samples_per_class: int = 50
    # model and training (full batch: every iteration sees all training points)
    hidden: int = 20
    lr: float = 0.001
    momentum: float = 0.9
    iterations: int = 5000
    # attack
    source_class: int = 1  # green circles
    target_class: int = 2  # orange pentagons
    # Fixed start for every seed: None → source centre moved ``start_offset`` toward the target
    # centre. From the centre itself (offset 0) the α>0 attack can stall on the flat
    # confidence plateau LS builds inside a cluster (seen in 4 of 10 seeds).
    start: tuple[float, float] | None = None
    start_offset: float = 1.0
    attack_lr: float = 0.1
    confidence: float = 0.95
    max_attack_steps: int = 20000  # cap for the stopping-rule attack (a model may never reach 95%)
    fixed_steps: int = 5000  # the variant without a stopping rule (Fig. 8)

    def __post_init__(self) -> None:
        if not self.alphas:
            raise ConfigError("give at least one smoothing factor (e.g. --alpha 0 --alpha 0.05)")
        for a in self.alphas:
            validate_alpha(a)
        if len(set(self.alphas)) != len(self.alphas):
            raise ConfigError("smoothing factors must be distinct")
        if not self.seeds:
            raise ConfigError("give at least one seed")
        if len(self.centers) < 2 or any(len(c) != 2 for c in self.centers):
            raise ConfigError("centers must be at least two (x, y) pairs")
        k = len(self.centers)
        for name, cls in (("source-class", self.source_class), ("target-class", self.target_class)):
            if not 0 <= cls < k:
                raise ConfigError(f"{name} must be in 0..{k - 1} (got {cls})")
        if self.source_class == self.target_class:
            raise ConfigError("source and target class must differ")
        positive = {
            "std": self.std, "samples-per-class": self.samples_per_class, "hidden": self.hidden, "lr": self.lr,
            "iterations": self.iterations, "attack-lr": self.attack_lr, "max-attack-steps": self.max_attack_steps,
            "fixed-steps": self.fixed_steps,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{key} must be > 0 (got {value})")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1) (got {self.momentum})")
        if self.start is not None and len(self.start) != 2:
            raise ConfigError("start must be an (x, y) pair")
        if self.start_offset < 0:
            raise ConfigError(f"start-offset must be >= 0 (got {self.start_offset})")
        if not 1 / k < self.confidence < 1:
            raise ConfigError(f"confidence must be in (1/{k}, 1) (got {self.confidence})")

    @property
    def num_classes(self) -> int:
        return len(self.centers)

    @property
    def start_point(self) -> tuple[float, float]:
        if self.start is not None:
            return (float(self.start[0]), float(self.start[1]))
        src = np.asarray(self.centers[self.source_class], dtype=float)
        direction = np.asarray(self.centers[self.target_class], dtype=float) - src
        point = src + self.start_offset * direction / np.linalg.norm(direction)
        return (float(point[0]), float(point[1]))


def make_toy_data(config: ToyConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples_per_class`` points per class around ``centers`` with spread ``std``."""
    rng = np.random.default_rng(derive_seed(seed, 1))
    points, labels = [], []
    for k, center in enumerate(config.centers):
        points.append(rng.normal(center, config.std, size=(config.samples_per_class, 2)))
        labels.append(np.full(config.samples_per_class, k))
    x = torch.as_tensor(np.concatenate(points), dtype=torch.float32)
    y = torch.as_tensor(np.concatenate(labels), dtype=torch.long)
    return x, y


class StackedMLP(nn.Module):
    """``n_models`` independent 2 → h → h → C MLPs with BatchNorm, evaluated in one pass.

    Inputs are ``(n_models, batch, 2)``. Layer by layer this is ``nn.Linear`` →
    ``nn.BatchNorm1d`` → ReLU with PyTorch's default initialisation and BatchNorm
    semantics (batch statistics in training, running statistics with momentum 0.1 in eval).
    """

    def __init__(self, n_models: int, in_dim: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        dims = [(in_dim, hidden), (hidden, hidden), (hidden, num_classes)]
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(n_models, i, o)) for i, o in dims])
        self.biases = nn.ParameterList([nn.Parameter(torch.empty(n_models, 1, o)) for _, o in dims])
        self.bn_weight = nn.ParameterList([nn.Parameter(torch.ones(n_models, 1, hidden)) for _ in range(2)])
        self.bn_bias = nn.ParameterList([nn.Parameter(torch.zeros(n_models, 1, hidden)) for _ in range(2)])
        for i in range(2):
            self.register_buffer(f"running_mean{i}", torch.zeros(n_models, 1, hidden))
            self.register_buffer(f"running_var{i}", torch.ones(n_models, 1, hidden))
        self.bn_momentum, self.bn_eps = 0.1, 1e-5

    def init_like_linear(self, generator: torch.Generator, groups: int) -> None:
        """nn.Linear's U(±1/√fan_in) init; models come in ``groups`` blocks that share weights."""
        with torch.no_grad():
            for weight, bias in zip(self.weights, self.biases, strict=True):
                bound = 1 / math.sqrt(weight.shape[1])
                for p in (weight, bias):
                    block = (torch.rand((groups, *p.shape[1:]), generator=generator) * 2 - 1) * bound
                    p.copy_(block.repeat_interleave(p.shape[0] // groups, dim=0))

    def _batchnorm(self, h: torch.Tensor, i: int) -> torch.Tensor:
        mean_buf: torch.Tensor = getattr(self, f"running_mean{i}")
        var_buf: torch.Tensor = getattr(self, f"running_var{i}")
        if self.training:
            mean = h.mean(dim=1, keepdim=True)
            var = (h - mean).square().mean(dim=1, keepdim=True)  # biased, as BatchNorm normalises
            n = h.shape[1]
            with torch.no_grad():
                mean_buf.lerp_(mean, self.bn_momentum)
                var_buf.lerp_(var * n / max(n - 1, 1), self.bn_momentum)
        else:
            mean, var = mean_buf, var_buf
        return (h - mean) / torch.sqrt(var + self.bn_eps) * self.bn_weight[i] + self.bn_bias[i]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(2):
            h = torch.relu(self._batchnorm(torch.baddbmm(self.biases[i], h, self.weights[i]), i))
        return torch.baddbmm(self.biases[2], h, self.weights[2])


@dataclass
class ToyModels:
    """Trained models for every (seed, α) pair, in seed-major order."""

    config: ToyConfig
    model: StackedMLP
    pairs: list[tuple[int, float]]  # (seed, alpha) of each model index
    data: dict[int, tuple[torch.Tensor, torch.Tensor]]
    train_accuracy: list[float] = field(default_factory=list)

    def index(self, seed: int, alpha: float) -> int:
        return self.pairs.index((seed, alpha))


def train_toy_models(config: ToyConfig, progress: ProgressFn | None = None) -> ToyModels:
    """Train one MLP per (seed, α), full batch, with the label-smoothing loss (Struppek et al. 2024, Eq. 3)."""
    seeds, alphas = list(config.seeds), list(config.alphas)
    pairs = [(s, a) for s in seeds for a in alphas]
    data = {s: make_toy_data(config, s) for s in seeds}
    x = torch.stack([data[s][0] for s, _ in pairs])
    y = torch.stack([data[s][1] for s, _ in pairs])
    c = config.num_classes
    targets = torch.stack([smoothed_targets(data[s][1], c, a) for s, a in pairs])

    generator = torch.Generator().manual_seed(derive_seed(*seeds, 2))
    model = StackedMLP(len(pairs), 2, config.hidden, c)
    model.init_like_linear(generator, groups=len(seeds))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    n_models = len(pairs)
    model.train()
    report_every = max(config.iterations // 50, 1)
    for it in range(config.iterations):
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        # mean over each model's batch, *summed* over models: per-model gradients stay exact
        loss = soft_target_cross_entropy(logits.reshape(-1, c), targets.reshape(-1, c)) * n_models
        loss.backward()
        optimizer.step()
        if progress is not None and (it + 1) % report_every == 0:
            progress("train", it + 1, config.iterations)
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(-1) == y).float().mean(dim=1).tolist()
    for (s, a), value in zip(pairs, acc, strict=True):
        log.info("toy model seed=%d alpha=%g train accuracy %.3f", s, a, value)
    return ToyModels(config, model, pairs, data, acc)


@dataclass
class AttackResult:
    """One attack on every model: per-model steps, success, final point and path."""

    steps: list[int]
    reached: list[bool]
    final_confidence: list[float]
    final_point: torch.Tensor  # (M, 2)
    paths: list[torch.Tensor]  # per model (steps+1, 2)
    distance: list[float]  # L2 to the nearest training point of the target class


def attack_toy_models(
    models: ToyModels, stop_at_confidence: bool, progress: ProgressFn | None = None
) -> AttackResult:
    """Struppek et al. (2024) Appx. B.6: SGD (lr 0.1, no momentum) on the input, CE toward the target class.

    With ``stop_at_confidence`` each model's attack stops at the first step whose target
    confidence exceeds ``config.confidence`` (at most ``max_attack_steps``); otherwise all
    run exactly ``fixed_steps`` steps (Fig. 8). Models that stopped are frozen while the
    others continue, so one batched loop serves all of them.
    """
    config = models.config
    net = models.model.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    n = len(models.pairs)
    x = torch.tensor(config.start_point, dtype=torch.float32).repeat(n, 1, 1)  # (M, 1, 2)
    target = torch.full((n,), config.target_class, dtype=torch.long)
    max_steps = config.max_attack_steps if stop_at_confidence else config.fixed_steps
    active = torch.ones(n, dtype=torch.bool)
    steps = torch.zeros(n, dtype=torch.long)
    history = [x[:, 0].clone()]
    report_every = max(max_steps // 50, 1)
    for step in range(max_steps):
        if stop_at_confidence:
            with torch.no_grad():
                conf = torch.softmax(net(x)[:, 0], dim=-1)[:, config.target_class]
            active &= conf <= config.confidence
            if not bool(active.any()):
                break
        x.requires_grad_(True)
        # sum over models: each point's gradient is that of its own model's CE
        loss = F.cross_entropy(net(x)[:, 0], target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = (x - config.attack_lr * grad * active.view(n, 1, 1)).detach()
        steps += active.long()
        history.append(x[:, 0].clone())
        if progress is not None and (step + 1) % report_every == 0:
            progress("attack", step + 1, max_steps)
    with torch.no_grad():
        conf = torch.softmax(net(x)[:, 0], dim=-1)[:, config.target_class]
    for p in net.parameters():
        p.requires_grad_(True)
    trajectory = torch.stack(history, dim=1)  # (M, T+1, 2)
    final = x[:, 0]
    distances = []
    for i, (seed, _) in enumerate(models.pairs):
        px, py = models.data[seed]
        distances.append(float(torch.cdist(final[i : i + 1], px[py == config.target_class]).min()))
    return AttackResult(
        steps=steps.tolist(),
        reached=(conf > config.confidence).tolist(),
        final_confidence=conf.tolist(),
        final_point=final,
        paths=[trajectory[i, : int(steps[i]) + 1] for i in range(n)],
        distance=distances,
    )


@dataclass
class ToyResult:
    models: ToyModels
    stopped: AttackResult
    fixed: AttackResult

    def rows(self) -> list[dict[str, float | int | bool]]:
        """One row per (seed, α) with both attack variants."""
        rows = []
        for i, (seed, alpha) in enumerate(self.models.pairs):
            rows.append({
                "alpha": alpha, "seed": seed, "train_accuracy": self.models.train_accuracy[i],
                "steps": self.stopped.steps[i], "reached": self.stopped.reached[i],
                "distance": self.stopped.distance[i], "final_confidence": self.stopped.final_confidence[i],
                "fixed_steps_distance": self.fixed.distance[i],
                "fixed_steps_confidence": self.fixed.final_confidence[i],
            })
        return rows

    def per_alpha(self, key: str) -> dict[float, list[float]]:
        out: dict[float, list[float]] = {a: [] for a in self.models.config.alphas}
        for row in self.rows():
            out[float(row["alpha"])].append(float(row[key]))
        return out


def run_toy(config: ToyConfig, progress: ProgressFn | None = None) -> ToyResult:
    """Train all models, then run both attack variants on them.

    Runs single-threaded: the tensors are tiny, so intra-op threads only add overhead
    (and contend with other work on a shared CPU).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = train_toy_models(config, progress)
        stopped = attack_toy_models(models, stop_at_confidence=True, progress=progress)
        fixed = attack_toy_models(models, stop_at_confidence=False, progress=progress)
    finally:
        torch.set_num_threads(threads)
    return ToyResult(models, stopped, fixed)


def confidence_grid(
    models: ToyModels, indices: Sequence[int], extent: tuple[float, float, float, float], resolution: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax of the models ``indices`` on a ``resolution``² grid over ``extent`` (x0, x1, y0, y1).

    Returns probabilities ``(len(indices), res, res, C)`` and the grid points ``(res, res, 2)``.
    """
    x0, x1, y0, y1 = extent
    xs = torch.linspace(x0, x1, resolution)
    ys = torch.linspace(y0, y1, resolution)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)
    with torch.no_grad():
        probs = torch.softmax(models.model.eval()(grid.reshape(1, -1, 2).expand(len(models.pairs), -1, -1)), dim=-1)
    probs = probs[list(indices)].reshape(len(indices), resolution, resolution, -1)
    return probs, grid
