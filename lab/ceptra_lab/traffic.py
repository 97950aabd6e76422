"""Traffic tools: `seed-history` (a synthetic historic event set in SQLite or PostgreSQL, in the
documented historic-source schema) and `live` (steady live appends that can skip a window).

Samples match a bundle: each event carries one of the bundle's source metrics with labels
that satisfy the query's matchers, and by() label values stay within the lane domains.
Partition keys are chosen so FNV-1a-64(key) mod P equals the row's part_id, so routed and
explicit appends agree.
"""
from __future__ import annotations

import http.client
import json
import random
import re
import sqlite3
import ssl
import sys
import time
import urllib.parse

from ceptra_lab.cluster import fnv1a_64
from ceptra_lab.definitions import BundleError, compile_bundle, parse_bundle

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
CLASSIFICATIONS = ("suspicious", "benign", "confirmed")
COLUMNS = ("part_id", "raft_index", "event_time_ns", "event_id", "partition_key", "schema_key", "payload", "flags")


# ---- sample generation ------------------------------------------------------------------------------
def load_bundle(path: str):
    """Compile a bundle file; ValueError with the violations when it is not usable."""
    try:
        with open(path, "rb") as handle:
            return compile_bundle(parse_bundle(handle.read()))
    except OSError as exc:
        raise ValueError(f"cannot read bundle {path}: {exc.strerror}") from None
    except BundleError as exc:
        raise ValueError(f"bundle {path} is not valid: {exc}") from None


def _matcher_value(op: str, value: str) -> str | None:
    """A label value satisfying one matcher (None: leave the label out)."""
    if op == "=":
        return value
    if op == "=~":
        for alternative in value.strip("^$()").split("|"):
            candidate = alternative.strip("^$()")
            try:
                if re.fullmatch(value, candidate):
                    return candidate
            except re.error:
                return None
        return None
    return None   # != and !~ are satisfied by an absent label


class SampleMaker:
    """Builds payloads for a bundle: round-robin over its source metrics."""

    def __init__(self, compiled, rng: random.Random):
        self.rng = rng
        self.templates = []
        seen = set()
        domains = compiled.effective_lane_domains
        # every query reading a source metric may group by its own labels: samples carry all of them
        grouped: dict[str, list[str]] = {}
        for query in compiled.queries:
            names = grouped.setdefault(query.source_metric, [])
            names.extend(label for label in query.by_labels if label not in names)
        for query in compiled.queries:
            labels = {}
            for label, op, value in query.matchers:
                chosen = _matcher_value(op, value)
                if chosen is not None:
                    labels[label] = chosen
            key = (query.source_metric, tuple(sorted(labels.items())))
            if key in seen:
                continue
            seen.add(key)
            lane_labels = [(label, max(1, int(domains.get(label, 1))))
                           for label in grouped[query.source_metric] if label not in labels]
            counter = query.function in ("increase", "rate")
            self.templates.append((query.source_metric, labels, lane_labels, counter))
        if not self.templates:
            self.templates.append(("events_total", {}, [], True))
        # payload fields the bundle's rules read (an emitted decision's session_id, say): every
        # sample carries one per key, so a rule that fires can also emit
        ruleset = getattr(compiled, "ruleset", None)
        wanted = set()
        for rule in getattr(ruleset, "rules", ()):
            wanted.update(rule.when_fields or ())
            wanted.update(rule.emit_fields or ())
        self.rule_fields = sorted(wanted - {"metric", "labels", "value", "secondary_classification"})

    def payload(self, sequence: int, key_index: int, classification_ratio: float) -> dict:
        """The payload of the `sequence`-th event of a partition, for the key with that index."""
        metric, labels, lane_labels, counter = self.templates[sequence % len(self.templates)]
        labels = dict(labels)
        for label, domain in lane_labels:
            labels[label] = f"{label}-{key_index % domain}"
        value = 1.0 if counter else round(self.rng.random() * 10, 3)
        payload = {"metric": metric, "labels": labels, "value": value}
        for field in self.rule_fields:
            payload[field] = f"{field}-{key_index}"
        if classification_ratio and self.rng.random() < classification_ratio:
            payload["secondary_classification"] = self.rng.choice(CLASSIFICATIONS)
        return payload


