"""The few Redis reads a decode thread makes itself, with a blocking client.

PyAV asks for bytes from inside its read callback, on the decode thread. Sending each chunk read
through the event loop costs GIL handoffs between three threads (decode, loop, executor), each
one waiting out Python's switch interval under load. The decode thread reading with its own
blocking client skips them all, and leaves the event loop free.
"""

from __future__ import annotations

from streams import keys
from streams.chunks import KIND, ChunkMissing
from streams.config import StreamConfig
from streams.connection import BlockingRedis
from streams.sessions import CHUNK_FIELD


def read_chunk_blocking(client: BlockingRedis, cfg: StreamConfig, sid: str, index: int, entry_id: str) -> bytearray:
    """Chunk ``index`` (stream entry ``entry_id``), opened into a buffer the reader wipes; ``ChunkMissing``
    if it is gone."""
    rows = client.xrange(keys.chunks(sid), min=entry_id, max=entry_id, count=1)
    if not rows:
        raise ChunkMissing(f"chunk {index} of the session is gone (expired or erased)")
    fields = rows[0][1]
    return cfg.keyring.open_wipeable(int(fields[b"ep"]), fields[b"ct"], sid, KIND, index)


def chunk_entry_blocking(client: BlockingRedis, sid: str, index: int) -> tuple[str | None, str | None]:
    """The session's state and chunk ``index``'s stream entry id, in one read; (None, None) when the session is gone."""
    state, entry = client.hmget(keys.meta(sid), ["state", f"{CHUNK_FIELD}{index}"])
    if state is None:
        return None, None
    return state.decode(), entry.decode().rpartition(":")[0] if entry is not None else None
