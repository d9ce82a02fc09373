"""Each lifecycle rule is written once (schemas.lifecycle) and Lua gets the very same rules."""

from __future__ import annotations

import ast
import re

from schemas.lifecycle import FINISHED, IN_PROGRESS, LUA, UPLOADABLE, State, accepts_chunks, is_finished
from streams.connection import Redis
from tests.support.sources import offenders

STATE_VALUES = {s.value for s in State}
LUA_STATE = re.compile(r"""['"](%s)['"]""" % "|".join(STATE_VALUES))


def _state(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "State":
        return node.attr.lower()
    if isinstance(node, ast.Constant) and node.value in STATE_VALUES:
        return str(node.value)
    return None


def restated_rules(tree: ast.AST) -> list[str]:
    """Groups of states written out (a set, a tuple, ``a == x or a == y``) and Lua comparing states
    by name: each is a rule that belongs in ``schemas.lifecycle``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            states = [s for s in map(_state, node.elts) if s]
        elif isinstance(node, ast.BoolOp):
            states = [s for v in node.values if isinstance(v, ast.Compare) for s in map(_state, v.comparators) if s]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "redis.call" in node.value:
            states = LUA_STATE.findall(node.value) * 2
        else:
            continue
        if len(states) >= 2:
            found.append(f"line {node.lineno}: {sorted(set(states))}")
    return found


def test_no_module_restates_a_lifecycle_rule() -> None:
    assert offenders(restated_rules, owner="schemas/lifecycle.py") == {}, "use schemas.lifecycle (its LUA prelude)"


def test_the_scan_sees_a_rule_written_again() -> None:
    source = '\n'.join([
        'OPEN = {"created", "uploading"}', 'if meta["state"] not in (State.CREATED, State.UPLOADING): pass',
        'ok = s == State.DONE or s == State.FAILED', "SCRIPT = \"if redis.call('GET', k) == 'created' then end\"",
    ])
    assert len(restated_rules(ast.parse(source))) == 4


def test_uploadable_and_finished_states() -> None:
    assert [s for s in State if accepts_chunks(s)] == [State.CREATED, State.UPLOADING]
    assert [s for s in State if is_finished(s)] == [State.DONE, State.FAILED]
    assert not is_finished(None) and not UPLOADABLE & FINISHED
    assert sorted(IN_PROGRESS) == sorted({State.QUEUED, State.PROCESSING, State.ANALYZING, State.STORING})


async def test_lua_applies_the_same_rules(redis: Redis) -> None:
    script = LUA + """
local out = {}
for i, state in ipairs(ARGV) do
  out[i] = (accepts_chunks(state) and 1 or 0) * 2 + (is_finished(state) and 1 or 0)
end
return out
"""
    answers = await redis.eval(script, 0, *State)
    assert answers == [accepts_chunks(s) * 2 + is_finished(s) for s in State]
    assert await redis.eval(LUA + "return {CREATED, UPLOADING, FAILED}", 0) == [b"created", b"uploading", b"failed"]
