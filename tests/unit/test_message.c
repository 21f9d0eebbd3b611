/* test_message.c - RFC 5322 / MIME messages, parsed back to check what they promise. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "testutil.h"

#include "dripd/error.h"
#include "dripd/message.h"
#include "dripd/util.h"

/* ---- small decoders, independent of the code under test ---- */

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes n base64 characters (a multiple of 4, '=' padded) onto out. */
static void b64_decode(struct buf *out, const char *in, size_t n)
{
	if (n % 4 != 0)
		fail_msg("base64 length %zu is not a multiple of 4: \"%.*s\"", n, (int)n, in);
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		for (int k = 0; k < 4; k++) {
			v[k] = in[i + k] == '=' ? 0 : b64_value(in[i + k]);
			if (v[k] < 0)
				fail_msg("bad base64 character '%c'", in[i + k]);
		}
		unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 |
			     (unsigned)v[3];
		buf_addc(out, (char)(w >> 16));
		if (in[i + 2] != '=')
			buf_addc(out, (char)(w >> 8 & 255));
		if (in[i + 3] != '=')
			buf_addc(out, (char)(w & 255));
	}
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes a quoted-printable body (CRLF lines); soft breaks vanish, hard ones stay CRLF. */
static char *qp_decode(const char *in)
{
	struct buf out;
	buf_init(&out);
	for (const char *p = in; *p; p++) {
		if (*p == '=') {
			if (p[1] == '\r' && p[2] == '\n') {
				p += 2;
				continue;
			}
			int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
			if (hi < 0 || lo < 0)
				fail_msg("bad quoted-printable escape at \"%.10s\"", p);
			buf_addc(&out, (char)(hi << 4 | lo));
			p += 2;
		} else {
			buf_addc(&out, *p);
		}
	}
	return buf_steal(&out);
}

/* Decodes every RFC 2047 B encoded-word of a header value and concatenates them. */
static char *rfc2047_decode(const char *value)
{
	struct buf out;
	const char *p = value, *w;
	buf_init(&out);
	while ((w = strstr(p, "=?UTF-8?B?"))) {
		const char *data = w + 10, *end = strstr(data, "?=");
		assert_non_null(end);
		if (end + 2 - w > 75)
			fail_msg("encoded-word longer than 75 characters: \"%.*s\"",
				 (int)(end + 2 - w), w);
		b64_decode(&out, data, (size_t)(end - data));
		p = end + 2;
	}
	return buf_steal(&out);
}

/* ---- the message, split into headers and body ---- */

struct parsed {
	char *raw;
	char *headers; /* unfolded, one "Name: value\n" per header */
	char *body;
};

static void check_lines(const char *raw)
{
	size_t line_len = 0, lineno = 1;
	for (const char *p = raw; *p; p++) {
		if (*p == '\n' && (p == raw || p[-1] != '\r'))
			fail_msg("bare LF at line %zu", lineno);
		if (*p == '\r' && p[1] != '\n')
			fail_msg("bare CR at line %zu", lineno);
		if (*p == '\n') {
			line_len = 0;
			lineno++;
		} else if (*p != '\r' && ++line_len > 998) {
			fail_msg("line %zu is longer than 998 octets", lineno);
		}
	}
	size_t n = strlen(raw);
	if (n < 2 || strcmp(raw + n - 2, "\r\n") != 0)
		fail_msg("expected the message to end in CRLF");
}

static void parse(const char *raw, struct parsed *m)
{
	struct buf h;
	check_lines(raw);
	m->raw = xstrdup(raw);
	const char *sep = strstr(raw, "\r\n\r\n");
	if (!sep)
		fail_msg("no blank line between headers and body in \"%s\"", raw);
	buf_init(&h);
	for (const char *p = raw; p < sep + 2; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			p++;
			if (p + 1 < sep + 2 && (p[1] == ' ' || p[1] == '\t'))
				continue; /* folded: the line goes on */
			buf_addc(&h, '\n');
		} else {
			buf_addc(&h, *p);
		}
	}
	m->headers = buf_steal(&h);
	m->body = xstrdup(sep + 4);
}

static void parsed_free(struct parsed *m)
{
	free(m->raw);
	free(m->headers);
	free(m->body);
}

/* The value of header `name` (case-sensitive, first one) as a new string, or NULL. */
static char *header(const struct parsed *m, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = m->headers; *p;) {
		const char *eol = strchr(p, '\n');
		if (!eol)
			break;
		if ((size_t)(eol - p) > n + 1 && strncmp(p, name, n) == 0 && p[n] == ':' &&
		    p[n + 1] == ' ')
			return xstrndup(p + n + 2, (size_t)(eol - p - n - 2));
		p = eol + 1;
	}
	return NULL;
}

static int header_count(const struct parsed *m, const char *name)
{
	int count = 0;
	size_t n = strlen(name);
	for (const char *p = m->headers; *p;) {
		if (strncmp(p, name, n) == 0 && p[n] == ':')
			count++;
		const char *eol = strchr(p, '\n');
		if (!eol)
			break;
		p = eol + 1;
	}
	return count;
}

