"""The control-plane audit log: every config change, rollback, bundle upload, activation,
replay job and outage is recorded with the caller's identity as `actor`."""
from __future__ import annotations

import time
from typing import Callable


class AuditLog:
    """An append-only list of audit records `{id, ts, actor, kind, details}`.

    `ts` is seconds since the epoch (float); ids are "a-<n>" in write order.
    """

    def __init__(self, records: list[dict] | None = None, on_append: Callable[[dict], None] | None = None):
        self.records: list[dict] = list(records or [])
        self.on_append = on_append

    def append(self, actor: str, kind: str, details: dict) -> dict:
        """Add one record and persist it (through on_append) before returning it."""
        record = {"id": f"a-{len(self.records) + 1}", "ts": time.time(), "actor": actor, "kind": kind, "details": details}
        self.records.append(record)
        if self.on_append is not None:
            self.on_append(record)
        return record

    def query(self, since: float | None = None, kind: str | None = None) -> list[dict]:
        """Records with ts >= since (when given) and of that kind (when given)."""
        return [record for record in self.records
                if (since is None or record["ts"] >= since) and (kind is None or record["kind"] == kind)]


def parse_since(value: str) -> float:
    """Parse a `since` query value: epoch seconds, epoch ms/ns (by magnitude) or ISO 8601.

    Raises ValueError with a readable message.
    """
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        from datetime import datetime
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"since={value!r} is neither epoch seconds nor an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            from datetime import timezone
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    if number > 1e17:   # nanoseconds
        return number / 1e9
    if number > 1e11:   # milliseconds
        return number / 1e3
    return number


def now() -> float:
    """Wall-clock seconds (one place, so tests can reason about it)."""
    return time.time()
