#!/usr/bin/python3
"""Time: the wall clock of the daemon's process jumping a day forward or back (libfaketime,
the machine's clock is never changed) neither bursts out tomorrow's mail nor loses today's;
a send window keeps its local hours across a DST change in the lead's zone."""
import datetime
import json
import os
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import PLAIN_BUILD, daemon_factory, wait_for, write_content  # noqa: F401

FAKETIME_LIBS = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/faketime/libfaketime.so.1"]


def faketime_lib():
    for p in FAKETIME_LIBS:
        if os.path.exists(p):
            return p
    pytest.skip("libfaketime is not installed")


def two_steps(second_delay, window=None):
    seq = {"stage": "awareness",
           "steps": [{"id": "one", "delay": "0d", "template": "one.md"},
                     {"id": "two", "delay": second_delay, "template": "two.md"}]}
    if window:
        seq["window"] = window
    return {
        "journey.json": json.dumps({"stages": ["awareness", "customer"]}),
        "sequences/s.json": json.dumps(seq),
        "templates/one.md": "---\nsubject: One\n---\nFirst.\n",
        "templates/two.md": "---\nsubject: Two\n---\nSecond.\n",
    }


def state(d, step):
    rows = d.sql("SELECT state FROM touches WHERE step = ?", step)
    return rows[0][0] if rows else None


def faked_daemon(daemon_factory, tmp_path, files):
    """A daemon without the test clock whose wall clock reads tmp_path/faketime (libfaketime,
    re-read on every call; the monotonic clock is left alone)."""
    stamp = tmp_path / "faketime"
    stamp.write_text("+0\n")
    content = write_content(tmp_path / "content", files)
    d = daemon_factory(content=content, test_clock=False)
    d.start(binary=PLAIN_BUILD / "dripd",
            prefix=["env", f"LD_PRELOAD={faketime_lib()}", f"FAKETIME_TIMESTAMP_FILE={stamp}",
                    "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"])
    return d, stamp


def test_wall_clock_a_day_forward_sends_nothing_early(daemon_factory, tmp_path):
    d, stamp = faked_daemon(daemon_factory, tmp_path, two_steps("1h"))
    d.ctl("lead", "add", "lead@example.org")
    wait_for(lambda: state(d, "one") == "sent", 10, "step one")
    before = d.ctl("status")["now"]
    stamp.write_text("+1d\n")
    time.sleep(4)
    assert state(d, "two") == "pending", "the wall clock's jump sent tomorrow's step at once"
    now = d.ctl("status")["now"]
    gap = (datetime.datetime.fromisoformat(now.replace("Z", "+00:00")) -
           datetime.datetime.fromisoformat(before.replace("Z", "+00:00"))).total_seconds()
    assert 0 <= gap < 60, f"business time moved {gap}s in 4s after a jump of a day"
    assert d.stop() == 0


def test_wall_clock_a_day_back_loses_no_schedule(daemon_factory, tmp_path):
    d, stamp = faked_daemon(daemon_factory, tmp_path, two_steps("5s"))
    d.ctl("lead", "add", "lead@example.org")
    wait_for(lambda: state(d, "one") == "sent", 10, "step one")
    stamp.write_text("-1d\n")
    # Business time keeps moving (at nine tenths of the pace while it slews back), so the
    # step due in 5 s goes in about 6 s, not a day later.
    wait_for(lambda: state(d, "two") == "sent", 20, "step two after the wall clock went back")
    assert d.stop() == 0


def advance_until_sent(d, step):
    """Moves the test clock 10 minutes at a time (windows spread sends over their hours)."""
    for _ in range(24 * 6):
        time.sleep(0.2)
        if state(d, step) == "sent":
            return
        d.advance("10m")
    raise AssertionError(f"step {step} never went")


def test_a_send_window_keeps_its_local_hours_across_a_dst_change(daemon_factory, tmp_path):
    zone = ZoneInfo("America/New_York")
    content = write_content(tmp_path / "content",
                            two_steps("1d", window="daily 09:00-10:00"))
    d = daemon_factory(content=content)
    d.start()
    now = datetime.datetime.fromisoformat(d.ctl("status")["now"].replace("Z", "+00:00"))
    # The next DST change in New York, found hour by hour; start at noon the day before.
    t = now
    while t.astimezone(zone).utcoffset() == now.astimezone(zone).utcoffset():
        t += datetime.timedelta(hours=1)
    eve = (t.astimezone(zone) - datetime.timedelta(days=1)).replace(hour=12, minute=0, second=0)
    d.advance(f"{int((eve - now).total_seconds())}s")
    d.ctl("lead", "add", "lead@example.org", "--tz", "America/New_York")
    time.sleep(0.5)
    assert state(d, "one") == "pending", "sent outside its window"
    # Business time reaches 05:00 on the day of the change (past it: it is at 02:00 local),
    # then the window's opening at 09:00: the step waits for it, and goes inside it.
    day = (eve + datetime.timedelta(days=1)).date()
    early = datetime.datetime.combine(day, datetime.time(5, 0), zone)
    now = datetime.datetime.fromisoformat(d.ctl("status")["now"].replace("Z", "+00:00"))
    d.advance(f"{int((early - now).total_seconds())}s")
    time.sleep(0.5)
    assert state(d, "one") == "pending", "sent at 05:00, outside its window"
    d.advance("4h")
    advance_until_sent(d, "one")
    d.advance("23h")
    advance_until_sent(d, "two")
    hours = [datetime.datetime.fromtimestamp(s, zone).hour
             for (s,) in d.sql("SELECT sent_at FROM touches ORDER BY step_index")]
    assert hours == [9, 9], f"sent at local hours {hours}, window 09:00-10:00"
    first = d.sql("SELECT sent_at FROM touches ORDER BY step_index")[0][0]
    assert datetime.datetime.fromtimestamp(first, zone).utcoffset() != \
        eve.utcoffset(), "the first step should go after the change"
    assert d.stop() == 0
