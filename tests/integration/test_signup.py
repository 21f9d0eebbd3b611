#!/usr/bin/python3
"""Website signup with double opt-in through the real daemon: headless Chromium submits the
README's form snippet from a local page, the confirmation mail lands in the Maildir, a GET on
its link changes nothing and the POST confirms; refusals leave no trace; forget leaves no copy
of the address in the database files; old links survive a secret rotation."""
import http.server as httpserver
import json
import re
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import DRIPD, free_port, wait_for
from test_skeleton import write_content
from test_track import content_files

README = Path(__file__).resolve().parents[2] / "README.md"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def http(url, data=None, ctype="application/x-www-form-urlencoded", method=None):
    """(status, headers, body) without following redirects."""
    if isinstance(data, dict):
        data = urllib.parse.urlencode(data, doseq=True).encode()
    elif isinstance(data, str):
        data = data.encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with OPENER.open(req, timeout=20) as r:
            return r.status, r.headers, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


@pytest.fixture
def site(tmp_path):
    """A local website (the page with the README's form, a thanks page)."""
    root = tmp_path / "site"
    root.mkdir()

    class Handler(httpserver.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass
    srv = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def start(daemon_factory, tmp_path, origin="http://127.0.0.1:9", name="d", **extra):
    content = write_content(tmp_path / f"content-{name}", content_files())
    port = free_port()
    cfg = dict(
        tracking={"listen": f"127.0.0.1:{port}", "base_url": f"http://127.0.0.1:{port}"},
        signup={"site": origin, "per_hour": 50},
        forms={"newsletter": {"stage": "awareness", "sequence": "aware",
                              "redirect": f"{origin}/thanks.html",
                              "confirm_redirect": f"{origin}/welcome.html"},
               "plain": {"stage": "awareness"}},
    )
    cfg["tracking"].update(extra.pop("tracking", {}))
    cfg.update(extra)
    return daemon_factory(name, content=content, **cfg).start()


def confirm_links(d):
    found = []
    for m in d.messages():
        if m["Subject"] and "confirm" in m["Subject"].lower():
            found += re.findall(r"(http://127\.0\.0\.1:\d+/confirm/[A-Za-z0-9_-]+)",
                                m.get_body(preferencelist=("plain",)).get_content())
    return found


def post_raw(d, body):
    """POSTs a body too big for urllib's patience (the daemon answers before reading it)."""
    s = socket.create_connection(("127.0.0.1", d.http_port), timeout=20)
    try:
        s.sendall(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
                  % len(body))
        try:
            s.sendall(body)
        except OSError:
            pass
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1])
    finally:
        s.close()


def leads(d):
    return d.sql("SELECT count(*) FROM leads")[0][0]


def signups(d):
    return d.sql("SELECT count(*) FROM signups")[0][0]


def subscribe(d, **fields):
    f = {"form": "plain", "consent": "2026-01"}
    f.update(fields)
    return http(d.base_url + "/subscribe", f)


def readme_form():
    text = README.read_text()
    m = re.search(r"<!-- signup-form -->\n```html\n(.*?)```\n<!-- /signup-form -->", text, re.S)
    assert m, "README lacks the signup form snippet"
    return m.group(1)


