"""The hash-chained audit log: append, verify, and every kind of tampering detected."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess

import pytest

from ansible_collections.ceptra.backfill.plugins.module_utils import _audit_chain as chain


def write_log(path, count=5, run="r1"):
    writer = chain.ChainWriter(str(path))
    return [writer.append({"time": "2026-11-27T10:00:%02dZ" % i, "run": run, "event": "task", "task": "t%d" % i})
            for i in range(count)]


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


def test_records_chain_from_genesis(tmp_path):
    log = tmp_path / "audit.jsonl"
    records = write_log(log)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == chain.GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(records, records[1:]))
    assert len({r["chain"] for r in records}) == 1
    report = chain.verify_chain(str(log))
    assert report["ok"], report["problems"]
    assert report["records"] == 5
    assert report["head"] == {"seq": 5, "hash": records[-1]["hash"], "time": records[-1]["time"], "run": "r1"}
    assert report["runs"]["r1"]["records"] == 5


def test_chain_fields_in_input_are_replaced(tmp_path):
    log = tmp_path / "audit.jsonl"
    writer = chain.ChainWriter(str(log))
    writer.append({"task": "a"})
    record = writer.append({"task": "b", "seq": 99, "prev": "forged", "hash": "forged", "chain": "other"})
    assert record["seq"] == 2 and record["prev"] != "forged" and record["chain"] != "other"
    assert chain.verify_chain(str(log))["ok"]


def test_a_new_file_is_created_with_restricted_mode(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log, 1)
    assert oct(os.stat(log).st_mode & 0o777) == "0o640"


def test_edited_record_is_detected(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log)
    content = lines(log)
    record = json.loads(content[2])
    record["task"] = "something else"
    content[2] = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
    log.write_bytes(b"".join(content))
    report = chain.verify_chain(str(log))
    assert not report["ok"]
    assert any("line 3 (seq 3) was changed" in p for p in report["problems"]), report["problems"]


def test_edited_record_with_recomputed_hash_breaks_the_next_link(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log)
    content = lines(log)
    record = json.loads(content[1])
    record["task"] = "forged"
    record["hash"] = chain.record_hash(record)
    content[1] = chain.encode_line(record)
    log.write_bytes(b"".join(content))
    report = chain.verify_chain(str(log))
    assert not report["ok"]
    assert any("line 3 (seq 3) does not link" in p for p in report["problems"]), report["problems"]


def test_deleted_record_is_detected(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log)
    content = lines(log)
    del content[2]
    log.write_bytes(b"".join(content))
    report = chain.verify_chain(str(log))
    assert not report["ok"]
    assert report["problems"] == ["line 3 (seq 4) follows seq 2: 1 record(s) were removed"]


def test_reordered_records_are_detected(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log)
    content = lines(log)
    content[1], content[2] = content[2], content[1]
    log.write_bytes(b"".join(content))
    report = chain.verify_chain(str(log))
    assert not report["ok"]
    assert "line 3 (seq 2) follows seq 3: records were reordered or repeated" in report["problems"]


def test_removed_head_is_detected(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log)
    log.write_bytes(b"".join(lines(log)[2:]))
    report = chain.verify_chain(str(log))
    assert report["problems"] == ["the log does not begin with its first record (line 1 (seq 3)): "
                                  "records before it were removed"]


def test_damaged_line_is_detected(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log)
    content = lines(log)
    content[1] = b"not json at all\n"
    log.write_bytes(b"".join(content))
    report = chain.verify_chain(str(log))
    assert "line 2 is not JSON: the record was edited or damaged" in report["problems"]


def test_lines_of_another_log_are_detected(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_log(first, 3)
    write_log(second, 3)
    log = tmp_path / "mixed.jsonl"
    log.write_bytes(b"".join(lines(first)[:2] + lines(second)[2:]))
    report = chain.verify_chain(str(log))
    assert any("belongs to another log" in p for p in report["problems"]), report["problems"]


def test_cut_tail_is_invisible_without_an_anchor_and_detected_with_one(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log)
    anchor = chain.anchor_details(chain.verify_chain(str(log)))
    assert anchor["seq"] == 5
    log.write_bytes(b"".join(lines(log)[:3]))
    report = chain.verify_chain(str(log))
    assert report["ok"]                       # the chain itself is intact
    assert chain.anchor_problems(report, anchor) == [
        "the log ends at seq 3 but the control plane anchored seq 5: 2 record(s) at its end were cut"]


def test_records_after_the_anchor_are_fine(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log, 3)
    anchor = chain.anchor_details(chain.verify_chain(str(log)))
    write_log(log, 2)
    assert chain.anchor_problems(chain.verify_chain(str(log)), anchor) == []


def test_rewritten_chain_is_detected_by_the_anchor(tmp_path):
    log = tmp_path / "audit.jsonl"
    records = write_log(log, 4)
    anchor = chain.anchor_details(chain.verify_chain(str(log)))
    # rebuild every record after the second with new content and valid hashes
    rebuilt = records[:1]
    for record in records[1:]:
        fields = dict(record, task="rewritten")
        rebuilt.append(chain.seal(fields, rebuilt[-1]))
    log.write_bytes(b"".join(chain.encode_line(r) for r in rebuilt))
    report = chain.verify_chain(str(log))
    assert report["ok"]
    problems = chain.anchor_problems(report, anchor)
    assert len(problems) == 1 and "record seq 4 differs from the anchored one" in problems[0]


def test_replaced_log_is_detected_through_the_anchor_of_its_path(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log, 3)
    old = chain.anchor_details(chain.verify_chain(str(log)), controller="ctl-1")
    log.unlink()
    write_log(log, 2)
    report = chain.verify_chain(str(log))
    records = [{"kind": chain.ANCHOR_KIND, "details": old}, {"kind": "config_change", "details": {"seq": 1}}]
    anchor, other = chain.latest_anchor(records, report["chain_id"], report["path"], "ctl-1")
    assert anchor is None and other == old
    assert "the log was replaced or emptied" in chain.anchor_problems(report, other)[0]


def test_latest_anchor_takes_the_newest_of_the_chain(tmp_path):
    records = [{"kind": chain.ANCHOR_KIND, "details": {"chain": "c1", "seq": 3, "hash": "h3"}},
               {"kind": chain.ANCHOR_KIND, "details": {"chain": "c2", "seq": 9, "hash": "x"}},
               {"kind": chain.ANCHOR_KIND, "details": {"chain": "c1", "seq": 7, "hash": "h7"}}]
    anchor, other = chain.latest_anchor(records, "c1")
    assert anchor["seq"] == 7 and other is None


def test_emptied_log_is_detected_by_the_anchor(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log, 3)
    anchor = chain.anchor_details(chain.verify_chain(str(log)))
    log.write_bytes(b"")
    problems = chain.anchor_problems(chain.verify_chain(str(log)), dict(anchor, chain=None))
    assert problems and "missing or empty" in problems[0]


def test_writer_refuses_to_extend_a_damaged_tail(tmp_path):
    log = tmp_path / "audit.jsonl"
    write_log(log, 2)
    with open(log, "ab") as handle:
        handle.write(b'{"half": ')
    with pytest.raises(chain.AuditChainError, match="incomplete"):
        chain.ChainWriter(str(log)).append({"task": "x"})
    log.write_bytes(b"".join(lines(log)[:2]) + b"garbage\n")
    with pytest.raises(chain.AuditChainError, match="not a chained audit record"):
        chain.ChainWriter(str(log)).append({"task": "x"})


def test_tail_is_found_beyond_one_read_chunk(tmp_path):
    log = tmp_path / "audit.jsonl"
    writer = chain.ChainWriter(str(log))
    writer.append({"blob": "x" * (chain._TAIL_CHUNK * 2)})
    second = writer.append({"blob": "y" * (chain._TAIL_CHUNK + 7)})
    third = writer.append({"task": "small"})
    assert third["prev"] == second["hash"] and third["seq"] == 3
    assert chain.verify_chain(str(log))["ok"]


def _append_many(path, worker, count):
    writer = chain.ChainWriter(path)
    for i in range(count):
        writer.append({"worker": worker, "i": i})


def test_concurrent_writers_keep_one_chain(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(log, w, 40)) for w in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    report = chain.verify_chain(log)
    assert report["ok"], report["problems"]
    assert report["records"] == 120


def test_writable_problem(tmp_path):
    assert chain.writable_problem(str(tmp_path / "new.jsonl")) is None
    assert "does not exist" in chain.writable_problem(str(tmp_path / "missing" / "a.jsonl"))
    assert "is a directory" in chain.writable_problem(str(tmp_path))
    log = tmp_path / "audit.jsonl"
    write_log(log, 1)
    assert chain.writable_problem(str(log)) is None
    # a file this user cannot append to (root ignores modes, not the immutable flag)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(log)], check=True)
    else:
        os.chmod(log, 0o400)
    try:
        assert "cannot be opened for appending" in chain.writable_problem(str(log))
        with pytest.raises(chain.AuditChainError, match="cannot open the audit log"):
            chain.ChainWriter(str(log)).append({"task": "x"})
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(log)], check=True)


def test_missing_log_verifies_as_absent(tmp_path):
    report = chain.verify_chain(str(tmp_path / "none.jsonl"))
    assert report["exists"] is False and report["head"] is None and report["ok"]