def keys_for_partitions(partitions: int, keys: int) -> dict[str, list[str]]:
    """`keys` partition keys per partition, each routing (FNV-1a-64 mod P) to its partition."""
    table: dict[str, list[str]] = {str(p): [] for p in range(partitions)}
    number = 0
    while any(len(found) < keys for found in table.values()):
        key = f"key-{number}"
        number += 1
        bucket = table[str(fnv1a_64(key.encode()) % partitions)]
        if len(bucket) < keys:
            bucket.append(key)
    return table


def historic_rows(compiled, partitions: int, events_per_partition: int, start_ns: int, step_ms: int, keys: int,
                  classification_ratio: float, duplicate_ratio: float, seed: int):
    """Yield historic rows (tuples in COLUMNS order), partition by partition, raft_index 1.. per partition."""
    rng = random.Random(seed)
    maker = SampleMaker(compiled, rng)
    key_table = keys_for_partitions(partitions, keys)
    for part in range(partitions):
        part_id = str(part)
        part_keys = key_table[part_id]
        emitted: list[tuple] = []
        for index in range(1, events_per_partition + 1):
            if emitted and duplicate_ratio and rng.random() < duplicate_ratio:
                original = rng.choice(emitted)   # the same event again, stored twice in the source
                yield (part_id, index) + original
                continue
            key_index = rng.randrange(len(part_keys))
            event_time = start_ns + (index - 1) * step_ms * 1_000_000
            payload = maker.payload(index, key_index, classification_ratio)
            row = (event_time, f"h-{part_id}-{index:010d}", part_keys[key_index], "metric_sample_v1",
                   json.dumps(payload, separators=(",", ":"), sort_keys=True), None)
            if duplicate_ratio:
                emitted.append(row)
            yield (part_id, index) + row


# ---- writers ------------------------------------------------------------------------------------------
def _check_table(table: str) -> str:
    if not IDENTIFIER.match(table):
        raise ValueError(f"--table {table!r} is not a plain identifier (letters, digits, _; optional schema.)")
    return table


def _sqlite_table(connection, table: str) -> str:
    """Create the historic table and its indexes in an open SQLite database (if missing)."""
    table = _check_table(table)
    if "." in table:
        raise ValueError("SQLite tables cannot carry a schema prefix")
    connection.execute(f"CREATE TABLE IF NOT EXISTS {table} (part_id TEXT NOT NULL, raft_index BIGINT, "
                       "event_time_ns BIGINT NOT NULL, event_id TEXT NOT NULL, partition_key TEXT NOT NULL, "
                       "schema_key TEXT NOT NULL, payload TEXT NOT NULL, flags TEXT)")
    connection.execute(f"CREATE INDEX IF NOT EXISTS {table}_raft ON {table} (part_id, raft_index)")
    connection.execute(f"CREATE INDEX IF NOT EXISTS {table}_time ON {table} (part_id, event_time_ns, event_id)")
    return f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def write_sqlite(path: str, table: str, rows) -> int:
    """Create the table (if missing) and insert the rows; returns the row count."""
    connection = sqlite3.connect(path)
    try:
        insert = _sqlite_table(connection, table)
        count = 0
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 10000:
                connection.executemany(insert, batch)
                count += len(batch)
                batch.clear()
        connection.executemany(insert, batch)
        count += len(batch)
        connection.commit()
        return count
    finally:
        connection.close()


