# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A replay through the lab's cluster faults at once: a share of HTTP 503 answers, a leader
change (NOT_LEADER) and an outage window (PERMANENT_DURABILITY, durability fence) in the
middle of the run. Every event is applied exactly once: applied counts and snapshot digests
equal a clean run's, no partition stops."""

from .replay_lab import PER_PARTITION, applied_counts, digests, make_run, run_in_background, set_fault, wait_until

PARTS = ["0", "1"]


def test_503s_a_leader_change_and_an_outage_lose_and_duplicate_nothing(lab_factory, tmp_path):
    reference = lab_factory(partitions=2, test_mode=True)
    clean = make_run(reference, tmp_path, "clean").run()
    assert clean["done"] and applied_counts(reference) == {"0": PER_PARTITION, "1": PER_PARTITION}

    lab = lab_factory(partitions=2, test_mode=True)
    set_fault(lab, http_503_ratio=0.1)
    set_fault(lab, part_id="0", not_leader=3)
    # max_rate: partition 1 still has seconds of work left when the outage starts
    run = make_run(lab, tmp_path, "faulty", initial_rate=1000.0, max_rate=1000.0)
    thread, box = run_in_background(run)
    assert wait_until(lambda: "1" in run.progress.parts and run.progress.parts["1"].done >= 600)
    status = 503
    while status == 503:   # the fault hooks themselves are never failed; outage is a test RPC
        status, dummy, body = lab.request("POST", "/v1/test/outage", body={"part_ids": ["1"], "duration_ms": 1500})
    assert status == 200, body
    thread.join(timeout=180)
    set_fault(lab, http_503_ratio=0.0)
    result = box["result"]
    assert result["done"] and result["stopped"] == [] and result["aborted"] is None
    assert result["events_done"] == 2 * PER_PARTITION
    sender0, sender1 = run._senders["0"], run._senders["1"]
    assert sender0.not_leader_total >= 1            # the leader change was met and followed
    assert sender1.durability_pauses >= 1           # the outage was met and waited out
    assert applied_counts(lab) == {"0": PER_PARTITION, "1": PER_PARTITION}
    assert digests(lab, PARTS) == digests(reference, PARTS)
