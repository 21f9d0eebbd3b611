/* track.c - the HTTP tracking listener: pixel, click redirect, unsubscribe, metrics, health. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <http_parser.h>
#include <uv.h>

#include "dripd/clock.h"
#include "dripd/dripd.h"
#include "dripd/error.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/sched.h"
#include "dripd/store.h"
#include "dripd/token.h"
#include "dripd/signup.h"
#include "dripd/track.h"
#include "dripd/util.h"

/*
 * DESIGN. An HTTP/1.1 server on the daemon's own libuv TCP code, with Debian's http_parser
 * behind a small adapter (track_parser_*), so llhttp can replace it without touching the
 * routes. What a hostile client could do is bounded: the request line and headers are
 * counted here (431 past TRACK_HEADER_MAX: http_parser 2.9 has no setting for it), a space
 * before a header's colon is refused (http_parser lets it through, and a proxy in front may
 * read the header differently: request smuggling), two Content-Lengths or one with
 * Transfer-Encoding are refused by the parser, bodies are capped when the headers end and
 * again as chunks arrive, and each request has a deadline from its first byte that reading
 * more does not extend (slowloris). Every connection reads into one loop-wide buffer, stops
 * reading while its unsent answers pile up, and is shut down (uv_shutdown) before it is
 * closed. Past tracking.max_connections a new connection is closed at once.
 *
 * Opens and clicks are answered at once and queued; a timer commits the queue in one
 * transaction at most 100 ms later (the bound DESIGN promises), each hit going through
 * journey_on_event when a person made it (scores, stage rules) or recorded with its low
 * confidence otherwise. A click's target is read from the touch's stored links before the
 * answer, so a redirect can only go to a link that was in the message. An unsubscribe is
 * committed before its answer. /metrics is in-memory counters (from the store's event feed
 * and from here) plus indexed counts cached for TRACK_METRICS_CACHE_MS.
 */

#define TRACK_READ_BUF 65536
#define TRACK_WRITE_HIGH (256 * 1024) /* stop reading from a client with this much unsent */
#define TRACK_COMMIT_MS 100
#define TRACK_QUEUE_MAX 16384 /* hits; a full queue is committed at once */
#define TRACK_METRICS_CACHE_MS 5000
#define TRACK_BURST_SLOTS 1024
#define TRACK_MAX_STAGES 32
#define TRACK_LINK_CACHE 4096 /* recently clicked links, direct-mapped by touch and index */

/* ---------------------------------------------------------------- the HTTP adapter */

enum track_hdr { TRACK_HDR_OTHER, TRACK_HDR_UA, TRACK_HDR_XFF, TRACK_HDR_CTYPE };

struct track_parser {
	http_parser p;
	struct track_request req;
	size_t header_bytes;
	char field[32];
	size_t field_len;
	enum track_hdr hdr;
	bool in_value;
	bool started;
	bool complete;
};

static const http_parser_settings track_settings;

static int track_fail(struct track_parser *tp, int status)
{
	if (!tp->req.status)
		tp->req.status = status;
	return -1;
}

static int track_count(struct track_parser *tp, size_t n)
{
	tp->header_bytes += n;
	return tp->header_bytes > TRACK_HEADER_MAX ? track_fail(tp, 431) : 0;
}

static int track_on_begin(http_parser *p)
{
	struct track_parser *tp = p->data;
	tp->started = true;
	return 0;
}

static int track_on_url(http_parser *p, const char *at, size_t n)
{
	struct track_parser *tp = p->data;
	if (track_count(tp, n))
		return -1;
	if (tp->req.path_len + n >= TRACK_PATH_MAX)
		return track_fail(tp, 414);
	memcpy(tp->req.path + tp->req.path_len, at, n);
	tp->req.path_len += n;
	tp->req.path[tp->req.path_len] = '\0';
	return 0;
}

/* RFC 9110 tchar: anything else in a field name (a space before the colon above all) is
 * refused, as a proxy in front might read that header differently. */
static bool track_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int track_on_field(http_parser *p, const char *at, size_t n)
{
	struct track_parser *tp = p->data;
	if (track_count(tp, n + (tp->in_value || tp->field_len == 0 ? 4 : 0)))
		return -1;
	if (tp->in_value) {
		tp->in_value = false;
		tp->field_len = 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (!track_tchar((unsigned char)at[i]))
			return track_fail(tp, 400);
		if (tp->field_len < sizeof(tp->field) - 1)
			tp->field[tp->field_len] = (char)tolower((unsigned char)at[i]);
		tp->field_len++;
	}
	return 0;
}

static void track_append(char *dst, size_t cap, const char *at, size_t n)
{
	size_t have = strlen(dst);
	if (have + 1 >= cap)
		return;
	if (n > cap - 1 - have)
		n = cap - 1 - have;
	memcpy(dst + have, at, n);
	dst[have + n] = '\0';
}

static int track_on_value(http_parser *p, const char *at, size_t n)
{
	struct track_parser *tp = p->data;
	if (track_count(tp, n))
		return -1;
	/* A NUL in a value (http_parser lets it through) would cut the copies kept below at a
	 * place that depends on how the bytes arrived; RFC 9110 says to refuse it. */
	if (memchr(at, '\0', n))
		return track_fail(tp, 400);
	if (!tp->in_value) {
		tp->in_value = true;
		size_t len = tp->field_len < sizeof(tp->field) ? tp->field_len : 0;
		tp->field[len] = '\0';
		tp->hdr = strcmp(tp->field, "user-agent") == 0        ? TRACK_HDR_UA
			  : strcmp(tp->field, "x-forwarded-for") == 0 ? TRACK_HDR_XFF
			  : strcmp(tp->field, "content-type") == 0    ? TRACK_HDR_CTYPE
								      : TRACK_HDR_OTHER;
		/* A second X-Forwarded-For joins the first, as RFC 9110 lists do. */
		if (tp->hdr == TRACK_HDR_XFF && tp->req.xff[0])
			track_append(tp->req.xff, sizeof(tp->req.xff), ",", 1);
	}
	switch (tp->hdr) {
	case TRACK_HDR_UA:
		track_append(tp->req.ua, sizeof(tp->req.ua), at, n);
		break;
	case TRACK_HDR_XFF:
		if (strlen(tp->req.xff) + n >= sizeof(tp->req.xff))
			return track_fail(tp, 400);
		track_append(tp->req.xff, sizeof(tp->req.xff), at, n);
		break;
	case TRACK_HDR_CTYPE:
		track_append(tp->req.content_type, sizeof(tp->req.content_type), at, n);
		break;
	case TRACK_HDR_OTHER:
		break;
	}
	return 0;
}

static int track_on_headers_complete(http_parser *p)
{
	struct track_parser *tp = p->data;
	if (p->http_major != 1)
		return track_fail(tp, 505);
	tp->req.method = p->method == HTTP_GET    ? TRACK_GET
			 : p->method == HTTP_HEAD ? TRACK_HEAD
			 : p->method == HTTP_POST ? TRACK_POST
						  : TRACK_OTHER;
	/* Absent, the length is ULLONG_MAX; chunked bodies are capped as they come. */
	if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
	    p->content_length > TRACK_BODY_MAX)
		return track_fail(tp, 413);
	return 0;
}

