"""The restart path of a partition: its log as the state dir keeps it (WAL entries and control
records) re-applied with every mark, checkpoint and WAL replay job's rebuild at its position.
``LogRestore`` is a part of ``Partition`` (partition.py inherits it) kept in its own file."""
from __future__ import annotations

from .applier import Mark
from .messages import MalformedEvent, event_size, parse_event


class LogRestore:
    """Persistence hooks of a Partition: ``wal_entries`` out, ``restore`` in."""

    def wal_entries(self, start_index: int = 1) -> list[dict]:
        """JSON-able WAL entries with index >= start_index still held in memory."""
        first = max(0, start_index - self._wal_first_index)
        return [{"index": e[0], "term": e[1], "commit_ns": e[2], "msg": e[3], "size": e[4]}
                for e in self._wal[first:]]

    def restore(self, entries: list[dict], manifest: dict | None = None, controls: list[dict] | None = None) -> None:
        """Rebuild the partition from persisted WAL entries and control records (the log as the
        state dir keeps it; optionally a saved manifest).

        Entries keep their index, term and commit time (a gap in the indexes is closed up);
        dedup and replay sessions are rebuilt from them. ``controls`` are the marks (``config``
        with a ``value`` KnobView, ``shadow`` / ``activate`` with a ``value`` bundle), the
        checkpoints (``checkpoint``) and the WAL replay jobs' rebuilds (``rebuild`` with
        ``from``), each at its ``after`` index: re-applying the log with them at their positions
        recomputes the state that was there, whatever the config and clock are now. Entries
        that no longer parse are skipped.
        """
        manifest = manifest or {}
        controls = controls or []
        term = max([int(e.get("term", 1)) for e in entries] + [int(manifest.get("term", 1) or 1), 1])
        log_control, self.log_control = self.log_control, None
        self._reset(term=term, warmup=bool(manifest.get("warmup", False)))
        now = self.now_ns()
        for entry in sorted(entries, key=lambda e: e["index"]):
            try:
                event_id, ts, key, name, labels, value, _replay, session, seq = parse_event(entry["msg"], self.part_id)
            except MalformedEvent:
                continue
            index, commit_ns = int(entry["index"]), int(entry.get("commit_ns", now))
            if not self._wal:
                self._wal_first_index = index
            elif index <= self.commit_index:
                continue                        # the same entry stored twice
            else:
                index = self.commit_index + 1   # positions must stay contiguous; a gap is closed
            self.commit_index = index
            self.last_commit_ns = commit_ns
            size = int(entry.get("size") or event_size(entry["msg"]))
            self._wal.append((index, int(entry.get("term", term)), commit_ns, entry["msg"], size, ts, key,
                              name, labels, value))
            self._queued_bytes += size
            self._dedup.pop(event_id, None)
            self._dedup[event_id] = (index, int(entry.get("term", term)), commit_ns)
            if session is not None:
                self.replay_sessions[session] = max(seq, self.replay_sessions.get(session, -1))
        for session, info in (manifest.get("replay_sessions") or {}).items():
            last_seq = int(info.get("last_seq", -1))
            self.replay_sessions[session] = max(last_seq, self.replay_sessions.get(session, -1))
        if self._wal:
            self.applied_index = self._wal_first_index - 1
            self.applier.index = self.applied_index
        self._restore_marks(controls)
        self.log_control = log_control
        self._refresh_config(force=True)
        self._config_generation = self.config.generation

    def _restore_marks(self, controls: list[dict]) -> None:
        """Re-apply the restored WAL with its marks, checkpoints and rebuilds in log order."""
        self.auto_checkpoint, auto = False, self.auto_checkpoint
        for control in controls:
            if control["ctl"] in ("config", "shadow", "activate"):
                self._mark_seq += 1
                self._marks.append(Mark(self._mark_seq, int(control["after"]), control["ctl"], control.get("value")))
                if control["ctl"] == "shadow":
                    self.shadow_bundle = control.get("value")
                elif control["ctl"] == "activate":
                    self.active_bundle = control.get("value")
                    self.shadow_bundle = None if self.shadow_bundle is self.active_bundle else self.shadow_bundle
        self._marks.sort(key=lambda m: (m.after_index, m.seq))
        pinned = {int(c["from"]) for c in controls if c["ctl"] == "rebuild"}
        kept: dict[int, dict] = {}
        for control in sorted((c for c in controls if c["ctl"] in ("checkpoint", "rebuild")),
                              key=lambda c: int(c["after"])):
            position = min(int(control["after"]), self.commit_index)
            if position > self.applied_index:
                self.apply_pending(position - self.applied_index)
            if control["ctl"] == "checkpoint":
                self.checkpoint()
                if self.applied_index in pinned:
                    kept[self.applied_index] = self._checkpoints[-1]
            else:
                start = kept.get(int(control["from"]))
                rebuilt = self._from_checkpoint(start, control.get("value"))
                rebuilt.advance(self._wal, self._wal_first_index, self.applied_index, self._marks)
                rebuilt.pinned_shadow = None
                self.applier = rebuilt
        self.apply_pending()
        self.auto_checkpoint = auto
