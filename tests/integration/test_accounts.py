#!/usr/bin/python3
"""Several delivery accounts, per-domain limits, the warm-up ramp and the reputation
governor, each proven on what real aiosmtpd servers on loopback received, and when, with
the test clock."""
import json
import subprocess
import time
import urllib.request
from datetime import datetime, timezone

from conftest import DRIPD, SmtpSink, wait_for
from test_skeleton import write_content
from test_smtp import ONE_STEP

TWO_ACCOUNTS = {
    "journey.json": json.dumps({"stages": ["awareness", "consideration", "customer"],
                                "sender": {"company": "Northwind",
                                           "postal_address": "1 Quay, Bristol"}}),
    "sequences/hello.json": json.dumps({
        "stage": "awareness",
        "steps": [{"id": "hi", "delay": "0d", "template": "hi.md"}]}),
    "sequences/notes.json": json.dumps({
        "stage": "consideration", "mode": "prospect", "account": "seller",
        "opt_out": "Not the right time? Reply 'no thanks' and I won't write again.",
        "steps": [{"id": "first", "delay": "0d", "template": "note.md"}]}),
    "templates/hi.md": "---\nsubject: Hi {{first_name|there}}\n---\nHello.\n",
    "templates/note.md": "---\nsubject: A question, {{first_name|there}}\n---\n"
                         "Quick question about your team.\n",
}

SINGLE = {k: v for k, v in TWO_ACCOUNTS.items() if k != "sequences/notes.json"}


def account(d, name):
    return next(a for a in d.ctl("status")["accounts"] if a["name"] == name)


def start(daemon_factory, tmp_path, files, sink, **config):
    content = write_content(tmp_path / "content", files)
    d = daemon_factory(content=content)
    delivery = {"url": sink.url, "from": "Ana Ruiz <ana@example.com>", "max_connections": 2,
                "retry_min": "1d", "retry_max": "2d"}
    delivery.update(config.pop("delivery", {}))
    d.config["delivery"] = delivery
    d.config.update(config)
    d.write_config()
    return d.start()


def test_a_sequence_leaves_from_its_own_account(daemon_factory, tmp_path, smtp_sink):
    seller = SmtpSink()
    try:
        d = start(daemon_factory, tmp_path, TWO_ACCOUNTS, smtp_sink, accounts={
            "seller": {"url": seller.url, "from": "Sam Seller <sam@seller.example>",
                       "max_connections": 1}})
        d.ctl("lead", "add", "nurture@example.org", "--first-name", "Nia")
        d.ctl("lead", "add", "prospect@example.org", "--first-name", "Pat",
              "--stage", "consideration")
        wait_for(lambda: len(smtp_sink.messages) == 1 and len(seller.messages) == 1, 10,
                 "one message at each relay")
        (env_from, rcpts, _), = smtp_sink.messages
        assert env_from == "ana@example.com" and rcpts == ["nurture@example.org"]
        (env_from, rcpts, _), = seller.messages
        assert env_from == "sam@seller.example" and rcpts == ["prospect@example.org"]
        msg = seller.parsed()[0]
        assert msg["From"].addresses[0].addr_spec == "sam@seller.example"
        assert msg["Message-ID"].endswith("@seller.example>")
        assert account(d, "seller")["sent_last_hour"] == 1
        assert account(d, "seller")["threads"] == 1
        assert account(d, "default")["sent_last_hour"] == 1
        assert d.sql("SELECT account FROM touches ORDER BY id") == [("default",), ("seller",)]
        assert d.stop() == 0
    finally:
        seller.stop()


def test_accounts_are_validated_with_file_and_line(tmp_path):
    content = write_content(tmp_path / "content", TWO_ACCOUNTS)
    cfg = tmp_path / "dripd.json"

    def check(text):
        cfg.write_text(text)
        return subprocess.run([str(DRIPD), "check", "-c", str(cfg)], capture_output=True,
                              text=True)
    base = f'{{"content_dir": "{content}",\n'
    r = check(base + '"accounts": {\n "seller": {"from": "Sam <sam@seller.example>"}}}\n')
    assert r.returncode == 1 and f"{cfg}:3:" in r.stderr and 'missing "url"' in r.stderr, r.stderr
    r = check(base + '"accounts": {\n "Bad Name": {"url": "smtp://x", "from": "a@b.example"}}}')
    assert r.returncode == 1 and f"{cfg}:3:" in r.stderr and "a name is" in r.stderr, r.stderr
    r = check(base + '"accounts": {"seller": {"url": "smtp://127.0.0.1:1",\n'
              ' "from": "a@b.example",\n "warmup": {"start": "2026-13-01", "days": 3, '
              '"from": 5, "to": 50}}}}')
    assert r.returncode == 1 and f"{cfg}:4:" in r.stderr and "warmup" in r.stderr, r.stderr
    r = check(base + '"delivery": {"domains": {\n "Gmail.com": {"per_hour": 5}}}}')
    assert r.returncode == 1 and f"{cfg}:3:" in r.stderr and "lower-case domain" in r.stderr
    # A sequence naming an account the config does not have: the sequence's file and line.
    r = check(base + '"accounts": {}}')
    assert r.returncode == 1, r.stderr
    assert "notes.json:1: sequence: account \"seller\" is not in the config" in r.stderr, \
        r.stderr