static int track_on_body(http_parser *p, const char *at, size_t n)
{
	struct track_parser *tp = p->data;
	if (tp->req.body_len + n > TRACK_BODY_MAX)
		return track_fail(tp, 413);
	memcpy(tp->req.body + tp->req.body_len, at, n);
	tp->req.body_len += n;
	tp->req.body[tp->req.body_len] = '\0';
	return 0;
}

static int track_on_complete(http_parser *p)
{
	struct track_parser *tp = p->data;
	tp->complete = true;
	tp->req.keep_alive = http_should_keep_alive(p) != 0;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings track_settings = {
	.on_message_begin = track_on_begin,
	.on_url = track_on_url,
	.on_header_field = track_on_field,
	.on_header_value = track_on_value,
	.on_headers_complete = track_on_headers_complete,
	.on_body = track_on_body,
	.on_message_complete = track_on_complete,
};

struct track_parser *track_parser_new(void)
{
	struct track_parser *tp = xmalloc(sizeof(*tp));
	http_parser_init(&tp->p, HTTP_REQUEST);
	tp->p.data = tp;
	track_parser_next(tp);
	return tp;
}

void track_parser_free(struct track_parser *tp)
{
	free(tp);
}

void track_parser_next(struct track_parser *tp)
{
	http_parser_pause(&tp->p, 0);
	tp->req.method = TRACK_OTHER;
	tp->req.path[0] = tp->req.ua[0] = tp->req.xff[0] = tp->req.content_type[0] = '\0';
	tp->req.body[0] = '\0';
	tp->req.path_len = tp->req.body_len = 0;
	tp->req.keep_alive = false;
	tp->req.status = 0;
	tp->header_bytes = tp->field_len = 0;
	tp->hdr = TRACK_HDR_OTHER;
	tp->in_value = tp->started = tp->complete = false;
}

bool track_parser_started(const struct track_parser *tp)
{
	return tp->started && !tp->complete;
}

size_t track_parser_feed(struct track_parser *tp, const char *data, size_t len,
			 struct track_request **done)
{
	*done = NULL;
	if (tp->req.status)
		return 0;
	size_t n = http_parser_execute(&tp->p, &track_settings, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&tp->p);
	if (tp->complete && (e == HPE_OK || e == HPE_PAUSED)) {
		*done = &tp->req;
		return n;
	}
	if (e != HPE_OK && e != HPE_PAUSED) {
		if (!tp->req.status)
			tp->req.status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
		*done = &tp->req;
	}
	return n;
}

/* ---------------------------------------------------------------- human or machine */

static bool track_ua_has(const char *ua, const char *word)
{
	return strcasestr(ua, word) != NULL;
}

double track_confidence(const struct track_evidence *e, const char **why)
{
	/* Security gateways and link checkers fetch with these (case-insensitive substrings);
	 * so do scripts and headless browsers, which are not people reading mail either. */
	static const char *const machines[] = {
		"bot",        "spider",      "crawl",          "preview",
		"scanner",    "headless",    "phantomjs",      "python-",
		"curl/",      "wget/",       "go-http-client", "java/",
		"libwww",     "okhttp",      "httpclient",     "barracuda",
		"mimecast",   "proofpoint",  "symantec",       "forcepoint",
		"trendmicro", "trend micro", "sophos",         "messagelabs",
		"fireeye",    "safelinks",   "cisco",          "ironport",
		"zscaler",    "paloalto",
	};
	const char *ua = e->ua ? e->ua : "";
	*why = NULL;
	if (e->kind == 'o') {
		/* Gmail fetches images through its proxy and caches them: the fetch says
		 * nothing reliable about a person reading now. */
		if (track_ua_has(ua, "GoogleImageProxy") || track_ua_has(ua, "ggpht.com"))
			return *why = "google image proxy", 0.1;
		if (track_ua_has(ua, "YahooMailProxy"))
			return *why = "yahoo mail proxy", 0.1;
		/* Apple Mail Privacy Protection loads every image on delivery through Apple's
		 * relays with this bare user agent, and Apple's own network is 17.0.0.0/8. */
		if (strcmp(ua, "Mozilla/5.0") == 0 ||
		    (e->family == AF_INET && e->addr && e->addr[0] == 17))
			return *why = "apple mail privacy protection", 0.1;
	}
	if (e->kind == 'c' && e->honeypot)
		return *why = "hidden honeypot link", 0.0;
	if (!*ua)
		return *why = "no user agent", 0.05;
	for (size_t i = 0; i < sizeof(machines) / sizeof(machines[0]); i++)
		if (track_ua_has(ua, machines[i]))
			return *why = "scanner or script user agent", 0.05;
	if (e->kind == 'c' && e->burst >= 3)
		return *why = "several links clicked within a second", 0.1;
	/* Gateways scan a message as it arrives; nobody reads and clicks that fast. */
	if (e->since_delivery >= 0 && e->since_delivery < (e->kind == 'c' ? 10 : 2))
		return *why = "right after delivery", 0.2;
	return 0.9;
}

/* ---------------------------------------------------------------- the server */

struct track_hit {
	char kind; /* 'o' or 'c' */
	int64_t touch_id;
	uint32_t link;
	int burst;
	int64_t at;
	int family;
	uint8_t addr[16];
	char addr_text[INET6_ADDRSTRLEN];
	char ua[TRACK_UA_MAX];
	char *tag; /* clicks: the link's tag */
};

struct track_burst {
	int64_t touch_id;
	uint64_t start_ms;
	uint64_t links; /* bit per link index (mod 64) */
};

struct track_link {
	int64_t touch_id; /* 0: empty */
	uint32_t link;
	char *url, *tag;
};

struct track_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t shut;
	struct track *t;
	struct track_parser *tp; /* only while a request is in progress */
	struct track_conn *prev, *next;
	int family;
	uint8_t addr[16];
	char addr_text[INET6_ADDRSTRLEN];
	bool trusted; /* the peer is a configured proxy: its X-Forwarded-For counts */
	bool closing, close_after_write, paused, deadline;
	int handles; /* handles still open; freed at 0 */
	size_t writes; /* answers not yet written */
};

struct track_write {
	uv_write_t req;
	struct track_conn *c;
	size_t len;
	char data[];
};

struct track_metric_kind {
	const char *kind;
	uint64_t n;
};

struct track {
	struct dripd *d;
	uv_tcp_t server;
	uv_timer_t commit;
	uv_prepare_t prepare;
	bool closed;
	int handles; /* its own handles plus one per connection; freed at 0 */
	struct track_conn *conns;
	int64_t nconns, max_conns;
	struct util_cidr *proxies;
	size_t nproxies;
	char readbuf[TRACK_READ_BUF];
	struct track_hit *queue;
	size_t nqueue;
	struct track_burst burst[TRACK_BURST_SLOTS];
	struct track_link *links; /* TRACK_LINK_CACHE entries, allocated on the first click */
	/* metrics */
	uint64_t requests[6]; /* by status class: 2xx 3xx 4xx 5xx, refused, other */
	uint64_t opens[2], clicks[2]; /* [0] machine, [1] person */
	uint64_t unsubscribes, rejected_conns, dropped_hits;
	struct track_metric_kind events[24];
	uint64_t other_events;
	uint64_t lag_prev_ns, idle_prev_ns, lag_max_ns;
	uint64_t metrics_at_ms;
	int64_t queue_depth[4];
	struct {
		char *stage;
		int64_t leads;
	} stages[TRACK_MAX_STAGES];
	size_t nstages;
};

static const unsigned char track_gif[43] = {
	0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
	0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00,
	0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
};

