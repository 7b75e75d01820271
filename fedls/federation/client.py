"""The Flower ClientApp: one simulated client trains the global model on its shard."""

from __future__ import annotations

import json
import logging
import tomllib
from functools import lru_cache

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch.utils.data import Subset, TensorDataset

from fedls.assembly import build_global_model, client_partition, load_splits
from fedls.config import RunConfig
from fedls.data import DatasetSplits
from fedls.defenses import TrainingContext, build_defense
from fedls.training.local import train_local
from fedls.training.probe import probe_gradient
from fedls.training.seeding import derive_seed, seed_everything
from strategies.curious_fedavg import GRADIENT_KEY, PARTITION_KEY, PROBE_CLIENTS_KEY, TRUTH_EXTRA_KEY, TRUTH_KEY

log = logging.getLogger(__name__)
STATE_KEY = "fedls-client-state"


@lru_cache(maxsize=4)
def client_shards(config_toml: str) -> tuple[DatasetSplits, list[np.ndarray]]:
    """Dataset and partition, computed once per process (Ray actors serve many clients)."""
    config = RunConfig.from_dict(tomllib.loads(config_toml))
    splits = load_splits(config)
    return splits, client_partition(config, splits)


def _load_state(context: Context) -> dict:
    if STATE_KEY in context.state:
        return json.loads(str(context.state[STATE_KEY]["json"]))
    return {}


def _save_state(context: Context, state: dict) -> None:
    context.state[STATE_KEY] = ConfigRecord({"json": json.dumps(state)})


def train_client(msg: Message, context: Context) -> Message:
    """Local training of one round; optionally also the FedSGD probe the server asked for."""
    cfg = msg.content["config"]
    config_toml = str(cfg["run-config"])
    config = RunConfig.from_dict(tomllib.loads(config_toml))
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config.get("num-partitions", config.clients))
    if num_partitions != config.clients:
        # Under `flwr run` the federation's supernode count is set outside the run config.
        raise ValueError(
            f"the federation has {num_partitions} supernodes but the run config says clients={config.clients}; make them equal"
        )
    server_round = int(cfg["server-round"])
    alpha = float(cfg["alpha"])
    device = torch.device(str(cfg["device"]))
    torch.set_num_threads(max(1, int(float(cfg.get("threads", 1)))))

    splits, shards = client_shards(config_toml)
    shard = Subset(splits.train, shards[partition_id].tolist())
    generator = seed_everything(derive_seed(config.seed, server_round, partition_id))
    model = build_global_model(config, splits)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    reply = RecordDict()

    probe_mode = str(cfg.get("probe", "off"))
    if probe_mode != "off" and partition_id in [int(c) for c in cfg.get(PROBE_CLIENTS_KEY, [])]:
        probe = probe_gradient(
            model, shard, alpha, int(cfg.get("probe-batch", 1)), generator, device,
            mixup_beta=float(cfg.get("probe-mixup", 0.0)) or None,
        )
        if probe_mode == "fedsgd":
            reply[GRADIENT_KEY] = ArrayRecord({k: Array(v) for k, v in probe.gradient.items()})
        else:
            # FedAvg probe: this round the client trains on exactly the probed samples (and
            # targets), so the server's −Δθ/(η·steps) estimate has a known ground truth.
            shard = TensorDataset(probe.images, probe.targets)
        reply[TRUTH_KEY] = ArrayRecord(
            {"images": Array(probe.images.numpy()), "targets": Array(probe.targets.numpy()), "labels": Array(probe.labels.numpy())}
        )
        reply[TRUTH_EXTRA_KEY] = ConfigRecord({k: float(v) for k, v in probe.extra.items()})

    defense = build_defense(config.defense, config.defense_options)
    ctx = TrainingContext(
        server_round=server_round,
        client_id=partition_id,
        num_samples=len(shard),
        batch_size=config.batch_size,
        local_epochs=config.local_epochs,
        lr=config.lr,
        device=device,
        total_rounds=config.rounds,
        state=_load_state(context),
    )
    result = train_local(
        model, shard, alpha, ctx, defense, generator, config.optimizer, config.weight_decay, config.max_grad_norm
    )
    _save_state(context, ctx.state)
    trained = defense.unwrap_model(model)
    reply["arrays"] = ArrayRecord(trained.state_dict())
    metrics = {"train_loss": result.loss, "local_steps": float(result.steps), **result.diagnostics}
    reply["metrics"] = MetricRecord(
        {"num-examples": result.num_samples, PARTITION_KEY: partition_id, **{k: float(v) for k, v in metrics.items()}}
    )
    return Message(content=reply, reply_to=msg)


def make_client_app() -> ClientApp:
    app = ClientApp()
    app.train()(train_client)
    return app