def test_a_recipient_domain_gets_no_more_than_its_hourly_cap(daemon_factory, tmp_path,
                                                             smtp_sink):
    d = start(daemon_factory, tmp_path, ONE_STEP, smtp_sink,
              delivery={"domains": {"gmail.com": {"per_hour": 2}}})
    for i in range(4):
        d.ctl("lead", "add", f"g{i}@Gmail.com")
    for i in range(2):
        d.ctl("lead", "add", f"o{i}@example.org")

    def to(domain):
        return [r for _, (r,), _ in smtp_sink.messages if r.lower().endswith(domain)]
    wait_for(lambda: len(to("gmail.com")) == 2 and len(to("example.org")) == 2, 10,
             "two to gmail.com and both others")
    time.sleep(1.0)
    assert len(to("gmail.com")) == 2, "the per-domain cap was exceeded"
    dom = account(d, "default")["domains"][0]
    assert dom["domain"] == "gmail.com" and dom["sent_last_hour"] == 2
    d.advance("1h")
    wait_for(lambda: len(to("gmail.com")) == 4, 10, "the other two an hour later")
    assert d.stop() == 0


def test_a_recipient_domain_gets_no_more_than_its_concurrency(daemon_factory, tmp_path,
                                                              smtp_sink):
    smtp_sink.stall = 1.5
    d = start(daemon_factory, tmp_path, ONE_STEP, smtp_sink,
              delivery={"max_connections": 4, "reply_timeout": "30s",
                        "domains": {"gmail.com": {"concurrency": 1}}})
    for i in range(3):
        d.ctl("lead", "add", f"g{i}@gmail.com")
    d.ctl("lead", "add", "other@example.org")
    most, most_busy = 0, 0
    deadline = time.monotonic() + 30
    while len(smtp_sink.messages) < 4 and time.monotonic() < deadline:
        acc = account(d, "default")
        most = max(most, acc["domains"][0]["in_flight"])
        most_busy = max(most_busy, acc["busy"])
        time.sleep(0.1)
    assert len(smtp_sink.messages) == 4
    assert most == 1, f"gmail.com had {most} messages in flight at once"
    assert most_busy == 2, "the other domain was held up too"
    assert d.stop() == 0


def test_the_warm_up_ramp_grows_the_daily_cap(daemon_factory, tmp_path, smtp_sink):
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    d = start(daemon_factory, tmp_path, SINGLE, smtp_sink,
              delivery={"warmup": {"start": today, "days": 3, "from": 2, "to": 6}})
    for i in range(10):
        d.ctl("lead", "add", f"w{i}@example.org")
    counts = []
    for day in range(4):
        if day:
            d.advance("1d")
        expect = [2, 5, 9, 10][day]  # caps 2, 3, 4, then no ramp
        wait_for(lambda: len(smtp_sink.messages) >= expect, 10, f"{expect} by day {day}")
        time.sleep(0.8)
        counts.append(len(smtp_sink.messages))
        if day < 3:
            assert account(d, "default")["warmup_cap_today"] == [2, 3, 4][day]
        # /metrics: the day's cap is the ramp's (0 once it is over, with no per_day).
        metrics = urllib.request.urlopen(f"{d.base_url}/metrics", timeout=5).read().decode()
        assert f'dripd_account_cap{{account="default",window="24h"}} {[2, 3, 4, 0][day]}' \
            in metrics.splitlines(), metrics
    assert counts == [2, 5, 9, 10], counts
    assert "warmup_cap_today" not in account(d, "default")
    assert d.stop() == 0


