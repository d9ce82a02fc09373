"""AES-256-GCM sealing of media payloads with daily key rotation.

Keys are derived with HKDF from one master secret per 24-hour epoch, so nothing but the
master secret is ever stored and keys rotate by themselves. The associated data binds a
ciphertext to (session, kind, index): moved elsewhere, it fails to open.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

EPOCH_SECONDS = 86_400
NONCE_BYTES = 12
TAG_BYTES = 16


def wipe(buffer: bytearray) -> None:
    """Overwrite a plaintext buffer with zeros in place (no second buffer of the same size).

    As far as Python allows: ``bytes`` objects cannot be wiped, see PRIVACY.md.
    """
    if buffer:
        ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))


class SealError(Exception):
    """A ciphertext that does not open: wrong key, epoch, session, kind or index, or tampered."""


def current_epoch(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // EPOCH_SECONDS)


@lru_cache(maxsize=64)
def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"dodolens/v1", info=info).derive(master)


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose (``epoch:N``, ``token``, ``pseudonym``) from the master secret."""
    return _derive(master, purpose.encode())


def associated_data(sid: str, kind: str, index: int) -> bytes:
    return f"dodolens|{sid}|{kind}|{index}".encode()


def sealed_size(length: int) -> int:
    """Bytes of a sealed payload of ``length`` bytes: nonce, ciphertext, tag."""
    return NONCE_BYTES + length + TAG_BYTES


class Sealing:
    """AES-256-GCM over a payload that arrives in parts, written straight into ``out`` as
    nonce || ciphertext || tag: byte for byte what :meth:`Keyring.seal` makes of the whole payload,
    without the plaintext ever being assembled. ``out`` must be ``sealed_size(length)`` long."""

    def __init__(self, key: bytes, aad: bytes, out: memoryview, length: int) -> None:
        if len(out) != sealed_size(length):
            raise ValueError(f"the output buffer must be {sealed_size(length)} bytes")
        nonce = os.urandom(NONCE_BYTES)
        out[:NONCE_BYTES] = nonce
        self._key = key
        self._encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        self._encryptor.authenticate_additional_data(aad)
        self._out, self._end, self.length = out, NONCE_BYTES + length, length
        self._position = NONCE_BYTES

    def update(self, part: bytes | bytearray | memoryview) -> None:
        """Encrypt the next part; more than ``length`` bytes in all is a ``ValueError``."""
        if self._position + len(part) > self._end:
            raise ValueError(f"more than the {self.length} bytes announced")
        self._position += self._encryptor.update_into(part, self._out[self._position :])

    @property
    def sealed(self) -> int:
        """Plaintext bytes that went through ``update`` so far."""
        return self._position - NONCE_BYTES

    def opened(self) -> bytearray:
        """The plaintext sealed so far, for a payload that stops short of ``length`` (the caller wipes it).

        GCM encrypts with AES-CTR from counter block 2 under a 96-bit nonce, so what was written so
        far decrypts without the tag: nothing but the ciphertext was kept to get it back.
        """
        ciphertext = self._out[NONCE_BYTES : self._position]
        plain = bytearray(len(ciphertext) + 15)
        counter = bytes(self._out[:NONCE_BYTES]) + (2).to_bytes(4, "big")
        written = Cipher(algorithms.AES(self._key), modes.CTR(counter)).decryptor().update_into(ciphertext, plain)
        del plain[written:]
        return plain

    def finish(self) -> memoryview:
        """The sealed payload, once exactly ``length`` bytes went through ``update``."""
        if self._position != self._end:
            raise ValueError(f"{self._position - NONCE_BYTES} bytes sealed, {self.length} announced")
        self._encryptor.finalize()
        self._out[self._end :] = self._encryptor.tag
        return self._out


@dataclass(frozen=True)
class Keyring:
    """Seals and opens media with the epoch key; opens the previous epoch too (TTL window)."""

    master: bytes = field(repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.master) < 32:
            raise ValueError("master secret must be at least 32 bytes")

    @classmethod
    def generate(cls) -> "Keyring":
        """A random in-memory master secret: what embedded mode uses."""
        return cls(os.urandom(32))

    def epoch(self) -> int:
        return current_epoch(self.clock())

    def _aead(self, epoch: int) -> AESGCM:
        return AESGCM(derive_key(self.master, f"epoch:{epoch}"))

    def seal(self, plaintext: bytes | bytearray | memoryview, sid: str, kind: str, index: int = 0) -> tuple[int, bytearray]:
        """Encrypt; returns (epoch, nonce || ciphertext || tag).

        Written straight into one buffer: ``nonce + encrypt(...)`` would cost a second allocation and
        copy of the whole payload, ten times what AES-GCM itself takes for a 1 MiB chunk.
        """
        epoch = self.epoch()
        nonce = os.urandom(NONCE_BYTES)
        out = bytearray(NONCE_BYTES + len(plaintext) + TAG_BYTES)
        out[:NONCE_BYTES] = nonce
        self._aead(epoch).encrypt_into(nonce, plaintext, associated_data(sid, kind, index), memoryview(out)[NONCE_BYTES:])
        return epoch, out

    def sealing(self, sid: str, kind: str, index: int, out: memoryview, length: int) -> tuple[int, Sealing]:
        """Seal a payload of ``length`` bytes part by part into ``out``; returns (epoch, the sealing)."""
        epoch = self.epoch()
        key = derive_key(self.master, f"epoch:{epoch}")
        return epoch, Sealing(key, associated_data(sid, kind, index), out, length)

    def open(self, epoch: int, blob: bytes, sid: str, kind: str, index: int = 0) -> bytes:
        """Decrypt a blob sealed by :meth:`seal`; only the current and previous epochs open."""
        aead, view = self._opening(epoch, blob)
        try:
            return aead.decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], associated_data(sid, kind, index))
        except InvalidTag as exc:
            raise SealError("ciphertext does not open for this session, kind and index") from exc

    def open_wipeable(self, epoch: int, blob: bytes, sid: str, kind: str, index: int = 0) -> bytearray:
        """:meth:`open` into a ``bytearray`` the caller can :func:`wipe` once done (``bytes`` cannot be),
        with one copy fewer for the readers that keep chunks in ``bytearray`` anyway."""
        aead, view = self._opening(epoch, blob)
        out = bytearray(len(view) - NONCE_BYTES - TAG_BYTES)
        try:
            aead.decrypt_into(view[:NONCE_BYTES], view[NONCE_BYTES:], associated_data(sid, kind, index), out)
        except InvalidTag as exc:
            wipe(out)
            raise SealError("ciphertext does not open for this session, kind and index") from exc
        return out

    def _opening(self, epoch: int, blob: bytes) -> tuple[AESGCM, memoryview]:
        now = self.epoch()
        if epoch not in (now, now - 1):
            raise SealError(f"key epoch {epoch} is outside the readable window")
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise SealError("ciphertext too short")
        return self._aead(epoch), memoryview(blob)