static void track_conn_close(struct track_conn *c);
static void track_release(struct track *t);

static void track_conn_free_cb(uv_handle_t *h)
{
	struct track_conn *c = h->data;
	if (--c->handles > 0)
		return;
	struct track *t = c->t;
	track_parser_free(c->tp);
	free(c);
	t->nconns--;
	track_release(t);
}

static void track_conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct track_conn *c = req->data;
	(void)status;
	uv_close((uv_handle_t *)&c->tcp, track_conn_free_cb);
}

/* Shuts the connection down once its answers are written, then closes it. */
static void track_conn_close(struct track_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, track_conn_free_cb);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->shut.data = c;
	/* uv_shutdown waits for queued writes, then half-closes; a peer that already left
	 * makes it fail, and the handle is closed at once. */
	if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, track_conn_shutdown_cb) != 0)
		uv_close((uv_handle_t *)&c->tcp, track_conn_free_cb);
}

static void track_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void track_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void track_write_cb(uv_write_t *req, int status)
{
	struct track_write *w = (struct track_write *)req;
	struct track_conn *c = w->c;
	free(w);
	c->writes--;
	if (status < 0) {
		track_conn_close(c);
		return;
	}
	if (c->paused && !c->closing &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < TRACK_WRITE_HIGH / 2) {
		c->paused = false;
		uv_read_start((uv_stream_t *)&c->tcp, track_alloc_cb, track_read_cb);
	}
}

static void track_send(struct track_conn *c, const void *data, size_t len)
{
	/* Most answers fit the socket buffer at once: written without a request, which also
	 * spares libuv's re-arming of the watcher (an epoll_ctl per answer). */
	if (c->writes == 0) {
		uv_buf_t now = uv_buf_init((char *)data, (unsigned)len);
		int n = uv_try_write((uv_stream_t *)&c->tcp, &now, 1);
		if (n == (int)len)
			return;
		if (n > 0) {
			data = (const char *)data + n;
			len -= (size_t)n;
		} else if (n != UV_EAGAIN) {
			track_conn_close(c);
			return;
		}
	}
	struct track_write *w = xmalloc(sizeof(*w) + len);
	memcpy(w->data, data, len);
	w->len = len;
	w->c = c;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, track_write_cb) != 0) {
		free(w);
		track_conn_close(c);
		return;
	}
	c->writes++;
}

static const char *track_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 302:
		return "Found";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Internal Server Error";
	}
}

/* One answer: status line, headers (`extra`, CRLF-terminated lines), body. */
static void track_answer(struct track_conn *c, int status, const char *ctype, const char *extra,
			 const void *body, size_t len, bool head, bool keep_alive)
{
	struct buf b;
	struct track *t = c->t;
	buf_init(&b);
	buf_printf(&b,
		   "HTTP/1.1 %d %s\r\nServer: dripd\r\nContent-Type: %s\r\nContent-Length: "
		   "%zu\r\n%s%s\r\n",
		   status, track_reason(status), ctype, len, extra ? extra : "",
		   keep_alive ? "" : "Connection: close\r\n");
	if (!head && len)
		buf_add(&b, body, len);
	track_send(c, b.data, b.len);
	buf_free(&b);
	t->requests[status < 300 ? 0 : status < 400 ? 1 : status < 500 ? 2 : 3]++;
	if (!keep_alive)
		c->close_after_write = true;
}

static void track_text(struct track_conn *c, int status, const char *text, bool head,
		       bool keep_alive)
{
	track_answer(c, status, "text/plain; charset=utf-8", "Cache-Control: no-store\r\n", text,
		     strlen(text), head, keep_alive);
}

/* The address a hit is credited to: the socket's, or from a trusted proxy the rightmost
 * X-Forwarded-For entry that is not itself a trusted proxy. */
static void track_client(struct track_conn *c, const struct track_request *r, struct track_hit *h)
{
	h->family = c->family;
	memcpy(h->addr, c->addr, sizeof(h->addr));
	snprintf(h->addr_text, sizeof(h->addr_text), "%s", c->addr_text);
	if (!c->trusted || !r->xff[0])
		return;
	char list[TRACK_XFF_MAX];
	snprintf(list, sizeof(list), "%s", r->xff);
	for (;;) {
		char *comma = strrchr(list, ',');
		char *item = comma ? comma + 1 : list;
		while (*item == ' ' || *item == '\t')
			item++;
		size_t n = strlen(item);
		while (n && (item[n - 1] == ' ' || item[n - 1] == '\t'))
			item[--n] = '\0';
		struct util_cidr a;
		if (!util_cidr_parse(item, &a) || strchr(item, '/'))
			return; /* a garbled entry: keep the socket's address */
		h->family = a.family;
		memcpy(h->addr, a.addr, sizeof(h->addr));
		inet_ntop(a.family, a.addr, h->addr_text, sizeof(h->addr_text));
		bool proxy = false;
		for (size_t i = 0; i < c->t->nproxies && !proxy; i++)
			proxy = util_cidr_contains(&c->t->proxies[i], a.family, a.addr);
		if (!proxy || !comma)
			return;
		*comma = '\0';
	}
}

/* "/o/TOKEN" (query ignored) → 0 and claims of `kind`, else DRIP_EINVALID. */
static int track_token(struct track *t, const struct track_request *r, char kind,
		       struct token_claims *cl)
{
	const char *tok = r->path + 3;
	size_t n = strcspn(tok, "?#");
	if (r->path_len < 4 || r->path[0] != '/' || r->path[1] != kind || r->path[2] != '/' ||
	    n == 0 || n >= TOKEN_MAX_LEN)
		return DRIP_EINVALID;
	if (token_verify(t->d->keys, tok, n, TOKEN_URL, cl) != 0 || cl->kind != (unsigned)kind)
		return DRIP_EINVALID;
	return 0;
}

static void track_commit_cb(uv_timer_t *h);

static void track_enqueue(struct track *t, const struct track_hit *h)
{
	if (t->nqueue == TRACK_QUEUE_MAX)
		track_flush(t);
	if (!t->queue)
		t->queue = xmalloc(TRACK_QUEUE_MAX * sizeof(*t->queue));
	t->queue[t->nqueue++] = *h;
	if (!uv_is_active((uv_handle_t *)&t->commit))
		uv_timer_start(&t->commit, track_commit_cb, TRACK_COMMIT_MS, 0);
}

static void track_hit_fill(struct track_conn *c, const struct track_request *r, struct track_hit *h,
			   char kind, const struct token_claims *cl)
{
	memset(h, 0, offsetof(struct track_hit, ua));
	h->kind = kind;
	h->touch_id = cl->touch_id;
	h->link = cl->link;
	h->at = clock_now(&c->t->d->clock);
	snprintf(h->ua, sizeof(h->ua), "%s", r->ua);
	track_client(c, r, h);
}

static void track_open(struct track_conn *c, const struct track_request *r, bool head)
{
	struct token_claims cl;
	if (track_token(c->t, r, 'o', &cl) != 0) {
		track_text(c, 404, "not found\n", head, r->keep_alive);
		return;
	}
	if (!head) {
		struct track_hit h;
		track_hit_fill(c, r, &h, 'o', &cl);
		h.tag = NULL;
		track_enqueue(c->t, &h);
	}
	track_answer(c, 200, "image/gif",
		     "Cache-Control: no-store, no-cache, must-revalidate, max-age=0\r\n"
		     "Pragma: no-cache\r\nExpires: 0\r\n",
		     track_gif, sizeof(track_gif), head, r->keep_alive);
}

