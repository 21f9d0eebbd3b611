/* track.h - the HTTP tracking listener: pixel, click redirect, unsubscribe, metrics, health. */
#ifndef DRIPD_TRACK_H
#define DRIPD_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Routes: GET /o/TOKEN (1x1 GIF, records an open), GET /c/TOKEN (records a click, 302 to the
 * touch's stored link), GET /u/TOKEN (the unsubscribe page), POST /u/TOKEN (RFC 8058
 * one-click or the page's button: unsubscribes, committed before the answer), GET /metrics
 * (Prometheus text), GET /healthz. HEAD is answered like GET and records nothing.
 */

struct dripd;
struct track;

/*
 * Starts the listener in d->loop: on `inherited_fd` when it is >= 0 (a socket already bound
 * and listening, from systemd socket activation; the listener takes it over), else bound to
 * tracking.listen. Also raises the soft RLIMIT_NOFILE to the hard limit, so the connection
 * cap rather than the descriptor limit decides. NULL with a sentence in err on failure.
 */
struct track *track_new(struct dripd *d, int inherited_fd, char *err, size_t errlen);
/*
 * Commits the hits waiting for their group commit, closes every connection and the
 * listener; the memory goes in the handles' close callbacks. NULL is fine.
 */
void track_close(struct track *t);
/* Commits the hits waiting for their group commit now (also done at least every 100 ms). */
int track_flush(struct track *t);

/* ---- The HTTP adapter: the only code that knows the parser library (http_parser 2.9). */

enum track_method { TRACK_GET, TRACK_HEAD, TRACK_POST, TRACK_OTHER };

#define TRACK_HEADER_MAX 8192 /* request line plus headers, in bytes: past it, 431 */
#define TRACK_BODY_MAX 1024 /* request body, in bytes: past it, 413 */
#define TRACK_PATH_MAX 512 /* the URL: past it, 414 */
#define TRACK_UA_MAX 256 /* longer User-Agent values are kept truncated */
#define TRACK_XFF_MAX 256 /* longer X-Forwarded-For values are refused (400) */
#define TRACK_CTYPE_MAX 128

struct track_request {
	enum track_method method;
	char path[TRACK_PATH_MAX]; /* the URL as sent, query included, NUL-terminated */
	size_t path_len;
	char ua[TRACK_UA_MAX];
	char xff[TRACK_XFF_MAX];
	char content_type[TRACK_CTYPE_MAX];
	char body[TRACK_BODY_MAX + 1];
	size_t body_len;
	bool keep_alive; /* what the client asked for (HTTP/1.1 default, Connection header) */
	/* 0, or the status to answer before closing: 400 (malformed, smuggling attempts such
	 * as Content-Length with Transfer-Encoding, two lengths, a space before a colon, a NUL
	 * in a header value), 413, 414, 431, 505 */
	int status;
};

struct track_parser;

struct track_parser *track_parser_new(void);
void track_parser_free(struct track_parser *tp);
/*
 * Feeds bytes; returns how many were used. When a request is complete, or malformed, it
 * stops there and *done points to it (status says which); answer it, then call
 * track_parser_next before feeding the rest. After a malformed request only closing the
 * connection is right. *done is NULL while more bytes are needed.
 */
size_t track_parser_feed(struct track_parser *tp, const char *data, size_t len,
			 struct track_request **done);
/* Readies the parser for the next request on the same connection. */
void track_parser_next(struct track_parser *tp);
/* Whether any byte of a request not yet complete has arrived. */
bool track_parser_started(const struct track_parser *tp);

/* ---- Human or machine: the rules behind each open's and click's confidence (pure). */

struct track_evidence {
	char kind; /* 'o' open, 'c' click */
	int64_t since_delivery; /* business seconds from the send to the hit; -1 unknown */
	const char *ua; /* User-Agent, "" when none */
	int family; /* AF_INET or AF_INET6 of the client address */
	const uint8_t *addr; /* 4 or 16 bytes */
	int burst; /* distinct links of the same message clicked within one second, this one
		      included */
	bool honeypot; /* the message's hidden link, which no person can see */
};

/* A hit at or above this confidence is a person's: it scores and may move the lead. */
#define TRACK_HUMAN 0.5

/*
 * The confidence (0..1) that a person made the hit, and in *why the rule that lowered it
 * (NULL when none did). See README "Human or machine" for the rules and their reasons.
 */
double track_confidence(const struct track_evidence *e, const char **why);

#endif