def test_chromium_submits_the_readme_form_and_only_the_button_confirms(
        daemon_factory, tmp_path, site, chromium):
    from selenium.webdriver.common.by import By
    root, origin = site
    d = start(daemon_factory, tmp_path, origin)
    form = readme_form().replace("https://t.example.com/subscribe", d.base_url + "/subscribe")
    (root / "signup.html").write_text(f"<!doctype html><html><body>{form}</body></html>")
    (root / "thanks.html").write_text("<html><body><p id='thanks'>thanks</p></body></html>")
    (root / "welcome.html").write_text("<html><body><p id='welcome'>welcome</p></body></html>")

    chromium.get(f"{origin}/signup.html")
    chromium.find_element(By.NAME, "email").send_keys("Maya@Example.org")
    chromium.find_element(By.NAME, "first_name").send_keys("Maya")
    chromium.find_element(By.NAME, "company").send_keys("Acme")
    chromium.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    chromium.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: chromium.current_url.endswith("/thanks.html"), 10, "the thanks page")

    # The confirmation mail arrives; the signup is not a lead yet, so no journey mail.
    d.wait_messages(1)
    links = confirm_links(d)
    assert len(links) == 1, [m["Subject"] for m in d.messages()]
    assert d.messages()[0]["To"].endswith("<maya@example.org>")
    assert leads(d) == 0
    d.advance("1d")

    # A GET (a link scanner) changes nothing.
    status, _, body = http(links[0])
    assert status == 200 and 'id="confirm"' in body
    status, _, _ = http(links[0], method="HEAD")
    assert leads(d) == 0 and len(d.messages()) == 1

    # The person presses the button.
    chromium.get(links[0])
    chromium.find_element(By.ID, "confirm").click()
    wait_for(lambda: chromium.current_url.endswith("/welcome.html"), 10, "the welcome page")
    shown = d.ctl("lead", "show", "maya@example.org")
    assert shown["lead"]["status"] == "active" and shown["lead"]["stage"] == "awareness"
    assert shown["lead"]["company"] == "Acme"
    c = shown["consent"]
    assert c["form"] == "newsletter" and c["consent"] == "2026-01"
    assert c["address"] == "127.0.0.1" and c["confirm_address"] == "127.0.0.1"
    msgs = d.wait_messages(2)
    assert msgs[-1]["Subject"] == "One"
    # The link is used up; the human-readable show and the export carry the consent.
    assert http(links[0], {"confirm": "yes"})[0] == 404
    text = d.ctl_raw("lead", "show", "maya@example.org").stdout
    assert "consent" in text and "newsletter" in text and "2026-01" in text
    csv = d.ctl_raw("lead", "export").stdout
    assert "consent_form" in csv.splitlines()[0]
    assert "newsletter,2026-01" in csv
    assert d.stop() == 0


def test_json_signup_and_refusals_leave_no_trace(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path, signup={"site": "http://127.0.0.1:9", "per_hour": 8})
    # JSON works and says the same whatever the address.
    st, _, body = http(d.base_url + "/subscribe",
                       json.dumps({"email": "ada@example.org", "form": "plain",
                                   "tags": ["webinar"]}), ctype="application/json")
    assert st == 202 and json.loads(body)["ok"] is True
    d.wait_messages(1)
    st2, _, body2 = http(d.base_url + "/subscribe",
                         json.dumps({"email": "ada@example.org", "form": "plain"}),
                         ctype="application/json")
    assert (st2, body2) == (st, body)
    assert signups(d) == 1
    before_log = d.log_text()

    # Honeypot: told the same as a person, nothing kept, no mail.
    st, _, _ = subscribe(d, email="bot@example.org", website="http://spam.example")
    assert st == 200
    # Hostile values: refused, nothing kept.
    for bad in ({"email": "x@example.org\r\nBcc: all@example.org"},
                {"email": "eve@example.org", "first_name": "Eve\nX-Injected: 1"},
                {"email": "eve@example.org", "company": "<script>alert(1)</script>"},
                {"email": "eve@example.org", "form": "nosuchform"},
                {"email": "not-an-address"}):
        st, _, body = subscribe(d, **bad)
        assert st == 400, (bad, st, body)
        assert "script" not in body and "Injected" not in body
    assert post_raw(d, b"email=big%40example.org&form=plain&company=" + b"A" * (1 << 20)) == 413
    # A forged confirm token.
    for tok in ("AAAAAAAAAAAAAAAAAAAAAA", "forged", "x" * 100):
        assert http(f"{d.base_url}/confirm/{tok}")[0] == 404
        assert http(f"{d.base_url}/confirm/{tok}", {"confirm": "yes"})[0] == 404
    assert signups(d) == 1 and leads(d) == 0
    assert len(d.messages()) == 1
    new_log = d.log_text()[len(before_log):]
    for trace in ("bot@example.org", "all@example.org", "script", "Injected",
                  "big@example.org"):
        assert trace not in new_log
    assert d.sql("SELECT count(*) FROM events")[0][0] == 0

    # Rate limit: 8 per hour per client address, counted for every attempt above.
    st, _, _ = subscribe(d, email="late@example.org")
    assert st == 429
    assert signups(d) == 1
    assert d.stop() == 0