/* Whether any physical line of the raw message starts with `prefix`. */
static bool raw_line_starts_with(const char *raw, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = raw; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncasecmp(p, prefix, n) == 0)
			return true;
	return false;
}

static struct message_spec base_spec(void)
{
	struct message_spec m = {
		.from = "Ana Ruiz <ana@example.com>",
		.to_name = "Maya Lopez",
		.to_addr = "maya@example.org",
		.subject = "Welcome, Maya",
		.message_id = "<t1.abc@example.com>",
		.reply_to = NULL,
		.date = 1795428000, /* Mon, 23 Nov 2026 10:00:00 +0000 */
		.text = "Hello Maya,\n\nWelcome aboard.\n",
		.html = "<p>Hello Maya,</p>\n<p>Welcome aboard.</p>\n",
	};
	return m;
}

static void build(const struct message_spec *spec, struct parsed *m)
{
	struct buf out;
	char err[256] = "";
	buf_init(&out);
	int rc = message_build(spec, &out, err, sizeof(err));
	if (rc != 0)
		fail_msg("expected the message to build, got %d: %s", rc, err);
	parse(out.data, m);
	buf_free(&out);
}

/* The decoded body of the part with this Content-Type, from a multipart message. */
static char *part_body(const struct parsed *m, const char *type)
{
	char *ct = header(m, "Content-Type");
	char delim[128], want[128];
	assert_non_null(ct);
	const char *b = strstr(ct, "boundary=\"");
	assert_non_null(b);
	b += 10;
	snprintf(delim, sizeof(delim), "--%.*s\r\n", (int)strcspn(b, "\""), b);
	snprintf(want, sizeof(want), "Content-Type: %s; charset=utf-8\r\n", type);
	free(ct);
	for (const char *p = strstr(m->body, delim); p; p = strstr(p + 1, delim)) {
		const char *hdr = p + strlen(delim), *sep = strstr(hdr, "\r\n\r\n");
		assert_non_null(sep);
		if (strncmp(hdr, want, strlen(want)) != 0)
			continue;
		if (!strstr(hdr, "Content-Transfer-Encoding: quoted-printable\r\n"))
			fail_msg("part %s is not quoted-printable", type);
		const char *start = sep + 4, *end = strstr(start, delim);
		if (!end) {
			char close[128];
			snprintf(close, sizeof(close), "%.*s--\r\n", (int)strlen(delim) - 2, delim);
			end = strstr(start, close);
		}
		assert_non_null(end);
		char *enc = xstrndup(start, (size_t)(end - start));
		char *dec = qp_decode(enc);
		free(enc);
		return dec;
	}
	fail_msg("no %s part in \"%s\"", type, m->body);
	return NULL;
}

/* `in` with every LF turned into CRLF (what a body decodes back to). */
static char *crlf(const char *in)
{
	struct buf out;
	buf_init(&out);
	for (const char *p = in; *p; p++) {
		if (*p == '\n' && (p == in || p[-1] != '\r'))
			buf_addc(&out, '\r');
		buf_addc(&out, *p);
	}
	return buf_steal(&out);
}

/* ---- tests ---- */

static void test_message_has_crlf_lines_and_required_headers(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	build(&spec, &m);
	static const char *const required[] = { "Date",        "From",       "To",
						"Subject",     "Message-ID", "MIME-Version",
						"Content-Type" };
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (header_count(&m, required[i]) != 1)
			fail_msg("expected one %s header, got %d in:\n%s", required[i],
				 header_count(&m, required[i]), m.headers);
	char *v;
	assert_string_equal(v = header(&m, "Date"), "Mon, 23 Nov 2026 10:00:00 +0000");
	free(v);
	assert_string_equal(v = header(&m, "From"), "\"Ana Ruiz\" <ana@example.com>");
	free(v);
	assert_string_equal(v = header(&m, "To"), "\"Maya Lopez\" <maya@example.org>");
	free(v);
	assert_string_equal(v = header(&m, "Subject"), "Welcome, Maya");
	free(v);
	assert_string_equal(v = header(&m, "Message-ID"), "<t1.abc@example.com>");
	free(v);
	assert_string_equal(v = header(&m, "MIME-Version"), "1.0");
	free(v);
	v = header(&m, "Content-Type");
	if (strncmp(v, "multipart/alternative; boundary=\"", 33) != 0)
		fail_msg("expected multipart/alternative with a boundary, got \"%s\"", v);
	free(v);
	assert_int_equal(header_count(&m, "Reply-To"), 0);
	parsed_free(&m);
}

