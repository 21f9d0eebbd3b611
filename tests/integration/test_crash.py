#!/usr/bin/python3
"""At most once per step, under kill -9: the daemon is killed at random moments while
2,000 messages go out to a real SMTP server, restarted, killed again; afterwards no touch
vanished, no lead got a step twice, each kill left at most as many uncertain touches as
sender threads, and every touch marked sent is a message the server accepted."""
import json
import random
import signal
import socket
import time

from conftest import wait_for
from test_skeleton import write_content

LEADS = 2000
THREADS = 4

TWO_STEPS = {
    "journey.json": json.dumps({"stages": ["awareness", "customer"]}),
    "sequences/s.json": json.dumps({
        "stage": "awareness",
        "steps": [{"id": "one", "delay": "0d", "template": "one.md"},
                  {"id": "two", "delay": "1h", "template": "two.md"}]}),
    "templates/one.md": "---\nsubject: One\n---\nFirst.\n",
    "templates/two.md": "---\nsubject: Two\n---\nSecond.\n",
}


def add_leads(d, n):
    """Adds n leads over one control connection (pipelined), far faster than n dripctl runs."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.socket))
    f = s.makefile("rwb")
    for i in range(n):
        f.write(json.dumps({"v": 1, "id": i, "cmd": "lead.add",
                            "args": {"email": f"k{i}@example.org"}}).encode() + b"\n")
    f.flush()
    for _ in range(n):
        assert json.loads(f.readline())["ok"] is True
    s.close()


def test_kill_9_never_sends_a_step_twice_and_loses_nothing(daemon_factory, tmp_path,
                                                           smtp_sink):
    content = write_content(tmp_path / "content", TWO_STEPS)
    d = daemon_factory(content=content)
    d.config["delivery"] = {"url": smtp_sink.url, "from": "ana@example.com",
                            "max_connections": THREADS}
    d.write_config()
    d.start()
    d.ctl("pause")
    add_leads(d, LEADS)
    assert d.stop() == 0
    d.start()
    d.ctl("resume")
    rng = random.Random(20261123)
    kills = 0
    uncertain = 0
    for _ in range(12):
        time.sleep(rng.uniform(0.05, 0.6))
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.logfile.close()
        kills += 1
        d.start()
        now = d.ctl("touch", "list")["touches"]
        assert len(now) - uncertain <= THREADS, \
            f"kill {kills} left {len(now) - uncertain} new uncertain touches"
        uncertain = len(now)
        if len(smtp_sink.messages) >= LEADS:
            break
    # Let the first steps finish, then the second ones, without kills.
    wait_for(lambda: d.ctl("status")["touches"]["pending"] == LEADS - uncertain and
             d.ctl("status")["touches"]["sending"] == 0, 120, "the first steps to go out")
    d.advance("1h")
    wait_for(lambda: d.ctl("status")["touches"]["pending"] == 0 and
             d.ctl("status")["touches"]["sending"] == 0, 120, "the second steps to go out")
    assert d.stop() == 0

    # No lead received a step twice.
    got = {}
    for _, rcpts, raw in smtp_sink.messages:
        subject = [line for line in raw.split(b"\r\n") if line.startswith(b"Subject: ")][0]
        key = (rcpts[0], subject)
        got[key] = got.get(key, 0) + 1
    twice = [k for k, n in got.items() if n > 1]
    assert twice == [], twice[:5]
    # Nothing vanished: every lead has its first touch, in a state of the design.
    rows = d.sql("SELECT step, state, count(*) FROM touches GROUP BY 1, 2")
    by = {(step, state): n for step, state, n in rows}
    assert sum(n for (step, _), n in by.items() if step == "one") == LEADS, by
    assert set(state for _, state in by) <= {"sent", "uncertain"}, by
    assert by.get(("one", "uncertain"), 0) + by.get(("two", "uncertain"), 0) == uncertain
    assert uncertain <= kills * THREADS
    # Every touch marked sent is a message the server accepted (by Message-ID).
    accepted = set()
    for _, _, raw in smtp_sink.messages:
        for line in raw.split(b"\r\n"):
            if line.startswith(b"Message-ID: "):
                accepted.add(line[12:].decode())
    sent = {m for (m,) in d.sql("SELECT message_id FROM touches WHERE state = 'sent'")}
    assert sent <= accepted, list(sent - accepted)[:5]
    assert len(sent) == sum(by.values()) - uncertain
    assert d.sql("PRAGMA integrity_check") == [("ok",)]
    print(f"{kills} kills, {uncertain} uncertain touches, {len(smtp_sink.messages)} messages")
