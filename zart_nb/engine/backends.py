"""Which executor runs a waiting body's children, and how zart-nb drives each kind.

``executor`` (``wait(handles, executor=...)``, ``%%zart_durable --executor``,
``%zart_executor``, ``ZART_EXECUTOR``) may be:

- any ``concurrent.futures.Executor``, or anything whose ``submit`` returns such futures:
  ``ProcessPoolExecutor``, ``loky.get_reusable_executor()``, ipyparallel's
  ``rc.executor()``, Dask's ``client.get_executor()``, ``ray_executor()``;
- a Dask ``distributed.Client``, or ``dask_executor(...)``: driven natively, one
  ``client.map`` per batch of children and one ``gather`` per batch of results, far
  cheaper per child than a ``submit`` each through ``client.get_executor()``;
- a string (``config.parse_executor``): ``dask://HOST:PORT``, ``ray``, ``loky:4``,
  ``processes:4``, ``threads:8``, made on first use and kept for the process; ``"off"``
  means zart-nb's own workers (the PostgreSQL queue).

Which one a ``wait`` uses: its own ``executor``, else the body's (``--executor``), else
the process's default (``%zart_executor``), else ``ZART_EXECUTOR``; none: the queue. No
engine (distributed, ray, loky) is imported unless it is used.
"""

from __future__ import annotations

