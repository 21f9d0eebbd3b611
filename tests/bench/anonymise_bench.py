#!/usr/bin/python3
"""retention.anonymise never holds the loop long: N finished leads (half opted out; each
with an ended enrolment, a sent touch and two events) are written into a fresh database, dripd
starts with retention.anonymise 30d, and `dripctl status` is pinged throughout the sweep; the
reference is the same ping once the sweep is done, in the same invocation.

    DRIPD_BUILD=build /usr/bin/python3 tests/bench/anonymise_bench.py [N [BATCH]]
"""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
os.environ.setdefault("DRIPD_BUILD", str(HERE.parents[1] / "build"))
from conftest import Daemon  # noqa: E402
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 200
work = tempfile.TemporaryDirectory(prefix="anonymise-bench.")
root = Path(work.name) / "d"
d = Daemon(root, retention={"anonymise": "30d", "batch": batch})
d.start(); assert d.stop() == 0
con = sqlite3.connect(d.db)
now = int(time.time())
old = now - 60 * 86400
con.execute("BEGIN")
for i in range(1, N + 1):
    con.execute("INSERT INTO leads (id, email, first_name, company, stage, status, created_at,"
                " updated_at) VALUES (?, ?, 'Name', 'Co', 'awareness', ?, ?, ?)",
                (i, f"l{i}@example.org", "completed" if i % 2 else "unsubscribed", old, old))
    con.execute("INSERT INTO enrolments (id, lead_id, sequence, stage, state, started_at, ended_at)"
                " VALUES (?, ?, 'welcome', 'awareness', 'completed', ?, ?)", (i, i, old, old))
    con.execute("INSERT INTO touches (id, lead_id, enrolment_id, sequence, step, step_index, state,"
                " due_at, sent_at, message_id, subject, created_at, updated_at) VALUES (?, ?, ?,"
                " 'welcome', 'one', 0, 'sent', ?, ?, ?, 'Hi', ?, ?)",
                (i, i, i, old, old, f"<t{i}@x>", old, old))
    for k in ("sent", "open"):
        con.execute("INSERT INTO events (lead_id, touch_id, kind, at, detail) VALUES (?, ?, ?, ?,"
                    " '{\"address\":\"192.0.2.1\"}')", (i, i, k, old))
    if i % 2 == 0:
        con.execute("INSERT INTO suppressions VALUES (?, 'unsubscribe', 'journey', ?)",
                    (f"l{i}@example.org", old))
con.execute("COMMIT"); con.close()
print("db", os.path.getsize(d.db) // 1024, "KiB", flush=True)
t0 = time.monotonic()
d.start(wait=False)
lat = []
while True:
    a = time.monotonic()
    r = d.ctl_raw("status", json_out=True)
    b = time.monotonic()
    if r.returncode == 0:
        lat.append(b - a)
        if json.loads(r.stdout)["anonymised"] == N:
            break
    time.sleep(0.02)
t = time.monotonic() - t0
lat.sort()
print(f"{N} leads anonymised in {t:.1f}s ({N / t:.0f}/s); status pings: {len(lat)}, "
      f"median {lat[len(lat)//2]*1000:.0f} ms, p99 {lat[int(len(lat)*.99)]*1000:.0f} ms, "
      f"max {lat[-1]*1000:.0f} ms")
ping = []
for _ in range(20):
    a = time.monotonic(); d.ctl_raw("status"); ping.append(time.monotonic() - a)
ping.sort()
print(f"idle status ping median {ping[10]*1000:.0f} ms, max {ping[-1]*1000:.0f} ms")
rss = subprocess.run(["ps", "-o", "rss=", "-p", str(d.proc.pid)], capture_output=True,
                     text=True).stdout.strip()
print(f"rss {rss} KiB; load average {os.getloadavg()[0]:.1f}")
assert d.stop() == 0
work.cleanup()
