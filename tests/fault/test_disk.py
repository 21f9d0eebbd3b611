#!/usr/bin/python3
"""The disk: a full file system (a small tmpfs the test mounts) holds sending back with the
reason in `dripctl status`, corrupts nothing and resumes when space returns; a truncated or
corrupt database is refused at start with a clear error and left as it was; another process
holding the write lock past the busy timeout costs time, never a crash or a message."""
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import (DRIPD, daemon_factory, postfix_sink, smtp_daemon,  # noqa: F401
                      wait_for, write_content)

TWO_STEPS = {
    "journey.json": json.dumps({"stages": ["awareness", "customer"]}),
    "sequences/s.json": json.dumps({
        "stage": "awareness",
        "steps": [{"id": "one", "delay": "0d", "template": "one.md"},
                  {"id": "two", "delay": "1h", "template": "two.md"}]}),
    "templates/one.md": "---\nsubject: One\n---\nFirst.\n",
    "templates/two.md": "---\nsubject: Two\n---\n" + "Second, with some length to it. " * 40
    + "\n",
}


def add_leads(d, n, prefix="k"):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.socket))
    f = s.makefile("rwb")
    for i in range(n):
        f.write(json.dumps({"v": 1, "id": i, "cmd": "lead.add",
                            "args": {"email": f"{prefix}{i}@example.org"}}).encode() + b"\n")
    f.flush()
    for _ in range(n):
        assert json.loads(f.readline())["ok"] is True
    s.close()


def states(d):
    return dict(d.sql("SELECT state, count(*) FROM touches GROUP BY 1"))


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs mounted for the test (we are root in CI); unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder):
    """Writes a filler file until the file system is full; returns its path."""
    path = folder / "filler"
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 16384
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        for size in (4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return path


def test_a_full_disk_holds_sending_back_and_resumes_when_space_returns(daemon_factory, tmp_path,
                                                                       small_fs):
    content = write_content(tmp_path / "content", TWO_STEPS)
    d = daemon_factory(content=content, state_dir=str(small_fs / "state"))
    d.db = small_fs / "state" / "dripd.db"
    d.config["delivery"]["max_connections"] = 2
    d.write_config()
    d.start()
    add_leads(d, 150)
    wait_for(lambda: d.ctl("status")["touches"]["sent"] == 150, 60, "the first steps")
    # On a file system this small the WAL is checkpointed every 1,000 pages (~4 MB), not
    # let grow to 8,000 (~32 MB, twice the whole tmpfs), which once filled it by itself.
    wal = d.db.with_name(d.db.name + "-wal")
    assert wal.stat().st_size < 1200 * 4120, wal.stat().st_size
    filler = fill(small_fs)
    d.advance("1h")  # every lead's second step is due now, with nowhere to write
    held = wait_for(lambda: d.ctl("status").get("held"), 30,
                    "status to say why sending is held")
    assert "full" in held, held
    time.sleep(2)
    assert d.proc.poll() is None, d.log_text()[-2000:]
    st = d.ctl("status")
    assert st["held"], st
    sent_while_full = len(d.messages())
    time.sleep(1.5)
    assert len(d.messages()) == sent_while_full, "sending went on while the disk was full"
    os.unlink(filler)
    wait_for(lambda: d.ctl("status")["touches"]["sent"] == 300, 60,
             "the second steps to go once space returned")
    assert d.ctl("status")["held"] is None
    assert d.stop() == 0
    assert d.sql("PRAGMA integrity_check") == [("ok",)]
    assert states(d) == {"sent": 300}, states(d)
    msgs = d.messages()
    keys = [(m["To"], m["Subject"]) for m in msgs]
    assert len(keys) == len(set(keys)) == 300, "a message went twice or went missing"


def test_a_corrupt_database_is_refused_at_start_and_left_alone(daemon_factory):
    d = daemon_factory()
    d.start()
    d.ctl("lead", "add", "lead@example.org")
    assert d.stop() == 0
    data = bytearray(d.db.read_bytes())
    data[0:16] = b"not a database!\0"
    d.db.write_bytes(bytes(data))
    d.start(wait=False)
    assert d.proc.wait(20) != 0
    log = d.log_text()
    assert str(d.db) in log and ("not a database" in log or "malformed" in log), log[-1000:]
    assert d.db.read_bytes() == bytes(data), "the damaged file was changed"


def test_a_truncated_database_is_refused_at_start_and_left_alone(daemon_factory):
    d = daemon_factory()
    d.start()
    add_leads(d, 300)
    assert d.stop() == 0
    con = sqlite3.connect(d.db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = d.db.read_bytes()
    half = data[: (len(data) // 2) // 4096 * 4096]
    d.db.write_bytes(half)
    for extra in ("-wal", "-shm"):
        p = d.db.with_name(d.db.name + extra)
        if p.exists():
            p.unlink()
    d.start(wait=False)
    code = d.proc.wait(20)
    log = d.log_text()
    assert code != 0, f"dripd started on a truncated database:\n{log[-1000:]}"
    assert str(d.db) in log and ("truncated" in log or "malformed" in log), log[-1000:]
    assert d.db.read_bytes() == half, "the damaged file was changed"


def test_another_process_holding_the_write_lock_costs_time_not_a_crash(daemon_factory, tmp_path,
                                                                       postfix_sink):
    sink = postfix_sink()
    content = write_content(tmp_path / "content", TWO_STEPS)
    d = smtp_daemon(daemon_factory, content, sink.url, threads=2)
    d.start()
    add_leads(d, 100)
    wait_for(lambda: d.ctl("status")["touches"]["sent"] == 100, 60, "the first steps")
    # Another process takes the write lock for longer than dripd's busy timeout (5 s).
    locked = threading.Event()

    def hold():
        con = sqlite3.connect(d.db, timeout=30, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(8)
        con.execute("ROLLBACK")
        con.close()
    t = threading.Thread(target=hold)
    t.start()
    locked.wait(10)
    d.advance_raw = d.ctl_raw("clock", "advance", "1h")  # may wait on the lock, or fail
    t.join()
    assert d.proc.poll() is None, d.log_text()[-2000:]
    d.advance("1s")
    wait_for(lambda: d.ctl("status")["touches"]["sent"] == 200, 60, "the second steps")
    assert d.stop() == 0
    assert d.sql("PRAGMA integrity_check") == [("ok",)]
    got = [(m["rcpts"][0], m["subject"]) for m in sink.messages()]
    assert len(got) == len(set(got)) == 200
