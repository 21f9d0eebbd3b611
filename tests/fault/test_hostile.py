#!/usr/bin/python3
"""Hostile input through the whole path, control socket to SMTP server: CR/LF and <> in
names, subjects and addresses never make a header or a recipient; body lines "." and ".."
arrive intact; a 200-character emoji subject is RFC 2047 encoded with no line over 998;
template syntax inside lead data is never evaluated. (HTTP input is the tracking listener's
suite; mutated tokens are fuzzed in tests/fuzz/fuzz_token.c.)"""
import email
import email.policy
import json

import pytest

from conftest import daemon_factory, smtp_daemon, smtp_sink, wait_for, write_content  # noqa

EMOJI = "😀🚀🎉🔥✨" * 40  # 200 characters, 800 bytes of UTF-8

CONTENT = {
    "journey.json": json.dumps({"stages": ["awareness", "customer"]}),
    "sequences/s.json": json.dumps({
        "stage": "awareness",
        "steps": [{"id": "one", "delay": "0d", "template": "one.md"}]}),
    "templates/one.md": "---\nsubject: Hello {{first_name}} from {{company|us}}\n---\n"
                        "Dear {{first_name}} {{last_name}},\n\n.\n\n..\n\n.hidden\n\n"
                        "Your title: {{title}}\n",
}


def lines_of(raw):
    return raw.split(b"\r\n")


def headers_of(raw):
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [ln for ln in head.split(b"\r\n") if ln and ln[:1] not in (b" ", b"\t")]


@pytest.fixture
def hostile(daemon_factory, tmp_path, smtp_sink):
    content = write_content(tmp_path / "content", CONTENT)
    d = smtp_daemon(daemon_factory, content, smtp_sink.url, threads=2)
    d.start()
    return d, smtp_sink


def send(d, sink, email_addr, *args):
    n = len(sink.messages)
    d.ctl("lead", "add", email_addr, *args)
    wait_for(lambda: len(sink.messages) > n, 20, f"the message to {email_addr}")
    env_from, rcpts, raw = sink.messages[n]
    return rcpts, raw, email.message_from_bytes(raw, policy=email.policy.default)


def assert_sane(raw):
    for ln in lines_of(raw):
        assert len(ln) <= 998, f"a line of {len(ln)} octets"
        assert b"\r" not in ln and b"\n" not in ln
    names = [h.split(b":", 1)[0].lower() for h in headers_of(raw)]
    assert len(names) == len(set(names)), f"a header twice: {names}"
    assert not {b"bcc", b"cc", b"x-injected"} & set(names), names


@pytest.mark.parametrize("field", ["--first-name", "--last-name", "--company", "--title"])
def test_cr_lf_in_a_name_is_refused_with_the_field_named(hostile, field):
    d, sink = hostile
    r = d.ctl_raw("lead", "add", "lead@example.org", field, "Eve\r\nBcc: victim@evil.example")
    assert r.returncode != 0
    assert field[2:].replace("-", "_") in r.stderr and "control characters" in r.stderr, r.stderr
    assert d.ctl("status")["leads"] == 0 and sink.messages == []


def test_angle_brackets_and_quotes_in_names_never_make_a_header_or_a_recipient(hostile):
    d, sink = hostile
    rcpts, raw, msg = send(d, sink, "lead@example.org",
                           "--first-name", "Eve <victim@evil.example>",
                           "--last-name", '"Bob", victim2@evil.example',
                           "--company", "ACME: X-Injected: 1",
                           "--title", "Boss . RCPT TO:<victim3@evil.example>")
    assert rcpts == ["lead@example.org"], rcpts
    assert_sane(raw)
    assert [a.addr_spec for a in msg["To"].addresses] == ["lead@example.org"]
    assert "Eve <victim@evil.example>" in str(msg["Subject"])
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "victim3@evil.example" in text  # data, shown as data: never a command
    assert len(sink.messages) == 1


@pytest.mark.parametrize("bad", ["lead@example.org\r\nRCPT TO:<x@evil.example>",
                                 "<lead@example.org>", "lead@example.org>, x@evil.example",
                                 "lead\n@example.org"])
def test_a_hostile_address_is_refused_with_a_clear_error(hostile, bad):
    d, sink = hostile
    r = d.ctl_raw("lead", "add", bad)
    assert r.returncode != 0 and "invalid" in (r.stderr + r.stdout).lower(), (r.stdout, r.stderr)
    assert d.ctl("status")["leads"] == 0
    assert sink.messages == []


def test_body_lines_of_dots_arrive_intact(hostile):
    d, sink = hostile
    rcpts, raw, msg = send(d, sink, "dots@example.org", "--first-name", "Dot")
    text = msg.get_body(preferencelist=("plain",)).get_content()
    lines = text.replace("\r\n", "\n").split("\n")
    assert "." in lines and ".." in lines and ".hidden" in lines, lines


def test_a_200_character_emoji_subject_is_encoded_with_no_long_line(daemon_factory, tmp_path,
                                                                    smtp_sink):
    files = dict(CONTENT)
    files["templates/one.md"] = f"---\nsubject: {EMOJI}\n---\nHi {{{{first_name}}}}.\n"
    content = write_content(tmp_path / "content", files)
    d = smtp_daemon(daemon_factory, content, smtp_sink.url, threads=2)
    d.start()
    rcpts, raw, msg = send(d, smtp_sink, "emoji@example.org", "--first-name", EMOJI[:60])
    assert_sane(raw)
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert all(len(ln) <= 78 for ln in head if b"=?UTF-8?" in ln), head
    assert str(msg["Subject"]) == EMOJI
    assert len(EMOJI) == 200


def test_template_syntax_in_lead_data_is_never_evaluated(hostile):
    d, sink = hostile
    rcpts, raw, msg = send(d, sink, "tpl@example.org",
                           "--first-name", "{{email}}",
                           "--last-name", "{{#if company}}yes{{/if}}",
                           "--title", "*bold* <b>b</b> [x](https://evil.example)")
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "Dear {{email}} {{#if company}}yes{{/if}}," in text, text
    assert "tpl@example.org" not in text.split("Dear")[1].split(",")[0]
    assert "<b>b</b>" not in html and "&lt;b&gt;" in html
    assert 'href="https://evil.example"' not in html
    assert str(msg["Subject"]) == "Hello {{email}} from us"
