"""Run a job template of extensions/awx the way AWX runs it, with ansible-runner.

What AWX does for a job, and what ``run_job`` does the same way here:

- a fresh private data directory per job (``env/``, ``inventory/``, artifacts);
- the project is the repository root (the template's ``playbook`` is relative to it);
- the template's credentials are injected by their credential type's injectors: each file
  injector is rendered into a 0600 file under ``<private data dir>/env/`` and the env
  injectors (Jinja, sandboxed, fields left empty are undefined) become the job's
  environment (``inject_credential``);
- extra vars = the template's ``extra_vars``, then the survey defaults, then the answers,
  then AWX's meta variables (``awx_job_id``, ``awx_user_name``, ... and their ``tower_``
  twins; ``awx_meta_vars``);
- ``job_type: check`` runs ``--check``;
- a sliced template (``job_slice_count``) runs as one job per slice, each with an inventory
  holding only its slice of the hosts, in AWX's order (hosts by name, slice ``n`` of ``N``
  takes every N-th host from the n-th; ``slice_hosts``);
- the environment the execution environment image sets (execution-environment.yml,
  ``ENV`` lines of ``additional_build_steps``) is set too, so the audit callback is on.

Tests assert on what AWX stores: the runner events, the status and the stats.
"""

import os
import re
import shutil
import sys
import tempfile

import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..unit.awx.awx_rules import load_definitions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
EE_FILE = os.path.join(REPO, "execution-environment.yml")


def definitions():
    """{variable: [object]} of extensions/awx/vars."""
    return load_definitions()


def find(defs, variable, name):
    """The object called ``name`` in ``defs[variable]``."""
    for obj in defs.get(variable) or ():
        if obj.get("name") == name:
            return obj
    raise KeyError("%s has no %r" % (variable, name))


def ee_environment():
    """The variables the execution environment image sets (``ENV`` lines of its build steps)."""
    with open(EE_FILE, encoding="utf-8") as handle:
        steps = (yaml.safe_load(handle).get("additional_build_steps") or {})
    env = {}
    for stage in steps.values():
        for line in stage:
            match = re.match(r"^ENV\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.strip())
            if match:
                env[match.group(1)] = match.group(2)
    return env


CREDENTIAL = "CEPtra production control plane"


def credential_inputs(lab, certs, role="operator"):
    """What an operator pastes into the control-plane credential: the lab's URL and the PEM texts
    of one role's identity from the PKI of ``ceptra-lab certs`` (``certs``, a pathlib.Path)."""
    def read(name):
        return (certs / name).read_text(encoding="utf-8")

    return {CREDENTIAL: {"url": lab.url, "client_cert": read("%s.pem" % role),
                         "client_key": read("%s-key.pem" % role), "ca_cert": read("ca.pem")}}


class _Namespace:
    """Attribute access for ``tower.filename.<name>`` in injector templates."""


def inject_credential(ctype, inputs, private_data_dir):
    """The environment a credential of type ``ctype`` with ``inputs`` gives a job (AWX's injection)."""
    sandbox = ImmutableSandboxedEnvironment()
    namespace = {key: value for key, value in inputs.items() if isinstance(value, bool) or value}
    tower = _Namespace()
    namespace["tower"] = tower
    env_dir = os.path.join(private_data_dir, "env")
    os.makedirs(env_dir, exist_ok=True)
    for label, template in (ctype.get("injectors") or {}).get("file", {}).items():
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as out:
            out.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, 0o600)
        if "." in label:
            if not isinstance(getattr(tower, "filename", None), _Namespace):
                tower.filename = _Namespace()
            setattr(tower.filename, label.split(".", 1)[1], path)
        else:
            tower.filename = path
    return {name: sandbox.from_string(template).render(**namespace)
            for name, template in (ctype.get("injectors") or {}).get("env", {}).items()}


def slice_hosts(hosts, number, count):
    """The hosts of slice ``number`` (1-based) of ``count``, as AWX slices an inventory."""
    return sorted(hosts)[number - 1::count] if count > 1 else sorted(hosts)


