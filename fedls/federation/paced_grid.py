"""A Flower Grid that keeps a bounded number of instructions in flight.

Flower's ``send_and_receive`` pushes every instruction of a round at once. In the simulation
runtime that is quadratic: every 0.1 s the runtime asks the link state, node by node, for
that node's next instruction (``vce_api.add_messages_to_queue``), and each question scans
every stored instruction, delivered or not, until its reply is pulled. With 1,000 clients the
loop never sleeps and holds the driver's interpreter (1,000 nodes × 1,000 messages per
cycle); the actors then wait for work.

:class:`PacedGrid` wraps any Grid and sends a round's instructions a window at a time: it
pushes up to ``window`` of them, pulls the replies that have arrived, and refills, so the
runtime never stores more than ``window`` instructions. The simulation uses twice the number
of clients that train at once (one training and one queued per worker). Each reply is handed
to ``on_reply`` as soon as it is pulled, which lets the strategy fold the update into a running
average and drop it (flat memory in the number of clients). The round's deadline is the same
as Flower's: one timeout for the whole round; instructions not yet sent when it passes are
never sent, and their clients count as not having replied.

With no window (a deployed federation: every SuperNode trains at once, and the simulation's
delivery loop does not exist) the wrapped grid runs the round itself, exactly as Flower's
strategies have it, and ``on_reply`` sees the replies when it returns. Pacing a SuperLink with
fedls' own 0.1 s pulls (Flower's HTTP grid pulls every 3 s) made one SuperNode's reply miss the
round timeout in the deployment test; the cause was not pinned down, so a deployed round is
left to Flower.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo  # pylint: disable=E0611
from flwr.serverapp import Grid
from flwr.supercore.run import Run

ReplyHandler = Callable[[Message], Message]


class PacedGrid(Grid):
    """Delegates to ``grid``; only :meth:`send_and_receive` differs (see the module doc)."""

    def __init__(
        self, grid: Grid, window: int | None, on_reply: ReplyHandler | None = None, poll_s: float = 0.1
    ) -> None:
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._grid = grid
        self.window = window
        self.on_reply = on_reply
        self.poll_s = poll_s

    def _handle(self, reply: Message) -> Message:
        return self.on_reply(reply) if self.on_reply is not None else reply

    # plain delegation ---------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(  # noqa: PLR0913 - Flower's signature
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    # the paced round ----------------------------------------------------------------
    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        if self.window is None:
            # The wrapped grid's own round (a deployed SuperLink paces its own pulls, every 3 s
            # in Flower's HTTP grid); the replies are handed over when it returns.
            return [self._handle(reply) for reply in self._grid.send_and_receive(messages, timeout=timeout)]
        waiting = list(messages)
        waiting.reverse()  # pop() from the end sends them in the caller's order
        deadline = None if timeout is None else time.monotonic() + timeout
        in_flight: set[str] = set()
        replies: list[Message] = []
        while True:
            if in_flight:
                for reply in self._grid.pull_messages(in_flight):
                    in_flight.discard(reply.metadata.reply_to_message_id)
                    replies.append(self._handle(reply))
            if waiting and len(in_flight) < self.window:
                batch = [waiting.pop() for _ in range(min(self.window - len(in_flight), len(waiting)))]
                in_flight.update(self._grid.push_messages(batch))
            if not in_flight and not waiting:
                return replies
            if deadline is not None and time.monotonic() >= deadline:
                return replies
            time.sleep(self.poll_s)
