#!/usr/bin/python3
"""Shutdown: SIGTERM while hundreds of messages are due and a slow server holds every sender
thread finishes or defers each transfer within a bound; nothing is left queued or sending,
and the next start sends the rest, none twice."""
import json
import time

from conftest import postfix_sink, smtp_daemon, wait_for, write_content  # noqa: F401

LEADS = 500
THREADS = 16

ONE_STEP = {
    "journey.json": json.dumps({"stages": ["awareness", "customer"]}),
    "sequences/s.json": json.dumps({
        "stage": "awareness",
        "steps": [{"id": "one", "delay": "0d", "template": "one.md"}]}),
    "templates/one.md": "---\nsubject: One\n---\nFirst.\n",
}


def add_leads(d, n):
    import socket
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


def test_sigterm_with_transfers_in_flight_finishes_or_defers_each_in_time(
        daemon_factory, tmp_path, postfix_sink):
    sink = postfix_sink("-W", ".:2")  # two seconds before each final reply
    content = write_content(tmp_path / "content", ONE_STEP)
    d = smtp_daemon(daemon_factory, content, sink.url, threads=THREADS, reply_timeout="10s")
    d.start()
    d.ctl("pause")
    add_leads(d, LEADS)
    d.ctl("resume")
    wait_for(lambda: d.ctl("status")["touches"]["sending"] == THREADS, 20,
             "every sender thread to be busy")
    t0 = time.monotonic()
    code = d.stop(timeout=30)
    took = time.monotonic() - t0
    assert code == 0, d.log_text()[-2000:]
    assert took < 15, f"SIGTERM took {took:.1f}s with {THREADS} slow transfers in flight"
    by = dict(d.sql("SELECT state, count(*) FROM touches GROUP BY 1"))
    assert set(by) <= {"sent", "pending"}, f"left in flight or uncertain: {by}"
    assert sum(by.values()) == LEADS
    sent_before = by.get("sent", 0)
    assert sent_before >= THREADS, by
    # Every transfer that was in flight finished: the server has exactly the sent ones.
    assert len(sink.messages()) == sent_before
    sink.restart(flags=[])
    d.start()
    wait_for(lambda: d.ctl("status")["touches"]["sent"] == LEADS, 60, "the rest to go")
    assert d.stop() == 0
    got = [m["rcpts"][0] for m in sink.messages()]
    assert len(got) == len(set(got)) == LEADS
    print(f"\nSIGTERM with {THREADS} transfers in flight: exit in {took:.1f}s, "
          f"{sent_before} sent before, the rest after the restart")
