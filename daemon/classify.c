/* classify.c - pure: one raw inbound message -> reply, auto-reply, bounce (DSN), complaint. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dripd/classify.h"
#include "dripd/util.h"
#include "dripd/error.h"

/*
 * DESIGN. Everything here works on bounded views of the caller's bytes and on fixed buffers
 * inside one context on the stack: no allocation, no recursion deeper than
 * CLASSIFY_MAX_DEPTH, no more than CLASSIFY_MAX_PARTS parts looked at, every copy truncated
 * to its buffer. Header values are unfolded on copy; MIME parts are found by their boundary
 * lines; transfer encodings (base64, quoted-printable) and Latin-1 charsets are decoded into
 * one text buffer, which the return-date reader and the excerpt read. Words are compared after
 * folding to lower-case ASCII (é -> e, ß -> ss), so "Dezember", "décembre" and "DECEMBRE"
 * meet the same table entry.
 */

#define CLASSIFY_MAX_DEPTH 8
#define CLASSIFY_MAX_PARTS 64
#define CLASSIFY_TEXT_MAX 32768
#define CLASSIFY_HDR_MAX 2048

struct cl_view {
	const char *p;
	size_t len;
};

struct cl_ctx {
	struct classify_result *out;
	int parts;
	bool dsn_seen, arf_seen;
	int dsn_class; /* 5, 4 or 0 */
	char text[CLASSIFY_TEXT_MAX];
	size_t textlen;
	bool text_html;
	char orig_to[CLASSIFY_ADDR_MAX];
	char arf_rcpt[CLASSIFY_ADDR_MAX];
	char feedback_type[32];
};

/* ---- small string helpers -------------------------------------------------------------- */

static char cl_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool cl_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void cl_copy(char *dst, size_t dstlen, const char *src, size_t n)
{
	if (!dstlen)
		return;
	if (n >= dstlen)
		n = dstlen - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Whether [p, p+n) starts with the NUL-terminated `s`, ignoring ASCII case. */
static bool cl_prefix(const char *p, size_t n, const char *s)
{
	size_t k = strlen(s);
	return n >= k && strncasecmp(p, s, k) == 0;
}

/* The first occurrence of `needle` (lower case) in [p, p+n), case-insensitively, or NULL. */
static const char *cl_find(const char *p, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; k && i + k <= n; i++)
		if (cl_lower(p[i]) == needle[0] && strncasecmp(p + i, needle, k) == 0)
			return p + i;
	return NULL;
}

