"""Offline validation of the AWX definitions under extensions/awx/vars (infra.aap_configuration format).

``validate(directory)`` returns a list of problems, each ``"<where>: <what>"`` where
``<where>`` names the offending field (``controller_templates[CEPtra verify].survey_spec.spec[1].default``).
The rules, in the order they run:

- every object's keys are documented options (or aliases) of the awx.awx module that
  infra.aap_configuration hands it to, with the documented type and choices (awx_docs.py);
  the required options are present;
- names that objects refer to (project, inventory, credentials, credential type, execution
  environment, workflow nodes' templates and node identifiers) are defined;
- AWX's survey rules and its credential type input and injector rules, as AWX applies them
  when the object is saved (re-stated here from the AWX API's behaviour);
- our own rules for the templates: the control-plane credential, ``job_type`` prompted,
  ``allow_simultaneous: false``, a sliced template passes the complete worker list, every
  playbook exists, and every survey variable is an input that the argument specs of the
  roles the playbook calls declare (or a public variable of the playbook's own plays), with a
  compatible type, and not a variable the playbook passes to a role itself.

The ``--syntax-check`` of the playbooks is a separate function (it runs ansible-playbook).
"""

import functools
import keyword
import os
import re
import subprocess
import sys

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .awx_docs import REPO, awx_module_docs

DEFINITIONS = os.path.join(REPO, "extensions", "awx", "vars")
CREDENTIAL_TYPE = "CEPtra control plane"
# The connection options a credential of that type carries (the rest keep their defaults).
CREDENTIAL_OPTIONS = ("url", "token", "client_cert", "client_key", "ca_path")
# infra.aap_configuration variable -> awx.awx module that applies each of its objects.
VARIABLES = {
    "controller_credential_types": "credential_type",
    "controller_credentials": "credential",
    "controller_execution_environments": "execution_environment",
    "controller_projects": "project",
    "controller_inventories": "inventory",
    "controller_hosts": "host",
    "controller_groups": "group",
    "controller_templates": "job_template",
    "controller_workflows": "workflow_job_template",
}
# Keys the infra.aap_configuration roles accept beside the module's options.
ROLE_KEYS = {"controller_workflows": {"simplified_workflow_nodes"}}
# Objects AWX has before any configuration.
BUILTIN = {"organization": {"Default"}}
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                "integer": int, "float": (int, float)}
# Argument spec type -> survey question types whose answer that type accepts.
SURVEY_FOR_SPEC = {"str": {"text", "textarea", "password", "multiplechoice"}, "path": {"text"},
                   "int": {"integer"}, "float": {"float", "integer"}, "bool": {"multiplechoice"},
                   "list": {"multiselect"}, "raw": set(SURVEY_TYPES)}
IDENTIFIER = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
FIELD_KEYS = {"id", "label", "type", "format", "choices", "help_text", "multiline", "secret", "ask_at_runtime",
              "default"}
# Environment variables AWX refuses in a credential injector (its ENV_BLOCKLIST, plus ANSIBLE_*).
ENV_BLOCKED = {"VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID",
               "INVENTORY_UPDATE_ID", "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES",
               "CALLBACK_QUEUE", "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS",
               "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"}
# The role arguments every scenario takes besides its roles' own (RUNBOOK_CONTRACT.md).
SCENARIO_VARS = ("ceptra_incident_id", "ceptra_run_id")


# libyaml's parser where PyYAML has it (the role files are read many times in the tests).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_SafeLoader)


