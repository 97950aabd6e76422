"""Replay throttle against a simulated apply-capacity plant (simulated time, no sleeps)."""

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._replay import throttle as thr


class Clock(object):
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def simulate(capacity, seconds, live_rate=0.0, settings=None, capacity_at=None, stall_every=None, stall_s=0.0):
    """A partition whose apply worker applies ``capacity`` events/s in FIFO order.

    The sender asks the throttle before every batch; the poller observes the apply lag
    (age of the oldest committed, unapplied event) every 200 ms. Returns
    (lag samples after warm-up, replay events applied after warm-up, elapsed after warm-up).
    ``stall_every``/``stall_s``: the apply worker stops for ``stall_s`` every ``stall_every``
    seconds (a cluster's own hiccups, which no client can prevent).
    """
    clock = Clock()
    throttle = thr.Throttle(settings or thr.ThrottleSettings(), clock=clock)
    dt = 0.005
    queue = []          # [enqueue_time, count, is_replay]
    next_send = 0.0
    next_poll = 0.0
    apply_credit = 0.0
    live_credit = 0.0
    warmup = 5.0
    lags, replay_applied = [], 0
    steps = int(seconds / dt)
    for dummy in range(steps):
        now = clock.t
        cap = capacity_at(now) if capacity_at else capacity
        if stall_every and (now % stall_every) < stall_s:
            cap = 0.0
        # live traffic arrives regardless of the throttle
        live_credit += live_rate * dt
        if live_credit >= 1:
            queue.append([now, int(live_credit), False])
            live_credit -= int(live_credit)
        # the replay worker: one batch of ~50 ms worth when the throttle allows it
        if now >= next_send:
            batch = throttle.suggested_batch("0", 512)
            wait = throttle.wait_for("0", batch)
            if wait == 0:
                queue.append([now, batch, True])
                next_send = now
            else:
                next_send = now + wait
        # apply worker
        apply_credit += cap * dt
        while queue and apply_credit >= 1:
            take = min(queue[0][1], int(apply_credit))
            queue[0][1] -= take
            apply_credit -= take
            if queue[0][2] and now >= warmup:
                replay_applied += take
            if queue[0][1] == 0:
                queue.pop(0)
        if not queue:
            apply_credit = min(apply_credit, cap * dt)
        lag_ms = (now - queue[0][0]) * 1000.0 if queue else 0.0
        if now >= next_poll:
            throttle.observe("0", lag_ms, 10.0)
            next_poll = now + throttle.settings.poll_interval_s
        if now >= warmup:
            lags.append(lag_ms)
        clock.t += dt
    return lags, replay_applied, seconds - warmup, throttle


def p99(values):
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.99) - 1]


@pytest.mark.parametrize("capacity", [800.0, 3000.0, 20000.0])
def test_keeps_lag_under_threshold_and_uses_capacity(capacity):
    lags, applied, elapsed, dummy = simulate(capacity, 60.0)
    assert p99(lags) <= 200.0
    assert applied / elapsed >= 0.9 * capacity


def test_shares_capacity_with_live_traffic():
    capacity, live = 3000.0, 1000.0
    lags, applied, elapsed, dummy = simulate(capacity, 60.0, live_rate=live)
    assert p99(lags) <= 200.0
    assert applied / elapsed >= 0.9 * (capacity - live)


def test_follows_a_capacity_drop():
    # apply capacity falls from 5000/s to 1000/s half-way (e.g. a slow disk)
    lags, applied, elapsed, throttle = simulate(
        None, 60.0, capacity_at=lambda t: 5000.0 if t < 30 else 1000.0)
    late = lags[int(len(lags) * 0.6):]   # after the drop has been absorbed
    assert p99(late) <= 200.0
    assert 700.0 <= throttle.rate("0") <= 1400.0


def test_lag_above_threshold_pauses_and_recovery_resumes():
    clock = Clock()
    throttle = thr.Throttle(thr.ThrottleSettings(initial_rate=1000), clock=clock)
    throttle.observe("1", 350.0, 0.0)
    assert throttle.is_partition_paused("1")
    assert throttle.wait_for("1", 10) > 0
    assert throttle.rate("1") == 750.0   # cut by pause_cut (0.75)
    throttle.observe("1", 20.0, 0.0)
    assert not throttle.is_partition_paused("1")
    assert throttle.rate("1") > 750.0


def test_replication_lag_also_throttles():
    throttle = thr.Throttle(thr.ThrottleSettings(initial_rate=1000), clock=Clock())
    throttle.observe("0", 0.0, 300.0)   # replication over its 250 ms threshold
    assert throttle.is_partition_paused("0")


def test_critical_lag_aborts_after_consecutive_polls():
    throttle = thr.Throttle(thr.ThrottleSettings(critical_polls=3), clock=Clock())
    throttle.observe("2", 1200.0, 0.0)
    throttle.observe("2", 1200.0, 0.0)
    assert throttle.abort_reason is None
    throttle.observe("2", 1500.0, 0.0)
    assert "partition 2" in throttle.abort_reason
    assert "5x" in throttle.abort_reason


def test_critical_count_resets_when_lag_recovers():
    throttle = thr.Throttle(thr.ThrottleSettings(critical_polls=2), clock=Clock())
    throttle.observe("2", 1200.0, 0.0)
    throttle.observe("2", 100.0, 0.0)
    throttle.observe("2", 1200.0, 0.0)
    assert throttle.abort_reason is None


