# Internal to ceptra.backfill (not a public API): SQL side of the historic source (query builder, SQLite and PostgreSQL backends).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Historic source backends: one query builder, two dialects, keyset paging.

Two backends share one query builder: SQLite (stdlib ``sqlite3``, the embedded default)
and PostgreSQL (psycopg 3, through ``sql.PgConnection``). Reading is keyset pagination::

    SELECT ... FROM t WHERE part_id = ? [AND window] AND (k1, k2, ..) > (?, ?, ..)
    ORDER BY k1, k2, .. LIMIT n + 1

so no call ever holds more than one page, a restart resumes from a position with no
server-side state, and every statement is short (no long-lived transaction on the source).
User-supplied names (table, columns) are validated against a strict identifier pattern and
quoted; every value is a bound parameter. Open a source with ``source.open_source``.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import sqlite3
import threading

from ansible_collections.ceptra.backfill.plugins.module_utils._partitions import sort_ids
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import wire as enc
from ansible_collections.ceptra.backfill.plugins.module_utils._replay import sql
from ansible_collections.ceptra.backfill.plugins.module_utils._replay.rows import (
    EventRows, SourceError, _before, _json_safe)

COPY_LOOKUP_CHUNK = 4000  # events per duplicate lookup (SQLite allows 32766 parameters)
# Events stored more than once that a partition's copy index holds (raft order; about 21 MiB at
# the limit, measured); beyond it the source looks each page's events up instead, so memory
# stays bounded whatever the history.
COPY_INDEX_LIMIT = 50000
JSON_TYPE_OIDS = (114, 3802)   # PostgreSQL json, jsonb


class UnorderableRows(SourceError):
    """A partition has rows with NULL in an ordering column: it cannot be replayed in order.

    Only that partition is refused (``run.ReplayRun`` reports it and replays the others);
    ``part_id``, ``columns`` (the physical columns holding NULLs) and ``rows`` say where.
    """

    def __init__(self, part_id, columns, rows, order_by):
        self.part_id, self.columns, self.rows = str(part_id), list(columns), rows
        super(UnorderableRows, self).__init__(
            "partition %s: %d row(s) have NULL in an ordering column (%s) and cannot be placed in "
            "order_by %s order; fill or delete those rows, or choose the other order_by"
            % (part_id, rows, ", ".join(self.columns), order_by))

    def report(self):
        """The partition's refusal as a report (the shape of a stop report)."""
        return {"part_id": self.part_id, "status": "Refused", "reason": "UNORDERABLE_ROWS",
                "columns": self.columns, "rows": self.rows, "message": self.message}


def _sortable(value):
    """A value as a comparable, type-tagged key (rows sharing an ordering key are sorted by content)."""
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return (3, bytes(value).hex())
    return (4, json.dumps(value, sort_keys=True, default=str))


def _content_key(row):
    return tuple(_sortable(value) for value in row)


_PLAIN_TYPES = {int, str, type(None)}


def _content_sorted(group):
    """Rows sharing a key in content order (``_content_key``). Rows of plain values (int, str,
    NULL) compare the same way as they are (the first column that differs holds two ints or
    two strs; two types there raise TypeError), which spares a key per value."""
    if set(map(type, itertools.chain.from_iterable(group))) <= _PLAIN_TYPES:
        try:
            return sorted(group)
        except TypeError:
            pass
    return sorted(group, key=_content_key)


def _runs(same):
    """``[(first, end), ...]``: the runs of rows sharing one value (a key, an identity), from
    ``same`` (``same[i]``: row ``i + 1`` has the value of row ``i``); each run starts at a row
    that does not share the value of the row before it."""
    runs = []
    for index in itertools.compress(range(1, len(same) + 1), same):
        if runs and runs[-1][1] == index:
            runs[-1][1] = index + 1
        else:
            runs.append([index - 1, index + 1])
    return runs


