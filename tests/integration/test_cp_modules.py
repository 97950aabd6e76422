"""Integration tests of the control-plane modules: ansible-playbook against a real lab.

For every state-changing module (bundle, activation, wal_replay, metrics_snapshot): check mode
reports the change and changes nothing; the real run changes it; the same run again reports
``changed: false``. The tasks are the targets under targets/ (run_target.yml runs them);
bundles come from ../shared/reference/bundles (read at test time).
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

import yaml

COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           ".build", "collections")
SHARED = os.environ["CEPTRA_SHARED"]   # reference material beside the checkout (root conftest.py)
BUNDLES = os.path.join(SHARED, "reference/bundles")
GAMING = os.path.join(BUNDLES, "gaming_cheat_detection.yaml")


def call(lab, method, path, body=None, role="admin"):
    """One direct HTTP call to the lab (fault hooks, appends, checks behind the modules' back)."""
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(lab.url + path, method=method, data=data, headers={
        "Authorization": "Bearer " + lab.tokens[role], "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def append_events(lab, part_id, events):
    """Append metric events to one partition and wait until they are applied."""
    for event in events:
        answer = call(lab, "POST", "/append", dict(event, part_id=part_id), role="ingest")
        assert answer["status"] == "Healthy", answer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = call(lab, "GET", "/v1/state", role="observer")
        part = next(p for p in state["partitions"] if p["part_id"] == part_id)
        if part["applied_index"] >= part["commit_index"]:
            return
        time.sleep(0.05)
    raise AssertionError("partition %s did not apply its events" % part_id)


def sample_events(prefix, count, now_ns):
    return [{"event_id": "%s-%d" % (prefix, i), "partition_key": "player-%d" % (i % 3), "ts_ns": now_ns - i * 10 ** 9,
             "schema_key": "metric_sample_v1",
             "payload": {"metric": "anti_cheat_flags_total", "labels": {"queue": "ranked", "player_id": "player-%d" % (i % 3)},
                         "value": float(i % 4)}} for i in range(count)]


def upgrade_false_bundle(tmp_path):
    """The gaming reference bundle, renamed, with one query marked upgrade: false (saved as JSON)."""
    with open(GAMING, encoding="utf-8") as handle:
        bundle = yaml.safe_load(handle)
    bundle["bundle"]["name"] = "gaming_needs_replay"
    bundle["bundle"]["def_version"] = 2
    for phase in bundle["workflow"]["phases"]:
        queries = phase.get("options", {}).get("queries") or {}
        if "anti_cheat_flags" in queries:
            queries["anti_cheat_flags"]["upgrade"] = False
    path = tmp_path / "gaming_needs_replay.json"
    path.write_text(json.dumps(bundle))
    return str(path)


def operator_vars(lab, **extra):
    return dict({"ceptra_url": lab.url, "ceptra_token": lab.tokens["operator"]}, **extra)


def assert_ok(run, *tasks):
    for task in tasks:
        assert run.status(task) == "ok", (task, run.results.get(task), run.stdout[-3000:])


# ------------------------------------------------------------------------------------------ bundle + activation

def test_bundle_then_activation_check_real_rerun(lab_factory, run_target):
    lab = lab_factory(partitions=4, test_mode=True)
    run = run_target("bundle_activation", operator_vars(
        lab, bundle_src=GAMING, rejected_src=os.path.join(BUNDLES, "iot_workflow.yaml")), diff=True)
    assert_ok(run, "validate", "upload in check mode", "upload", "upload again", "wait for shadows",
              "activate in check mode", "activate", "activate again")
    res = run.results
    assert res["validate"]["changed"] is False and res["validate"]["report"]["bundle_name"] == "gaming_liveops_cheat_detection"
    assert res["upload in check mode"]["changed"] is True and res["upload in check mode"]["would_upload"] is True
    assert res["list after check mode"]["bundles"] == []
    assert res["upload"]["changed"] is True and res["upload"]["bundle_id"].startswith("gaming_liveops_cheat_detection@")
    assert res["upload again"]["changed"] is False
    assert res["wait for shadows"]["all_ready"] is True
    assert res["activate in check mode"]["changed"] is True and res["activate in check mode"]["would_activate"] is True
    assert res["info after check-mode activation"]["is_active"] is False
    assert res["activate"]["changed"] is True and res["activate"]["barrier"]["state"] == "committed"
    assert res["activate again"]["changed"] is False
    assert call(lab, "GET", "/v1/definitions", role="observer")["active"]["bundle_id"] == res["upload"]["bundle_id"]
    # The reference bundle with YAML traps fails with the cluster's path + message for each problem.
    assert run.status("rejected reference bundle") == "failed"
    rejected = res["rejected reference bundle"]
    assert "does not parse" in rejected["msg"] and "unquoted multi-line YAML scalar" in rejected["msg"]
    assert "gateway_id" in rejected["msg"] and all("path" in v for v in rejected["violations"])
    # No secret in the output even with --diff.
    assert lab.tokens["operator"] not in run.stdout


def test_whole_playbook_in_check_mode_changes_nothing(lab_factory, run_target):
    lab = lab_factory(partitions=2, test_mode=True)
    run = run_target("bundle_upload", operator_vars(lab, bundle_src=os.path.join(BUNDLES, "supply_chain_workflow.yaml")),
                     check=True)
    assert_ok(run, "upload")
    assert run.results["upload"]["changed"] is True
    assert call(lab, "GET", "/v1/definitions", role="observer")["bundles"] == []


# ------------------------------------------------------------------------------------------ upgrade: false

def test_upgrade_false_bundle_needs_wal_replay_before_activation(lab_factory, run_target, tmp_path):
    lab = lab_factory(partitions=4, test_mode=True)
    now = time.time_ns()
    append_events(lab, "0", sample_events("p0", 5, now))
    append_events(lab, "2", sample_events("p2", 3, now))
    run = run_target("wal_replay_before_activation", operator_vars(lab, bundle_src=upgrade_false_bundle(tmp_path)))
    assert_ok(run, "upload", "wait settled", "activate without waiting", "abort check", "abort", "abort again",
              "replay check", "replay", "replay again", "wait ready", "activate")
    res = run.results
    assert res["upload"]["changed"] is True
    assert res["wait settled"]["needs_replay"] == ["0", "1", "2", "3"]
    assert res["wait settled"]["shadow"]["0"]["cep_shadow_state"] == "SHADOW_WAITING_FOR_WAL"
    assert run.status("activate before replay") == "failed"
    assert "need a WAL replay" in res["activate before replay"]["msg"]
    pending = res["activate without waiting"]
    assert pending["changed"] is True and pending["barrier"]["state"] == "pending"
    assert pending["barrier"]["missing_partitions"] == ["0", "1", "2", "3"]
    assert res["abort check"]["changed"] is True and res["abort check"]["barrier"]["state"] == "pending"
    assert res["abort"]["changed"] is True and res["abort"]["barrier"]["state"] == "aborted"
    assert res["abort again"]["changed"] is False
    assert res["replay check"]["changed"] is True and res["replay check"]["would_start"] is True
    assert res["info after replay check"]["needs_replay"] == ["0", "1", "2", "3"]
    replay = res["replay"]
    assert replay["changed"] is True and replay["state"] == "completed" and replay["part_ids"] == ["0", "1", "2", "3"]
    assert replay["partitions"]["0"]["to_index"] == 5 and replay["partitions"]["0"]["replayed_index"] == 5
    assert replay["partitions"]["2"]["replayed_index"] == 3 and all(p["done"] for p in replay["partitions"].values())
    assert res["replay again"]["changed"] is False and res["replay again"]["part_ids"] == []
    assert res["wait ready"]["all_ready"] is True
    assert res["activate"]["changed"] is True and res["activate"]["barrier"]["state"] == "committed"
    assert res["activate"]["barrier"]["barrier_id"] != pending["barrier"]["barrier_id"]
    kinds = [r["kind"] for r in call(lab, "GET", "/v1/audit", role="observer")["records"]]
    assert kinds.count("replay_job") == 1


# ------------------------------------------------------------------------------------------ shadow failure

def test_activation_blocked_by_failed_shadow_until_excluded(lab_factory, run_target):
    lab = lab_factory(partitions=4, test_mode=True)
    with open(GAMING, encoding="utf-8") as handle:
        uploaded = call(lab, "POST", "/v1/definitions", yaml.safe_load(handle), role="operator")
    call(lab, "POST", "/v1/test/faults", {"part_id": "1", "shadow_state": "SHADOW_FAILED"})
    time.sleep(0.4)  # let the other shadows warm (lab default 300 ms)
    run = run_target("activation_excluding_failed_shadow", operator_vars(lab, bundle_id=uploaded["bundle_id"]))
    assert_ok(run, "activate excluding check", "activate excluding", "activate excluding again")
    res = run.results
    assert run.status("activate blocked") == "failed"
    blocked = res["activate blocked"]
    assert "1 (SHADOW_FAILED)" in blocked["msg"]
    assert "exclude_partitions" in blocked["msg"] and "abort: true" in blocked["msg"]
    assert blocked["failed_partitions"] == ["1"]
    assert res["activate excluding check"]["changed"] is True
    assert res["info after check"]["is_active"] is False and res["info after check"]["failed_partitions"] == ["1"]
    committed = res["activate excluding"]
    assert committed["changed"] is True and committed["barrier"]["state"] == "committed"
    assert committed["targeted_partitions"] == ["0", "2", "3"] and "1" not in committed["barrier"]["barrier_index"]
    assert res["activate excluding again"]["changed"] is False


# ------------------------------------------------------------------------------------------ snapshots

def test_snapshots_save_and_diff(lab_factory, run_target, tmp_path):
    lab = lab_factory(partitions=2, test_mode=True)
    other = lab_factory(partitions=2, test_mode=True)
    now = time.time_ns()
    events = sample_events("s", 8, now)
    append_events(lab, "0", events)
    append_events(lab, "1", list(reversed(events)))          # same set, other order
    append_events(other, "0", events[4:] + events[:4])
    dest = str(tmp_path / "snapshots.json")
    extravars = operator_vars(lab, dest=dest, other_url=other.url, other_token=other.tokens["observer"])
    run = run_target("snapshots", extravars, verbosity=3)
    assert_ok(run, "save check", "save", "save again", "partitions equal", "clusters equal")
    res = run.results
    assert res["save check"]["changed"] is True
    assert res["save"]["changed"] is True and res["save again"]["changed"] is False
    assert res["save"]["digests"]["0"] == res["save"]["digests"]["1"]
    assert json.loads(open(dest, encoding="utf-8").read())["snapshots"]["1"]["applied_index"] == 8
    assert res["partitions equal"]["equal"] is True and res["clusters equal"]["equal"] is True
    assert res["clusters equal"]["right"] == "partition 0 of %s" % other.url
    assert "MODULE_ARGS" in run.stdout or "<localhost>" in run.stdout  # really ran with -vvv
    assert other.tokens["observer"] not in run.stdout and lab.tokens["operator"] not in run.stdout

    extra = sample_events("extra", 1, now)
    extra[0]["payload"]["labels"]["player_id"] = "player-new"
    append_events(lab, "1", extra)
    run = run_target("snapshots_after_change", extravars)
    assert_ok(run, "file against live", "save changed")
    res = run.results
    assert run.status("partitions differ") == "failed"
    differ = res["partitions differ"]
    assert differ["equal"] is False and "anti_cheat_flags_total" in differ["differing_metrics"]
    assert differ["counts"]["only_right"] + differ["counts"]["value_differences"] >= 1
    assert res["file against live"]["equal"] is False
    assert res["save changed"]["changed"] is True


def test_metrics_snapshot_outside_test_mode_says_so(lab_factory, run_target):
    lab = lab_factory(partitions=1, test_mode=False)
    run = run_target("snapshot_outside_test_mode", operator_vars(lab))
    assert run.status("snapshot") == "failed"
    assert "not in test mode" in run.results["snapshot"]["msg"]


def test_ansible_doc_renders_every_control_plane_module():
    modules = ["bundle", "bundle_info", "activation", "wal_replay", "metrics_snapshot", "snapshot_diff"]
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([exe, "--json"] + ["ceptra.backfill.%s" % m for m in modules], capture_output=True,
                          text=True, env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    for module in modules:
        doc = docs["ceptra.backfill.%s" % module]
        assert doc["doc"]["options"]["url"]["required"] is True, module
        assert doc["doc"]["attributes"]["check_mode"]["support"] == "full", module
        assert doc["examples"] and doc["return"], module