def test_the_governor_pauses_on_a_burst_of_421s_slows_then_recovers(daemon_factory, tmp_path,
                                                                    smtp_sink):
    for i in range(4):
        smtp_sink.rcpt_codes[f"bad{i}@example.org"] = "421 4.7.0 too many messages, slow down"
    d = start(daemon_factory, tmp_path, ONE_STEP, smtp_sink, governor={
        "min_samples": 4, "slow_deferral_rate": 0.25, "pause_deferral_rate": 0.5,
        "pause": "30m", "recover": "30m", "slow_interval": "1m"})
    for i in range(4):
        d.ctl("lead", "add", f"bad{i}@example.org")
    wait_for(lambda: account(d, "default")["governor"]["state"] == "paused", 10,
             "the account paused")
    gov = account(d, "default")["governor"]
    assert "deferral rate 1.000 >= 0.500" in gov["reason"], gov
    assert "account default is paused" in d.log_text()
    human = d.ctl_raw("status").stdout
    assert "account        default:" in human and "paused until" in human, human
    metrics = urllib.request.urlopen(f"{d.base_url}/metrics", timeout=5).read().decode()
    mine = [line for line in metrics.splitlines() if line.startswith("dripd_account_")]
    assert 'dripd_account_state{account="default",state="paused"} 1' in mine, mine
    assert 'dripd_account_state{account="default",state="normal"} 0' in mine, mine
    rates = {line.split('outcome="')[1].split('"')[0]: float(line.split()[-1])
             for line in mine if line.startswith('dripd_account_rate{account="default",')}
    assert sorted(rates) == ["bounce", "complaint", "deferral"], mine
    assert all(0 <= v <= 1 for v in rates.values()), mine
    for i in range(3):
        d.ctl("lead", "add", f"good{i}@example.org")
    time.sleep(1.0)
    assert smtp_sink.messages == [], "mail went out while the account was paused"
    assert any(c["check"] == "governor" for c in
               d.ctl("explain", "good0@example.org")["trace"])
    d.advance("30m")
    wait_for(lambda: len(smtp_sink.messages) == 1, 10, "one message once slow")
    assert account(d, "default")["governor"]["state"] == "slow"
    time.sleep(1.0)
    assert len(smtp_sink.messages) == 1, "slow means one message per slow_interval"
    d.advance("1m")
    wait_for(lambda: len(smtp_sink.messages) == 2, 10, "the next one a minute later")
    d.advance("30m")
    wait_for(lambda: len(smtp_sink.messages) == 3, 10, "the rest once recovered")
    assert account(d, "default")["governor"]["state"] == "normal"
    assert "account default is normal: recovered" in d.log_text()
    assert d.stop() == 0


def test_a_limit_changed_live_takes_effect_at_once_and_survives_a_restart(
        daemon_factory, tmp_path, smtp_sink):
    d = start(daemon_factory, tmp_path, SINGLE, smtp_sink, delivery={
        "per_hour": 2, "domains": {"gmail.com": {"per_hour": 1}}})
    for i in range(6):
        d.ctl("lead", "add", f"l{i}@example.org")
    wait_for(lambda: len(smtp_sink.messages) == 2, 10, "the first two")
    time.sleep(0.8)
    assert len(smtp_sink.messages) == 2
    res = d.ctl("limits", "default", "--per-hour", "4")
    assert res["accounts"][0]["per_hour"] == 4
    wait_for(lambda: len(smtp_sink.messages) == 4, 10, "two more at once, the same hour")
    assert "account default: per_hour set to 4" in d.log_text()
    assert d.stop() == 0
    d.start()
    assert account(d, "default")["per_hour"] == 4, "the live limit was lost at a restart"
    time.sleep(0.8)
    assert len(smtp_sink.messages) == 4
    d.ctl("limits", "default", "--domain", "gmail.com", "--per-hour", "0")
    assert account(d, "default")["domains"][0]["per_hour"] == 0
    d.ctl("limits", "default", "--per-hour", "config")
    assert account(d, "default")["per_hour"] == 2
    r = d.ctl_raw("limits", "nobody", "--per-hour", "3")
    assert r.returncode == 1 and 'no account "nobody"' in r.stderr, r.stderr
    r = d.ctl_raw("limits", "default", "--domain", "yahoo.com", "--per-hour", "3")
    assert r.returncode == 1 and "only domains in the config" in r.stderr, r.stderr
    r = d.ctl_raw("limits", "default", "--per-day", "-5")
    assert r.returncode == 1 and "must be a number" in r.stderr, r.stderr
    d.advance("1h")
    wait_for(lambda: len(smtp_sink.messages) == 6, 10, "the rest in the next hour")
    assert d.stop() == 0