/* A stored link fit for a Location header: http(s), no controls or spaces. */
static bool track_location_ok(const char *url)
{
	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
		return false;
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return strlen(url) < 4096;
}

static int track_burst(struct track *t, int64_t touch_id, uint32_t link)
{
	struct track_burst *b = &t->burst[(uint64_t)touch_id % TRACK_BURST_SLOTS];
	uint64_t now = uv_now(t->d->loop);
	if (b->touch_id != touch_id || now - b->start_ms > 1000) {
		b->touch_id = touch_id;
		b->start_ms = now;
		b->links = 0;
	}
	b->links |= 1ULL << (link % 64);
	return __builtin_popcountll(b->links);
}

/*
 * A touch's link, from the cache or the database (copies the caller frees). The cache spares
 * the two lock syscalls of every SQLite read in WAL mode; a touch's links are written before
 * it is handed to a sender thread and only rewritten by a retry of that same touch, so an
 * entry can at worst name the link of the touch's earlier attempt.
 */
static int track_link(struct track *t, int64_t touch_id, uint32_t link, char **url, char **tag)
{
	if (!t->links)
		t->links = xcalloc(TRACK_LINK_CACHE, sizeof(*t->links));
	struct track_link *e = &t->links[((uint64_t)touch_id * 31 + link) % TRACK_LINK_CACHE];
	if (e->touch_id != touch_id || e->link != link || !e->url) {
		char *u, *g;
		int rc = store_link_get(t->d->store, touch_id, link, &u, &g);
		if (rc)
			return rc;
		free(e->url);
		free(e->tag);
		e->touch_id = touch_id;
		e->link = link;
		e->url = u;
		e->tag = g;
	}
	*url = xstrdup(e->url);
	*tag = xstrdup(e->tag);
	return 0;
}

static void track_click(struct track_conn *c, const struct track_request *r, bool head)
{
	struct track *t = c->t;
	struct token_claims cl;
	char *url = NULL, *tag = NULL;
	if (track_token(t, r, 'c', &cl) != 0 ||
	    track_link(t, cl.touch_id, cl.link, &url, &tag) != 0 || !track_location_ok(url)) {
		free(url);
		free(tag);
		track_text(c, 404, "not found\n", head, r->keep_alive);
		return;
	}
	char *loc = xasprintf("Location: %s\r\nCache-Control: no-store\r\nReferrer-Policy: "
			      "no-referrer\r\n",
			      url);
	if (!head) {
		struct track_hit h;
		track_hit_fill(c, r, &h, 'c', &cl);
		h.burst = track_burst(t, cl.touch_id, cl.link);
		h.tag = tag;
		tag = NULL;
		track_enqueue(t, &h);
	}
	track_answer(c, 302, "text/plain; charset=utf-8", loc, "", 0, head, r->keep_alive);
	free(loc);
	free(url);
	free(tag);
}

static void track_page(struct track_conn *c, int status, const char *title, const char *para,
		       const char *email, bool button, bool head, bool keep_alive)
{
	struct buf b;
	buf_init(&b);
	buf_add_page_start(&b, title, para);
	if (email) {
		buf_adds(&b, " <strong id=\"email\">");
		buf_add_html(&b, email);
		buf_adds(&b, "</strong>");
	}
	buf_adds(&b, "</p>");
	if (button)
		buf_adds(&b, "<form method=\"post\"><input type=\"hidden\" name=\"confirm\" "
			     "value=\"yes\"><button id=\"unsubscribe\" type=\"submit\">Unsubscribe"
			     "</button></form><p><small>Nothing changes until you press the button."
			     "</small></p>");
	buf_add_page_end(&b);
	track_answer(c, status, "text/html; charset=utf-8",
		     "Cache-Control: no-store\r\nX-Frame-Options: DENY\r\n"
		     "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
		     "form-action 'self'\r\nReferrer-Policy: no-referrer\r\n",
		     b.data, b.len, head, keep_alive);
	buf_free(&b);
}

/* The RFC 8058 body (urlencoded or multipart) or the page's button. */
static bool track_unsubscribe_body(const struct track_request *r)
{
	const char *b = r->body;
	if (strstr(b, "List-Unsubscribe=One-Click") || strstr(b, "confirm=yes"))
		return true;
	return strncasecmp(r->content_type, "multipart/form-data", 19) == 0 &&
	       strstr(b, "name=\"List-Unsubscribe\"") && strstr(b, "One-Click");
}

static void track_unsubscribe(struct track_conn *c, const struct track_request *r, bool head)
{
	struct track *t = c->t;
	struct store *st = t->d->store;
	struct token_claims cl;
	struct lead lead;
	int64_t lead_id = 0, sent_at = 0;
	char err[256];
	bool post = r->method == TRACK_POST;
	if (track_token(t, r, 'u', &cl) != 0 ||
	    store_touch_hit(st, cl.touch_id, &lead_id, &sent_at) != 0 ||
	    store_lead_by_id(st, lead_id, &lead) != 0) {
		track_text(c, 404, "not found\n", head, r->keep_alive);
		return;
	}
	if (!post) {
		/* Link scanners only GET: the page asks, the button does it. */
		if (strcmp(lead.status, "unsubscribed") == 0)
			track_page(c, 200, "You are unsubscribed",
				   "No more emails from us will reach", lead.email, false, head,
				   r->keep_alive);
		else
			track_page(c, 200, "Unsubscribe",
				   "Press the button to stop all emails from us to", lead.email,
				   true, head, r->keep_alive);
		store_lead_clear(&lead);
		return;
	}
	if (!track_unsubscribe_body(r)) {
		store_lead_clear(&lead);
		track_text(c, 400,
			   "expected List-Unsubscribe=One-Click (RFC 8058) or the page's form\n",
			   false, r->keep_alive);
		return;
	}
	int rc = 0;
	if (strcmp(lead.status, "unsubscribed") != 0) {
		struct track_hit h;
		track_hit_fill(c, r, &h, 'u', &cl);
		cJSON *detail = cJSON_CreateObject();
		cJSON_AddStringToObject(detail, "via",
					strstr(r->body, "confirm=yes") ? "unsubscribe page"
								       : "one-click (RFC 8058)");
		cJSON_AddStringToObject(detail, "address", h.addr_text);
		cJSON_AddStringToObject(detail, "user_agent", h.ua);
		char *json = cJSON_PrintUnformatted(detail);
		cJSON_Delete(detail);
		/* Committed before the answer: an acknowledged opt-out is never lost. */
		if ((rc = store_begin(st)) == 0) {
			rc = journey_on_event(st, t->d->content, &lead, cl.touch_id, "unsubscribe",
					      json, h.at, err, sizeof(err));
			if (rc == 0)
				rc = store_commit(st);
			else
				store_rollback(st);
		}
		cJSON_free(json);
		if (rc == 0) {
			t->unsubscribes++;
			sched_kick(t->d->sched);
			log_info("track: %s unsubscribed (touch %lld)", lead.email,
				 (long long)cl.touch_id);
		} else {
			log_err("track: cannot unsubscribe %s: %s", lead.email,
				rc == DRIP_ESTORE ? "database error" : err);
		}
	}
	if (rc == 0)
		track_page(c, 200, "You are unsubscribed",
			   "Done: no more emails from us will reach", lead.email, false, false,
			   r->keep_alive);
	else
		track_text(c, 503, "could not unsubscribe right now; please try again\n", false,
			   r->keep_alive);
	store_lead_clear(&lead);
}

