"""Signed cloudpickle: every payload zart-nb stores travels in this envelope.

Layout (all before the pickle is touched)::

    b"ZNB" | format version (1 byte) | python major, minor (2 bytes)
          | len(cloudpickle version) (1 byte) | cloudpickle version (ascii)
          | HMAC-SHA256 over header + body (32 bytes) | body

Format 1: the body is the whole pickle. Format 2: the body is the manifest of a large
payload stored in chunks (``zart_nb.manifest``); the same header and signature cover it.

A payload is unpickled only after its signature checked out with the installation's
secret, and only by the Python major.minor that wrote it: cloudpickle promises
nothing across Python versions, so a foreign payload is refused with a message
saying which Python wrote it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import stat
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle

from .config import settings
from .errors import PayloadError, UsageError

MAGIC = b"ZNB"
FORMAT_VERSION = 1  # the body is the whole pickle
MANIFEST_FORMAT = 2  # the body lists the chunks of a large payload (zart_nb.manifest)
_PY = bytes([sys.version_info.major, sys.version_info.minor])
_CP = cloudpickle.__version__.encode("ascii")
_HEADER = MAGIC + bytes([FORMAT_VERSION]) + _PY + bytes([len(_CP)]) + _CP
_MANIFEST_HEADER = MAGIC + bytes([MANIFEST_FORMAT]) + _PY + bytes([len(_CP)]) + _CP
_MAC_SIZE = 32
_PROTOCOL = 5
# A payload stored whole (arguments, a run's input, events, errors, step-cell variables)
# is one bytea value, and PostgreSQL keeps at most 1 GiB in one value (and in one
# protocol message): a larger one would make the server drop the connection mid-write.
# Results have no such limit: a large one is stored in chunks (zart_nb.payload_codec).
MAX_PAYLOAD = (1 << 30) - (1 << 20)

_key_cache: dict[str, bytes] = {}


def secret_key() -> bytes:
    """The HMAC key: ``ZART_SECRET``, else ``$ZART_HOME/secret.key`` (created 0600)."""
    s = settings()
    if s.secret:
        return s.secret
    cache_key = str(s.home)
    if cache_key not in _key_cache:
        _key_cache[cache_key] = _load_or_create_key(s.home / "secret.key")
    return _key_cache[cache_key]


def _load_or_create_key(path: Path) -> bytes:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UsageError(f"cannot create the key file {path}: {exc.strerror}; "
                         "set ZART_HOME to a writable folder or ZART_SECRET") from None
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32).hex().encode())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UsageError(f"key file {path} is readable by others (mode {mode:o}); "
                         f"fix it with: chmod 600 {path}")
    key = path.read_bytes().strip()
    if len(key) < 32:
        # another process created the file and has not written it yet
        raise PayloadError(f"key file {path} is empty or truncated; delete it to make a new key")
    return key


def encode(value: Any, *, what: str = "value", owner: str = "") -> bytes:
    """Pickle ``value`` into a signed envelope.

    An unpicklable part is named by its path from ``what``, after ``owner`` (e.g.
    ``step 'load': result['conn']: cannot pickle 'psycopg.Connection'``).
    """
    try:
        body = dumps(value)
    except Exception as exc:  # pickling raises many kinds of errors
        reason = unpicklable_reason(value, what, exc)
        raise PayloadError(f"{owner}: {reason}" if owner else reason) from None
    return seal_pickle(body, what=what, owner=owner)


# Values that plain pickle writes byte for byte as cloudpickle does (cloudpickle differs
# only for functions, classes and modules): pickled without setting up cloudpickle's
# pickler, a tenth of the time of a trivial step's result.
_SCALARS = frozenset({int, float, complex, bool, type(None), str, bytes})
SMALL_SCALAR = 16 * 1024  # str and bytes up to this length take that path


def dumps_scalar(value: Any) -> bytes | None:
    """``dumps(value)`` when ``value`` is a small scalar (a number, a short str or bytes,
    None), by the quicker path; None for any other value."""
    kind = type(value)
    if kind not in _SCALARS or ((kind is str or kind is bytes) and len(value) > SMALL_SCALAR):
        return None
    return pickle.dumps(value, protocol=_PROTOCOL)


def dumps(value: Any) -> bytes:
    """``value`` pickled as zart-nb's payloads are (cloudpickle, protocol 5), unsealed."""
    body: bytes = dumps_scalar(value) or cloudpickle.dumps(value, protocol=_PROTOCOL)
    return body


def seal_pickle(body: bytes, *, what: str = "value", owner: str = "") -> bytes:
    """A pickle made elsewhere with this Python and cloudpickle (``PICKLED_BY``), sealed
    without being unpickled; refused when PostgreSQL could not store it."""
    if len(body) > MAX_PAYLOAD:
        reason = (f"{what} pickles to {len(body) / (1 << 20):,.0f} MiB; PostgreSQL stores at most "
                  f"{MAX_PAYLOAD >> 20:,} MiB in one value: keep it in a file or an object store "
                  "and return its path")
        raise PayloadError(f"{owner}: {reason}" if owner else reason)
    return seal(body)


def seal(body: bytes, fmt: int = FORMAT_VERSION) -> bytes:
    """``body`` behind the header of format ``fmt`` and its signature."""
    header = _HEADER if fmt == FORMAT_VERSION else _MANIFEST_HEADER
    return b"".join((header, _mac(header, body), body))


PICKLED_BY = (sys.version_info.major, sys.version_info.minor, cloudpickle.__version__)
"""Who pickles this process's payloads: a pickle from a process with the same may be sealed."""


