"""A session's states and the rules about them, written once for Python and for Redis's Lua.

Which states still accept chunks and which are final decide what the gateway answers, what the
workers do, what the CLI resumes and what the Lua scripts allow; each rule is a set here, and the
scripts get the same rules as Lua functions (``LUA``), so nothing restates them.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    CREATED = "created"
    UPLOADING = "uploading"
    QUEUED = "queued"
    PROCESSING = "processing"
    ANALYZING = "analyzing"
    STORING = "storing"
    """The model has answered; the result is kept in Redis until the sink confirms it."""
    DONE = "done"
    FAILED = "failed"


UPLOADABLE = frozenset({State.CREATED, State.UPLOADING})
"""States that accept chunks: the upload is still open."""
FINISHED = frozenset({State.DONE, State.FAILED})
"""Final states: nothing happens to the session any more but its expiry or erasure."""
IN_PROGRESS = frozenset(State) - UPLOADABLE - FINISHED
"""States of an upload complete and not yet finished: the workers' part."""


def accepts_chunks(state: str) -> bool:
    return state in UPLOADABLE


def is_finished(state: str | None) -> bool:
    return state in FINISHED


def _lua_member(name: str, states: frozenset[State]) -> str:
    test = " or ".join(f"state == {_lua_string(s)}" for s in sorted(states))
    return f"local function {name}(state) return {test} end\n"


def _lua_string(state: State) -> str:
    return f"'{state.value}'"


LUA = "".join(f"local {s.name} = {_lua_string(s)}\n" for s in State) + _lua_member(
    "accepts_chunks", UPLOADABLE) + _lua_member("is_finished", FINISHED)
"""Prepended to every Lua script that reads a state: the states as Lua constants and the rules as
Lua functions, generated from the definitions above."""
