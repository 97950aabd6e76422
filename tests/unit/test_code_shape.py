"""The layout rules of the collection's code, checked on the source text (docs/developers/interfaces.md).

- module_utils import each other without a cycle (the import graph built from the AST);
- no function or method in plugins/ is longer than 80 lines;
- the replay engine lives in the ``_replay`` package, no flat ``_replay_*.py`` is left;
- no test edits ``sys.path`` (tests import their helpers relatively; the conftest.py at
  the repository root puts the collections path on it, once, for every test).
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGINS = os.path.join(ROOT, "plugins")
MODULE_UTILS = os.path.join(PLUGINS, "module_utils")
PACKAGE = "ansible_collections.ceptra.backfill.plugins.module_utils"
MAX_FUNCTION_LINES = 80


def python_files(top):
    for directory, _dirs, files in os.walk(top):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def module_name(path):
    rel = os.path.relpath(path, MODULE_UTILS)[:-3].replace(os.sep, ".")
    return PACKAGE + "." + (rel[:-len(".__init__")] if rel.endswith(".__init__") else rel)


def imported_modules(path, known):
    """The module_utils modules ``path`` imports (``from P import name`` counts when P.name is a module)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                found.add(node.module)
            found.update(node.module + "." + alias.name for alias in node.names
                         if node.module + "." + alias.name in known)
    return found


def import_graph():
    files = {module_name(path): path for path in python_files(MODULE_UTILS)}
    return {name: imported_modules(path, files) - {name} for name, path in files.items()}


def find_cycle(graph):
    """One import cycle as a list of module names, or None."""
    state = {}

    def visit(name, trail):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return trail[trail.index(target):] + [target]
            if target not in state:
                cycle = visit(target, trail + [target])
                if cycle:
                    return cycle
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [name])
            if cycle:
                return cycle
    return None


def test_module_utils_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 20 and any(graph.values())      # the graph really was built
    short = {name[len(PACKAGE) + 1:]: {t[len(PACKAGE) + 1:] for t in targets} for name, targets in graph.items()}
    assert "_replay.source_sql" in short["_replay.source"]                   # e.g. the source opens its backends
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_function_in_plugins_is_longer_than_80_lines():
    long = []
    for path in python_files(PLUGINS):
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append("%s:%d %s (%d lines)" % (os.path.relpath(path, ROOT), node.lineno, node.name, lines))
    assert long == []


def test_the_replay_engine_is_one_package():
    flat = [name for name in os.listdir(MODULE_UTILS) if name.startswith("_replay_")]
    assert flat == []
    package = os.path.join(MODULE_UTILS, "_replay")
    assert open(os.path.join(package, "__init__.py"), encoding="utf-8").read() == ""
    assert {"engine.py", "cli.py", "config.py", "run.py", "partition.py"} <= set(os.listdir(package))


def edits_sys_path(tree):
    """True when the module calls ``sys.path.insert``/``append``/``extend`` or assigns ``sys.path``."""
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value if node.func.attr in ("insert", "append", "extend") else None
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            target = (node.targets if isinstance(node, ast.Assign) else [node.target])[0]
        if isinstance(target, ast.Attribute) and target.attr == "path" and \
                isinstance(target.value, ast.Name) and target.value.id == "sys":
            return True
    return False


def test_tests_do_not_edit_sys_path():
    assert edits_sys_path(ast.parse("import sys\nsys.path.insert(0, 'x')"))
    assert not edits_sys_path(ast.parse("import os\nos.path.join('a', 'b')"))
    offenders = [os.path.relpath(path, ROOT) for path in python_files(os.path.join(ROOT, "tests"))
                 if edits_sys_path(ast.parse(open(path, encoding="utf-8").read()))]
    assert offenders == []