def awx_meta_vars(job_id, template, user, inventory, workflow_job=None):
    """AWX's meta extra vars of a job launched by ``user``, both prefixes."""
    meta = {"job_id": job_id, "job_launch_type": "workflow" if workflow_job else "manual",
            "job_template_id": 100 + job_id % 100, "job_template_name": template["name"],
            "user_id": 7, "user_name": user, "user_email": "%s@example.invalid" % user,
            "user_first_name": user.title(), "user_last_name": "Operator",
            "inventory_id": 3, "inventory_name": inventory, "project_revision": "0" * 40,
            "project_scm_branch": "main", "execution_node": "awx-ee-%d" % job_id}
    if workflow_job:
        meta.update({"workflow_job_id": workflow_job[0], "workflow_job_name": workflow_job[1],
                     "workflow_job_launch_type": "manual"})
    return {"%s_%s" % (prefix, key): value for prefix in ("awx", "tower") for key, value in meta.items()}


def survey_extra_vars(template, answers):
    """What a launch with these survey ``answers`` adds to the extra vars (defaults of the rest)."""
    values = {}
    for question in (template.get("survey_spec") or {}).get("spec") or ():
        variable = question["variable"]
        if variable in answers:
            values[variable] = answers[variable]
        elif question.get("default", "") != "":
            values[variable] = question["default"]
    return values


def inventory_for(defs, template, hosts, host_vars):
    """An inventory of the template's inventory, restricted to ``hosts``, in YAML form."""
    inventory = template["inventory"]
    groups = {}
    for group in defs.get("controller_groups") or ():
        if group["inventory"] == inventory:
            members = [h for h in group.get("hosts") or () if h in hosts]
            if members:
                groups[group["name"]] = {"hosts": {h: None for h in members}}
    all_hosts = {}
    for host in defs.get("controller_hosts") or ():
        if host["inventory"] == inventory and host["name"] in hosts:
            all_hosts[host["name"]] = dict(host.get("variables") or {}, **host_vars)
    return {"all": {"hosts": all_hosts, "children": groups}}


class JobRun:
    """The outcome of one runner job: ``status``, ``rc``, ``events``, ``stats``, ``stdout``."""

    def __init__(self, runner, private_data_dir, hosts):
        self.runner = runner
        self.private_data_dir = private_data_dir
        self.hosts = hosts
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        self.stats = runner.stats
        with open(os.path.join(runner.config.artifact_dir, "stdout"), encoding="utf-8", errors="replace") as handle:
            self.stdout = handle.read()

    def task_events(self, task, event="runner_on_ok"):
        """The events of ``event`` for the task called ``task``."""
        return [e for e in self.events if e["event"] == event and e["event_data"].get("task") == task]

    def artifact_data(self):
        """The set_stats data of the run (the playbook_on_stats event)."""
        stats = [e for e in self.events if e["event"] == "playbook_on_stats"]
        return stats[-1]["event_data"].get("artifact_data") or {} if stats else {}


