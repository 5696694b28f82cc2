"""A TCP proxy that adds latency and counts round trips, for PostgreSQL measurements.

This kernel has no netem, so the benchmark puts this proxy between the service and
PostgreSQL: each chunk the client sends is forwarded ``delay`` seconds after it
arrived (and each answer too, so a round trip costs ``2 * delay`` more), as a link
would: a chunk waits for its own delay, not for the chunks before it to be sent. Run
as a program, its event loop waits in ``select``, whose timeout is in microseconds
(epoll's is in milliseconds, rounded up, which made half a millisecond a whole one
when the loop was idle). It also counts the client's
*bursts*: data sent after the server has answered, or first, is one round trip of
the protocol (asyncpg sends Bind/Execute/Sync, or Parse/Describe/Sync, in one write
and then waits). Tests use it with no delay to count a request's round trips.

    python -m bench.proxy LISTEN_PORT TARGET_HOST TARGET_PORT [DELAY_MS]
"""

from __future__ import annotations

import asyncio
import selectors
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class Proxy:
    """Forwards one listening port to ``target``; ``round_trips`` counts client bursts."""

    def __init__(self, target_host: str, target_port: int, delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.round_trips = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*self.target)
        except OSError:
            client_out.close()
            return
        answered = [True]  # the next client data starts a round trip
        await asyncio.gather(
            self._pipe(client_in, server_out, answered, upstream=True),
            self._pipe(server_in, client_out, answered, upstream=False),
            return_exceptions=True,
        )

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        answered: list[bool],
        *,
        upstream: bool,
    ) -> None:
        late = Late(sink, self.delay) if self.delay else None
        try:
            while data := await source.read(65536):
                if upstream:
                    if answered[0]:
                        self.round_trips += 1
                        answered[0] = False
                else:
                    answered[0] = True
                if late is None:
                    sink.write(data)
                    await sink.drain()
                else:
                    late.send(data)
        finally:
            if late is not None:
                await late.sent()
            sink.close()


class Late:
    """Writes each chunk to ``sink`` ``delay`` seconds after it was given, in order."""

    def __init__(self, sink: asyncio.StreamWriter, delay: float) -> None:
        self.sink = sink
        self.delay = delay
        self.loop = asyncio.get_running_loop()
        self.waiting: deque[tuple[float, bytes]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def send(self, data: bytes) -> None:
        self.waiting.append((self.loop.time() + self.delay, data))
        if self.timer is None:
            self.timer = self.loop.call_at(self.waiting[0][0], self._due)

    def _due(self) -> None:
        """Write the chunk the timer was set for, and every other one due by now."""
        self.timer = None
        waiting = self.waiting
        self.sink.write(waiting.popleft()[1])
        now = self.loop.time()
        while waiting and waiting[0][0] <= now:
            self.sink.write(waiting.popleft()[1])
        if waiting:
            self.timer = self.loop.call_at(waiting[0][0], self._due)

    async def sent(self) -> None:
        """Return once every chunk given has been written."""
        while self.waiting:
            await asyncio.sleep(self.delay)


@contextmanager
def running(target_host: str, target_port: int, delay: float = 0.0) -> Iterator[Proxy]:
    """A proxy serving on a free loopback port in a thread of its own, for the block."""
    proxy = Proxy(target_host, target_port, delay)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy.start())
        started.set()
        try:
            loop.run_until_complete(proxy.serve_forever())
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
        thread.join(5)


def main() -> None:
    listen, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    delay = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0

    async def serve() -> None:
        proxy = Proxy(host, port, delay)
        await proxy.start(listen)
        await proxy.serve_forever()

    # select's timeout is in microseconds; epoll's in milliseconds (see above). A
    # benchmark's proxy has a few dozen sockets, well under select's limit.
    with asyncio.Runner(
        loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())
    ) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
