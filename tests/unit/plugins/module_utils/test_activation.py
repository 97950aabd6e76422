"""Unit tests of _activation: activation barriers (idempotent, never past failed shadows) and WAL replay jobs."""

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _activation as act
from ansible_collections.ceptra.backfill.plugins.module_utils._definitions import ControlPlaneError

from ..test_support.clock import FakeTime
from ..test_support.control_plane import (
    FAILED_SHADOW,
    PENDING_SHADOW,
    READY_SHADOW,
    WAITING_SHADOW,
    ControlPlane,
)


def run(cluster, bundle_id="b@1", **kwargs):
    fake = FakeTime()
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("interval", 1)
    return act.activate(cluster, bundle_id, sleep=fake.sleep, clock=fake.clock, **kwargs)


# ---------------------------------------------------------------------------- activation


def test_activation_commits_and_reruns_are_unchanged():
    cluster = ControlPlane()
    cluster.add_bundle("b@1")
    first = run(cluster)
    assert first["changed"] is True
    assert first["barrier"]["state"] == "committed"
    assert first["active_bundle_id"] == "b@1"
    assert first["diff"] == {"before": {"active_bundle_id": None}, "after": {"active_bundle_id": "b@1"}}
    second = run(cluster)
    assert second["changed"] is False and "already active" in second["msg"]
    assert len(cluster.writes("activate")) == 1


def test_check_mode_reports_the_plan_and_posts_nothing():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p2=PENDING_SHADOW)
    result = run(cluster, check_mode=True)
    assert result["changed"] is True and result["would_activate"] is True
    assert result["targeted_partitions"] == ["0", "1", "2", "3"]
    assert result["blocking_partitions"] == ["2"]
    assert cluster.writes() == []
    assert cluster.active is None


def test_failed_shadow_blocks_and_names_both_choices():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p1=FAILED_SHADOW,
                       p3=dict(FAILED_SHADOW, cep_shadow_state="SHADOW_TIMEOUT"))
    for check_mode in (True, False):
        with pytest.raises(ControlPlaneError) as caught:
            run(cluster, check_mode=check_mode)
        message = caught.value.message
        assert "1 (SHADOW_FAILED), 3 (SHADOW_TIMEOUT)" in message
        assert 'exclude_partitions: ["1", "3"]' in message and "abort: true" in message
        assert caught.value.details["failed_partitions"] == ["1", "3"]
    assert cluster.writes() == []


def test_a_lower_readiness_threshold_does_not_force_past_failed_shadows():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p1=FAILED_SHADOW)
    with pytest.raises(ControlPlaneError):
        run(cluster, readiness_threshold=0.5)
    assert cluster.writes() == []


def test_excluding_the_failed_partition_commits_without_it():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p1=FAILED_SHADOW)
    result = run(cluster, exclude_partitions=["1"])
    assert result["changed"] is True and result["barrier"]["state"] == "committed"
    assert result["targeted_partitions"] == ["0", "2", "3"]
    body = cluster.writes("activate")[0][4]
    assert body == {"bundle_id": "b@1", "readiness_threshold": 1.0, "exclude_partitions": ["1"], "abort": False}


def test_excluding_an_unknown_partition_is_refused():
    cluster = ControlPlane()
    cluster.add_bundle("b@1")
    with pytest.raises(ControlPlaneError) as caught:
        run(cluster, exclude_partitions=["9"])
    assert "partition(s) 9" in caught.value.message


def test_excluding_every_partition_is_refused():
    cluster = ControlPlane(partitions=2)
    cluster.add_bundle("b@1")
    with pytest.raises(ControlPlaneError) as caught:
        run(cluster, exclude_partitions=["0", "1"])
    assert "target no partition" in caught.value.message


def test_partitions_needing_a_wal_replay_fail_fast_when_waiting():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p2=WAITING_SHADOW)
    with pytest.raises(ControlPlaneError) as caught:
        run(cluster)
    assert "2 (SHADOW_WAITING_FOR_WAL)" in caught.value.message and "wal_replay" in caught.value.message
    assert cluster.writes() == []


def test_without_wait_a_pending_barrier_is_returned():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p0=PENDING_SHADOW)
    result = run(cluster, wait=False)
    assert result["changed"] is True
    assert result["barrier"]["state"] == "pending" and result["barrier"]["missing_partitions"] == ["0"]
    assert result["active_bundle_id"] is None


def test_a_pending_barrier_is_reused_and_waited_on():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p0=PENDING_SHADOW)
    run(cluster, wait=False)
    # A later run finds the barrier through /readyz and waits; the shadow warms meanwhile.
    cluster.set_shadow("b@1", "0", READY_SHADOW)
    result = run(cluster)
    assert result["barrier"]["barrier_id"] == "barrier-1" and result["barrier"]["state"] == "committed"
    assert "barrier-1 for b@1 was already" in result["msg"]
    assert len(cluster.writes("activate")) == 1
    assert result["changed"] is True


