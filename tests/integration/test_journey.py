#!/usr/bin/python3
"""The journey: events, scores and rules move leads between stages; step conditions,
sections, variants, prospect threading and preview, all through the real daemon."""
import json
import re
import time
from pathlib import Path

from conftest import wait_for
from test_skeleton import run_check, write_content

JOURNEY = {
    "journey.json": json.dumps({
        "stages": ["awareness", "consideration", "decision", "customer"],
        "sender": {"company": "Northwind", "postal_address": "1 Quay, Bristol"},
        "scores": {"open": 1, "click": 3, "webinar": 5},
        "attributes": ["plan"],
        "rules": [
            {"on": "click", "tag": "pricing", "move_to": "decision"},
            {"on": "score", "at_least": 6, "from": ["awareness"], "move_to": "consideration"},
            {"on": "finished", "sequence": "aware", "move_to": "consideration"},
            {"on": "event", "kind": "purchase", "action": "customer"},
            {"on": "reply", "action": "handoff"},
        ],
    }),
    "sequences/aware.json": json.dumps({
        "stage": "awareness", "mode": "nurture",
        "steps": [
            {"id": "one", "delay": "0d", "template": "a/one.md"},
            {"id": "two", "delay": "2d", "template": "a/two.md",
             "unless": {"clicked": "one"}},
            {"id": "three", "delay": "2d", "template": "a/three.md",
             "when": {"tag": "vip"}},
            {"id": "four", "delay": "2d",
             "variants": ["a/four-a.md", "a/four-b.md"]},
        ],
    }),
    "sequences/consider.json": json.dumps({
        "stage": "consideration", "mode": "nurture",
        "steps": [{"id": "c1", "delay": "0d", "template": "c/c1.md"}],
    }),
    "sequences/consider-1to1.json": json.dumps({
        "stage": "consideration", "mode": "prospect",
        "from": "Ana Ruiz <ana@example.com>",
        "opt_out": "Not the right time? Reply \"no thanks\" and I will stop.",
        "when": {"tag": "prospect"},
        "steps": [
            {"id": "p1", "delay": "0d", "template": "p/p1.md"},
            {"id": "p2", "delay": "3d", "template": "p/p2.md"},
            {"id": "p3", "delay": "3d", "template": "p/p3.md"},
        ],
    }),
    "sequences/decide.json": json.dumps({
        "stage": "decision", "mode": "nurture",
        "steps": [{"id": "d1", "delay": "0d", "template": "d/d1.md"}],
    }),
    "templates/a/one.md": "---\nsubject: One for {{first_name}}\n---\n"
                          "See [our prices](https://example.com/pricing \"pricing\") or "
                          "[a guide](https://example.com/guide?who={{first_name}} \"guide\").\n"
                          "{{#tag vip}}You are a VIP.{{/tag}}{{^tag vip}}Welcome aboard.{{/tag}}\n"
                          "{{#if attrs.plan}}Your plan: {{attrs.plan}}.{{/if}}\n",
    "templates/a/two.md": "---\nsubject: Two\n---\nSecond step.\n",
    "templates/a/three.md": "---\nsubject: Three, VIPs only\n---\nThird step.\n",
    "templates/a/four-a.md": "---\nsubject: Four A\n---\nVariant A.\n",
    "templates/a/four-b.md": "---\nsubject: Four B\n---\nVariant B.\n",
    "templates/c/c1.md": "---\nsubject: Considering\n---\nCompare.\n",
    "templates/d/d1.md": "---\nsubject: Deciding\n---\nBook a call.\n",
    "templates/p/p1.md": "---\nsubject: Quick question, {{first_name}}\n---\n"
                         "Hi {{first_name}},\n\nA short personal note.\n\nAna\n",
    "templates/p/p2.md": "---\nsubject: ignored for a follow-up\n---\nJust bumping this up.\n",
    "templates/p/p3.md": "---\nsubject: ignored too\n---\nLast note from me.\n",
}


def journey_daemon(daemon_factory, tmp_path):
    content = write_content(tmp_path / "content", JOURNEY)
    return daemon_factory(content=content).start()


def subjects(d):
    return [m["Subject"] for m in d.messages()]


def settle(d, n):
    d.wait_messages(n)
    time.sleep(0.3)
    assert len(d.messages()) == n, subjects(d)