static void cl_trim(char *s)
{
	size_t n = strlen(s), i = 0;
	while (n && cl_space(s[n - 1]))
		s[--n] = '\0';
	while (cl_space(s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

/* ---- headers --------------------------------------------------------------------------- */

/* Splits an entity into its header block and body at the first empty line. */
static void cl_split(struct cl_view e, struct cl_view *h, struct cl_view *b, bool *has_body)
{
	size_t i = 0;
	*has_body = false;
	h->p = e.p;
	h->len = e.len;
	b->p = e.p + e.len;
	b->len = 0;
	while (i < e.len) {
		size_t j = i;
		while (j < e.len && e.p[j] != '\n')
			j++;
		size_t linelen = j - i;
		if (linelen == 0 || (linelen == 1 && e.p[i] == '\r')) {
			h->len = i;
			size_t start = j < e.len ? j + 1 : e.len;
			b->p = e.p + start;
			b->len = e.len - start;
			*has_body = true;
			return;
		}
		i = j + 1;
	}
}

/*
 * Copies the value of the nth (from 0) header `name` of the block, unfolded, controls and
 * NUL bytes as spaces, trimmed. Whether it was found.
 */
static bool cl_header(struct cl_view h, const char *name, int nth, char *out, size_t outlen)
{
	size_t k = strlen(name), i = 0;
	out[0] = '\0';
	while (i < h.len) {
		size_t j = i;
		while (j < h.len && h.p[j] != '\n')
			j++;
		if (j - i > k && h.p[i + k] == ':' && strncasecmp(h.p + i, name, k) == 0 &&
		    nth-- == 0) {
			size_t o = 0;
			size_t s = i + k + 1;
			for (;;) {
				for (size_t x = s; x < j && o + 1 < outlen; x++) {
					char c = h.p[x];
					out[o++] = (unsigned char)c < 0x20 || c == 0x7f ? ' ' : c;
				}
				/* A continuation line starts with a space or a tab. */
				if (j + 1 < h.len && (h.p[j + 1] == ' ' || h.p[j + 1] == '\t')) {
					/* Folding white space unfolds to one space. */
					while (o && out[o - 1] == ' ')
						o--;
					if (o + 1 < outlen)
						out[o++] = ' ';
					s = j + 1;
					while (s < h.len && (h.p[s] == ' ' || h.p[s] == '\t'))
						s++;
					j = s;
					while (j < h.len && h.p[j] != '\n')
						j++;
					continue;
				}
				break;
			}
			out[o] = '\0';
			cl_trim(out);
			return true;
		}
		i = j + 1;
	}
	return false;
}

/* The media type of a Content-Type value, lower case, into out ("" when none). */
static void cl_media_type(const char *v, char *out, size_t outlen)
{
	size_t o = 0;
	while (cl_space(*v))
		v++;
	for (; *v && *v != ';' && !cl_space(*v) && o + 1 < outlen; v++)
		out[o++] = cl_lower(*v);
	out[o] = '\0';
}

/* A parameter of a structured header value (boundary, charset, report-type). */
static bool cl_param(const char *v, const char *name, char *out, size_t outlen)
{
	size_t k = strlen(name);
	out[0] = '\0';
	for (const char *p = strchr(v, ';'); p; p = strchr(p + 1, ';')) {
		const char *q = p + 1;
		while (cl_space(*q))
			q++;
		if (strncasecmp(q, name, k) != 0)
			continue;
		q += k;
		while (cl_space(*q))
			q++;
		if (*q != '=')
			continue;
		q++;
		while (cl_space(*q))
			q++;
		size_t o = 0;
		if (*q == '"') {
			for (q++; *q && *q != '"' && o + 1 < outlen; q++) {
				if (*q == '\\' && q[1])
					q++;
				out[o++] = *q;
			}
		} else {
			for (; *q && *q != ';' && !cl_space(*q) && o + 1 < outlen; q++)
				out[o++] = *q;
		}
		out[o] = '\0';
		return o > 0;
	}
	return false;
}

/* The address of an address header ("Name <a@b>" or "a@b"), lower case; "" if none. */
static void cl_address(const char *v, char *out, size_t outlen)
{
	const char *lt = strrchr(v, '<');
	const char *s = NULL, *e = NULL;
	out[0] = '\0';
	if (lt) {
		s = lt + 1;
		e = strchr(s, '>');
		if (!e)
			e = s + strlen(s);
	} else {
		const char *at = strchr(v, '@');
		if (!at)
			return;
		s = at;
		while (s > v && !cl_space(s[-1]) && s[-1] != ',' && s[-1] != ':' && s[-1] != '"')
			s--;
		e = at;
		while (*e && !cl_space(*e) && *e != ',' && *e != ';' && *e != '>' && *e != '"')
			e++;
	}
	size_t o = 0;
	for (const char *p = s; p < e && o + 1 < outlen; p++) {
		if (cl_space(*p))
			continue;
		out[o++] = cl_lower(*p);
	}
	out[o] = '\0';
	if (!strchr(out, '@') || out[0] == '@')
		out[0] = '\0';
}

/* Every <msg-id> of a header value, appended to the result's refs. */
static void cl_add_ids(struct classify_result *r, const char *v)
{
	for (const char *p = strchr(v, '<'); p && r->nrefs < CLASSIFY_REFS_MAX;
	     p = strchr(p + 1, '<')) {
		const char *e = strchr(p, '>');
		if (!e)
			return;
		if ((size_t)(e - p + 1) < CLASSIFY_ID_MAX && memchr(p, '@', (size_t)(e - p)))
			cl_copy(r->refs[r->nrefs++], CLASSIFY_ID_MAX, p, (size_t)(e - p + 1));
		p = e;
	}
}

/* reply+TOKEN@ and bounce+TOKEN@ local parts in a header value. */
static void cl_add_tokens(struct classify_result *r, const char *v)
{
	static const struct {
		const char *prefix;
		char kind;
	} kinds[] = { { "reply+", 'r' }, { "bounce+", 'b' } };
	for (const char *p = v; *p; p++) {
		if (p != v && !strchr("<\t ,:\"", p[-1]))
			continue;
		for (size_t k = 0; k < 2; k++) {
			size_t n = strlen(kinds[k].prefix);
			if (strncasecmp(p, kinds[k].prefix, n) != 0)
				continue;
			const char *t = p + n, *e = t;
			while ((*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z') ||
			       (*e >= '0' && *e <= '9'))
				e++;
			if (*e != '@' || e == t || (size_t)(e - t) >= CLASSIFY_TOKEN_LEN)
				continue;
			bool dup = false;
			for (size_t i = 0; i < r->ntokens; i++)
				dup |= r->tokens[i].kind == kinds[k].kind &&
				       strlen(r->tokens[i].token) == (size_t)(e - t) &&
				       strncasecmp(r->tokens[i].token, t, (size_t)(e - t)) == 0;
			if (!dup && r->ntokens < CLASSIFY_TOKENS_MAX) {
				r->tokens[r->ntokens].kind = kinds[k].kind;
				cl_copy(r->tokens[r->ntokens].token, CLASSIFY_TOKEN_LEN, t,
					(size_t)(e - t));
				r->ntokens++;
			}
		}
	}
}

static void cl_scan_tokens(struct classify_result *r, struct cl_view h)
{
	static const char *const names[] = { "To",
					     "Cc",
					     "Delivered-To",
					     "X-Original-To",
					     "Envelope-To",
					     "X-Envelope-To",
					     "Return-Path",
					     "Reply-To",
					     NULL };
	char v[CLASSIFY_HDR_MAX];
	for (size_t i = 0; names[i]; i++)
		for (int n = 0; n < 8 && cl_header(h, names[i], n, v, sizeof(v)); n++)
			cl_add_tokens(r, v);
}

/* ---- decoding -------------------------------------------------------------------------- */

static int cl_b64(unsigned char c)
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

/* Appends one byte as UTF-8, converting from Latin-1 when `latin1`. */
static size_t cl_put(char *out, size_t o, size_t outlen, unsigned char c, bool latin1)
{
	if (latin1 && c >= 0x80) {
		if (o + 2 < outlen) {
			out[o++] = (char)(0xc0 | (c >> 6));
			out[o++] = (char)(0x80 | (c & 0x3f));
		}
		return o;
	}
	if (o + 1 < outlen)
		out[o++] = (char)c;
	return o;
}

/* Decodes a body in transfer encoding `cte` ("base64", "quoted-printable", else as is),
 * appending to out; returns the new length. In `q_words` mode underscores are spaces
 * (RFC 2047 Q). */
static size_t cl_decode(const char *p, size_t n, const char *cte, bool latin1, bool q_words,
			char *out, size_t o, size_t outlen)
{
	if (strcasecmp(cte, "base64") == 0 || strcasecmp(cte, "b") == 0) {
		unsigned acc = 0;
		int bits = 0;
		for (size_t i = 0; i < n; i++) {
			int v = cl_b64((unsigned char)p[i]);
			if (v < 0)
				continue;
			acc = (acc << 6) | (unsigned)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				o = cl_put(out, o, outlen, (unsigned char)(acc >> bits), latin1);
				acc &= (1u << bits) - 1;
			}
		}
	} else if (strcasecmp(cte, "quoted-printable") == 0 || strcasecmp(cte, "q") == 0) {
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c == '=' && i + 1 < n && (p[i + 1] == '\n' || p[i + 1] == '\r')) {
				i += p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n' ? 2 : 1;
				continue;
			}
			if (c == '=' && i + 2 < n && util_hex_value((unsigned char)p[i + 1]) >= 0 &&
			    util_hex_value((unsigned char)p[i + 2]) >= 0) {
				c = (unsigned char)(util_hex_value((unsigned char)p[i + 1]) * 16 +
						    util_hex_value((unsigned char)p[i + 2]));
				i += 2;
			} else if (q_words && c == '_') {
				c = ' ';
			}
			o = cl_put(out, o, outlen, c, latin1);
		}
	} else {
		for (size_t i = 0; i < n; i++)
			o = cl_put(out, o, outlen, (unsigned char)p[i], latin1);
	}
	if (o < outlen)
		out[o] = '\0';
	return o;
}

static bool cl_latin1(const char *charset)
{
	return cl_find(charset, strlen(charset), "8859") ||
	       cl_find(charset, strlen(charset), "1252") ||
	       cl_find(charset, strlen(charset), "latin");
}

/* Replaces invalid UTF-8 and control characters (except LF) in place, so the text can go
 * into JSON and a terminal. */
static void cl_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s;
	while (*p) {
		size_t n = 0;
		if (*p < 0x80)
			n = 1;
		else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
			n = 2;
		else if ((*p & 0xf0) == 0xe0)
			n = 3;
		else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
			n = 4;
		bool ok = n > 0;
		for (size_t i = 1; ok && i < n; i++)
			ok = (p[i] & 0xc0) == 0x80;
		if (!ok) {
			*p++ = '?';
			continue;
		}
		if (n == 1 && ((*p < 0x20 && *p != '\n') || *p == 0x7f))
			*p = ' ';
		p += n;
	}
}