static void test_multipart_has_text_then_html_and_a_closing_boundary(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	build(&spec, &m);
	char *ct = header(&m, "Content-Type");
	const char *b = strstr(ct, "boundary=\"") + 10;
	char boundary[100], open[128], close[128];
	snprintf(boundary, sizeof(boundary), "%.*s", (int)strcspn(b, "\""), b);
	free(ct);
	assert_true(strlen(boundary) >= 16);
	snprintf(open, sizeof(open), "--%s\r\n", boundary);
	snprintf(close, sizeof(close), "--%s--\r\n", boundary);
	const char *first = strstr(m.body, open);
	assert_non_null(first);
	const char *second = strstr(first + 1, open);
	assert_non_null(second);
	assert_null(strstr(second + 1, open));
	const char *text_ct = strstr(m.body, "Content-Type: text/plain");
	const char *html_ct = strstr(m.body, "Content-Type: text/html");
	assert_non_null(text_ct);
	assert_non_null(html_ct);
	assert_true(text_ct < html_ct);
	/* The closing boundary ends the message. */
	size_t bl = strlen(m.body), cl = strlen(close);
	if (bl < cl || strcmp(m.body + bl - cl, close) != 0)
		fail_msg("expected the body to end with \"%s\", got \"%s\"", close, m.body);

	char *text = part_body(&m, "text/plain"), *html = part_body(&m, "text/html");
	char *want_text = crlf(spec.text), *want_html = crlf(spec.html);
	assert_string_equal(text, want_text);
	assert_string_equal(html, want_html);
	free(text);
	free(html);
	free(want_text);
	free(want_html);
	parsed_free(&m);
}

static void test_boundaries_differ_between_messages(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed a, b;
	(void)state;
	build(&spec, &a);
	build(&spec, &b);
	char *ca = header(&a, "Content-Type"), *cb = header(&b, "Content-Type");
	if (strcmp(ca, cb) == 0)
		fail_msg("expected two messages to have different boundaries, both \"%s\"", ca);
	free(ca);
	free(cb);
	parsed_free(&a);
	parsed_free(&b);
}

static void test_long_single_line_body_keeps_lines_under_998(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	char *text = malloc(5001), *html = malloc(5001);
	(void)state;
	for (size_t i = 0; i < 5000; i++) {
		text[i] = (char)('a' + i % 26);
		html[i] = i % 7 == 0 ? '=' : 'x';
	}
	text[5000] = html[5000] = '\0';
	spec.text = text;
	spec.html = html;
	build(&spec, &m); /* checks every line */
	char *t = part_body(&m, "text/plain"), *h = part_body(&m, "text/html");
	/* A body not ending in a line break gets one. */
	char *want_t = xasprintf("%s\r\n", text), *want_h = xasprintf("%s\r\n", html);
	assert_string_equal(t, want_t);
	assert_string_equal(h, want_h);
	free(t);
	free(h);
	free(want_t);
	free(want_h);
	free(text);
	free(html);
	parsed_free(&m);
}

static void test_non_ascii_subject_is_rfc2047_encoded_and_decodes_back(void **state)
{
	static const char subject[] = "Grüße, Jürgen — 👋";
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	spec.subject = subject;
	build(&spec, &m);
	char *v = header(&m, "Subject");
	if (strncmp(v, "=?UTF-8?B?", 10) != 0)
		fail_msg("expected an encoded-word, got \"%s\"", v);
	for (const unsigned char *p = (const unsigned char *)m.raw; *p; p++)
		if (*p > 0x7e)
			fail_msg("expected only ASCII in the message, found byte 0x%02x", *p);
	char *back = rfc2047_decode(v);
	assert_string_equal(back, subject);
	free(back);
	free(v);
	parsed_free(&m);
}

static void test_long_non_ascii_subject_folds_without_splitting_characters(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	struct buf s;
	(void)state;
	buf_init(&s);
	for (int i = 0; i < 60; i++)
		buf_adds(&s, i % 3 == 0 ? "ü" : i % 3 == 1 ? "€" : "👋");
	spec.subject = s.data;
	build(&spec, &m);
	char *v = header(&m, "Subject");
	/* Each word must decode to whole UTF-8 characters on its own. */
	int words = 0;
	for (const char *w = strstr(v, "=?UTF-8?B?"); w; w = strstr(w + 1, "=?UTF-8?B?")) {
		const char *end = strstr(w + 10, "?=");
		struct buf one;
		buf_init(&one);
		b64_decode(&one, w + 10, (size_t)(end - w - 10));
		unsigned char last = (unsigned char)one.data[one.len - 1];
		unsigned char first = (unsigned char)one.data[0];
		if ((first & 0xc0) == 0x80 || last >= 0xc0)
			fail_msg("encoded-word %d splits a UTF-8 character", words + 1);
		buf_free(&one);
		words++;
	}
	assert_true(words > 1);
	char *back = rfc2047_decode(v);
	assert_string_equal(back, s.data);
	free(back);
	free(v);
	buf_free(&s);
	parsed_free(&m);
}

