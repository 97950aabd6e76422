# -*- coding: utf-8 -*-
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): how a partition's replay reads its pages.

``AdaptivePageReader`` reads pages inline while other partitions are in flight, and one
step ahead in a background thread (``PageReader``) once the partition runs alone. Both
work per page, never per event: the per-event loop is in ``partition`` and ``wire``.
"""

from __future__ import annotations

import queue
import threading


class AdaptivePageReader(object):
    """Reads a partition's pages in the caller's thread while other partitions are being
    replayed, and one step ahead in a background thread once this partition runs alone.

    With several partitions in flight the cluster always has another partition's request
    to work on while one thread reads, and a read-ahead thread per partition only competes
    for the GIL (SQLite gives it up and takes it back for every row it steps over): measured
    1-3 us more CPU per event and slower pickup of the cluster's answers. A partition on its
    own needs the read-ahead to keep the cluster busy.
    """

    def __init__(self, read, after, after_seq, alone):
        self._read = read
        self._after = after
        self._after_seq = after_seq
        self._alone = alone
        self._ahead = None       # the PageReader, once started
        self._finished = False

    def next_page(self):
        """The next page in order ([] at the end, also on later calls); re-raises a read error."""
        if self._finished:
            return []
        if self._ahead is None and self._alone():
            self._ahead = PageReader(self._read, self._after, self._after_seq)
        if self._ahead is not None:
            page = self._ahead.next_page()
        else:
            page = self._read(self._after, self._after_seq)
            if page:
                self._after, self._after_seq = page[-1].position, page[-1].seq
        if not page:
            self._finished = True
        return page

    def close(self):
        if self._ahead is not None:
            self._ahead.close()


class PageReader(object):
    """Reads a partition's pages one step ahead in a background thread, so the source's
    read time overlaps the sending instead of leaving the cluster idle between pages."""

    def __init__(self, read, after, after_seq, depth=2):
        self._read = read
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(after, after_seq), name="replay-reader", daemon=True)
        self._thread.start()

    def _loop(self, after, after_seq):
        while not self._stop.is_set():
            try:
                page = self._read(after, after_seq)
            except Exception as exc:  # handed to the consumer, which reports it
                self._put(exc)
                return
            self._put(page)
            if not page:
                return
            after, after_seq = page[-1].position, page[-1].seq

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def next_page(self):
        """The next page in order ([] at the end); re-raises a read error."""
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
