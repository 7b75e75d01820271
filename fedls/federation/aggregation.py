"""FedAvg's weighted mean, folded in one reply at a time and independent of the order.

Flower's ``aggregate_arrayrecords`` needs every reply of a round at once (it divides each
weight by the total first), so a server that averages 1,000 clients holds 1,000 models. Here
each reply is folded into a running sum as it arrives and can then be dropped: the server
holds one sum whatever the number of clients.

Replies arrive in completion order, which changes from run to run, and floating-point sums
depend on the order. So the sum is kept exactly: each term ``weight · value`` is exact in
float64 (a float32 value has a 24-bit significand and a sample count stays far below 2**29),
and the terms are added into a double-double accumulator (``hi + lo``, Knuth's TwoSum and
Dekker's Fast2Sum; see Ogita, Rump and Oishi 2005) that represents the running sum without
rounding as long as, per parameter, the values across clients span fewer than ~60 binades
(non-zero magnitudes within a factor of 2**60 of each other; the bound is
106 bits of the accumulator minus the 24-bit significand, the sample-count factor and the
client count). Within it the mean is a function of the exact sum alone, the same in every
order, so the same seed gives the same global model however the clients happen to finish.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Arrays = Mapping[str, np.ndarray]


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s + e == a + b exactly, s = fl(a + b) (Knuth)."""
    s = a + b
    b_virtual = s - a
    e = (a - (s - b_virtual)) + (b - b_virtual)
    return s, e


def _fast_two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s + e == a + b exactly for |a| >= |b| (Dekker)."""
    s = a + b
    return s, b - (s - a)


class WeightedMean:
    """Sample-weighted mean of named arrays, fed one client at a time in any order."""

    def __init__(self) -> None:
        self._hi: dict[str, np.ndarray] = {}
        self._lo: dict[str, np.ndarray] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self.total_weight = 0.0
        self.count = 0

    def add(self, arrays: Arrays, weight: float) -> None:
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"a client's weight must be a finite number >= 0, got {weight}")
        if self.count and set(arrays) != set(self._hi):
            raise ValueError("a client's arrays do not match the others' (different model)")
        for name, value in arrays.items():
            term = np.asarray(value, dtype=np.float64) * float(weight)  # exact, see the module doc
            if name not in self._hi:
                self._hi[name], self._lo[name] = term.copy(), np.zeros_like(term)
                self._dtypes[name] = np.asarray(value).dtype
                continue
            if term.shape != self._hi[name].shape:
                raise ValueError(f"array {name!r} has shape {term.shape}, the others {self._hi[name].shape}")
            s, e = _two_sum(self._hi[name], term)
            self._hi[name], self._lo[name] = _fast_two_sum(s, self._lo[name] + e)
        self.total_weight += float(weight)
        self.count += 1

    def result(self) -> dict[str, np.ndarray]:
        """The mean in each array's own dtype (integers rounded); needs one client with weight."""
        if self.count == 0 or self.total_weight <= 0:
            raise ValueError("no client with a positive weight to average")
        out: dict[str, np.ndarray] = {}
        for name, hi in self._hi.items():
            mean = (hi + self._lo[name]) / self.total_weight
            dtype = self._dtypes[name]
            out[name] = np.rint(mean).astype(dtype) if np.issubdtype(dtype, np.integer) else mean.astype(dtype)
        return out