class _Loader(_SafeLoader):  # pylint: disable=too-many-ancestors
    """YAML as infra.aap_configuration reads it: ``!unsafe`` strings stay plain strings."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_definitions(directory=DEFINITIONS):
    """{variable: [object, ...]} from every YAML file of ``directory``; an unknown variable is kept
    (validate names it)."""
    merged = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith((".yml", ".yaml")):
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                for key, value in (yaml.load(handle, Loader=_Loader) or {}).items():
                    merged.setdefault(key, []).extend(value or [])
    return merged


def _templated(value):
    return isinstance(value, str) and "{{" in value


def _type_problem(spec, value):
    """What is wrong with ``value`` for an option documented as ``spec`` (None if nothing)."""
    if _templated(value):
        return None
    kind = spec.get("type", "str")
    checks = {"str": lambda v: isinstance(v, str), "path": lambda v: isinstance(v, str),
              "int": lambda v: isinstance(v, int) and not isinstance(v, bool), "bool": lambda v: isinstance(v, bool),
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "list": lambda v: isinstance(v, list), "dict": lambda v: isinstance(v, dict), "raw": lambda v: True}
    if kind in checks and not checks[kind](value):
        return "expected %s, got %s %r" % (kind, type(value).__name__, value)
    if "choices" in spec and value not in spec["choices"] and not isinstance(value, (list, dict)):
        return "%r is not one of %s" % (value, spec["choices"])
    return None


def check_options(where, obj, options, extra_keys=(), skip=()):
    """Problems of ``obj`` against a module's documented ``options``."""
    problems = []
    if not isinstance(obj, dict):
        return ["%s: expected a mapping, got %r" % (where, obj)]
    names = {}
    for name, spec in options.items():
        names[name] = name
        for alias in spec.get("aliases") or ():
            names[alias] = name
    for key, value in obj.items():
        if key in extra_keys:
            continue
        if key not in names:
            problems.append("%s.%s: not an option of this awx.awx module (known: %s)"
                            % (where, key, ", ".join(sorted(options))))
            continue
        spec = options[names[key]]
        problem = _type_problem(spec, value)
        if problem:
            problems.append("%s.%s: %s" % (where, key, problem))
        elif spec.get("suboptions") and isinstance(value, dict):
            problems += check_options("%s.%s" % (where, key), value, spec["suboptions"])
    for name, spec in options.items():
        if spec.get("required") and name not in skip and not ({name} | set(spec.get("aliases") or ())) & set(obj):
            problems.append("%s.%s: required option missing" % (where, name))
    return problems


def _label(variable, index, obj):
    name = obj.get("name") if isinstance(obj, dict) else None
    return "%s[%s]" % (variable, name if name else index)


# ---- surveys (AWX's rules for a survey_spec) ------------------------------------------------

def check_survey(where, survey):
    """Problems of a survey_spec as AWX's API judges it when it is saved and launched."""
    problems = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(survey.get(field), kind):
            problems.append("%s.%s: missing or not a %s" % (where, field, kind.__name__))
    items = survey.get("spec") if isinstance(survey.get("spec"), list) else []
    if isinstance(survey.get("spec"), list) and not items:
        problems.append("%s.spec: has no questions" % where)
    seen = set()
    for index, item in enumerate(items):
        at = "%s.spec[%d]" % (where, index)
        if not isinstance(item, dict):
            problems.append("%s: not a mapping" % at)
            continue
        bad = [field for field, kind in (("type", str), ("question_name", str), ("variable", str), ("required", bool))
               if not isinstance(item.get(field), kind)]
        problems += ["%s.%s: missing or not a %s" % (at, field, "boolean" if field == "required" else "string")
                     for field in bad]
        if bad:
            continue
        variable, qtype = item["variable"], item["type"]
        if not IDENTIFIER.match(variable) or keyword.iskeyword(variable):
            problems.append("%s.variable: %r is not a valid variable name" % (at, variable))
        if variable in seen:
            problems.append("%s.variable: %r is asked twice" % (at, variable))
        seen.add(variable)
        if qtype not in SURVEY_TYPES:
            problems.append("%s.type: %r is not one of %s" % (at, qtype, ", ".join(SURVEY_TYPES)))
            continue
        for key in ("min", "max"):
            if item.get(key) is not None and (not isinstance(item[key], int) or isinstance(item[key], bool)):
                problems.append("%s.%s: must be an integer" % (at, key))
        low, high = item.get("min"), item.get("max")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            problems.append("%s.min: %d is above max %d" % (at, low, high))
        default = item.get("default", "")
        has_default = "default" in item and default != ""
        if has_default and (not isinstance(default, SURVEY_TYPES[qtype]) or isinstance(default, bool)) \
                and not (qtype == "multiselect" and isinstance(default, list)):
            problems.append("%s.default: %r is not a valid %s answer" % (at, default, qtype))
            continue
        if qtype in ("multiplechoice", "multiselect"):
            choices = item.get("choices")
            if isinstance(choices, str):
                choices = [c for c in choices.splitlines() if c.strip()]
            if not choices or not isinstance(choices, list):
                problems.append("%s.choices: a %s question needs choices" % (at, qtype))
                continue
            defaults = default if isinstance(default, list) else [d for d in str(default).splitlines() if d.strip()]
            if qtype == "multiplechoice" and len(defaults) > 1:
                problems.append("%s.default: a multiplechoice question takes one default" % at)
            for value in defaults:
                if value not in choices:
                    problems.append("%s.default: %r is not one of the choices %s" % (at, value, choices))
        elif has_default and qtype in ("text", "textarea", "password"):
            if isinstance(low, int) and len(default) < low or isinstance(high, int) and len(default) > high:
                problems.append("%s.default: length %d is outside min %s / max %s" % (at, len(default), low, high))
        elif has_default and qtype in ("integer", "float"):
            if isinstance(low, int) and default < low or isinstance(high, int) and default > high:
                problems.append("%s.default: %s is outside min %s / max %s" % (at, default, low, high))
        if item["required"] and qtype == "password" and has_default:
            problems.append("%s.default: a password question keeps no default in the definitions" % at)
    return problems