class ReferenceReadyzCluster(ControlPlane):
    """A cluster whose /readyz is the reference-implementation variant: no
    ``activation_barrier_id``, the barrier as an object and a Clustor ``readiness`` list."""

    def _get_readyz(self, call):
        latest = list(self.barriers)[-1] if self.barriers else None
        barrier = {"barrier_id": latest, "bundle_id": self.barriers[latest]["bundle_id"]} if latest else None
        return 503, {"barrier": barrier, "readiness_threshold": 0.99,
                     "readiness": [{"partition_id": p, "shadow_apply_state": "Replaying", "warmup_ready_ratio": 0.5}
                                   for p in self.part_ids]}


def test_a_pending_barrier_is_found_through_a_reference_variant_readyz():
    cluster = ReferenceReadyzCluster()
    cluster.add_bundle("b@1", READY_SHADOW, p0=PENDING_SHADOW)
    run(cluster, wait=False)
    cluster.set_shadow("b@1", "0", READY_SHADOW)
    result = run(cluster)
    assert any(c.method == "GET" and c.route == "readyz" for c in cluster.calls)
    assert result["barrier"]["barrier_id"] == "barrier-1" and result["barrier"]["state"] == "committed"
    assert len(cluster.writes("activate")) == 1  # reused, not posted again
    assert "barrier-1 for b@1 was already" in result["msg"]


def test_new_exclusions_update_the_pending_barrier():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p1=PENDING_SHADOW)
    run(cluster, wait=False)
    cluster.set_shadow("b@1", "1", FAILED_SHADOW)
    with pytest.raises(ControlPlaneError):
        run(cluster)
    check = run(cluster, exclude_partitions=["1"], check_mode=True)
    assert check["changed"] is True and len(cluster.writes("activate")) == 1
    result = run(cluster, exclude_partitions=["1"])
    assert result["changed"] is True and result["barrier"]["barrier_id"] == "barrier-1"
    assert result["barrier"]["state"] == "committed" and result["barrier"]["exclude_partitions"] == ["1"]
    assert len(cluster.writes("activate")) == 2


def test_check_mode_with_a_pending_barrier_reports_it():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p0=PENDING_SHADOW)
    run(cluster, wait=False)
    result = run(cluster, check_mode=True)
    assert result["would_activate"] is True and result["barrier"]["barrier_id"] == "barrier-1"
    assert len(cluster.writes("activate")) == 1


def test_waiting_times_out_naming_missing_partitions():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p3=PENDING_SHADOW)
    with pytest.raises(ControlPlaneError) as caught:
        run(cluster, timeout=5, interval=2)
    assert "timed out after 5s" in caught.value.message and "missing: 3" in caught.value.message


def test_a_shadow_that_fails_while_the_barrier_waits_stops_the_wait_naming_the_choices():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p3=PENDING_SHADOW)
    original = cluster._get_activation

    def fail_on_poll(call):
        cluster.set_shadow("b@1", "3", FAILED_SHADOW)
        return original(call)

    cluster._get_activation = fail_on_poll
    with pytest.raises(ControlPlaneError) as caught:
        run(cluster, timeout=600)
    assert "blocked by partition(s) in shadow failure: 3" in caught.value.message
    assert 'exclude_partitions: ["3"]' in caught.value.message and "abort: true" in caught.value.message
    assert caught.value.details["failed_partitions"] == ["3"]


def test_an_aborted_barrier_while_waiting_fails():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p3=PENDING_SHADOW)
    original = cluster._get_activation

    def abort_on_poll(call):
        cluster.barriers[call.params["barrier_id"]]["state"] = "aborted"
        return original(call)

    cluster._get_activation = abort_on_poll
    with pytest.raises(ControlPlaneError) as caught:
        run(cluster)
    assert "ended aborted" in caught.value.message


def test_abort_aborts_the_pending_barrier_once():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p3=PENDING_SHADOW)
    run(cluster, wait=False)
    check = run(cluster, abort=True, check_mode=True)
    assert check["changed"] is True and check["would_abort"] is True
    assert cluster.barriers["barrier-1"]["state"] == "pending"
    result = run(cluster, abort=True)
    assert result["changed"] is True and result["barrier"]["state"] == "aborted"
    again = run(cluster, abort=True)
    assert again["changed"] is False and "no pending activation" in again["msg"]


def test_unknown_bundle_says_to_upload_it():
    cluster = ControlPlane()
    with pytest.raises(ControlPlaneError) as caught:
        run(cluster, bundle_id="nope@1")
    assert "upload it with ceptra.backfill.bundle" in caught.value.message


def test_barrier_of_another_bundle_is_not_reused():
    cluster = ControlPlane()
    cluster.add_bundle("a@1", READY_SHADOW, p0=PENDING_SHADOW)
    cluster.add_bundle("b@1")
    run(cluster, bundle_id="a@1", wait=False)
    result = run(cluster, bundle_id="b@1")
    assert result["barrier"]["barrier_id"] == "barrier-2" and result["barrier"]["bundle_id"] == "b@1"


# ---------------------------------------------------------------------------- WAL replay


def replay(cluster, **kwargs):
    fake = FakeTime()
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("interval", 1)
    return act.run_wal_replay(cluster, sleep=fake.sleep, clock=fake.clock, **kwargs)


