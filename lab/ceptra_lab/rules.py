"""Rules of a bundle's ``classify.cel`` phases: CEL evaluation, metric bindings, derived events,
and the test sink that counts what reaches a downstream system (spec §9, contract section 3).

CEL comes from the ``common-expression-language`` package (Python bindings of the cel-rust
interpreter); docs/lab.md says why and what it leaves out. A rule is compiled once per bundle
(``build_ruleset``); a rule that uses CEL the lab cannot run (a syntax error, an unknown
function or variable, a binding to a metric its phase does not define) is left out with a
warning naming it, and the bundle is still accepted.

Evaluation (one per applied event and rule, §9 "Evaluation Cadence"): each binding
``NAME["metric"]`` resolves to ONE series (§9 Series Resolution): the lane of the metric's
``by()`` labels taken from the event's labels (the lane binding, or the payload join when the
event fed another metric). Its ``value`` is the query's function over the window of the
query's range that ends at the triggering event's pane boundary (the panes before the event's
pane); ``has_value`` is false, ``value`` 0.0 and ``flags`` ``["NO_DATA"]`` when that window
holds no sample. The other names: ``payload``, ``headers`` {part_id, raft_log_index,
schema_key, event_id, partition_key}, ``partition_key``, ``window_start_ns``/``window_end_ns``
(the rule's longest window ending at that boundary), ``watermark_ns``, ``processing_time_ns``
(the entry's commit time: no wall clock), ``rule_version`` and ``policy_version``, and the
helpers ``max``, ``min``, ``coalesce``, ``clamp``, ``safe_div``. Everything is a function of
the applied log, so the same ordered events give the same derived events on every partition
and in every replay; results are memoized on exactly the inputs an expression reads.
"""
from __future__ import annotations

import hashlib
import re

import cel

from .aggregates import units_to_float

EVENTS_KEPT_PER_SINK = 1_000_000
_BINDING_REF = re.compile(r'\b([A-Za-z_][A-Za-z0-9_]*)\s*\[\s*"([^"\\]*)"\s*\]')
_IDENTIFIER = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*\Z")
_PAYLOAD_FIELD = re.compile(r'\bpayload\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*"([^"\\]*)"\s*\])')
CONTEXT_NAMES = ("payload", "headers", "partition_key", "window_start_ns", "window_end_ns", "watermark_ns",
                 "processing_time_ns", "rule_version", "policy_version")
CEL_STANDARD_FUNCTIONS = frozenset((
    "size", "has", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn", "duration", "timestamp",
    "matches", "contains", "startsWith", "endsWith", "exists", "all", "exists_one", "map", "filter",
    "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek", "getHours",
    "getMinutes", "getSeconds", "getMilliseconds"))
_MEMO_LIMIT = 65536


def _numeric_result(values, chosen):
    # CEL does not mix int and double in arithmetic: a helper answers double when any input is one
    return float(chosen) if any(isinstance(v, float) for v in values) else chosen


def _max(*values):
    return _numeric_result(values, max(values))


def _min(*values):
    return _numeric_result(values, min(values))


def _coalesce(*values):
    return next((v for v in values if v is not None), None)


def _clamp(value, low, high):
    return _numeric_result((value, low, high), min(max(value, low), high))


def _safe_div(numerator, denominator, default):
    return default if denominator == 0 else numerator / denominator


HELPERS = {"max": _max, "min": _min, "coalesce": _coalesce, "clamp": _clamp, "safe_div": _safe_div}


def derived_event_id(part_id: str, raft_log_index: int, rule_version: int, rule_id: str, channel: str) -> str:
    """§9 ``hash64(part_id, raft_log_index, rule_version, rule_id, channel)``: the first 64 bits of
    BLAKE2b over the fields joined by U+001F, as 16 hex digits (the hash function is assumed)."""
    text = "\x1f".join((str(part_id), str(raft_log_index), str(rule_version), rule_id, channel))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class Ref:
    """One ``binding["metric"]`` a rule reads: the query behind it and how to find its lane."""

    __slots__ = ("binding", "metric", "query", "pane_ns", "range_ns")

    def __init__(self, binding: str, query):
        self.binding, self.metric, self.query = binding, query.metric, query
        self.pane_ns = 0
        self.range_ns = int(query.range_ms) * 1_000_000