class HistoricSource(EventRows):
    """Common reader: SQL building, keyset paging, duplicate detection. Backends supply the dialect;
    ``EventRows`` turns the rows into events."""

    # Order of the SELECT list; "position" is built from the key columns that follow it.
    SELECT_COLUMNS = ("event_time_ns", "event_id", "partition_key", "schema_key", "payload", "flags", "raft_index")

    def __init__(self, spec):
        self.spec = spec
        self.table = spec["table"]
        self.columns = spec["columns"]
        self.order_by = spec["order_by"]
        self.window = spec["window"]
        self.partition_start = spec.get("partition_start") or {}
        self.part_ids = spec["part_ids"]
        self.max_event_bytes = spec["max_event_bytes"]
        self.find_copies = spec.get("find_copies", True)
        self.statements = []  # the last 20 SQL texts issued, to see what the source asked
        self._lock = threading.Lock()
        # Key = the columns that define the order; identity = the part of it that must be
        # unique per event (the tiebreak only disambiguates storage duplicates).
        identity = ["raft_index"] if self.order_by == "raft_index" else ["event_time_ns", "event_id"]
        self.identity_columns = identity
        self.tiebreak = self._tiebreak_expression()
        # Where the position values sit in a SELECT row (see SELECT_COLUMNS; tiebreak last).
        self._position_indexes = [6] if self.order_by == "raft_index" else [0, 1]
        if self.tiebreak is not None:
            self._position_indexes.append(7)
        if len(self._position_indexes) == 1:
            index = self._position_indexes[0]
            self._position_values = lambda row: (row[index],)
        else:
            self._position_values = operator.itemgetter(*self._position_indexes)
        self._null_checked = set()
        self._copy_index = {}   # raft order: part_id -> (bound, copies), see _partition_copies

    # -- dialect hooks -------------------------------------------------------------------
    def _ident(self, name):
        raise NotImplementedError

    def _raw(self, text):
        raise NotImplementedError

    def _join(self, fragments, sep=", "):
        raise NotImplementedError

    def _compose(self, template, **fragments):
        raise NotImplementedError

    def _execute(self, query, params):
        raise NotImplementedError

    def _tiebreak_expression(self):
        column = self.columns["tiebreak"]
        return None if column is None else self._ident(column)

    # -- SQL pieces -----------------------------------------------------------------------
    def _col(self, logical):
        physical = self.columns[logical]
        return self._raw("NULL") if physical is None else self._ident(physical)

    def _key_fragments(self):
        keys = [self._col(name) for name in self.identity_columns]
        if self.tiebreak is not None:
            keys.append(self.tiebreak)
        return keys

    def _filters(self, part_id, key_after=None, op=">", start=True, window_probe=False):
        """WHERE clause fragments and parameters: partition, the partition's start
        (``partition_start``, unless ``start`` is false), window, keyset position.

        ``key_after`` is an ordering key (no rank); ``op`` ``>`` reads after every row of it,
        ``>=`` from its first row (a resume inside a group of rows sharing the key), ``=``
        only the rows of that key. ``window_probe``: the window bounds as plain filters
        (``+column``), for a lookup that probes the time index by equality: SQLite would
        otherwise take the window as the index range and scan it once per looked-up event
        (6 s instead of 40 ms for a page of 2000).
        """
        clauses = [self._compose("{c} = %s", c=self._col("part_id"))]
        params = [str(part_id)]
        time_col = self._col("event_time_ns")
        bound = self.partition_start.get(str(part_id)) if start else None
        if bound and "after_raft_index" in bound:
            clauses.append(self._compose("{c} > %s", c=self._col("raft_index")))
            params.append(bound["after_raft_index"])
        if bound and "from_event_time_ns" in bound:
            clauses.append(self._compose("{c} >= %s", c=time_col))
            params.append(bound["from_event_time_ns"])
        if window_probe:
            time_col = self._compose("+{c}", c=time_col)
        if "start_ns" in self.window:
            clauses.append(self._compose("{c} >= %s", c=time_col))
            params.append(self.window["start_ns"])
        if "end_ns" in self.window:
            clauses.append(self._compose("{c} < %s", c=time_col))
            params.append(self.window["end_ns"])
        if key_after is not None:
            keys = self._key_fragments()
            placeholders = self._join([self._raw("%s")] * len(keys))
            clauses.append(self._compose("({k}) " + op + " ({p})", k=self._join(keys), p=placeholders))
            params.extend(key_after)
        return self._join(clauses, " AND "), params

    def _split_position(self, part_id, after):
        """``(ordering key, rank)`` of a resume position; rank 0 = after every row of the key.

        A position is the ordering key followed by the row's rank among the rows that share
        that key (1 for a unique key), so it is unique for every row, whether or not the key
        is. A position of the key alone (cursors written before ranks existed) means after
        every row of that key, as it did then.
        """
        if after is None:
            return None, 0
        after = tuple(after)
        n_keys = len(self._key_fragments())
        if len(after) == n_keys + 1 and isinstance(after[-1], int) and not isinstance(after[-1], bool) \
                and after[-1] >= 1:
            return after[:-1], after[-1]
        if len(after) == n_keys:
            return after, 0
        raise SourceError(
            "partition %s: resume position %r has %d values but the source orders by %d columns plus the rank; "
            "the cursor was written with a different order_by/tiebreak setting: start a new run id"
            % (part_id, list(after), len(after), n_keys))

    def _select_column(self, logical):
        return self._col(logical)

    def _select_list(self):
        fragments = [self._select_column(name) for name in self.SELECT_COLUMNS]
        if self.tiebreak is not None:
            fragments.append(self.tiebreak)
        return self._join(fragments)

    def _run(self, query, params):
        with self._lock:
            return self._execute(query, params)

    # -- public API -----------------------------------------------------------------------
    def partitions(self):
        """Partition ids to replay: ``part_ids`` from the spec, else every id in the table."""
        if self.part_ids is not None:
            return list(self.part_ids)
        query = self._compose("SELECT DISTINCT {p} FROM {t} WHERE {p} IS NOT NULL",
                              p=self._col("part_id"), t=self._ident(self.table))
        rows = self._run(query, [])
        return sort_ids(row[0] for row in rows)

    def _check_order_keys(self, part_id):
        """Refuse a partition with rows whose ordering key is NULL: they have no place in the
        order (a keyset read would never return them). Raises UnorderableRows naming the
        partition, the column(s) and the number of rows; checked once per partition."""
        if part_id in self._null_checked:
            return
        logical = list(self.identity_columns) + (["tiebreak"] if self.columns["tiebreak"] is not None else [])
        fragments = [self._col(name) if name != "tiebreak" else self.tiebreak for name in logical]
        # not limited by partition_start: "raft_index > N" would hide the NULL rows, not order them
        where, params = self._filters(part_id, start=False)
        tests = self._join([self._compose("{c} IS NULL", c=c) for c in fragments], " OR ")
        sums = self._join([self._compose("SUM(CASE WHEN {c} IS NULL THEN 1 ELSE 0 END)", c=c) for c in fragments])
        query = self._compose("SELECT COUNT(*), {s} FROM {t} WHERE {w} AND ({n})",
                              s=sums, t=self._ident(self.table), w=where, n=tests)
        result = self._run(query, params)[0]
        if result[0]:
            columns = [self.columns[name] for name, nulls in zip(logical, result[1:]) if nulls]
            raise UnorderableRows(part_id, columns, int(result[0]), self.order_by)
        self._null_checked.add(part_id)

    def plan(self, part_id, after=None):
        """Count and range of the events of a partition after ``after`` (COUNT + MIN/MAX; for plans)."""
        part_id = str(part_id)
        self._check_order_keys(part_id)
        key, rank = self._split_position(part_id, after)
        where, params = self._filters(part_id, key, ">=" if rank else ">")
        table = self._ident(self.table)
        time_col = self._col("event_time_ns")
        keys = self._join(self._key_fragments())
        if rank:
            # rows of the cursor's own key still to come: those ranked after it
            in_group = self._compose(", SUM(CASE WHEN ({k}) = ({p}) THEN 1 ELSE 0 END)", k=keys,
                                     p=self._join([self._raw("%s")] * len(key)))
            params = list(key) + params
        else:
            in_group = self._raw("")
        query = self._compose("SELECT COUNT(*), MIN({ts}), MAX({ts}){g} FROM {t} WHERE {w}",
                              ts=time_col, t=table, w=where, g=in_group)
        found = self._run(query, params)[0]
        count, min_ts, max_ts = found[:3]
        group = int(found[3] or 0) if rank else 0
        params = params[len(key):] if rank else params
        count = int(count) - min(rank, group)
        first = last = None
        if count:
            ends = {}
            for direction in ("ASC", "DESC"):
                order = self._join([self._compose("{k} " + direction, k=k) for k in self._key_fragments()])
                query = self._compose("SELECT {k} FROM {t} WHERE {w} ORDER BY {o} LIMIT 1",
                                      k=keys, t=table, w=where, o=order)
                ends[direction] = tuple(_json_safe(v) for v in self._run(query, params)[0])
            first = ends["ASC"] + (rank + 1,) if rank and group > rank else None
            if first is None:
                where_next, params_next = self._filters(part_id, key, ">") if rank else (where, params)
                order = self._join([self._compose("{k} ASC", k=k) for k in self._key_fragments()])
                query = self._compose("SELECT {k} FROM {t} WHERE {w} ORDER BY {o} LIMIT 1",
                                      k=keys, t=table, w=where_next, o=order)
                first = tuple(_json_safe(v) for v in self._run(query, params_next)[0]) + (1,)
            where_last, params_last = self._filters(part_id, ends["DESC"], "=")
            size = self._run(self._compose("SELECT COUNT(*) FROM {t} WHERE {w}", t=table, w=where_last),
                             params_last)[0][0]
            last = ends["DESC"] + (int(size),)
        return {"events": count, "first_position": first, "last_position": last,
                "min_ts_ns": min_ts, "max_ts_ns": max_ts}

    def read_wire(self, part_id, after, after_seq, limit):
        """``read`` for a sender: the same rows, checks and errors, but each valid event's
        ``event`` is a summary ``{event_id, part_id, partition_key, ts_ns, schema_key}`` (no
        payload, no flags) and the message to send is ``wire``.

        The payload is still parsed (so a bad payload is still a bad row at its position) but
        not kept: a page then holds no per-event containers the garbage collector must walk,
        which is most of what a full page costs the worker besides the parse itself.
        """
        return self.read(part_id, after, after_seq, limit, summary=True)

    def read(self, part_id, after, after_seq, limit, summary=False):
        """Return up to ``limit`` events of ``part_id`` strictly after position ``after``.

        ``after_seq`` is the seq of the event at ``after`` (0 at the start); the rows returned
        are numbered ``after_seq + 1``, ``+ 2``... An empty list means the partition is done.
        Each event's position is its ordering key plus its rank among the rows sharing that
        key (see ``_split_position``); rows sharing a key are ordered by their content, so
        the order, the positions and the seqs are the same on every read and after every
        resume. A page never ends inside such a group, unless the group alone is larger
        than the page (then the page is the whole group).

        A later copy of an event (same ``event_time_ns`` and ``event_id`` as an earlier row)
        comes back with ``duplicate_of`` (the ordering key of an earlier copy) and ``error``
        set, unless the source's ``find_copies`` is false (then every copy is an event to send).
        """
        if not isinstance(limit, int) or limit < 1:
            raise SourceError("read limit must be a positive integer, got %r" % (limit,))
        part_id = str(part_id)
        self._check_order_keys(part_id)
        key_after, skip = self._split_position(part_id, after)
        where, params = self._filters(part_id, key_after, ">=" if skip else ">")
        query = self._compose("SELECT {s} FROM {t} WHERE {w} ORDER BY {k} LIMIT %s",
                              s=self._select_list(), t=self._ident(self.table), w=where,
                              k=self._join(self._key_fragments()))
        wanted = limit + skip
        rows, keys = self._whole_groups(part_id, self._run(query, params + [wanted + 1]), wanted, key_after, skip)
        if not rows:
            self._copy_index.pop(part_id, None)    # the partition's end: its copy index is not needed any more
        return self._events(part_id, rows, keys, after, after_seq, key_after, skip, summary)

    def _whole_groups(self, part_id, rows, wanted, key_after, skip):
        """The page's rows with no group of equal keys cut at its end, each group in content order.

        ``rows`` were fetched with one look-ahead row beyond ``wanted``. A trailing group the
        page end cuts is left to the next page, or fetched whole when nothing else would be
        left to return (a group larger than the page).
        """
        key_of = self._position_of
        if len(rows) > wanted:
            last_key = key_of(rows[wanted - 1])
            if key_of(rows[wanted]) == last_key:
                cut = wanted - 1
                while cut > 0 and key_of(rows[cut - 1]) == last_key:
                    cut -= 1
                kept = rows[:cut]
                passed = sum(1 for row in kept[:skip] if key_of(row) == key_after)
                if len(kept) > passed:
                    rows = kept
                else:
                    where, params = self._filters(part_id, last_key, "=")
                    query = self._compose("SELECT {s} FROM {t} WHERE {w}", s=self._select_list(),
                                          t=self._ident(self.table), w=where)
                    rows = kept + self._run(query, params)
            else:
                rows = rows[:wanted]
        # rows sharing a key: in content order, the same on every read (SQL leaves it open)
        keys = [key_of(row) for row in rows]
        runs = _runs(list(map(operator.eq, keys, itertools.islice(keys, 1, None))))
        if not runs:
            return rows, keys      # the usual page: no two rows share a key (compared in C)
        out = list(rows)
        for first, end in runs:
            out[first:end] = _content_sorted(rows[first:end])
        return out, keys

    def _events(self, part_id, rows, keys, after, after_seq, key_after, skip, summary):
        """Number and classify the page's rows (events to send, copies, rows with a repeated key).

        The first ``skip`` rows of the resume key were passed already: they are walked again
        (not returned) so that every row is classified from the rows before it in the
        partition's order, however the run was cut.
        """
        time_order = self.order_by == "event_time"
        find = self.find_copies
        n_identity = len(self.identity_columns)
        emitted = rows
        passed = 0
        if skip:
            while passed < len(rows) and passed < skip and keys[passed] == key_after:
                passed += 1
            emitted = rows[passed:]
        copies = self._copies_of(part_id, emitted) if not time_order and find and emitted else {}
        # before the walk: what the row before the first walked one was (unknown after a skip)
        previous = None
        if after is not None and not passed:
            previous = tuple(after[:n_identity])
        part_json = enc.quote(part_id)
        if rows and not copies:
            ids = keys if len(keys[0]) == n_identity else [key[:n_identity] for key in keys]
            if passed or ids[0] != previous:
                # The usual page: most rows differ from the row before them (compared in C), so
                # each is its own event (not a copy, not a repeated key: rank 1), numbered in
                # one comprehension; the rare runs of rows sharing an identity are walked row by
                # row, each from its first row. The first ``passed`` rows (the resume key's) were
                # returned before.
                make_event = self._make_event_fast
                events = [make_event(part_id, part_json, row, key + (1,), seq, summary)
                          for seq, row, key in zip(itertools.count(after_seq + 1), rows[passed:], keys[passed:])]
                same = list(map(operator.eq, ids, itertools.islice(ids, 1, None)))
                for first, end in _runs(same):
                    if end <= passed:
                        continue      # a run of the rows returned before
                    lo = max(first, passed) - passed
                    events[lo:end - passed] = self._walk(part_id, part_json, rows, keys, (first, end), passed,
                                                         after_seq + lo, copies, summary, (None, None, None, 0))
                return events
        first_of_identity = tuple(key_after) if key_after is not None and not passed else None
        current_key, rank = (tuple(key_after), skip) if key_after is not None and not passed else (None, 0)
        return self._walk(part_id, part_json, rows, keys, (0, len(rows)), passed, after_seq, copies, summary,
                          (previous, first_of_identity, current_key, rank))

    def _walk(self, part_id, part_json, rows, keys, span, passed, seq, copies, summary, state):
        """Classify ``rows[span[0]:span[1]]`` one by one from ``state`` (the identity and key of
        the row before the span, the first key of that identity, the rank within that key):
        events for the rows from index ``passed`` on, numbered after ``seq``."""
        time_order = self.order_by == "event_time"
        find = self.find_copies
        n_identity = len(self.identity_columns)
        make_event = self._make_event_fast
        previous, first_of_identity, current_key, rank = state
        seen = set()        # (event_time_ns, event_id) of the identity's rows so far (raft order)
        events = []
        for index in range(*span):
            row = rows[index]
            key = keys[index]
            if key == current_key:
                rank += 1
            else:
                current_key, rank = key, 1
            identity = key[:n_identity]
            same_identity = identity == previous
            if not same_identity:
                seen = set()
                first_of_identity = key
            previous = identity
            copy_of, repeated = None, False
            event_key = (row[0], row[1])
            if time_order:
                if find and same_identity:
                    copy_of = first_of_identity
            elif find and copies and any(_before(p, key) for p in copies.get(event_key, ())):
                copy_of = min(p for p in copies[event_key] if _before(p, key))
            elif same_identity:
                if event_key in seen:
                    copy_of = key if find else None      # find_copies false: sent, the cluster dedups it
                else:
                    repeated = True
            if not repeated:
                seen.add(event_key)
            if index < passed:
                continue
            seq += 1
            event = make_event(part_id, part_json, row, key + (rank,), seq, summary)
            if copy_of is not None:
                event = self._duplicate(event, row, copy_of)
            elif repeated:
                event = self._duplicate(event, row, None)
            events.append(event)
        return events

    def _copies_of(self, part_id, rows):
        """Raft order: {(event_time_ns, event_id): [positions]} of the page's events stored twice.

        In raft order two copies of one event need not be adjacent. The partition's events
        stored more than once are found once, by one ordered pass over the time index
        (``_partition_copies``: no per-event query); a page then costs dict lookups. Rows
        beyond the last key that pass saw (appended since) and every row of a partition with
        more than ``COPY_INDEX_LIMIT`` copies are looked up per page instead (by
        (part_id, event_time_ns, event_id) on the time index). The caller keeps the copies
        before each row.
        """
        index = self._copy_index.get(part_id)
        if index is None:
            index = self._copy_index[part_id] = self._partition_copies(part_id)
        bound, known = index
        if bound is None:       # too many copies to hold (or none to index): every page looks its rows up
            return self._lookup_copies(part_id, rows)
        key_of = self._position_of
        # a page is in key order: only its tail can lie beyond the bound
        later = [row for row in rows if _before(bound, key_of(row))] if _before(bound, key_of(rows[-1])) else ()
        found = {}
        if known:
            for row in rows:
                positions = known.get((row[0], row[1]))
                if positions is not None:
                    found[(row[0], row[1])] = positions
        if later:
            for event_key, positions in self._lookup_copies(part_id, later).items():
                found[event_key] = sorted(set(found.get(event_key, ())) | set(positions))
        return found

    def _partition_copies(self, part_id):
        """``(bound, {(event_time_ns, event_id): [positions of every copy]})`` for the events of the
        partition stored more than once, with ``bound`` the last ordering key present when the
        pass began (rows after it are new: ``_copies_of`` looks them up); ``(None, None)`` when
        there are more than ``COPY_INDEX_LIMIT`` such events or no rows yet (the caller then
        looks pages up).

        One ordered pass over the partition (the whole partition, as the per-page lookup: a
        copy that the baseline before partition_start holds counts too) compares each row's
        (event_time_ns, event_id) with the row before it in that order, answered from the
        time index; then the positions of the rare copies found.
        """
        where, params = self._filters(part_id, None, start=False)
        keys = self._key_fragments()
        order = self._join([self._compose("{k} DESC", k=k) for k in keys])
        last = self._run(self._compose("SELECT {k} FROM {t} WHERE {w} ORDER BY {o} LIMIT 1", k=self._join(keys),
                                       t=self._ident(self.table), w=where, o=order), params)
        if not last:
            return None, None   # nothing there yet: rows that appear are looked up per page
        bound = tuple(_json_safe(v) for v in last[0])
        query = self._repeated_events_query(where)
        repeated = {(row[0], row[1]) for row in self._run(query, params + [COPY_INDEX_LIMIT + 1])}
        if len(repeated) > COPY_INDEX_LIMIT:
            return None, None
        where, params = self._filters(part_id, None, start=False, window_probe=True)
        return bound, self._copy_positions(where, params, sorted(repeated, key=_content_key))

    def _repeated_events_query(self, where):
        """(event_time_ns, event_id) of the events stored more than once, once each, at most
        ``%s`` rows (bound to ``COPY_INDEX_LIMIT + 1``): a grouped pass over the time index
        (SQLite answers it from the covering index, 0.2 us/row measured)."""
        return self._compose("SELECT {ts}, {ei} FROM {t} WHERE {w} GROUP BY {ts}, {ei} HAVING COUNT(*) > 1 LIMIT %s",
                             ts=self._col("event_time_ns"), ei=self._col("event_id"), t=self._ident(self.table), w=where)

    def _lookup_copies(self, part_id, rows):
        """The per-page lookup: the copies of ``rows``' events, by index probes."""
        wanted = list({(r[0], r[1]) for r in rows if r[0] is not None and r[1] is not None})
        # the whole partition (a copy the baseline before partition_start holds counts too)
        where, params = self._filters(part_id, None, start=False, window_probe=True)
        repeated = []
        for start in range(0, len(wanted), COPY_LOOKUP_CHUNK):
            query, values = self._copies_query(where, None, wanted[start:start + COPY_LOOKUP_CHUNK])
            repeated.extend((row[0], row[1]) for row in self._run(query, values + params))
        return self._copy_positions(where, params, repeated)

    def _copy_positions(self, where, params, repeated):
        """{(event_time_ns, event_id): [positions]} of every copy of the events ``repeated``
        (``where``/``params``: the partition's probe filter, ``_filters(..., window_probe=True)``)."""
        keys = self._key_fragments()
        found = {}
        for start in range(0, len(repeated), COPY_LOOKUP_CHUNK):
            query, values = self._copies_query(where, keys, repeated[start:start + COPY_LOOKUP_CHUNK])
            for row in self._run(query, values + params):
                found.setdefault((row[0], row[1]), []).append(tuple(_json_safe(v) for v in row[2:2 + len(keys)]))
        return found

    def _copies_query(self, where, keys, wanted):
        """Events of ``wanted`` stored more than once (keys None), or every copy's position."""
        values = self._raw(", ".join(["(%s, %s)"] * len(wanted)))
        if keys is None:
            template = ("WITH ceptra_v (ceptra_ts, ceptra_ei) AS (VALUES {v}) "
                        "SELECT ceptra_v.ceptra_ts, ceptra_v.ceptra_ei FROM ceptra_v JOIN "
                        "(SELECT {ts} AS ceptra_h_ts, {ei} AS ceptra_h_ei FROM {t} WHERE {w}) AS ceptra_h "
                        "ON ceptra_h.ceptra_h_ts = ceptra_v.ceptra_ts AND ceptra_h.ceptra_h_ei = ceptra_v.ceptra_ei "
                        "GROUP BY ceptra_v.ceptra_ts, ceptra_v.ceptra_ei HAVING COUNT(*) > 1")
            keys = [self._raw("1")]
        else:
            # A join on a derived table: SQLite probes the time index once per event.
            template = ("WITH ceptra_v (ceptra_ts, ceptra_ei) AS (VALUES {v}) "
                        "SELECT ceptra_v.ceptra_ts, ceptra_v.ceptra_ei, ceptra_h.* FROM ceptra_v JOIN "
                        "(SELECT {k}, {ts} AS ceptra_h_ts, {ei} AS ceptra_h_ei FROM {t} WHERE {w}) AS ceptra_h "
                        "ON ceptra_h.ceptra_h_ts = ceptra_v.ceptra_ts AND ceptra_h.ceptra_h_ei = ceptra_v.ceptra_ei")
        query = self._compose(template, v=values, k=self._join(keys), ts=self._col("event_time_ns"),
                              ei=self._col("event_id"), t=self._ident(self.table), w=where)
        return query, [v for key in wanted for v in key]

    def close(self):
        """Release the connection; the source cannot be used afterwards."""
        raise NotImplementedError