def test_needs_replay_only_replays_exactly_those_partitions_then_is_unchanged():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p1=WAITING_SHADOW, p3=WAITING_SHADOW)
    cluster.job_polls = 2
    result = replay(cluster, needs_replay_only=True, bundle_id="b@1")
    assert result["changed"] is True and result["part_ids"] == ["1", "3"]
    assert result["state"] == "completed"
    assert result["partitions"]["1"] == {"from_index": 10, "to_index": 50, "replayed_index": 50, "done": True,
                                         "events_done": 40, "events_total": 40, "status": "done"}
    expected_body = {"part_ids": ["1", "3"], "from": "latest_full_checkpoint", "reason": "ceptra.backfill.wal_replay"}
    assert cluster.writes("replay_jobs")[0][4] == expected_body
    again = replay(cluster, needs_replay_only=True, bundle_id="b@1")
    assert again["changed"] is False and again["msg"] == "no partition needs a WAL replay"
    assert len(cluster.writes("replay_jobs")) == 1


def test_needs_replay_only_check_mode_starts_nothing():
    cluster = ControlPlane()
    cluster.add_bundle("b@1", READY_SHADOW, p2=WAITING_SHADOW)
    result = replay(cluster, needs_replay_only=True, check_mode=True)
    assert result["changed"] is True and result["would_start"] is True and result["part_ids"] == ["2"]
    assert cluster.writes() == []


def test_needs_replay_only_skips_the_active_bundle_and_honours_part_ids():
    cluster = ControlPlane()
    cluster.add_bundle("old@1", WAITING_SHADOW)
    cluster.active = "old@1"
    cluster.add_bundle("new@1", READY_SHADOW, p0=WAITING_SHADOW, p2=WAITING_SHADOW)
    result = replay(cluster, needs_replay_only=True, part_ids=["2", "3"], check_mode=True)
    assert result["part_ids"] == ["2"] and result["needing_replay"] == ["0", "2"]


def test_explicit_part_ids_always_start_a_job():
    cluster = ControlPlane()
    result = replay(cluster, part_ids=["3", "1"], wait=False)
    assert result["changed"] is True and result["part_ids"] == ["1", "3"]
    assert result["job"]["job_id"] == "replay-1" and result["state"] == "running"


def test_part_ids_or_needs_replay_only_is_required():
    with pytest.raises(ControlPlaneError) as caught:
        replay(ControlPlane())
    assert "needs_replay_only" in caught.value.message


def test_a_failed_job_is_reported_with_its_reason():
    cluster = ControlPlane()
    cluster.job_fails = True
    with pytest.raises(ControlPlaneError) as caught:
        replay(cluster, part_ids=["0"])
    assert "replay-1 failed: checkpoint 7 unreadable" in caught.value.message


def test_a_slow_job_times_out_naming_unfinished_partitions():
    cluster = ControlPlane()
    cluster.job_polls = 100
    with pytest.raises(ControlPlaneError) as caught:
        replay(cluster, part_ids=["0", "2"], timeout=3, interval=1)
    assert "0 (replayed 10 of 50), 2 (replayed 10 of 50)" in caught.value.message


def test_replay_progress_accepts_a_partition_list():
    progress = act.replay_progress({"partitions": [{"partition_id": 4, "from_index": 1, "to_index": 9,
                                                    "replayed_index": 5}]})
    assert progress == {"4": {"from_index": 1, "to_index": 9, "replayed_index": 5, "done": False,
                              "events_done": 4, "events_total": 8, "status": "running"}}


def test_a_job_is_polled_once_by_id_with_progress_figures():
    cluster = ControlPlane()
    cluster.add_bundle("b@2", READY_SHADOW, p1=WAITING_SHADOW)
    started = act.run_wal_replay(cluster, needs_replay_only=True, bundle_id="b@2", wait=False)
    cluster.job_polls = 2
    first = act.run_wal_replay(cluster, job_id=started["job_id"])
    assert first["changed"] is False and first["done"] is False
    assert first["partitions"]["1"]["events_done"] == 0 and first["events_total"] == 40
    second = act.run_wal_replay(cluster, job_id=started["job_id"])
    assert second["done"] is True and second["events_done"] == 40 and second["run_id"] == started["job_id"]


def test_a_rerun_waits_for_the_running_job_of_an_interrupted_run_instead_of_starting_another():
    cluster = ControlPlane()
    cluster.add_bundle("b@2", READY_SHADOW, p1=WAITING_SHADOW, p2=WAITING_SHADOW)
    cluster.job_polls = 100
    started = act.run_wal_replay(cluster, needs_replay_only=True, bundle_id="b@2", wait=False)
    cluster.job_polls = 3                      # running when the rerun finds it, completed while it waits
    fake = FakeTime()
    resumed = act.run_wal_replay(cluster, needs_replay_only=True, bundle_id="b@2", sleep=fake.sleep, clock=fake.clock)
    assert resumed["resumed"] is True and resumed["job_id"] == started["job_id"] and resumed["state"] == "completed"
    assert len(cluster.writes("replay_jobs")) == 1