class Rule:
    """A compiled rule: its ``when``, its ``emit`` (payload values are CEL, metadata literals)."""

    def __init__(self, phase: str, name: str, when, emit: dict, refs: list[Ref], fields: dict, reads_context):
        self.phase, self.name, self.rule_id = phase, name, f"{phase}/{name}"
        self.when = when
        self.channel = emit["channel"]
        self.schema_key = emit.get("schema_key")
        self.metadata = emit.get("metadata") if isinstance(emit.get("metadata"), dict) else {}
        self.payload = emit.get("_programs", {})
        self.refs = refs
        # payload fields ``when`` and the emit payload read (None: the whole payload is an input)
        self.when_fields, self.emit_fields = fields["when"], fields["emit"]
        self.reads_context = reads_context       # other context names the expressions read
        self.reads_payload = not (self.when_fields == [] and self.emit_fields == [])
        # the binding fields any of its expressions mentions (only those become CEL values)
        self.binding_fields = {name for name in ("has_value", "flags", "labels")
                               if any(name in text for text in emit.get("_sources", ()))}


class RuleSet:
    """The rules of one bundle, evaluated against the active aggregate state (see module doc)."""

    def __init__(self, rules: list[Rule], def_version: int, policy_version: int):
        self.rules = rules
        self.rule_version = def_version
        self.policy_version = policy_version
        self._memo: dict = {}
        self._plans: dict = {}
        # every `when` reads only bindings: its outcome is fixed per pane (see evaluate)
        self._pane_memo = all(rule.when_fields == [] and not rule.reads_context for rule in rules)
        self.evaluations = 0
        self.errors: dict[str, int] = {}

    def evaluate(self, entry: tuple, store, applier) -> None:
        """Run every rule for one applied entry; emit what fires through ``applier.emit``."""
        labels = entry[8]
        ts = entry[5]
        plan_key = (entry[7], tuple(labels.items()) if labels else ())
        planned = self._plans.get(plan_key)
        if planned is None:
            planned = self._plan(labels)
            if len(self._plans) >= _MEMO_LIMIT:
                self._plans.clear()
            self._plans[plan_key] = planned
        signature, plan = planned
        fast_key = None
        if self._pane_memo:
            # inputs read at the pane boundary do not change within a pane unless an older pane
            # or a knob changes (win_epoch): one lookup answers every rule for this event
            fast_key = (signature, ts - ts % store.events.pane_ns, store.win_epoch)
            known = store.rule_memo.get(fast_key)
            if known is not None:
                for rule, values in known:
                    self._fire(rule, values, entry, applier)
                return
        metrics = store.metrics
        memo = self._memo
        payload = None
        fired = []
        for rule, refs in plan:
            values = []
            for metric_name, lane, query, range_ns in refs:
                metric = metrics.get(metric_name)
                if metric is None:
                    values.append((0.0, False, lane))
                    continue
                end = ts - ts % metric.pane_ns
                cached = metric.win_cache.get(lane)
                if cached is not None and cached[0] == end:
                    values.append(cached[1])
                    continue
                result, sums = _window(metric, query, lane, end, range_ns, cached)
                metric.win_cache[lane] = (end, result, sums)
                values.append(result)
            if rule.when_fields is not None and not rule.when_fields and not rule.reads_context:
                inputs = (rule, tuple(values))
            else:
                if payload is None:
                    payload = _event_payload(entry[3])
                inputs = (rule, tuple(values), _payload_key(rule.when_fields, payload),
                          _context_key(rule, entry, applier))
            fires = memo.get(inputs)
            if fires is None:
                fires = self._run_when(rule, values, entry, applier)
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[inputs] = fires
            if fires:
                fired.append((rule, values))
                self._fire(rule, values, entry, applier)
        if fast_key is not None:
            if len(store.rule_memo) >= _MEMO_LIMIT:
                store.rule_memo.clear()
            store.rule_memo[fast_key] = fired

    def _fire(self, rule: Rule, values: list, entry: tuple, applier) -> None:
        if applier.emit is None:
            return
        payload = _event_payload(entry[3])
        emitted = self._run_emit(rule, values, entry, applier, payload)
        if emitted is not None:
            applier.emit(self._derived(rule, emitted, entry, applier.part_id, payload))

    def _plan(self, labels: dict) -> tuple:
        """(signature, plan): per rule, the (metric, lane, query, range) of every binding it reads
        for these labels; events whose labels resolve to the same lanes share the signature."""
        plan = [(rule, [(ref.metric, ref.query.lane_of(labels) if ref.query.by_labels else "", ref.query,
                         ref.range_ns) for ref in rule.refs]) for rule in self.rules]
        signature = tuple(lane for _rule, refs in plan for _metric, lane, _query, _range in refs)
        return signature, plan

    def _run_when(self, rule: Rule, values: list, entry: tuple, applier) -> bool:
        """Evaluate ``when``; a CEL runtime error (missing key, type mismatch) counts, and does not fire."""
        self.evaluations += 1
        try:
            return rule.when.execute(_context(rule, values, entry, applier, self)) is True
        except Exception:
            self.errors[rule.rule_id] = self.errors.get(rule.rule_id, 0) + 1
            return False

    def _run_emit(self, rule: Rule, values: list, entry: tuple, applier, payload: dict) -> dict | None:
        """The emitted payload (memoized on what its expressions read); None on a CEL error."""
        inputs = ("emit", rule, tuple(values), _payload_key(rule.emit_fields, payload), _context_key(rule, entry, applier))
        emitted = self._memo.get(inputs)
        if emitted is not None:
            return emitted
        context = _context(rule, values, entry, applier, self)
        try:
            emitted = {field: program.execute(context) if hasattr(program, "execute") else program
                       for field, program in rule.payload.items()}
        except Exception:
            self.errors[rule.rule_id] = self.errors.get(rule.rule_id, 0) + 1
            return None
        self._memo[inputs] = emitted
        return emitted

    def _derived(self, rule: Rule, payload: dict, entry: tuple, part_id: str, source: dict) -> dict:
        index, _term, _commit, msg, _size, ts, _key, _name, _labels, _value = entry
        derived = {"derived_event_id": derived_event_id(part_id, index, self.rule_version, rule.rule_id, rule.channel),
                   "part_id": part_id, "raft_log_index": index, "rule_id": rule.rule_id,
                   "rule_version": self.rule_version, "channel": rule.channel, "schema_key": rule.schema_key,
                   "flags": ["DERIVED"], "source_event_id": msg.get("event_id"), "ts_ns": ts,
                   "metadata": dict(rule.metadata), "payload": dict(payload)}
        for field in ("external_decision_id", "secondary_classification"):
            if source.get(field) is not None:
                derived[field] = source[field]
        return derived