def test_unconfirmed_signups_expire(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path, signup={"site": "http://127.0.0.1:9", "expire": "2d"})
    assert subscribe(d, email="slow@example.org")[0] == 200
    d.wait_messages(1)
    link = confirm_links(d)[0]
    d.advance("3d")
    wait_for(lambda: signups(d) == 0, 10, "the signup to expire")
    assert http(link, {"confirm": "yes"})[0] == 404
    assert leads(d) == 0
    assert d.stop() == 0


def db_files(d):
    return [p for p in d.db.parent.iterdir() if p.name.startswith("dripd.db")]


def test_forget_leaves_no_copy_and_a_new_signup_waits_for_its_confirmation(
        daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path)
    addr = "zed.forgettable@example.org"
    assert subscribe(d, email=addr, first_name="Zed", form="newsletter")[0] == 303
    d.wait_messages(1)
    first = confirm_links(d)
    assert http(first[0], {"confirm": "yes"})[0] == 303
    d.wait_messages(2)
    assert any(addr.encode() in p.read_bytes() for p in db_files(d))
    d.ctl("lead", "forget", addr)
    for p in db_files(d):
        data = p.read_bytes()
        assert addr.encode() not in data, f"{p.name} still holds the address"
        assert b"Zed" not in data, f"{p.name} still holds the name"
    # Signing up again: one confirmation mail, no journey mail until it is confirmed.
    assert subscribe(d, email=addr, form="newsletter")[0] == 303
    d.wait_messages(3)
    d.advance("1d")
    assert len(d.messages()) == 3
    assert d.ctl_raw("lead", "show", addr).returncode != 0
    [link] = set(confirm_links(d)) - set(first)
    assert http(link)[0] == 200 and d.ctl_raw("lead", "show", addr).returncode != 0
    assert http(link, {"confirm": "yes"})[0] == 303
    msgs = d.wait_messages(4)
    assert msgs[-1]["Subject"] == "One" and addr in msgs[-1]["To"]
    assert d.stop() == 0