/* RFC 2047: decodes encoded words of a header value into out (UTF-8). */
static void cl_decode_words(const char *v, char *out, size_t outlen)
{
	size_t o = 0;
	bool last_word = false;
	const char *p = v;
	while (*p && o + 1 < outlen) {
		if (p[0] == '=' && p[1] == '?') {
			const char *cs = p + 2, *q1 = strchr(cs, '?');
			const char *q2 = q1 ? strchr(q1 + 1, '?') : NULL;
			const char *end = q2 ? strstr(q2 + 1, "?=") : NULL;
			if (q1 && q2 && end && q2 == q1 + 2) {
				char charset[40], enc[2] = { q1[1], '\0' };
				cl_copy(charset, sizeof(charset), cs, (size_t)(q1 - cs));
				o = cl_decode(q2 + 1, (size_t)(end - q2 - 1), enc,
					      cl_latin1(charset), true, out, o, outlen);
				p = end + 2;
				last_word = true;
				continue;
			}
		}
		if (last_word && cl_space(*p)) {
			/* Whitespace between two encoded words is dropped. */
			const char *s = p;
			while (cl_space(*s))
				s++;
			if (s[0] == '=' && s[1] == '?') {
				p = s;
				continue;
			}
		}
		last_word = false;
		out[o++] = *p++;
	}
	out[o < outlen ? o : outlen - 1] = '\0';
	cl_sanitize(out);
}

/*
 * Folds UTF-8 text to lower-case ASCII for matching: accented Latin letters lose their
 * accents, ß becomes ss, º ª ° vanish (1º -> 1), dashes become '-', anything else non-ASCII a
 * space. out has room for outlen bytes; returns the length written.
 */
static size_t cl_fold(const char *in, size_t n, char *out, size_t outlen)
{
	static const char latin[64][3] = {
		"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
		"d", "n", "o", "o", "o", "o", "o",  " ", "o", "u", "u", "u", "u", "y", " ", "ss",
		"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
		"d", "n", "o", "o", "o", "o", "o",  " ", "o", "u", "u", "u", "u", "y", " ", "y",
	};
	size_t o = 0;
	for (size_t i = 0; i < n && o + 3 < outlen;) {
		unsigned char c = (unsigned char)in[i];
		if (c < 0x80) {
			out[o++] = c == '\0' ? ' ' : cl_lower((char)c);
			i++;
			continue;
		}
		unsigned cp = 0;
		size_t k = (c & 0xe0) == 0xc0   ? 2
			   : (c & 0xf0) == 0xe0 ? 3
			   : (c & 0xf8) == 0xf0 ? 4
						: 1;
		bool valid = k > 1 && i + k <= n;
		for (size_t j = 1; valid && j < k; j++)
			valid = ((unsigned char)in[i + j] & 0xc0) == 0x80;
		if (!valid) {
			/* Not UTF-8: read the byte as Latin-1. */
			const char *rep = c >= 0xc0 ? latin[c - 0xc0] : " ";
			for (; *rep; rep++)
				out[o++] = *rep;
			i++;
			continue;
		}
		cp = c & (0x7f >> k);
		for (size_t j = 1; j < k; j++)
			cp = (cp << 6) | ((unsigned char)in[i + j] & 0x3f);
		i += k;
		const char *rep = " ";
		if (cp >= 0xc0 && cp <= 0xff)
			rep = latin[cp - 0xc0];
		else if (cp == 0xba || cp == 0xaa || cp == 0xb0)
			rep = "";
		else if (cp == 0x2013 || cp == 0x2014 || cp == 0x2010 || cp == 0x2011)
			rep = "-";
		else if (cp == 0x2019)
			rep = "'";
		for (; *rep; rep++)
			out[o++] = *rep;
	}
	out[o] = '\0';
	return o;
}

/* ---- dates ----------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t cl_days(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void cl_civil(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static bool cl_valid_date(int64_t y, int m, int d)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	return !(m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
}

static const struct {
	const char *name;
	int month;
} cl_months[] = {
	/* en */
	{ "january", 1 },
	{ "jan", 1 },
	{ "february", 2 },
	{ "feb", 2 },
	{ "march", 3 },
	{ "mar", 3 },
	{ "april", 4 },
	{ "apr", 4 },
	{ "may", 5 },
	{ "june", 6 },
	{ "jun", 6 },
	{ "july", 7 },
	{ "jul", 7 },
	{ "august", 8 },
	{ "aug", 8 },
	{ "september", 9 },
	{ "sept", 9 },
	{ "sep", 9 },
	{ "october", 10 },
	{ "oct", 10 },
	{ "november", 11 },
	{ "nov", 11 },
	{ "december", 12 },
	{ "dec", 12 },
	/* de */
	{ "januar", 1 },
	{ "janner", 1 },
	{ "februar", 2 },
	{ "marz", 3 },
	{ "maerz", 3 },
	{ "mai", 5 },
	{ "juni", 6 },
	{ "juli", 7 },
	{ "oktober", 10 },
	{ "okt", 10 },
	{ "dezember", 12 },
	{ "dez", 12 },
	/* fr */
	{ "janvier", 1 },
	{ "janv", 1 },
	{ "fevrier", 2 },
	{ "fevr", 2 },
	{ "fev", 2 },
	{ "mars", 3 },
	{ "avril", 4 },
	{ "avr", 4 },
	{ "juin", 6 },
	{ "juillet", 7 },
	{ "juil", 7 },
	{ "aout", 8 },
	{ "septembre", 9 },
	{ "octobre", 10 },
	{ "novembre", 11 },
	{ "decembre", 12 },
	/* es */
	{ "enero", 1 },
	{ "ene", 1 },
	{ "febrero", 2 },
	{ "marzo", 3 },
	{ "abril", 4 },
	{ "mayo", 5 },
	{ "junio", 6 },
	{ "julio", 7 },
	{ "agosto", 8 },
	{ "septiembre", 9 },
	{ "setiembre", 9 },
	{ "octubre", 10 },
	{ "noviembre", 11 },
	{ "diciembre", 12 },
	{ "dic", 12 },
	/* nl */
	{ "januari", 1 },
	{ "februari", 2 },
	{ "maart", 3 },
	{ "mrt", 3 },
	{ "mei", 5 },
	{ "augustus", 8 },
	/* pt */
	{ "janeiro", 1 },
	{ "fevereiro", 2 },
	{ "marco", 3 },
	{ "maio", 5 },
	{ "junho", 6 },
	{ "julho", 7 },
	{ "setembro", 9 },
	{ "outubro", 10 },
	{ "novembro", 11 },
	{ "dezembro", 12 },
};

/* 0 = Monday … 6 = Sunday. */
static const struct {
	const char *name;
	int wday;
} cl_wdays[] = {
	{ "monday", 0 },    { "tuesday", 1 },   { "wednesday", 2 },  { "thursday", 3 },
	{ "friday", 4 },    { "saturday", 5 },  { "sunday", 6 },     { "montag", 0 },
	{ "dienstag", 1 },  { "mittwoch", 2 },  { "donnerstag", 3 }, { "freitag", 4 },
	{ "samstag", 5 },   { "sonnabend", 5 }, { "sonntag", 6 },    { "lundi", 0 },
	{ "mardi", 1 },     { "mercredi", 2 },  { "jeudi", 3 },      { "vendredi", 4 },
	{ "samedi", 5 },    { "dimanche", 6 },  { "lunes", 0 },      { "martes", 1 },
	{ "miercoles", 2 }, { "jueves", 3 },    { "viernes", 4 },    { "sabado", 5 },
	{ "domingo", 6 },   { "maandag", 0 },   { "dinsdag", 1 },    { "woensdag", 2 },
	{ "donderdag", 3 }, { "vrijdag", 4 },   { "zaterdag", 5 },   { "zondag", 6 },
	{ "segunda", 0 },   { "terca", 1 },     { "quarta", 2 },     { "quinta", 3 },
	{ "sexta", 4 },
};