static void test_lines_with_encoded_words_stay_within_76(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	struct buf s;
	(void)state;
	buf_init(&s);
	for (int i = 0; i < 40; i++)
		buf_adds(&s, "Grüße ");
	spec.subject = s.data;
	spec.from = "Jürgen Groß <juergen@example.com>";
	spec.to_name = s.data;
	spec.to_addr = "a.rather.long.mailbox.name@subdomain.example.org";
	build(&spec, &m);
	/* RFC 2047 section 2: a header line holding an encoded-word is at most 76 long. */
	const char *end = strstr(m.raw, "\r\n\r\n");
	for (const char *p = m.raw; p < end;) {
		const char *eol = strstr(p, "\r\n");
		size_t len = (size_t)(eol - p);
		char *line = xstrndup(p, len);
		if (strstr(line, "=?UTF-8?B?") && len > 76)
			fail_msg("header line of %zu characters: \"%s\"", len, line);
		free(line);
		p = eol + 2;
	}
	char *to = header(&m, "To"), *name = rfc2047_decode(to);
	assert_string_equal(name, s.data);
	assert_contains(to, "?= <a.rather.long.mailbox.name@subdomain.example.org>");
	free(name);
	free(to);
	buf_free(&s);
	parsed_free(&m);
}

static void test_crlf_in_subject_cannot_inject_a_header(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	spec.subject = "Hi\r\nBcc: evil@example.com";
	build(&spec, &m);
	if (raw_line_starts_with(m.raw, "Bcc:"))
		fail_msg("a line starts with Bcc: in\n%s", m.raw);
	assert_int_equal(header_count(&m, "Bcc"), 0);
	char *v = header(&m, "Subject");
	assert_string_equal(v, "Hi  Bcc: evil@example.com");
	free(v);
	parsed_free(&m);

	/* The same through the encoded-word path and the display name. */
	spec = base_spec();
	spec.subject = "Grüße\nBcc: evil@example.com";
	spec.to_name = "Maya\r\nBcc: evil@example.com";
	spec.message_id = "<x@example.com>\r\nBcc: evil@example.com";
	build(&spec, &m);
	if (raw_line_starts_with(m.raw, "Bcc:"))
		fail_msg("a line starts with Bcc: in\n%s", m.raw);
	v = header(&m, "Subject");
	char *back = rfc2047_decode(v);
	if (strpbrk(back, "\r\n"))
		fail_msg("expected no CR/LF in the decoded subject, got \"%s\"", back);
	free(back);
	free(v);
	parsed_free(&m);
}

static void test_non_ascii_and_quoted_display_names(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	spec.from = "\"Ana Ruiz\" <ana@example.com>";
	spec.to_name = "Jürgen \"JJ\" Groß";
	build(&spec, &m);
	char *from = header(&m, "From"), *to = header(&m, "To");
	assert_string_equal(from, "\"Ana Ruiz\" <ana@example.com>");
	if (strncmp(to, "=?UTF-8?B?", 10) != 0 || !strstr(to, "?= <maya@example.org>"))
		fail_msg("expected an encoded name then <maya@example.org>, got \"%s\"", to);
	char *name = rfc2047_decode(to);
	assert_string_equal(name, "Jürgen JJ Groß");
	free(name);
	free(from);
	free(to);
	parsed_free(&m);
	spec = base_spec();
	spec.to_name = "";
	spec.from = "ana@example.com";
	build(&spec, &m);
	from = header(&m, "From");
	to = header(&m, "To");
	assert_string_equal(from, "ana@example.com");
	assert_string_equal(to, "maya@example.org");
	free(from);
	free(to);
	parsed_free(&m);
}

static void test_long_display_name_keeps_lines_under_998(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	char *name = malloc(3001);
	(void)state;
	memset(name, 'n', 3000);
	name[3000] = '\0';
	spec.to_name = name;
	build(&spec, &m); /* checks every line */
	char *to = header(&m, "To");
	assert_contains(to, "<maya@example.org>");
	char *back = rfc2047_decode(to);
	assert_string_equal(back, name);
	free(back);
	free(to);
	free(name);
	parsed_free(&m);
}

static void test_long_ascii_subject_keeps_lines_under_998(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	char *subject = malloc(2001);
	(void)state;
	memset(subject, 's', 2000);
	subject[2000] = '\0';
	spec.subject = subject;
	build(&spec, &m);
	char *v = header(&m, "Subject"), *back = rfc2047_decode(v);
	assert_string_equal(back, subject);
	free(back);
	free(v);
	free(subject);
	parsed_free(&m);
}

static void test_text_only_message_when_html_is_null(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	spec.html = NULL;
	build(&spec, &m);
	char *ct = header(&m, "Content-Type"), *cte = header(&m, "Content-Transfer-Encoding");
	assert_string_equal(ct, "text/plain; charset=utf-8");
	assert_string_equal(cte, "quoted-printable");
	assert_not_contains(m.raw, "multipart");
	assert_not_contains(m.raw, "text/html");
	char *body = qp_decode(m.body), *want = crlf(spec.text);
	assert_string_equal(body, want);
	free(body);
	free(want);
	free(ct);
	free(cte);
	parsed_free(&m);
}

static void test_reply_to_is_added_when_given(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	spec.reply_to = "Sales <sales@example.com>";
	build(&spec, &m);
	char *v = header(&m, "Reply-To");
	assert_string_equal(v, "sales@example.com");
	free(v);
	parsed_free(&m);
}

