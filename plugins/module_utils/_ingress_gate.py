# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: partition ingress gates (open / warmup; not a public API).
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): a partition's ingress gate.

The gate is the per-partition knob ``partitions.<p>.ingress_gate`` (``open`` | ``warmup``,
contract section 3): while it is ``warmup`` live appends are answered ``TRANSIENT_WARMUP``
and REPLAY appends land. A wiped partition starts with it forced to ``warmup``. Opening is
a plain config change (not an override: the recovered partition stays open afterwards),
written by one read-modify-write under ``If-Match`` (``_config_manager.run_transaction``).

``GateKeeper.close`` holds partitions in warmup; ``GateKeeper.open`` opens the partitions
whose readiness allows it (no reason but ``warmup``: lags within the readiness thresholds,
no fence), unless the operator's hold file exists; with a timeout it waits for them
(``_wait.poll_until``) and fails naming the partitions still closed and why.
"""

from __future__ import annotations

import copy
import os
import time

from ansible_collections.ceptra.backfill.plugins.module_utils import _partitions
from ansible_collections.ceptra.backfill.plugins.module_utils._audit import write_record
from ansible_collections.ceptra.backfill.plugins.module_utils._config_manager import Plan, read_config, run_transaction
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._readiness import fetch_readiness
from ansible_collections.ceptra.backfill.plugins.module_utils._wait import poll_until

GATE_KEY = "ingress_gate"
AUDIT_KIND = "ingress_gate"
# Readiness reasons that are the gate itself, not a reason to keep it closed.
GATE_REASONS = ("warmup",)


class IngressGateError(CeptraError):
    """A gate that could not be set or did not clear in time (the message names the partitions)."""


def gates_of(state):
    """``{part_id: "open" | "warmup"}`` from a ``/v1/state`` document."""
    out = {}
    for part_id, manifest in _partitions.sorted_items((state or {}).get("partitions")):
        gate = manifest.get(GATE_KEY) or ("warmup" if manifest.get("warmup") else "open")
        out[part_id] = gate
    return out


def blocking_reasons(readiness, part_id):
    """Why ``part_id`` may not open yet: its readiness reasons other than the gate's own."""
    entry = readiness.get("partitions", {}).get(part_id)
    if entry is None:
        return ["not reported by /readyz"]
    return [reason for reason in entry["reasons"] if reason not in GATE_REASONS]


def _with_gates(config, part_ids, gate):
    new = copy.deepcopy(config)
    parts = new.setdefault("partitions", {})
    for part_id in part_ids:
        entry = parts.get(part_id)
        parts[part_id] = dict(entry) if isinstance(entry, dict) else {}
        parts[part_id][GATE_KEY] = gate
    return new