/* Ordinal suffixes a day number may carry: 1st 2nd 3rd 4th, 1er 1re, 1e 2de 8ste, 1o. */
static const char *const cl_ordinals[] = { "st", "nd", "rd",  "th", "er", "re",
					   "e",  "de", "ste", "o",  "a",  NULL };

enum cl_tok_type { CL_NUM, CL_WORD, CL_PUNCT };

struct cl_tok {
	enum cl_tok_type type;
	bool space_before; /* whitespace separates it from the token before */
	bool ordinal; /* a number with an ordinal suffix */
	int digits;
	int64_t num;
	char word[16]; /* words (truncated), or the punctuation character */
};

static int cl_month(const struct cl_tok *t)
{
	if (t->type != CL_WORD)
		return 0;
	for (size_t i = 0; i < sizeof(cl_months) / sizeof(cl_months[0]); i++)
		if (strcmp(t->word, cl_months[i].name) == 0)
			return cl_months[i].month;
	return 0;
}

static int cl_wday(const struct cl_tok *t)
{
	if (t->type != CL_WORD)
		return -1;
	for (size_t i = 0; i < sizeof(cl_wdays) / sizeof(cl_wdays[0]); i++)
		if (strcmp(t->word, cl_wdays[i].name) == 0)
			return cl_wdays[i].wday;
	return -1;
}

static bool cl_is_word(const struct cl_tok *t, const char *w)
{
	return t->type == CL_WORD && strcmp(t->word, w) == 0;
}

static bool cl_is_punct(const struct cl_tok *t, char c, bool tight)
{
	return t->type == CL_PUNCT && t->word[0] == c && (!tight || !t->space_before);
}

/* Splits folded text into numbers, words and punctuation. Returns the count. */
static size_t cl_tokenize(const char *s, struct cl_tok *toks, size_t max)
{
	size_t n = 0;
	bool space = true;
	while (*s && n < max) {
		if (cl_space(*s)) {
			space = true;
			s++;
			continue;
		}
		struct cl_tok *t = &toks[n];
		memset(t, 0, sizeof(*t));
		t->space_before = space;
		space = false;
		if (*s >= '0' && *s <= '9') {
			const char *e = s;
			while (*e >= '0' && *e <= '9')
				e++;
			const char *w = e;
			while (*w >= 'a' && *w <= 'z')
				w++;
			t->type = CL_NUM;
			t->digits = (int)(e - s);
			for (const char *p = s; p < e && p - s < 9; p++)
				t->num = t->num * 10 + (*p - '0');
			if (w > e) {
				bool ord = false;
				for (size_t i = 0; cl_ordinals[i]; i++)
					ord |= (size_t)(w - e) == strlen(cl_ordinals[i]) &&
					       strncmp(e, cl_ordinals[i], (size_t)(w - e)) == 0;
				if (!ord) {
					/* 12h30, 3x, a reference number: a word, not a day. */
					t->type = CL_WORD;
					cl_copy(t->word, sizeof(t->word), s, (size_t)(w - s));
				}
				t->ordinal = ord;
			}
			s = w;
		} else if (*s >= 'a' && *s <= 'z') {
			const char *e = s;
			while (*e >= 'a' && *e <= 'z')
				e++;
			t->type = CL_WORD;
			cl_copy(t->word, sizeof(t->word), s, (size_t)(e - s));
			s = e;
		} else {
			t->type = CL_PUNCT;
			t->word[0] = *s++;
		}
		n++;
	}
	return n;
}

/* Which language the text reads as, for the order of numeric dates: "en" or "". */
static bool cl_english(const struct cl_tok *t, size_t n)
{
	static const char *const en[] = { "the",    "i",  "am",  "will", "be",     "back", "until",
					  "office", "my", "and", "with", "return", NULL };
	static const char *const other[] = { "ich", "bin", "der",    "und",   "je",  "suis",
					     "le",  "et",  "estoy",  "el",    "y",   "ik",
					     "ben", "het", "en",     "estou", "o",   "e",
					     "de",  "la",  "zuruck", "vom",   "bis", NULL };
	int ne = 0, no = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i].type != CL_WORD)
			continue;
		for (size_t k = 0; en[k]; k++)
			ne += strcmp(t[i].word, en[k]) == 0;
		for (size_t k = 0; other[k]; k++)
			no += strcmp(t[i].word, other[k]) == 0;
	}
	return ne > no;
}

/* Resolves a date without a year: the first one on or after a week before `refday`. */
static int64_t cl_no_year(int64_t refday, int m, int d)
{
	int64_t y;
	int rm, rd;
	cl_civil(refday, &y, &rm, &rd);
	for (int k = 0; k < 2; k++, y++) {
		if (!cl_valid_date(y, m, d))
			continue;
		int64_t z = cl_days(y, m, d);
		if (z >= refday - 7)
			return z;
	}
	return cl_valid_date(y, m, d) ? cl_days(y, m, d) : -1;
}

static int64_t cl_year(const struct cl_tok *t)
{
	if (t->type != CL_NUM || t->ordinal)
		return -1;
	if (t->digits == 4 && t->num >= 1970 && t->num <= 2200)
		return t->num;
	return -1;
}