def test_old_links_keep_working_across_a_secret_rotation(daemon_factory, tmp_path):
    from test_track import urls
    secret = tmp_path / "tracking.secret"
    secret.write_text("old-secret-0123456789abcdef\n")
    d = start(daemon_factory, tmp_path,
              tracking={"secret_file": str(secret)})
    d.ctl("lead", "add", "rot@example.org", "--stage", "awareness")
    old = urls(d.wait_messages(1)[0])
    assert old["click"] and old["unsub"]

    # Steps 1 and 2 of the procedure: the new secret on top, the old one kept below; reload.
    secret.write_text("new-secret-0123456789abcdef\nold-secret-0123456789abcdef\n")
    d.ctl("reload")
    assert "2 tracking secret(s) read" in d.log_text()
    st, headers, _ = http(old["click"][0])
    assert st == 302 and headers["Location"].startswith("https://example.com/")
    assert http(old["unsub"][0])[0] == 200
    assert http(old["open"][0])[0] == 200
    d.advance("5d")
    new = urls(d.wait_messages(2)[-1])
    assert new["unsub"] and new["unsub"][0] != old["unsub"][0]
    assert http(new["unsub"][0])[0] == 200

    # New mail is signed with the new secret: the old secret alone does not accept it...
    secret.write_text("old-secret-0123456789abcdef\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: http(new["unsub"][0])[0] == 404, 10, "the SIGHUP to re-read the secrets")
    assert http(old["unsub"][0])[0] == 200
    # ...a file with a bad secret is refused and the running secrets stay...
    secret.write_text("short\n")
    d.ctl("reload")
    assert "the tracking secrets stay as they were" in d.log_text()
    assert http(old["unsub"][0])[0] == 200
    # ...and once the old links have aged out, dropping the old secret retires them.
    secret.write_text("new-secret-0123456789abcdef\n")
    d.ctl("reload")
    assert http(new["unsub"][0])[0] == 200
    assert http(old["unsub"][0])[0] == 404
    # A restart reads the same file.
    assert d.stop() == 0
    d.start()
    assert http(new["unsub"][0])[0] == 200
    assert http(old["unsub"][0])[0] == 404
    assert d.stop() == 0


def test_retention_folds_old_events_and_keeps_the_stats(daemon_factory, tmp_path):
    from test_track import FIREFOX, urls
    d = start(daemon_factory, tmp_path, retention={"events": "30d", "batch": 2})
    for i in range(5):
        d.ctl("lead", "add", f"r{i}@example.org", "--stage", "awareness")
    d.wait_messages(5)
    d.advance("6d")
    msgs = d.wait_messages(10)
    d.advance("1h")
    ones = [m for m in msgs if m["Subject"] == "One"]
    for m in ones[:3]:
        u = urls(m)
        req = urllib.request.Request(u["click"][0], headers={"User-Agent": FIREFOX})
        try:
            OPENER.open(req, timeout=20)
        except urllib.error.HTTPError as e:
            assert e.code == 302
        for o in u["open"][:1]:
            http(o)
    assert http(urls(ones[3])["unsub"][0], {"confirm": "yes"})[0] == 200
    wait_for(lambda: d.sql("SELECT count(*) FROM events WHERE kind = 'click'")[0][0] >= 3, 10,
             "the clicks to be committed")
    before = d.ctl("stats")
    steps = before["steps"] if "steps" in before else before
    assert "clicked" in json.dumps(steps)
    n_events = d.sql("SELECT count(*) FROM events")[0][0]
    assert n_events > 10

    d.advance("40d")
    wait_for(lambda: d.sql("SELECT count(*) FROM events")[0][0] == 0, 20,
             "the old events to be folded and removed")
    assert d.sql("SELECT count(*) FROM touches WHERE folded = 0 AND sent_at IS NOT NULL")[0][0] == 0
    assert d.ctl("stats") == before
    assert d.sql("SELECT sum(clicked) FROM step_counts")[0][0] >= 3
    # Still the same after a restart; and a new event is kept (it is not old).
    assert d.stop() == 0
    d.start()
    assert d.ctl("stats") == before
    assert d.stop() == 0


def test_anonymise_erases_long_finished_leads_and_keeps_stats_and_opt_outs(
        daemon_factory, tmp_path):
    from test_track import urls
    files = content_files()
    files["sequences/slow.json"] = json.dumps({
        "stage": "awareness", "mode": "nurture",
        "steps": [{"id": "s1", "delay": "0d", "template": "a/two.md"},
                  {"id": "s2", "delay": "60d", "template": "a/two.md"}]})
    content = write_content(tmp_path / "content-anon", files)
    port = free_port()
    d = daemon_factory(
        "anon", content=content,
        tracking={"listen": f"127.0.0.1:{port}", "base_url": f"http://127.0.0.1:{port}"},
        signup={"site": "http://127.0.0.1:9", "per_hour": 50}, forms={"plain": {"stage": "awareness"}},
        retention={"anonymise": "30d", "batch": 2}).start()
    done, out = "zebulon.done@example.org", "quintessa.out@example.org"
    d.ctl("lead", "add", done, "--first-name", "Zebulon", "--company", "Frobozzco",
          "--title", "Grand Vizier", "--attr", "phone=555-0199", "--stage", "awareness")
    d.ctl("lead", "add", out, "--first-name", "Quintessa", "--stage", "awareness")
    d.ctl("lead", "add", "busy@example.org", "--stage", "awareness", "--sequence", "slow")
    msgs = d.wait_messages(3)
    [to_out] = [m for m in msgs if out in m["To"]]
    assert http(urls(to_out)["unsub"][0], {"confirm": "yes"})[0] == 200
    wait_for(lambda: d.ctl("lead", "show", out)["lead"]["status"] == "unsubscribed", 10,
             "the opt-out to be recorded")
    d.advance("6d")  # done gets its second and last step: its journey ends
    d.wait_messages(4)
    d.ctl("lead", "add", "recent@example.org", "--stage", "awareness")
    d.wait_messages(5)
    d.advance("6d")  # recent finishes too, but only just
    d.wait_messages(6)
    wait_for(lambda: d.ctl("status")["touches"]["queued"] == 0, 10, "the sends to settle")
    before = d.ctl("stats")
    assert d.ctl("status")["anonymised"] == 0
    assert any(done.encode() in p.read_bytes() for p in db_files(d))

    # 38 days in: done (ended day 6) and out (opted out day 0) are 30 days past their end;
    # recent (ended day 12) is not, busy still has a step to come.
    d.advance("26d")
    wait_for(lambda: d.ctl("status")["anonymised"] == 2, 20, "two leads to be anonymised")
    assert d.ctl("stats") == before
    rows = d.sql("SELECT email, first_name, company, title, attrs, status, stage,"
                 " anonymised_at IS NOT NULL FROM leads ORDER BY id")
    assert [r[0].split(":")[0] for r in rows] == [
        "anonymised", "anonymised", "busy@example.org", "recent@example.org"], rows
    assert rows[0][1:] == ("", "", "", "{}", "active", "awareness", 1), rows[0]
    assert rows[1][5] == "unsubscribed" and rows[1][7] == 1, rows[1]
    assert rows[2][7] == 0 and rows[3][7] == 0, rows
    ev = d.sql("SELECT lead_id, detail FROM events WHERE kind = 'anonymised' ORDER BY lead_id")
    assert ev == [(1, "{}"), (2, "{}")], ev
    for addr in (done, out):
        assert d.ctl_raw("lead", "show", addr).returncode != 0
    assert d.ctl_raw("status").stdout.count("2 anonymised") == 1
    assert "2 leads anonymised" in d.log_text()
    # The erased text is gone from the files, the WAL checkpointed after the batch.
    for p in db_files(d):
        data = p.read_bytes()
        for secret in (done, out, "Zebulon", "Quintessa", "Frobozzco", "Grand Vizier",
                       "555-0199"):
            assert secret.encode() not in data, f"{p.name} still holds {secret}"
    # The opt-out keeps winning as a keyed hash: a re-import is refused, a signup gets only
    # its confirmation mail. The finished address was never opted out: it may come back.
    [sup] = d.sql("SELECT reason, source FROM suppressions WHERE address LIKE 'hmac:%'")
    assert sup == ("unsubscribe", "anonymise"), sup
    csv = tmp_path / "again.csv"
    csv.write_text(f"email,first_name\n{out},Quintessa\n")
    r = d.ctl("lead", "import", csv)
    assert (r["added"], r["suppressed"]) == (0, 1), r
    def to_out():
        return sorted(m["Subject"] for m in d.messages() if out in m["To"])
    n = len(d.messages())
    assert subscribe(d, email=out)[0] == 200
    d.wait_messages(n + 1)
    d.advance("1d")
    assert len(d.messages()) == n + 1
    assert to_out() == ["One", "Please confirm your subscription"], to_out()
    assert d.ctl_raw("lead", "show", out).returncode != 0
    csv.write_text(f"email\n{done}\n")
    assert d.ctl("lead", "import", csv)["added"] == 1
    assert d.ctl("status")["anonymised"] == 2
    # Events that still come for an anonymised lead (a link in its old mail, a CRM's event)
    # are kept without detail and move nothing: no opt-out of a non-address, no new journey.
    [to_done] = [m for m in msgs if done in m["To"]]
    assert http(urls(to_done)["unsub"][0], {"confirm": "yes"})[0] == 200
    d.ctl("event", "anonymised:1", "purchase")
    wait_for(lambda: d.sql("SELECT count(*) FROM events WHERE lead_id = 1 AND kind IN"
                           " ('unsubscribe', 'purchase') AND detail = '{}'")[0][0] == 2, 10,
             "the two late events")
    assert d.sql("SELECT status, stage FROM leads WHERE id = 1") == [("active", "awareness")]
    assert d.sql("SELECT count(*) FROM enrolments WHERE lead_id = 1 AND state = 'active'"
                 " UNION ALL SELECT count(*) FROM suppressions WHERE address LIKE 'anonymised%'"
                 ) == [(0,), (0,)]
    assert d.stop() == 0


def test_a_bad_anonymise_age_is_refused_naming_file_and_line(tmp_path):
    cfg = tmp_path / "dripd.json"
    for value, why in (('"12h"', 'retention: "anonymise" must be at least 1d'),
                       ('"soon"', '"anonymise" must be a duration'),
                       ('30', '"anonymise" must be a duration')):
        cfg.write_text('{\n  "state_dir": "state",\n  "retention": {\n'
                       f'    "anonymise": {value}\n  }}\n}}\n')
        r = subprocess.run([str(DRIPD), "check", "-c", str(cfg)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1 and f"{cfg}:4: " in r.stderr and why in r.stderr, r.stderr
