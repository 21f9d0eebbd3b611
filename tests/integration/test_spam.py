#!/usr/bin/python3
"""Deliverability: SpamAssassin (Debian's spamassassin with its stock rules, only the
network tests switched off) scores every step of every sample sequence below 2.0 points.

The messages are the ones dripd would send to the sample leads of content/demo-leads.csv:
`dripctl preview` builds them through the real rendering and message path. Each lead's
first step is previewed before anything is sent; then the first steps go out (into the
daemon's Maildir) so that the later steps are previewed as they would really be sent,
prospect follow-ups in the thread of the first note (`Re:` subject, In-Reply-To).

Run with `pytest -s` to see the table of scores; a failure shows it too, with the rules
that fired for each message over the limit.
"""
import csv
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SAMPLE_CONTENT

SPAMASSASSIN = shutil.which("spamassassin") or "/usr/bin/spamassassin"
LIMIT = 2.0
# The example config's public tracking address (systemd/dripd.json): links and the open
# pixel look as they would in production, not like the test default http://127.0.0.1:8025.
TRACKING_BASE_URL = "https://t.example.com"

pytestmark = pytest.mark.skipif(not os.path.exists(SPAMASSASSIN),
                                reason="spamassassin is not installed "
                                       "(.ci/install-deps installs it)")


def sample_sequences():
    """{sequence name: [step id, …]} from content/sequences/*.json, in file order."""
    out = {}
    for f in sorted((SAMPLE_CONTENT / "sequences").glob("*.json")):
        seq = json.loads(f.read_text())
        out[f.stem] = [s["id"] for s in seq["steps"]]
    return out


def sample_leads():
    with open(SAMPLE_CONTENT / "demo-leads.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def add_lead(d, row, *extra):
    args = ["lead", "add", row["email"], "--stage", row["stage"]]
    for column, flag in (("first_name", "--first-name"), ("last_name", "--last-name"),
                         ("company", "--company"), ("title", "--title"), ("tz", "--tz")):
        if row.get(column):
            args += [flag, row[column]]
    return d.ctl(*args, *extra)


def spam_score(message: bytes, home):
    """Runs `spamassassin -L -t` on one message: (score, [rule names], report text)."""
    r = subprocess.run([SPAMASSASSIN, "-L", "-t"], input=message, capture_output=True,
                       timeout=120, env={**os.environ, "HOME": str(home)})
    assert r.returncode == 0, f"spamassassin exited {r.returncode}: {r.stderr.decode()}"
    out = r.stdout.decode("utf-8", "replace")
    head = out.split("\n\n", 1)[0]
    status = re.search(r"^X-Spam-Status: (.*(?:\n[ \t].*)*)", head, re.M)
    assert status, f"no X-Spam-Status header in spamassassin's output:\n{out[:2000]}"
    status = re.sub(r",\s+", ",", re.sub(r"\s+", " ", status.group(1)))
    score = float(re.search(r"score=(-?[\d.]+)", status).group(1))
    tests = re.search(r"tests=(\S*)", status)
    rules = [t for t in tests.group(1).split(",") if t and t != "none"] if tests else []
    # The report: " pts rule name  description" then one line per rule that fired.
    report = out[out.find("Content analysis details"):] if "Content analysis details" in out \
        else ""
    lines = [ln for ln in report.splitlines()
             if re.match(r"^\s*-?\d+\.\d+\s+[A-Z0-9_]+\s", ln)
             or re.match(r"^\s{6,}\S", ln)]  # a rule's description continued
    return score, rules, "\n".join(lines)


def test_every_sample_message_scores_below_two_points(daemon_factory, tmp_path):
    sequences = sample_sequences()
    d = daemon_factory(tracking={"base_url": TRACKING_BASE_URL}).start()
    d.ctl("pause")  # nothing goes out until every first step has been previewed

    # One sample lead per stage's sequence, and one tagged prospect for the 1:1 notes.
    rows = sample_leads()
    prospect = [r for r in rows if r["stage"] == "consideration"][-1]
    chosen = {}
    for row in rows:
        if row is not prospect:
            chosen.setdefault(row["stage"], row)
    for row in chosen.values():
        add_lead(d, row)
    add_lead(d, prospect, "--tag", "prospect")
    leads = {}  # sequence -> the email of the lead enrolled in it
    for row in [*chosen.values(), prospect]:
        leads[d.ctl("lead", "show", row["email"])["touches"][0]["sequence"]] = row["email"]
    assert set(leads) == set(sequences), (leads, sequences)

    messages = {}  # "sequence/step" -> raw message bytes

    def preview(email, step=None):
        args = ["preview", email] + (["--step", step] if step else [])
        p = d.ctl(*args)
        key = f"{p['sequence']}/{p['step']}"
        assert step is None or key == step, (key, step)
        messages[key] = p["message"].encode()
        return key

    for seq, email in leads.items():
        assert preview(email) == f"{seq}/{sequences[seq][0]}"
    # Now the first steps go out, so the later ones are built as they would really be.
    d.ctl("resume")
    d.wait_messages(len(leads))
    for seq, email in leads.items():
        for step in sequences[seq][1:]:
            preview(email, f"{seq}/{step}")
    assert len(messages) == sum(len(s) for s in sequences.values())
    followup = messages["consideration-1to1/nudge"].decode()
    assert "\r\nIn-Reply-To: " in followup and "\r\nSubject: Re: " in followup

    home = tmp_path / "sa-home"  # a fresh HOME: no one's user_prefs, Bayes or AWL data
    home.mkdir()
    keys = [f"{seq}/{step}" for seq, steps in sequences.items() for step in steps]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        scored = dict(zip(keys, pool.map(lambda k: spam_score(messages[k], home), keys)))

    width = max(len(k) for k in scored)
    table = [f"{'sequence/step':<{width}}  score  rules"]
    for key, (score, rules, _) in scored.items():
        table.append(f"{key:<{width}}  {score:5.1f}  {','.join(rules)}")
    table = "\n".join(table)
    print(f"\nSpamAssassin scores (-L: local tests only; limit {LIMIT}):\n{table}")
    over = [k for k, (score, _, _) in scored.items() if score >= LIMIT]
    details = "\n\n".join(f"{k}: {scored[k][0]} points\n{scored[k][2]}" for k in over)
    assert not over, (f"{len(over)} of {len(scored)} messages score {LIMIT} points or "
                      f"more:\n{table}\n\nRules that fired:\n{details}")