def survey_variables(obj):
    """{variable: question} of an object's survey (empty without one)."""
    survey = obj.get("survey_spec") or obj.get("survey") or {}
    return {q["variable"]: q for q in survey.get("spec") or () if isinstance(q, dict) and "variable" in q}


# ---- credential types (AWX's input and injector rules) --------------------------------------

class _Files:
    """``tower.filename`` in an injector: a name, or one attribute per named file template."""


def check_credential_type(where, ctype):
    """Problems of a credential type's inputs and injectors as AWX judges them."""
    problems = []
    inputs, injectors = ctype.get("inputs") or {}, ctype.get("injectors") or {}
    for key in set(inputs) - {"fields", "required"}:
        problems.append("%s.inputs.%s: not allowed in a custom credential type's inputs" % (where, key))
    ids = []
    for index, field in enumerate(inputs.get("fields") or ()):
        at = "%s.inputs.fields[%d]" % (where, index)
        for key in set(field) - FIELD_KEYS:
            problems.append("%s.%s: not an input field key (known: %s)" % (at, key, ", ".join(sorted(FIELD_KEYS))))
        for key in ("id", "label"):
            if not isinstance(field.get(key), str):
                problems.append("%s.%s: required string missing" % (at, key))
        fid, ftype = field.get("id"), field.get("type", "string")
        if isinstance(fid, str):
            if not IDENTIFIER.match(fid):
                problems.append("%s.id: %r is an invalid variable name" % (at, fid))
            if fid == "tower" or fid in ids:
                problems.append("%s.id: %r is reserved or defined twice" % (at, fid))
            ids.append(fid)
        if ftype not in ("string", "boolean"):
            problems.append("%s.type: %r is not string or boolean" % (at, ftype))
            continue
        if "default" in field and not isinstance(field["default"], {"string": str, "boolean": bool}[ftype]):
            problems.append("%s.default: %r is not a %s" % (at, field["default"], ftype))
        for key in ("choices", "multiline", "format", "secret"):
            if key in field and ftype != "string":
                problems.append("%s.%s: only for string fields" % (at, key))
        if field.get("format") not in (None, "url", "ssh_private_key"):
            problems.append("%s.format: %r is not url or ssh_private_key" % (at, field["format"]))
    for index, fid in enumerate(inputs.get("required") or ()):
        if fid not in ids:
            problems.append("%s.inputs.required[%d]: %r is not a field id" % (where, index, fid))

    for key in set(injectors) - {"file", "env", "extra_vars"}:
        problems.append("%s.injectors.%s: only file, env and extra_vars inject" % (where, key))
    files = injectors.get("file") or {}
    tower = _Files()
    for name in files:
        if not re.match(r"^template(\.[a-zA-Z_][a-zA-Z0-9_]*)?$", name):
            problems.append("%s.injectors.file.%s: must be template or template.<name>" % (where, name))
        elif name == "template":
            tower.filename = "FILENAME"
        else:
            if not isinstance(getattr(tower, "filename", None), _Files):
                tower.filename = _Files()
            setattr(tower.filename, name.split(".", 1)[1], "FILENAME")
    if "template" in files and len(files) > 1:
        problems.append("%s.injectors.file: template and template.<name> cannot be mixed" % where)
    for name in injectors.get("env") or {}:
        if not IDENTIFIER.match(name) or name.startswith("ANSIBLE_") or name in ENV_BLOCKED:
            problems.append("%s.injectors.env.%s: not an environment variable a credential may set" % (where, name))
    for name in injectors.get("extra_vars") or {}:
        if not re.match(r"^[a-zA-Z_{}][a-zA-Z0-9_{}]*$", name):
            problems.append("%s.injectors.extra_vars.%s: not a variable name" % (where, name))
    namespace = dict.fromkeys(ids, "EXAMPLE")
    namespace["tower"] = tower
    sandbox = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for kind in ("file", "env", "extra_vars"):
        for name, template in (injectors.get(kind) or {}).items():
            at = "%s.injectors.%s.%s" % (where, kind, name)
            if not isinstance(template, str):
                problems.append("%s: must be a template string" % at)
                continue
            if kind == "env" and not template.isascii():
                problems.append("%s: environment values must be ASCII" % at)
            try:
                sandbox.from_string(template).render(namespace)
            except (UndefinedError, TemplateSyntaxError, SecurityError, AttributeError) as exc:
                problems.append("%s: %s (the template may use the input field ids and tower.filename of the "
                                "file injectors)" % (at, exc))
    return problems


