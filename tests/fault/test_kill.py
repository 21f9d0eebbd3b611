#!/usr/bin/python3
"""At most once per step, under kill -9 at random moments, against Postfix's smtp-sink.

The daemon is killed DRIPD_FAULT_KILLS times (200 in CI, 1,000 for the long run) at random
moments: while it starts and recovers, while leads are being added, while messages go out.
After each kill the database passes PRAGMA integrity_check, the restart leaves no touch in
`sending`, and the kill added at most as many `uncertain` touches as there are sender threads.
At the end every touch marked sent is a message smtp-sink accepted (by Message-ID), no lead
got a step twice, and nothing vanished: every lead added has its touches, in a design state.
"""
import json
import os
import random
import signal
import socket
import sqlite3
import time

from conftest import postfix_sink, smtp_daemon, wait_for, write_content  # noqa: F401

KILLS = int(os.environ.get("DRIPD_FAULT_KILLS", "200"))
THREADS = 4
BATCH = 400  # leads added whenever the queue runs low

THREE_STEPS = {
    "journey.json": json.dumps({"stages": ["awareness", "customer"]}),
    "sequences/s.json": json.dumps({
        "stage": "awareness",
        "steps": [{"id": "one", "delay": "0d", "template": "one.md"},
                  {"id": "two", "delay": "0d", "template": "two.md"},
                  {"id": "three", "delay": "0d", "template": "three.md"}]}),
    "templates/one.md": "---\nsubject: One\n---\nFirst.\n",
    "templates/two.md": "---\nsubject: Two\n---\nSecond.\n",
    "templates/three.md": "---\nsubject: Three\n---\nThird.\n",
}


def add_leads(d, first, n, deadline=None):
    """Adds leads k<first>..k<first+n-1> over one pipelined control connection. Returns the
    addresses the daemon answered ok for (a kill may cut the answers short)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(str(d.socket))
    except OSError:  # still starting after a kill at start-up
        s.close()
        return []
    f = s.makefile("rwb")
    for i in range(first, first + n):
        f.write(json.dumps({"v": 1, "id": i, "cmd": "lead.add",
                            "args": {"email": f"k{i}@example.org"}}).encode() + b"\n")
    f.flush()
    ok = []
    try:
        for _ in range(n):
            line = f.readline()
            if not line:
                break
            r = json.loads(line)
            assert r["ok"] is True, r
            ok.append(f"k{r['id']}@example.org")
    except OSError:
        pass
    s.close()
    return ok


def integrity(db):
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


def test_kill_9_at_random_moments_never_sends_a_step_twice_and_loses_nothing(
        daemon_factory, tmp_path, postfix_sink):
    sink = postfix_sink()
    content = write_content(tmp_path / "content", THREE_STEPS)
    d = smtp_daemon(daemon_factory, content, sink.url, THREADS)
    d.start()
    acked = set(add_leads(d, 0, BATCH))
    next_lead = BATCH
    rng = random.Random(int(os.environ.get("DRIPD_FAULT_SEED", "20261125")))
    uncertain = 0
    doubtful = set()  # ids of the touches left sending or uncertain by the kills so far
    started = time.monotonic()
    for kill in range(1, KILLS + 1):
        moment = rng.random()
        if moment < 0.15:
            # During start-up and crash recovery, before the socket answers.
            d.proc.send_signal(signal.SIGKILL)
        elif moment < 0.35:
            # While leads are being added: only the answered ones are promised.
            pid = d.proc.pid
            delay = rng.uniform(0.0, 0.05)
            import threading
            t = threading.Timer(delay, lambda: os.kill(pid, signal.SIGKILL))
            t.start()
            acked |= set(add_leads(d, next_lead, 100))
            next_lead += 100
            t.join()
        else:
            time.sleep(rng.uniform(0.01, 0.4))
            d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.logfile.close()
        assert integrity(d.db) == [("ok",)], f"kill {kill}: integrity_check failed"
        # What the restart will find: `sending` touches become uncertain, no more than one
        # per sender thread for this kill (a kill during recovery finds the last ones again).
        by = dict(d.sql("SELECT state, count(*) FROM touches GROUP BY 1"))
        total = by.get("uncertain", 0) + by.get("sending", 0)
        now_ids = dict(d.sql("SELECT id, state FROM touches WHERE state IN "
                             "('sending', 'uncertain')"))
        gone = {i: s for i, s in d.sql("SELECT id, state FROM touches") if i in doubtful and
                i not in now_ids}
        assert not gone, f"kill {kill}: sending/uncertain touches changed state: {gone}"
        doubtful = set(now_ids)
        assert total >= uncertain, f"kill {kill}: an uncertain touch vanished"
        assert total - uncertain <= THREADS, \
            f"kill {kill} left {total - uncertain} new uncertain touches (> {THREADS}): {by}"
        uncertain = total
        d.start(wait=moment >= 0.15 or kill == KILLS)
        if moment < 0.15 and kill != KILLS:
            time.sleep(rng.uniform(0.0, 0.1))
            continue
        st = d.ctl("status")["touches"]
        assert st["uncertain"] == uncertain, (st, uncertain)
        if st["pending"] + st["queued"] < BATCH // 2:
            acked |= set(add_leads(d, next_lead, BATCH))
            next_lead += BATCH
    kill_time = time.monotonic() - started
    # No more kills: let everything due go out.
    wait_for(lambda: (lambda t: t["pending"] + t["queued"] + t["sending"] == 0)(
        d.ctl("status")["touches"]), 300, "every due touch to go out")
    assert d.stop() == 0
    assert integrity(d.db) == [("ok",)]

    msgs = sink.messages()
    # No lead received a step twice (an uncertain touch is never re-sent on its own).
    got = {}
    for m in msgs:
        if m["message_id"]:
            key = (m["rcpts"][0], m["subject"])
            got[key] = got.get(key, 0) + 1
    twice = [k for k, n in got.items() if n > 1]
    assert twice == [], twice[:5]
    # Nothing vanished: every acknowledged lead is there with all its steps, each sent or
    # uncertain (and the steps after an uncertain one wait for a person).
    leads = {e for (e,) in d.sql("SELECT email FROM leads")}
    assert acked <= leads, sorted(acked - leads)[:5]
    rows = d.sql("SELECT state, count(*) FROM touches GROUP BY 1")
    by = dict(rows)
    assert set(by) <= {"sent", "uncertain"}, by
    assert by.get("uncertain", 0) == uncertain
    firsts = d.sql("SELECT count(*) FROM touches WHERE step = 'one'")[0][0]
    assert firsts == len(leads), (firsts, len(leads))
    # Every touch marked sent is a message the server accepted, and the other way round
    # every accepted message is a touch that is sent or uncertain.
    accepted = {m["message_id"] for m in msgs if m["message_id"]}
    sent = {m for (m,) in d.sql("SELECT message_id FROM touches WHERE state = 'sent'")}
    assert sent <= accepted, sorted(sent - accepted)[:5]
    known = {m for (m,) in d.sql("SELECT message_id FROM touches")}
    assert accepted <= known, sorted(accepted - known)[:5]
    print(f"\n{KILLS} kills in {kill_time:.0f}s, {len(leads)} leads, {len(msgs)} messages "
          f"accepted, {by.get('sent', 0)} sent, {uncertain} uncertain")
