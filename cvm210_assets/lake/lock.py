"""One run at a time per month: a lock object in the lake, created only if absent.

Two runs of the same partition would otherwise race on the same Delta month and state records.
The second one fails at once, cleanly, with nothing written and a message that says who holds
the month. A lock left by a killed process is taken over at once on the same machine (its pid
is gone), and elsewhere once it is older than `STALE_AFTER`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from cvm210_assets.lake.storage import LakeStorage
from cvm210_assets.partitions import Month

STALE_AFTER = dt.timedelta(hours=6)


class MonthBusyError(RuntimeError):
    """Another run is processing the month."""


def lock_key(month: Month) -> str:
    return f"_locks/{month.key}.lock"


def _holder_died(held: dict) -> bool:
    """The holder ran on this machine and its process is gone."""
    if held.get("host") != socket.gethostname() or not isinstance(held.get("pid"), int):
        return False
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def month_lock(
    storage: LakeStorage, month: Month, owner: str, stale_after: dt.timedelta = STALE_AFTER
) -> Iterator[None]:
    key = lock_key(month)
    now = dt.datetime.now(dt.timezone.utc)
    mine = {"owner": owner, "since": now.isoformat(), "host": socket.gethostname()}
    body = json.dumps({**mine, "pid": os.getpid()}).encode()
    if not storage.create_exclusive(key, body):
        held = json.loads(storage.read_bytes(key) or b"{}")
        since = dt.datetime.fromisoformat(held.get("since", now.isoformat()))
        stale = now - since >= stale_after or _holder_died(held)
        if stale:
            storage.delete(key)  # two takers may race here: create_exclusive lets one win
        if not stale or not storage.create_exclusive(key, body):
            raise MonthBusyError(
                f"{month} is being processed by {held.get('owner', '?')} since"
                f" {since:%Y-%m-%d %H:%M:%S} UTC (host {held.get('host', '?')}, pid"
                f" {held.get('pid', '?')}); nothing was written. Run it again when that run"
                f" ends. If no run is active (a killed process), delete {storage.uri(key)};"
                f" it expires by itself after {stale_after}."
            )
    try:
        yield
    finally:
        storage.delete(key)
