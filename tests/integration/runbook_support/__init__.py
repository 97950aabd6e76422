"""Reusable harness of the runbook end-to-end tests (scenario_partial, and the scenario_full /
scenario_policy tests of the other issues).

- ``runner.RunnerJob``: a playbook run as AWX runs a job - ansible-runner, a fresh private data
  dir per run, the connection as ``CEPTRA_*`` environment (as a credential injector sets it), AWX's
  meta extra vars, the audit callback on; the result holds rc, status, stats, per-task results and
  the stdout;
- ``labs.LabPair``: a lab and a reference lab with the same partitions and the same active bundle;
  ``snapshot_digests`` / ``assert_same_state`` compare them;
- ``live.LiveTraffic``: live traffic in a background thread, sent to the lab and mirrored to the
  reference, every event archived into a history table (the lab's ``live`` with ``--archive``);
- ``faults``: outage, wipe and fault helpers, and waits on them.
"""