int classify_return_date(const char *text, size_t len, int64_t ref, const char *locale,
			 int64_t *out)
{
	char f[CLASSIFY_TEXT_MAX];
	struct cl_tok *t = NULL;
	struct cl_tok tbuf[1024];
	if (len > CLASSIFY_TEXT_MAX - 8)
		len = CLASSIFY_TEXT_MAX - 8;
	cl_fold(text, len, f, sizeof(f));
	t = tbuf;
	size_t n = cl_tokenize(f, t, sizeof(tbuf) / sizeof(tbuf[0]));
	int64_t refday = ref >= 0 ? ref / 86400 : -1 - (-ref - 1) / 86400;
	bool month_first;
	if (locale && *locale)
		month_first = strncasecmp(locale, "en-us", 5) == 0 ||
			      (strcasecmp(locale, "en") == 0 && cl_english(t, n));
	else
		month_first = cl_english(t, n);

	int64_t best = -1;
	int wday = -1;
	for (size_t i = 0; i < n; i++) {
		int64_t z = -1;
		size_t used = 0;
		/* Numeric: D.M[.[YYYY]] D/M[/Y] ISO YYYY-MM-DD, D-M-YYYY, all without spaces. */
		if (t[i].type == CL_NUM && !t[i].ordinal && i + 2 < n &&
		    t[i + 1].type == CL_PUNCT && !t[i + 1].space_before &&
		    strchr("./-", t[i + 1].word[0]) && t[i + 2].type == CL_NUM &&
		    !t[i + 2].space_before && !t[i + 2].ordinal) {
			char sep = t[i + 1].word[0];
			bool has3 = i + 4 < n && cl_is_punct(&t[i + 3], sep, true) &&
				    t[i + 4].type == CL_NUM && !t[i + 4].space_before;
			int64_t a = t[i].num, b = t[i + 2].num, y = -1;
			if (has3) {
				int64_t c = t[i + 4].num;
				if (t[i].digits == 4 && sep == '-') {
					/* ISO 8601: year-month-day. */
					if (cl_valid_date(a, (int)b, (int)c))
						z = cl_days(a, (int)b, (int)c);
					used = 5;
					goto found;
				}
				y = t[i + 4].digits == 2 ? 2000 + c : t[i + 4].digits == 4 ? c : -1;
				used = 5;
			} else if (sep != '-' && t[i].digits <= 2 && t[i + 2].digits <= 2) {
				used = 3;
			} else {
				goto textual;
			}
			if (t[i].digits > 2 || t[i + 2].digits > 2)
				goto textual;
			int64_t d = a, m = b;
			if (sep == '.')
				; /* D.M is day first everywhere it is written */
			else if (a > 12 && b <= 12)
				d = a, m = b;
			else if (b > 12 && a <= 12)
				d = b, m = a;
			else if (month_first)
				d = b, m = a;
			if (has3 && y < 0)
				goto textual;
			if (y < 0)
				z = cl_no_year(refday, (int)m, (int)d);
			else if (cl_valid_date(y, (int)m, (int)d))
				z = cl_days(y, (int)m, (int)d);
			goto found;
		}
	textual:
		used = 0;
		/* Day first: 12 December, 12. Dezember, 12 de diciembre, 12th of December. */
		if (t[i].type == CL_NUM && t[i].digits <= 2 && t[i].num >= 1 && t[i].num <= 31) {
			size_t j = i + 1;
			if (j < n && cl_is_punct(&t[j], '.', true))
				j++;
			if (j < n && (cl_is_word(&t[j], "de") || cl_is_word(&t[j], "of") ||
				      cl_is_word(&t[j], "del")))
				j++;
			int m = j < n ? cl_month(&t[j]) : 0;
			if (m) {
				j++;
				if (j < n && cl_is_punct(&t[j], '.', true))
					j++;
				size_t k = j;
				if (k < n && (cl_is_punct(&t[k], ',', false) ||
					      cl_is_word(&t[k], "de") || cl_is_word(&t[k], "del")))
					k++;
				int64_t y = k < n ? cl_year(&t[k]) : -1;
				if (y > 0) {
					if (cl_valid_date(y, m, (int)t[i].num))
						z = cl_days(y, m, (int)t[i].num);
					used = k + 1 - i;
				} else {
					z = cl_no_year(refday, m, (int)t[i].num);
					used = j - i;
				}
				goto found;
			}
		}
		/* Month first: December 12, Dec. 12th, December the 12th, 2026. */
		if (cl_month(&t[i])) {
			int m = cl_month(&t[i]);
			size_t j = i + 1;
			if (j < n && cl_is_punct(&t[j], '.', true))
				j++;
			if (j < n && cl_is_word(&t[j], "the"))
				j++;
			if (j < n && t[j].type == CL_NUM && t[j].digits <= 2 && t[j].num >= 1 &&
			    t[j].num <= 31 &&
			    !(j + 1 < n && cl_is_punct(&t[j + 1], '.', true) && j + 2 < n &&
			      t[j + 2].type == CL_NUM && !t[j + 2].space_before)) {
				int d = (int)t[j].num;
				size_t k = j + 1;
				if (k < n && cl_is_punct(&t[k], ',', false))
					k++;
				int64_t y = k < n ? cl_year(&t[k]) : -1;
				if (y > 0) {
					if (cl_valid_date(y, m, d))
						z = cl_days(y, m, d);
					used = k + 1 - i;
				} else {
					z = cl_no_year(refday, m, d);
					used = j + 1 - i;
				}
				goto found;
			}
		}
		if (cl_wday(&t[i]) >= 0)
			wday = cl_wday(&t[i]);
		continue;
	found:
		if (z >= refday - 7 && z <= refday + 366 && z > best)
			best = z;
		if (used > 1)
			i += used - 1;
	}
	if (best < 0 && wday >= 0) {
		/* 1970-01-01 was a Thursday (3 with Monday as 0). */
		int64_t today = ((refday % 7) + 7 + 3) % 7;
		int64_t ahead = (wday - today + 7) % 7;
		best = refday + (ahead ? ahead : 7);
	}
	if (best < 0)
		return DRIP_ENOT_FOUND;
	*out = best * 86400;
	return 0;
}

/* ---- MIME walk ------------------------------------------------------------------------- */

/* A "Name: type; value" field of a report block (Final-Recipient: rfc822; a@b). */
static bool cl_field_addr(struct cl_view block, const char *name, char *out, size_t outlen)
{
	char v[CLASSIFY_HDR_MAX];
	out[0] = '\0';
	if (!cl_header(block, name, 0, v, sizeof(v)))
		return false;
	const char *semi = strchr(v, ';');
	cl_address(semi ? semi + 1 : v, out, outlen);
	return out[0] != '\0';
}

/* The per-recipient blocks of a message/delivery-status body: the first failed (or delayed)
 * recipient decides. */
static void cl_dsn(struct cl_ctx *c, struct cl_view body)
{
	struct classify_result *r = c->out;
	size_t i = 0;
	c->dsn_seen = true;
	while (i < body.len) {
		/* Blocks are separated by empty lines. */
		while (i < body.len && (body.p[i] == '\r' || body.p[i] == '\n'))
			i++;
		size_t s = i;
		while (i < body.len) {
			size_t j = i;
			while (j < body.len && body.p[j] != '\n')
				j++;
			bool empty = j == i || (j == i + 1 && body.p[i] == '\r');
			if (empty)
				break;
			i = j + 1;
		}
		struct cl_view blk = { body.p + s, (i < body.len ? i : body.len) - s };
		char action[32], status[32], addr[CLASSIFY_ADDR_MAX];
		if (!cl_header(blk, "Action", 0, action, sizeof(action)))
			continue;
		for (char *p = action; *p; p++)
			*p = cl_lower(*p);
		cl_header(blk, "Status", 0, status, sizeof(status));
		int cls = 0;
		if (strncmp(action, "failed", 6) == 0)
			cls = status[0] == '4' ? 4 : 5;
		else if (strncmp(action, "delayed", 7) == 0)
			cls = 4;
		if (!cls || c->dsn_class)
			continue;
		if (!cl_field_addr(blk, "Original-Recipient", addr, sizeof(addr)))
			cl_field_addr(blk, "Final-Recipient", addr, sizeof(addr));
		if (!addr[0])
			continue;
		c->dsn_class = cls;
		cl_copy(r->recipient, sizeof(r->recipient), addr, strlen(addr));
		size_t k = 0;
		while (status[k] && k + 1 < sizeof(r->status) &&
		       ((status[k] >= '0' && status[k] <= '9') || status[k] == '.'))
			k++;
		cl_copy(r->status, sizeof(r->status), status, k);
		char diag[CLASSIFY_HDR_MAX];
		if (cl_header(blk, "Diagnostic-Code", 0, diag, sizeof(diag))) {
			const char *semi = strchr(diag, ';');
			const char *d = semi ? semi + 1 : diag;
			while (cl_space(*d))
				d++;
			cl_copy(r->diagnostic, sizeof(r->diagnostic), d, strlen(d));
			cl_sanitize(r->diagnostic);
		}
	}
}

