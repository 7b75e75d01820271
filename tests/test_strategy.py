"""The curious FedAvg on hand-made replies: α schedule, failing clients, probe capture, order."""

from __future__ import annotations

import time

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, Metadata, MetricRecord, RecordDict
from flwr.app.message.message import make_message

from fedls.errors import ConfigError
from fedls.smoothing import SmoothingSchedule
from strategies.curious_fedavg import GRADIENT_KEY, TRUTH_EXTRA_KEY, TRUTH_KEY, CuriousFedAvg
from strategies.observers import GroundTruth, ServerView


def _metadata(src: int) -> Metadata:
    return Metadata(
        run_id=1, message_id="", src_node_id=src, dst_node_id=0, reply_to_message_id="m", group_id="1",
        created_at=time.time(), ttl=60.0, message_type="train",
    )


def _reply(node: int, value: float, n: int, partition: int, probe: bool = False) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.full(3, value, dtype=np.float32))}),
            "metrics": MetricRecord({"num-examples": n, "partition-id": partition, "train_loss": value}),
        }
    )
    if probe:
        content[GRADIENT_KEY] = ArrayRecord({"w": Array(np.ones(3, dtype=np.float32))})
        content[TRUTH_KEY] = ArrayRecord(
            {
                "images": Array(np.zeros((1, 1, 2, 2), np.float32)),
                "targets": Array(np.eye(3, dtype=np.float32)[:1]),
                "labels": Array(np.zeros(1, np.int64)),
            }
        )
        content[TRUTH_EXTRA_KEY] = ConfigRecord({"alpha": 0.1})
    return make_message(_metadata(node), content=content)


def _error(node: int) -> Message:
    return make_message(_metadata(node), error=Error(code=0, reason="client crashed"))


def test_failing_client_is_recorded_and_the_round_goes_on() -> None:
    seen: list[tuple[ServerView, dict[int, GroundTruth]]] = []
    strategy = CuriousFedAvg(SmoothingSchedule(-0.1, 1, 1), on_updates=lambda v, t: seen.append((v, t)))
    strategy._sent = {1: ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32))})}
    replies = [_reply(11, 1.0, 10, 0, probe=True), _error(12), _reply(13, 3.0, 30, 2)]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert np.allclose(arrays["w"].numpy(), 2.5)  # (1·10 + 3·30) / 40
    assert metrics["num-clients"] == 2 and metrics["num-examples"] == 40
    assert "partition-id" not in metrics
    assert strategy.missing_clients[1] == ["node 12: client crashed"]
    view, truth = seen[0]
    assert [u.node_id for u in view.updates] == [11, 13]
    assert view.updates[0].gradient is not None and view.updates[1].gradient is None
    assert set(truth) == {11} and truth[11].extra == {"alpha": 0.1}
    # the attack's view carries no ground truth anywhere
    assert all(not hasattr(u, "images") for u in view.updates)


def test_replies_are_averaged_in_client_order() -> None:
    strategy = CuriousFedAvg(SmoothingSchedule(0.0))
    values = [0.1, 0.7, 0.3]
    forward = strategy.aggregate_train(1, [_reply(20 + i, v, 7, i) for i, v in enumerate(values)])[0]
    backward = strategy.aggregate_train(1, [_reply(20 + i, v, 7, i) for i, v in reversed(list(enumerate(values)))])[0]
    assert forward["w"].numpy().tobytes() == backward["w"].numpy().tobytes()


def test_client_error_reasons_are_shortened() -> None:
    from strategies.curious_fedavg import short_reason

    wrapped = "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'ray::ClientAppActor.run()\n  File x\nException ClientAppException occurred. Message: training loss became nan in round 1; lower --lr'>)"
    assert short_reason(wrapped) == "training loss became nan in round 1; lower --lr"
    assert short_reason("plain failure") == "plain failure"


@pytest.mark.parametrize(("round_", "alpha"), [(1, 0.0), (2, -0.05), (3, -0.1)])
def test_alpha_follows_the_schedule(round_: int, alpha: float) -> None:
    assert CuriousFedAvg(SmoothingSchedule(-0.1, 1, 2)).alpha_for(round_) == pytest.approx(alpha)


def test_central_dp_clips_the_release_but_the_server_sees_raw_updates() -> None:
    from strategies.central_dp import CuriousCentralDP, central_dp_options

    seen: list[ServerView] = []
    curious = CuriousFedAvg(SmoothingSchedule(0.0), on_updates=lambda v, t: seen.append(v))
    curious._sent = {1: ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32))})}
    wrapper = CuriousCentralDP(curious, noise_multiplier=0.0, clipping_norm=1.0, num_sampled_clients=2)
    wrapper.current_arrays = curious._sent[1]
    arrays, _ = wrapper.aggregate_train(1, [_reply(31, 10.0, 5, 0, probe=True), _reply(32, 10.0, 5, 1)])
    # each update (norm 10·√3) is clipped to norm 1 before averaging
    assert np.isclose(np.linalg.norm(arrays["w"].numpy()), 1.0, atol=1e-5)
    # ... but the curious server observed the raw updates and the probe first
    assert np.allclose(seen[0].updates[0].weights["w"], 10.0) and seen[0].updates[0].gradient is not None
    assert len(seen) == 1  # observed once per round, not again by the inner aggregation
    with pytest.raises(ConfigError, match="unknown central_dp"):
        central_dp_options({"sigma": 1.0})


def test_run_config_rejects_bad_central_dp() -> None:
    from fedls.config import RunConfig

    with pytest.raises(ConfigError, match="clipping_norm > 0"):
        RunConfig(central_dp={"clipping_norm": 0}).validate()
