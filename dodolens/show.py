"""How the commands show events and inventories in a terminal (rich), for ``analyze`` and ``upload``."""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from schemas.catalogue import lookup

console = Console(stderr=True)


def print_event(event: dict[str, Any]) -> None:
    data = {k: v for k, v in event.get("data", {}).items() if k != "result"}
    console.print(f"[dim]{event.get('timestamp', '')[11:23]}[/] [bold]{event['type']}[/] {orjson.dumps(data).decode()[:160]}")


def inventory_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"Inventory — {result['video']['duration_s']:.1f} s video, {len(result['frames'])} frames")
    for column in ("room", "item", "qty", "m³"):
        table.add_column(column, justify="right" if column in ("qty", "m³") else "left")
    inventory = result.get("inventory")
    if not inventory:
        table.caption = f"analysis skipped: {result['analysis'].get('reason')}"
        return table
    for room in inventory["rooms"]:
        for item in room["items"]:
            volume = item.get("volume_m3", 0) * item.get("quantity", 1)
            label = item.get("label") or (lookup(item["catalogue_id"]).label("en") if item.get("catalogue_id") else "?")
            table.add_row(room["name"], label + (" (stays)" if item.get("excluded") else ""), str(item.get("quantity", 1)), f"{volume:.2f}")
    table.caption = f"total {inventory['total_volume_m3']:.2f} m³ in {inventory['total_items']} items"
    analysis = result["analysis"]
    if analysis.get("frames_sent"):
        cost = "" if analysis.get("cost_usd") is None else f", about ${analysis['cost_usd']:.4f}"
        table.caption += (f"\n{analysis['frames_sent']} frames sent, {analysis.get('input_tokens', 0)} input and "
                          f"{analysis.get('output_tokens', 0)} output tokens{cost}")
    return table


def erase_hint(session_id: str) -> str:
    """What a user who sent a video needs to take it back (GDPR art. 17)."""
    return (f"session {session_id}: to erase it (media, events and result), run `dodolens erase {session_id}` "
            f"where the Redis is reachable, or send DELETE /sessions/{session_id} with its token")
