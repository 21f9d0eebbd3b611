/* message.c - RFC 5322 headers, RFC 2047 encoded-words, quoted-printable MIME bodies. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dripd/error.h"
#include "dripd/message.h"

static const char message_b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Appends a, b and c: the header lines' pieces without printf, which was a tenth of
 * building a message. */
static void message_cat(struct buf *out, const char *a, const char *b, const char *c)
{
	buf_adds(out, a);
	buf_adds(out, b);
	buf_adds(out, c);
}

static void message_base64(struct buf *out, const unsigned char *in, size_t n)
{
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		buf_addc(out, message_b64[(v >> 18) & 63]);
		buf_addc(out, message_b64[(v >> 12) & 63]);
		buf_addc(out, i + 1 < n ? message_b64[(v >> 6) & 63] : '=');
		buf_addc(out, i + 2 < n ? message_b64[v & 63] : '=');
	}
}

static bool message_plain_ascii(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return true;
}

/* The length of the UTF-8 sequence starting at p (1 for a stray byte), never past the end. */
static size_t message_utf8_len(const unsigned char *p)
{
	size_t n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 1;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 1;
	return n;
}

void message_encode_header(struct buf *out, const char *value, size_t used)
{
	if (message_plain_ascii(value) && used + strlen(value) <= 900) {
		buf_adds(out, value);
		return;
	}
	/* Encoded-words of at most 64 characters, each on its own folded line, so a line with
	 * one stays within RFC 2047's 76 even after "Message-ID: "; a UTF-8 character is never
	 * split between two words (RFC 2047 section 5). */
	const unsigned char *p = (const unsigned char *)value;
	bool first = true;
	while (*p) {
		unsigned char chunk[39];
		size_t n = 0;
		while (*p) {
			size_t len = message_utf8_len(p);
			if (n + len > sizeof(chunk))
				break;
			for (size_t i = 0; i < len; i++) {
				unsigned char ch = p[i];
				chunk[n++] = (ch == '\r' || ch == '\n') ? ' ' : ch;
			}
			p += len;
		}
		if (!first)
			buf_adds(out, "\r\n ");
		buf_adds(out, "=?UTF-8?B?");
		message_base64(out, chunk, n);
		buf_adds(out, "?=");
		first = false;
	}
}

/* A header line "Name: value" with the value cleaned of CR/LF and encoded when needed. */
static void message_header(struct buf *out, const char *name, const char *value)
{
	struct buf clean;
	buf_init(&clean);
	for (const char *p = value; *p; p++) {
		size_t n = strcspn(p, "\r\n"); /* copied in runs */
		buf_add(&clean, p, n);
		p += n;
		if (!*p)
			break;
		buf_addc(&clean, ' ');
	}
	message_cat(out, name, ": ", "");
	message_encode_header(out, clean.data ? clean.data : "", strlen(name) + 2);
	buf_adds(out, "\r\n");
	buf_free(&clean);
}

int message_address(const char *value, char *out, size_t outlen)
{
	const char *lt = strrchr(value, '<');
	const char *start = lt ? lt + 1 : value;
	size_t n = lt ? strcspn(start, ">") : strlen(start);
	while (n > 0 && start[0] == ' ')
		start++, n--;
	while (n > 0 && start[n - 1] == ' ')
		n--;
	if ((lt && !strchr(lt, '>')) || n == 0 || n >= outlen)
		return DRIP_EINVALID;
	memcpy(out, start, n);
	out[n] = '\0';
	if (!util_email_valid(out))
		return DRIP_EINVALID;
	return 0;
}

/* "Display Name <addr>" with the name quoted or encoded as it needs. */
static void message_mailbox(struct buf *out, const char *name, const char *addr)
{
	struct buf clean;
	buf_init(&clean);
	for (const char *p = name; *p; p++)
		if (*p != '\r' && *p != '\n' && *p != '"' && *p != '\\')
			buf_addc(&clean, *p);
	if (clean.len == 0) {
		buf_adds(out, addr);
	} else if (message_plain_ascii(clean.data) && clean.len + strlen(addr) <= 900) {
		/* A longer name is encoded below: encoded-words fold, a quoted string cannot. */
		message_cat(out, "\"", clean.data, "\" <");
		message_cat(out, addr, ">", "");
	} else {
		message_encode_header(out, clean.data, 1000);
		/* On its own folded line: after a 64-character word it would pass 76. */
		message_cat(out, "\r\n <", addr, ">");
	}
	buf_free(&clean);
}