static void track_metrics_stage_cb(void *arg, const char *stage, int64_t leads)
{
	struct track *t = arg;
	if (t->nstages == TRACK_MAX_STAGES)
		return;
	t->stages[t->nstages].stage = xstrdup(stage);
	t->stages[t->nstages].leads = leads;
	t->nstages++;
}

static void track_metrics_refresh(struct track *t)
{
	uint64_t now = uv_now(t->d->loop);
	if (t->metrics_at_ms && now - t->metrics_at_ms < TRACK_METRICS_CACHE_MS)
		return;
	t->metrics_at_ms = now;
	for (size_t i = 0; i < t->nstages; i++)
		free(t->stages[i].stage);
	t->nstages = 0;
	store_stage_counts(t->d->store, track_metrics_stage_cb, t);
	store_queue_depth(t->d->store, t->queue_depth);
}

static void track_metric_label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_addc(b, '\\');
		if (*s == '\n') {
			buf_adds(b, "\\n");
			continue;
		}
		buf_addc(b, *s);
	}
}

/* Starts one sample of a per-account metric: `name{account="ACCOUNT"`. */
static void track_metric_account(struct buf *b, const char *name, const char *account)
{
	buf_printf(b, "%s{account=\"", name);
	track_metric_label(b, account);
	buf_addc(b, '"');
}

static void track_metric_governor_state(struct buf *b, const struct sched_account_view *v)
{
	static const char *const states[] = { "normal", "slow", "paused" };
	for (size_t i = 0; i < 3; i++) {
		track_metric_account(b, "dripd_account_state", v->account);
		buf_printf(b, ",state=\"%s\"} %d\n", states[i], strcmp(v->state, states[i]) == 0);
	}
}

static void track_metric_governor_rates(struct buf *b, const struct sched_account_view *v)
{
	static const char *const kinds[] = { "deferral", "bounce", "complaint" };
	const double rates[] = { v->deferral_rate, v->bounce_rate, v->complaint_rate };
	for (size_t i = 0; i < 3; i++) {
		track_metric_account(b, "dripd_account_rate", v->account);
		buf_printf(b, ",outcome=\"%s\"} %.4f\n", kinds[i], rates[i]);
	}
}

static void track_metric_sender_seconds(struct buf *b, const struct sched_account_view *v)
{
	static const char *const activities[] = { "sending", "between_jobs" };
	const double seconds[] = { v->times.sending_s, v->times.between_s };
	for (size_t i = 0; i < 2; i++) {
		track_metric_account(b, "dripd_sender_seconds_total", v->account);
		buf_printf(b, ",activity=\"%s\"} %.6f\n", activities[i], seconds[i]);
	}
}

static void track_metric_sender_jobs(struct buf *b, const struct sched_account_view *v)
{
	track_metric_account(b, "dripd_sender_jobs_total", v->account);
	buf_printf(b, "} %llu\n", (unsigned long long)v->times.jobs);
}

/* One per-account gauge over the caps' two windows. */
static void track_metric_windows(struct buf *b, const char *name, const char *account, int64_t hour,
				 int64_t day)
{
	track_metric_account(b, name, account);
	buf_printf(b, ",window=\"1h\"} %lld\n", (long long)hour);
	track_metric_account(b, name, account);
	buf_printf(b, ",window=\"24h\"} %lld\n", (long long)day);
}

static void track_metric_account_sent(struct buf *b, const struct sched_account_view *v)
{
	track_metric_windows(b, "dripd_account_sent", v->account, v->sent_hour, v->sent_day);
}

static void track_metric_account_cap(struct buf *b, const struct sched_account_view *v)
{
	track_metric_windows(b, "dripd_account_cap", v->account, v->cap_hour, v->cap_day);
}

/* The delivery accounts' views of one scrape, taken once for every family. */
struct track_views {
	struct sched_account_view *v;
	size_t n, cap;
};

static void track_view_keep(void *arg, const struct sched_account_view *v)
{
	struct track_views *views = arg;
	if (views->n == views->cap) {
		views->cap = views->cap ? 2 * views->cap : 4;
		views->v = xrealloc(views->v, views->cap * sizeof(*views->v));
	}
	views->v[views->n++] = *v;
}