_SLIDING = frozenset(("count_over_time", "sum_over_time", "increase", "rate", "avg_over_time"))


def _window(metric, query, lane: str, end: int, range_ns: int, cached) -> tuple:
    """((value, has_value, lane), (count, units)) of ``query`` over the lane's panes starting in
    [end - range, end).

    A count/sum function slides from the lane's cached window when that is older: it adds the
    panes that entered and drops those that left. That is exact, because a change to any pane
    before the cached window's end dropped the cache (AggregateStore.apply)."""
    panes = metric.raw.get(lane) or {}
    pane_ns = metric.pane_ns
    sums = None
    if cached is not None and query.function in _SLIDING and cached[2] is not None and cached[0] < end \
            and range_ns % pane_ns == 0 and (end - cached[0]) // pane_ns <= len(panes):
        count, units = cached[2]
        for start in range(cached[0], end, pane_ns):
            state = panes.get(start)
            if state is not None:
                count, units = count + state[0], units + state[1]
        for start in range(cached[0] - range_ns, end - range_ns, pane_ns):
            state = panes.get(start)
            if state is not None:
                count, units = count - state[0], units - state[1]
        sums = (count, units)
    value, has_value, sums = _window_value(panes, query, end - range_ns, end, sums)
    return (value, has_value, lane), sums


def _window_value(panes: dict, query, start: int, end: int, sums) -> tuple:
    """(value, has_value, (count, units)) of ``query``'s function over the panes starting in
    [start, end); ``sums`` given: the window's count and exact sum are already known."""
    function = query.function
    low = high = None
    values: list = []
    if sums is not None:
        count, units = sums
    else:
        count = units = 0
        for pane_start, state in panes.items():
            if start <= pane_start < end and state[0]:
                count += state[0]
                units += state[1]
                if state[2] is not None:
                    low = state[2] if low is None or state[2] < low else low
                    high = state[3] if high is None or state[3] > high else high
                if state[4]:
                    values.extend(state[4])
    sums = (count, units) if function in _SLIDING else None
    if not count:
        return 0.0, False, sums
    if function == "count_over_time":
        value = float(count)
    elif function in ("sum_over_time", "increase"):
        value = units_to_float(units)
    elif function == "rate":
        value = units_to_float(units) / (query.range_ms / 1000.0)
    elif function == "avg_over_time":
        value = units_to_float(units) / count
    elif function == "min_over_time":
        value = low
    elif function == "max_over_time":
        value = high
    else:                                    # quantile_over_time: Prometheus' linear interpolation
        values.sort()
        rank = (query.quantile or 0.0) * (len(values) - 1)
        below = int(rank)
        above = min(below + 1, len(values) - 1)
        value = values[below] + (values[above] - values[below]) * (rank - below) if values else 0.0
    if query.aggregator == "count":
        value = 1.0                          # one series per lane in the lab's model
    return float(value), True, sums


