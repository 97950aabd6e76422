"""Offline validation of the AWX definitions (extensions/awx/vars, infra.aap_configuration format).

The definitions pass every rule of awx_rules.py; a copy with one seeded fault fails, and the
problem names the offending field. The awx.awx option lists come from the PyPI ``ansible``
wheel, downloaded once into .build/awx-wheel/ (awx_docs.py).
"""

import copy
import os
import shutil

import pytest
import yaml

from . import awx_rules
from .awx_docs import REPO, awx_module_docs

SLICED = "CEPtra replay workers (sliced)"
PARTIAL = "CEPtra scenario partial recovery"
FULL_WORKFLOW = "CEPtra full recovery (recover, then verify or roll back)"
CTYPE = "CEPtra control plane"


@pytest.fixture(scope="module")
def docs():
    return awx_module_docs()


def _template_playbooks():
    return sorted({t["playbook"] for t in awx_rules.load_definitions()["controller_templates"]})


def test_awx_module_docs_come_from_the_wheel(docs):
    assert docs["job_template"]["version"].count(".") == 2
    options = docs["job_template"]["options"]
    assert {"job_slice_count", "survey_spec", "allow_simultaneous", "ask_job_type_on_launch"} <= set(options)
    assert options["job_type"]["choices"] == ["run", "check"]
    assert "approval_node" in docs["workflow_job_template_node"]["options"]


def test_definitions_pass_the_offline_validation(docs):
    assert awx_rules.validate(docs=docs) == []


# Playbooks that are no AWX job: the lab demo (scripts/demo) starts its own lab.
NOT_A_JOB = {"playbooks/demo_lab.yml"}


def test_every_playbook_has_a_job_template():
    playbooks = {"playbooks/" + name for name in os.listdir(os.path.join(REPO, "playbooks")) if name.endswith(".yml")}
    assert playbooks - NOT_A_JOB - set(_template_playbooks()) == set()


def test_every_template_playbook_passes_syntax_check():
    playbooks = [os.path.join(REPO, p) for p in _template_playbooks()]
    assert playbooks
    assert awx_rules.syntax_check(playbooks) == {}