def connection_env_variables():
    """{option: CEPTRA_* variable} of the modules' shared connection options (the doc fragment)."""
    from ansible_collections.ceptra.backfill.plugins.doc_fragments.connection import ModuleDocFragment

    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    found = {}
    for name, spec in options.items():
        text = " ".join(spec["description"]) if isinstance(spec["description"], list) else spec["description"]
        found.update({name: env for env in re.findall(r"E\((CEPTRA_[A-Z_]+)\)", text)})
    return found


# ---- playbooks and the inputs their roles declare -------------------------------------------

def _role_dir(name):
    short = name.split(".")[-1] if name.startswith("ceptra.backfill.") else name
    return os.path.join(REPO, "roles", short)


def _task_lists(node):
    """Every task of a task list, blocks opened."""
    for task in node or ():
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from _task_lists(task.get(key))


def _role_calls(tasks):
    """(role name, entry point, the vars the call sets) of every import_role/include_role in ``tasks``."""
    for task in _task_lists(tasks):
        for key in ("ansible.builtin.import_role", "ansible.builtin.include_role", "import_role", "include_role"):
            if isinstance(task.get(key), dict) and task[key].get("name"):
                yield task[key]["name"], task[key].get("tasks_from", "main"), set(task.get("vars") or {})


_SPEC_TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (list, "list"), (dict, "dict"), (str, "str"))


