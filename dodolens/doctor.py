"""Checks of the outside services a DodoLens relies on, before it takes any upload.

A model that was shut down or a result table missing a column fails every session the same way;
said once at start-up (``dodolens up``/``worker``) or on demand (``dodolens doctor``), it is one
clear line instead of a failed session per upload. A service that does not answer right now is
only noted: it may be back by the time the first upload is analysed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import openai
from rich.console import Console

from dodolens.settings import Settings
from processors.analyzer import NO_KEY
from processors.sinks import AirtableSink, SinkError

CHECK_TIMEOUT_S = 10.0


@dataclass
class Checkup:
    problems: list[str] = field(default_factory=list)
    """Each one fails every session: DodoLens must not start with any."""
    notes: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)


async def check(settings: Settings) -> Checkup:
    """Every check that applies to these settings; a service not configured is not checked."""
    found = Checkup()
    if settings.openai_api_key or settings.openai_base_url:
        await _check_models(settings, found)
    else:
        found.notes.append("analysis off: no OPENAI_API_KEY / OPENAI_BASE_URL")
    if settings.airtable_api_key and settings.airtable_base_id:
        await _check_airtable(settings, found)
    else:
        found.passed.append(f"results in SQLite ({settings.results_db})")
    return found


async def _check_models(settings: Settings, found: Checkup) -> None:
    models = (("DODOLENS_VISION_MODEL", settings.vision_model),
              ("DODOLENS_TRANSCRIPTION_MODEL", settings.transcription_model))
    async with openai.AsyncOpenAI(base_url=settings.openai_base_url, api_key=settings.openai_api_key or NO_KEY,
                                  timeout=CHECK_TIMEOUT_S, max_retries=1) as client:
        for setting, name in models:
            try:
                model = await client.models.retrieve(name)
            except openai.NotFoundError:
                found.problems.append(f"{setting}={name}: the model API has no such model (404); it may have been "
                                      "shut down, choose a current one")
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                found.problems.append(f"OPENAI_API_KEY: refused by the model API ({exc.status_code})")
                return
            except openai.APIStatusError as exc:
                found.notes.append(f"{setting}={name}: not checked, the model API answered {exc.status_code}")
            except openai.APIConnectionError as exc:
                found.notes.append(f"models not checked: the model API is unreachable ({exc})")
                return
            else:
                found.passed.append(f"{setting}={name}")
                if shutdown := _shutdown(model):
                    found.notes.append(f"{setting}={name} shuts down on {shutdown}: choose its replacement before")


def _shutdown(model: object) -> str | None:
    date = getattr(model, "shutdown_date", None)
    if not isinstance(date, str):
        return None
    try:
        return date if dt.date.fromisoformat(date[:10]) >= dt.date.today() else None
    except ValueError:
        return None


async def _check_airtable(settings: Settings, found: Checkup) -> None:
    table = settings.airtable_table
    assert settings.airtable_api_key and settings.airtable_base_id
    sink = AirtableSink(settings.airtable_api_key, settings.airtable_base_id, table,
                        endpoint_url=settings.airtable_endpoint, lock_s=settings.airtable_lock_s)
    try:
        problems = await sink.schema_problems()
    except SinkError as exc:
        if exc.retryable:
            found.notes.append(f"Airtable table {table!r} not checked: {exc}")
        else:
            found.problems.append(f"Airtable table {table!r}: {exc}")
        return
    finally:
        await sink.close()
    found.problems.extend(f"Airtable table {table!r} (DODOLENS_AIRTABLE_TABLE): {problem}" for problem in problems)
    if not problems:
        found.passed.append(f"Airtable table {table!r} has the fields the results need")


async def ready(settings: Settings, console: Console) -> bool:
    """The start-up check of ``up`` and ``worker``: each problem is one line on ``console``."""
    checkup = await check(settings)
    for line in checkup.problems:
        console.print(f"[red]dodolens:[/] {line}", highlight=False)
    return not checkup.problems


async def doctor(settings: Settings) -> int:
    """``dodolens doctor``: every check, passed or not; exit status 1 when DodoLens could not start."""
    checkup = await check(settings)
    console = Console(highlight=False)
    for mark, lines in (("[green]ok[/]", checkup.passed), ("[yellow]note[/]", checkup.notes),
                        ("[red]problem[/]", checkup.problems)):
        for line in lines:
            console.print(f"{mark} {line}")
    return 1 if checkup.problems else 0