static void test_unusable_addresses_are_refused(void **state)
{
	struct message_spec spec = base_spec();
	struct buf out;
	char err[256] = "";
	(void)state;
	buf_init(&out);
	spec.to_addr = "not an address";
	assert_int_equal(message_build(&spec, &out, err, sizeof(err)), DRIP_EINVALID);
	assert_string_equal(err, "recipient address \"not an address\" is not usable");
	spec = base_spec();
	spec.from = "Ana <ana@example.com";
	assert_int_equal(message_build(&spec, &out, err, sizeof(err)), DRIP_EINVALID);
	assert_contains(err, "sender address");
	spec = base_spec();
	spec.reply_to = "nobody";
	assert_int_equal(message_build(&spec, &out, err, sizeof(err)), DRIP_EINVALID);
	assert_contains(err, "reply-to address \"nobody\"");
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

static char *qp(const char *in)
{
	struct buf out;
	buf_init(&out);
	message_qp_encode(&out, in);
	return buf_steal(&out);
}

static void check_qp_lines(const char *enc)
{
	size_t col = 0;
	for (const char *p = enc; *p; p++) {
		if (*p == '\r' && p[1] == '\n') {
			if (col > 0 && (p[-1] == ' ' || p[-1] == '\t'))
				fail_msg("unencoded white space before a line end in \"%s\"", enc);
			col = 0;
			p++;
			continue;
		}
		if ((unsigned char)*p > 126 || ((unsigned char)*p < 32 && *p != '\t'))
			fail_msg("byte 0x%02x left literal in \"%s\"", (unsigned char)*p, enc);
		if (++col > 76)
			fail_msg("quoted-printable line longer than 76 in \"%s\"", enc);
	}
}

static void expect_qp(const char *in, const char *want)
{
	char *enc = qp(in);
	if (strcmp(enc, want) != 0)
		fail_msg("qp(\"%s\"): expected \"%s\", got \"%s\"", in, want, enc);
	free(enc);
}

static void test_qp_encodes_equals_trailing_space_and_non_ascii(void **state)
{
	(void)state;
	expect_qp("a=b", "a=3Db\r\n");
	expect_qp("end \n", "end=20\r\n");
	expect_qp("tab\t", "tab=09\r\n");
	expect_qp("in the middle", "in the middle\r\n");
	expect_qp("ü", "=C3=BC\r\n");
	expect_qp("a\r\nb\n", "a\r\nb\r\n");
	expect_qp(".\n", "=2E\r\n");
	expect_qp("", "");
}

static void expect_qp_round_trip(const char *in)
{
	char *enc = qp(in);
	check_qp_lines(enc);
	char *dec = qp_decode(enc), *want = crlf(in);
	size_t wl = strlen(want);
	/* A body not ending in a line break gets one. */
	if (wl == 0 || want[wl - 1] != '\n') {
		char *w2 = xasprintf("%s%s", want, wl ? "\r\n" : "");
		free(want);
		want = w2;
	}
	if (strcmp(dec, want) != 0)
		fail_msg("qp round trip: expected \"%s\", got \"%s\" (encoded \"%s\")", want, dec,
			 enc);
	free(enc);
	free(dec);
	free(want);
}

static void test_qp_lines_stay_within_76_and_decode_back(void **state)
{
	struct buf b;
	(void)state;
	expect_qp_round_trip("plain line\nsecond line\n");
	expect_qp_round_trip("trailing spaces   \nand tabs\t\t\n");
	expect_qp_round_trip("x = y + z; 100% sure=yes\n");
	expect_qp_round_trip("Grüße, Jürgen — 👋 and € signs\n");
	/* Long lines with escapes falling at every position around the 76 limit. */
	for (int shift = 0; shift < 6; shift++) {
		buf_init(&b);
		for (int i = 0; i < shift; i++)
			buf_addc(&b, 'a');
		for (int i = 0; i < 300; i++)
			buf_adds(&b, i % 5 == 0 ? "=" : i % 7 == 0 ? "ü" : i % 11 == 0 ? " " : "b");
		buf_adds(&b, " \n");
		expect_qp_round_trip(b.data);
		buf_free(&b);
	}
	/* A line of exactly 76 and of 75 characters. */
	char line[80];
	memset(line, 'q', 76);
	line[76] = '\0';
	expect_qp_round_trip(line);
	line[75] = '\0';
	expect_qp_round_trip(line);
}

/*
 * The encoder one byte at a time, as its rules state it (RFC 2045: 33-126 but '=' as they
 * are, a space or tab unless it ends a line, lines of at most 76 with the soft break, and a
 * dot never starting a line): the oracle for message_qp_encode's runs, eight bytes at a
 * time.
 */
static char *qp_one_byte_at_a_time(const char *in)
{
	struct buf b;
	size_t col = 0;
	buf_init(&b);
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n') {
			buf_adds(&b, "\r\n");
			col = 0;
			continue;
		}
		bool at_eol = p[1] == '\0' || p[1] == '\n' || (p[1] == '\r' && p[2] == '\n');
		bool literal = (*p >= 33 && *p <= 126 && *p != '=') ||
			       ((*p == ' ' || *p == '\t') && !at_eol);
		if (col + (literal ? 1 : 3) > 75) {
			buf_adds(&b, "=\r\n");
			col = 0;
		}
		if (*p == '.' && col == 0)
			literal = false;
		if (literal)
			buf_addc(&b, (char)*p);
		else
			buf_printf(&b, "=%02X", *p);
		col += literal ? 1 : 3;
	}
	if (col > 0)
		buf_adds(&b, "\r\n");
	if (!b.data)
		buf_adds(&b, "");
	return buf_steal(&b);
}