static void cl_arf(struct cl_ctx *c, struct cl_view body)
{
	char v[64];
	c->arf_seen = true;
	if (cl_header(body, "Feedback-Type", 0, v, sizeof(v))) {
		for (char *p = v; *p; p++)
			*p = cl_lower(*p);
		cl_copy(c->feedback_type, sizeof(c->feedback_type), v, strlen(v));
	}
	cl_field_addr(body, "Original-Rcpt-To", c->arf_rcpt, sizeof(c->arf_rcpt));
}

/* The returned message's headers, inside a report. */
static void cl_returned(struct cl_ctx *c, struct cl_view e)
{
	struct cl_view h, b;
	bool body;
	char v[CLASSIFY_HDR_MAX];
	cl_split(e, &h, &b, &body);
	if (!c->out->original_id[0] && cl_header(h, "Message-ID", 0, v, sizeof(v))) {
		char *lt = strchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;
		if (lt && gt)
			cl_copy(c->out->original_id, CLASSIFY_ID_MAX, lt, (size_t)(gt - lt + 1));
	}
	if (!c->orig_to[0] && cl_header(h, "To", 0, v, sizeof(v)))
		cl_address(v, c->orig_to, sizeof(c->orig_to));
	for (size_t i = 0; i < 3; i++) {
		static const char *const names[] = { "Return-Path", "Reply-To", "From" };
		if (cl_header(h, names[i], 0, v, sizeof(v)))
			cl_add_tokens(c->out, v);
	}
}

static void cl_walk(struct cl_ctx *c, struct cl_view e, int depth, bool in_report);

/* Calls cl_walk on each part of a multipart body. */
static void cl_multipart(struct cl_ctx *c, struct cl_view body, const char *boundary, int depth,
			 bool in_report)
{
	size_t blen = strlen(boundary);
	const char *part = NULL;
	size_t i = 0;
	while (i < body.len && c->parts < CLASSIFY_MAX_PARTS) {
		size_t j = i;
		while (j < body.len && body.p[j] != '\n')
			j++;
		if (j - i >= blen + 2 && body.p[i] == '-' && body.p[i + 1] == '-' &&
		    memcmp(body.p + i + 2, boundary, blen) == 0) {
			bool last = j - i >= blen + 4 && body.p[i + 2 + blen] == '-' &&
				    body.p[i + 3 + blen] == '-';
			if (part) {
				/* The CRLF before the boundary line belongs to the boundary. */
				const char *end = body.p + i;
				if (end > part && end[-1] == '\n')
					end--;
				if (end > part && end[-1] == '\r')
					end--;
				c->parts++;
				cl_walk(c, (struct cl_view){ part, (size_t)(end - part) },
					depth + 1, in_report);
			}
			if (last)
				return;
			part = j < body.len ? body.p + j + 1 : body.p + body.len;
		}
		i = j + 1;
	}
	if (part && c->parts < CLASSIFY_MAX_PARTS) {
		/* No closing boundary (broken MIME): the rest is the last part. */
		c->parts++;
		cl_walk(c, (struct cl_view){ part, (size_t)(body.p + body.len - part) }, depth + 1,
			in_report);
	}
}

static void cl_walk(struct cl_ctx *c, struct cl_view e, int depth, bool in_report)
{
	struct cl_view h, b;
	bool has_body;
	char ct[CLASSIFY_HDR_MAX], type[64], param[128], cte[32];
	if (depth > CLASSIFY_MAX_DEPTH)
		return;
	cl_split(e, &h, &b, &has_body);
	if (!cl_header(h, "Content-Type", 0, ct, sizeof(ct)))
		strcpy(ct, "text/plain");
	cl_media_type(ct, type, sizeof(type));
	if (!cl_header(h, "Content-Transfer-Encoding", 0, cte, sizeof(cte)))
		cte[0] = '\0';
	/* Broken MIME: a multipart with no boundary is read as the text it most likely is. */
	if (strncmp(type, "multipart/", 10) == 0 && !cl_param(ct, "boundary", param, sizeof(param)))
		strcpy(type, "text/plain");
	if (strncmp(type, "multipart/", 10) == 0) {
		bool report = strcmp(type, "multipart/report") == 0;
		cl_multipart(c, b, param, depth, in_report || report);
	} else if (strcmp(type, "message/delivery-status") == 0 ||
		   strcmp(type, "message/global-delivery-status") == 0) {
		if (in_report)
			cl_dsn(c, b);
	} else if (strcmp(type, "message/feedback-report") == 0) {
		if (in_report)
			cl_arf(c, b);
	} else if (strcmp(type, "message/rfc822") == 0 ||
		   strcmp(type, "text/rfc822-headers") == 0 ||
		   strcmp(type, "message/global") == 0 ||
		   strcmp(type, "message/global-headers") == 0) {
		if (in_report)
			cl_returned(c, b);
	} else if (strcmp(type, "text/plain") == 0 || strcmp(type, "text/html") == 0) {
		bool html = type[5] == 'h';
		if (c->textlen && !(c->text_html && !html))
			return;
		char charset[64] = "";
		cl_param(ct, "charset", charset, sizeof(charset));
		c->textlen = cl_decode(b.p, b.len, cte, cl_latin1(charset), false, c->text, 0,
				       sizeof(c->text));
		c->text[c->textlen < sizeof(c->text) ? c->textlen : sizeof(c->text) - 1] = '\0';
		c->text_html = html;
	}
}

/* Crude HTML to text: tags dropped (block ends become line breaks), common entities. */
static void cl_html_text(char *s)
{
	static const struct {
		const char *ent;
		char c;
	} ents[] = { { "&amp;", '&' },  { "&lt;", '<' },   { "&gt;", '>' },
		     { "&nbsp;", ' ' }, { "&quot;", '"' }, { "&#39;", '\'' } };
	char *o = s;
	for (char *p = s; *p;) {
		if (*p == '<') {
			char *e = strchr(p, '>');
			if (!e)
				break;
			if (cl_prefix(p, (size_t)(e - p), "<br") ||
			    cl_prefix(p, (size_t)(e - p), "</p") ||
			    cl_prefix(p, (size_t)(e - p), "</div") ||
			    cl_prefix(p, (size_t)(e - p), "<blockquote"))
				*o++ = '\n';
			if (cl_prefix(p, (size_t)(e - p), "<blockquote")) {
				/* Quoted text ends the new text. */
				break;
			}
			p = e + 1;
			continue;
		}
		bool done = false;
		for (size_t i = 0; !done && i < sizeof(ents) / sizeof(ents[0]); i++) {
			size_t k = strlen(ents[i].ent);
			if (strncmp(p, ents[i].ent, k) == 0) {
				*o++ = ents[i].c;
				p += k;
				done = true;
			}
		}
		if (!done)
			*o++ = *p == '\r' || *p == '\n' ? ' ' : *p, p++;
	}
	*o = '\0';
}