def _event_payload(msg: dict) -> dict:
    payload = msg.get("payload")
    if isinstance(payload, dict):
        return payload
    if isinstance(msg.get("payload_b64"), str):
        import base64
        import json
        try:
            decoded = json.loads(base64.b64decode(msg["payload_b64"]))
            return decoded if isinstance(decoded, dict) else {}
        except ValueError:
            return {}
    return {}


def _payload_key(fields, payload: dict):
    """The part of the event payload an expression reads (None: all of it)."""
    if fields is None:
        import json
        return json.dumps(payload, sort_keys=True, default=str)
    if not fields:
        return None
    return tuple(repr(payload.get(field, _Missing)) for field in fields)


class _Missing:
    pass


def _context_key(rule: Rule, entry: tuple, applier):
    if not rule.reads_context:
        return None
    index, _term, commit_ns, msg, _size, ts, key, *_ = entry
    return (index, commit_ns, key, ts, repr(sorted(applier.store.watermarks().items()))
            if "watermark_ns" in rule.reads_context else None)


def _context(rule: Rule, values: list, entry: tuple, applier, ruleset: RuleSet) -> cel.Context:
    """The CEL variables of one evaluation: the bindings, and only the context names the rule reads
    (turning Python values into CEL values is most of an evaluation's cost)."""
    variables: dict = {}
    fields = rule.binding_fields
    for ref, (value, has_value, lane) in zip(rule.refs, values):
        binding = {"value": value}
        if "has_value" in fields:
            binding["has_value"] = has_value
        if "flags" in fields:
            binding["flags"] = [] if has_value else ["NO_DATA"]
        if "labels" in fields and ref.query.by_labels:
            binding["labels"] = dict(part.split("=", 1) for part in lane.split(",")) if lane else {}
        variables.setdefault(ref.binding, {})[ref.metric] = binding
    names = rule.reads_context
    if names or rule.reads_payload:
        index, _term, commit_ns, msg, _size, ts, key, *_ = entry
        if rule.reads_payload:
            variables["payload"] = _event_payload(msg)
        end = ts - ts % applier.store.events.pane_ns
        available = {
            "partition_key": lambda: key,
            "headers": lambda: {"part_id": applier.part_id, "raft_log_index": index, "partition_key": key,
                                "schema_key": msg.get("schema_key"), "event_id": msg.get("event_id")},
            "window_start_ns": lambda: end - max((ref.range_ns for ref in rule.refs), default=0),
            "window_end_ns": lambda: end,
            "watermark_ns": lambda: min(applier.store.watermarks().values(), default=0),
            "processing_time_ns": lambda: commit_ns,
            "rule_version": lambda: ruleset.rule_version, "policy_version": lambda: ruleset.policy_version}
        for name in names:
            variables[name] = available[name]()
    return cel.Context(variables=variables, functions=HELPERS)


# ---- compiling -----------------------------------------------------------------------------
def build_ruleset(rules: list[dict], queries: list, def_version: int, policy_version: int) -> tuple:
    """Compile a bundle's rules; returns (RuleSet or None, warnings naming unsupported rules).

    ``rules`` are the compiler's rule records {phase, name, when, emit, bindings}; ``queries``
    the bundle's CompiledQuery list (each knows its phase).
    """
    by_phase: dict[str, dict] = {}
    for query in queries:
        by_phase.setdefault(query.phase, {})[query.metric] = query
    compiled, warnings = [], []
    for record in rules:
        rule, problem = _compile_rule(record, by_phase)
        if problem:
            warnings.append(f"rule '{record['name']}' (phase '{record['phase']}') is not evaluated by the lab: "
                            f"{problem}")
        else:
            compiled.append(rule)
    return (RuleSet(compiled, def_version, policy_version) if compiled else None), warnings