class SqliteSource(HistoricSource):
    """SQLite file, opened read-only. Without a tiebreak column, ``rowid`` breaks ties."""

    def __init__(self, spec):
        path = os.path.abspath(os.path.expanduser(spec["path"]))
        if not os.path.isfile(path):
            raise SourceError("historic source: SQLite file %s does not exist" % path)
        self.path = path
        try:
            # mode=ro: the replay never writes to the archive it reads.
            uri = "file:%s?mode=ro" % _uri_quote(path)
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise SourceError("historic source: cannot open SQLite file %s: %s" % (path, exc))
        super(SqliteSource, self).__init__(spec)
        self._probe()

    def _ident(self, name):
        return sql.sqlite_quote(name)

    def _raw(self, text):
        return text

    def _join(self, fragments, sep=", "):
        return sep.join(fragments)

    def _compose(self, template, **fragments):
        # Identifiers are validated (no "%"), so every "%s" left is a value placeholder.
        return template.format(**fragments).replace("%s", "?")

    def _execute(self, query, params):
        self.statements = (self.statements + [query])[-20:]
        try:
            return self._conn.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise SourceError("historic source %s: query failed: %s" % (self.path, exc))

    def _probe(self):
        """Fail at open time, with the names involved, when the table or a column is missing."""
        # SQLite reads a double-quoted name that matches no column as a string literal, so a
        # wrong mapping would not fail by itself: compare the mapping with the table's columns.
        parts = self.table.split(".")
        prefix = self._ident(parts[0]) + "." if len(parts) == 2 else ""
        pragma = "PRAGMA %stable_info(%s)" % (prefix, self._ident(parts[-1]))
        try:
            present = {row[1].lower() for row in self._conn.execute(pragma).fetchall()}
        except sqlite3.Error as exc:
            raise SourceError("historic source %s: cannot inspect table %s: %s" % (self.path, self.table, exc))
        if not present:
            raise SourceError("historic source %s: table %s does not exist (set 'table' to the table holding "
                              "the events)" % (self.path, self.table))
        missing = ["%s (%s)" % (physical, logical) for logical, physical in self.columns.items()
                   if physical is not None and physical.lower() not in present]
        if missing:
            raise SourceError("historic source %s: table %s is not readable: missing column(s) %s; map them with "
                              "'columns' (logical name -> column name); the table has: %s"
                              % (self.path, self.table, ", ".join(missing), ", ".join(sorted(present))))
        query = self._compose("SELECT {s} FROM {t} LIMIT 0", s=self._select_list(), t=self._ident(self.table))
        try:
            self._conn.execute(query)
        except sqlite3.Error as exc:
            hint = ""
            if "rowid" in str(exc):
                hint = " (the table has no rowid: map columns.tiebreak to a unique column)"
            raise SourceError("historic source %s: table %s with columns %s is not readable: %s%s"
                              % (self.path, self.table, _mapping_text(self.columns), exc, hint))

    def close(self):
        self._conn.close()