static void message_from_name(const char *from, char *out, size_t outlen)
{
	const char *lt = strrchr(from, '<');
	size_t n = lt ? (size_t)(lt - from) : 0;
	while (n > 0 && from[n - 1] == ' ')
		n--;
	const char *s = from;
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
		s++, n -= 2;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

/* 1: a byte quoted-printable writes as it is (33-126 but '='); 2: a space or tab, written as
 * it is unless it ends a line; 0: the rest. */
static const unsigned char message_qp_class[256] = {
	['\t'] = 2,
	[' '] = 2,
	[33 ... 60] = 1, /* '=' (61) is not */
	[62 ... 126] = 1,
};

/*
 * How many of the eight bytes of w, from the first (little-endian), are written as they
 * are: 0x20-0x7e but '='. Each word trick (Bit Twiddling Hacks' "has less", "has more",
 * "has zero") flags the bytes that match, and may flag a byte after a true match (a borrow
 * or carry runs upwards) but never one before it: so the lowest flag is the first byte that
 * is not plain.
 */
static size_t message_qp_plain_prefix(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap64(w); /* the first byte lowest */
#endif
	uint64_t below = (w - ones * 0x20) & ~w & high; /* a byte under 0x20 */
	uint64_t above = ((w + ones * (127 - 0x7e)) | w) & high; /* a byte over 0x7e */
	uint64_t eq = w ^ (ones * '=');
	uint64_t equals = (eq - ones) & ~eq & high; /* a '=' */
	uint64_t flags = below | above | equals;
	return flags ? (size_t)__builtin_ctzll(flags) / 8 : 8;
}

void message_qp_encode(struct buf *out, const char *in)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0, len = strlen(in);
	const unsigned char *end = (const unsigned char *)in + len;
	/* Written straight into reserved room (a byte takes at most a soft break and an
	 * escape: 6 bytes), not byte by byte through buf_addc: it was 7% of the loop thread
	 * in the delivery benchmark. */
	buf_reserve(out, 6 * len + 2);
	char *o = out->data + out->len;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		/* Most bytes are printable and mid-line: a run of them is copied as it is, without
		 * the checks below, which give the same answer for them (a space or tab counts
		 * when the byte after it is neither an end of line nor the end; a dot only when
		 * it does not start a line). Eight at a time where they can be: a byte at a time,
		 * this was 9% of the loop thread's instructions in the delivery benchmark. */
		if (col < 75 && (*p != '.' || col > 0)) {
			const unsigned char *run = p;
			for (size_t room = 75 - col; room > 0;) {
				size_t n = 0;
				uint64_t w;
				if (room >= 8 && end - p >= 8) {
					memcpy(&w, p, 8);
					n = message_qp_plain_prefix(w);
					if (n > 0 && p[n - 1] == ' ')
						n--; /* it depends on the byte after: below */
				}
				if (n > 0) {
					/* All eight copied (the room holds them), n kept. */
					memcpy(o, p, 8);
					o += n, p += n, room -= n;
					continue;
				}
				unsigned k = message_qp_class[*p];
				if (k != 1 && (k != 2 || !message_qp_class[p[1]]))
					break;
				*o++ = (char)*p++;
				room--;
			}
			if (p != run) {
				col += (size_t)(p - run);
				p--; /* the loop steps past the run's last byte */
				continue;
			}
		}
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n') {
			*o++ = '\r';
			*o++ = '\n';
			col = 0;
			continue;
		}
		bool at_eol = p[1] == '\0' || p[1] == '\n' || (p[1] == '\r' && p[2] == '\n');
		bool literal = (*p >= 33 && *p <= 126 && *p != '=') ||
			       ((*p == ' ' || *p == '\t') && !at_eol);
		size_t width = literal ? 1 : 3;
		if (col + width > 75) {
			*o++ = '=';
			*o++ = '\r';
			*o++ = '\n';
			col = 0;
		}
		/* A dot at a line start (after a soft break too) is encoded so no transport can
		 * mistake it. */
		if (*p == '.' && col == 0 && literal) {
			literal = false;
			width = 3;
		}
		if (literal) {
			*o++ = (char)*p;
		} else {
			*o++ = '=';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
		col += width;
	}
	if (col > 0) {
		*o++ = '\r';
		*o++ = '\n';
	}
	out->len = (size_t)(o - out->data);
	*o = '\0';
}