def write_postgres(dsn: str, table: str, rows) -> int:
    """Create the table (if missing) and COPY the rows in; returns the row count."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        raise ValueError("PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'") from None
    table = _check_table(table)
    parts = table.split(".")
    name = sql.Identifier(*parts)
    index_prefix = parts[-1]
    count = 0
    with psycopg.connect(dsn) as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (part_id TEXT NOT NULL, raft_index BIGINT, "
                                   "event_time_ns BIGINT NOT NULL, event_id TEXT NOT NULL, partition_key TEXT NOT NULL, "
                                   "schema_key TEXT NOT NULL, payload TEXT NOT NULL, flags TEXT)").format(name))
            cursor.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (part_id, raft_index)").format(
                sql.Identifier(index_prefix + "_raft"), name))
            cursor.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (part_id, event_time_ns, event_id)").format(
                sql.Identifier(index_prefix + "_time"), name))
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(name, sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
            with cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        connection.commit()
    return count


def seed_history(db: str, partitions: int, events_per_partition: int, bundle: str, start_ns: int | None = None,
                 step_ms: int = 10, keys: int = 16, secondary_classification_ratio: float = 0.0,
                 duplicate_ratio: float = 0.0, table: str = "ceptra_history", seed: int = 7) -> int:
    """Write the synthetic historic set; returns the number of rows written."""
    if partitions < 1 or events_per_partition < 0 or keys < 1 or step_ms < 0:
        raise ValueError("--partitions and --keys must be >= 1, --events-per-partition and --step-ms >= 0")
    for name, ratio in (("--secondary-classification-ratio", secondary_classification_ratio),
                        ("--duplicate-ratio", duplicate_ratio)):
        if not 0 <= ratio <= 1:
            raise ValueError(f"{name} must be between 0 and 1")
    compiled = load_bundle(bundle)
    if start_ns is None:
        start_ns = time.time_ns() - 30 * 60 * 1_000_000_000
    rows = historic_rows(compiled, partitions, events_per_partition, start_ns, step_ms, keys,
                         secondary_classification_ratio, duplicate_ratio, seed)
    if db.startswith("sqlite:"):
        return write_sqlite(db[len("sqlite:"):], table, rows)
    if db.startswith(("postgresql://", "postgres://")) or "=" in db:
        return write_postgres(db, table, rows)
    raise ValueError(f"--db {db!r}: use sqlite:PATH or postgresql://... (or a libpq 'host=... dbname=...' DSN)")


def seed_history_command(args) -> int:
    """CLI wrapper of seed_history."""
    started = time.monotonic()
    count = seed_history(args.db, args.partitions, args.events_per_partition, args.bundle, args.start_ns, args.step_ms,
                         args.keys, args.secondary_classification_ratio, args.duplicate_ratio, args.table, args.seed)
    print(f"seed-history: wrote {count} rows to {args.table} in {time.monotonic() - started:.1f} s")
    return 0


class HistoryArchive:
    """The history table `live` archives every event it generates into (sent, refused or skipped
    alike: the events happened, the cluster may just not have taken them), so that the history
    holds the live events too. SQLite (WAL journal, so readers see each committed tick) or
    PostgreSQL, in the schema of `seed-history`."""

    def __init__(self, db: str, table: str = "ceptra_history"):
        self.db = db
        if db.startswith("sqlite:"):
            self.connection = sqlite3.connect(db[len("sqlite:"):], check_same_thread=False)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.insert = _sqlite_table(self.connection, table)
            self.connection.commit()
            self.postgres = False
        elif db.startswith(("postgresql://", "postgres://")) or "=" in db:
            write_postgres(db, table, [])     # creates the table and indexes when missing
            import psycopg
            from psycopg import sql
            self.connection = psycopg.connect(db)
            self.insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(*_check_table(table).split(".")), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
                sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)))
            self.postgres = True
        else:
            raise ValueError(f"--archive {db!r}: use sqlite:PATH or postgresql://... (or a libpq DSN)")
        self.rows = 0

    def add(self, messages: list[dict]) -> None:
        """Archive append messages (one committed transaction)."""
        if not messages:
            return
        rows = [(m["part_id"], None, m["ts_ns"], m["event_id"], m["partition_key"], m["schema_key"],
                 json.dumps(m["payload"], separators=(",", ":"), sort_keys=True), None) for m in messages]
        if self.postgres:
            with self.connection.cursor() as cursor:
                cursor.executemany(self.insert, rows)
        else:
            self.connection.executemany(self.insert, rows)
        self.connection.commit()
        self.rows += len(rows)

    def close(self) -> None:
        self.connection.close()


# ---- live traffic -------------------------------------------------------------------------------------------
class _Connection:
    """One keep-alive HTTP(S) connection to the lab."""

    def __init__(self, url: str, token: str | None, cacert=None, cert=None, key=None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url {url!r} must look like http://127.0.0.1:8080")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=cacert)
            if cert:
                context.load_cert_chain(cert, key)
            self.connection = http.client.HTTPSConnection(parts.hostname, parts.port or 443, context=context, timeout=30)
        else:
            self.connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = content_type
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()


# How often `live` resends events the lab refused for a while (TransientBackpressure, HTTP
# 429/503) before it counts them as refused; the wait follows the answer's retry_backoff_ms.
LIVE_RETRIES = 20
DEFAULT_BACKOFF_MS = 50          # contract section 4: 25-50 ms when the answer gives no hint


def _append_with_retries(connection, part_id: str, lines: list, totals: dict, rng) -> None:
    """Append ``lines`` to a partition; resend the transiently refused ones (same event_id, so the
    lab's dedup keeps a resend harmless) after a uniform wait in [backoff/2, backoff] (the
    contract's client rule), up to LIVE_RETRIES times. Permanent refusals are counted at once."""
    pending = list(lines)
    for attempt in range(LIVE_RETRIES + 1):
        status, body = connection.call("POST", f"/v1/partitions/{part_id}/append-stream",
                                       b"\n".join(pending) + b"\n", "application/x-ndjson")
        backoff_ms, again = DEFAULT_BACKOFF_MS, []
        if status in (429, 503):
            again = pending
        elif status != 200:
            totals["refused"] += len(pending)
            return
        else:
            for line, answer in zip(pending, body.splitlines()):
                response = json.loads(answer)
                if response.get("status") == "Healthy":
                    totals["duplicate" if response.get("duplicate") else "healthy"] += 1
                elif response.get("status") == "TransientBackpressure":
                    again.append(line)
                    hint = (response.get("cep_credit_hint") or {}).get("retry_backoff_ms")
                    if isinstance(hint, (int, float)) and hint > 0:
                        backoff_ms = hint
                else:
                    totals["refused"] += 1
        if not again:
            return
        if attempt == LIVE_RETRIES:
            totals["refused"] += len(again)
            return
        totals["retried"] += len(again)
        time.sleep(rng.uniform(backoff_ms / 2.0, backoff_ms) / 1000.0)
        pending = again


def live(url: str, token: str | None, rate: float, duration: float, skip_from_ms: int | None = None,
         skip_to_ms: int | None = None, bundle: str | None = None, partitions: int | None = None,
         prefix: str = "live", cacert=None, cert=None, key=None, out=sys.stdout, archive: str | None = None,
         archive_table: str = "ceptra_history", mirror_url: str | None = None, mirror_token: str | None = None,
         classification_ratio: float = 0.0, stop=None) -> dict:
    """Append events at `rate`/s for `duration` s (ticks of 50 ms), skipping [skip_from_ms, skip_to_ms).

    `archive` (sqlite:PATH or a PostgreSQL DSN) keeps every generated event in a history table;
    `mirror_url` sends every event (skipped ones too) to a second cluster as well, the reference
    that saw every event; `classification_ratio` annotates that share of the events with a
    `secondary_classification` (the secondary system's decision); `stop` (a threading.Event)
    ends the run early. Transient refusals (TransientBackpressure, HTTP 429/503) are resent with
    the hinted backoff (``_append_with_retries``); ``refused`` counts what the lab still refused.
    """
    if rate <= 0 or duration < 0:
        raise ValueError("--rate must be > 0 and --duration >= 0")
    if (skip_from_ms is None) != (skip_to_ms is None) or (skip_from_ms is not None and skip_to_ms < skip_from_ms):
        raise ValueError("give both --skip-from-ms and --skip-to-ms, with from <= to")
    if not 0 <= classification_ratio <= 1:
        raise ValueError("--secondary-classification-ratio must be between 0 and 1")
    connection = _Connection(url, token, cacert, cert, key)
    mirror = _Connection(mirror_url, mirror_token or token, cacert, cert, key) if mirror_url else None
    history = HistoryArchive(archive, archive_table) if archive else None
    if partitions is None:
        status, body = connection.call("GET", "/v1/state")
        if status != 200:
            raise ValueError(f"cannot read /v1/state (HTTP {status}); pass --partitions N")
        partitions = int(json.loads(body)["cluster"]["partitions"])
    rng = random.Random(11)
    maker = SampleMaker(load_bundle(bundle), rng) if bundle else None
    metric_count = len(maker.templates) if maker else 1
    key_table = keys_for_partitions(partitions, 16)
    totals = {"sent": 0, "healthy": 0, "duplicate": 0, "refused": 0, "skipped": 0, "retried": 0, "archived": 0,
              "mirrored": 0}
    started = time.monotonic()
    sequence = 0
    tick = 0.05
    total = int(duration * rate)
    try:
        while sequence < total and not (stop is not None and stop.is_set()):
            elapsed = time.monotonic() - started
            due = min(total, int((elapsed + tick) * rate)) - sequence
            batches: dict[str, list[bytes]] = {}
            everything: dict[str, list[bytes]] = {}
            generated = []
            for _ in range(max(0, due)):
                sequence += 1
                at_ms = sequence / rate * 1000.0
                skipped = skip_from_ms is not None and skip_from_ms <= at_ms < skip_to_ms
                if skipped and history is None and mirror is None:
                    totals["skipped"] += 1
                    continue
                part_id = str(sequence % partitions)
                # from the n-th event of its partition: the global sequence would give each partition
                # one metric (4 partitions, 4 metrics), one modulus for metric and key would tie
                # each metric to a quarter of the keys; this way every key sees every metric
                ordinal = (sequence - 1) // partitions
                key_index = (ordinal // metric_count) % 16
                part_key = key_table[part_id][key_index]
                payload = maker.payload(ordinal, key_index, classification_ratio) if maker else {}
                if not maker and classification_ratio and rng.random() < classification_ratio:
                    payload = {"secondary_classification": rng.choice(CLASSIFICATIONS)}
                message = {"event_id": f"{prefix}-{sequence:010d}", "part_id": part_id, "partition_key": part_key,
                           "ts_ns": time.time_ns(), "schema_key": "metric_sample_v1", "payload": payload}
                line = json.dumps(message, separators=(",", ":")).encode()
                generated.append(message)
                everything.setdefault(part_id, []).append(line)
                if skipped:
                    totals["skipped"] += 1
                    continue
                batches.setdefault(part_id, []).append(line)
            if history is not None:
                history.add(generated)
                totals["archived"] += len(generated)
            for part_id, lines in batches.items():
                totals["sent"] += len(lines)
                _append_with_retries(connection, part_id, lines, totals, rng)
            if mirror is not None:
                for part_id, lines in everything.items():
                    status, body = mirror.call("POST", f"/v1/partitions/{part_id}/append-stream",
                                               b"\n".join(lines) + b"\n", "application/x-ndjson")
                    if status != 200 or any(json.loads(a).get("status") != "Healthy" for a in body.splitlines()):
                        raise ValueError(f"the mirror {mirror_url} refused live events (HTTP {status}): {body[:300]!r}")
                    totals["mirrored"] += len(lines)
            next_tick = started + (int(elapsed / tick) + 1) * tick
            time.sleep(max(0.0, next_tick - time.monotonic()))
    finally:
        if history is not None:
            history.close()
    totals["seconds"] = round(time.monotonic() - started, 3)
    extra = ""
    if history is not None:
        extra += f" archived {totals['archived']}"
    if mirror is not None:
        extra += f" mirrored {totals['mirrored']}"
    print(f"live: sent {totals['sent']} healthy {totals['healthy']} refused {totals['refused']} "
          f"retried {totals['retried']} skipped {totals['skipped']}{extra} in {totals['seconds']} s", file=out)
    return totals


def live_command(args) -> int:
    """CLI wrapper of live()."""
    totals = live(args.url, args.token, args.rate, args.duration, args.skip_from_ms, args.skip_to_ms, args.bundle,
                  args.partitions, args.prefix, args.cacert, args.cert, args.key, archive=args.archive,
                  archive_table=args.archive_table, mirror_url=args.mirror_url, mirror_token=args.mirror_token,
                  classification_ratio=args.secondary_classification_ratio)
    return 0 if totals["refused"] == 0 or args.allow_refused else 1
