"""Live traffic that flows throughout a scenario: the lab's ``live`` tool in a background thread,
mirrored to the reference lab and archived into the history the scenario replays from."""

from __future__ import annotations

import io
import threading

from ceptra_lab import traffic

from .labs import BUNDLE


class LiveTraffic(object):
    """Send ``rate`` events/s to ``pair.lab`` (mirrored to ``pair.reference``, archived into
    ``archive``, ``sqlite:PATH`` or a PostgreSQL DSN) until ``stop()``. ``annotate`` is the share
    of events the secondary system annotated (``secondary_classification``)."""

    def __init__(self, pair, archive, rate=200.0, annotate=1.0, bundle=BUNDLE, prefix="live", table="ceptra_history"):
        self.pair = pair
        self.archive = archive
        self.rate = rate
        self.annotate = annotate
        self.bundle = bundle
        self.prefix = prefix
        self.table = table
        self.totals = None
        self.error = None
        self.output = io.StringIO()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-traffic", daemon=True)

    def _run(self):
        try:
            self.totals = traffic.live(
                self.pair.lab.url, self.pair.lab.tokens["operator"], self.rate, 24 * 3600.0, bundle=self.bundle,
                partitions=self.pair.partitions, prefix=self.prefix, out=self.output, archive=self.archive,
                archive_table=self.table, mirror_url=self.pair.reference.url,
                mirror_token=self.pair.reference.tokens["operator"], classification_ratio=self.annotate,
                stop=self._stop)
        except Exception as exc:  # reported by stop(); pylint: disable=broad-except
            self.error = exc

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout=30.0):
        """Stop sending; returns the totals (sent, healthy, refused, archived, mirrored ...)."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "live traffic did not stop"
        assert self.error is None, "live traffic failed: %s" % self.error
        return self.totals

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(30.0)
