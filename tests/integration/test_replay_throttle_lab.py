# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replay throttle against the lab's own signals (``/readyz``) and fault hooks.

- replication lag above its threshold on one partition holds that partition while the
  others finish; it resumes and completes once the lag clears;
- lag above the critical threshold aborts the run with the reason; a rerun after the lag
  cleared completes with every event applied once;
- the pause file holds every partition of the run until it is removed;
- with the lab's follower model (``--replication-capacity``) an unthrottled replay drives
  replication lag past 250 ms and the throttled one holds it under the gate.

(The apply-capacity case, p99 apply lag and utilisation, is measured by
``benchmarks/bench_replay_throttle.py``.)
"""

import threading
import time

from .replay_lab import PER_PARTITION, applied_counts, make_run, run_in_background, set_fault, wait_until


def test_replication_lag_holds_only_that_partition_until_it_clears(lab_factory, tmp_path):
    lab = lab_factory(partitions=2, test_mode=True)
    set_fault(lab, part_id="1", replication_lag_ms=600)      # threshold 250, critical 1250
    run = make_run(lab, tmp_path, "repl-lag")
    thread, box = run_in_background(run)
    assert wait_until(lambda: run.progress.parts.get("0") is not None
                      and run.progress.parts["0"].status == "done")
    # partition 0 finished while partition 1 sent nothing: it was held from the first poll
    assert run.progress.parts["1"].done == 0
    assert run.progress.parts["1"].status in ("running", "paused")
    assert run.throttle.is_partition_paused("1")
    assert applied_counts(lab) == {"0": PER_PARTITION, "1": 0}
    set_fault(lab, part_id="1", replication_lag_ms=0)
    thread.join(timeout=120)
    result = box["result"]
    assert result["done"] and result["aborted"] is None
    assert applied_counts(lab) == {"0": PER_PARTITION, "1": PER_PARTITION}


def test_critical_lag_aborts_and_a_rerun_completes_without_duplicates(lab_factory, tmp_path):
    lab = lab_factory(partitions=2, test_mode=True)
    set_fault(lab, part_id="1", replication_lag_ms=2000)     # 8x the 250 ms threshold
    result = make_run(lab, tmp_path, "critical").run()
    assert not result["done"]
    assert "critical lag, run aborted" in result["aborted"] and "partition 1" in result["aborted"]
    assert result["partitions"]["1"]["events_done"] == 0
    set_fault(lab, part_id="1", replication_lag_ms=0)
    again = make_run(lab, tmp_path, "critical").run()
    assert again["done"] and again["aborted"] is None
    assert again["events_done"] == 2 * PER_PARTITION
    assert applied_counts(lab) == {"0": PER_PARTITION, "1": PER_PARTITION}   # once each


def test_pause_file_holds_every_partition_until_removed(lab_factory, tmp_path):
    lab = lab_factory(partitions=2, test_mode=True)
    pause = tmp_path / "PAUSE"
    pause.write_text("maintenance window\n")
    run = make_run(lab, tmp_path, "paused", pause_file=str(pause))
    thread, box = run_in_background(run)
    assert wait_until(lambda: len(run.progress.parts) == 2 and
                      all(p.status == "paused" for p in run.progress.parts.values()))
    time.sleep(1.0)                                           # paused means paused: nothing goes out
    assert run.progress.events_sent == 0 and applied_counts(lab) == {"0": 0, "1": 0}
    pause.unlink()
    thread.join(timeout=120)
    result = box["result"]
    assert result["done"] and result["events_sent"] == 2 * PER_PARTITION
    assert applied_counts(lab) == {"0": PER_PARTITION, "1": PER_PARTITION}


def replication_lag_samples(lab, stop):
    """Poll /readyz every 50 ms until ``stop`` is set; the worst partition's replication lag per poll."""
    samples = []

    def poll():
        while not stop.is_set():
            status, dummy, body = lab.request("GET", "/readyz", role="observer")
            samples.append(max(doc["metrics"]["replication_lag_ms"] for doc in body["partitions"].values()))
            time.sleep(0.05)
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return samples, thread


def test_the_throttle_holds_modelled_replication_lag(lab_factory, tmp_path):
    # The lab's follower takes 600 events/s per partition (--replication-capacity): lag is not
    # a hand-set number but grows whenever the replay outpaces it. Unthrottled, the replay
    # drives it far past the 250 ms gate; throttled, the controller holds it under the gate.
    stop = threading.Event()
    blast = lab_factory(partitions=2, test_mode=True, extra_args=["--replication-capacity", "600"])
    samples, poller = replication_lag_samples(blast, stop)
    result = make_run(blast, tmp_path, "repl-blast", throttle=False).run()
    time.sleep(0.3)
    stop.set()
    poller.join(5)
    assert result["done"] and max(samples) > 250
    stop = threading.Event()
    lab = lab_factory(partitions=2, test_mode=True, extra_args=["--replication-capacity", "600"])
    samples, poller = replication_lag_samples(lab, stop)
    result = make_run(lab, tmp_path, "repl-held", initial_rate=2000.0).run()
    stop.set()
    poller.join(5)
    assert result["done"] and result["aborted"] is None
    assert applied_counts(lab) == {"0": PER_PARTITION, "1": PER_PARTITION}
    steady = samples[len(samples) // 4:]                      # after the controller's first polls
    assert max(samples) > 0 and max(steady) < 1250            # exercised, never near critical (5 x 250)
    assert sum(1 for lag in steady if lag > 250) <= 0.1 * len(steady)