def test_a_broken_playbook_fails_the_syntax_check_by_name(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("- name: Broken\n  hosts: all\n  tasks:\n    - name: No module\n      not_a_module_anywhere: {}\n")
    good = os.path.join(REPO, _template_playbooks()[0])
    failures = awx_rules.syntax_check([good, str(broken)])
    assert list(failures) == [str(broken)]
    assert "not_a_module_anywhere" in failures[str(broken)]


def _objects(data, variable, name):
    return next(o for o in data[variable] if o.get("name") == name)


def _sliced(data):
    return _objects(data, "controller_templates", SLICED)


def _ctype(data):
    return _objects(data, "controller_credential_types", CTYPE)


def _add_workflow(data, nodes):
    data.setdefault("controller_workflows", []).append(
        {"name": "Seeded workflow", "organization": "Default", "allow_simultaneous": False,
         "simplified_workflow_nodes": nodes})


# (id, mutation of the loaded definitions, text the problem must contain: the offending field)
FAULTS = [
    ("unknown-option", lambda d: _sliced(d).update(allow_simultanous=False),
     "controller_templates[%s].allow_simultanous: not an option" % SLICED),
    ("bad-choice", lambda d: _sliced(d).update(job_type="dry"),
     "controller_templates[%s].job_type: 'dry' is not one of" % SLICED),
    ("bad-type", lambda d: _sliced(d).update(job_slice_count="three"),
     "controller_templates[%s].job_slice_count: expected int" % SLICED),
    ("survey-default-type", lambda d: _sliced(d)["survey_spec"]["spec"][3].update(default="sixty"),
     "controller_templates[%s].survey_spec.spec[3].default" % SLICED),
    ("survey-duplicate-variable",
     lambda d: _sliced(d)["survey_spec"]["spec"].append(copy.deepcopy(_sliced(d)["survey_spec"]["spec"][0])),
     "controller_templates[%s].survey_spec.spec[6].variable: 'ceptra_incident_id' is asked twice" % SLICED),
    ("survey-choices", lambda d: _sliced(d)["survey_spec"]["spec"][1].update(type="multiplechoice"),
     "controller_templates[%s].survey_spec.spec[1].choices" % SLICED),
    ("survey-min-max", lambda d: _sliced(d)["survey_spec"]["spec"][3].update(min=100, max=10),
     "controller_templates[%s].survey_spec.spec[3].min" % SLICED),
    ("survey-question-type", lambda d: _sliced(d)["survey_spec"]["spec"][0].update(type="date"),
     "controller_templates[%s].survey_spec.spec[0].type: 'date'" % SLICED),
    ("injector-ansible-env", lambda d: _ctype(d)["injectors"]["env"].update(ANSIBLE_CALLBACKS_ENABLED="x"),
     "controller_credential_types[%s].injectors.env.ANSIBLE_CALLBACKS_ENABLED" % CTYPE),
    ("injector-undefined-field", lambda d: _ctype(d)["injectors"]["env"].update(CEPTRA_URL="{{ endpoint }}"),
     "controller_credential_types[%s].injectors.env.CEPTRA_URL: 'endpoint' is undefined" % CTYPE),
    ("injector-undefined-file",
     lambda d: _ctype(d)["injectors"]["env"].update(CEPTRA_CA_PATH="{{ tower.filename.ca_bundle }}"),
     "controller_credential_types[%s].injectors.env.CEPTRA_CA_PATH" % CTYPE),
    ("injector-missing-connection", lambda d: _ctype(d)["injectors"]["env"].pop("CEPTRA_CA_PATH"),
     "controller_credential_types[%s].injectors.env: injects" % CTYPE),
    ("input-field-key", lambda d: _ctype(d)["inputs"]["fields"][0].update(placeholder="https://..."),
     "controller_credential_types[%s].inputs.fields[0].placeholder" % CTYPE),
    ("input-required-unknown", lambda d: _ctype(d)["inputs"]["required"].append("password"),
     "controller_credential_types[%s].inputs.required[1]: 'password'" % CTYPE),
    ("credential-input", lambda d: d["controller_credentials"][0]["inputs"].update(password="x"),
     "controller_credentials[CEPtra production control plane].inputs.password"),
    ("undefined-project", lambda d: _sliced(d).update(project="other"),
     "controller_templates[%s].project: project 'other' is not defined" % SLICED),
    ("simultaneous", lambda d: _sliced(d).update(allow_simultaneous=True),
     "controller_templates[%s].allow_simultaneous: must be false" % SLICED),
    ("job-type-prompt", lambda d: _sliced(d).update(ask_job_type_on_launch=False),
     "controller_templates[%s].ask_job_type_on_launch: must be true" % SLICED),
    ("slice-without-worker-list", lambda d: _sliced(d)["extra_vars"].pop("replay_workers_hosts"),
     "controller_templates[%s].extra_vars.replay_workers_hosts" % SLICED),
    ("missing-playbook", lambda d: _sliced(d).update(playbook="playbooks/nope.yml"),
     "controller_templates[%s].playbook: 'playbooks/nope.yml'" % SLICED),
    ("survey-variable-not-a-role-input",
     lambda d: _sliced(d)["survey_spec"]["spec"][0].update(variable="replay_workers_color"),
     "controller_templates[%s].survey_spec.spec[0].variable: 'replay_workers_color' is not an input" % SLICED),
    ("workflow-unknown-template", lambda d: _add_workflow(d, [{"identifier": "run", "unified_job_template": "Nope"}]),
     "controller_workflows[Seeded workflow].simplified_workflow_nodes[run].unified_job_template: job template 'Nope'"),
    ("workflow-unknown-link", lambda d: _add_workflow(d, [{"identifier": "run", "unified_job_template": SLICED,
                                                           "success_nodes": ["verify"]}]),
     "controller_workflows[Seeded workflow].simplified_workflow_nodes[run].success_nodes: 'verify'"),
    ("workflow-approval-and-template",
     lambda d: _add_workflow(d, [{"identifier": "gate", "unified_job_template": SLICED,
                                  "approval_node": {"name": "Approve"}}]),
     "controller_workflows[Seeded workflow].simplified_workflow_nodes[gate]: a node runs either"),
    ("workflow-node-option", lambda d: _add_workflow(d, [{"identifier": "run", "unified_job_template": SLICED,
                                                          "run_type": "check"}]),
     "controller_workflows[Seeded workflow].simplified_workflow_nodes[run].run_type: not an option"),
    ("workflow-prompt-not-asked",
     lambda d: (_sliced(d).update(ask_job_type_on_launch=True),
                _add_workflow(d, [{"identifier": "plan", "unified_job_template": SLICED, "limit": "replay-worker-1"}])),
     "controller_workflows[Seeded workflow].simplified_workflow_nodes[plan].limit: template"),
    ("survey-variable-set-by-the-playbook",
     lambda d: _objects(d, "controller_templates", PARTIAL)["survey_spec"]["spec"][1].update(
         variable="history_replay_window_start_ns"),
     "controller_templates[%s].survey_spec.spec[1].variable: playbooks/scenario_partial.yml passes "
     "'history_replay_window_start_ns' to a role itself" % PARTIAL),
    ("survey-type-for-the-argument",
     lambda d: _objects(d, "controller_templates", PARTIAL)["survey_spec"]["spec"][6].update(type="text"),
     "controller_templates[%s].survey_spec.spec[6].type: a text question cannot answer 'preflight_min_coverage'"
     % PARTIAL),
    ("survey-bool-choices",
     lambda d: _objects(d, "controller_templates", "CEPtra rollback")["survey_spec"]["spec"][1].update(
         choices=["false", "maybe"]),
     "controller_templates[CEPtra rollback].survey_spec.spec[1].choices: ['maybe']"),
    ("workflow-extra-var-set-by-a-playbook",
     lambda d: _objects(d, "controller_workflows", FULL_WORKFLOW)["extra_vars"].update(overrides_valid_for="9h"),
     "controller_workflows[%s].extra_vars.overrides_valid_for: playbooks/scenario_full.yml passes" % FULL_WORKFLOW),
    ("workflow-simultaneous", lambda d: _objects(d, "controller_workflows", FULL_WORKFLOW).update(allow_simultaneous=True),
     "controller_workflows[%s].allow_simultaneous: must be false" % FULL_WORKFLOW),
    ("unknown-variable", lambda d: d.update(controller_job_templates=[]),
     "controller_job_templates: not an infra.aap_configuration variable"),
]


@pytest.mark.parametrize("mutate, expected", [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_a_seeded_bad_copy_fails_naming_the_field(tmp_path, docs, mutate, expected):
    data = awx_rules.load_definitions()
    mutate(data)
    seeded = tmp_path / "vars"
    seeded.mkdir()
    (seeded / "all.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    problems = awx_rules.validate(str(seeded), docs=docs)
    assert any(expected in problem for problem in problems), problems


def test_the_copy_itself_passes(tmp_path, docs):
    seeded = tmp_path / "vars"
    shutil.copytree(awx_rules.DEFINITIONS, seeded)
    assert awx_rules.validate(str(seeded), docs=docs) == awx_rules.validate(docs=docs)