@functools.lru_cache(maxsize=None)
def playbook_inputs(playbook):
    """What an operator may set for a playbook: ``(inputs, set_by_playbook)``.

    ``inputs`` is {variable: argument spec}: the options of every role entry point the plays
    reach (roles calling roles included), and the public variables of the plays' own ``vars``
    (the playbook's documented knobs such as ``<scenario>_hold_before``, typed by their
    default). ``set_by_playbook`` holds the role inputs the playbook itself passes to a role
    call (``vars:`` of the include_role): an extra variable of that name would override the
    playbook's value. Raises ValueError naming a role without the argument spec of an entry
    point it uses.
    """
    plays = _read_yaml(playbook) or []
    pending, inputs, set_by_playbook = [], {}, set()
    for play in plays:
        for role in play.get("roles") or ():
            pending.append((role if isinstance(role, str) else role.get("role") or role.get("name"), "main"))
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            for name, entry, passed in _role_calls(play.get(section)):
                pending.append((name, entry))
                set_by_playbook |= passed
        for name, default in (play.get("vars") or {}).items():
            if not name.startswith("_"):
                kind = next(label for kinds, label in _SPEC_TYPES if isinstance(default, kinds) or default is None)
                inputs[name] = {"type": "raw" if default is None else kind, "default": default}
    seen = set()
    while pending:
        name, entry = pending.pop()
        entry = os.path.splitext(entry)[0]
        if (name, entry) in seen:
            continue
        seen.add((name, entry))
        role = _role_dir(name)
        specs_path = os.path.join(role, "meta", "argument_specs.yml")
        specs = {}
        if os.path.exists(specs_path):
            specs = (_read_yaml(specs_path) or {}).get("argument_specs") or {}
        if entry not in specs:
            raise ValueError("role %s declares no argument spec for its entry point %s (%s)" % (name, entry, specs_path))
        inputs.update(specs[entry].get("options") or {})
        tasks_file = os.path.join(role, "tasks", entry + ".yml")
        if os.path.exists(tasks_file):
            pending.extend((called, called_entry) for called, called_entry, dummy in _role_calls(_read_yaml(tasks_file)))
    return inputs, set_by_playbook


def check_survey_inputs(where, template, playbook):
    """Every survey variable is an input of the playbook (its roles' or its own), with a type its
    answer converts to, and not one the playbook sets itself for a role."""
    questions = survey_variables(template)
    if not questions:
        return []
    try:
        inputs, set_by_playbook = playbook_inputs(playbook)
    except ValueError as exc:
        return ["%s.playbook: %s" % (where, exc)]
    problems = []
    for index, (variable, question) in enumerate(questions.items()):
        at = "%s.survey_spec.spec[%d]" % (where, index)
        spec = inputs.get(variable)
        if spec is None:
            problems.append("%s.variable: %r is not an input that the roles of %s declare (known: %s)"
                            % (at, variable, os.path.relpath(playbook, REPO), ", ".join(sorted(inputs)) or "none"))
            continue
        if variable in set_by_playbook and variable not in SCENARIO_VARS:
            problems.append("%s.variable: %s passes %r to a role itself; a survey answer (an extra variable) would "
                            "override it" % (at, os.path.relpath(playbook, REPO), variable))
        kind = spec.get("type", "str")
        if question.get("type") not in SURVEY_FOR_SPEC.get(kind, ()):
            problems.append("%s.type: a %s question cannot answer %r, an argument of type %s"
                            % (at, question.get("type"), variable, kind))
        choices = question.get("choices") or []
        choices = [c for c in choices.splitlines() if c.strip()] if isinstance(choices, str) else choices
        allowed = [str(x) for x in spec["choices"]] if spec.get("choices") else (
            ["true", "false", "yes", "no"] if kind == "bool" else None)
        if allowed is not None and question.get("type") in ("multiplechoice", "multiselect"):
            outside = [c for c in choices if c not in allowed]
            if not choices or outside:
                problems.append("%s.choices: %s must be among the argument's choices %s" % (at, outside or "(none)", allowed))
    return problems


def syntax_check(playbooks):
    """{playbook: error text} for the playbooks that fail ``ansible-playbook --syntax-check``."""
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"), ANSIBLE_NOCOLOR="1")
    failures = {}
    proc = subprocess.run([exe, "--syntax-check", "-i", "localhost,"] + list(playbooks), capture_output=True,
                          text=True, env=env, check=False, stdin=subprocess.DEVNULL, timeout=300)
    if proc.returncode == 0:
        return failures
    for playbook in playbooks:   # one failed: find which, each on its own
        single = subprocess.run([exe, "--syntax-check", "-i", "localhost,", playbook], capture_output=True,
                                text=True, env=env, check=False, stdin=subprocess.DEVNULL, timeout=300)
        if single.returncode != 0:
            failures[playbook] = (single.stdout + single.stderr).strip()[-2000:]
    return failures


