"""The fedls wire protocol: every key that crosses Flower's messages, encoded and decoded here.

Server → client (the round's ``config`` record): the run's static setup once as TOML (data,
model, defense: what a fresh client needs to build its shard and model), the declared
:class:`~fedls.threat_model.ClientRecipe` of the round (with the α in force) as flat
``recipe.*`` keys, the execution settings, and — only under a malicious threat mode — the
probe requests. Client → server: the trained ``arrays``, ``metrics`` (with the stable client
id and the local steps made), the recipe the client trained with, and, kept in separate
records that the server strips before any attack runs, the ground truth of the round
(simulation and evaluation only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedls.threat_model import ClientRecipe, ClientUpdate, GroundTruth, ProbeMode, ProbeRequest

# -- server → client ---------------------------------------------------------------------
RUN_CONFIG = "run-config"  # the RunConfig as TOML: data, model, defense of the federation
DEVICE = "device"
THREADS = "threads"
ROUND = "server-round"  # set by Flower's FedAvg
RECIPE_PREFIX = "recipe."
PROBE_CLIENTS = "probe.clients"
PROBE_MODES = "probe.modes"
PROBE_BATCHES = "probe.batches"
PROBE_MIXUPS = "probe.mixups"
# -- client → server ---------------------------------------------------------------------
ARRAYS = "arrays"
METRICS = "metrics"
REPLY_RECIPE = "recipe"  # ConfigRecord: the recipe the client trained with
GRADIENT = "probe-gradient"  # ArrayRecord: FedSGD probe gradient (malicious mode only)
TRUTH_ARRAYS = "ground-truth"  # ArrayRecord: label counts and probe samples (scorers only)
TRUTH_SCALARS = "ground-truth-scalars"  # ConfigRecord: α, mixup coefficient (scorers only)
NUM_EXAMPLES = "num-examples"
CLIENT_ID = "partition-id"
LOCAL_STEPS = "local_steps"
NOT_AVERAGED = (NUM_EXAMPLES, CLIENT_ID)  # metric keys that are ids or weights, not measurements
PROBE_MODE_NAMES: dict[str, ProbeMode] = {"fedsgd": "fedsgd", "fedavg": "fedavg"}
STRIPPED = (GRADIENT, TRUTH_ARRAYS, TRUTH_SCALARS, REPLY_RECIPE)  # never part of the FedAvg payload


def encode_roll_call_answer(client_id: int) -> RecordDict:
    """A node's answer to the server's roll call: which stable client (partition) it is."""
    return RecordDict({METRICS: MetricRecord({CLIENT_ID: int(client_id)})})


def decode_roll_call_answer(content: RecordDict) -> int | None:
    """The stable client id in a roll-call answer, or None if the answer carries none."""
    record = content.get(METRICS)
    value = record.get(CLIENT_ID) if isinstance(record, MetricRecord) else None
    return int(value) if isinstance(value, int) else None


@dataclass(frozen=True)
class RoundInstructions:
    """What one client reads from the round's config record."""

    server_round: int
    run_config_toml: str
    recipe: ClientRecipe
    device: str
    threads: int
    probe: ProbeRequest | None


def encode_recipe(recipe: ClientRecipe) -> dict[str, Any]:
    return {f"{RECIPE_PREFIX}{key}": value for key, value in recipe.model_dump().items()}


def decode_recipe(values: Mapping[str, Any], prefix: str = RECIPE_PREFIX) -> ClientRecipe:
    fields = {key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix)}
    return ClientRecipe.parse(fields, "recipe")


def encode_instructions(
    run_config_toml: str, recipe: ClientRecipe, device: str, threads: int, probes: Mapping[int, ProbeRequest] | None = None
) -> ConfigRecord:
    """The round's config record (Flower adds the round number)."""
    values: dict[str, Any] = {RUN_CONFIG: run_config_toml, DEVICE: device, THREADS: int(threads), **encode_recipe(recipe)}
    if probes:
        clients = sorted(probes)
        values[PROBE_CLIENTS] = [int(c) for c in clients]
        values[PROBE_MODES] = [probes[c].mode for c in clients]
        values[PROBE_BATCHES] = [int(probes[c].batch) for c in clients]
        values[PROBE_MIXUPS] = [float(probes[c].mixup) for c in clients]
    return ConfigRecord(values)


def _list(config: ConfigRecord, key: str) -> list[Any]:
    value = config.get(key, [])
    return list(value) if isinstance(value, list) else [value]


