"""A lab and a reference lab: the reference sees every event with no incident, so a scenario is
correct when the lab's state afterwards equals the reference's."""

from __future__ import annotations

import os
import time

from ceptra_lab.testing import LabProcess

BUNDLE = os.path.join(os.environ.get("CEPTRA_SHARED", ""), "reference", "bundles", "gaming_cheat_detection.yaml")


def lab_get(lab, path, role="observer"):
    """GET a path of a lab as a role; the parsed body (AssertionError unless 200)."""
    status, _headers, body = lab.request("GET", path, role=role)
    assert status == 200, (path, status, body)
    return body


def activate_bundle(lab, bundle=BUNDLE, timeout=30.0):
    """Upload a bundle and activate it behind the barrier; returns the bundle id."""
    with open(bundle, "rb") as handle:
        status, _headers, body = lab.request("POST", "/v1/definitions", data=handle.read(),
                                             headers={"Content-Type": "application/yaml"})
    assert status == 200, body
    bundle_id = body["bundle_id"]
    deadline = time.monotonic() + timeout
    while True:
        status, _headers, barrier = lab.request("POST", "/v1/activate", body={"bundle_id": bundle_id})
        assert status in (200, 201, 202), barrier
        if barrier.get("state") == "committed":
            return bundle_id
        assert time.monotonic() < deadline, barrier
        time.sleep(0.2)


def wait_applied(lab, timeout=30.0):
    """Wait until every partition applied what it committed; {part_id: applied_index}."""
    deadline = time.monotonic() + timeout
    while True:
        parts = lab_get(lab, "/v1/state")["partitions"]
        if all(p["applied_index"] == p["commit_index"] for p in parts) or time.monotonic() > deadline:
            return {p["part_id"]: p["applied_index"] for p in parts}
        time.sleep(0.1)


def snapshot_digests(lab):
    """{part_id: metrics digest} of every partition (after everything committed was applied)."""
    wait_applied(lab)
    parts = [p["part_id"] for p in lab_get(lab, "/v1/state")["partitions"]]
    return {p: lab_get(lab, "/v1/test/metrics-snapshot?part_id=%s" % p)["digest"] for p in parts}


class LabPair(object):
    """``lab`` (the cluster a scenario works on) and ``reference`` (saw every event), both with
    ``partitions`` partitions, test mode and ``bundle`` active. Use as a context manager."""

    def __init__(self, partitions=4, bundle=BUNDLE, **lab_options):
        self.partitions = partitions
        self.bundle = bundle
        self.lab = LabProcess(partitions=partitions, test_mode=True, **lab_options)
        self.reference = LabProcess(partitions=partitions, test_mode=True)
        self.bundle_id = None

    def __enter__(self):
        self.lab.__enter__()
        try:
            self.reference.__enter__()
            if self.bundle:
                self.bundle_id = activate_bundle(self.lab, self.bundle)
                assert activate_bundle(self.reference, self.bundle) == self.bundle_id
        except BaseException:
            self.lab.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info):
        try:
            self.reference.__exit__(*exc_info)
        finally:
            self.lab.__exit__(*exc_info)

    def reference_connection(self, role="observer"):
        """The reference lab as a connection dict (``validate_reference_cluster``)."""
        return {"url": self.reference.url, "token": self.reference.tokens[role]}

    def differing_partitions(self):
        """Partitions whose metrics digest differs between the lab and the reference."""
        mine, theirs = snapshot_digests(self.lab), snapshot_digests(self.reference)
        return sorted(p for p in set(mine) | set(theirs) if mine.get(p) != theirs.get(p))
