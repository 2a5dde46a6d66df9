"""An upload read while it is still being received.

The receiving request passes every chunk of the body on to the (encrypted) spool, as always, and also hands
it to the import's processing while the processing keeps up; a few megabytes may wait for it. Once it falls
further behind (an upload arrives faster than it can be imported), the hand-over stops, and the processing
reads the rest from the spool at the offset it had reached, when the spool is complete. Memory stays bounded
by `max_bytes`; the spool is still the whole file (resume after a crash, as for any import).

If the upload fails before its end, the processing stops at the point it reached with `UploadInterrupted`;
the chunks it committed before are complete tasks, as with any file that cannot be read to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable

_END = object()  # the body was received to its end (the spool may still be closing)
_BEHIND = object()  # the processing fell behind: the rest comes from the spool
_FAILED = object()  # the upload failed


class UploadInterrupted(Exception):
    """The upload ended before the file did."""


class UploadFeed:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._queued = 0  # bytes handed over and not yet taken
        self._handed = 0  # bytes of the file handed over in all
        self._behind = False
        self.received: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def tee(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """The receiving side: every chunk goes on (to the spool), and to the processing while it keeps up."""
        async for chunk in chunks:
            if not self._behind:
                if self._queued + len(chunk) > self.max_bytes:
                    self._behind = True
                    self._queue.put_nowait(_BEHIND)
                else:
                    self._queued += len(chunk)
                    self._handed += len(chunk)
                    self._queue.put_nowait(chunk)
            yield chunk
        if not self._behind:
            self._queue.put_nowait(_END)

    def finish(self, error: BaseException | None = None) -> None:
        """The upload is over: the spool is complete (no error), or it failed."""
        if self.received.done():
            return
        if error is None:
            self.received.set_result(None)
        else:
            self.received.set_exception(UploadInterrupted(f"the upload ended before the file did "
                                                          f"({type(error).__name__})"))
            self.received.exception()  # retrieved: a feed nobody reads any more must not log it as lost
            self._queue.put_nowait(_FAILED)

    async def settled(self) -> None:
        """Returns once the upload is over, whichever way."""
        await asyncio.wait({self.received})

    async def chunks(self, spool_from: Callable[[int], AsyncIterable[bytes]]) -> AsyncIterator[bytes]:
        """The processing side: the file, from the hand-over, then (if it fell behind) from the spool at the
        offset reached, once the spool is complete. Raises `UploadInterrupted` if the upload failed."""
        while True:
            item = await self._queue.get()
            if item is _END:
                break
            if item is _BEHIND or item is _FAILED:
                await asyncio.shield(self.received)
                async for chunk in spool_from(self._handed):
                    yield chunk
                return
            self._queued -= len(item)  # type: ignore[arg-type]
            yield item  # type: ignore[misc]
        await asyncio.shield(self.received)  # the end of the file: wait for the spool to be complete