def test_bad_settings_are_refused_with_a_message():
    with pytest.raises(ValueError, match="positive"):
        thr.ThrottleSettings(apply_lag_threshold_ms=0)
    with pytest.raises(ValueError, match="critical_factor"):
        thr.ThrottleSettings(critical_factor=1.0)


def test_pause_file_and_store_flag(tmp_path):
    clock = Clock()

    class Store(object):
        paused = False

        def is_paused(self, run_id):
            return self.paused

    store = Store()
    flag_path = tmp_path / "pause"
    flag = thr.PauseFlag(str(flag_path), store, "run-1", check_interval_s=0.5, clock=clock)
    assert not flag.is_paused()
    flag_path.write_text("")
    assert not flag.is_paused()       # cached for check_interval_s
    clock.t += 1
    assert flag.is_paused() and "pause file" in flag.reason
    flag_path.unlink()
    store.paused = True
    clock.t += 1
    assert flag.is_paused() and "cursor store" in flag.reason
    store.paused = False
    clock.t += 1
    assert not flag.is_paused()


def test_read_partition_lags_uses_the_tolerant_readiness_reader():
    class Resp(object):
        def __init__(self, status, body):
            self.status, self.json, self.text = status, body, ""

    class Client(object):
        retries = 3

        def __init__(self, body, status=200):
            self.body, self.status, self.calls = body, status, []

        def request(self, method, route, expected=(200,), **kw):
            self.calls.append((method, route, tuple(expected)))
            return Resp(self.status, self.body)

    spec = {"ready": True, "partitions": {"0": {"ready": True, "metrics": {"apply_lag_ms": 12, "replication_lag_ms": 3}}}}
    client = Client(spec)
    assert thr.read_partition_lags(client) == {"0": (12.0, 3.0)}
    assert client.calls == [("GET", "readyz", (200, 503))]
    # array variant, legacy seconds field, answered 503 (not ready is still a readiness document)
    variant = {"ready": False, "partitions": [{"partition_id": 1, "ready": False, "apply_lag_seconds": 0.5}]}
    assert thr.read_partition_lags(Client(variant, 503)) == {"1": (500.0, None)}
    assert not hasattr(thr, "lags_from_readiness")     # one reader of /readyz, not two


def test_poller_feeds_every_partition_and_survives_errors():
    throttle = thr.Throttle(thr.ThrottleSettings(initial_rate=100), clock=Clock())
    answers = [RuntimeError("connection refused"), {"0": (10.0, 1.0)}]

    def fetch():
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    poller = thr.LagPoller(throttle, fetch, ["0", "1"])
    poller.poll_once()
    assert poller.errors == 1 and "refused" in poller.last_error
    poller.poll_once()
    assert throttle.lags("0") == (10.0, 1.0)
    assert throttle.lags("1") == (None, None)
    assert throttle.rate("0") > 100


def test_resume_starts_at_the_recorded_rate_and_still_backs_off_on_lag():
    # A new time slice resumes at the rate the last one reached, not at initial_rate ...
    throttle = thr.Throttle(thr.ThrottleSettings(initial_rate=2000), clock=Clock())
    throttle.resume("0", 18000.0)
    assert throttle.rate("0") == 18000.0
    assert throttle.suggested_batch("0", 10_000) == int(18000 * thr.BATCH_SECONDS)
    assert throttle.rate("1") == 2000.0          # a partition without a recorded rate starts as ever
    # ... and the cluster's lag still rules it: over the threshold it pauses and cuts the rate
    throttle.observe("0", 350.0, 0.0)
    assert throttle.is_partition_paused("0")
    assert throttle.rate("0") == 18000.0 * 0.75


def test_resume_is_clamped_to_the_rate_bounds():
    throttle = thr.Throttle(thr.ThrottleSettings(initial_rate=500, max_rate=4000), clock=Clock())
    throttle.resume("0", 9000.0)               # the operator lowered max_rate since that slice
    throttle.resume("1", 1.0)                  # below min_rate
    assert throttle.rate("0") == 4000.0
    assert throttle.rate("1") == throttle.settings.min_rate


def test_a_resumed_slice_reaches_capacity_without_the_ramp():
    # Simulated plant: a slice that resumes at the learned rate applies more in its first
    # second than one ramping up from initial_rate (what each new module process used to do).
    def first_second(resume_rate):
        clock = Clock()
        throttle = thr.Throttle(thr.ThrottleSettings(initial_rate=500), clock=clock)
        if resume_rate:
            throttle.resume("0", resume_rate)
        sent, t, next_poll = 0, 0.0, 0.0
        while t < 1.0:
            clock.t = t
            if t >= next_poll:
                throttle.observe("0", 0.0, 0.0)       # an idle cluster: no lag
                next_poll = t + throttle.settings.poll_interval_s
            batch = throttle.suggested_batch("0", 1024)
            if throttle.wait_for("0", batch) == 0:
                sent += batch
            t += 0.001
        return sent, throttle.rate("0")
    ramped, ramp_rate = first_second(None)
    resumed, resumed_rate = first_second(20000.0)
    assert resumed > 3 * ramped
    assert resumed_rate >= 20000.0 > ramp_rate