def _mac(header: bytes | memoryview, body: bytes | memoryview) -> bytes:
    """HMAC-SHA256 of header + body (RFC 2104), from the key's padded states hashed
    once per process: a small payload's check (every replayed step) costs two hash
    copies instead of setting up the key each time, and no part of the body is copied."""
    inner_pad, outer_pad = _pads(secret_key())
    inner = inner_pad.copy()
    inner.update(header)
    inner.update(body)
    outer = outer_pad.copy()
    outer.update(inner.digest())
    return outer.digest()


_pad_cache: dict[bytes, tuple[hashlib._Hash, hashlib._Hash]] = {}


def _pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after the key XOR ipad and XOR opad blocks, as HMAC begins."""
    pads = _pad_cache.get(key)
    if pads is None:
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        pads = (hashlib.sha256(bytes(b ^ 0x36 for b in block)),
                hashlib.sha256(bytes(b ^ 0x5C for b in block)))
        _pad_cache[key] = pads
    return pads


def decode(data: bytes | memoryview, *, what: str = "payload") -> Any:
    """Check the envelope and signature, then unpickle."""
    return pickle.loads(open_envelope(data, what=what))


def envelope_format(data: bytes | memoryview) -> int | None:
    """The format byte of a zart-nb payload (before any check), None when it is not one."""
    if len(data) < len(MAGIC) + 4 or bytes(data[:3]) != MAGIC:
        return None
    return data[3]


# A payload up to this size is checked on bytes slices (copies), cheaper than the views
# that keep a large one from being copied: a replayed step's result is that small.
_SLICED_UP_TO = 64 * 1024


def open_envelope(data: bytes | memoryview, *, what: str = "payload",
                  fmt: int = FORMAT_VERSION) -> bytes | memoryview:
    """The verified body of format ``fmt`` inside ``data``; raises PayloadError before
    any unpickling."""
    header = _HEADER if fmt == FORMAT_VERSION else _MANIFEST_HEADER
    end = len(header)
    small = type(data) is bytes and len(data) <= _SLICED_UP_TO
    held = data if small else memoryview(data)
    if held[:end] == header and len(held) >= end + _MAC_SIZE:  # ours: the common case
        body = held[end + _MAC_SIZE:]
        if hmac.compare_digest(_mac(header, body), held[end:end + _MAC_SIZE]):
            return body
    view = memoryview(data)
    found = envelope_format(view)
    if found is None:
        raise PayloadError(f"{what}: not a zart-nb payload (unsigned); refused")
    if found != fmt:
        known = "known to" if found in (FORMAT_VERSION, MANIFEST_FORMAT) else "not known to"
        raise PayloadError(f"{what}: payload format {found} is {known} this zart-nb "
                           f"but not expected here (format {fmt}); refused")
    cp_len = view[6]
    header_end = 7 + cp_len
    if len(view) < header_end + _MAC_SIZE:
        raise PayloadError(f"{what}: truncated payload; refused")
    header = view[:header_end]
    stored_mac = view[header_end:header_end + _MAC_SIZE]
    body = view[header_end + _MAC_SIZE:]
    if not hmac.compare_digest(_mac(header, body), bytes(stored_mac)):
        raise PayloadError(f"{what}: signature does not match (tampered, or signed with "
                           "another ZART_SECRET); refused, not unpickled")
    if bytes(view[4:6]) != _PY:
        raise PayloadError(
            f"{what}: written by Python {view[4]}.{view[5]} "
            f"(cloudpickle {bytes(view[7:header_end]).decode()}), this is Python "
            f"{sys.version_info.major}.{sys.version_info.minor}; run it with the same Python")
    return body


def digest(data: bytes | memoryview) -> bytes:
    """Content hash used for payload addresses."""
    return hashlib.blake2b(data, digest_size=16).digest()


def unpicklable_reason(value: Any, path: str, exc: BaseException | None, depth: int = 0) -> str:
    """Find the innermost part of ``value`` that does not pickle, as ``path: reason``."""
    if depth < 6:
        for sub_path, part in _parts(value, path):
            try:
                cloudpickle.dumps(part, protocol=_PROTOCOL)
            except Exception as sub_exc:
                return unpicklable_reason(part, sub_path, sub_exc, depth + 1)
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    if depth == 0:
        return f"{path}: cannot pickle '{name}' ({exc})"
    return f"{path}: cannot pickle '{name}'"


def _parts(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}[{k!r}]", v
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, v in enumerate(value):
            yield f"{path}[{i}]", v
    elif isinstance(value, types.FunctionType):
        for cell_name, cell in zip(value.__code__.co_freevars, value.__closure__ or (), strict=False):
            try:
                yield f"{path}.<closure {cell_name}>", cell.cell_contents
            except ValueError:
                continue
    elif hasattr(value, "__dict__") and not isinstance(value, type) and _users_class(type(value)):
        for k, v in vars(value).items():
            yield f"{path}.{k}", v


def _users_class(cls: type) -> bool:
    """True for classes cloudpickle sends by value: defined in the notebook (``__main__``),
    inside a function, or in a shipped module. Their attributes are the user's own and
    worth naming; a library object (a connection, a client) is named as a whole, since
    its private insides tell the user nothing."""
    return (cls.__module__ == "__main__" or "<locals>" in cls.__qualname__
            or cls.__module__ in cloudpickle.list_registry_pickle_by_value())


def ship(module: types.ModuleType) -> None:
    """Send ``module`` by value with the functions that use it (for workers without it)."""
    if not isinstance(module, types.ModuleType):
        raise UsageError(f"ship() takes a module, not {type(module).__name__}")
    cloudpickle.register_pickle_by_value(module)
