"""Time for tests of code that waits: it passes only when the code under test sleeps."""


class FakeTime:
    """``clock()`` reads the fake time, ``sleep(seconds)`` advances it and records the wait."""

    def __init__(self, now=0.0):
        self.now = now
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