def decode_instructions(config: ConfigRecord, client_id: int) -> RoundInstructions:
    probe = None
    clients = [int(c) for c in _list(config, PROBE_CLIENTS)]
    if client_id in clients:
        i = clients.index(client_id)
        mode = PROBE_MODE_NAMES.get(str(_list(config, PROBE_MODES)[i]))
        if mode is None:
            raise ValueError(f"unknown probe mode in the round's instructions: {_list(config, PROBE_MODES)[i]!r}")
        probe = ProbeRequest(mode=mode, batch=int(_list(config, PROBE_BATCHES)[i]), mixup=float(_list(config, PROBE_MIXUPS)[i]))
    values: dict[str, Any] = dict(config)
    return RoundInstructions(
        server_round=int(values[ROUND]),
        run_config_toml=str(values[RUN_CONFIG]),
        recipe=decode_recipe(values),
        device=str(values[DEVICE]),
        threads=max(1, int(values.get(THREADS, 1))),
        probe=probe,
    )


def encode_reply(
    state_dict: Mapping[str, torch.Tensor],
    client_id: int,
    num_examples: int,
    local_steps: int,
    recipe: ClientRecipe,
    metrics: Mapping[str, float],
    truth: GroundTruth,
    gradient: Mapping[str, np.ndarray] | None = None,
) -> RecordDict:
    reply = RecordDict()
    reply[ARRAYS] = ArrayRecord(dict(state_dict))
    reply[METRICS] = MetricRecord(
        {
            NUM_EXAMPLES: int(num_examples),
            CLIENT_ID: int(client_id),
            LOCAL_STEPS: float(local_steps),
            **{k: float(v) for k, v in metrics.items()},
        }
    )
    reply[REPLY_RECIPE] = ConfigRecord(recipe.model_dump())
    if gradient is not None:
        reply[GRADIENT] = ArrayRecord({k: Array(np.asarray(v)) for k, v in gradient.items()})
    arrays = {"label_counts": Array(np.asarray(truth.label_counts, dtype=np.int64))}
    for name in ("images", "targets", "labels"):
        tensor = getattr(truth, name)
        if tensor is not None:
            arrays[name] = Array(tensor.detach().cpu().numpy())
    reply[TRUTH_ARRAYS] = ArrayRecord(arrays)
    reply[TRUTH_SCALARS] = ConfigRecord({"alpha": float(truth.alpha), **{k: float(v) for k, v in truth.extra.items()}})
    return reply


def _numpy(record: Any) -> dict[str, np.ndarray]:
    if not isinstance(record, ArrayRecord):
        raise TypeError(f"expected an ArrayRecord, got {type(record).__name__}")
    return {name: array.numpy() for name, array in record.items()}


def _config(record: Any) -> dict[str, Any]:
    return dict(record) if isinstance(record, (ConfigRecord, MetricRecord)) else {}


def _tensor(arrays: Mapping[str, np.ndarray], name: str) -> torch.Tensor | None:
    return torch.from_numpy(arrays[name].copy()) if name in arrays else None


def decode_reply(node_id: int, content: RecordDict, weighted_by: str = NUM_EXAMPLES) -> tuple[ClientUpdate, GroundTruth | None]:
    """The server's view of one reply, and — apart — its ground truth (if the client sent any)."""
    metrics = {k: float(v) for k, v in _config(content[METRICS]).items() if isinstance(v, (int, float))}
    client_id = int(metrics.get(CLIENT_ID, -1))
    update = ClientUpdate(
        node_id=node_id,
        client_id=client_id,
        num_examples=int(metrics.get(weighted_by, 0)),
        local_steps=int(metrics.get(LOCAL_STEPS, 0)),
        recipe=ClientRecipe.parse(_config(content[REPLY_RECIPE]), "reply recipe") if REPLY_RECIPE in content else ClientRecipe(),
        weights=_numpy(content[ARRAYS]),
        metrics={k: v for k, v in metrics.items() if k not in NOT_AVERAGED},
        gradient=_numpy(content[GRADIENT]) if GRADIENT in content else None,
    )
    truth = None
    if TRUTH_ARRAYS in content:
        arrays = _numpy(content[TRUTH_ARRAYS])
        scalars = {k: float(v) for k, v in _config(content[TRUTH_SCALARS]).items()} if TRUTH_SCALARS in content else {}
        truth = GroundTruth(
            client_id=client_id,
            label_counts=arrays["label_counts"],
            alpha=scalars.pop("alpha", 0.0),
            images=_tensor(arrays, "images"),
            targets=_tensor(arrays, "targets"),
            labels=_tensor(arrays, "labels"),
            extra=scalars,
        )
    return update, truth


def strip_private(content: RecordDict) -> None:
    """Remove everything that is not the FedAvg payload before Flower aggregates."""
    for key in STRIPPED:
        if key in content:
            del content[key]