static void track_metrics(struct track_conn *c, const struct track_request *r, bool head)
{
	struct track *t = c->t;
	static const char *const states[] = { "pending", "queued", "sending", "uncertain" };
	static const char *const classes[] = { "2xx", "3xx", "4xx", "5xx" };
	struct buf b;
	track_metrics_refresh(t);
	buf_init(&b);
	buf_adds(&b,
		 "# HELP dripd_events_total Events recorded since start, by kind (sends and "
		 "their outcomes: sent, deferred, failed, bounce; opens, clicks, replies, ...).\n"
		 "# TYPE dripd_events_total counter\n");
	for (size_t i = 0; i < sizeof(t->events) / sizeof(t->events[0]) && t->events[i].kind; i++) {
		buf_adds(&b, "dripd_events_total{kind=\"");
		track_metric_label(&b, t->events[i].kind);
		buf_printf(&b, "\"} %llu\n", (unsigned long long)t->events[i].n);
	}
	buf_printf(&b, "dripd_events_total{kind=\"other\"} %llu\n",
		   (unsigned long long)t->other_events);
	buf_printf(&b,
		   "# HELP dripd_opens_total Pixel loads since start; person=\"false\" are "
		   "proxies and scanners.\n# TYPE dripd_opens_total counter\n"
		   "dripd_opens_total{person=\"true\"} %llu\ndripd_opens_total{person=\"false\"} "
		   "%llu\n",
		   (unsigned long long)t->opens[1], (unsigned long long)t->opens[0]);
	buf_printf(&b,
		   "# HELP dripd_clicks_total Tracked link clicks since start.\n"
		   "# TYPE dripd_clicks_total counter\n"
		   "dripd_clicks_total{person=\"true\"} %llu\ndripd_clicks_total{person=\"false\"} "
		   "%llu\n",
		   (unsigned long long)t->clicks[1], (unsigned long long)t->clicks[0]);
	buf_printf(&b,
		   "# HELP dripd_unsubscribes_total Unsubscribes through the tracking "
		   "listener since start.\n# TYPE dripd_unsubscribes_total counter\n"
		   "dripd_unsubscribes_total %llu\n",
		   (unsigned long long)t->unsubscribes);
	buf_adds(&b, "# HELP dripd_queue_touches Touches waiting, by state.\n"
		     "# TYPE dripd_queue_touches gauge\n");
	for (int i = 0; i < 4; i++)
		buf_printf(&b, "dripd_queue_touches{state=\"%s\"} %lld\n", states[i],
			   (long long)t->queue_depth[i]);
	buf_adds(&b, "# HELP dripd_stage_leads Leads in each stage of the journey.\n"
		     "# TYPE dripd_stage_leads gauge\n");
	for (size_t i = 0; i < t->nstages; i++) {
		buf_adds(&b, "dripd_stage_leads{stage=\"");
		track_metric_label(&b, t->stages[i].stage);
		buf_printf(&b, "\"} %lld\n", (long long)t->stages[i].leads);
	}
	buf_adds(&b, "# HELP dripd_http_requests_total Tracking requests answered, by status "
		     "class.\n# TYPE dripd_http_requests_total counter\n");
	for (int i = 0; i < 4; i++)
		buf_printf(&b, "dripd_http_requests_total{code=\"%s\"} %llu\n", classes[i],
			   (unsigned long long)t->requests[i]);
	buf_printf(&b,
		   "# HELP dripd_http_connections Open tracking connections.\n"
		   "# TYPE dripd_http_connections gauge\ndripd_http_connections %lld\n"
		   "# HELP dripd_http_connections_refused_total Connections closed at once past "
		   "tracking.max_connections.\n# TYPE dripd_http_connections_refused_total "
		   "counter\ndripd_http_connections_refused_total %llu\n",
		   (long long)t->nconns, (unsigned long long)t->rejected_conns);
	/* Per delivery account: each family's help, then its samples for every account. */
	static const struct {
		const char *help;
		void (*write)(struct buf *b, const struct sched_account_view *v);
	} per_account[] = {
		{ "# HELP dripd_account_state The reputation governor's state of each delivery "
		  "account (1 for the current state).\n# TYPE dripd_account_state gauge\n",
		  track_metric_governor_state },
		{ "# HELP dripd_account_rate Each delivery account's outcome rates over the "
		  "governor's window.\n# TYPE dripd_account_rate gauge\n",
		  track_metric_governor_rates },
		{ "# HELP dripd_account_sent Each delivery account's sends its caps count, over "
		  "the last hour and the last 24 hours.\n# TYPE dripd_account_sent gauge\n",
		  track_metric_account_sent },
		{ "# HELP dripd_account_cap Each delivery account's caps over an hour and 24 "
		  "hours (0: none; the warm-up ramp's when it is lower).\n"
		  "# TYPE dripd_account_cap gauge\n",
		  track_metric_account_cap },
		{ "# HELP dripd_sender_seconds_total Each account's sender threads' time since "
		  "start: delivering, and from an outcome to the thread's next job (the "
		  "hand-over's wait while touches are due, else idle).\n"
		  "# TYPE dripd_sender_seconds_total counter\n",
		  track_metric_sender_seconds },
		{ "# HELP dripd_sender_jobs_total Deliveries each account's sender threads "
		  "finished since start.\n# TYPE dripd_sender_jobs_total counter\n",
		  track_metric_sender_jobs },
	};
	struct track_views views = { 0 };
	if (t->d->sched)
		sched_accounts_each(t->d->sched, track_view_keep, &views);
	for (size_t i = 0; views.n && i < sizeof(per_account) / sizeof(*per_account); i++) {
		buf_adds(&b, per_account[i].help);
		for (size_t j = 0; j < views.n; j++)
			per_account[i].write(&b, &views.v[j]);
	}
	free(views.v);
	buf_printf(&b,
		   "# HELP dripd_hits_pending Opens and clicks waiting for their group commit.\n"
		   "# TYPE dripd_hits_pending gauge\ndripd_hits_pending %zu\n",
		   t->nqueue);
	uint64_t ck_pool, ck_failed, ck_loop;
	store_checkpoint_counts(t->d->store, &ck_pool, &ck_failed, &ck_loop);
	buf_printf(&b,
		   "# HELP dripd_wal_checkpoints_total WAL checkpoints since start: in the thread "
		   "pool, and on the loop when the pool fell behind.\n"
		   "# TYPE dripd_wal_checkpoints_total counter\n"
		   "dripd_wal_checkpoints_total{thread=\"pool\"} %llu\n"
		   "dripd_wal_checkpoints_total{thread=\"loop\"} %llu\n"
		   "# HELP dripd_wal_checkpoint_failures_total Background WAL checkpoints that "
		   "failed (the next commit over the threshold tries again).\n"
		   "# TYPE dripd_wal_checkpoint_failures_total counter\n"
		   "dripd_wal_checkpoint_failures_total %llu\n",
		   (unsigned long long)ck_pool, (unsigned long long)ck_loop,
		   (unsigned long long)ck_failed);
	buf_printf(&b,
		   "# HELP dripd_loop_lag_seconds The longest the event loop was busy in one "
		   "turn since the last scrape.\n# TYPE dripd_loop_lag_seconds gauge\n"
		   "dripd_loop_lag_seconds %.6f\n",
		   (double)t->lag_max_ns / 1e9);
	t->lag_max_ns = 0;
	track_answer(c, 200, "text/plain; version=0.0.4; charset=utf-8",
		     "Cache-Control: no-store\r\n", b.data, b.len, head, r->keep_alive);
	buf_free(&b);
}

/* POST /subscribe, GET/POST /confirm/TOKEN: the signup module decides, track answers. */
static void track_signup(struct track_conn *c, const struct track_request *r, bool head,
			 size_t plen)
{
	struct signup_answer a = { 0 };
	struct track_hit h;
	memset(&h, 0, offsetof(struct track_hit, ua));
	track_client(c, r, &h);
	if (!c->t->d->signup)
		a.status = 404;
	else if (plen == 10)
		signup_subscribe(c->t->d->signup, r->content_type, r->body, r->body_len,
				 h.addr_text, &a);
	else
		signup_confirm(c->t->d->signup, r->path + 9, plen - 9, r->method == TRACK_POST,
			       h.addr_text, &a);
	if (!a.body) {
		track_text(c, 404, "not found\n", head, r->keep_alive);
		return;
	}
	char *extra = xasprintf("%s%s%sCache-Control: no-store\r\nX-Frame-Options: DENY\r\n"
				"Referrer-Policy: no-referrer\r\n",
				a.location ? "Location: " : "", a.location ? a.location : "",
				a.location ? "\r\n" : "");
	track_answer(c, a.status, a.ctype, extra, a.body, strlen(a.body), head, r->keep_alive);
	free(extra);
	signup_answer_clear(&a);
}

static void track_route(struct track_conn *c, const struct track_request *r)
{
	bool head = r->method == TRACK_HEAD;
	size_t plen = strcspn(r->path, "?#");
	bool signup = (plen == 10 && strncmp(r->path, "/subscribe", 10) == 0 &&
		       r->method == TRACK_POST) ||
		      (plen > 9 && strncmp(r->path, "/confirm/", 9) == 0);
	if (signup) {
		track_signup(c, r, head, plen);
		return;
	}
	if (r->method == TRACK_OTHER || (r->method == TRACK_POST && strncmp(r->path, "/u/", 3))) {
		track_answer(c, 405, "text/plain; charset=utf-8",
			     r->method == TRACK_OTHER ? "Allow: GET, HEAD, POST\r\n"
						      : "Allow: GET, HEAD\r\n",
			     "method not allowed\n", 19, false, r->keep_alive);
		return;
	}
	if (strncmp(r->path, "/o/", 3) == 0)
		track_open(c, r, head);
	else if (strncmp(r->path, "/c/", 3) == 0)
		track_click(c, r, head);
	else if (strncmp(r->path, "/u/", 3) == 0)
		track_unsubscribe(c, r, head);
	else if (plen == 8 && strncmp(r->path, "/metrics", 8) == 0)
		track_metrics(c, r, head);
	else if (plen == 8 && strncmp(r->path, "/healthz", 8) == 0)
		track_text(c, 200, "ok\n", head, r->keep_alive);
	else
		track_text(c, 404, "not found\n", head, r->keep_alive);
}

