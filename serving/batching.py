"""A small batch scheduler with TF Serving's `BatchingParameters` semantics.

TF Serving (`--enable_batching`) queues concurrent Session::Run calls and runs them as one:
a batch is closed when it holds `max_batch_size` examples or when its oldest request has waited
`batch_timeout_micros`; `num_batch_threads` batches run at once; a queue longer than
`max_enqueued_batches` batches refuses new requests with UNAVAILABLE; a batch is padded up to the
next of `allowed_batch_sizes` by repeating its first example, and the padding is cut from the
outputs. Requests are only merged when every input has the same non-batch shape (video clips of
different sizes cannot be concatenated; TF Serving would need `pad_variable_length_inputs`,
which changes the values a model sees, so we keep them in separate batches instead).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from tfzoo.errors import TfzooError

from .errors import invalid, unavailable


@dataclass(frozen=True)
class BatchOptions:
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple = ()

    @classmethod
    def from_proto(cls, params) -> "BatchOptions":
        """From a BatchingParameters message; unset fields keep TF Serving's defaults."""
        kwargs = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                     "num_batch_threads"):
            if params.HasField(name):
                kwargs[name] = int(getattr(params, name).value)
        kwargs["allowed_batch_sizes"] = tuple(int(s) for s in params.allowed_batch_sizes)
        if params.pad_variable_length_inputs:
            raise TfzooError("pad_variable_length_inputs: true is not supported by the dev "
                             "server (requests of different clip sizes are batched separately)")
        return cls(**kwargs)

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise TfzooError(f"batching parameter {name}={getattr(self, name)}; expected >= 1")
        if self.batch_timeout_micros < 0:
            raise TfzooError(f"batch_timeout_micros={self.batch_timeout_micros}; expected >= 0")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != self.max_batch_size
                      or sizes[0] < 1):
            raise TfzooError(f"allowed_batch_sizes={sizes}: expected increasing positive sizes "
                             f"ending with max_batch_size={self.max_batch_size}")


@dataclass
class _Task:
    key: tuple
    inputs: dict
    size: int
    future: Future
    enqueued: float


class BatchScheduler:
    """Batches `run(key, inputs) -> outputs` calls whose inputs share a key (signature, shapes)."""

    def __init__(self, run, options: BatchOptions, name: str = "batch"):
        self._run, self.options = run, options
        self._tasks: list[_Task] = []
        self._queued = 0
        self._cond = threading.Condition()
        self._stopping = False
        self.batch_sizes: list[int] = []  # sizes of the batches run (for metrics and tests)
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for t in self._threads:
            t.start()

    def submit(self, key, inputs: dict[str, np.ndarray]) -> Future:
        size = int(next(iter(inputs.values())).shape[0])
        limit = self.options.max_batch_size
        if size > limit:
            raise invalid(f"Task size {size} is larger than maximum input batch size {limit}")
        task = _Task(key, inputs, size, Future(), time.monotonic())
        with self._cond:
            if self._stopping:
                raise unavailable("the servable is being unloaded")
            if self._queued + size > limit * self.options.max_enqueued_batches:
                raise unavailable("The batch scheduling queue to which this task was submitted "
                                  "is full")
            self._tasks.append(task)
            self._queued += size
            self._cond.notify_all()
        return task.future

    def stop(self):
        """Runs what is queued, then ends the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()

    def _take(self) -> list[_Task] | None:
        timeout = self.options.batch_timeout_micros / 1e6
        with self._cond:
            while True:
                if not self._tasks:
                    if self._stopping:
                        return None
                    self._cond.wait()
                    continue
                first = self._tasks[0]
                batch, total = [], 0
                for t in self._tasks:
                    if t.key == first.key and total + t.size <= self.options.max_batch_size:
                        batch.append(t)
                        total += t.size
                wait = first.enqueued + timeout - time.monotonic()
                if total >= self.options.max_batch_size or wait <= 0 or self._stopping:
                    taken = {id(t) for t in batch}
                    self._tasks = [t for t in self._tasks if id(t) not in taken]
                    self._queued -= total
                    return batch
                self._cond.wait(wait)

    def _loop(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Task]):
        sizes = [t.size for t in batch]
        total = sum(sizes)
        padded = next((s for s in self.options.allowed_batch_sizes if s >= total), total)
        try:
            inputs = {}
            for name in batch[0].inputs:
                parts = [t.inputs[name] for t in batch]
                if padded > total:
                    parts.append(np.repeat(parts[0][:1], padded - total, axis=0))
                inputs[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
            outputs = self._run(batch[0].key, inputs)
            for name, value in outputs.items():
                if value.ndim == 0 or value.shape[0] != padded:
                    raise invalid(f"Batched output tensor {name!r} has shape {value.shape}; "
                                  f"batching needs a 0th dimension of {padded} (the batch)")
        except BaseException as e:  # every waiting request gets the error, none hangs
            for t in batch:
                t.future.set_exception(e)
            return
        self.batch_sizes.append(padded)
        start = 0
        for t in batch:
            t.future.set_result({k: v[start:start + t.size] for k, v in outputs.items()})
            start += t.size