class GateKeeper(object):
    """Open and close ingress gates through a client; ``check_mode`` sends nothing."""

    def __init__(self, client, check_mode=False, run_id=None, clock=time.time, sleep=time.sleep,
                 monotonic=time.monotonic):
        self.client = client
        self.monotonic = monotonic
        self.check_mode = check_mode
        self.run_id = run_id
        self.clock = clock
        self.sleep = sleep
        self.warnings = []

    def _set(self, part_ids, gate, why):
        """One If-Match transaction setting ``part_ids``' gate; returns the config version after it."""
        if not part_ids:
            return None

        def build(config, version):
            touched = ["partitions.%s.%s" % (p, GATE_KEY) for p in part_ids]
            return Plan(config, _with_gates(config, part_ids, gate), touched, "ingress_gate_" + gate)

        plan, response = run_transaction(self.client, build, check_mode=self.check_mode)
        if self.check_mode or not plan.changed:
            return plan.version
        try:
            write_record(self.client, AUDIT_KIND, {"action": gate, "part_ids": list(part_ids), "why": why,
                                                   "run_id": self.run_id, "config_version": (response or {}).get("version")})
        except CeptraError as err:
            self.warnings.append("gate %s on %s: the audit record was not written: %s"
                                 % (gate, ", ".join(part_ids), err.message))
        return (response or {}).get("version")

    def close(self, part_ids):
        """Hold ``part_ids`` in warmup; returns ``{changed, closed, gates}``."""
        gates = gates_of(self.client.get_json("state"))
        self._known(part_ids, gates)
        closing = [p for p in part_ids if gates[p] != "warmup"]
        version = self._set(closing, "warmup", "hold ingress in warmup while history is replayed")
        return {"changed": bool(closing), "closed": closing, "config_version": version,
                "gates": dict(gates, **{p: "warmup" for p in closing})}

    def _known(self, part_ids, gates):
        unknown = [p for p in part_ids if p not in gates]
        if unknown:
            raise IngressGateError("ingress gate: unknown partition(s) %s; this cluster has %s"
                                   % (", ".join(unknown), ", ".join(gates)))

    def look(self, part_ids, hold_file=None, when_ready=True):
        """``{gates, openable, blocked: {p: reasons}, held}`` for the closed partitions of ``part_ids``."""
        gates = gates_of(self.client.get_json("state"))
        self._known(part_ids, gates)
        closed = [p for p in part_ids if gates[p] != "open"]
        readiness = fetch_readiness(self.client) if closed and when_ready else {"partitions": {}}
        blocked = {p: blocking_reasons(readiness, p) for p in closed} if when_ready else {}
        blocked = {p: why for p, why in blocked.items() if why}
        held = bool(hold_file) and os.path.exists(hold_file)
        openable = [] if held else [p for p in closed if p not in blocked]
        return {"gates": gates, "closed": closed, "openable": openable, "blocked": blocked, "held": held}

    def open(self, part_ids, hold_file=None, when_ready=True, timeout=0.0, interval=1.0, create_hold=False):
        """Open every partition of ``part_ids`` that may open now; with ``timeout`` keep opening
        the others as they clear until all are open, else fail naming the rest and why.
        ``create_hold`` creates ``hold_file`` first when a gate is still closed (the hold point's
        arrival: the operator removes the file to let the gates open).

        Returns ``{changed, opened: [{part_id, at}], open, closed, blocked, held}``."""
        opened = []
        state = {}
        if create_hold and hold_file and not self.check_mode and not os.path.exists(hold_file):
            if any(gate != "open" for part_id, gate in read_gates(self.client).items() if part_id in part_ids):
                with open(hold_file, "a"):
                    pass

        def step():
            view = self.look(part_ids, hold_file, when_ready)
            if view["openable"]:
                self._set(view["openable"], "open", "readiness allows it (no reason but warmup)")
                now = self.clock()
                opened.extend({"part_id": p, "at": now} for p in view["openable"])
                view["closed"] = [p for p in view["closed"] if p not in view["openable"]]
                if self.check_mode:     # nothing was opened: do not wait for it
                    view["closed"] = []
            state.update(view)
            return not view["closed"]

        done = step()
        if not done and timeout and timeout > 0:
            done = poll_until(lambda: (step(), state), timeout, interval, first=(False, state), sleep=self.sleep,
                              clock=self.monotonic).done
        result = {"changed": bool(opened), "opened": opened, "closed": state["closed"],
                  "open": [p for p in part_ids if p not in state["closed"]],
                  "blocked": {p: why for p, why in state["blocked"].items() if p in state["closed"]},
                  "held": state["held"] and bool(state["closed"])}
        if not done and timeout and timeout > 0:
            raise IngressGateError(self.describe_closed(result, timeout), **result)
        return result

    @staticmethod
    def describe_closed(result, timeout):
        """Why gates are still closed after ``timeout`` s: the gate, the partitions, the next step."""
        why = []
        for part_id in result["closed"]:
            reasons = result["blocked"].get(part_id)
            if reasons:
                cause = ", ".join(reasons)
            else:
                cause = "held by the operator's hold file" if result["held"] else "closed"
            why.append("partition %s: %s" % (part_id, cause))
        return ("Gate: ingress open: partition(s) %s still in warmup after %gs (%s); the gate stays closed, so live "
                "clients keep getting TRANSIENT_WARMUP there. Clear the cause (lags, fence) or remove the hold file, "
                "then rerun the scenario to resume" % (", ".join(result["closed"]), timeout, "; ".join(why)))


def read_gates(client):
    """``{part_id: gate}`` now (for the plan and the checklist)."""
    return gates_of(client.get_json("state"))


def configured_gate(client, part_id):
    """The gate the config holds for ``part_id`` (None when the config leaves it out)."""
    config, _version = read_config(client)
    entry = (config.get("partitions") or {}).get(part_id)
    return entry.get(GATE_KEY) if isinstance(entry, dict) else None
