/* fuzz_http.c - the tracking listener's HTTP request adapter (track_parser_*), fed as a socket would. */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/track.h"
#include "fuzz.h"

/*
 * The first two bytes seed how the rest is cut into reads. The stream is parsed twice: whole,
 * in one read with one parser, and cut into random reads with the daemon's own loop
 * (track_read_cb): a parser made for each request's first read and dropped between requests,
 * stopping at the first refused request or at one that does not keep the connection alive.
 * Both must give the same requests (a refused one refused both ways). Each request must stay within the limits of track.h,
 * name a status the listener knows, and a read that completes nothing must be used whole (the
 * daemon drops the rest of a read otherwise). Then two smuggling shapes are built around the
 * input's bytes: Content-Length with Transfer-Encoding, and two Content-Lengths, both refused.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_HTTP_MAX 64

struct seen {
	int status;
	enum track_method method;
	size_t path_len, body_len;
	bool keep_alive;
	uint32_t hash; /* of path, ua, xff, content type and body */
};

static uint32_t fuzz_hash(uint32_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return (h ^ 0xff) * 16777619u;
}

static void fuzz_check(const struct track_request *r)
{
	static const int known[] = { 0, 400, 413, 414, 431, 505 };
	bool ok = false;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		ok |= r->status == known[i];
	FUZZ_ASSERT(ok, "unknown status %d", r->status);
	FUZZ_ASSERT(r->path_len < TRACK_PATH_MAX && strlen(r->path) <= r->path_len,
		    "path of %zu bytes", r->path_len);
	FUZZ_ASSERT(r->body_len <= TRACK_BODY_MAX, "body of %zu bytes", r->body_len);
	FUZZ_ASSERT(strlen(r->ua) < TRACK_UA_MAX && strlen(r->xff) < TRACK_XFF_MAX &&
			    strlen(r->content_type) < TRACK_CTYPE_MAX,
		    "a header past its buffer");
	if (r->status)
		return;
	FUZZ_ASSERT(r->method <= TRACK_OTHER, "method %d", (int)r->method);
	FUZZ_ASSERT(r->path_len > 0, "a request with no URL");
}

static struct seen fuzz_seen(const struct track_request *r)
{
	struct seen s = {
		r->status, r->method, r->path_len, r->body_len, r->keep_alive, 2166136261u
	};
	if (r->status)
		return s; /* a refused request's fields are whatever had arrived */
	s.hash = fuzz_hash(s.hash, r->path, r->path_len);
	s.hash = fuzz_hash(s.hash, r->ua, strlen(r->ua));
	s.hash = fuzz_hash(s.hash, r->xff, strlen(r->xff));
	s.hash = fuzz_hash(s.hash, r->content_type, strlen(r->content_type));
	s.hash = fuzz_hash(s.hash, r->body, r->body_len);
	return s;
}

/* Feeds one read as track_read_cb does; false once the connection would be closed. */
static bool fuzz_read(struct track_parser **tp, const char *p, size_t left, struct seen *out,
		      size_t *n, bool drop_between)
{
	while (left > 0) {
		struct track_request *r;
		if (!*tp)
			*tp = track_parser_new();
		size_t used = track_parser_feed(*tp, p, left, &r);
		FUZZ_ASSERT(used <= left, "used %zu of %zu bytes", used, left);
		p += used;
		left -= used;
		if (!r) {
			FUZZ_ASSERT(left == 0, "%zu bytes of a read left unparsed", left);
			break;
		}
		fuzz_check(r);
		if (*n < FUZZ_HTTP_MAX)
			out[*n] = fuzz_seen(r);
		(*n)++;
		if (r->status || !r->keep_alive)
			return false;
		track_parser_next(*tp);
		FUZZ_ASSERT(!track_parser_started(*tp), "a fresh request already started");
	}
	if (drop_between && *tp && !track_parser_started(*tp)) {
		track_parser_free(*tp);
		*tp = NULL;
	}
	return true;
}

