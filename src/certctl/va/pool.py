"""Bounded validation pools: one background event loop, one semaphore per challenge type.

The ACME handlers run in worker threads, so ``submit`` is thread-safe: it hands the work to
the VA's own loop with ``run_coroutine_threadsafe``. Each type has its own cap, so a flood
of slow http-01 targets cannot starve dns-01. A validation holds its slot only while it
validates (bounded by the VA timeout); the callback, which writes to the database, runs
afterwards in a small thread pool, off the loop and outside the slot.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from certctl.va.model import ValidationRequest, ValidationResult

log = logging.getLogger(__name__)

Callback = Callable[[ValidationResult], None]
Runner = Callable[[ValidationRequest], Awaitable[ValidationResult]]


@dataclass(frozen=True)
class PoolStats:
    """A snapshot: validations running, waiting for a slot, and the peak running, per type."""

    in_flight: Mapping[str, int]
    waiting: Mapping[str, int]
    peak_in_flight: Mapping[str, int]
    outstanding: int  # submitted and not finished, callbacks included


class ValidationPool:
    def __init__(self, run: Runner, caps: Mapping[str, int], *, callback_workers: int = 4):
        self._run = run
        self._caps = dict(caps)
        self._lock = threading.Lock()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._futures: set[concurrent.futures.Future[None]] = set()
        self._in_flight = dict.fromkeys(self._caps, 0)
        self._waiting = dict.fromkeys(self._caps, 0)
        self._peak = dict.fromkeys(self._caps, 0)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=callback_workers, thread_name_prefix="certctl-va-callback"
        )

    @property
    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                dict(self._in_flight), dict(self._waiting), dict(self._peak), len(self._futures)
            )

    def submit(self, req: ValidationRequest, callback: Callback) -> bool:
        """Queue ``req``; ``callback`` gets the result in a worker thread. False if closing."""
        with self._lock:
            if self._closing:
                return False
            loop = self._started_loop()
            future = asyncio.run_coroutine_threadsafe(self._one(req, callback), loop)
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return True

    async def drain(self, timeout: float) -> bool:
        """Stop accepting, wait up to ``timeout`` s, cancel the rest and stop the loop.

        Returns True when everything submitted finished. A cancelled validation does not
        call back: its challenge stays "processing" for the RA to pick up again.
        """
        futures = self._begin_close()
        pending: set[asyncio.Future[None]] = set()
        if futures:
            wrapped = [asyncio.wrap_future(f) for f in futures]
            _, pending = await asyncio.wait(wrapped, timeout=timeout)
            for item in pending:
                item.cancel()
        await asyncio.to_thread(self._stop)
        return not pending

    def close(self, timeout: float = 5.0) -> bool:
        """Blocking ``drain`` for synchronous shutdown code (never call from a callback)."""
        futures = self._begin_close()
        _, pending = concurrent.futures.wait(futures, timeout=timeout)
        for item in pending:
            item.cancel()
        self._stop()
        return not pending

    # --- inside the loop ----------------------------------------------------------------

    async def _one(self, req: ValidationRequest, callback: Callback) -> None:
        kind = req.challenge_type
        semaphore = self._semaphores.get(kind)
        if semaphore is None:
            result = await self._run(req)  # unknown type: validate refuses it at once
        else:
            self._count(self._waiting, kind, +1)
            try:
                await semaphore.acquire()
            finally:
                self._count(self._waiting, kind, -1)
            try:
                self._count(self._in_flight, kind, +1)
                result = await self._run(req)
            finally:
                self._count(self._in_flight, kind, -1)
                semaphore.release()
        await asyncio.get_running_loop().run_in_executor(self._executor, _deliver, callback, result)

    def _count(self, counter: dict[str, int], kind: str, delta: int) -> None:
        with self._lock:
            counter[kind] += delta
            if counter is self._in_flight:
                self._peak[kind] = max(self._peak[kind], counter[kind])

    # --- lifecycle ----------------------------------------------------------------------

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        """The VA loop, started on first use (caller holds the lock)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._semaphores = {kind: asyncio.Semaphore(cap) for kind, cap in self._caps.items()}
            self._thread = threading.Thread(
                target=_serve, args=(loop,), name="certctl-va", daemon=True
            )
            self._thread.start()
            self._loop = loop
        return self._loop

    def _begin_close(self) -> list[concurrent.futures.Future[None]]:
        with self._lock:
            self._closing = True
            return list(self._futures)

    def _forget(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
        self._executor.shutdown(wait=True, cancel_futures=True)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _deliver(callback: Callback, result: ValidationResult) -> None:
    try:
        callback(result)
    except Exception:
        # The RA's callback owns its errors; one failing must not stop the pool.
        log.exception("validation callback failed")
