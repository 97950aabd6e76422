"""_wait.poll_until: the one wait loop."""

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils._wait import poll_until

from ..test_support.clock import FakeTime


def looks(*answers):
    answers = list(answers)
    return lambda: answers.pop(0)


def test_returns_when_the_condition_holds(fake_time):
    poll = poll_until(looks((False, 1), (False, 2), (True, 3)), 60, 5, sleep=fake_time.sleep, clock=fake_time.clock)
    assert poll == (True, 3, 3, 10.0) and fake_time.sleeps == [5, 5]


def test_times_out_without_sleeping_past_the_deadline(fake_time):
    poll = poll_until(lambda: (False, "still"), 5, 2, sleep=fake_time.sleep, clock=fake_time.clock)
    assert not poll.done and poll.value == "still" and poll.polls == 4 and fake_time.sleeps == [2, 2, 1]


def test_a_first_answer_is_judged_before_any_look(fake_time):
    calls = []
    poll = poll_until(lambda: calls.append(1) or (True, "fresh"), 10, 1, first=(True, "given"),
                      sleep=fake_time.sleep, clock=fake_time.clock)
    assert poll == (True, "given", 0, 0.0) and calls == []
    poll = poll_until(lambda: calls.append(1) or (True, "fresh"), 10, 1, first=(False, "given"),
                      sleep=fake_time.sleep, clock=fake_time.clock)
    assert poll.done and poll.value == "fresh" and poll.polls == 1 and calls == [1]
    poll = poll_until(lambda: calls.append(1) or (True, "fresh"), 0, 1, first=(False, "given"),
                      sleep=fake_time.sleep, clock=fake_time.clock)
    assert poll == (False, "given", 0, 0.0)


def test_stop_ends_the_wait_and_an_error_ends_it_at_once():
    fake = FakeTime()
    poll = poll_until(lambda: (False, None), 100, 1, stop=lambda: fake.now >= 3, sleep=fake.sleep, clock=fake.clock)
    assert not poll.done and fake.now == 3

    def broken():
        raise RuntimeError("the state cannot get better")

    with pytest.raises(RuntimeError):
        poll_until(broken, 100, 1, sleep=fake.sleep, clock=fake.clock)