# ---- the whole set ---------------------------------------------------------------------------

def _names(definitions, variable):
    return {obj.get("name") for obj in definitions.get(variable) or () if isinstance(obj, dict)}


def _refer(where, value, defined, what):
    if value is None or _templated(value) or value in defined:
        return []
    return ["%s: %s %r is not defined (defined: %s)" % (where, what, value, ", ".join(sorted(defined)) or "none")]


def check_workflow(where, workflow, templates):
    """Nodes name defined templates or are approval nodes; links name nodes of this workflow;
    a node's prompts are ones its template asks for."""
    problems = []
    nodes = workflow.get("simplified_workflow_nodes") or []
    identifiers = [node.get("identifier") for node in nodes if isinstance(node, dict)]
    for index, node in enumerate(nodes):
        at = "%s.simplified_workflow_nodes[%s]" % (where, node.get("identifier") or index)
        if not node.get("identifier"):
            problems.append("%s.identifier: every node needs an identifier" % at)
        elif identifiers.count(node["identifier"]) > 1:
            problems.append("%s.identifier: %r is used by two nodes" % (at, node["identifier"]))
        has_template, approval = "unified_job_template" in node, node.get("approval_node")
        if has_template == bool(approval):
            problems.append("%s: a node runs either a unified_job_template or an approval_node" % at)
        if approval and not (isinstance(approval, dict) and approval.get("name")):
            problems.append("%s.approval_node.name: an approval node needs a name" % at)
        if has_template:
            template = templates.get(node["unified_job_template"])
            if template is None:
                problems += _refer(at + ".unified_job_template", node["unified_job_template"], set(templates),
                                   "job template")
            else:
                prompts = {"job_type": "ask_job_type_on_launch", "inventory": "ask_inventory_on_launch",
                           "limit": "ask_limit_on_launch", "credentials": "ask_credential_on_launch",
                           "job_tags": "ask_tags_on_launch", "skip_tags": "ask_skip_tags_on_launch",
                           "verbosity": "ask_verbosity_on_launch", "diff_mode": "ask_diff_mode_on_launch",
                           "job_slice_count": "ask_job_slice_count_on_launch"}
                for key, ask in prompts.items():
                    if key in node and not template.get(ask):
                        problems.append("%s.%s: template %r does not prompt for it (%s)"
                                        % (at, key, node["unified_job_template"], ask))
                asked = set(survey_variables(template))
                for key in node.get("extra_data") or {}:
                    if key not in asked and not template.get("ask_variables_on_launch"):
                        problems.append("%s.extra_data.%s: template %r neither asks it in its survey nor prompts "
                                        "for variables" % (at, key, node["unified_job_template"]))
        for link in ("success_nodes", "failure_nodes", "always_nodes"):
            for target in node.get(link) or ():
                if target not in identifiers:
                    problems.append("%s.%s: %r is not a node of this workflow" % (at, link, target))
    return problems