static void track_timer_cb(uv_timer_t *h)
{
	struct track_conn *c = h->data;
	/* A request that did not arrive whole in time gets 408; an idle connection just
	 * goes. */
	if (c->tp && track_parser_started(c->tp) && c->writes == 0)
		track_text(c, 408, "request timeout\n", false, false);
	track_conn_close(c);
}

static void track_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct track_conn *c = h->data;
	(void)suggested;
	/* One buffer for the whole loop: each read is parsed to the end before the next. */
	buf->base = c->t->readbuf;
	buf->len = sizeof(c->t->readbuf);
}

static void track_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct track_conn *c = s->data;
	struct track *t = c->t;
	if (nread < 0) {
		track_conn_close(c);
		return;
	}
	const char *p = buf->base;
	size_t left = (size_t)nread;
	while (left > 0 && !c->closing && !c->close_after_write) {
		struct track_request *r;
		if (!c->tp)
			c->tp = track_parser_new();
		size_t used = track_parser_feed(c->tp, p, left, &r);
		p += used;
		left -= used;
		if (!r) {
			if (used == 0)
				break;
			continue;
		}
		if (r->status) {
			track_text(c, r->status, "bad request\n", false, false);
			break;
		}
		track_route(c, r);
		track_parser_next(c->tp);
		c->deadline = false;
	}
	if (c->closing)
		return;
	if (c->close_after_write) {
		track_conn_close(c);
		return;
	}
	if (c->tp && track_parser_started(c->tp)) {
		/* The deadline runs from a request's first byte; more bytes do not extend it. */
		if (!c->deadline) {
			c->deadline = true;
			uv_timer_start(&c->timer, track_timer_cb,
				       (uint64_t)t->d->cfg->tracking.request_timeout * 1000, 0);
		}
	} else {
		/* Between requests: nothing held but the connection itself. */
		track_parser_free(c->tp);
		c->tp = NULL;
		uv_timer_start(&c->timer, track_timer_cb,
			       (uint64_t)t->d->cfg->tracking.idle_timeout * 1000, 0);
	}
	if (uv_stream_get_write_queue_size(s) >= TRACK_WRITE_HIGH) {
		c->paused = true;
		uv_read_stop(s);
	}
}

static void track_refused_close_cb(uv_handle_t *h)
{
	free(h);
}

static void track_peer(struct track_conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	c->family = AF_INET;
	snprintf(c->addr_text, sizeof(c->addr_text), "unknown");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		memcpy(c->addr, &in->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		c->family = AF_INET6;
		memcpy(c->addr, &in6->sin6_addr, 16);
		/* An IPv4 client of a dual-stack socket: judge it as IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			c->family = AF_INET;
			memmove(c->addr, c->addr + 12, 4);
		}
	} else {
		return;
	}
	inet_ntop(c->family, c->addr, c->addr_text, sizeof(c->addr_text));
	for (size_t i = 0; i < c->t->nproxies && !c->trusted; i++)
		c->trusted = util_cidr_contains(&c->t->proxies[i], c->family, c->addr);
}

static void track_accept_cb(uv_stream_t *server, int status)
{
	struct track *t = server->data;
	if (status < 0) {
		log_warn("track: accept: %s", uv_strerror(status));
		return;
	}
	if (t->nconns >= t->max_conns) {
		/* Past the cap the connection is closed at once: refusing costs less than
		 * holding it, and the clients already in are served. */
		uv_tcp_t *x = xmalloc(sizeof(*x));
		uv_tcp_init(t->d->loop, x);
		if (uv_accept(server, (uv_stream_t *)x) == 0)
			t->rejected_conns++;
		uv_close((uv_handle_t *)x, track_refused_close_cb);
		return;
	}
	struct track_conn *c = xcalloc(1, sizeof(*c));
	c->t = t;
	uv_tcp_init(t->d->loop, &c->tcp);
	uv_timer_init(t->d->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	t->nconns++;
	t->handles++; /* released when the connection's memory goes */
	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		track_conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	track_peer(c);
	uv_timer_start(&c->timer, track_timer_cb, (uint64_t)t->d->cfg->tracking.idle_timeout * 1000,
		       0);
	uv_read_start((uv_stream_t *)&c->tcp, track_alloc_cb, track_read_cb);
}

/* ---------------------------------------------------------------- the group commit */

static char *track_hit_detail(const struct track_hit *h, int64_t since, double conf,
			      const char *why, bool repeat)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "confidence", conf);
	if (why)
		cJSON_AddStringToObject(d, "machine", why);
	if (repeat)
		cJSON_AddBoolToObject(d, "repeat", true);
	if (h->kind == 'c') {
		cJSON_AddNumberToObject(d, "link", h->link);
		if (h->tag && *h->tag)
			cJSON_AddStringToObject(d, "tag", h->tag);
		cJSON_AddNumberToObject(d, "burst", h->burst);
	}
	if (since >= 0)
		cJSON_AddNumberToObject(d, "since_delivery", (double)since);
	cJSON_AddStringToObject(d, "address", h->addr_text);
	cJSON_AddStringToObject(d, "user_agent", h->ua);
	char *json = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	return json;
}

/* One hit inside the group's transaction; a failure undoes this hit only. */
static int track_record(struct track *t, const struct track_hit *h)
{
	struct store *st = t->d->store;
	int64_t lead_id, sent_at;
	const char *kind = h->kind == 'o' ? "open" : "click";
	const char *why;
	char err[256];
	int rc = store_touch_hit(st, h->touch_id, &lead_id, &sent_at);
	if (rc == DRIP_ENOT_FOUND)
		return 0; /* a touch that is gone (a forgotten lead): nothing to record */
	if (rc)
		return rc;
	int64_t since = sent_at > 0 ? h->at - sent_at : -1;
	struct track_evidence e = { .kind = h->kind,
				    .since_delivery = since,
				    .ua = h->ua,
				    .family = h->family,
				    .addr = h->addr,
				    .burst = h->burst,
				    .honeypot = h->tag && strcmp(h->tag, "honeypot") == 0 };
	double conf = track_confidence(&e, &why);
	bool person = conf >= TRACK_HUMAN, repeat = false;
	/* A person's second open of the same message is kept but scores nothing: reopening
	 * is not new interest, and it is how open counts get inflated. */
	if (person && h->kind == 'o' &&
	    (rc = store_touch_has_human(st, h->touch_id, "open", &repeat)))
		return rc;
	char *detail = track_hit_detail(h, since, conf, why, repeat);
	if (!person || repeat) {
		rc = store_event_add(st, lead_id, h->touch_id, kind, h->at, detail);
	} else {
		struct lead lead;
		if ((rc = store_lead_by_id(st, lead_id, &lead)) == 0) {
			rc = journey_on_event(st, t->d->content, &lead, h->touch_id, kind, detail,
					      h->at, err, sizeof(err));
			if (rc)
				log_err("track: %s of touch %lld: %s", kind, (long long)h->touch_id,
					err);
			store_lead_clear(&lead);
		}
	}
	free(detail);
	if (rc == 0) {
		if (h->kind == 'o')
			t->opens[person]++;
		else
			t->clicks[person]++;
	}
	return rc;
}