def _compile_rule(record: dict, by_phase: dict) -> tuple:
    bindings = {}
    for name, target in (record.get("bindings") or {}).items():
        parts = target.split(".") if isinstance(target, str) else []
        if len(parts) != 3 or parts[0] != "phase" or parts[2] != "metrics":
            return None, f"binding '{name}' is {target!r}; the lab binds only phase.<aggregate phase>.metrics"
        bindings[name] = by_phase.get(parts[1], {})
    emit = dict(record["emit"])
    sources = {"when": record["when"]}
    literals = {}
    for field, value in (emit.get("payload") or {}).items():
        if isinstance(value, str) and not (_IDENTIFIER.match(value) and value.strip() not in bindings
                                           and value.strip() not in CONTEXT_NAMES):
            sources[f"emit.payload.{field}"] = value
        else:      # numbers, booleans, and a bare name the rule context does not know: a literal
            literals[field] = value.strip() if isinstance(value, str) else value
    programs = {}
    for where, text in sources.items():
        try:
            programs[where] = cel.compile(text)
        except Exception as exc:  # the library's parse error names line and column
            return None, f"{where} does not parse as CEL: {str(exc).splitlines()[0]}"
    refs, seen, reads_context = [], set(), set()
    payload_fields: dict = {"when": set(), "emit": set()}
    for where, program in programs.items():
        part = "when" if where == "when" else "emit"
        text = sources[where]
        for function in program.functions():
            if not (function.startswith("_") or function.startswith("@") or function in CEL_STANDARD_FUNCTIONS
                    or function in HELPERS):
                return None, f"{where} calls '{function}', which the lab does not provide"
        for variable in program.variables():
            if variable in bindings:
                continue
            if variable not in CONTEXT_NAMES:
                return None, f"{where} reads '{variable}', which is neither a binding nor a rule context name"
            if variable != "payload":
                reads_context.add(variable)
        for binding, metric in _BINDING_REF.findall(text):
            if binding not in bindings:
                continue
            if metric not in bindings[binding]:
                return None, f"{where} reads {binding}[\"{metric}\"], which its phase does not define"
            if (binding, metric) not in seen:
                seen.add((binding, metric))
                refs.append(Ref(binding, bindings[binding][metric]))
        for name in bindings:
            uses = len(re.findall(r"\b%s\b" % re.escape(name), text))
            if uses != len([b for b, _m in _BINDING_REF.findall(text) if b == name]):
                return None, f"{where} uses binding '{name}' other than as {name}[\"metric\"]"
        fields = [a or b for a, b in _PAYLOAD_FIELD.findall(text)]
        if payload_fields[part] is not None:
            if len(re.findall(r"\bpayload\b", text)) != len(fields):
                payload_fields[part] = None
            else:
                payload_fields[part].update(fields)
    emit["_programs"] = {where.split(".", 2)[2]: program for where, program in programs.items() if where != "when"}
    emit["_programs"].update(literals)
    emit["_sources"] = list(sources.values())
    fields = {part: (sorted(names) if names is not None else None) for part, names in payload_fields.items()}
    rule = Rule(record["phase"], record["name"], programs["when"], emit, refs, fields, sorted(reads_context))
    return rule, None


class DerivedEventSink:
    """A downstream system in test mode: takes every derived event the partitions emit and
    delivers a decision once. A second copy is a duplicate by ``derived_event_id`` (the same
    rule firing for the same log entry again: a replay) or by ``external_decision_id`` (a
    decision a secondary system already delivered, e.g. during an outage); duplicates are
    counted and not delivered."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget everything (POST /v1/test/sink {"reset": true})."""
        self.derived_ids: set = set()
        self.decision_ids: set = set()
        self.counts = {"received": 0, "delivered": 0, "duplicate_derived_event_id": 0,
                       "duplicate_external_decision_id": 0, "external_decisions_registered": 0}

    def deliver(self, derived: dict) -> bool:
        """Offer one derived event; True when it was delivered (not a duplicate)."""
        self.counts["received"] += 1
        if derived["derived_event_id"] in self.derived_ids:
            self.counts["duplicate_derived_event_id"] += 1
            return False
        decision = derived.get("external_decision_id")
        if decision is not None and decision in self.decision_ids:
            self.counts["duplicate_external_decision_id"] += 1
            self.derived_ids.add(derived["derived_event_id"])
            return False
        if len(self.derived_ids) < EVENTS_KEPT_PER_SINK:
            self.derived_ids.add(derived["derived_event_id"])
        if decision is not None:
            self.decision_ids.add(decision)
        self.counts["delivered"] += 1
        return True

    def register_decisions(self, decision_ids: list[str]) -> None:
        """Decisions the secondary system delivered itself (they count as delivered already)."""
        for decision in decision_ids:
            if decision not in self.decision_ids:
                self.decision_ids.add(decision)
                self.counts["external_decisions_registered"] += 1

    def document(self) -> dict:
        """The sink's counters."""
        return dict(self.counts)
