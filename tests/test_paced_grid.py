"""The paced grid on a fake link: never more than the window in flight, every reply handed
over as it is pulled, the round's deadline honoured with unsent instructions never sent."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest
from flwr.app import ConfigRecord, Message, Metadata, RecordDict
from flwr.app.message.message import make_message

from fedls.federation.paced_grid import PacedGrid


class FakeGrid:
    """Answers each pushed instruction after ``delay`` pulls; records what was in flight."""

    def __init__(self, delay: int = 1, answer: bool = True) -> None:
        self.delay = delay
        self.answer = answer
        self.stored: dict[str, tuple[Message, int]] = {}
        self.pushed: list[int] = []
        self.max_in_flight = 0
        self.rounds = 0  # calls of this grid's own send_and_receive

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            message_id = f"m{len(self.pushed)}"
            self.pushed.append(message.metadata.dst_node_id)
            self.stored[message_id] = (message, 0)
            ids.append(message_id)
        self.max_in_flight = max(self.max_in_flight, len(self.stored))
        return ids

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Flower's way: everything at once, then pull until all replied."""
        self.rounds += 1
        pending = set(self.push_messages(messages))
        replies: list[Message] = []
        while pending:
            pulled = self.pull_messages(pending)
            replies.extend(pulled)
            pending -= {r.metadata.reply_to_message_id for r in pulled}
        return replies

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        replies = []
        for message_id in list(message_ids):
            message, pulls = self.stored[message_id]
            if self.answer and pulls + 1 >= self.delay:
                del self.stored[message_id]
                metadata = _metadata(message.metadata.dst_node_id, 0, f"r-{message_id}", message_id)
                replies.append(make_message(metadata, content=RecordDict({"c": ConfigRecord({"x": 1})})))
            else:
                self.stored[message_id] = (message, pulls + 1)
        return replies


def _metadata(src: int, dst: int, message_id: str = "", reply_to: str = "") -> Metadata:
    return Metadata(
        run_id=1, message_id=message_id, src_node_id=src, dst_node_id=dst, reply_to_message_id=reply_to, group_id="1",
        created_at=time.time(), ttl=60.0, message_type="train",
    )


def _instructions(n: int) -> list[Message]:
    return [make_message(_metadata(0, 100 + i), content=RecordDict()) for i in range(n)]


def test_a_round_goes_out_a_window_at_a_time_and_every_reply_comes_back() -> None:
    fake = FakeGrid(delay=2)
    seen: list[int] = []

    def on_reply(reply: Message) -> Message:
        seen.append(reply.metadata.src_node_id)
        return reply

    grid = PacedGrid(fake, window=3, on_reply=on_reply, poll_s=0.0)  # type: ignore[arg-type]
    replies = list(grid.send_and_receive(_instructions(10), timeout=10))
    assert fake.max_in_flight == 3
    assert fake.pushed == [100 + i for i in range(10)]  # in the caller's order
    assert sorted(r.metadata.src_node_id for r in replies) == [100 + i for i in range(10)]
    assert seen == [r.metadata.src_node_id for r in replies]  # each handed over once, as pulled


def test_the_deadline_ends_the_round_and_unsent_instructions_stay_unsent() -> None:
    fake = FakeGrid(answer=False)
    grid = PacedGrid(fake, window=4, poll_s=0.01)  # type: ignore[arg-type]
    started = time.monotonic()
    assert list(grid.send_and_receive(_instructions(10), timeout=0.2)) == []
    assert 0.2 <= time.monotonic() - started < 2
    assert fake.pushed == [100, 101, 102, 103]


def test_the_window_must_hold_one_instruction() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PacedGrid(FakeGrid(), window=0)  # type: ignore[arg-type]


def test_without_a_window_the_wrapped_grid_runs_the_round_and_replies_are_still_handed_over() -> None:
    """A deployed federation: the SuperLink's grid runs the round as Flower has it."""
    fake = FakeGrid(delay=2)
    seen: list[int] = []
    grid = PacedGrid(fake, window=None, on_reply=lambda r: seen.append(r.metadata.src_node_id) or r)  # type: ignore[arg-type]
    replies = list(grid.send_and_receive(_instructions(7), timeout=10))
    assert fake.rounds == 1 and fake.max_in_flight == 7
    assert sorted(seen) == sorted(r.metadata.src_node_id for r in replies) == [100 + i for i in range(7)]
