"""Durable lab state under --state-dir: config versions, audit log, bundles and the WAL.

Simple files: `config.json` (all versions, rewritten atomically), `audit.jsonl` and
`bundles.jsonl` (appended, fsync'd per record: they are rare), `wal-<part>.jsonl`
(accepted append messages, appended in batches and fsync'd at flush/stop).
A restart replays the WAL files through fresh partitions to rebuild their state.
"""
from __future__ import annotations

import json
import os
from typing import Iterator

try:
    import orjson

    def _dumps(value) -> bytes:
        return orjson.dumps(value)
    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is installed in the venv
    def _dumps(value) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()
    _loads = json.loads


class StateDir:
    """Reads and writes the lab's persistent files in one directory."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        os.makedirs(self.path, exist_ok=True)
        self._wal_buffers: dict[str, list[bytes]] = {}
        self._wal_handles: dict[str, object] = {}

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # ---- config -------------------------------------------------------------------------
    def load_config_versions(self) -> list[dict] | None:
        """All stored config versions, or None when there are none yet."""
        try:
            with open(self._file("config.json"), "rb") as handle:
                return _loads(handle.read())["versions"]
        except FileNotFoundError:
            return None

    def save_config_versions(self, versions: list[dict]) -> None:
        """Atomically rewrite config.json (write temp, fsync, rename)."""
        self._atomic_write("config.json", _dumps({"versions": versions}))

    def _atomic_write(self, name: str, data: bytes) -> None:
        temp = self._file(name + ".tmp")
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self._file(name))

    # ---- JSONL logs (audit, bundles, activations) -----------------------------------------
    def append_record(self, name: str, record: dict) -> None:
        """Append one JSON line to `<name>.jsonl` and fsync it."""
        with open(self._file(name + ".jsonl"), "ab") as handle:
            handle.write(_dumps(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def load_records(self, name: str) -> list[dict]:
        """All records of `<name>.jsonl` (a torn last line from a crash is ignored)."""
        return list(self._iter_jsonl(self._file(name + ".jsonl")))

    def save_document(self, name: str, document) -> None:
        """Atomically write `<name>.json`."""
        self._atomic_write(name + ".json", _dumps(document))

    def load_document(self, name: str, default=None):
        """Read `<name>.json`, or `default`."""
        try:
            with open(self._file(name + ".json"), "rb") as handle:
                return _loads(handle.read())
        except FileNotFoundError:
            return default

    @staticmethod
    def _iter_jsonl(path: str) -> Iterator[dict]:
        try:
            with open(path, "rb") as handle:
                for line in handle:
                    if not line.endswith(b"\n"):
                        break  # torn write at a crash: everything before it is intact
                    try:
                        yield _loads(line)
                    except ValueError:
                        break
        except FileNotFoundError:
            return

    # ---- WAL -----------------------------------------------------------------------------
    def wal_append(self, part_id: str, message: dict) -> None:
        """Buffer one accepted append message; flush_wal() writes the batch."""
        self._wal_buffers.setdefault(part_id, []).append(_dumps(message) + b"\n")

    def flush_wal(self, sync: bool = False) -> None:
        """Write buffered WAL lines; fsync when `sync`."""
        for part_id, lines in self._wal_buffers.items():
            if not lines:
                continue
            handle = self._wal_handles.get(part_id)
            if handle is None:
                handle = open(self._file(f"wal-{part_id}.jsonl"), "ab")
                self._wal_handles[part_id] = handle
            handle.write(b"".join(lines))
            lines.clear()
            handle.flush()
            if sync:
                os.fsync(handle.fileno())

    def wal_messages(self, part_id: str) -> Iterator[dict]:
        """Every stored append message of a partition, in append order."""
        return self._iter_jsonl(self._file(f"wal-{part_id}.jsonl"))

    def wal_truncate(self, part_id: str, last_index: int) -> None:
        """Keep only the log up to ``last_index`` (entries and control records at or before it):
        the wipe fault's lost WAL tail. Flushes the buffer first; rewrites the file atomically."""
        self.flush_wal(sync=True)
        handle = self._wal_handles.pop(part_id, None)
        if handle is not None:
            handle.close()
        kept = [record for record in self.wal_messages(part_id)
                if int(record.get("index", record.get("after", 0))) <= last_index]
        self._atomic_write(f"wal-{part_id}.jsonl", b"".join(_dumps(record) + b"\n" for record in kept))

    def close(self) -> None:
        """Flush and fsync everything, close handles."""
        self.flush_wal(sync=True)
        for handle in self._wal_handles.values():
            handle.close()
        self._wal_handles.clear()