char *message_make_id(const char *from, int64_t touch_id)
{
	char addr[256], rnd[25];
	const char *domain = "localhost";
	if (message_address(from, addr, sizeof(addr)) == 0)
		domain = strrchr(addr, '@') + 1;
	util_random_hex(rnd, 12);
	/* Ten digits at least, so ids sort as their touches do and the Message-ID index grows
	 * at its end: unpadded, touch 12345 went between 1234 and 1235, and each commit
	 * split pages in the middle of the index (3.7 of a delivery commit's 18 pages). */
	return xasprintf("<t%010lld.%s@%s>", (long long)touch_id, rnd, domain);
}

static void message_part(struct buf *out, const char *boundary, const char *type, const char *body)
{
	message_cat(out, "--", boundary, "\r\n");
	message_cat(out, "Content-Type: ", type, "; charset=utf-8\r\n");
	buf_adds(out, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	message_qp_encode(out, body);
}

int message_build(const struct message_spec *m, struct buf *out, char *err, size_t errlen)
{
	char from_addr[256], to_addr[256], reply_addr[256], name[256], date[64], boundary[40];
	struct buf v;
	time_t t = (time_t)m->date;
	struct tm tm;

	if (message_address(m->from, from_addr, sizeof(from_addr)))
		return errf(err, errlen, DRIP_EINVALID, "sender address \"%s\" is not usable",
			    m->from);
	if (message_address(m->to_addr, to_addr, sizeof(to_addr)))
		return errf(err, errlen, DRIP_EINVALID, "recipient address \"%s\" is not usable",
			    m->to_addr);
	if (m->reply_to && *m->reply_to &&
	    message_address(m->reply_to, reply_addr, sizeof(reply_addr)))
		return errf(err, errlen, DRIP_EINVALID, "reply-to address \"%s\" is not usable",
			    m->reply_to);
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

	/* Room for the headers and both encoded parts at once (message_qp_encode reserves six
	 * bytes a byte), not grown step by step. */
	buf_reserve(out, 2048 + 6 * (strlen(m->text) + (m->html ? strlen(m->html) : 0)) + 4);
	message_cat(out, "Date: ", date, "\r\n");
	buf_init(&v);
	message_from_name(m->from, name, sizeof(name));
	message_mailbox(&v, name, from_addr);
	message_cat(out, "From: ", v.data, "\r\n");
	buf_free(&v);
	message_mailbox(&v, m->to_name ? m->to_name : "", to_addr);
	message_cat(out, "To: ", v.data, "\r\n");
	buf_free(&v);
	message_header(out, "Subject", m->subject);
	message_header(out, "Message-ID", m->message_id);
	if (m->reply_to && *m->reply_to)
		message_cat(out, "Reply-To: ", reply_addr, "\r\n");
	if (m->in_reply_to && *m->in_reply_to)
		message_header(out, "In-Reply-To", m->in_reply_to);
	if (m->references && *m->references)
		message_header(out, "References", m->references);
	if (m->unsubscribe_url && *m->unsubscribe_url) {
		struct buf lu;
		buf_init(&lu);
		message_cat(&lu, "<", m->unsubscribe_url, ">");
		if (m->unsubscribe_mailto && *m->unsubscribe_mailto)
			message_cat(&lu, ", <", m->unsubscribe_mailto, ">");
		message_header(out, "List-Unsubscribe", lu.data);
		buf_free(&lu);
		buf_adds(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
	}
	buf_adds(out, "MIME-Version: 1.0\r\n");
	if (!m->html) {
		buf_adds(out, "Content-Type: text/plain; charset=utf-8\r\n"
			      "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
		message_qp_encode(out, m->text);
		return 0;
	}
	memcpy(boundary, "=_dripd_", 8);
	util_random_hex(boundary + 8, 12);
	message_cat(out, "Content-Type: multipart/alternative; boundary=\"", boundary,
		    "\"\r\n\r\n");
	/* Text first, HTML last: readers show the last part they can (RFC 2046 5.1.4). */
	message_part(out, boundary, "text/plain", m->text);
	message_part(out, boundary, "text/html", m->html);
	message_cat(out, "--", boundary, "--\r\n");
	return 0;
}
