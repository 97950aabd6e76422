"""YAML reading of definition bundles and its diagnostics (used by definitions.py).

PyYAML's own messages do not tell a bundle author what to change. This module holds the
strict loader (no duplicate keys, no aliases) and the explanations for the YAML traps
bundles fall into: an unquoted multi-line value cut short by a line indented no deeper
than its key, and `key:{ ... }` without a space after ':' (which YAML reads as one key
named `key:{ ...`, the typo the lane-domain check names). Everything returns violations
{"path", "message"}; definitions.py raises BundleError with them.
"""
from __future__ import annotations

import re

import yaml

# `key:{` or `key:[` at the start of a line: YAML needs a space after ':' there.
_MISSING_SPACE_RE = re.compile(r"^(\s*)([A-Za-z_][\w.\-]*):([{\[].*)$")


class BundleLoader(yaml.SafeLoader):
    """safe_load that also refuses duplicate keys (YAML keeps the last one silently) and
    aliases (which can expand a small document into a huge one)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not supported in bundles; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: SafeConstructor reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}; each key may appear once", key_node.start_mark)
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    """Parse YAML text with the strict bundle loader; raises PyYAML's errors unchanged."""
    return yaml.load(text, Loader=BundleLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_violations(text: str, exc: yaml.MarkedYAMLError) -> list[dict]:
    """Turn a PyYAML error into violations, explaining the two traps bundles fall into."""
    lines = text.splitlines()
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "an unknown position"
    message = f"YAML syntax error at {where}: {exc.problem or exc.context}"
    if exc.context and exc.context_mark and exc.problem:
        message += f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    # "while scanning a simple key" points (context_mark) at the line YAML took for a key.
    key_line = exc.context_mark.line if exc.context_mark and exc.context == "while scanning a simple key" else None
    hint = _plain_scalar_hint(lines, key_line) if key_line is not None else None
    if hint:
        # lead with the line the author must change, keep the parser's words after it
        message = f"YAML syntax error at line {key_line + 1}: {hint} (parser: {exc.problem} at {where})"
        others = [number for number in _plain_scalar_cuts(lines) if number != key_line + 1]
        if others:
            message += f"; the same problem is at line{'s' if len(others) > 1 else ''} " \
                       + ", ".join(str(number) for number in others)
    violations = [_body(message)]
    violations.extend(_missing_space_violations(lines))
    return violations


def _plain_scalar_hint(lines: list[str], line_index: int) -> str | None:
    """Explain a multi-line unquoted value cut short by a line indented no deeper than its key."""
    if line_index >= len(lines):
        return None
    bad = lines[line_index]
    indent = len(bad) - len(bad.lstrip(" "))
    continuation = 0
    for index in range(line_index - 1, -1, -1):
        candidate = lines[index]
        if not candidate.strip():
            continue
        candidate_indent = len(candidate) - len(candidate.lstrip(" "))
        if candidate_indent > indent:
            continuation += 1
            continue
        key, sep, value = candidate.strip().partition(":")
        value = value.strip()
        if sep and value and value[0] not in "|>'\"[{&*!#" and candidate_indent == indent:
            return (f"the value of '{key}' (line {index + 1}) is an unquoted multi-line YAML scalar; "
                    f"it ends at line {line_index + 1} ('{bad.strip()}'), which is indented no deeper "
                    f"than '{key}:', so YAML reads that line as a new key. Write the value as a block "
                    f"scalar ('{key}: |' followed by lines indented deeper than '{key}') or indent "
                    f"line {line_index + 1} deeper than '{key}:'")
        return None
    return None


def _plain_scalar_cuts(lines: list[str]) -> list[int]:
    """1-based numbers of the lines that cut an unquoted multi-line value short."""
    cuts = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        # a line that is itself a key, a list item or a comment is not a stray continuation
        if not stripped or stripped.startswith(("#", "-")) or ": " in stripped or stripped.endswith(":"):
            continue
        if _plain_scalar_hint(lines, index):
            cuts.append(index + 1)
    return cuts


def _missing_space_violations(lines: list[str]) -> list[dict]:
    """Find `key:{ ... }` lines, which YAML does not read as `key: { ... }`."""
    found = []
    for number, line in enumerate(lines, start=1):
        match = _MISSING_SPACE_RE.match(line)
        if match and not line.lstrip().startswith("#"):
            key, rest = match.group(2), match.group(3)
            found.append(_body(f"line {number}: '{key}:{rest.strip()}' has no space after ':', "
                               f"so YAML does not read it as key '{key}'; write '{key}: {rest.strip()}'"))
    return found


def mistyped_lane_domain(key_text: str, spec) -> tuple[str, str] | None:
    """Detect a lane-domain key that hides a missing space after ':' ('player_id:{max_per_partition: 8}').

    Returns (the label the author meant, the violation message) or None for a normal key.
    """
    if ":" not in key_text and "{" not in key_text:
        return None
    label = key_text.split(":", 1)[0].strip()
    bound = str(spec).rstrip("} ").strip()
    return label, (f"lane domain key '{key_text}' looks like a missing space after ':' in YAML "
                   f"(YAML read the key '{key_text}' with the value {spec!r}); write "
                   f"'{label}: {{ max_per_partition: {bound} }}'")


def mistyped_domain_note(broken_key: str) -> str:
    """The note added to a 'missing lane domain' violation when the label hides in a broken key."""
    return (f" (bundle.lane_domains has the key '{broken_key}' instead: "
            "a missing space after ':')")


def _body(message: str) -> dict:
    return {"path": "body", "message": message}