def _uri_quote(path):
    # sqlite URIs treat '?' and '#' specially; percent-encode what could be misread.
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _mapping_text(columns):
    return ", ".join("%s=%s" % (k, v) for k, v in columns.items() if v is not None)


class PostgresSource(HistoricSource):
    """PostgreSQL table read with keyset pages over an autocommit connection.

    There is no stable implicit row id in PostgreSQL (``ctid`` moves on UPDATE and VACUUM
    FULL), so without ``columns.tiebreak`` the ordering key itself must be unique per
    partition; duplicates are reported as error events, never skipped silently.
    """

    def __init__(self, spec):
        sql.require_psycopg(SourceError, "the PostgreSQL historic source", "on the host that runs the replay")
        self._as_text = set()   # json/jsonb columns selected as text (found by _probe)
        super(PostgresSource, self).__init__(spec)
        self._pg = sql.PgConnection(spec["dsn"], int(spec.get("connect_timeout", sql.CONNECT_TIMEOUT_S)), SourceError, "historic source")
        self._probe()

    def _ident(self, name):
        return sql.pg_identifier(name)

    def _raw(self, text):
        return sql.pg_sql.SQL(text)

    def _join(self, fragments, sep=", "):
        return sql.pg_sql.SQL(sep).join(fragments)

    def _compose(self, template, **fragments):
        return sql.pg_sql.SQL(template).format(**fragments)

    def _copies_query(self, where, keys, wanted):
        # Two array parameters (a page of 1000 as 2000 placeholders costs more to parse than
        # the lookup itself). Integer times go as bigint[], text ids as text[]; other types
        # (uuid, numeric) go as the driver types them, so each side matches its column.
        times = [key[0] for key in wanted]
        ids = [key[1] for key in wanted]
        ts_param = "%s::bigint[]" if all(isinstance(v, int) for v in times) else "%s"
        ei_param = "%s::text[]" if all(isinstance(v, str) for v in ids) else "%s"
        # LATERAL forces one index probe per event, where a plain join could hash the whole
        # partition prefix, which grows with every page.
        if keys is None:
            inner, outer = "SELECT COUNT(*) AS ceptra_n", " WHERE ceptra_h.ceptra_n > 1"
        else:
            inner, outer = "SELECT {k}", ""
        query = self._compose(
            "SELECT ceptra_v.ceptra_ts, ceptra_v.ceptra_ei, ceptra_h.* FROM unnest(" + ts_param + ", " + ei_param
            + ") AS ceptra_v (ceptra_ts, ceptra_ei) CROSS JOIN LATERAL (" + inner + " FROM {t} WHERE {w} "
            "AND {ts} = ceptra_v.ceptra_ts AND {ei} = ceptra_v.ceptra_ei) AS ceptra_h" + outer,
            k=self._join(keys or [self._raw("1")]), ts=self._col("event_time_ns"), ei=self._col("event_id"),
            t=self._ident(self.table), w=where)
        return query, [times, ids]

    def _repeated_events_query(self, where):
        # Each row against the one before it in time-index order (an index-only scan streamed
        # through a window: measured 0.4-0.7 us/row, a hash aggregate 0.7-1.0); DISTINCT over
        # the few matches so the limit counts events, not extra copies.
        return self._compose(
            "SELECT DISTINCT ceptra_ts, ceptra_ei FROM (SELECT {ts} AS ceptra_ts, {ei} AS ceptra_ei, "
            "LAG({ts}) OVER (ORDER BY {ts}, {ei}) AS ceptra_pts, LAG({ei}) OVER (ORDER BY {ts}, {ei}) AS ceptra_pei "
            "FROM {t} WHERE {w}) AS ceptra_x WHERE ceptra_pts = ceptra_ts AND ceptra_pei = ceptra_ei LIMIT %s",
            ts=self._col("event_time_ns"), ei=self._col("event_id"), t=self._ident(self.table), w=where)

    def _execute(self, query, params):
        self.statements = (self.statements + [self._pg.as_string(query)])[-20:]
        return self._pg.execute(query, params)

    def _select_column(self, logical):
        column = self._col(logical)
        if logical in self._as_text:
            # json/jsonb read as its text: the driver would decode it into Python objects that
            # the row check then re-encodes (measured 3x the cost of a text column); the text
            # goes through the same payload and flags checks.
            return self._compose("CAST({c} AS text)", c=column)
        return column

    def _probe(self):
        query = self._compose("SELECT {s} FROM {t} LIMIT 0", s=self._select_list(), t=self._ident(self.table))
        try:
            cursor = self._pg.conn.execute(query)
        except sql.psycopg.Error as exc:
            raise self._pg.failed(exc, "table %s with columns %s is not readable" % (self.table, _mapping_text(self.columns)))
        types = [column.type_code for column in cursor.description or ()]
        self._as_text = {name for name in ("payload", "flags")
                         if self.columns[name] is not None and types[self.SELECT_COLUMNS.index(name)] in JSON_TYPE_OIDS}

    def close(self):
        self._pg.close()