def prepare_job(base_dir, template, defs, credential_inputs, job_id, user, answers=None, job_type=None,
                hosts=None, host_vars=None, extra_env=None, workflow_job=None, extra_vars=None):
    """Lay out the private data dir of one job; returns (runner keyword arguments, hosts)."""
    import ansible_runner  # noqa: F401  (fail early when it is missing)

    private = os.path.join(base_dir, "job-%d" % job_id)
    if os.path.exists(private):
        shutil.rmtree(private)
    os.makedirs(os.path.join(private, "env"))
    env = {"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False",
           "ANSIBLE_LOCAL_TEMP": os.path.join(private, "tmp"),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    env.update(ee_environment())
    for name in template.get("credentials") or ():
        credential = find(defs, "controller_credentials", name)
        ctype = find(defs, "controller_credential_types", credential["credential_type"])
        env.update(inject_credential(ctype, credential_inputs[name], private))
    env.update(extra_env or {})
    variables = dict(template.get("extra_vars") or {})
    variables.update(survey_extra_vars(template, answers or {}))
    variables.update(extra_vars or {})   # a workflow's variables win over the template's survey
    variables.update(awx_meta_vars(job_id, template, user, template["inventory"], workflow_job))
    all_hosts = [h["name"] for h in defs.get("controller_hosts") or () if h["inventory"] == template["inventory"]]
    hosts = list(hosts if hosts is not None else all_hosts)
    inventory = inventory_for(defs, template, hosts, dict(host_vars or {}, ansible_python_interpreter=sys.executable))
    os.makedirs(os.path.join(private, "inventory"))
    with open(os.path.join(private, "inventory", "hosts.yml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory, handle)
    cmdline = "--check" if (job_type or template.get("job_type", "run")) == "check" else None
    kwargs = {"private_data_dir": private, "project_dir": REPO, "playbook": template["playbook"],
              "inventory": os.path.join(private, "inventory", "hosts.yml"), "extravars": variables,
              "envvars": env, "quiet": True, "cmdline": cmdline, "ident": "job-%d" % job_id}
    return kwargs, hosts


def run_job(base_dir, template, defs, credential_inputs, job_id, user, **options):
    """Run one job of ``template`` to its end; returns a JobRun."""
    import ansible_runner

    kwargs, hosts = prepare_job(base_dir, template, defs, credential_inputs, job_id, user, **options)
    runner = ansible_runner.run(**kwargs)
    return JobRun(runner, kwargs["private_data_dir"], hosts)


def run_sliced(base_dir, template, defs, credential_inputs, first_job_id, user, **options):
    """Run a sliced template as AWX does: one job per slice, all at once, each with its slice's
    hosts, inside one workflow job; returns the JobRuns in slice order."""
    import ansible_runner

    count = template.get("job_slice_count") or 1
    all_hosts = [h["name"] for h in defs.get("controller_hosts") or () if h["inventory"] == template["inventory"]]
    started = []
    for number in range(1, count + 1):
        kwargs, hosts = prepare_job(base_dir, template, defs, credential_inputs, first_job_id + number, user,
                                    hosts=slice_hosts(all_hosts, number, count),
                                    workflow_job=(first_job_id, template["name"]), **options)
        thread, runner = ansible_runner.run_async(**kwargs)
        started.append((thread, runner, kwargs, hosts))
    runs = []
    for thread, runner, kwargs, hosts in started:
        thread.join(600)
        runs.append(JobRun(runner, kwargs["private_data_dir"], hosts))
    return runs


class NodeRun:
    """One node of a workflow run: ``identifier``, ``status`` (successful/failed) and its JobRuns
    (none for an approval node, several for a sliced template)."""

    def __init__(self, identifier, status, jobs=()):
        self.identifier = identifier
        self.status = status
        self.jobs = list(jobs)


def run_workflow(base_dir, workflow, defs, credential_inputs, first_job_id, user, answers=None, approve=None,
                 **options):
    """Run a workflow of ``simplified_workflow_nodes`` as AWX does; returns the NodeRuns in run order.

    Roots run first; after a node, its ``success_nodes`` or ``failure_nodes`` (and
    ``always_nodes``) follow. The workflow's extra_vars and survey answers go to every job
    (AWX passes them whatever the template prompts for); a node's ``job_type`` and
    ``extra_data`` are its prompts; what the jobs before a node published with ``set_stats``
    reaches it as extra variables too (AWX's artifacts). An approval node asks
    ``approve(node)`` (approved: its success path; denied: its failure path).
    """
    nodes = {node["identifier"]: node for node in workflow["simplified_workflow_nodes"]}
    targets = {t for node in nodes.values() for link in ("success_nodes", "failure_nodes", "always_nodes")
               for t in node.get(link) or ()}
    pending = [identifier for identifier in nodes if identifier not in targets]
    # AWX's precedence: the workflow's own extra_vars, then its survey, then the launch's extra_vars
    variables = dict(workflow.get("extra_vars") or {})
    variables.update(survey_extra_vars(workflow, answers or {}))
    variables.update(options.pop("extra_vars", None) or {})
    ran, job_id, artifacts = [], first_job_id, {}
    while pending:
        identifier = pending.pop(0)
        node = nodes[identifier]
        if node.get("approval_node"):
            status, jobs = ("successful" if (approve or (lambda n: True))(node) else "failed"), []
        else:
            template = find(defs, "controller_templates", node["unified_job_template"])
            extra = dict(artifacts.get(identifier) or {})   # the set_stats of the jobs before it
            extra.update(variables)
            extra.update(node.get("extra_data") or {})
            job_id += 10
            common = dict(options, extra_vars=extra, job_type=node.get("job_type"),
                          workflow_job=(first_job_id, workflow["name"]))
            if (template.get("job_slice_count") or 1) > 1:
                common.pop("workflow_job")
                jobs = run_sliced(base_dir, template, defs, credential_inputs, job_id, user, **common)
            else:
                jobs = [run_job(base_dir, template, defs, credential_inputs, job_id, user, **common)]
            status = "successful" if all(job.status == "successful" for job in jobs) else "failed"
        ran.append(NodeRun(identifier, status, jobs))
        follow = list(node.get("success_nodes" if status == "successful" else "failure_nodes") or [])
        follow += list(node.get("always_nodes") or [])
        passed = dict(artifacts.get(identifier) or {})
        for job in jobs:
            passed.update(job.artifact_data())
        for child in follow:
            artifacts.setdefault(child, {}).update(passed)
        pending.extend(follow)
    return ran