def test_conditions_skip_steps_and_variants_are_stable(daemon_factory, tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    # Maya clicks step one's guide: "two" is skipped (unless clicked one); not a VIP: no "three".
    d.ctl("lead", "add", "maya@example.org", "--first-name", "Maya", "--attr", "plan=pro")
    d.ctl("lead", "add", "sam@example.org", "--first-name", "Sam", "--tag", "vip")
    settle(d, 2)
    d.ctl("event", "maya@example.org", "click", "--step", "aware/one",
          "--detail", '{"tag": "guide"}')
    for _ in range(3):
        d.advance("2d")
        time.sleep(0.4)
    d.advance("2d")
    time.sleep(0.5)
    by_lead = {}
    for m in d.messages():
        by_lead.setdefault(m["To"].addresses[0].addr_spec, []).append(m["Subject"])
    maya, sam = by_lead["maya@example.org"], by_lead["sam@example.org"]
    assert maya[0] == "One for Maya" and sam[0] == "One for Sam"
    assert "Two" not in maya and "Three, VIPs only" not in maya, maya
    assert sam[1:3] == ["Two", "Three, VIPs only"], sam
    # After the last step, finishing "aware" moves both on to consideration's first step.
    assert maya[-2] in ("Four A", "Four B") and sam[-2] in ("Four A", "Four B")
    assert maya[-1] == sam[-1] == "Considering"
    shown = d.ctl("lead", "show", "maya@example.org")
    states = {t["step"]: t["state"] for t in shown["touches"]}
    assert states["two"] == "skipped" and states["three"] == "skipped", states
    assert "unless" in next(t for t in shown["touches"] if t["step"] == "two")["last_error"]
    # Sections: the text follows the lead's tags and attributes.
    one = {m["To"].addresses[0].addr_spec: m for m in d.messages() if m["Subject"].startswith("One")}
    maya_text = one["maya@example.org"].get_body(("plain",)).get_content()
    sam_text = one["sam@example.org"].get_body(("plain",)).get_content()
    assert "Welcome aboard." in maya_text and "VIP" not in maya_text
    assert "You are a VIP." in sam_text and "Welcome aboard." not in sam_text
    assert "Your plan: pro." in maya_text and "Your plan" not in sam_text
    # No open pixel unless the sequence asks for one ("pixel": true); links are tracked.
    maya_html = one["maya@example.org"].get_body(("html",)).get_content()
    assert "<img" not in maya_html and "/c/" in maya_html
    # The variant is a stable function of the lead: preview of the same step agrees.
    for who, subj in (("maya@example.org", maya[-2]), ("sam@example.org", sam[-2])):
        p = d.ctl("preview", who, "--step", "aware/four")
        assert f"Subject: {subj}" in p["message"]


def test_a_tagged_click_moves_the_lead_and_scores_add_up(daemon_factory, tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    d.ctl("lead", "add", "ola@example.org", "--first-name", "Ola")
    settle(d, 1)
    r = d.ctl("event", "ola@example.org", "open", "--step", "aware/one")
    assert r["lead"]["score"] == 1 and r["lead"]["stage"] == "awareness"
    r = d.ctl("event", "ola@example.org", "click", "--step", "aware/one",
              "--detail", '{"tag": "pricing"}')
    assert r["lead"]["stage"] == "decision" and r["lead"]["score"] == 4
    settle(d, 2)
    assert subjects(d)[-1] == "Deciding"
    shown = d.ctl("lead", "show", "ola@example.org")
    moves = [e["detail"] for e in shown["events"] if e["kind"] == "stage"]
    assert moves[-1] == {"from": "awareness", "to": "decision", "sequence": "decide",
                         "reason": "click pricing (journey.json line 1)"}
    # The awareness sequence's pending step was dropped, not sent later.
    d.advance("10d")
    time.sleep(0.5)
    assert len(d.messages()) == 2
    assert d.ctl("event", "ola@example.org", "purchase")["lead"]["status"] == "customer"
    assert d.ctl("lead", "show", "ola@example.org")["lead"]["stage"] == "customer"


def test_a_score_threshold_and_finishing_a_sequence_move_leads(daemon_factory, tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    d.ctl("lead", "add", "kim@example.org")
    d.ctl("lead", "add", "lee@example.org")
    settle(d, 2)
    d.ctl("event", "kim@example.org", "webinar")
    r = d.ctl("event", "kim@example.org", "open")
    assert r["lead"]["score"] == 6 and r["lead"]["stage"] == "consideration"
    # Lee walks the whole awareness sequence; finishing it moves Lee on.
    for _ in range(4):
        d.advance("2d")
        time.sleep(0.4)
    wait_for(lambda: d.ctl("lead", "show", "lee@example.org")["lead"]["stage"] ==
             "consideration", 10, "lee to reach consideration")


def test_a_reply_hands_the_lead_to_a_person_and_stops_the_drip(daemon_factory, tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    d.ctl("lead", "add", "rae@example.org")
    settle(d, 1)
    r = d.ctl("event", "rae@example.org", "reply", "--detail", '{"subject": "Re: One"}')
    assert r["lead"]["status"] == "handoff"
    d.advance("20d")
    time.sleep(0.5)
    assert len(d.messages()) == 1
    kinds = [e["kind"] for e in d.ctl("lead", "show", "rae@example.org")["events"]]
    assert kinds[-2:] == ["reply", "handoff"]


def test_prospect_follow_ups_are_threaded_plain_text_with_an_opt_out(daemon_factory, tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    d.ctl("lead", "add", "jo@example.org", "--first-name", "Jo", "--tag", "prospect",
          "--stage", "consideration")
    settle(d, 1)
    d.advance("3d")
    settle(d, 2)
    d.advance("3d")
    settle(d, 3)
    first, second, third = d.messages()
    assert first["Subject"] == "Quick question, Jo"
    assert second["Subject"] == third["Subject"] == "Re: Quick question, Jo"
    assert second["In-Reply-To"] == first["Message-ID"] == third["In-Reply-To"]
    assert second["References"] == first["Message-ID"]
    for m in (first, second, third):
        assert m.get_content_type() == "text/plain"
        body = m.get_content()
        assert body.rstrip().endswith('Not the right time? Reply "no thanks" and I will stop.')
        assert "/o/" not in body and "/c/" not in body, "prospect mail must not be tracked"
        assert m["List-Unsubscribe"].startswith("<http://127.0.0.1:8025/u/")
    # A lead without the tag gets the stage's default sequence instead.
    d.ctl("lead", "add", "pat@example.org", "--stage", "consideration")
    settle(d, 4)
    assert d.messages()[-1]["Subject"] == "Considering"


def test_preview_shows_the_message_as_it_would_be_sent_and_sends_nothing(daemon_factory,
                                                                          tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    d.ctl("lead", "add", "eve@example.org", "--first-name", "<Eve>")
    settle(d, 1)
    p = d.ctl("preview", "eve@example.org")
    assert p["step"] == "two" and p["would_send"] is True
    assert "Subject: Two" in p["message"] and "MIME-Version: 1.0" in p["message"]
    p = d.ctl("preview", "eve@example.org", "--step", "aware/three")
    assert p["would_send"] is False and "when" in p["reason"]
    p = d.ctl("preview", "eve@example.org", "--step", "aware/one")
    assert "&lt;Eve&gt;" in p["message"].replace("=\n", "")
    human = d.ctl_raw("preview", "eve@example.org")
    assert human.returncode == 0 and "Subject: Two" in human.stdout
    r = d.ctl_raw("preview", "eve@example.org", "--step", "aware/nine")
    assert r.returncode == 1 and "no step" in r.stderr
    time.sleep(0.3)
    assert len(d.messages()) == 1, "preview sent something"


def test_lead_stage_and_enroll_move_leads_by_hand(daemon_factory, tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    d.ctl("lead", "add", "al@example.org", "--first-name", "Al")
    settle(d, 1)
    assert d.ctl("lead", "stage", "al@example.org", "decision")["lead"]["stage"] == "decision"
    settle(d, 2)
    assert subjects(d)[-1] == "Deciding"
    r = d.ctl("lead", "enroll", "al@example.org", "consider-1to1")
    assert r["lead"]["stage"] == "consideration"
    settle(d, 3)
    assert subjects(d)[-1] == "Quick question, Al"
    r = d.ctl_raw("lead", "stage", "al@example.org", "nowhere")
    assert r.returncode == 1 and "unknown stage" in r.stderr
    r = d.ctl_raw("event", "al@example.org", "sent")
    assert r.returncode == 1 and "recorded by dripd itself" in r.stderr
    r = d.ctl_raw("event", "al@example.org", "open", "--detail", "[1]")
    assert r.returncode == 1 and "JSON object" in r.stderr


def test_content_rules_are_validated_with_file_and_line(daemon_factory, tmp_path):
    content = write_content(tmp_path / "content", JOURNEY)
    d = daemon_factory(content=content)
    journey = json.loads(JOURNEY["journey.json"])

    def check_with(j):
        (content / "journey.json").write_text(json.dumps(j, indent=1))
        return run_check(d.config_path)

    bad = dict(journey, rules=journey["rules"] + [{"on": "click", "tag": "nowhere",
                                                     "move_to": "decision"}])
    r = check_with(bad)
    assert r.returncode == 1 and 'no link in any template carries the tag "nowhere"' in r.stderr
    bad = dict(journey, rules=[{"on": "reply", "action": "handoff"}])
    r = check_with(bad)
    assert r.returncode == 1 and 'stage "consideration" is reached by no rule' in r.stderr
    bad = dict(journey, rules=journey["rules"] + [{"on": "reply", "move_to": "limbo"}])
    r = check_with(bad)
    assert r.returncode == 1 and 'stage "limbo"' in r.stderr and "journey.json:" in r.stderr
    bad = dict(journey, attributes=[])
    r = check_with(bad)
    assert r.returncode == 1 and 'one.md:6: merge field "attrs.plan"' in r.stderr, r.stderr
    check_with(journey)
    seq = content / "sequences/consider-1to1.json"
    s = json.loads(JOURNEY["sequences/consider-1to1.json"])
    del s["opt_out"]
    seq.write_text(json.dumps(s))
    r = run_check(d.config_path)
    assert r.returncode == 1 and "opt_out" in r.stderr
    s = json.loads(JOURNEY["sequences/aware.json"])
    s["steps"][1]["unless"] = {"clicked": "zero"}
    seq.write_text(JOURNEY["sequences/consider-1to1.json"])
    (content / "sequences/aware.json").write_text(json.dumps(s, indent=1))
    r = run_check(d.config_path)
    assert r.returncode == 1 and '"zero" names no step' in r.stderr, r.stderr
    (content / "sequences/aware.json").write_text(JOURNEY["sequences/aware.json"])
    (content / "templates/a/two.md").write_text("---\nsubject: Two\n---\n{{#if first_name}}open\n")
    r = run_check(d.config_path)
    assert r.returncode == 1 and "two.md:4: this section is never closed" in r.stderr, r.stderr


def test_a_reload_that_drops_a_waiting_step_reports_the_leads(daemon_factory, tmp_path):
    import signal
    d = journey_daemon(daemon_factory, tmp_path)
    d.ctl("lead", "add", "zoe@example.org")
    d.ctl("lead", "add", "zed@example.org")
    settle(d, 2)
    seq = json.loads(JOURNEY["sequences/aware.json"])
    seq["steps"] = [s for s in seq["steps"] if s["id"] != "two"]
    (d.folder.parent / "content" / "sequences" / "aware.json").write_text(json.dumps(seq))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in d.log_text(), 10, "the reload")
    assert "2 lead(s) wait for step aware/two" in d.log_text()
    # When due, the orphaned step is reported on the lead, not silently dropped.
    d.advance("2d")
    wait_for(lambda: any(t["step"] == "two" and t["state"] == "failed"
                         for t in d.ctl("lead", "show", "zoe@example.org")["touches"]),
             10, "the orphaned step to be reported")
    events = d.ctl("lead", "show", "zoe@example.org")["events"]
    assert any(e["kind"] == "error" and "no step aware/two" in e["detail"]["reason"]
               for e in events), events


def test_stats_show_the_funnel_and_each_variant_of_a_step(daemon_factory, tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    emails = [f"lead{i}@example.org" for i in range(12)]
    for e in emails:
        d.ctl("lead", "add", e, "--tag", "vip")
    settle(d, 12)
    for sent in (24, 36):
        d.advance("2d")
        settle(d, sent)
    # Step four, then finishing "aware" moves everyone on to consideration's first step.
    d.advance("2d")
    settle(d, 60)
    # Everyone opened step four; the first three leads also clicked it.
    for i, e in enumerate(emails):
        d.ctl("event", e, "open", "--step", "aware/four")
        if i < 3:
            d.ctl("event", e, "click", "--step", "aware/four", "--detail", '{"tag": "guide"}')
    stats = d.ctl("stats")
    four = [r for r in stats["steps"] if r["step"] == "four"]
    assert sorted(r["variant"] for r in four) == [0, 1], four
    assert sum(r["sent"] for r in four) == 12 and sum(r["opened"] for r in four) == 12
    assert sum(r["clicked"] for r in four) == 3
    subjects_by_variant = {"Four A": 0, "Four B": 1}
    got = {}
    for m in d.messages():
        if m["Subject"] in subjects_by_variant:
            got[subjects_by_variant[m["Subject"]]] = got.get(subjects_by_variant[m["Subject"]], 0) + 1
    assert {r["variant"]: r["sent"] for r in four} == got
    one = next(r for r in stats["steps"] if r["step"] == "one")
    assert one["sent"] == 12 and one["opened"] == 0
    funnel = {row["stage"]: row["leads"] for row in stats["funnel"]}
    assert list(funnel) == ["awareness", "consideration", "decision", "customer"]
    assert funnel["consideration"] == 12 and sum(funnel.values()) == 12
    human = d.ctl_raw("stats")
    assert human.returncode == 0 and "aware/four" in human.stdout and "funnel" in human.stdout


def advance_to(d, iso):
    """Moves the test clock forward to the UTC instant `iso` ("2027-03-27T12:00:00Z")."""
    import calendar
    now = calendar.timegm(time.strptime(d.ctl("status")["now"], "%Y-%m-%dT%H:%M:%SZ"))
    target = calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    assert target > now, f"{iso} is in the test clock's past"
    d.advance(f"{target - now}s")


def utc(iso):
    import calendar
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


WINDOWED = dict(JOURNEY)
WINDOWED["sequences/aware.json"] = json.dumps({
    "stage": "awareness", "mode": "nurture",
    "window": "mon-fri 09:00-17:00", "timezone": "Europe/Berlin",
    "steps": [{"id": "one", "delay": "0d", "template": "a/one.md"},
              {"id": "two", "delay": "1d", "template": "a/two.md"}],
})


def test_send_windows_follow_each_leads_zone_across_a_dst_change(daemon_factory, tmp_path):
    content = write_content(tmp_path / "content", WINDOWED)
    d = daemon_factory(content=content).start()
    # Saturday 2027-03-27 12:00 UTC; Europe moves its clocks on Sunday the 28th, New York
    # already did on the 14th.
    advance_to(d, "2027-03-27T12:00:00Z")
    d.ctl("lead", "add", "berlin@example.org", "--tz", "Europe/Berlin")
    d.ctl("lead", "add", "ny@example.org", "--tz", "America/New_York")
    d.ctl("lead", "add", "nozone@example.org")  # falls back to the sequence's Berlin
    time.sleep(0.5)
    assert d.messages() == [], "mail went out on a Saturday"
    due = {e: utc(d.ctl("lead", "show", e)["touches"][0]["due_at"])
           for e in ("berlin@example.org", "ny@example.org", "nozone@example.org")}
    # Monday 09:00 CEST is 07:00 UTC (not 08:00: the clocks moved); 09:00 EDT is 13:00 UTC;
    # each plus at most ten minutes of jitter.
    for e, opening in (("berlin@example.org", "2027-03-29T07:00:00Z"),
                       ("nozone@example.org", "2027-03-29T07:00:00Z"),
                       ("ny@example.org", "2027-03-29T13:00:00Z")):
        assert utc(opening) <= due[e] < utc(opening) + 600, (e, due[e] - utc(opening))
    advance_to(d, "2027-03-29T07:10:00Z")
    settle(d, 2)
    assert sorted(m["To"].addresses[0].addr_spec for m in d.messages()) == \
        ["berlin@example.org", "nozone@example.org"]
    advance_to(d, "2027-03-29T13:10:00Z")
    settle(d, 3)
    # The second step is due a day later, inside the window on Tuesday: no wait; finishing
    # the sequence then moves each lead on to consideration's (unwindowed) first step.
    advance_to(d, "2027-03-30T13:11:00Z")
    settle(d, 9)
    assert [m["Subject"] for m in d.messages()].count("Two") == 3


def test_a_bad_window_or_zone_is_refused_with_its_line(daemon_factory, tmp_path):
    content = write_content(tmp_path / "content", WINDOWED)
    d = daemon_factory(content=content)
    seq = json.loads(WINDOWED["sequences/aware.json"])
    for key, value, want in (("window", "mon-fri 17:00-09:00", "window"),
                             ("window", "someday 09:00-10:00", "window"),
                             ("timezone", "Mars/Olympus", "unknown time zone")):
        bad = dict(seq, **{key: value})
        (content / "sequences/aware.json").write_text(json.dumps(bad, indent=1))
        r = run_check(d.config_path)
        assert r.returncode == 1 and want in r.stderr and "aware.json:" in r.stderr, r.stderr


def test_skip_dates_and_the_minimum_gap_between_touches(daemon_factory, tmp_path):
    files = dict(WINDOWED)
    j = json.loads(JOURNEY["journey.json"])
    j["skip_dates"] = ["2027-03-29", "2027-03-30"]  # Easter Monday... and one more
    files["journey.json"] = json.dumps(j)
    content = write_content(tmp_path / "content", files)
    d = daemon_factory(content=content)
    d.config["delivery"] = dict(d.config["delivery"], min_gap="3d")
    d.write_config()
    d.start()
    advance_to(d, "2027-03-27T12:00:00Z")
    d.ctl("lead", "add", "easter@example.org", "--tz", "Europe/Berlin")
    due = utc(d.ctl("lead", "show", "easter@example.org")["touches"][0]["due_at"])
    # Not Monday the 29th nor Tuesday the 30th: Wednesday 09:00 CEST (07:00 UTC) + jitter.
    assert utc("2027-03-31T07:00:00Z") <= due < utc("2027-03-31T07:10:00Z"), due
    advance_to(d, "2027-03-31T07:10:00Z")
    settle(d, 1)
    # Step two is due a day later, but the lead had mail less than three days ago.
    advance_to(d, "2027-04-01T08:00:00Z")
    time.sleep(0.5)
    assert len(d.messages()) == 1
    t = [t for t in d.ctl("lead", "show", "easter@example.org")["touches"] if t["step"] == "two"]
    assert utc(t[0]["due_at"]) >= utc("2027-04-03T07:00:00Z"), t


def test_explain_says_why_the_next_step_waits(daemon_factory, tmp_path):
    files = dict(WINDOWED)
    j = json.loads(JOURNEY["journey.json"])
    j["skip_dates"] = ["2027-03-29"]
    files["journey.json"] = json.dumps(j)
    content = write_content(tmp_path / "content", files)
    d = daemon_factory(content=content).start()
    advance_to(d, "2027-03-27T12:00:00Z")  # a Saturday
    d.ctl("lead", "add", "why@example.org", "--tz", "Europe/Berlin")
    e = d.ctl("explain", "why@example.org")
    assert (e["sequence"], e["step"], e["verdict"]) == ("aware", "one", "waits")
    checks = {c["check"]: c for c in e["trace"]}
    assert checks["lead"]["ok"] and "stage awareness" in checks["lead"]["detail"]
    assert checks["conditions"]["ok"] is True
    assert "Europe/Berlin" in checks["window"]["detail"]
    assert checks["skip_dates"]["ok"] is False and "20270329" in checks["skip_dates"]["detail"]
    # Tuesday 09:00 CEST (Monday is skipped), plus the lead's jitter.
    assert utc("2027-03-30T07:00:00Z") <= utc(e["next_send"]) < utc("2027-03-30T07:10:00Z")
    human = d.ctl_raw("explain", "why@example.org")
    assert human.returncode == 0 and "waits until 2027-03-30T07:" in human.stdout
    d.ctl("pause")
    e = d.ctl("explain", "why@example.org")
    assert e["verdict"] == "held: see the trace"
    assert any(c["check"] == "pause" and not c["ok"] for c in e["trace"])
    d.ctl("resume")
    d.ctl("event", "why@example.org", "unsubscribe")
    e = d.ctl("explain", "why@example.org")
    assert any(c["check"] == "suppression" for c in e["trace"])
    assert e["verdict"] in ("held: see the trace", "nothing to send")
    r = d.ctl_raw("explain", "nobody@example.org")
    assert r.returncode == 1 and "no lead" in r.stderr


def fading_daemon(daemon_factory, tmp_path):
    files = dict(JOURNEY)
    j = json.loads(files["journey.json"])
    j["score_half_life"] = "10d"
    # Up at 6 points, back to awareness only once the score fades under 2 (hysteresis).
    j["rules"].insert(2, {"on": "score", "below": 2, "from": ["consideration"],
                          "move_to": "awareness"})
    files["journey.json"] = json.dumps(j, indent=1)
    content = write_content(tmp_path / "content", files)
    return daemon_factory(content=content).start()


def test_scores_decay_and_a_faded_lead_falls_back(daemon_factory, tmp_path):
    d = fading_daemon(daemon_factory, tmp_path)
    d.ctl("lead", "add", "noor@example.org", "--first-name", "Noor")
    settle(d, 1)
    # Two clicks on step one: 6 points, the lead moves up and gets consideration's step.
    for _ in range(2):
        r = d.ctl("event", "noor@example.org", "click", "--step", "aware/one",
                  "--detail", '{"tag": "guide"}')
    assert r["lead"]["stage"] == "consideration" and r["lead"]["score"] == 6, r["lead"]
    settle(d, 2)
    assert subjects(d)[-1] == "Considering"
    # Ten days later the score has halved; the lead stays (3 is not under 2).
    d.advance("10d")
    time.sleep(0.5)
    shown = d.ctl("lead", "show", "noor@example.org")
    assert shown["lead"]["stage"] == "consideration"
    assert 2.99 <= shown["lead"]["score"] <= 3.0, shown["lead"]
    explain = d.ctl_raw("explain", "noor@example.org")
    assert explain.returncode == 0 and "score 3" in explain.stdout, explain.stdout
    # Another ten days: 1.5, under 2. The scheduler's timer (no event, no poll) moves the
    # lead back as the fall rule says, with its reason; awareness's steps already had are
    # not sent again.
    d.advance("10d")
    wait_for(lambda: d.ctl("lead", "show", "noor@example.org")["lead"]["stage"] ==
             "awareness", 10, "noor to fall back to awareness")
    shown = d.ctl("lead", "show", "noor@example.org")
    assert 1.49 <= shown["lead"]["score"] <= 1.5, shown["lead"]
    moves = [e["detail"] for e in shown["events"] if e["kind"] == "stage"]
    assert moves[-2]["to"] == "consideration"
    assert moves[-2]["reason"].startswith("score 6.00 reached 6 (journey.json line ")
    assert moves[-1]["from"] == "consideration" and moves[-1]["to"] == "awareness"
    assert re.fullmatch(r"score 1\.\d\d fell below 2 \(journey\.json line \d+\)",
                        moves[-1]["reason"]), moves[-1]
    time.sleep(0.5)
    sent = subjects(d)
    assert sent.count("One for Noor") == 1, sent
    # Hysteresis: one click (1.5 + 3 = 4.5) is not enough to go up again; two are.
    r = d.ctl("event", "noor@example.org", "click", "--detail", '{"tag": "guide"}')
    assert r["lead"]["stage"] == "awareness"
    r = d.ctl("event", "noor@example.org", "click", "--detail", '{"tag": "guide"}')
    assert r["lead"]["stage"] == "consideration"


def test_stats_give_each_outcome_as_a_rate_of_sent(daemon_factory, tmp_path):
    d = journey_daemon(daemon_factory, tmp_path)
    emails = [f"rate{i}@example.org" for i in range(8)]
    for e in emails:
        d.ctl("lead", "add", e)
    settle(d, 8)
    # Of 8 sent: 4 opened (one by a click only), 2 clicked, 1 replied, 1 unsubscribed.
    for e in emails[:3]:
        d.ctl("event", e, "open", "--step", "aware/one")
    for e in emails[2:4]:
        d.ctl("event", e, "click", "--step", "aware/one", "--detail", '{"tag": "guide"}')
    d.ctl("event", emails[5], "reply", "--step", "aware/one")
    d.ctl("event", emails[6], "unsubscribe", "--step", "aware/one")
    one = next(r for r in d.ctl("stats")["steps"] if r["step"] == "one")
    assert (one["sent"], one["opened"], one["clicked"], one["replied"], one["bounced"],
            one["unsubscribed"]) == (8, 4, 2, 1, 0, 1), one
    assert one["rates"] == {"opened": 50, "clicked": 25, "replied": 12.5, "bounced": 0,
                            "unsubscribed": 12.5}, one
    human = d.ctl_raw("stats")
    assert human.returncode == 0, human.stderr
    line = next(l for l in human.stdout.splitlines() if "aware/one" in l)
    assert re.search(r"\b8\s+4\s+50\.0%\s+2\s+25\.0%\s+1\s+12\.5%\s+0\s+0\.0%\s+1\s+12\.5%",
                     line), line
    assert "unsubscribed" in human.stdout