/* Random text of the bytes that matter (letters, spaces before line ends, '=', dots, tabs,
 * CRLF and LF, UTF-8, long lines) encodes exactly as one byte at a time would. */
static void test_qp_runs_encode_like_one_byte_at_a_time(void **state)
{
	static const char *const pieces[] = { "word",
					      "a",
					      "The quick brown fox",
					      " ",
					      "  ",
					      "=",
					      ".",
					      "\t",
					      "\n",
					      "\r\n",
					      "ü",
					      "€ ",
					      "x.y",
					      " \n",
					      "=\n",
					      "abcdefghijklmnopqrstuvwxyz01234" };
	uint64_t seed = 7;
	(void)state;
	for (int i = 0; i < 3000; i++) {
		struct buf in;
		buf_init(&in);
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		size_t n = (size_t)(seed >> 33) % 120;
		for (size_t j = 0; j < n; j++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			buf_adds(&in, pieces[(seed >> 35) % (sizeof(pieces) / sizeof(*pieces))]);
		}
		if (!in.data)
			buf_adds(&in, "");
		char *got = qp(in.data), *want = qp_one_byte_at_a_time(in.data);
		if (strcmp(got, want) != 0)
			fail_msg("qp(\"%s\"):\n got \"%s\"\nwant \"%s\"", in.data, got, want);
		check_qp_lines(got);
		free(got);
		free(want);
		buf_free(&in);
	}
}

static void test_qp_never_leaves_a_dot_alone_at_a_line_start(void **state)
{
	char in[160];
	(void)state;
	/* The dot falls right after a soft line break. */
	for (int n = 70; n < 80; n++) {
		memset(in, 'a', (size_t)n);
		in[n] = '.';
		in[n + 1] = 'x';
		in[n + 2] = '\0';
		char *enc = qp(in);
		check_qp_lines(enc);
		if (strstr(enc, "\r\n.") || enc[0] == '.')
			fail_msg("a line starts with a literal dot in \"%s\"", enc);
		char *dec = qp_decode(enc);
		char *want = xasprintf("%s\r\n", in);
		assert_string_equal(dec, want);
		free(dec);
		free(want);
		free(enc);
	}
}

/* The byte-by-byte encoder the fast path replaced: the fast path must write exactly this. */
static void qp_reference(struct buf *out, const char *in)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n') {
			buf_adds(out, "\r\n");
			col = 0;
			continue;
		}
		bool at_eol = p[1] == '\0' || p[1] == '\n' || (p[1] == '\r' && p[2] == '\n');
		bool literal = (*p >= 33 && *p <= 126 && *p != '=') ||
			       ((*p == ' ' || *p == '\t') && !at_eol);
		size_t width = literal ? 1 : 3;
		if (col + width > 75) {
			buf_adds(out, "=\r\n");
			col = 0;
		}
		if (*p == '.' && col == 0 && literal) {
			literal = false;
			width = 3;
		}
		if (literal) {
			buf_addc(out, (char)*p);
		} else {
			buf_addc(out, '=');
			buf_addc(out, hex[*p >> 4]);
			buf_addc(out, hex[*p & 15]);
		}
		col += width;
	}
	if (col > 0)
		buf_adds(out, "\r\n");
}

static void test_qp_matches_the_byte_by_byte_encoder(void **state)
{
	(void)state;
	/* Inputs built from the bytes that matter (dots, spaces, tabs, '=', CR, LF, 8-bit,
	 * plain letters) in runs of every length around the 76-column limit. */
	static const char alphabet[] = "a.. \t=\r\n\xc3\xa9Z~!";
	unsigned seed = 12345;
	for (int round = 0; round < 3000; round++) {
		char in[400];
		size_t n = (size_t)(round % 397);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = (seed >> 16) & 0x7fff;
			/* Mostly letters, so long runs reach the soft line break. */
			in[i] = r % 4 ? (char)('a' + r % 26) : alphabet[r % (sizeof(alphabet) - 1)];
		}
		in[n] = '\0';
		struct buf got, want;
		buf_init(&got);
		buf_init(&want);
		buf_adds(&got, "X");
		buf_adds(&want, "X");
		message_qp_encode(&got, in);
		qp_reference(&want, in);
		if (strcmp(got.data, want.data) != 0)
			fail_msg("round %d: the encoder differs from the reference for \"%s\"",
				 round, in);
		buf_free(&got);
		buf_free(&want);
	}
	struct buf got, want;
	buf_init(&got);
	buf_init(&want);
	for (int c = 1; c < 256; c++) {
		char in[200];
		for (size_t i = 0; i < sizeof(in) - 1; i++)
			in[i] = i % 7 == 3 ? 'x' : (char)c;
		in[sizeof(in) - 1] = '\0';
		message_qp_encode(&got, in);
		qp_reference(&want, in);
	}
	assert_string_equal(got.data, want.data);
	buf_free(&got);
	buf_free(&want);
}