/* Parses `head` followed by a blank line; returns the first request's status (-1: none). */
static int fuzz_status(const char *head, size_t len)
{
	struct track_parser *tp = track_parser_new();
	struct track_request *r = NULL;
	size_t used = track_parser_feed(tp, head, len, &r);
	int status = r ? r->status : -1;
	(void)used;
	track_parser_free(tp);
	return status;
}

static void fuzz_smuggling(const uint8_t *data, size_t size)
{
	/* A header value from the input: no CR, LF or NUL, no leading or trailing blanks. */
	char value[64];
	size_t n = 0;
	for (size_t i = 0; i < size && n < sizeof(value) - 1; i++)
		if (data[i] != '\r' && data[i] != '\n' && data[i] != '\0')
			value[n++] = (char)data[i];
	while (n && (value[n - 1] == ' ' || value[n - 1] == '\t'))
		n--;
	size_t lead = 0;
	while (lead < n && (value[lead] == ' ' || value[lead] == '\t'))
		lead++;
	value[n] = '\0';
	const char *v = value + lead;
	if (!*v)
		return;
	char req[256];
	int len = snprintf(req, sizeof(req),
			   "POST /u/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
			   "Transfer-Encoding: %s\r\n\r\nabc",
			   v);
	int st = fuzz_status(req, (size_t)len);
	FUZZ_ASSERT(st == 400 || st == -1, "Content-Length with Transfer-Encoding \"%s\": %d", v,
		    st);
	len = snprintf(req, sizeof(req),
		       "POST /u/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: %s\r\n"
		       "Content-Length: 3\r\n\r\nabc",
		       v);
	st = fuzz_status(req, (size_t)len);
	FUZZ_ASSERT(st == 400 || st == -1, "Transfer-Encoding \"%s\" with Content-Length: %d", v,
		    st);
	if (!isdigit((unsigned char)*v))
		return;
	len = snprintf(req, sizeof(req),
		       "POST /u/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
		       "Content-Length: %s\r\n\r\nabc",
		       v);
	st = fuzz_status(req, (size_t)len);
	FUZZ_ASSERT(st != 0, "two Content-Lengths (3, \"%s\") accepted", v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint32_t rng = (uint32_t)data[0] << 8 | data[1] | 1u << 16;
	const char *in = (const char *)data + 2;
	size_t len = size - 2;

	struct seen whole[FUZZ_HTTP_MAX], cut[FUZZ_HTTP_MAX];
	size_t nwhole = 0, ncut = 0;
	struct track_parser *tp = NULL;
	fuzz_read(&tp, in, len, whole, &nwhole, false);
	track_parser_free(tp);

	tp = NULL;
	for (size_t off = 0; off < len;) {
		rng = rng * 1103515245u + 12345u;
		size_t step = (rng >> 16) % 4 == 0 ? (rng >> 8) % 300 + 1 : (rng >> 16) % 9 + 1;
		if (step > len - off)
			step = len - off;
		if (!fuzz_read(&tp, in + off, step, cut, &ncut, true))
			break;
		off += step;
	}
	track_parser_free(tp);

	FUZZ_ASSERT(nwhole == ncut, "%zu requests whole, %zu cut into reads", nwhole, ncut);
	for (size_t i = 0; i < nwhole && i < FUZZ_HTTP_MAX; i++) {
		/* Refused both ways; which limit is met first (414 or 400) may differ, as the
		 * parser reports a bad byte only once the piece holding it is complete. */
		FUZZ_ASSERT(!whole[i].status == !cut[i].status,
			    "request %zu: status %d whole, %d cut", i, whole[i].status,
			    cut[i].status);
		if (whole[i].status)
			continue;
		FUZZ_ASSERT(whole[i].method == cut[i].method &&
				    whole[i].path_len == cut[i].path_len &&
				    whole[i].body_len == cut[i].body_len &&
				    whole[i].keep_alive == cut[i].keep_alive &&
				    whole[i].hash == cut[i].hash,
			    "request %zu differs whole and cut into reads", i);
	}
	fuzz_smuggling(data + 2, size - 2);
	return 0;
}