def check_workflow_survey(where, workflow, templates):
    """A workflow's survey variables and extra_vars reach every job of the workflow as extra variables:
    each survey variable must be an input of some node's playbook, and none of them a variable a
    node's playbook passes to a role itself."""
    questions = survey_variables(workflow)
    playbooks = sorted({templates[n["unified_job_template"]]["playbook"]
                        for n in workflow.get("simplified_workflow_nodes") or ()
                        if n.get("unified_job_template") in templates
                        and os.path.isfile(os.path.join(REPO, templates[n["unified_job_template"]]["playbook"]))})
    known, problems = {}, []
    for playbook in playbooks:
        try:
            known[playbook] = playbook_inputs(os.path.join(REPO, playbook))
        except ValueError as exc:
            problems.append("%s: %s" % (where, exc))
    named = [("%s.survey_spec.spec[%d].variable" % (where, index), variable, True)
             for index, variable in enumerate(questions)]
    # extra_vars may also be variables a playbook reads itself (verify.yml: history_replay_source)
    named += [("%s.extra_vars.%s" % (where, variable), variable, False) for variable in workflow.get("extra_vars") or {}]
    for at, variable, declared in named:
        if declared and len(known) == len(playbooks) and not any(variable in inputs for inputs, dummy in known.values()):
            problems.append("%s: %r is an input of none of the workflow's playbooks %s" % (at, variable, playbooks))
        for playbook, (dummy, set_by_playbook) in sorted(known.items()):
            if variable in set_by_playbook and variable not in SCENARIO_VARS:
                problems.append("%s: %s passes %r to a role itself; the workflow's answer would override it"
                                % (at, playbook, variable))
    return problems


def check_template(where, template, definitions):
    """Our rules for a job template (beyond AWX's)."""
    problems = []
    credentials = {c.get("name"): c for c in definitions.get("controller_credentials") or ()}
    kinds = [credentials.get(name, {}).get("credential_type") for name in template.get("credentials") or ()]
    if CREDENTIAL_TYPE not in kinds:
        problems.append("%s.credentials: needs a credential of type %r (the CEPTRA_* connection)" % (where, CREDENTIAL_TYPE))
    if template.get("ask_job_type_on_launch") is not True:
        problems.append("%s.ask_job_type_on_launch: must be true (check mode gives the plan)" % where)
    if template.get("allow_simultaneous") is not False:
        problems.append("%s.allow_simultaneous: must be false (one scenario per cluster at a time)" % where)
    if survey_variables(template) and template.get("survey_enabled") is not True:
        problems.append("%s.survey_enabled: the template has a survey_spec but survey_enabled is not true" % where)
    slices = template.get("job_slice_count") or 1
    if isinstance(slices, int) and slices > 1:
        groups = [g for g in definitions.get("controller_groups") or ()
                  if g.get("inventory") == template.get("inventory") and g.get("name") == "replay_workers"]
        hosts = sorted(groups[0].get("hosts") or ()) if groups else []
        listed = (template.get("extra_vars") or {}).get("replay_workers_hosts")
        if not isinstance(listed, list) or sorted(listed) != hosts:
            problems.append("%s.extra_vars.replay_workers_hosts: a sliced template passes the complete worker list "
                            "explicitly (every slice sees only its own hosts); expected %s, got %r"
                            % (where, hosts, listed))
        if slices > len(hosts):
            problems.append("%s.job_slice_count: %d slices for %d workers leave slices without a host"
                            % (where, slices, len(hosts)))
    playbook = os.path.join(REPO, template.get("playbook") or "")
    if not template.get("playbook") or not os.path.isfile(playbook):
        problems.append("%s.playbook: %r is not a playbook of the project (the repository root)"
                        % (where, template.get("playbook")))
    else:
        problems += check_survey_inputs(where, template, playbook)
    return problems


