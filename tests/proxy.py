"""A TCP proxy between the service and Postgres that a test can cut, restore, pause and resume,
that counts round trips and can add to their time (bench/runner.py uses it for both)."""

import asyncio
import contextlib


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cut = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.held = asyncio.Event()  # set when a client sent data while paused
        # Each time a client sends after the server has answered (or first) is a round trip.
        self.round_trips = 0
        self.delay = 0.0  # seconds each round trip waits before it reaches the server

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a database that went down."""
        self._cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._cut = False

    def pause(self) -> None:
        """Hold what clients send until resume(); `held` tells that something is waiting."""
        self.held.clear()
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        turn = {"client": False}  # whose data went through last on this connection
        for coro in (
            self._pipe(reader, up_writer, turn, from_client=True),
            self._pipe(up_reader, writer, turn, from_client=False),
        ):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        turn: dict[str, bool],
        *,
        from_client: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if from_client and not self._flowing.is_set():
                    self.held.set()
                    await self._flowing.wait()
                if from_client and not turn["client"]:
                    self.round_trips += 1
                    if self.delay:
                        await asyncio.sleep(self.delay)
                turn["client"] = from_client
                if self._cut:
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)