import importlib
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import (
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from typing import Any, Protocol

from ..config import ExecutorSpec, parse_executor, settings
from ..errors import UsageError


class Backend(Protocol):
    """How the engine submits children to one kind of executor and hears back."""

    label: str

    def submit(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
        """``fn(*call)`` for each call; their futures, in order."""

    def when_done(self, future: Any, callback: Callable[[Any], None]) -> None:
        """Call ``callback(future)`` once it is done (from any thread)."""

    def outcomes(self, futures: list[Any]) -> list[Any]:
        """For each done future: its value, or the exception it ended with."""

    def cancel(self, future: Any) -> bool:
        """Cancel it; True when it is known never to have started."""

    def started(self, future: Any) -> bool:
        """True once the executor says it runs (False when it cannot say)."""


class FuturesBackend:
    """Any executor with ``submit`` returning ``concurrent.futures.Future``s.

    A process pool whose process died is broken for good (every task it held fails, and
    it takes no more): one that zart-nb made from a name is made again (``remake``); one
    the user gave is not ours to replace, and the wait says so.
    """

    def __init__(self, executor: Any, remake: Callable[[], Any] | None = None) -> None:
        self.executor = executor
        self.remake = remake
        self.label = type(executor).__name__

    def submit(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
        futures = []
        for call in calls:
            try:
                futures.append(self.executor.submit(fn, *call))
            except BrokenExecutor:
                if self.remake is None:
                    raise
                self.executor = self.remake()
                futures.append(self.executor.submit(fn, *call))
        return futures

    def when_done(self, future: Any, callback: Callable[[Any], None]) -> None:
        future.add_done_callback(callback)

    def outcomes(self, futures: list[Any]) -> list[Any]:
        found: list[Any] = []
        for future in futures:
            try:
                error = future.exception(timeout=0)
            except CancelledError as exc:
                found.append(exc)
                continue
            found.append(error if error is not None else future.result(timeout=0))
        return found

    def cancel(self, future: Any) -> bool:
        return bool(future.cancel())

    def started(self, future: Any) -> bool:
        return bool(future.running())


class DaskBackend:
    """A Dask ``distributed.Client``: children go in one ``map`` per batch, results come
    back in one ``gather`` per batch."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.label = "Dask"

    def submit(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
        if not calls:
            return []
        futures: list[Any] = self.client.map(fn, *zip(*calls, strict=True), pure=False)
        return futures

    def when_done(self, future: Any, callback: Callable[[Any], None]) -> None:
        future.add_done_callback(callback)

    def outcomes(self, futures: list[Any]) -> list[Any]:
        finished = [f for f in futures if f.status == "finished"]
        try:
            values = dict(zip(finished, self.client.gather(finished), strict=True))
        except Exception:  # one of them went wrong since: each on its own
            values = {}
        found: list[Any] = []
        for future in futures:
            if future in values:
                found.append(values[future])
            elif future.status == "cancelled":
                found.append(CancelledError(f"Dask cancelled task {future.key}"))
            else:
                try:
                    found.append(future.result())
                except BaseException as exc:  # KilledWorker, a lost connection, ...
                    found.append(exc)
        return found

    def cancel(self, future: Any) -> bool:
        future.cancel()
        return False  # Dask does not say whether it had started

    def started(self, future: Any) -> bool:
        return False


class DaskExecutor(Executor):
    """A Dask client as a ``concurrent.futures.Executor`` (``dask_executor`` makes one);
    ``wait`` drives its ``client`` natively."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._executor = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        submitted: Future[Any] = self._executor.submit(fn, *args, **kwargs)
        return submitted

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait)

    def __repr__(self) -> str:
        return f"<DaskExecutor of {self.client!r}>"


class RayExecutor(Executor):
    """Ray as a ``concurrent.futures.Executor``: each call is a Ray task, its future
    Ray's own (``ObjectRef.future()``)."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(fn)
        submitted: Future[Any] = remote.remote(*args, **kwargs).future()
        return submitted


def dask_executor(address_or_client: Any = None) -> DaskExecutor:
    """A Dask cluster as an executor: a scheduler's address (``"tcp://host:8786"``), a
    ``distributed.Client`` or a cluster object (``LocalCluster``, dask-jobqueue's, …);
    None starts a local cluster (``distributed.Client()``). Needs ``zart-nb[dask]``."""
    if isinstance(address_or_client, DaskExecutor):
        return address_or_client
    if is_dask_client(address_or_client):
        return DaskExecutor(address_or_client)
    distributed = _engine("distributed", "dask")
    try:
        client = distributed.Client(address_or_client)
    except (OSError, TimeoutError) as exc:  # no scheduler there
        raise UsageError(f"cannot reach the Dask scheduler at {address_or_client}: "
                         f"{type(exc).__name__}: {exc}") from None
    return DaskExecutor(client)


def ray_executor(address: str | None = None, **init: Any) -> RayExecutor:
    """Ray as an executor: ``ray.init(address, **init)`` unless Ray is initialised
    already (None: a local Ray, or the cluster ``RAY_ADDRESS`` names). Needs
    ``zart-nb[ray]``."""
    ray = _engine("ray", "ray")
    if not ray.is_initialized():
        ray.init(address=address, **init)
    return RayExecutor(ray)


def is_dask_client(value: Any) -> bool:
    kind = type(value)
    return kind.__module__.split(".")[0] == "distributed" and kind.__name__ == "Client"


def _engine(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{module} is not installed: pip install 'zart-nb[{extra}]'") from None


# -- the executors the process made from names, and its default ------------------------
_made: dict[str, Any] = {}
_made_lock = threading.Lock()
_default: Any = None


def set_default(executor: Any) -> None:
    """This process's executor for bodies that name none (``%zart_executor``): checked
    now; ``"off"`` is zart-nb's workers; None goes back to ``ZART_EXECUTOR``."""
    global _default
    if executor is not None:
        backend_for(executor)
    _default = executor


def default() -> Any:
    """What ``set_default`` set, else ``ZART_EXECUTOR`` (a spec), else None."""
    return _default if _default is not None else settings().executor


def choose(explicit: Any = None, body: Any = None) -> Backend | None:
    """The backend a ``wait`` uses (see the module's docstring); None: the queue."""
    chosen = next((c for c in (explicit, body) if c is not None), None)
    if chosen is None:
        chosen = default()
    return None if chosen is None else backend_for(chosen)


def configured(body: Any = None) -> bool:
    """True when a body with executor ``body`` would run its children on an executor by
    default (its local worker pool is then not started); makes nothing."""
    chosen = body if body is not None else default()
    if isinstance(chosen, str):
        chosen = parse_executor(chosen, what="executor")
    if isinstance(chosen, ExecutorSpec):
        return chosen.kind != "off"
    return chosen is not None


def backend_for(executor: Any) -> Backend | None:
    """How to drive ``executor`` (None for ``"off"``); a UsageError names what is wrong."""
    if isinstance(executor, str):
        executor = parse_executor(executor, what="executor")
    if isinstance(executor, ExecutorSpec):
        spec = executor
        if spec.kind == "off":
            return None
        if spec.kind in ("loky", "processes"):
            return FuturesBackend(_from_spec(spec), remake=lambda: _from_spec(spec, broken=True))
        executor = _from_spec(spec)
    if isinstance(executor, DaskExecutor):
        return DaskBackend(executor.client)
    if is_dask_client(executor):
        return DaskBackend(executor)
    if callable(getattr(executor, "submit", None)):
        return FuturesBackend(executor)
    raise UsageError(f"executor must be a concurrent.futures.Executor, a Dask client or a "
                     f"name such as 'dask://HOST:PORT' or 'loky:4', not {type(executor).__name__}")


def _from_spec(spec: ExecutorSpec, *, broken: bool = False) -> Any:
    """The process's executor of that name, made on first use (again when ``broken``)."""
    if spec.kind == "loky":  # loky keeps its own: a broken one is replaced on the next call
        return _engine("loky", "loky").get_reusable_executor(max_workers=spec.workers)
    with _made_lock:
        made = None if broken else _made.get(str(spec))
        if made is None:
            made = _made[str(spec)] = _make(spec)
        return made


def _make(spec: ExecutorSpec) -> Any:
    if spec.kind == "threads":
        return ThreadPoolExecutor(spec.workers, thread_name_prefix="zart-executor")
    if spec.kind == "processes":  # spawned: a fork would copy the body's threads and sockets
        return ProcessPoolExecutor(spec.workers, mp_context=multiprocessing.get_context("spawn"))
    if spec.kind == "dask":
        return dask_executor(spec.address)
    return ray_executor(spec.address)