def validate(directory=DEFINITIONS, docs=None):
    """Every problem of the definitions in ``directory`` (an empty list when they are valid)."""
    docs = docs or awx_module_docs()
    definitions = load_definitions(directory)
    problems = []
    for variable in definitions:
        if variable not in VARIABLES:
            problems.append("%s: not an infra.aap_configuration variable these definitions use (known: %s)"
                            % (variable, ", ".join(sorted(VARIABLES))))
    node_options = docs["workflow_job_template_node"]["options"]
    for variable, objects in definitions.items():
        if variable not in VARIABLES:
            continue
        options = docs[VARIABLES[variable]]["options"]
        seen = set()
        for index, obj in enumerate(objects):
            where = _label(variable, index, obj)
            problems += check_options(where, obj, options, extra_keys=ROLE_KEYS.get(variable, ()))
            if isinstance(obj, dict) and obj.get("name") in seen:
                problems.append("%s.name: defined twice" % where)
            seen.add(obj.get("name") if isinstance(obj, dict) else None)
            for node_index, node in enumerate((obj.get("simplified_workflow_nodes") or []) if isinstance(obj, dict) else []):
                problems += check_options("%s.simplified_workflow_nodes[%s]" % (where, node.get("identifier") or node_index),
                                          node, node_options, skip={"workflow_job_template"})
    if problems:
        return problems   # the cross-object rules below assume well-formed objects

    organizations = BUILTIN["organization"]
    templates = {t["name"]: t for t in definitions.get("controller_templates") or ()}
    for variable, objects in definitions.items():
        for index, obj in enumerate(objects):
            where = _label(variable, index, obj)
            problems += _refer(where + ".organization", obj.get("organization"), organizations, "organization")
            if variable in ("controller_hosts", "controller_groups"):
                problems += _refer(where + ".inventory", obj.get("inventory"),
                                   _names(definitions, "controller_inventories"), "inventory")
            if variable == "controller_groups":
                hosts = {h["name"] for h in definitions.get("controller_hosts") or () if h.get("inventory") == obj.get("inventory")}
                for host in obj.get("hosts") or ():
                    problems += _refer(where + ".hosts", host, hosts, "host of inventory %r" % obj.get("inventory"))
            if variable == "controller_credential_types":
                problems += check_credential_type(where, obj)
                injected = set((obj.get("injectors") or {}).get("env") or {})
                documented = connection_env_variables()
                wanted = {documented[option] for option in CREDENTIAL_OPTIONS}
                if obj.get("name") == CREDENTIAL_TYPE and (injected - set(documented.values()) or wanted - injected):
                    problems.append("%s.injectors.env: injects %s; the modules' connection options %s read %s"
                                    % (where, sorted(injected), ", ".join(CREDENTIAL_OPTIONS), sorted(wanted)))
            if variable == "controller_credentials":
                types = {t["name"]: t for t in definitions.get("controller_credential_types") or ()}
                ctype = types.get(obj.get("credential_type"))
                if ctype is None:
                    problems += _refer(where + ".credential_type", obj.get("credential_type"), set(types), "credential type")
                else:
                    fields = [f["id"] for f in (ctype.get("inputs") or {}).get("fields") or ()]
                    for key in obj.get("inputs") or {}:
                        if key not in fields:
                            problems.append("%s.inputs.%s: not a field of credential type %r (fields: %s)"
                                            % (where, key, ctype["name"], ", ".join(fields)))
                    for key in (ctype.get("inputs") or {}).get("required") or ():
                        if key not in (obj.get("inputs") or {}):
                            problems.append("%s.inputs.%s: required by credential type %r" % (where, key, ctype["name"]))
            if variable == "controller_projects":
                problems += _refer(where + ".default_environment", obj.get("default_environment"),
                                   _names(definitions, "controller_execution_environments"), "execution environment")
            if variable in ("controller_templates", "controller_workflows"):
                survey = obj.get("survey_spec") or obj.get("survey")
                if survey:
                    problems += check_survey(where + ".survey_spec", survey)
            if variable == "controller_templates":
                problems += _refer(where + ".project", obj.get("project"), _names(definitions, "controller_projects"), "project")
                problems += _refer(where + ".inventory", obj.get("inventory"),
                                   _names(definitions, "controller_inventories"), "inventory")
                problems += _refer(where + ".execution_environment", obj.get("execution_environment"),
                                   _names(definitions, "controller_execution_environments"), "execution environment")
                for name in obj.get("credentials") or ():
                    problems += _refer(where + ".credentials", name, _names(definitions, "controller_credentials"), "credential")
                problems += check_template(where, obj, definitions)
            if variable == "controller_workflows":
                problems += check_workflow(where, obj, templates)
                problems += check_workflow_survey(where, obj, templates)
                if obj.get("allow_simultaneous") is not False:
                    problems.append("%s.allow_simultaneous: must be false (one scenario per cluster at a time)" % where)
    return problems