/* Whether a (folded) line starts the quoted part of a reply. */
static bool cl_quote_line(const char *line, size_t n)
{
	static const struct {
		const char *start, *end;
	} intro[] = { { "on ", "wrote:" },    { "am ", "schrieb:" },  { "le ", "a ecrit :" },
		      { "le ", "a ecrit:" },  { "el ", "escribio:" }, { "op ", "schreef:" },
		      { "em ", "escreveu:" }, { "on ", "wrote :" } };
	static const char *const starts[] = {
		">",     "-----original", "-----urspr", "-----message", "________", "from: ",
		"von: ", "de: ",          "van: ",      "sent from my", "-- ",      NULL
	};
	while (n && cl_space(line[n - 1]))
		n--;
	if (n == 2 && line[0] == '-' && line[1] == '-')
		return true;
	for (size_t i = 0; starts[i]; i++)
		if (cl_prefix(line, n, starts[i]))
			return true;
	for (size_t i = 0; i < sizeof(intro) / sizeof(intro[0]); i++) {
		size_t k = strlen(intro[i].end);
		if (cl_prefix(line, n, intro[i].start) && n >= k &&
		    strncmp(line + n - k, intro[i].end, k) == 0)
			return true;
	}
	return false;
}

/* The first lines of the new text of a reply, up to five of them. */
static void cl_excerpt(struct cl_ctx *c)
{
	char *out = c->out->excerpt;
	size_t o = 0, lines = 0;
	if (c->text_html)
		cl_html_text(c->text);
	cl_sanitize(c->text);
	for (char *p = c->text; *p && lines < 5;) {
		char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		char folded[256];
		cl_fold(p, n < 200 ? n : 200, folded, sizeof(folded));
		if (cl_quote_line(folded, strlen(folded)))
			break;
		while (n && cl_space(p[n - 1]))
			n--;
		if (n) {
			if (o && o + 1 < CLASSIFY_EXCERPT_MAX - 1)
				out[o++] = '\n';
			for (size_t i = 0; i < n && o + 1 < CLASSIFY_EXCERPT_MAX - 1; i++)
				out[o++] = p[i];
			lines++;
		}
		if (!e)
			break;
		p = e + 1;
	}
	/* Never end inside a UTF-8 sequence. */
	while (o && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
		o--;
	if (o && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
		o--;
	out[o] = '\0';
	cl_sanitize(out);
}

/* ---- verdicts -------------------------------------------------------------------------- */

static const char *const cl_ooo_subjects[] = {
	/* en */
	"out of office", "out of the office", "automatic reply", "auto reply", "autoreply",
	"auto-reply", "auto response", "autoresponse", "away from the office", "on vacation",
	"on holiday", "on leave", "annual leave", "away until",
	/* de */
	"abwesenheit", "abwesend", "automatische antwort", "nicht im buro", "nicht im haus",
	"urlaub", "out of office:",
	/* fr */
	"reponse automatique", "absence du bureau", "absent du bureau", "absente du bureau",
	"en conges", "en vacances", "message d'absence",
	/* es */
	"respuesta automatica", "fuera de la oficina", "fuera de oficina", "ausente",
	"de vacaciones", "respuesta de ausencia",
	/* nl */
	"afwezig", "automatisch antwoord", "automatisch bericht", "met vakantie", "niet op kantoor",
	/* pt */
	"resposta automatica", "ausente do escritorio", "fora do escritorio", "de ferias",
	"mensagem automatica", NULL
};

static bool cl_ooo_subject(const char *subject)
{
	char f[CLASSIFY_ADDR_MAX * 2];
	size_t n = cl_fold(subject, strlen(subject), f, sizeof(f));
	for (size_t i = 0; cl_ooo_subjects[i]; i++)
		if (cl_find(f, n, cl_ooo_subjects[i]))
			return true;
	return false;
}

/* An auto-reply by its headers: the reason into r->auto_reason, or false. */
static bool cl_auto_headers(struct classify_result *r, struct cl_view h)
{
	char v[128];
	if (cl_header(h, "Auto-Submitted", 0, v, sizeof(v)) && v[0] &&
	    strncasecmp(v, "no", 2) != 0) {
		strcpy(r->auto_reason, "Auto-Submitted");
		return true;
	}
	if (cl_header(h, "X-Autoreply", 0, v, sizeof(v)) ||
	    cl_header(h, "X-Autorespond", 0, v, sizeof(v)) ||
	    cl_header(h, "X-Autoresponder", 0, v, sizeof(v))) {
		strcpy(r->auto_reason, "X-Autoreply");
		return true;
	}
	if ((cl_header(h, "Precedence", 0, v, sizeof(v)) ||
	     cl_header(h, "X-Precedence", 0, v, sizeof(v))) &&
	    strncasecmp(v, "auto_reply", 10) == 0) {
		strcpy(r->auto_reason, "Precedence");
		return true;
	}
	return false;
}

/* Midnight UTC of the day a Date header names ("Tue, 1 Dec 2026 09:00:00 +0100"), or -1. */
static int64_t cl_date_header(const char *v)
{
	static const char *const mon[] = { "jan", "feb", "mar", "apr", "may", "jun",
					   "jul", "aug", "sep", "oct", "nov", "dec" };
	const char *p = strchr(v, ',');
	p = p ? p + 1 : v;
	while (cl_space(*p))
		p++;
	int d = 0, m = 0;
	long y = 0;
	while (*p >= '0' && *p <= '9' && d < 100)
		d = d * 10 + (*p++ - '0');
	while (cl_space(*p))
		p++;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(p, mon[i], 3) == 0)
			m = i + 1;
	while (*p && !cl_space(*p))
		p++;
	while (cl_space(*p))
		p++;
	while (*p >= '0' && *p <= '9' && y < 100000)
		y = y * 10 + (*p++ - '0');
	if (!cl_valid_date(y, m, d))
		return -1;
	return cl_days(y, m, d) * 86400;
}

/* A locale for numeric dates: Content-Language, else the sender's country domain. */
static void cl_locale(struct cl_view h, const char *from, char *out, size_t outlen)
{
	static const char *const day_first_tlds[] = {
		".uk", ".au", ".nz", ".ie", ".in", ".za", NULL
	};
	if (cl_header(h, "Content-Language", 0, out, outlen) && out[0])
		return;
	for (size_t i = 0; day_first_tlds[i]; i++) {
		size_t n = strlen(from), k = strlen(day_first_tlds[i]);
		if (n > k && strcmp(from + n - k, day_first_tlds[i]) == 0) {
			cl_copy(out, outlen, "en-GB", 5);
			return;
		}
	}
	out[0] = '\0';
}

void classify_message(const char *data, size_t len, int64_t now, struct classify_result *out)
{
	static const char *const bounce_senders[] = { "mailer-daemon@", "postmaster@", NULL };
	static const char *const bounce_subjects[] = { "undeliver",        "delivery status",
						       "returned mail",    "failure notice",
						       "delivery failure", "mail delivery failed",
						       "nondeliverable",   "non remis",
						       "unzustellbar",     NULL };
	struct cl_ctx *c = &(struct cl_ctx){ 0 };
	struct cl_view h, b;
	char v[CLASSIFY_HDR_MAX], type[64], rtype[64];
	memset(out, 0, sizeof(*out));
	c->out = out;
	struct cl_view e = { data, len };
	cl_split(e, &h, &b, &out->has_body);

	if (cl_header(h, "From", 0, v, sizeof(v)))
		cl_address(v, out->from, sizeof(out->from));
	if (cl_header(h, "Subject", 0, v, sizeof(v)))
		cl_decode_words(v, out->subject, sizeof(out->subject));
	if (cl_header(h, "Message-ID", 0, v, sizeof(v))) {
		char *lt = strchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;
		if (lt && gt && (size_t)(gt - lt + 1) < CLASSIFY_ID_MAX)
			cl_copy(out->message_id, CLASSIFY_ID_MAX, lt, (size_t)(gt - lt + 1));
	}
	if (cl_header(h, "In-Reply-To", 0, v, sizeof(v)))
		cl_add_ids(out, v);
	if (cl_header(h, "References", 0, v, sizeof(v))) {
		/* Newest last in the header; matched newest first. */
		struct classify_result tmp;
		tmp.nrefs = 0;
		cl_add_ids(&tmp, v);
		for (size_t i = tmp.nrefs; i-- > 0 && out->nrefs < CLASSIFY_REFS_MAX;)
			memcpy(out->refs[out->nrefs++], tmp.refs[i], CLASSIFY_ID_MAX);
	}
	cl_scan_tokens(out, h);

	if (!cl_header(h, "Content-Type", 0, v, sizeof(v)))
		v[0] = '\0';
	cl_media_type(v, type, sizeof(type));
	rtype[0] = '\0';
	cl_param(v, "report-type", rtype, sizeof(rtype));
	cl_walk(c, e, 0, false);

	char f[CLASSIFY_ADDR_MAX * 2];
	cl_fold(out->subject, strlen(out->subject), f, sizeof(f));
	cl_trim(f);
	out->unsubscribe = strncmp(f, "unsubscribe", 11) == 0 || strncmp(f, "abmelden", 8) == 0 ||
			   strncmp(f, "desinscri", 9) == 0 || strncmp(f, "baja", 4) == 0;

	if (strcasecmp(rtype, "delivery-status") == 0 && c->dsn_class) {
		out->kind = c->dsn_class == 5 ? CLASSIFY_BOUNCE : CLASSIFY_SOFT_BOUNCE;
		return;
	}
	if (strcasecmp(rtype, "feedback-report") == 0 && c->arf_seen &&
	    strcmp(c->feedback_type, "not-spam") != 0) {
		const char *rcpt = c->arf_rcpt[0] ? c->arf_rcpt : c->orig_to;
		cl_copy(out->recipient, sizeof(out->recipient), rcpt, strlen(rcpt));
		out->kind = CLASSIFY_COMPLAINT;
		return;
	}
	if (strcmp(type, "multipart/report") == 0) {
		/* A report we could not read (or one that reports success): never a reply. */
		out->kind = CLASSIFY_UNKNOWN;
		return;
	}
	if (cl_auto_headers(out, h) ||
	    (cl_ooo_subject(out->subject) && strcpy(out->auto_reason, "subject"))) {
		out->kind = CLASSIFY_AUTO_REPLY;
		int64_t ref = cl_header(h, "Date", 0, v, sizeof(v)) ? cl_date_header(v) : -1;
		if (ref < 0 || ref > now + 30 * 86400 || ref < now - 365 * 86400)
			ref = now;
		char loc[32];
		cl_locale(h, out->from, loc, sizeof(loc));
		if (c->text_html)
			cl_html_text(c->text);
		int64_t when;
		/* The subject may carry the date too ("Out of office until 12/12"). */
		char both[CLASSIFY_TEXT_MAX];
		int k = snprintf(both, sizeof(both), "%s\n%.*s", out->subject, (int)c->textlen,
				 c->text);
		if (k > 0 &&
		    classify_return_date(both, strnlen(both, sizeof(both)), ref, loc, &when) == 0)
			out->return_date = when;
		return;
	}
	for (size_t i = 0; bounce_senders[i]; i++)
		if (strncmp(out->from, bounce_senders[i], strlen(bounce_senders[i])) == 0) {
			out->kind = CLASSIFY_UNKNOWN;
			return;
		}
	for (size_t i = 0; bounce_subjects[i]; i++)
		if (cl_find(f, strlen(f), bounce_subjects[i])) {
			out->kind = CLASSIFY_UNKNOWN;
			return;
		}
	if (!out->from[0]) {
		out->kind = CLASSIFY_UNKNOWN;
		return;
	}
	out->kind = CLASSIFY_REPLY;
	cl_excerpt(c);
}

const char *classify_kind_name(enum classify_kind kind)
{
	switch (kind) {
	case CLASSIFY_REPLY:
		return "reply";
	case CLASSIFY_AUTO_REPLY:
		return "auto_reply";
	case CLASSIFY_BOUNCE:
		return "bounce";
	case CLASSIFY_SOFT_BOUNCE:
		return "soft_bounce";
	case CLASSIFY_COMPLAINT:
		return "complaint";
	case CLASSIFY_UNKNOWN:
		break;
	}
	return "unknown";
}

bool classify_free_mail(const char *domain)
{
	static const char *const free_mail[] = {
		"gmail.com",      "googlemail.com", "outlook.com",
		"hotmail.com",    "hotmail.co.uk",  "hotmail.fr",
		"hotmail.de",     "live.com",       "msn.com",
		"yahoo.com",      "yahoo.co.uk",    "yahoo.fr",
		"yahoo.de",       "yahoo.es",       "ymail.com",
		"aol.com",        "icloud.com",     "me.com",
		"mac.com",        "proton.me",      "protonmail.com",
		"gmx.de",         "gmx.net",        "gmx.com",
		"web.de",         "t-online.de",    "freenet.de",
		"orange.fr",      "free.fr",        "laposte.net",
		"wanadoo.fr",     "sfr.fr",         "libero.it",
		"virgilio.it",    "terra.com.br",   "uol.com.br",
		"bol.com.br",     "ziggo.nl",       "kpnmail.nl",
		"telefonica.net", "mail.ru",        "yandex.ru",
		"yandex.com",     "zoho.com",       "fastmail.com",
		"hey.com",        "tutanota.com",   "qq.com",
		"163.com",        "sapo.pt",        NULL
	};
	for (size_t i = 0; free_mail[i]; i++)
		if (strcasecmp(domain, free_mail[i]) == 0)
			return true;
	return false;
}
