"""Media sealing: AES-256-GCM, daily keys from one master, bound to session, kind and index."""

from __future__ import annotations

import pytest

from streams.crypto import EPOCH_SECONDS, Keyring, SealError, sealed_size, wipe


def keyring_at(now: float, master: bytes = b"m" * 32) -> Keyring:
    return Keyring(master, clock=lambda: now)


def test_round_trip() -> None:
    k = Keyring.generate()
    epoch, blob = k.seal(b"video bytes", "s1", "chunk", 3)
    assert b"video bytes" not in blob
    assert k.open(epoch, blob, "s1", "chunk", 3) == b"video bytes"


def test_a_payload_sealed_part_by_part_opens_like_one_sealed_whole() -> None:
    k = Keyring.generate()
    payload = bytes(range(256)) * 1000
    out = bytearray(sealed_size(len(payload)))
    epoch, sealing = k.sealing("s1", "chunk", 3, memoryview(out), len(payload))
    for start in range(0, len(payload), 7_000):
        sealing.update(memoryview(payload)[start : start + 7_000])
    blob = bytes(sealing.finish())
    assert len(blob) == sealed_size(len(payload)) and payload[:64] not in blob
    assert k.open(epoch, blob, "s1", "chunk", 3) == payload
    with pytest.raises(SealError):
        k.open(epoch, blob, "s1", "chunk", 4)


def test_a_sealing_stopped_short_gives_back_the_plaintext_sealed_so_far() -> None:
    k = Keyring.generate()
    payload = bytes(range(256)) * 1000
    epoch, sealing = k.sealing("s1", "chunk", 3, memoryview(bytearray(sealed_size(len(payload)))), len(payload))
    for start in range(0, 123_457, 10_000):
        sealing.update(memoryview(payload)[start : min(start + 10_000, 123_457)])
    assert sealing.sealed == 123_457 and sealing.opened() == payload[:123_457]
    sealing.update(payload[123_457:])
    assert k.open(epoch, bytes(sealing.finish()), "s1", "chunk", 3) == payload  # recovering took nothing away


def test_a_part_by_part_sealing_takes_exactly_the_bytes_announced() -> None:
    k = Keyring.generate()
    _epoch, short = k.sealing("s1", "chunk", 0, memoryview(bytearray(sealed_size(10))), 10)
    short.update(b"12345")
    with pytest.raises(ValueError):
        short.finish()
    _epoch, long = k.sealing("s1", "chunk", 0, memoryview(bytearray(sealed_size(10))), 10)
    long.update(b"1234567890")
    with pytest.raises(ValueError):
        long.update(b"1")
    with pytest.raises(ValueError):
        k.sealing("s1", "chunk", 0, memoryview(bytearray(8)), 10)


def test_a_chunk_opens_into_a_buffer_that_can_be_wiped() -> None:
    k = Keyring.generate()
    epoch, blob = k.seal(b"video bytes", "s1", "chunk", 3)
    plain = k.open_wipeable(epoch, blob, "s1", "chunk", 3)
    assert isinstance(plain, bytearray) and plain == b"video bytes"
    wipe(plain)
    assert plain == bytes(11)
    with pytest.raises(SealError):
        k.open_wipeable(epoch, blob, "s1", "chunk", 4)


@pytest.mark.parametrize("sid,kind,index", [("s2", "chunk", 3), ("s1", "frame", 3), ("s1", "chunk", 4)])
def test_ciphertext_moved_to_another_session_kind_or_index_does_not_open(sid: str, kind: str, index: int) -> None:
    k = Keyring.generate()
    epoch, blob = k.seal(b"payload", "s1", "chunk", 3)
    with pytest.raises(SealError):
        k.open(epoch, blob, sid, kind, index)


def test_tampered_ciphertext_is_rejected() -> None:
    k = Keyring.generate()
    epoch, blob = k.seal(b"payload", "s1", "chunk", 0)
    flipped = bytes([blob[-1] ^ 1])
    with pytest.raises(SealError):
        k.open(epoch, blob[:-1] + flipped, "s1", "chunk", 0)


def test_keys_rotate_daily_and_the_previous_epoch_stays_readable() -> None:
    day0 = 1_000 * EPOCH_SECONDS + 10
    epoch, blob = keyring_at(day0).seal(b"x", "s", "chunk", 0)
    later = keyring_at(day0 + EPOCH_SECONDS)
    assert later.epoch() == epoch + 1
    assert later.seal(b"x", "s", "chunk", 0)[0] == epoch + 1
    assert later.open(epoch, blob, "s", "chunk", 0) == b"x"
    with pytest.raises(SealError):
        keyring_at(day0 + 2 * EPOCH_SECONDS).open(epoch, blob, "s", "chunk", 0)


def test_another_master_secret_cannot_open() -> None:
    epoch, blob = Keyring(b"a" * 32).seal(b"x", "s", "chunk", 0)
    with pytest.raises(SealError):
        Keyring(b"b" * 32).open(epoch, blob, "s", "chunk", 0)


def test_short_master_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        Keyring(b"short")


def test_wipe_zeroes_a_buffer_in_place() -> None:
    buffer = bytearray(b"frame bytes" * 1000)
    view = memoryview(buffer)
    wipe(buffer)
    assert view.tobytes() == bytes(len(buffer))
    wipe(bytearray())
