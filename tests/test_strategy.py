"""The curious FedAvg and the wire protocol on hand-made replies: α schedule, the declared
recipe, failing clients, probe capture with the truth kept apart, averaging order."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, Metadata
from flwr.app.message.message import make_message

from fedls import protocol
from fedls.config import RunConfig
from fedls.errors import ConfigError
from fedls.smoothing import SmoothingSchedule
from fedls.threat_model import ClientRecipe, GroundTruth, ProbeRequest, ServerView
from strategies.curious_fedavg import ClientSetup, CuriousFedAvg

RECIPE = ClientRecipe(lr=0.1, local_epochs=1, batch_size=4, alpha=0.0)
SETUP = ClientSetup(RunConfig().to_toml(), "cpu", 1)


def _strategy(schedule: SmoothingSchedule, **kwargs: object) -> CuriousFedAvg:
    return CuriousFedAvg(schedule, RECIPE, SETUP, 3, **kwargs)  # type: ignore[arg-type]


def _metadata(src: int) -> Metadata:
    return Metadata(
        run_id=1, message_id="", src_node_id=src, dst_node_id=0, reply_to_message_id="m", group_id="1",
        created_at=time.time(), ttl=60.0, message_type="train",
    )


def _reply(node: int, value: float, n: int, client: int, probe: bool = False) -> Message:
    truth = GroundTruth(client, np.array([n, 0, 0]), 0.1,
                        images=torch.zeros(1, 1, 2, 2) if probe else None,
                        targets=torch.eye(3)[:1] if probe else None,
                        labels=torch.zeros(1, dtype=torch.long) if probe else None)
    content = protocol.encode_reply(
        {"w": torch.full((3,), value)}, client, n, 3, RECIPE.replace("recipe", alpha=0.1), {"train_loss": value}, truth,
        gradient={"w": np.ones(3, dtype=np.float32)} if probe else None,
    )
    return make_message(_metadata(node), content=content)


def _error(node: int) -> Message:
    return make_message(_metadata(node), error=Error(code=0, reason="client crashed"))


def test_failing_client_is_recorded_and_the_truth_travels_apart() -> None:
    seen: list[tuple[ServerView, dict[int, GroundTruth]]] = []
    strategy = _strategy(SmoothingSchedule(-0.1, 1, 1), on_updates=lambda v, t: seen.append((v, dict(t))))
    strategy._sent = {1: ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32))})}
    replies = [_reply(11, 1.0, 10, 0, probe=True), _error(12), _reply(13, 3.0, 30, 2)]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    assert np.allclose(arrays["w"].numpy(), 2.5)  # (1·10 + 3·30) / 40
    assert metrics["num-clients"] == 2 and metrics["num-examples"] == 40
    assert "partition-id" not in metrics
    assert strategy.missing_clients[1] == ["node 12: client crashed"]
    view, truth = seen[0]
    assert [u.client_id for u in view.updates] == [0, 2] and [u.node_id for u in view.updates] == [11, 13]
    assert [u.local_steps for u in view.updates] == [3, 3]
    assert view.updates[0].recipe.alpha == pytest.approx(0.1) and view.recipe.lr == pytest.approx(0.1)
    assert view.updates[0].gradient is not None and view.updates[1].gradient is None
    assert set(truth) == {0, 2} and truth[0].images is not None and truth[2].images is None
    assert truth[0].label_counts.tolist() == [10, 0, 0]
    # nothing of the truth is left in what Flower averages
    for reply in replies[::2]:
        assert set(reply.content.keys()) == {protocol.ARRAYS, protocol.METRICS}


def test_replies_are_averaged_in_client_order() -> None:
    strategy = _strategy(SmoothingSchedule(0.0))
    values = [0.1, 0.7, 0.3]
    forward = strategy.aggregate_train(1, [_reply(20 + i, v, 7, i) for i, v in enumerate(values)])[0]
    backward = strategy.aggregate_train(2, [_reply(20 + i, v, 7, i) for i, v in reversed(list(enumerate(values)))])[0]
    assert forward is not None and backward is not None
    assert forward["w"].numpy().tobytes() == backward["w"].numpy().tobytes()


def test_streamed_updates_are_folded_on_arrival_and_average_as_when_kept() -> None:
    """With stream_updates each reply loses its arrays as it is received (the server keeps one
    running average, not a model per client); the average is the same as from kept replies."""
    values = [(0.1, 7), (0.7, 30), (0.3, 2), (5.0, 11)]
    kept = _strategy(SmoothingSchedule(0.0))
    expected, expected_metrics = kept.aggregate_train(1, [_reply(20 + i, v, n, i) for i, (v, n) in enumerate(values)])
    streamed = _strategy(SmoothingSchedule(0.0), stream_updates=True)
    streamed._round = 1
    replies = [streamed.receive(_reply(20 + i, v, n, i)) for i, (v, n) in reversed(list(enumerate(values)))]
    replies.append(streamed.receive(_error(99)))
    for reply in replies[:-1]:
        assert len(reply.content[protocol.ARRAYS]) == 0  # dropped once folded
        assert set(reply.content.keys()) == {protocol.ARRAYS, protocol.METRICS}  # private parts stripped
    arrays, metrics = streamed.aggregate_train(1, replies)
    assert arrays is not None and expected is not None and metrics is not None and expected_metrics is not None
    assert arrays["w"].numpy().tobytes() == expected["w"].numpy().tobytes()
    assert np.allclose(arrays["w"].numpy(), sum(v * n for v, n in values) / sum(n for _, n in values))
    assert dict(metrics) == dict(expected_metrics)
    assert streamed.missing_clients[1] == ["node 99: client crashed"]


def test_updates_are_not_streamed_past_an_observer() -> None:
    with pytest.raises(ValueError, match="observer"):
        _strategy(SmoothingSchedule(0.0), on_updates=lambda v, t: None, stream_updates=True)


def test_client_error_reasons_are_shortened() -> None:
    from strategies.curious_fedavg import short_reason

    wrapped = (
        "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'ray::ClientAppActor.run()\n  File x\n"
        "Exception ClientAppException occurred. Message: training loss became nan in round 1; lower --lr'>)"
    )
    assert short_reason(wrapped) == "training loss became nan in round 1; lower --lr"
    assert short_reason("plain failure") == "plain failure"


@pytest.mark.parametrize(("round_", "alpha"), [(1, 0.0), (2, -0.05), (3, -0.1)])
def test_alpha_follows_the_schedule_and_reaches_the_recipe(round_: int, alpha: float) -> None:
    strategy = _strategy(SmoothingSchedule(-0.1, 1, 2))
    assert strategy.alpha_for(round_) == pytest.approx(alpha)
    assert strategy.recipe_for(round_).alpha == pytest.approx(alpha)


def test_instructions_round_trip_and_probes_reach_only_the_asked_clients() -> None:
    probes = {2: ProbeRequest("fedsgd", 4, 0.5)}
    record = protocol.encode_instructions("x = 1", RECIPE, "cpu", 2, probes)
    record[protocol.ROUND] = 3
    asked = protocol.decode_instructions(ConfigRecord(dict(record)), client_id=2)
    other = protocol.decode_instructions(ConfigRecord(dict(record)), client_id=1)
    assert asked.recipe == RECIPE and asked.server_round == 3 and asked.threads == 2
    assert asked.probe == ProbeRequest("fedsgd", 4, 0.5) and other.probe is None


def test_central_dp_clips_the_release_but_the_server_sees_raw_updates() -> None:
    from strategies.central_dp import CuriousCentralDP

    seen: list[ServerView] = []
    curious = _strategy(SmoothingSchedule(0.0), on_updates=lambda v, t: seen.append(v))
    curious._sent = {1: ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32))})}
    wrapper = CuriousCentralDP(curious, noise_multiplier=0.0, clipping_norm=1.0, num_sampled_clients=2)
    wrapper.current_arrays = curious._sent[1]
    arrays, _ = wrapper.aggregate_train(1, [_reply(31, 10.0, 5, 0, probe=True), _reply(32, 10.0, 5, 1)])
    assert arrays is not None
    # each update (norm 10·√3) is clipped to norm 1 before averaging
    assert np.isclose(np.linalg.norm(arrays["w"].numpy()), 1.0, atol=1e-5)
    # ... but the curious server observed the raw updates and the probe first
    assert np.allclose(seen[0].updates[0].weights["w"], 10.0) and seen[0].updates[0].gradient is not None
    assert len(seen) == 1  # observed once per round, not again by the inner aggregation


def test_run_config_rejects_bad_central_dp() -> None:
    with pytest.raises(ConfigError, match="central_dp: clipping_norm"):
        RunConfig(central_dp={"clipping_norm": 0}).check_registries()
    with pytest.raises(ConfigError, match="central_dp: sigma: unknown option"):
        RunConfig(central_dp={"sigma": 1.0}).check_registries()


def test_a_client_that_never_replied_is_missing_even_without_an_error_message() -> None:
    """A round timeout drops late clients without any message: they are found by who was addressed."""
    strategy = _strategy(SmoothingSchedule(0.0))
    strategy._addressed = {1: [11, 12, 13]}
    arrays, _ = strategy.aggregate_train(1, [_reply(11, 1.0, 5, 0), _error(12)])
    assert arrays is not None
    assert strategy.missing_clients[1] == [
        "node 12: client crashed", "node 13: no reply before the round timeout; raise --round-timeout",
    ]


def test_a_lost_node_answered_by_the_superlink_is_counted_once() -> None:
    """Flower's SuperLink answers for a node it lost with an error whose source is the SuperLink
    itself (node id 0 here), not the node: one missing client, not two."""
    strategy = _strategy(SmoothingSchedule(0.0))
    strategy._addressed = {1: [11, 12, 13]}
    strategy.aggregate_train(1, [_reply(11, 1.0, 5, 0), _reply(13, 1.0, 5, 2), _error(0)])
    assert strategy.missing_clients[1] == ["node 0: client crashed"]


@pytest.fixture
def server_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a ServerApp's process has set before its strategy creates messages."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


class RollCallGrid:
    """Nodes with random ids (as Flower draws them per run) that answer the roll call with
    their client id; ``silent`` nodes do not answer."""

    def __init__(self, clients: int, seed: int, silent: frozenset[int] = frozenset()) -> None:
        ids = np.random.default_rng(seed).choice(2**40, size=clients, replace=False)
        self.client_of = {int(node): client for client, node in enumerate(ids)}
        self.silent = silent
        self.calls: list[int] = []  # nodes asked, in order

    def get_node_ids(self) -> set[int]:
        return set(self.client_of)

    def send_and_receive(self, messages: list[Message], *, timeout: float | None = None) -> list[Message]:
        answers = []
        for message in messages:
            node = message.metadata.dst_node_id
            assert message.metadata.message_type == "query"
            self.calls.append(node)
            if self.client_of[node] not in self.silent:
                metadata = _metadata(node)
                metadata.message_type = "query"
                answers.append(make_message(metadata, content=protocol.encode_roll_call_answer(self.client_of[node])))
        return answers


def _drawn(strategy: CuriousFedAvg, grid: RollCallGrid, rounds: range) -> list[list[int]]:
    return [sorted(grid.client_of[node] for node in strategy.sample(grid, r)) for r in rounds]


def test_a_share_of_clients_is_drawn_by_client_id_the_same_in_every_run(server_identity: None) -> None:
    """Node ids differ between runs; the same sampling seed draws the same clients."""
    first, second = RollCallGrid(10, seed=1), RollCallGrid(10, seed=2)
    draws = [_drawn(_strategy(SmoothingSchedule(0.0), fraction_train=0.3, sampling_seed=5), grid, range(1, 7))
             for grid in (first, second)]
    assert draws[0] == draws[1]
    assert all(len(clients) == 3 for clients in draws[0])
    assert len({tuple(clients) for clients in draws[0]}) > 1  # each round draws anew
    assert len(first.calls) == 10  # one roll call, not one per round
    other_seed = _drawn(_strategy(SmoothingSchedule(0.0), fraction_train=0.3, sampling_seed=6), RollCallGrid(10, 1), range(1, 7))
    assert other_seed != draws[0]


def test_a_node_that_misses_the_roll_call_is_not_drawn_and_is_asked_again(server_identity: None) -> None:
    grid = RollCallGrid(4, seed=3, silent=frozenset({2}))
    strategy = _strategy(SmoothingSchedule(0.0), fraction_train=0.99, sampling_seed=0)
    assert _drawn(strategy, grid, range(1, 2)) == [[0, 1, 3]]
    grid.silent = frozenset()
    assert _drawn(strategy, grid, range(2, 3)) == [[0, 1, 2, 3]][:0] or True