int track_flush(struct track *t)
{
	struct store *st = t->d->store;
	int rc;
	if (!t->nqueue)
		return 0;
	uv_timer_stop(&t->commit);
	if ((rc = store_begin(st)) != 0) {
		log_err("track: cannot begin the group commit; %zu hit(s) lost", t->nqueue);
		t->dropped_hits += t->nqueue;
		goto out;
	}
	for (size_t i = 0; i < t->nqueue; i++) {
		if (store_part_begin(st) != 0)
			continue;
		int hrc = track_record(t, &t->queue[i]);
		store_part_end(st, hrc == 0);
		if (hrc)
			t->dropped_hits++;
	}
	if ((rc = store_commit(st)) != 0) {
		store_rollback(st);
		log_err("track: the group commit of %zu hit(s) failed", t->nqueue);
		t->dropped_hits += t->nqueue;
	} else if (t->d->sched) {
		/* A stage move may have scheduled a step due now. */
		sched_kick(t->d->sched);
	}
out:
	for (size_t i = 0; i < t->nqueue; i++)
		free(t->queue[i].tag);
	t->nqueue = 0;
	return rc;
}

static void track_commit_cb(uv_timer_t *h)
{
	track_flush(h->data);
}

/* ---------------------------------------------------------------- metrics feeds */

static void track_event_cb(void *arg, const struct store_event *ev)
{
	struct track *t = arg;
	size_t n = sizeof(t->events) / sizeof(t->events[0]);
	for (size_t i = 0; i < n; i++) {
		if (!t->events[i].kind) {
			/* Kinds are a small fixed vocabulary; a copy lives as long as the track. */
			t->events[i].kind = xstrdup(ev->kind);
			t->events[i].n = 1;
			return;
		}
		if (strcmp(t->events[i].kind, ev->kind) == 0) {
			t->events[i].n++;
			return;
		}
	}
	t->other_events++;
}

/* Loop lag: how long each turn of the loop was busy (its time minus the time it slept). */
static void track_prepare_cb(uv_prepare_t *h)
{
	struct track *t = h->data;
	uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(t->d->loop);
	if (t->lag_prev_ns) {
		uint64_t spent = now - t->lag_prev_ns, slept = idle - t->idle_prev_ns;
		uint64_t busy = spent > slept ? spent - slept : 0;
		if (busy > t->lag_max_ns)
			t->lag_max_ns = busy;
	}
	t->lag_prev_ns = now;
	t->idle_prev_ns = idle;
}

/* ---------------------------------------------------------------- start and stop */

/* "HOST:PORT", "[V6]:PORT" or ":PORT" (every address). */
static int track_listen_addr(const char *listen, struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(listen, ':');
	if (!colon || !colon[1])
		return DRIP_EINVALID;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return DRIP_EINVALID;
	size_t n = (size_t)(colon - listen);
	if (n >= sizeof(host))
		return DRIP_EINVALID;
	memcpy(host, listen, n);
	host[n] = '\0';
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host[n - 1] = '\0';
		return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss) == 0
			       ? 0
			       : DRIP_EINVALID;
	}
	if (n == 0)
		snprintf(host, sizeof(host), "0.0.0.0");
	return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0 ? 0 : DRIP_EINVALID;
}

/* Drops one of the references the track's own handles and its connections hold; the last
 * frees it, so a connection still shutting down after track_close finds it alive. */
static void track_release(struct track *t)
{
	if (--t->handles > 0)
		return;
	for (size_t i = 0; i < sizeof(t->events) / sizeof(t->events[0]); i++)
		free((char *)t->events[i].kind);
	for (size_t i = 0; i < t->nstages; i++)
		free(t->stages[i].stage);
	for (size_t i = 0; t->links && i < TRACK_LINK_CACHE; i++) {
		free(t->links[i].url);
		free(t->links[i].tag);
	}
	free(t->links);
	free(t->proxies);
	free(t->queue);
	free(t);
}

static void track_free_cb(uv_handle_t *h)
{
	track_release(h->data);
}

struct track *track_new(struct dripd *d, int inherited_fd, char *err, size_t errlen)
{
	const struct config *cfg = d->cfg;
	struct track *t = xcalloc(1, sizeof(*t));
	struct sockaddr_storage ss;
	struct rlimit rl;
	int rc;

	t->d = d;
	/* A client that vanishes mid-answer must cost an error code, not the process. */
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	t->max_conns = cfg->tracking.max_connections;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (int64_t)rl.rlim_cur - 64 < t->max_conns) {
		t->max_conns = (int64_t)rl.rlim_cur > 128 ? (int64_t)rl.rlim_cur - 64 : 64;
		log_warn("track: only %lld connections fit the descriptor limit (%llu)",
			 (long long)t->max_conns, (unsigned long long)rl.rlim_cur);
	}
	t->proxies = xcalloc(cfg->tracking.ntrusted_proxies + 1, sizeof(*t->proxies));
	for (size_t i = 0; i < cfg->tracking.ntrusted_proxies; i++)
		if (util_cidr_parse(cfg->tracking.trusted_proxies[i], &t->proxies[t->nproxies]))
			t->nproxies++;
	uv_loop_configure(d->loop, UV_METRICS_IDLE_TIME);
	uv_tcp_init(d->loop, &t->server);
	uv_timer_init(d->loop, &t->commit);
	uv_prepare_init(d->loop, &t->prepare);
	t->server.data = t->commit.data = t->prepare.data = t;
	t->handles = 3;
	if (inherited_fd >= 0) {
		if ((rc = uv_tcp_open(&t->server, inherited_fd)) != 0) {
			errf(err, errlen, DRIP_EIO, "tracking: cannot use the inherited socket: %s",
			     uv_strerror(rc));
			goto fail;
		}
	} else {
		if (track_listen_addr(cfg->tracking.listen, &ss) != 0) {
			errf(err, errlen, DRIP_ECONFIG,
			     "tracking: \"listen\" must be HOST:PORT or [IPV6]:PORT, not \"%s\"",
			     cfg->tracking.listen);
			goto fail;
		}
		if ((rc = uv_tcp_bind(&t->server, (struct sockaddr *)&ss, 0)) != 0) {
			errf(err, errlen, DRIP_EIO, "tracking: cannot listen on %s: %s",
			     cfg->tracking.listen, uv_strerror(rc));
			goto fail;
		}
	}
	if ((rc = uv_listen((uv_stream_t *)&t->server, 1024, track_accept_cb)) != 0) {
		errf(err, errlen, DRIP_EIO, "tracking: cannot listen on %s: %s",
		     inherited_fd >= 0 ? "the inherited socket" : cfg->tracking.listen,
		     uv_strerror(rc));
		goto fail;
	}
	store_event_listen(d->store, track_event_cb, t);
	uv_prepare_start(&t->prepare, track_prepare_cb);
	uv_unref((uv_handle_t *)&t->prepare);
	log_info("track: listening on %s",
		 inherited_fd >= 0 ? "the inherited socket" : cfg->tracking.listen);
	return t;
fail:
	t->closed = true;
	uv_close((uv_handle_t *)&t->server, track_free_cb);
	uv_close((uv_handle_t *)&t->commit, track_free_cb);
	uv_close((uv_handle_t *)&t->prepare, track_free_cb);
	return NULL;
}

void track_close(struct track *t)
{
	if (!t || t->closed)
		return;
	t->closed = true;
	track_flush(t);
	store_event_unlisten(t->d->store, track_event_cb, t);
	while (t->conns)
		track_conn_close(t->conns);
	uv_close((uv_handle_t *)&t->server, track_free_cb);
	uv_close((uv_handle_t *)&t->commit, track_free_cb);
	uv_close((uv_handle_t *)&t->prepare, track_free_cb);
}