static void test_address_is_taken_from_a_mailbox(void **state)
{
	char out[256];
	(void)state;
	assert_int_equal(message_address("Ana <ana@example.com>", out, sizeof(out)), 0);
	assert_string_equal(out, "ana@example.com");
	assert_int_equal(message_address("ana@example.com", out, sizeof(out)), 0);
	assert_string_equal(out, "ana@example.com");
	assert_int_equal(message_address("\"Ruiz, Ana\" < ana@example.com >", out, sizeof(out)), 0);
	assert_string_equal(out, "ana@example.com");
}

static void test_address_refuses_what_is_not_one(void **state)
{
	char out[256] = "";
	char tiny[8];
	(void)state;
	assert_int_equal(message_address("no address", out, sizeof(out)), DRIP_EINVALID);
	assert_int_equal(message_address("", out, sizeof(out)), DRIP_EINVALID);
	assert_int_equal(message_address("Ana <>", out, sizeof(out)), DRIP_EINVALID);
	assert_int_equal(message_address("Ana <ana@example.com", out, sizeof(out)), DRIP_EINVALID);
	assert_int_equal(message_address("Ana <ana@localhost>", out, sizeof(out)), DRIP_EINVALID);
	assert_int_equal(message_address("ana@example.com", tiny, sizeof(tiny)), DRIP_EINVALID);
}

static void test_message_id_uses_the_sender_domain_and_is_unique(void **state)
{
	(void)state;
	char *a = message_make_id("Ana Ruiz <ana@mail.example.com>", 42);
	char *b = message_make_id("Ana Ruiz <ana@mail.example.com>", 42);
	if (strncmp(a, "<t0000000042.", 13) != 0)
		fail_msg("expected \"<t0000000042.…\", got \"%s\"", a);
	const char *at = strchr(a, '@');
	assert_non_null(at);
	assert_string_equal(at, "@mail.example.com>");
	/* The random part is 24 lower-case hex digits. */
	assert_int_equal((size_t)(at - (a + 13)), 24);
	for (const char *p = a + 13; p < at; p++)
		if (!strchr("0123456789abcdef", *p))
			fail_msg("expected hex in the random part, got \"%s\"", a);
	if (strcmp(a, b) == 0)
		fail_msg("expected two ids to differ, both \"%s\"", a);
	free(a);
	free(b);
	char *c = message_make_id("not an address", 1);
	assert_contains(c, "@localhost>");
	free(c);
	/* Later touches sort after earlier ones, across a change in the number of digits
	 * (the Message-ID index then grows at its end). */
	a = message_make_id("ana@example.com", 9999);
	b = message_make_id("ana@example.com", 10000);
	c = message_make_id("ana@example.com", 12345678901LL);
	if (strcmp(a, b) >= 0 || strncmp(c, "<t12345678901.", 14) != 0)
		fail_msg("expected ordered ids, got \"%s\", \"%s\", \"%s\"", a, b, c);
	free(a);
	free(b);
	free(c);
}

/* ---- threading and unsubscribe headers ---- */

static void test_in_reply_to_and_references_appear_once_with_the_given_ids(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	char *v;
	(void)state;
	spec.in_reply_to = "<t1.aaa@example.com>";
	spec.references = "<t1.aaa@example.com> <t2.bbb@example.com>";
	build(&spec, &m);
	if (header_count(&m, "In-Reply-To") != 1 || header_count(&m, "References") != 1)
		fail_msg("expected one In-Reply-To and one References, got %d and %d in:\n%s",
			 header_count(&m, "In-Reply-To"), header_count(&m, "References"),
			 m.headers);
	assert_string_equal(v = header(&m, "In-Reply-To"), "<t1.aaa@example.com>");
	free(v);
	assert_string_equal(v = header(&m, "References"),
			    "<t1.aaa@example.com> <t2.bbb@example.com>");
	free(v);
	parsed_free(&m);

	/* NULL or "" leaves them out. */
	spec = base_spec();
	spec.in_reply_to = "";
	spec.references = NULL;
	build(&spec, &m);
	assert_int_equal(header_count(&m, "In-Reply-To"), 0);
	assert_int_equal(header_count(&m, "References"), 0);
	parsed_free(&m);
}

