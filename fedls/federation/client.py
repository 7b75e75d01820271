"""The Flower ClientApp: one client trains the global model on its shard with the declared recipe."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tomllib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp import ClientApp
from torch.utils.data import Subset, TensorDataset

from fedls import protocol
from fedls.assembly import build_global_model, client_partition, load_splits
from fedls.config import RunConfig
from fedls.data import ArrayDataset, DatasetSplits, ImageDataset
from fedls.defenses import TrainingContext, build_defense
from fedls.models import Classifier
from fedls.threat_model import GroundTruth, ProbeRequest
from fedls.training.local import train_local
from fedls.training.probe import ProbeResult, probe_gradient
from fedls.training.seeding import derive_seed, seed_everything

log = logging.getLogger(__name__)
STATE_KEY = "fedls-client-state"
PROBE_STREAM = 7_919  # a separate random stream: a probe never shifts the training draws


# Set by the simulation driver for its Ray workers: a folder with the training split and the
# partition the driver has already computed (see :func:`share_client_data`).
SHARED_DATA_ENV = "FEDLS_CLIENT_DATA"
_MANIFEST = "manifest.json"


def _config_digest(config_toml: str) -> str:
    return hashlib.sha256(config_toml.encode()).hexdigest()


def share_client_data(folder: Path, config: RunConfig, splits: DatasetSplits) -> bool:
    """Write the training split and the partition to ``folder`` for the clients to memory-map.

    Without it every Ray worker loads and partitions the whole dataset itself (test and public
    splits included: sklearn's import and the digits CSV, or Fashion-MNIST's idx files), which
    costs seconds of the first round and memory in every worker. Only in-memory datasets
    (:class:`ArrayDataset`) are shared; for others clients load as before. Returns whether
    anything was written.
    """
    if not isinstance(splits.train, ArrayDataset):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    shards = client_partition(config, splits)
    np.save(folder / "images.npy", splits.train.images.numpy())
    np.save(folder / "labels.npy", splits.train.labels.numpy())
    np.save(folder / "shard_indices.npy", np.concatenate(shards).astype(np.int64))
    np.save(folder / "shard_bounds.npy", np.cumsum([0, *(len(s) for s in shards)]).astype(np.int64))
    manifest = {
        "config_sha256": _config_digest(config.to_toml()), "name": splits.name, "num_classes": splits.num_classes,
        "image_shape": list(splits.image_shape), "public_kind": splits.public_kind, "class_names": list(splits.class_names),
    }
    # The manifest last: a client that finds it finds complete arrays.
    (folder / _MANIFEST).write_text(json.dumps(manifest))
    return True


def _shared_shards(config_toml: str) -> tuple[DatasetSplits, list[np.ndarray]] | None:
    """The driver's shared training split and partition for exactly this config, if any."""
    folder = os.environ.get(SHARED_DATA_ENV)
    if not folder or not (Path(folder) / _MANIFEST).is_file():
        return None
    root = Path(folder)
    manifest = json.loads((root / _MANIFEST).read_text())
    if manifest["config_sha256"] != _config_digest(config_toml):
        log.warning("the shared client data in %s belongs to another run config; this worker loads the dataset itself", folder)
        return None
    # mmap_mode="c": the pages come from the page cache, shared by all workers; copy-on-write
    # keeps the array writable (torch.from_numpy wants that) without ever changing the file.
    images = torch.from_numpy(np.load(root / "images.npy", mmap_mode="c"))
    labels = torch.from_numpy(np.load(root / "labels.npy"))
    empty = ArrayDataset(images[:0], labels[:0])  # clients only train; test and public data stay with the server
    splits = DatasetSplits(
        name=manifest["name"], num_classes=int(manifest["num_classes"]), image_shape=tuple(manifest["image_shape"]),
        train=ArrayDataset(images, labels), test=empty, public=empty, public_kind=manifest["public_kind"],
        class_names=list(manifest["class_names"]),
    )
    indices, bounds = np.load(root / "shard_indices.npy"), np.load(root / "shard_bounds.npy")
    return splits, [indices[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


@lru_cache(maxsize=4)
def client_shards(config_toml: str) -> tuple[RunConfig, DatasetSplits, list[np.ndarray]]:
    """Config, dataset and partition, computed once per process (Ray actors serve many clients).

    Under ``fedls simulate`` the training split and the partition come memory-mapped from the
    driver (:func:`share_client_data`); elsewhere (``flwr run``, a Ray cluster on other
    machines) each process loads and partitions the dataset itself, with the same result.
    """
    config = RunConfig.from_dict(tomllib.loads(config_toml), "run config on the wire")
    shared = _shared_shards(config_toml)
    if shared is not None:
        return config, *shared
    splits = load_splits(config)
    return config, splits, client_partition(config, splits)


def _load_state(context: Context) -> dict:
    if STATE_KEY in context.state:
        return json.loads(str(context.state[STATE_KEY]["json"]))
    return {}


def _save_state(context: Context, state: dict) -> None:
    context.state[STATE_KEY] = ConfigRecord({"json": json.dumps(state)})


def label_counts(labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """How many samples of each class a client's local data holds (ground truth for scorers)."""
    return np.bincount(np.asarray(labels, dtype=np.int64).reshape(-1), minlength=num_classes)


def _probe(
    request: ProbeRequest, model: Classifier, shard: ImageDataset, alpha: float, seed: int, device: torch.device
) -> ProbeResult:
    generator = torch.Generator().manual_seed(seed)
    return probe_gradient(model, shard, alpha, request.batch, generator, device, mixup_beta=request.mixup or None)


def train_client(msg: Message, context: Context) -> Message:
    """Local training of one round; under a malicious threat mode also the probe it asks for."""
    client_id = int(context.node_config["partition-id"])
    raw = msg.content["config"]
    if not isinstance(raw, ConfigRecord):
        raise TypeError("the round's message has no config record")
    instructions = protocol.decode_instructions(raw, client_id)
    config, splits, shards = client_shards(instructions.run_config_toml)
    num_partitions = int(context.node_config.get("num-partitions", config.clients))
    if num_partitions != config.clients:
        # Under `flwr run` the federation's supernode count is set outside the run config.
        raise ValueError(
            f"the federation has {num_partitions} supernodes but the run config says clients={config.clients}; make them equal"
        )
    recipe = instructions.recipe
    device = torch.device(instructions.device)
    torch.set_num_threads(instructions.threads)

    shard: ImageDataset = Subset(splits.train, shards[client_id].tolist())
    shard_labels: np.ndarray | torch.Tensor = np.asarray(splits.train_targets)[shards[client_id]]
    generator = seed_everything(derive_seed(config.seed, instructions.server_round, client_id))
    model = build_global_model(config, splits)
    arrays = msg.content[protocol.ARRAYS]
    if not isinstance(arrays, ArrayRecord):
        raise TypeError("the round's message has no model arrays")
    model.load_state_dict(arrays.to_torch_state_dict())

    probe: ProbeResult | None = None
    if instructions.probe is not None:
        seed = derive_seed(config.seed, instructions.server_round, client_id, PROBE_STREAM)
        probe = _probe(instructions.probe, model, shard, recipe.alpha, seed, device)
        if instructions.probe.mode == "fedavg":
            # Malicious FedAvg probe: this round the client trains on exactly the probed samples.
            shard = TensorDataset(probe.images, probe.targets)
            shard_labels = probe.labels

    defense = build_defense(recipe.defense, config.defense_options)
    ctx = TrainingContext(
        server_round=instructions.server_round, client_id=client_id, num_samples=len(shard), batch_size=recipe.batch_size,
        local_epochs=recipe.local_epochs, lr=recipe.lr, device=device, total_rounds=config.rounds, state=_load_state(context),
    )
    result = train_local(
        model, shard, recipe.alpha, ctx, defense, generator, recipe.optimizer, recipe.weight_decay, recipe.max_grad_norm
    )
    _save_state(context, ctx.state)
    truth = GroundTruth(
        client_id=client_id,
        label_counts=label_counts(shard_labels, splits.num_classes),
        alpha=recipe.alpha,
        images=probe.images if probe else None,
        targets=probe.targets if probe else None,
        labels=probe.labels if probe else None,
        extra=probe.extra if probe else {},
    )
    reply = protocol.encode_reply(
        defense.unwrap_model(model).state_dict(), client_id, result.num_samples, result.steps, recipe,
        {"train_loss": result.loss, **result.diagnostics}, truth,
        gradient=probe.gradient if probe is not None and instructions.probe and instructions.probe.mode == "fedsgd" else None,
    )
    return Message(content=reply, reply_to=msg)


def answer_roll_call(msg: Message, context: Context) -> Message:
    """Say which stable client (partition) this node is: the server asks once before it draws
    a share of the clients by client id."""
    return Message(content=protocol.encode_roll_call_answer(int(context.node_config["partition-id"])), reply_to=msg)


def make_client_app() -> ClientApp:
    app = ClientApp()
    app.train()(train_client)
    app.query()(answer_roll_call)
    return app
