"""The exact weighted mean the server averages with: the same bits in any order of replies,
the true mean to float32 precision, and loud on replies that do not fit together."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from fedls.federation.aggregation import WeightedMean


def _clients(n: int, seed: int = 0) -> list[tuple[dict[str, np.ndarray], int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        # magnitudes over several binades, as trained weights have; an int buffer too
        arrays = {
            "w": (rng.standard_normal((5, 7)) * 10.0 ** rng.integers(-6, 3, (5, 7))).astype(np.float32),
            "steps": np.array(rng.integers(0, 100), dtype=np.int64),
        }
        out.append((arrays, int(rng.integers(1, 500))))
    return out


def _mean(clients: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    mean = WeightedMean()
    for arrays, weight in clients:
        mean.add(arrays, weight)
    return mean.result()


def test_the_mean_has_the_same_bits_in_every_order() -> None:
    clients = _clients(40)
    reference = _mean(clients)
    rng = np.random.default_rng(1)
    for _ in range(20):
        order = rng.permutation(len(clients))
        shuffled = _mean([clients[i] for i in order])
        for name in reference:
            assert shuffled[name].tobytes() == reference[name].tobytes(), name


def test_a_naive_float32_sum_would_depend_on_the_order() -> None:
    """The case the exact sum exists for: Flower's in-place float32 sums differ by order."""
    clients = _clients(40)
    total = sum(w for _, w in clients)

    def naive(order: list[int]) -> np.ndarray:
        acc = None
        for i in order:
            term = clients[i][0]["w"] * (clients[i][1] / total)
            acc = term if acc is None else acc + term
        assert acc is not None
        return acc

    assert naive(list(range(40))).tobytes() != naive(list(np.random.default_rng(2).permutation(40))).tobytes()


def test_the_mean_is_the_exact_weighted_mean_rounded_once() -> None:
    clients = _clients(25, seed=3)
    result = _mean(clients)

    total = sum(w for _, w in clients)
    for index in np.ndindex(5, 7):
        exact = sum(Fraction(float(a["w"][index])) * w for a, w in clients) / total
        # (hi + lo) / total and the cast to float32 round twice: within one float32 ulp
        assert abs(float(result["w"][index]) - float(exact)) <= np.spacing(np.float32(abs(float(exact)))), index
    assert result["w"].dtype == np.float32
    expected_steps = sum(int(a["steps"]) * w for a, w in clients) / total
    assert result["steps"].dtype == np.int64 and int(result["steps"]) == round(expected_steps)


def test_one_client_comes_back_unchanged() -> None:
    arrays = {"w": np.array([0.1, -3.0e-7, 12345.678], dtype=np.float32)}
    mean = WeightedMean()
    mean.add(arrays, 17)
    assert mean.result()["w"].tobytes() == arrays["w"].tobytes()


def test_replies_that_do_not_fit_are_refused() -> None:
    mean = WeightedMean()
    mean.add({"w": np.zeros(3, dtype=np.float32)}, 1)
    with pytest.raises(ValueError, match="do not match"):
        mean.add({"v": np.zeros(3, dtype=np.float32)}, 1)
    with pytest.raises(ValueError, match="shape"):
        mean.add({"w": np.zeros(4, dtype=np.float32)}, 1)
    with pytest.raises(ValueError, match="weight"):
        mean.add({"w": np.zeros(3, dtype=np.float32)}, float("nan"))
    with pytest.raises(ValueError, match="no client"):
        WeightedMean().result()