static void test_crlf_in_threading_and_unsubscribe_values_cannot_inject_a_header(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	spec.in_reply_to = "<t1.aaa@example.com>\r\nBcc: evil@example.com";
	spec.references = "<t1.aaa@example.com>\nX-Evil: 1\r\n\r\nbody";
	spec.unsubscribe_url = "https://t.example/u/abc\r\nBcc: evil2@example.com";
	spec.unsubscribe_mailto = "mailto:u@example.com\nX-Evil-Too: 1";
	build(&spec, &m);
	static const char *const bad[] = { "Bcc:", "X-Evil:", "X-Evil-Too:", "body" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (raw_line_starts_with(m.raw, bad[i]))
			fail_msg("a line starts with \"%s\" in\n%s", bad[i], m.raw);
	assert_int_equal(header_count(&m, "Bcc"), 0);
	assert_int_equal(header_count(&m, "X-Evil"), 0);
	assert_int_equal(header_count(&m, "In-Reply-To"), 1);
	assert_int_equal(header_count(&m, "References"), 1);
	char *v = header(&m, "In-Reply-To");
	assert_string_equal(v, "<t1.aaa@example.com>  Bcc: evil@example.com");
	free(v);
	/* The body is still the one given. */
	char *text = part_body(&m, "text/plain"), *want = crlf(spec.text);
	assert_string_equal(text, want);
	free(text);
	free(want);
	parsed_free(&m);
}

static void test_list_unsubscribe_offers_https_and_mailto_with_one_click(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	char *v;
	(void)state;
	spec.unsubscribe_url = "https://t.example/u/abc123";
	spec.unsubscribe_mailto = "mailto:unsub+abc123@example.com";
	build(&spec, &m);
	if (header_count(&m, "List-Unsubscribe") != 1 ||
	    header_count(&m, "List-Unsubscribe-Post") != 1)
		fail_msg("expected one List-Unsubscribe and one List-Unsubscribe-Post, got %d and "
			 "%d in:\n%s",
			 header_count(&m, "List-Unsubscribe"),
			 header_count(&m, "List-Unsubscribe-Post"), m.headers);
	assert_string_equal(v = header(&m, "List-Unsubscribe"),
			    "<https://t.example/u/abc123>, <mailto:unsub+abc123@example.com>");
	free(v);
	assert_string_equal(v = header(&m, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
	free(v);
	parsed_free(&m);

	/* Without a mailto target: the https one alone, still one-click. */
	spec.unsubscribe_mailto = NULL;
	build(&spec, &m);
	assert_string_equal(v = header(&m, "List-Unsubscribe"), "<https://t.example/u/abc123>");
	free(v);
	assert_string_equal(v = header(&m, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
	free(v);
	parsed_free(&m);
}

static void test_no_list_unsubscribe_headers_without_an_unsubscribe_url(void **state)
{
	struct message_spec spec = base_spec();
	struct parsed m;
	(void)state;
	spec.unsubscribe_url = NULL;
	spec.unsubscribe_mailto = NULL;
	build(&spec, &m);
	assert_int_equal(header_count(&m, "List-Unsubscribe"), 0);
	assert_int_equal(header_count(&m, "List-Unsubscribe-Post"), 0);
	assert_false(raw_line_starts_with(m.raw, "List-Unsubscribe"));
	parsed_free(&m);

	spec.unsubscribe_url = "";
	build(&spec, &m);
	assert_int_equal(header_count(&m, "List-Unsubscribe"), 0);
	assert_int_equal(header_count(&m, "List-Unsubscribe-Post"), 0);
	parsed_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_message_has_crlf_lines_and_required_headers),
		cmocka_unit_test(test_multipart_has_text_then_html_and_a_closing_boundary),
		cmocka_unit_test(test_boundaries_differ_between_messages),
		cmocka_unit_test(test_long_single_line_body_keeps_lines_under_998),
		cmocka_unit_test(test_non_ascii_subject_is_rfc2047_encoded_and_decodes_back),
		cmocka_unit_test(test_long_non_ascii_subject_folds_without_splitting_characters),
		cmocka_unit_test(test_lines_with_encoded_words_stay_within_76),
		cmocka_unit_test(test_crlf_in_subject_cannot_inject_a_header),
		cmocka_unit_test(test_non_ascii_and_quoted_display_names),
		cmocka_unit_test(test_long_display_name_keeps_lines_under_998),
		cmocka_unit_test(test_long_ascii_subject_keeps_lines_under_998),
		cmocka_unit_test(test_text_only_message_when_html_is_null),
		cmocka_unit_test(test_reply_to_is_added_when_given),
		cmocka_unit_test(test_unusable_addresses_are_refused),
		cmocka_unit_test(test_qp_encodes_equals_trailing_space_and_non_ascii),
		cmocka_unit_test(test_qp_lines_stay_within_76_and_decode_back),
		cmocka_unit_test(test_qp_runs_encode_like_one_byte_at_a_time),
		cmocka_unit_test(test_qp_never_leaves_a_dot_alone_at_a_line_start),
		cmocka_unit_test(test_qp_matches_the_byte_by_byte_encoder),
		cmocka_unit_test(test_address_is_taken_from_a_mailbox),
		cmocka_unit_test(test_address_refuses_what_is_not_one),
		cmocka_unit_test(test_message_id_uses_the_sender_domain_and_is_unique),
		cmocka_unit_test(test_in_reply_to_and_references_appear_once_with_the_given_ids),
		cmocka_unit_test(
			test_crlf_in_threading_and_unsubscribe_values_cannot_inject_a_header),
		cmocka_unit_test(test_list_unsubscribe_offers_https_and_mailto_with_one_click),
		cmocka_unit_test(test_no_list_unsubscribe_headers_without_an_unsubscribe_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
