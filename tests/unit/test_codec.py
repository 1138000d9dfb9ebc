"""The signed envelope: what is refused is refused before anything is unpickled."""

from __future__ import annotations

import hmac
import os
import pickle
import stat
import sys
import threading
from pathlib import Path

import cloudpickle
import pytest

from zart_nb import codec
from zart_nb.config import Settings, configure
from zart_nb.errors import PayloadError, UsageError

SECRET = b"unit-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def secret() -> None:
    configure(Settings(secret=SECRET))


class Touch:
    """Unpickling this creates ``path``: the witness that a payload was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


def mac_offset(data: bytes) -> int:
    return 7 + data[6]  # magic, format, python major.minor, len(cloudpickle version), version


def test_round_trip_keeps_value_and_type():
    value = {"rows": [1, 2.5, "three", None], "blob": bytes(range(256)), "nested": (True, {3})}

    assert codec.decode(codec.encode(value)) == value


def test_round_trip_of_a_local_function():
    offset = 40

    def shifted(x):
        return x + offset

    assert codec.decode(codec.encode(shifted))(2) == 42


def test_side_effect_payload_runs_when_intact(tmp_path):
    """Control for the refusals below: this payload does act when it is unpickled."""
    marker = tmp_path / "unpickled"
    codec.decode(codec.encode(Touch(marker)))

    assert marker.exists()


def test_flipped_body_byte_is_refused_unpickled(tmp_path):
    marker = tmp_path / "unpickled-a"
    data = codec.encode(Touch(marker))
    at = data.rindex(b"unpickled-a") + len("unpickled-")  # 'a' -> '`': still a valid pickle

    with pytest.raises(PayloadError, match="signature does not match"):
        codec.decode(flip(data, at))
    assert list(tmp_path.iterdir()) == []


def test_flipped_mac_byte_is_refused_unpickled(tmp_path):
    data = codec.encode(Touch(tmp_path / "unpickled"))

    with pytest.raises(PayloadError, match="refused, not unpickled"):
        codec.decode(flip(data, mac_offset(data) + 5))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("padding", [0, 1000, (64 << 10) + 1, 1 << 20])  # both sides of the
@pytest.mark.parametrize("as_view", [False, True])                    # sliced bytes' path
def test_payloads_small_and_large_bytes_and_views_are_checked_alike(tmp_path, padding, as_view):
    marker = tmp_path / "unpickled"
    data = codec.encode((Touch(marker), b"p" * padding))
    wrap = memoryview if as_view else bytes

    for tampered in (flip(data, len(data) - 3), flip(data, mac_offset(data) + 5)):
        with pytest.raises(PayloadError, match="refused"):
            codec.decode(wrap(tampered))
    assert list(tmp_path.iterdir()) == []
    assert codec.decode(wrap(data))[1] == b"p" * padding and marker.exists()


def test_plain_pickle_is_refused_as_unsigned(tmp_path):
    with pytest.raises(PayloadError, match="unsigned"):
        codec.decode(pickle.dumps(Touch(tmp_path / "unpickled")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("secret", [b"k", SECRET, b"x" * 64, b"long-" * 40])
@pytest.mark.parametrize("size", [0, 100, 1 << 20])
def test_signature_is_the_standard_hmac_sha256(secret, size):
    """The envelope's signature is HMAC-SHA256 of header and body by any other
    implementation (keys shorter and longer than SHA-256's block)."""
    configure(Settings(secret=secret))
    data = codec.encode(os.urandom(size))
    at = mac_offset(data)
    expected = hmac.digest(secret, data[:at] + data[at + 32:], "sha256")
    assert data[at:at + 32] == expected
    assert codec.decode(data) == pickle.loads(data[at + 32:])


@pytest.mark.parametrize("value", [0, -7, 2**100, 1.5, float("nan"), 2j, True, None, "",
                                   "ünïcode", "x" * codec.SMALL_SCALAR, b"\x00\xff"])
def test_scalars_pickle_as_cloudpickle_pickles_them(value):
    """The quick path for scalars writes the very bytes cloudpickle writes: stored
    results and fingerprints of pickles do not depend on which path made them."""
    assert codec.dumps_scalar(value) == cloudpickle.dumps(value, protocol=5)


@pytest.mark.parametrize("value", [(1,), [1], {"a": 1}, {1}, "x" * (codec.SMALL_SCALAR + 1),
                                   bytearray(b"x"), type("Int", (int,), {})(3), len])
def test_other_values_take_cloudpickle(value):
    assert codec.dumps_scalar(value) is None
    assert codec.dumps(value) == cloudpickle.dumps(value, protocol=5)


def test_payload_signed_with_another_secret_is_refused(tmp_path):
    data = codec.encode(Touch(tmp_path / "unpickled"))
    configure(Settings(secret=b"another-installation-secret-000000"))

    with pytest.raises(PayloadError, match="another ZART_SECRET"):
        codec.decode(data)
    assert list(tmp_path.iterdir()) == []


def test_payload_from_another_python_is_refused_naming_it(tmp_path, monkeypatch):
    foreign = codec.MAGIC + bytes([codec.FORMAT_VERSION, 3, 99]) + bytes([5]) + b"9.9.9"
    monkeypatch.setattr(codec, "_HEADER", foreign)
    data = codec.seal(pickle.dumps(Touch(tmp_path / "unpickled")))
    monkeypatch.undo()

    with pytest.raises(PayloadError) as caught:
        codec.decode(data)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"written by Python 3.99 (cloudpickle 9.9.9), this is Python {here}" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_version_is_refused():
    data = bytearray(codec.encode(1))
    data[3] = codec.FORMAT_VERSION + 1

    with pytest.raises(PayloadError, match="format"):
        codec.decode(bytes(data))


def test_truncated_payload_is_refused():
    data = codec.encode("x")

    with pytest.raises(PayloadError, match="truncated"):
        codec.decode(data[:mac_offset(data) + 10])


def test_unpicklable_value_names_path_and_type():
    with pytest.raises(PayloadError) as caught:
        codec.encode({"ok": 1, "lock": threading.Lock()}, what="result", owner="step 'load'")

    assert str(caught.value) == "step 'load': result['lock']: cannot pickle '_thread.lock'"


def test_unpicklable_attribute_of_a_users_object_is_named():
    class Holder:
        def __init__(self) -> None:
            self.name = "fine"
            self.guard = [threading.Lock()]

    with pytest.raises(PayloadError) as caught:
        codec.encode({"model": Holder()}, what="result")

    assert str(caught.value) == "result['model'].guard[0]: cannot pickle '_thread.lock'"


def test_unpicklable_at_the_top_gives_the_reason():
    with pytest.raises(PayloadError, match=r"^value: cannot pickle '_thread.lock' \(.+\)$"):
        codec.encode(threading.Lock())


def test_key_file_is_created_private_and_reused(tmp_path):
    home = tmp_path / "home"
    configure(Settings(home=home, secret=None))

    data = codec.encode("signed with the key file")
    key_file = home / "secret.key"

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) >= 32
    assert codec.decode(data) == "signed with the key file"


def test_key_file_readable_by_others_is_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    key_file = home / "secret.key"
    key_file.write_text("k" * 64)
    key_file.chmod(0o644)
    configure(Settings(home=home, secret=None))

    with pytest.raises(UsageError, match=f"chmod 600 {key_file}"):
        codec.encode(1)


def test_key_file_in_a_home_that_cannot_exist_is_a_usage_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    configure(Settings(home=blocker / "home", secret=None))

    with pytest.raises(UsageError, match=str(blocker / "home")):
        codec.encode(1)


def test_digest_is_a_content_hash():
    assert codec.digest(b"x") == codec.digest(bytearray(b"x")) != codec.digest(b"y")
    assert len(codec.digest(b"x")) == 16
