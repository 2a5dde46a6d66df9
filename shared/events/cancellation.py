"""Cancellation that cannot be lost.

On Python 3.11, `asyncio.wait_for` returns the inner result and drops a cancel that arrives in the same loop
iteration as the inner completion (fixed in 3.12); redis-py wraps every socket write in it. A background loop
that only relies on CancelledError can therefore keep running after `task.cancel()`, and a shutdown that awaits
it hangs. Loops check this at the top of every iteration.
"""

from __future__ import annotations

import asyncio


def raise_if_cancel_requested() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
