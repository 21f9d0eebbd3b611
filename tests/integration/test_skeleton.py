#!/usr/bin/python3
"""The walking skeleton end to end: a lead added through the control socket walks a
three-step sequence on the test clock into a Maildir; restarts, bad input and signals."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DRIPCTL, DRIPD, Daemon, copy_content, wait_for

THREE_STEPS = {
    "journey.json": json.dumps({
        "stages": ["awareness", "consideration", "decision", "customer"],
        "sender": {"company": "Northwind Pipeline Coaching",
                   "postal_address": "12 Harbour Street, Bristol BS1 4QA"},
        "attributes": ["plan"],
    }),
    "sequences/welcome.json": json.dumps({
        "stage": "awareness", "mode": "nurture", "pixel": True,
        "steps": [
            {"id": "hello", "delay": "0d", "template": "a/hello.md"},
            {"id": "tips", "delay": "2d", "template": "a/tips.md"},
            {"id": "offer", "delay": "5d", "template": "a/offer.md"},
        ],
    }),
    "templates/a/hello.md": "---\nsubject: Hello {{first_name|there}}\n"
                            "preheader: The first of three\n---\n"
                            "Hi {{first_name|there}} at {{company|your team}},\n\n"
                            "Welcome to **step one**. Your plan: {{attrs.plan|none}}.\n",
    "templates/a/tips.md": "---\nsubject: Two tips for {{company}}\n---\n"
                           "Hi {{first_name}},\n\n- first tip\n- second tip\n\n"
                           "[Read the guide](https://example.com/guide \"guide\")\n",
    "templates/a/offer.md": "---\nsubject: Last one, {{first_name}}\n---\n"
                            "Hi {{first_name}}, this is step three.\n",
}


def write_content(folder: Path, files=THREE_STEPS) -> Path:
    for name, text in files.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return folder


def bodies(msg):
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    return text, html


def test_lead_walks_a_three_step_sequence_into_the_maildir(daemon_factory, tmp_path):
    content = write_content(tmp_path / "content")
    d = daemon_factory(content=content).start()
    added = d.ctl("lead", "add", "maya@example.org", "--first-name", "Maya", "--last-name",
                  "Okafor", "--company", "Okafor <Print> & Co", "--attr", "plan=pro",
                  "--tag", "webinar")
    assert added["lead"]["stage"] == "awareness"
    assert added["lead"]["tags"] == ["webinar"]

    first = d.wait_messages(1)
    assert len(first) == 1
    # The second step is due two business days later: nothing more arrives before that.
    d.advance("1d")
    time.sleep(0.5)
    assert len(d.messages()) == 1, "step 2 went out before its delay"
    d.advance("1d")
    d.wait_messages(2)
    d.advance("5d")
    msgs = d.wait_messages(3)
    time.sleep(0.3)
    assert len(d.messages()) == 3

    assert [m["Subject"] for m in msgs] == [
        "Hello Maya", "Two tips for Okafor <Print> & Co", "Last one, Maya"]
    for m in msgs:
        assert m["From"].addresses[0].addr_spec == "ana@example.com"
        assert m["From"].addresses[0].display_name == "Ana Ruiz"
        assert m["To"].addresses[0].addr_spec == "maya@example.org"
        assert m["To"].addresses[0].display_name == "Maya Okafor"
        assert re.fullmatch(r"<t\d+\.[0-9a-f]{24}@example\.com>", m["Message-ID"])
        assert m["Date"].datetime is not None
        assert m["MIME-Version"] == "1.0"
        assert m.get_content_type() == "multipart/alternative"
    assert len({m["Message-ID"] for m in msgs}) == 3
    dates = [m["Date"].datetime for m in msgs]
    assert dates == sorted(dates)
    assert (dates[1] - dates[0]).days >= 2 and (dates[2] - dates[1]).days >= 5

    text, html = bodies(msgs[0])
    assert "Hi Maya at Okafor <Print> & Co," in text
    assert "Your plan: pro." in text
    assert "Okafor &lt;Print&gt; &amp; Co" in html
    assert "<Print>" not in html
    assert "<strong>step one</strong>" in html
    assert "12 Harbour Street" in text and "12 Harbour Street" in html
    text2, html2 = bodies(msgs[1])
    assert "- first tip\n- second tip" in text2
    # Links go through the tracker and only to what the message had; the tag stays ours.
    click = re.search(r"Read the guide <(http://127\.0\.0\.1:8025/c/[A-Za-z0-9_-]+)>", text2)
    assert click, text2
    assert f'href="{click.group(1)}"' in html2
    assert "example.com/guide" not in html2 and 'title="guide"' not in html2
    assert d.sql("SELECT l.url, l.tag FROM links l JOIN touches t ON t.id = l.touch_id "
                 "WHERE t.step = 'tips' ORDER BY l.idx") == [
        ("https://example.com/guide", "guide"),
        ("http://127.0.0.1:8025", "honeypot")]  # the hidden link only machines follow
    for m in msgs:
        text, html = bodies(m)
        unsub = re.search(r"Unsubscribe: (http://127\.0\.0\.1:8025/u/[A-Za-z0-9_-]+)", text)
        assert unsub, text
        assert m["List-Unsubscribe"].startswith(f"<{unsub.group(1)}>, <mailto:ana@example.com")
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.search(r'<img src="http://127\.0\.0\.1:8025/o/[A-Za-z0-9_-]+" width="1"', html)

    shown = d.ctl("lead", "show", "maya@example.org")
    assert [t["state"] for t in shown["touches"]] == ["sent", "sent", "sent"]
    assert [t["step"] for t in shown["touches"]] == ["hello", "tips", "offer"]
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds == ["stage", "sent", "sent", "sent"]
    assert d.ctl("status")["active_enrolments"] == 0
    assert d.stop() == 0
    assert d.sql("SELECT state FROM enrolments") == [("completed",)]


def test_a_restart_keeps_the_position_and_sends_no_step_twice(daemon_factory, tmp_path):
    content = write_content(tmp_path / "content")
    d = daemon_factory(content=content).start()
    d.ctl("lead", "add", "jonas@example.org", "--first-name", "Jonas", "--company", "Weber")
    d.wait_messages(1)
    assert d.stop() == 0

    d.start()
    time.sleep(0.5)
    assert len(d.messages()) == 1, "the first step went out again after a restart"
    d.advance("2d")
    d.wait_messages(2)
    assert d.stop() == 0

    d.start()
    status = d.ctl("status")
    assert status["touches"]["sent"] == 2 and status["touches"]["pending"] == 1
    d.advance("5d")
    d.wait_messages(3)
    time.sleep(0.5)
    msgs = d.messages()
    assert [m["Subject"] for m in msgs] == ["Hello Jonas", "Two tips for Weber", "Last one, Jonas"]
    assert d.stop() == 0
    rows = d.sql("SELECT sequence, step, count(*) FROM touches GROUP BY 1, 2 HAVING count(*) > 1")
    assert rows == []


def test_the_test_clock_survives_a_restart(daemon):
    before = daemon.ctl("status")["now"]
    daemon.advance("30d")
    assert daemon.stop() == 0
    daemon.start()
    after = daemon.ctl("status")["now"]
    assert after[:10] > before[:10]
    delta = time.mktime(time.strptime(after, "%Y-%m-%dT%H:%M:%SZ")) - \
        time.mktime(time.strptime(before, "%Y-%m-%dT%H:%M:%SZ"))
    assert 30 * 86400 <= delta < 30 * 86400 + 120


def run_check(config_path):
    return subprocess.run([str(DRIPD), "check", "-c", str(config_path)], capture_output=True,
                          text=True, timeout=30)


def test_a_bad_config_is_refused_naming_file_and_line(tmp_path):
    cfg = tmp_path / "dripd.json"
    cfg.write_text('{\n  // comments are fine\n  "state_dir": "state",\n'
                   '  "delivery": { "url": "maildir:M", "form": "x@example.com" }\n}\n')
    r = run_check(cfg)
    assert r.returncode == 1
    assert f"{cfg}:4:" in r.stderr and 'unknown key "form"' in r.stderr, r.stderr
    # The daemon itself refuses to start with the same message.
    r = subprocess.run([str(DRIPD), "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"{cfg}:4:" in r.stderr, r.stderr

    cfg.write_text('{\n  "state_dir": "a",\n  "test_clock": true,\n  "state_dir": "b"\n}\n')
    r = run_check(cfg)
    assert r.returncode == 1 and f"{cfg}:4: duplicate key \"state_dir\"" in r.stderr, r.stderr

    cfg.write_text('{\n  "state_dir": "a",\n  "test_clock": yes\n}\n')
    r = run_check(cfg)
    assert r.returncode == 1 and f"{cfg}:3:" in r.stderr, r.stderr

    r = run_check(tmp_path / "missing.json")
    assert r.returncode == 1 and "missing.json: cannot read" in r.stderr, r.stderr


def test_bad_content_is_refused_naming_file_and_line(daemon_factory, tmp_path):
    content = write_content(tmp_path / "content")
    d = daemon_factory(content=content)
    tips = content / "templates/a/tips.md"
    tips.write_text("---\nsubject: Two tips\n---\nHi {{first_name}},\n\nsee {{frist_name}}\n")
    r = run_check(d.config_path)
    assert r.returncode == 1
    assert f"{tips}:6: unknown merge field \"frist_name\"" in r.stderr, r.stderr

    write_content(content)
    seq = content / "sequences/welcome.json"
    seq.write_text('{\n "stage": "awareness",\n "steps": [\n'
                   '  {"id": "a", "delay": "3 days", "template": "a/hello.md"}\n ]\n}\n')
    r = run_check(d.config_path)
    assert r.returncode == 1 and f"{seq}:4:" in r.stderr and "delay" in r.stderr, r.stderr

    seq.write_text('{\n "stage": "awarenes",\n "steps": []\n}\n')
    r = run_check(d.config_path)
    assert r.returncode == 1 and f"{seq}:2:" in r.stderr and "awarenes" in r.stderr, r.stderr

    write_content(content)
    r = run_check(d.config_path)
    assert r.returncode == 0, r.stderr
    assert "3 templates" in r.stdout


def test_a_bad_reload_is_refused_and_the_old_content_keeps_running(daemon_factory, tmp_path):
    content = write_content(tmp_path / "content")
    d = daemon_factory(content=content).start()
    (content / "templates/a/tips.md").write_text("---\nsubject: Tips {{oops}}\n---\nbody\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in d.log_text(), 10, "the refused reload in the log")
    assert "tips.md:2: unknown merge field" in d.log_text()
    assert d.proc.poll() is None
    d.ctl("lead", "add", "priya@example.com", "--first-name", "Priya", "--company", "Shah")
    # Delays count from the previous step's send: advance only once it went out.
    d.wait_messages(1)
    d.advance("2d")
    msgs = d.wait_messages(2)
    assert msgs[1]["Subject"] == "Two tips for Shah", "the old content did not keep running"

    (content / "templates/a/offer.md").write_text("---\nsubject: New offer, {{first_name}}\n"
                                                  "---\nbody\n")
    write_content(content, {"templates/a/tips.md": THREE_STEPS["templates/a/tips.md"]})
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in d.log_text(), 10, "the reload in the log")
    d.advance("5d")
    msgs = d.wait_messages(3)
    assert msgs[2]["Subject"] == "New offer, Priya"
    assert d.stop() == 0


def test_sigterm_leaves_the_database_consistent(daemon_factory):
    d = daemon_factory().start()
    for i in range(12):
        d.ctl("lead", "add", f"lead{i}@example.com", "--first-name", f"L{i}",
              "--stage", ["awareness", "consideration", "decision"][i % 3])
    d.wait_messages(12)
    d.advance("3d")
    assert d.stop(signal.SIGTERM) == 0
    assert "draining" in d.log_text() and "stopped" in d.log_text()
    assert d.sql("PRAGMA integrity_check") == [("ok",)]
    assert d.sql("SELECT count(*) FROM touches WHERE state IN ('queued', 'sending')") == [(0,)]
    sent = d.sql("SELECT count(*) FROM touches WHERE state = 'sent'")[0][0]
    assert sent == len(d.messages()) and sent >= 12
    assert d.sql("SELECT count(*) FROM events WHERE kind = 'sent'") == [(sent,)]
    assert not d.socket.exists(), "the control socket was left behind"


def test_sigint_drains_and_exits_zero(daemon):
    daemon.ctl("lead", "add", "a@example.com")
    daemon.wait_messages(1)
    assert daemon.stop(signal.SIGINT) == 0


def test_dripctl_exit_codes_and_errors(daemon, tmp_path):
    daemon.ctl("lead", "add", "maya@example.org")
    r = daemon.ctl_raw("lead", "add", "MAYA@example.org")
    assert r.returncode == 1 and "exists" in r.stderr, r.stderr
    r = daemon.ctl_raw("lead", "add", "not-an-address")
    assert r.returncode == 1 and "not an email address" in r.stderr
    r = daemon.ctl_raw("lead", "add", "b@example.org", "--stage", "nowhere")
    assert r.returncode == 1 and "unknown stage" in r.stderr
    r = daemon.ctl_raw("lead", "add", "b@example.org", "--tz", "Mars/Olympus")
    assert r.returncode == 1 and "unknown time zone" in r.stderr
    assert daemon.ctl("status")["leads"] == 1, "a refused lead was half-added"
    r = daemon.ctl_raw("lead", "show", "nobody@example.org", json_out=True)
    assert r.returncode == 1 and "(not_found)" in r.stderr
    r = daemon.ctl_raw("lead", "add")
    assert r.returncode == 2 and "missing EMAIL" in r.stderr
    r = daemon.ctl_raw("lead", "add", "c@example.org", "--colour", "red")
    assert r.returncode == 2 and "unknown option --colour" in r.stderr
    r = daemon.ctl_raw("fly")
    assert r.returncode == 2
    r = daemon.ctl_raw("lead", "add", "--help")
    assert r.returncode == 0 and "usage: dripctl lead add EMAIL" in r.stdout
    r = subprocess.run([str(DRIPCTL), "-s", str(tmp_path / "nothing.sock"), "status"],
                       capture_output=True, text=True)
    assert r.returncode == 3 and str(tmp_path / "nothing.sock") in r.stderr
    r = subprocess.run([str(DRIPCTL), "help"], capture_output=True, text=True)
    assert r.returncode == 0
    for words in ("status", "lead add EMAIL", "lead show EMAIL", "clock advance DURATION"):
        assert words in r.stdout
    human = daemon.ctl_raw("lead", "show", "maya@example.org")
    assert human.returncode == 0 and "timeline" in human.stdout and "awareness" in human.stdout


def test_clock_advance_is_refused_without_the_test_clock(daemon_factory):
    d = daemon_factory(test_clock=False).start()
    r = d.ctl_raw("clock", "advance", "1d")
    assert r.returncode == 1 and "(disabled)" in r.stderr, r.stderr


def test_the_control_protocol_answers_errors_with_stable_codes(daemon):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(daemon.socket))
    f = s.makefile("rwb")

    def ask(line):
        f.write(line + b"\n")
        f.flush()
        return json.loads(f.readline())
    assert ask(b"not json")["error"]["code"] == "protocol"
    assert ask(b'{"v":2,"id":1,"cmd":"status"}')["error"]["code"] == "protocol"
    a = ask(b'{"v":1,"id":"x7","cmd":"teleport"}')
    assert a["id"] == "x7" and a["error"]["code"] == "unknown_command"
    a = ask(b'{"v":1,"id":8,"cmd":"lead.add","args":{"email":5}}')
    assert a["id"] == 8 and a["error"]["code"] == "invalid"
    a = ask(b'{"v":1,"id":9,"cmd":"status"}')
    assert a["ok"] is True and a["id"] == 9 and "touches" in a["result"]
    # A request over the size limit is refused, and the connection still works after it.
    f.write(b'{"v":1,"id":10,"cmd":"status","pad":"' + b"x" * (1024 * 1024 + 10) + b'"}\n')
    f.flush()
    assert json.loads(f.readline())["error"]["code"] == "too_big"
    assert ask(b'{"v":1,"id":11,"cmd":"status"}')["ok"] is True
    # 64 KiB of binary garbage on one line (NULs, high bytes, braces): a protocol error.
    import random
    rnd = random.Random(9)
    junk = bytes(rnd.choice(b"\x00\xff{}\"\\:,[]x\x7f\r") for _ in range(64 * 1024))
    assert ask(junk)["error"]["code"] == "protocol"
    assert ask(b'{"v":1,"id":12,"cmd":"status"}')["ok"] is True
    s.close()
    assert daemon.proc.poll() is None


def test_a_live_socket_is_never_stolen_and_a_stale_one_is_replaced(daemon_factory):
    d = daemon_factory().start()
    twin = Daemon(d.folder / "twin")
    twin.config["control_socket"] = str(d.socket)
    twin.write_config()
    r = subprocess.run([str(DRIPD), "-c", str(twin.config_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "another dripd answers" in r.stderr, r.stderr
    assert d.answers()
    # A crash leaves the socket file behind; the next start replaces it.
    d.proc.kill()
    d.proc.wait()
    assert d.socket.exists()
    d.start()
    assert "removed stale socket" in d.log_text()


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_idle_means_idle(daemon):
    daemon.ctl("lead", "add", "a@example.com")
    daemon.wait_messages(1)
    # The next step is days away: the daemon must sleep, not poll.
    time.sleep(0.5)
    before = cpu_ticks(daemon.proc.pid)
    time.sleep(3)
    used = cpu_ticks(daemon.proc.pid) - before
    hz = os.sysconf("SC_CLK_TCK")
    assert used <= hz // 20, f"dripd used {used} CPU ticks in 3 s while idle"


@pytest.mark.skipif(not os.environ.get("DRIPD_PLAIN_BUILD"), reason="needs DRIPD_PLAIN_BUILD")
def test_valgrind_finds_no_leak_in_a_normal_run(daemon_factory):
    import shutil
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is not installed (.ci/install-deps installs it)"
    plain = Path(os.environ["DRIPD_PLAIN_BUILD"]) / "dripd"
    d = daemon_factory()
    d.start(binary=plain, prefix=(valgrind, "--quiet", "--leak-check=full",
                                  "--show-leak-kinds=definite,indirect,possible",
                                  "--errors-for-leak-kinds=definite,indirect,possible",
                                  "--error-exitcode=99"))
    for i in range(3):
        d.ctl("lead", "add", f"v{i}@example.com", "--first-name", "V", "--tag", "t",
              "--attr", "k=v")
    d.wait_messages(3, timeout=30)
    d.advance("3d")
    d.wait_messages(6, timeout=30)
    d.ctl("lead", "show", "v0@example.com")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in d.log_text(), 30, "the reload")
    code = d.stop(timeout=60)
    assert code == 0, f"valgrind reported errors or leaks:\n{d.log_text()}"


def test_the_example_config_validates(tmp_path):
    example = Path(__file__).resolve().parents[2] / "systemd" / "dripd.json"
    r = run_check(example)
    # The config itself is fine; only its content folder does not exist on a test machine.
    assert r.returncode == 1
    assert "/etc/dripd/content" in r.stderr and "dripd.json:" not in r.stderr, r.stderr


def test_the_sample_journey_passes_dripd_check(tmp_path):
    sample = Path(__file__).resolve().parents[2] / "content"
    cfg = tmp_path / "dripd.json"
    cfg.write_text(json.dumps({"state_dir": "state", "content_dir": str(sample),
                               "delivery": {"url": "maildir:M",
                                            "from": "Ana Ruiz <ana@example.com>"}}))
    r = run_check(cfg)
    assert r.returncode == 0, r.stderr
    assert "4 stages, 4 sequences, 14 steps, 14 templates" in r.stdout


def test_lead_update_and_lead_tag_change_the_profile(daemon):
    daemon.ctl("lead", "add", "ida@example.org", "--first-name", "Ida", "--company", "Old Co",
               "--tag", "a", "--tag", "b", "--attr", "plan=basic", "--attr", "size=10")
    r = daemon.ctl("lead", "update", "ida@example.org", "--company", "New Co", "--tz",
                   "Europe/Oslo", "--attr", "plan=pro")
    lead = r["lead"]
    assert (lead["first_name"], lead["company"], lead["tz"]) == ("Ida", "New Co", "Europe/Oslo")
    assert lead["attrs"] == {"plan": "pro", "size": "10"} and lead["tags"] == ["a", "b"]
    r = daemon.ctl("lead", "tag", "ida@example.org", "+vip", "-a", "+b", "-nothere")
    assert r["lead"]["tags"] == ["b", "vip"]
    r = daemon.ctl_raw("lead", "tag", "ida@example.org", "vip")
    assert r.returncode == 1 and "+TAG" in r.stderr
    r = daemon.ctl_raw("lead", "update", "ida@example.org", "--tz", "Nowhere/Land")
    assert r.returncode == 1 and "unknown time zone" in r.stderr
    assert daemon.ctl("lead", "show", "ida@example.org")["lead"]["tz"] == "Europe/Oslo"
    r = daemon.ctl_raw("lead", "update", "nobody@example.org", "--company", "X")
    assert r.returncode == 1 and "(not_found)" in r.stderr
    assert "lead tag EMAIL +TAG|-TAG…" in daemon.ctl_raw("help").stdout
