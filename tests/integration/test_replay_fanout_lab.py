"""Fan-out through Ansible's own inventory and forks: one play over three worker hosts
(the replay_fanout target under targets/).

Each host replays the partitions `worker_hosts`/`this_host` assign to it, all sharing one
PostgreSQL cursor store; together they cover every partition exactly once, the lab applies
every distinct historic event once, and any host can read the whole run's progress.
"""

import os
import sys
import uuid

import pytest
import yaml

from ceptra_lab.traffic import seed_history

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(os.path.dirname(REPO), "shared", "reference", "bundles", "gaming_cheat_detection.yaml")
WORKERS = ["worker-a", "worker-b", "worker-c"]


@pytest.mark.postgres
def test_three_worker_hosts_cover_every_partition_once(lab_factory, run_target, tmp_path, pg_dsn):
    import psycopg

    lab = lab_factory(partitions=8, test_mode=True)
    suffix = uuid.uuid4().hex[:8]
    history, cursors = "fanout_history_" + suffix, "fanout_cursors_" + suffix
    rows = seed_history(pg_dsn, partitions=8, events_per_partition=400, bundle=BUNDLE,
                        duplicate_ratio=0.03, table=history)
    inventory = tmp_path / "workers.yml"
    host_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"replay_workers": {
        "hosts": {name: dict(host_vars) for name in WORKERS}}}}}))
    try:
        extravars = {"ceptra_url": lab.url, "ceptra_token": lab.tokens["operator"], "dsn": pg_dsn,
                     "history_table": history, "cursor_table": cursors, "target_hosts": "replay_workers"}
        result = run_target("replay_fanout", extravars, inventory=str(inventory), env={"ANSIBLE_FORKS": "3"})
        assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
        replays = [rec for rec in result.records if rec["task"] == "Replay my share of the partitions"
                   and rec["status"] == "ok"]
        shares = {rec["host"]: rec["result"]["assigned_partitions"] for rec in replays}
        assert sorted(shares) == WORKERS
        assigned = [p for share in shares.values() for p in share]
        assert sorted(assigned, key=int) == [str(p) for p in range(8)]   # disjoint and covering
        assert all(len(share) in (2, 3) for share in shares.values())    # balanced

        info = result.results["Progress of every partition from the shared cursor store"]
        assert info["done"] is True and sorted(info["partitions"], key=int) == [str(p) for p in range(8)]
        assert info["events_done"] == info["events_total"] == rows

        with psycopg.connect(pg_dsn) as conn:
            distinct = conn.execute("SELECT COUNT(*) FROM (SELECT DISTINCT part_id, event_id FROM %s) d"
                                    % history).fetchone()[0]
        assert distinct < rows   # the history really holds copies
        status, dummy, state = lab.request("GET", "/v1/state", role="observer")
        assert status == 200
        assert sum(p["commit_index"] for p in state["partitions"]) == distinct

        # An AWX sliced job gives each slice an inventory with only its own hosts, so
        # groups['replay_workers'] is a different list there: refused, nothing sent.
        sliced = tmp_path / "slice-2.yml"
        sliced.write_text(yaml.safe_dump({"all": {"children": {"replay_workers": {
            "hosts": {"worker-b": dict(host_vars)}}}}}))
        result = run_target("replay_fanout", extravars, inventory=str(sliced))
        assert result.rc != 0
        failed = [rec for rec in result.records if rec["status"] == "failed"]
        assert [rec["host"] for rec in failed] == ["worker-b"]
        msg = failed[0]["result"]["msg"]
        assert "['worker-a', 'worker-b', 'worker-c']" in msg and "passes ['worker-b']" in msg
        assert "AWX sliced job" in msg and "reassign_workers" in msg
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for table in (history, cursors, cursors + "_pause", cursors + "_workers"):
                conn.execute("DROP TABLE IF EXISTS %s" % table)
