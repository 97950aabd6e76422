"""Definition bundles for the lab: parse (YAML or JSON), validate, compile, project lanes.

Pure functions, no I/O. A bundle has a `bundle` header (name, def_version, optional
policy_version, lane_domains) and a `workflow` with phases of four types: source.kafka,
aggregate.promql (PromQL queries, see promql.py), classify.cel (CEL rules, see rules.py)
and sink.checkpoint. Every problem found becomes one violation
{"path", "message"}; compile_bundle raises BundleError with all of them at once (the
server answers 422). The YAML loader and its syntax diagnostics live in bundle_yaml.py;
docs/lab-definitions.md describes the rules and diagnostics.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

import yaml

from .bundle_yaml import load_yaml, mistyped_domain_note, mistyped_lane_domain, yaml_violations
from .lanes import (  # noqa: F401  (lane_budget_* are this module's public API too)
    LANE_MAX_PER_PARTITION,
    LANE_WARN_PER_PARTITION,
    _lane_product,
    lane_budget_violations,
    lane_budget_warnings,
    normalise_lane_overrides,
    project_lanes,
)
from .promql import PromQLError, compile_matcher_regex, parse_duration_ms, parse_expression
from .rules import build_ruleset
PHASE_TYPES = ("source.kafka", "aggregate.promql", "classify.cel", "sink.checkpoint")
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class BundleError(Exception):
    """A bundle that cannot be used; .violations is a list of {"path", "message"}."""

    def __init__(self, violations: list[dict]):
        self.violations = list(violations)
        summary = "; ".join(f"{v['path']}: {v['message']}" for v in self.violations[:5])
        more = len(self.violations) - 5
        super().__init__(f"invalid bundle: {summary}" + (f" (and {more} more)" if more > 0 else ""))


# ------------------------------------------------------------------------------ parsing
def parse_bundle(body: bytes | str) -> dict:
    """Parse a bundle body (JSON when it starts with '{', else YAML) into a dict.

    Raises BundleError with a violation that names the line, the column and, for the
    usual YAML traps, what to change.
    """
    if isinstance(body, (bytes, bytearray)):
        if len(body) > MAX_BUNDLE_BYTES:
            raise BundleError([_v("body", f"bundle is {len(body)} bytes; the limit is {MAX_BUNDLE_BYTES}")])
        try:
            text = bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise BundleError([_v("body", f"bundle is not UTF-8 text (byte {exc.start})")]) from None
    elif isinstance(body, str):
        text = body
    else:
        raise BundleError([_v("body", f"bundle body must be text, got {type(body).__name__}")])
    if len(text) > MAX_BUNDLE_BYTES:
        raise BundleError([_v("body", f"bundle is {len(text)} characters; the limit is {MAX_BUNDLE_BYTES}")])
    if not text.strip():
        raise BundleError([_v("body", "bundle is empty; send a YAML or JSON document with 'bundle' and 'workflow'")])
    if text.lstrip().startswith("{"):
        data = _parse_json(text)
    else:
        data = _parse_yaml(text)
    if not isinstance(data, dict):
        raise BundleError([_v("body", "bundle must be a mapping with 'bundle' and 'workflow' keys, "
                                      f"got {_type_name(data)}")])
    return data


def _parse_json(text: str):
    def no_duplicates(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate key {key!r}")
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise BundleError([_v("body", f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}")]) from None
    except (ValueError, RecursionError) as exc:
        raise BundleError([_v("body", f"JSON error: {exc}")]) from None


def _parse_yaml(text: str):
    try:
        return load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        raise BundleError(yaml_violations(text, exc)) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise BundleError([_v("body", f"YAML error: {exc}")]) from None


# ------------------------------------------------------------------------------ compiled forms
@dataclass
class CompiledQuery:
    """One aggregate.promql query, ready to match events and assign lanes."""

    phase: str
    metric: str                      # the query name
    aggregator: str | None
    function: str
    quantile: float | None
    source_metric: str
    matchers: list[tuple[str, str, str]]
    by_labels: tuple[str, ...]
    range_ms: int
    upgrade: bool
    projected_lanes: int
    expression: str = ""
    _tests: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self):
        # compile regexes once; matches() runs for every event
        self._tests = [(label, op, value, compile_matcher_regex(value) if op in ("=~", "!~") else None)
                       for label, op, value in self.matchers]

    def matches(self, name: str, labels: dict) -> bool:
        """True when an event sample (metric name, labels) is selected by this query."""
        if name != self.source_metric:
            return False
        for label, op, value, regex in self._tests:
            actual = name if label == "__name__" else _label_text(labels.get(label, ""))
            if op == "=":
                ok = actual == value
            elif op == "!=":
                ok = actual != value
            elif op == "=~":
                ok = regex.fullmatch(actual) is not None
            else:
                ok = regex.fullmatch(actual) is None
            if not ok:
                return False
        return True

    def lane_of(self, labels: dict) -> str:
        """The lane key: "" without by(); else "label=value,..." in by() order."""
        if not self.by_labels:
            return ""
        return ",".join(f"{label}={_label_text(labels.get(label, ''))}" for label in self.by_labels)

    def compiled_summary(self) -> dict:
        """One element of validation_report()["compiled_queries"]."""
        return {"phase": self.phase, "metric": self.metric, "aggregator": self.aggregator,
                "labels": list(self.by_labels), "range_ms": self.range_ms,
                "function": self.function, "quantile": self.quantile,
                "source_metric": self.source_metric, "matchers": [list(m) for m in self.matchers],
                "upgrade": self.upgrade}


class CompiledBundle:
    """A validated bundle: queries, lane bounds, warnings and its content-derived id."""

    def __init__(self, *, name: str, def_version: int, policy_version: int, bundle_id: str,
                 queries: list[CompiledQuery], lane_domains: dict[str, int],
                 lane_overrides: dict[str, int], warnings: list[str], source: dict,
                 phases: list[dict], rules: list[dict]):
        self.name = name
        self.def_version = def_version
        self.policy_version = policy_version
        self.bundle_id = bundle_id
        self.queries = queries
        self.lane_domains = lane_domains          # as declared by the bundle
        self.lane_overrides = lane_overrides      # config overrides applied to projections
        self.warnings = warnings
        self.source = source                      # the parsed bundle document
        self.phases = phases                      # [{"name", "type"}] in order
        self.rules = rules                        # classify.cel rule records
        # compiled CEL rules (rules.py); a rule the lab cannot run is a warning naming it
        self.ruleset, rule_warnings = build_ruleset(rules, queries, def_version, policy_version)
        self.warnings.extend(rule_warnings)
        self.needs_replay = any(not query.upgrade for query in queries)
        # source metric name -> queries reading it, so an event is matched against few queries
        self.queries_by_source_metric: dict[str, list[CompiledQuery]] = {}
        for query in queries:
            self.queries_by_source_metric.setdefault(query.source_metric, []).append(query)

    @property
    def effective_lane_domains(self) -> dict[str, int]:
        """Lane bounds after config overrides."""
        return {**self.lane_domains, **self.lane_overrides}

    def query(self, metric: str) -> CompiledQuery | None:
        """The query named `metric`, or None."""
        for candidate in self.queries:
            if candidate.metric == metric:
                return candidate
        return None

    def validation_report(self) -> dict:
        """The POST /v1/definitions/validate response body."""
        projections = [{"metric": q.metric, "labels": list(q.by_labels),
                        "projected_lanes": q.projected_lanes, "status": lane_status(q.projected_lanes)}
                       for q in self.queries]
        return {
            "bundle_id": self.bundle_id,
            "bundle_name": self.name,
            "def_version": self.def_version,
            "policy_version": self.policy_version,
            "compiled_queries": [q.compiled_summary() for q in self.queries],
            "lane_report": {"projections": projections,
                            "total_projected_lanes": sum(q.projected_lanes for q in self.queries),
                            "lane_max_per_partition": LANE_MAX_PER_PARTITION},
            "needs_replay": self.needs_replay,
            "warnings": list(self.warnings),
        }


def lane_status(projected: int) -> str:
    """ok | warning (>= 48) | rejected (> 64)."""
    if projected > LANE_MAX_PER_PARTITION:
        return "rejected"
    if projected >= LANE_WARN_PER_PARTITION:
        return "warning"
    return "ok"


def bundle_id_of(bundle: dict) -> str:
    """name@<12 hex of sha256 over canonical JSON>: identical content, identical id."""
    canonical = json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    header = bundle.get("bundle") if isinstance(bundle.get("bundle"), dict) else {}
    return f"{header.get('name', 'bundle')}@{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:12]}"


# ------------------------------------------------------------------------------ compiling
def compile_bundle(bundle: dict, lane_overrides: dict | None = None) -> CompiledBundle:
    """Validate a parsed bundle and compile its queries.

    `lane_overrides` ({label: {max_per_partition: N}}, the config's `lane_domains`)
    replace the bundle's bounds for lane projections. Raises BundleError listing every
    violation; warnings (projections >= 48 lanes, unused lane domains) go to .warnings.
    """
    if not isinstance(bundle, dict):
        raise BundleError([_v("body", f"bundle must be a mapping, got {_type_name(bundle)}")])
    return _Compiler(bundle, lane_overrides).run()


class _Compiler:
    def __init__(self, bundle: dict, lane_overrides):
        self.bundle = bundle
        self.violations: list[dict] = []
        self.warnings: list[str] = []
        self.overrides, override_violations = normalise_lane_overrides(lane_overrides)
        self.violations.extend(override_violations)
        self.domains: dict[str, int] = {}
        self.mistyped_domains: dict[str, str] = {}   # label -> the broken key it hides in
        self.queries: list[CompiledQuery] = []
        self.query_phase: dict[str, str] = {}
        self.phases: list[dict] = []
        self.rules: list[dict] = []
        self.consumed: list[tuple[str, str, str]] = []  # channels sources read: (channel, phase, path)

    def bad(self, path: str, message: str) -> None:
        self.violations.append(_v(path, message))

    def run(self) -> CompiledBundle:
        header = self.bundle.get("bundle")
        name, def_version, policy_version = "", 0, 0
        if not isinstance(header, dict):
            self.bad("bundle", "missing 'bundle' section (name, def_version, lane_domains)"
                     if header is None else f"must be a mapping, got {_type_name(header)}")
        else:
            name, def_version, policy_version = self.check_header(header)
        workflow = self.bundle.get("workflow")
        if not isinstance(workflow, dict):
            self.bad("workflow", "missing 'workflow' section with 'phases'"
                     if workflow is None else f"must be a mapping, got {_type_name(workflow)}")
        else:
            self.check_workflow(workflow)
        used = {label for query in self.queries for label in query.by_labels}
        for label in self.domains:
            if label not in used:
                self.warnings.append(f"lane domain '{label}' is declared but no query groups by it")
        if self.violations:
            raise BundleError(self.violations)
        return CompiledBundle(
            name=name, def_version=def_version, policy_version=policy_version,
            bundle_id=bundle_id_of(self.bundle), queries=self.queries, lane_domains=dict(self.domains),
            lane_overrides=dict(self.overrides), warnings=self.warnings, source=self.bundle,
            phases=self.phases, rules=self.rules)

    # -- bundle header ---------------------------------------------------------------------
    def check_header(self, header: dict) -> tuple[str, int, int]:
        name = header.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            self.bad("bundle.name", "required: a name of letters, digits, '_', '.' or '-'"
                     if name is None else f"must be letters, digits, '_', '.' or '-', got {name!r}")
            name = ""
        def_version = header.get("def_version")
        if not _is_positive_int(def_version):
            self.bad("bundle.def_version", "required: a positive integer"
                     if def_version is None else f"must be a positive integer, got {def_version!r}")
            def_version = 0
        policy_version = header.get("policy_version", def_version)
        if "policy_version" in header and not _is_positive_int(policy_version):
            self.bad("bundle.policy_version", f"must be a positive integer, got {policy_version!r}")
            policy_version = 0
        domains = header.get("lane_domains", {})
        if domains is None:
            domains = {}
        if not isinstance(domains, dict):
            self.bad("bundle.lane_domains", f"must be a mapping of label -> {{max_per_partition: N}}, "
                                            f"got {_type_name(domains)}")
            return name, def_version, policy_version
        for key, spec in domains.items():
            path = f"bundle.lane_domains.{key}"
            key_text = str(key)
            mistyped = mistyped_lane_domain(key_text, spec)
            if mistyped is not None:
                label, message = mistyped
                self.mistyped_domains[label] = key_text
                self.bad(path, message)
                continue
            if not _IDENT_RE.match(key_text):
                self.bad(path, "a lane domain key must be a label name (letters, digits, '_')")
                continue
            bound = spec.get("max_per_partition") if isinstance(spec, dict) else None
            if not _is_positive_int(bound):
                self.bad(f"{path}.max_per_partition", f"must be a positive integer, got {bound!r} "
                                                      f"(write '{key_text}: {{ max_per_partition: N }}')")
                continue
            self.domains[key_text] = bound
        return name, def_version, policy_version

    # -- workflow --------------------------------------------------------------------------
    def check_workflow(self, workflow: dict) -> None:
        phases = workflow.get("phases")
        if not isinstance(phases, list) or not phases:
            self.bad("workflow.phases", "required: a non-empty list of phases"
                     if phases is None else f"must be a non-empty list, got {_type_name(phases)}")
            return
        names: dict[str, int] = {}
        deferred = []  # checks that need every phase name first
        for index, phase in enumerate(phases):
            path = f"workflow.phases[{index}]"
            if not isinstance(phase, dict):
                self.bad(path, f"must be a mapping with name, type, options, got {_type_name(phase)}")
                continue
            name, kind = phase.get("name"), phase.get("type")
            if not isinstance(name, str) or not name:
                self.bad(f"{path}.name", "required: a non-empty string")
                name = f"#{index}"
            elif name in names:
                self.bad(f"{path}.name", f"duplicate phase name '{name}' (also phase {names[name]})")
            names.setdefault(name, index)
            if kind not in PHASE_TYPES:
                self.bad(f"{path}.type", f"unsupported phase type {kind!r}; supported: {', '.join(PHASE_TYPES)}")
                continue
            self.phases.append({"name": name, "type": kind})
            options = phase.get("options", {})
            if not isinstance(options, dict):
                self.bad(f"{path}.options", f"must be a mapping, got {_type_name(options)}")
                continue
            if kind == "source.kafka":
                self.check_source(path, name, options)
            elif kind == "aggregate.promql":
                self.check_aggregate(path, name, options)
            elif kind == "classify.cel":
                deferred.append((self.check_classify, path, name, options))
            else:
                deferred.append((self.check_sink, path, name, options))
        for check, path, name, options in deferred:
            check(path, name, options, names)

    def check_source(self, path: str, name: str, options: dict) -> None:
        named = False
        for key in ("connector", "channel", "topic"):
            value = options.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                self.bad(f"{path}.options.{key}", f"must be a non-empty string, got {value!r}")
                continue
            named = True
            if key != "connector":
                self.consumed.append((value, name, f"{path}.options.{key}"))
        topics = options.get("topics")
        if topics is not None:
            if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
                self.bad(f"{path}.options.topics", "must be a list of non-empty strings")
            else:
                named = named or bool(topics)
                self.consumed.extend((t, name, f"{path}.options.topics") for t in topics)
        if not named:
            self.bad(f"{path}.options", "a source.kafka phase needs 'connector', 'channel' or 'topic'")

    def check_aggregate(self, path: str, phase: str, options: dict) -> None:
        self.check_duration(f"{path}.options.window", options.get("window"), required=True)
        queries = options.get("queries")
        if not isinstance(queries, dict) or not queries:
            self.bad(f"{path}.options.queries", "required: a mapping of query name -> {expression}"
                     if queries is None else f"must be a non-empty mapping, got {_type_name(queries)}")
            return
        for metric, spec in queries.items():
            qpath = f"{path}.options.queries.{metric}"
            metric = str(metric)
            if not _IDENT_RE.match(metric):
                self.bad(qpath, "a query name must be letters, digits and '_' (it becomes the metric name)")
                continue
            if metric in self.query_phase:
                self.bad(qpath, f"duplicate query name '{metric}' (also in phase '{self.query_phase[metric]}'); "
                                "query names are metric names and must be unique in the bundle")
                continue
            self.query_phase[metric] = phase
            if not isinstance(spec, dict):
                self.bad(qpath, f"must be a mapping with 'expression', got {_type_name(spec)}")
                continue
            self.compile_query(qpath, phase, metric, spec)

    def compile_query(self, qpath: str, phase: str, metric: str, spec: dict) -> None:
        expression = spec.get("expression")
        upgrade = spec.get("upgrade", True)
        if not isinstance(upgrade, bool):
            self.bad(f"{qpath}.upgrade", f"must be true or false, got {upgrade!r}")
        if not isinstance(expression, str) or not expression.strip():
            self.bad(f"{qpath}.expression", "required: a PromQL expression string")
            return
        try:
            parsed = parse_expression(expression)
        except PromQLError as exc:
            self.bad(f"{qpath}.expression", f"unsupported PromQL {exc}")
            return
        missing = False
        for label in parsed.by_labels:
            if label not in self.domains:
                missing = True
                note = ""
                if label in self.mistyped_domains:
                    note = mistyped_domain_note(self.mistyped_domains[label])
                self.bad(f"{qpath}.expression", f"missing lane domain for label '{label}'; declare it "
                                                f"under bundle.lane_domains{note}")
        bounds = {**self.domains, **self.overrides}
        lanes = project_lanes(parsed.by_labels, bounds)
        if not missing and lanes > LANE_MAX_PER_PARTITION:
            self.bad(f"{qpath}.expression",
                     f"query '{metric}' projects {lanes} lanes per partition "
                     f"({_lane_product(parsed.by_labels, bounds)}), above LANE_MAX_PER_PARTITION "
                     f"{LANE_MAX_PER_PARTITION}; group by fewer labels or lower their max_per_partition")
        elif not missing and lanes >= LANE_WARN_PER_PARTITION:
            self.warnings.append(f"query '{metric}' projects {lanes} lanes per partition "
                                 f"({_lane_product(parsed.by_labels, bounds)}), at or above the warning "
                                 f"level {LANE_WARN_PER_PARTITION} (limit {LANE_MAX_PER_PARTITION})")
        self.queries.append(CompiledQuery(
            phase=phase, metric=metric, aggregator=parsed.aggregator, function=parsed.function,
            quantile=parsed.quantile, source_metric=parsed.metric, matchers=list(parsed.matchers),
            by_labels=parsed.by_labels, range_ms=parsed.range_ms, upgrade=upgrade is not False,
            projected_lanes=lanes, expression=expression))

    def check_classify(self, path: str, phase: str, options: dict, phase_names: dict) -> None:
        bindings = options.get("bindings", {})
        if not isinstance(bindings, dict):
            self.bad(f"{path}.options.bindings", f"must be a mapping, got {_type_name(bindings)}")
        else:
            for key, ref in bindings.items():
                if isinstance(ref, str) and ref.startswith("phase."):
                    target = ref.split(".")[1]
                    if target not in phase_names:
                        self.bad(f"{path}.options.bindings.{key}", f"refers to unknown phase '{target}'")
        rules = options.get("rules")
        if not isinstance(rules, list) or not rules:
            self.bad(f"{path}.options.rules", "required: a non-empty list of rules (name, when, emit.channel)"
                     if rules is None else f"must be a non-empty list, got {_type_name(rules)}")
            return
        seen = set()
        for index, rule in enumerate(rules):
            rpath = f"{path}.options.rules[{index}]"
            if not isinstance(rule, dict):
                self.bad(rpath, f"must be a mapping with name, when, emit, got {_type_name(rule)}")
                continue
            name = rule.get("name")
            if not isinstance(name, str) or not name:
                self.bad(f"{rpath}.name", "required: a non-empty string")
            elif name in seen:
                self.bad(f"{rpath}.name", f"duplicate rule name '{name}' in phase '{phase}'")
            seen.add(name)
            if not isinstance(rule.get("when"), str) or not rule["when"].strip():
                self.bad(f"{rpath}.when", "required: a CEL condition string")
            emit = rule.get("emit")
            channel = emit.get("channel") if isinstance(emit, dict) else None
            if not isinstance(emit, dict):
                self.bad(f"{rpath}.emit", "required: a mapping with 'channel'")
            elif not isinstance(channel, str) or not channel:
                self.bad(f"{rpath}.emit.channel", "required: a non-empty channel string")
            else:
                self.check_feedback(f"{rpath}.emit.channel", name, channel)
            self.rules.append({"phase": phase, "name": name, "when": rule.get("when"), "emit": emit,
                               "bindings": bindings if isinstance(bindings, dict) else {}})

    def check_feedback(self, path: str, rule: str, channel: str) -> None:
        for consumed, phase, option_path in self.consumed:
            if _strip_scheme(consumed) == _strip_scheme(channel):
                self.bad(path, f"rule '{rule}' emits to '{channel}', which source phase '{phase}' "
                               f"consumes ({option_path}): the bundle would consume its own output; "
                               "emit to a channel the bundle does not read")

    def check_sink(self, path: str, phase: str, options: dict, phase_names: dict) -> None:
        for key in ("full_interval", "incremental_interval"):
            self.check_duration(f"{path}.options.{key}", options.get(key), required=False)
        include = options.get("include", [])
        if not isinstance(include, list):
            self.bad(f"{path}.options.include", f"must be a list of phase names, got {_type_name(include)}")
            return
        for index, target in enumerate(include):
            if target not in phase_names:
                self.bad(f"{path}.options.include[{index}]", f"unknown phase {target!r}")

    def check_duration(self, path: str, value, required: bool) -> None:
        if value is None:
            if required:
                self.bad(path, "required: a duration such as 15s, 30m or 1h")
            return
        try:
            if parse_duration_ms(str(value)) <= 0:
                self.bad(path, f"duration {value!r} must be positive")
        except ValueError as exc:
            self.bad(path, str(exc))


# ------------------------------------------------------------------------------ helpers
def _v(path: str, message: str) -> dict:
    return {"path": path, "message": message}


def _type_name(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _label_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)


def _strip_scheme(channel: str) -> str:
    """'kafkas://iot.alerts' and 'iot.alerts' name the same channel."""
    return channel.split("://", 1)[1] if "://" in channel else channel

