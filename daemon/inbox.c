/* inbox.c - IMAP polling: replies, auto-replies, bounces and complaints matched to touches. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "dripd/classify.h"
#include "dripd/error.h"
#include "dripd/inbox.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/sched.h"
#include "dripd/store.h"
#include "dripd/token.h"
#include "dripd/util.h"

/*
 * DESIGN. The IMAP client is this file's own, about 400 lines over a socket (and OpenSSL for
 * imaps://), because neither candidate could be used as is: libcurl 7.88 opens mailboxes with
 * SELECT and fetches with BODY[] (measured: a fetch set \Seen), cannot send BODY.PEEK through
 * its URL syntax, and hands a custom FETCH's literal to nobody (measured: only the line
 * "* 1 FETCH (UID 1 BODY[] {64}" came back); Debian 12's libetpan-dev depends on
 * libcurl4-gnutls-dev, which conflicts with the libcurl4-openssl-dev dripd builds with
 * (measured: installing it removed libcurl4-openssl-dev). The client speaks the few commands
 * it needs (LOGIN, EXAMINE, UID FETCH, LOGOUT) and reads every response as text with literals
 * counted by their {N} byte counts, so a literal can hold anything (CR LF, NUL, ")", a fake
 * tagged line) without the reader losing its place. Every read has a timeout; inbox_close
 * shuts the socket down to interrupt one.
 *
 * The worker and the loop meet in a small state machine under one mutex: the worker posts a
 * batch (headers, or bodies, or a new UIDVALIDITY) and waits; the loop's async callback
 * answers (which bodies it wants; that the batch is committed) and signals. Only the loop
 * touches SQLite.
 */

#define INBOX_BATCH 50 /* messages per batch */
#define INBOX_HEADER_MAX 65536 /* bytes of a header block fetched */
#define INBOX_BODY_MAX (1024 * 1024) /* bytes of a whole message fetched */
#define INBOX_LITERAL_MAX (2 * 1024 * 1024) /* larger literals are read and dropped */
#define INBOX_LINE_MAX (64 * 1024) /* a response line without its literals */
#define INBOX_IO_TIMEOUT_MS 30000
#define INBOX_BACKOFF_MAX_MS (300 * 1000)
#define INBOX_COMPANY_MAX 200 /* leads of one company a colleague's reply may stop */

enum inbox_phase {
	INBOX_IDLE, /* nothing posted */
	INBOX_RESET, /* worker: a new UIDVALIDITY; start after uid `reset_last` */
	INBOX_HEADERS, /* worker: headers of msgs; loop to set want_body */
	INBOX_BODIES, /* worker: msgs complete; loop to apply and commit */
	INBOX_ANSWERED, /* loop: done with what was posted */
};

struct inbox_msg {
	int64_t uid;
	char *data;
	size_t len;
	bool want_body;
	bool handled; /* the loop recorded an event for it (moved when inbox.move_to is set) */
};

struct inbox {
	struct dripd *d;
	uv_async_t async;
	uv_thread_t thread;
	uv_mutex_t lock;
	uv_cond_t cond;
	/* Set at start, read-only after. */
	char *url; /* the mailbox's key in the store */
	char *host, *port, *mailbox, *user, *pass;
	char *move_to; /* "" or the folder handled messages are moved to */
	bool tls;
	uint64_t poll_ms;
	/* Under lock. */
	bool stop;
	int fd; /* the socket in use, or -1: inbox_close shuts it down */
	enum inbox_phase phase;
	bool have_state;
	int64_t uidvalidity, last_uid; /* the committed position, written by the loop */
	int64_t reset_uidvalidity, reset_last;
	struct inbox_msg msgs[INBOX_BATCH];
	size_t nmsgs;
	char note[512]; /* a line for the loop to log ("" when none) */
	bool store_failed; /* the loop could not commit: the worker retries later */
};

/* ---- the connection ------------------------------------------------------------------- */

struct inbox_conn {
	struct inbox *ib;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char rbuf[16384];
	size_t rpos, rlen;
	unsigned tag;
	char err[256];
};

/* A response: its text with the literals cut out, and the literals themselves. */
struct inbox_resp {
	struct buf text; /* NUL-terminated; each literal is marked by "\x01<index>\x01" */
	struct buf lits[4]; /* the first literals of the response */
	size_t nlits;
};

static void inbox_resp_clear(struct inbox_resp *r)
{
	buf_free(&r->text);
	for (size_t i = 0; i < r->nlits; i++)
		buf_free(&r->lits[i]);
	r->nlits = 0;
}

static int inbox_fail(struct inbox_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int inbox_fail(struct inbox_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return DRIP_ETEMPFAIL;
}

static bool inbox_stopping(struct inbox *ib)
{
	uv_mutex_lock(&ib->lock);
	bool s = ib->stop;
	uv_mutex_unlock(&ib->lock);
	return s;
}

/* Waits until fd is readable (or writable); DRIP_ETEMPFAIL on timeout or error. */
static int inbox_wait_fd(struct inbox_conn *c, bool write)
{
	struct pollfd p = { .fd = c->fd, .events = write ? POLLOUT : POLLIN };
	int n;
	do
		n = poll(&p, 1, INBOX_IO_TIMEOUT_MS);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return inbox_fail(c, "no answer within %d s", INBOX_IO_TIMEOUT_MS / 1000);
	if (n < 0)
		return inbox_fail(c, "poll: %s", strerror(errno));
	return 0;
}

static int inbox_write(struct inbox_conn *c, const char *data, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n;
		if (c->ssl) {
			ERR_clear_error();
			int k = SSL_write(c->ssl, data + off, (int)(len - off));
			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);
				if ((e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) &&
				    inbox_wait_fd(c, e == SSL_ERROR_WANT_WRITE) == 0)
					continue;
				return inbox_fail(c, "TLS write failed");
			}
			n = k;
		} else {
			n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				if (inbox_wait_fd(c, true))
					return DRIP_ETEMPFAIL;
				continue;
			}
			if (n <= 0)
				return inbox_fail(c, "write: %s", strerror(errno));
		}
		off += (size_t)n;
	}
	return 0;
}

/* Refills the read buffer; DRIP_ETEMPFAIL when the server is gone or silent. */
static int inbox_fill(struct inbox_conn *c)
{
	for (;;) {
		ssize_t n;
		if (c->ssl) {
			ERR_clear_error();
			int k = SSL_read(c->ssl, c->rbuf, sizeof(c->rbuf));
			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);
				if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
				    inbox_wait_fd(c, e == SSL_ERROR_WANT_WRITE) == 0)
					continue;
				return inbox_fail(c, "the server closed the connection");
			}
			n = k;
		} else {
			n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				if (inbox_wait_fd(c, false))
					return DRIP_ETEMPFAIL;
				continue;
			}
			if (n < 0)
				return inbox_fail(c, "read: %s", strerror(errno));
			if (n == 0)
				return inbox_fail(c, "the server closed the connection");
		}
		c->rpos = 0;
		c->rlen = (size_t)n;
		return 0;
	}
}

/* Reads `n` bytes into out (NULL: dropped), keeping at most `keep` of them. */
static int inbox_read_n(struct inbox_conn *c, size_t n, struct buf *out, size_t keep)
{
	while (n) {
		if (c->rpos == c->rlen) {
			int rc = inbox_fill(c);
			if (rc)
				return rc;
		}
		size_t k = c->rlen - c->rpos < n ? c->rlen - c->rpos : n;
		if (out && out->len < keep)
			buf_add(out, c->rbuf + c->rpos, out->len + k > keep ? keep - out->len : k);
		c->rpos += k;
		n -= k;
	}
	return 0;
}

/* Reads one line (without CR LF) into out; a line longer than INBOX_LINE_MAX is an error. */
static int inbox_read_line(struct inbox_conn *c, struct buf *out)
{
	for (;;) {
		if (c->rpos == c->rlen) {
			int rc = inbox_fill(c);
			if (rc)
				return rc;
		}
		char *nl = memchr(c->rbuf + c->rpos, '\n', c->rlen - c->rpos);
		size_t k = nl ? (size_t)(nl - (c->rbuf + c->rpos)) : c->rlen - c->rpos;
		buf_add(out, c->rbuf + c->rpos, k);
		c->rpos += k;
		if (out->len > INBOX_LINE_MAX)
			return inbox_fail(c, "a response line longer than %d bytes",
					  INBOX_LINE_MAX);
		if (nl) {
			c->rpos++;
			if (out->len && out->data[out->len - 1] == '\r')
				out->data[--out->len] = '\0';
			return 0;
		}
	}
}

/*
 * Reads one whole response: a line, and whenever it ends in {N} (or {N+}), N bytes of
 * literal and the rest of the line after it.
 */
static int inbox_read_resp(struct inbox_conn *c, struct inbox_resp *r)
{
	buf_init(&r->text);
	r->nlits = 0;
	buf_adds(&r->text, "");
	for (;;) {
		size_t start = r->text.len;
		int rc = inbox_read_line(c, &r->text);
		if (rc)
			return rc;
		const char *line = r->text.data + start;
		size_t len = r->text.len - start;
		if (len < 3 || line[len - 1] != '}')
			return 0;
		const char *open = line + len - 2;
		while (open > line && *open != '{')
			open--;
		if (*open != '{')
			return 0;
		char *end;
		unsigned long long n = strtoull(open + 1, &end, 10);
		if (end == open + 1 || (*end != '}' && !(*end == '+' && end[1] == '}')))
			return 0;
		r->text.len = (size_t)(open - r->text.data);
		r->text.data[r->text.len] = '\0';
		struct buf *lit = NULL;
		if (r->nlits < sizeof(r->lits) / sizeof(r->lits[0])) {
			lit = &r->lits[r->nlits];
			buf_init(lit);
			buf_printf(&r->text, "\x01%zu\x01", r->nlits);
			r->nlits++;
		}
		if ((rc = inbox_read_n(c, (size_t)n, lit, INBOX_LITERAL_MAX)))
			return rc;
	}
}

/* Sends "<tag> <cmd>" and reads up to its tagged answer, calling fn for each untagged one. */
typedef void (*inbox_untagged_fn)(void *arg, struct inbox_resp *r);

static int inbox_cmd(struct inbox_conn *c, const char *cmd, inbox_untagged_fn fn, void *arg)
{
	char tag[16];
	snprintf(tag, sizeof(tag), "d%u", ++c->tag);
	char *line = xasprintf("%s %s\r\n", tag, cmd);
	int rc = inbox_write(c, line, strlen(line));
	free(line);
	if (rc)
		return rc;
	size_t tlen = strlen(tag);
	for (;;) {
		struct inbox_resp r;
		if ((rc = inbox_read_resp(c, &r))) {
			inbox_resp_clear(&r);
			return rc;
		}
		const char *t = r.text.data;
		if (strncmp(t, tag, tlen) == 0 && t[tlen] == ' ') {
			const char *status = t + tlen + 1;
			if (strncasecmp(status, "OK", 2) == 0) {
				inbox_resp_clear(&r);
				return 0;
			}
			/* The command word only: never echo a password. */
			const char *sp = strchr(cmd, ' ');
			inbox_fail(c, "%.*s refused: %.200s", (int)(sp ? sp - cmd : 12), cmd,
				   status);
			inbox_resp_clear(&r);
			return DRIP_EPERMFAIL;
		}
		if (strncasecmp(t, "* BYE", 5) == 0) {
			inbox_fail(c, "the server said goodbye: %.200s", t + 5);
			inbox_resp_clear(&r);
			return DRIP_ETEMPFAIL;
		}
		if (t[0] == '*' && fn)
			fn(arg, &r);
		inbox_resp_clear(&r);
	}
}

static int inbox_connect(struct inbox_conn *c)
{
	struct inbox *ib = c->ib;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
	int rc = getaddrinfo(ib->host, ib->port, &hints, &res);
	if (rc)
		return inbox_fail(c, "cannot resolve %s: %s", ib->host, gai_strerror(rc));
	c->fd = -1;
	for (ai = res; ai && c->fd < 0; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				ai->ai_protocol);
		if (fd < 0)
			continue;
		uv_mutex_lock(&ib->lock);
		if (ib->stop) {
			uv_mutex_unlock(&ib->lock);
			close(fd);
			break;
		}
		ib->fd = fd;
		uv_mutex_unlock(&ib->lock);
		c->fd = fd;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EINPROGRESS) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			if (inbox_wait_fd(c, true) == 0)
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			else
				soerr = ETIMEDOUT;
			errno = soerr;
			if (!soerr)
				break;
		} else if (errno == 0 || errno == EISCONN) {
			break;
		}
		inbox_fail(c, "cannot connect to %s:%s: %s", ib->host, ib->port, strerror(errno));
		uv_mutex_lock(&ib->lock);
		ib->fd = -1;
		uv_mutex_unlock(&ib->lock);
		close(fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		if (!c->err[0])
			inbox_fail(c, "cannot connect to %s:%s", ib->host, ib->port);
		return DRIP_ETEMPFAIL;
	}
	if (!ib->tls)
		return 0;
	if (!(c->ctx = SSL_CTX_new(TLS_client_method())))
		return inbox_fail(c, "cannot set up TLS");
	SSL_CTX_set_default_verify_paths(c->ctx);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	if (!(c->ssl = SSL_new(c->ctx)))
		return inbox_fail(c, "cannot set up TLS");
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, ib->host);
	X509_VERIFY_PARAM_set1_host(SSL_get0_param(c->ssl), ib->host, 0);
	for (;;) {
		ERR_clear_error();
		int k = SSL_connect(c->ssl);
		if (k == 1)
			return 0;
		int e = SSL_get_error(c->ssl, k);
		if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
		    inbox_wait_fd(c, e == SSL_ERROR_WANT_WRITE) == 0)
			continue;
		long v = SSL_get_verify_result(c->ssl);
		return inbox_fail(c, "TLS with %s failed%s%s", ib->host, v != X509_V_OK ? ": " : "",
				  v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
	}
}

static void inbox_disconnect(struct inbox_conn *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	c->ssl = NULL;
	c->ctx = NULL;
	if (c->fd >= 0) {
		uv_mutex_lock(&c->ib->lock);
		c->ib->fd = -1;
		uv_mutex_unlock(&c->ib->lock);
		close(c->fd);
	}
	c->fd = -1;
}

/* An IMAP quoted string of s (which has no CR or LF: the config refuses them). */
static void inbox_quote(struct buf *b, const char *s)
{
	buf_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_addc(b, '\\');
		buf_addc(b, *s);
	}
	buf_addc(b, '"');
}

/* ---- the session ----------------------------------------------------------------------- */

struct inbox_examine {
	int64_t uidvalidity, uidnext, exists;
};

static int64_t inbox_code_num(const char *t, const char *code)
{
	const char *p = strcasestr(t, code);
	return p ? strtoll(p + strlen(code), NULL, 10) : -1;
}

static void inbox_examine_cb(void *arg, struct inbox_resp *r)
{
	struct inbox_examine *e = arg;
	int64_t v;
	if ((v = inbox_code_num(r->text.data, "[UIDVALIDITY ")) >= 0)
		e->uidvalidity = v;
	if ((v = inbox_code_num(r->text.data, "[UIDNEXT ")) >= 0)
		e->uidnext = v;
	const char *ex = strcasestr(r->text.data, " EXISTS");
	if (ex && ex[7] == '\0')
		e->exists = strtoll(r->text.data + 2, NULL, 10);
}

struct inbox_fetch {
	struct inbox_msg *msgs;
	size_t n, max;
	int64_t after; /* only UIDs above this */
	bool replace; /* bodies: replace the data of the message with the same UID */
};

/* "* N FETCH (UID 12 BODY[HEADER]<0> \x010\x01)": the UID and the first literal. */
static void inbox_fetch_cb(void *arg, struct inbox_resp *r)
{
	struct inbox_fetch *f = arg;
	const char *t = r->text.data;
	const char *fetch = strcasestr(t, " FETCH (");
	if (!fetch)
		return;
	int64_t uid = -1;
	for (const char *p = fetch + 7; (p = strcasestr(p, "UID ")) != NULL; p += 4)
		if (p[-1] == '(' || p[-1] == ' ') {
			uid = strtoll(p + 4, NULL, 10);
			break;
		}
	const char *body = strcasestr(fetch, "BODY[");
	if (uid <= f->after || !body)
		return;
	const char *data = "";
	size_t len = 0;
	const char *lit = strchr(body, '\x01');
	if (lit && r->nlits > 0) {
		size_t idx = strtoul(lit + 1, NULL, 10);
		if (idx < r->nlits) {
			data = r->lits[idx].data ? r->lits[idx].data : "";
			len = r->lits[idx].len;
		}
	}
	if (f->replace) {
		for (size_t i = 0; i < f->n; i++)
			if (f->msgs[i].uid == uid) {
				free(f->msgs[i].data);
				f->msgs[i].data = xstrndup(data, len);
				f->msgs[i].len = len;
			}
		return;
	}
	for (size_t i = 0; i < f->n; i++)
		if (f->msgs[i].uid == uid)
			return;
	if (f->n >= f->max)
		return;
	f->msgs[f->n].uid = uid;
	f->msgs[f->n].data = xstrndup(data, len);
	f->msgs[f->n].len = len;
	f->msgs[f->n].want_body = false;
	f->n++;
}

static void inbox_msgs_free(struct inbox_msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].data);
		m[i].data = NULL;
	}
}

/* Posts the batch to the loop and waits for its answer: 0, DRIP_EBUSY when stopping, or
 * DRIP_ESTORE when the loop could not record it (the worker backs off and reads it again). */
static int inbox_post(struct inbox_conn *c, struct inbox *ib, enum inbox_phase phase)
{
	uv_mutex_lock(&ib->lock);
	ib->phase = phase;
	ib->store_failed = false;
	uv_mutex_unlock(&ib->lock);
	uv_async_send(&ib->async);
	uv_mutex_lock(&ib->lock);
	while (ib->phase != INBOX_ANSWERED && !ib->stop)
		uv_cond_wait(&ib->cond, &ib->lock);
	int rc = ib->stop ? DRIP_EBUSY : ib->store_failed ? DRIP_ESTORE : 0;
	ib->phase = INBOX_IDLE;
	uv_mutex_unlock(&ib->lock);
	if (rc == DRIP_ESTORE)
		inbox_fail(c, "the database could not record what was read");
	return rc;
}

static void inbox_note(struct inbox *ib, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void inbox_note(struct inbox *ib, const char *fmt, ...)
{
	va_list ap;
	uv_mutex_lock(&ib->lock);
	va_start(ap, fmt);
	vsnprintf(ib->note, sizeof(ib->note), fmt, ap);
	va_end(ap);
	uv_mutex_unlock(&ib->lock);
	uv_async_send(&ib->async);
}

/*
 * Moves the handled messages (already committed) to inbox.move_to: the mailbox is selected
 * read-write for this only, and UID MOVE (RFC 6851) keeps their flags, so they stay unread.
 * A failure leaves them where they are, logged.
 */
static void inbox_move(struct inbox *ib, struct inbox_conn *c, const char *uids)
{
	struct buf cmd;
	buf_init(&cmd);
	buf_adds(&cmd, "SELECT ");
	inbox_quote(&cmd, ib->mailbox);
	int rc = inbox_cmd(c, cmd.data, NULL, NULL);
	buf_free(&cmd);
	for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
		buf_printf(&cmd, "UID MOVE %s ", uids);
		inbox_quote(&cmd, ib->move_to);
		rc = inbox_cmd(c, cmd.data, NULL, NULL);
		buf_free(&cmd);
		if (rc != DRIP_EPERMFAIL || attempt)
			break;
		/* [TRYCREATE]: the folder does not exist yet. */
		buf_adds(&cmd, "CREATE ");
		inbox_quote(&cmd, ib->move_to);
		rc = inbox_cmd(c, cmd.data, NULL, NULL);
		buf_free(&cmd);
	}
	if (rc)
		inbox_note(ib, "inbox: cannot move handled mail to %s: %s", ib->move_to, c->err);
}

/* One poll: connect, log in, examine, fetch and hand over everything new, log out. */
static int inbox_session(struct inbox *ib, struct inbox_conn *c)
{
	struct inbox_resp greet;
	struct buf cmd;
	int rc;
	buf_init(&cmd);
	if ((rc = inbox_connect(c)))
		return rc;
	if ((rc = inbox_read_resp(c, &greet)) == 0 &&
	    strncasecmp(greet.text.data, "* OK", 4) != 0 &&
	    strncasecmp(greet.text.data, "* PREAUTH", 9) != 0)
		rc = inbox_fail(c, "unexpected greeting: %.100s", greet.text.data);
	bool preauth = rc == 0 && strncasecmp(greet.text.data, "* PREAUTH", 9) == 0;
	inbox_resp_clear(&greet);
	if (rc)
		return rc;
	if (!preauth) {
		buf_adds(&cmd, "LOGIN ");
		inbox_quote(&cmd, ib->user);
		buf_addc(&cmd, ' ');
		inbox_quote(&cmd, ib->pass);
		rc = inbox_cmd(c, cmd.data, NULL, NULL);
		buf_free(&cmd);
		if (rc)
			return rc;
	}
	struct inbox_examine ex = { -1, -1, -1 };
	buf_adds(&cmd, "EXAMINE ");
	inbox_quote(&cmd, ib->mailbox);
	rc = inbox_cmd(c, cmd.data, inbox_examine_cb, &ex);
	buf_free(&cmd);
	if (rc)
		return rc;
	if (ex.uidvalidity <= 0)
		return inbox_fail(c, "the server named no UIDVALIDITY for %s", ib->mailbox);

	uv_mutex_lock(&ib->lock);
	bool have = ib->have_state && ib->uidvalidity == ex.uidvalidity;
	int64_t last = ib->last_uid;
	uv_mutex_unlock(&ib->lock);
	if (!have) {
		/* First look at this mailbox, or its UIDs were renumbered: what is there now is
		 * left alone, and everything that arrives from here on is read. */
		int64_t start = ex.uidnext > 0 ? ex.uidnext - 1 : 0;
		uv_mutex_lock(&ib->lock);
		ib->reset_uidvalidity = ex.uidvalidity;
		ib->reset_last = start;
		uv_mutex_unlock(&ib->lock);
		if ((rc = inbox_post(c, ib, INBOX_RESET)))
			return rc;
		last = start;
	}
	struct buf moved;
	buf_init(&moved);
	for (;;) {
		if (ex.uidnext > 0 && last + 1 >= ex.uidnext)
			break;
		struct inbox_fetch f = { ib->msgs, 0, INBOX_BATCH, last, false };
		char q[160];
		snprintf(q, sizeof(q), "UID FETCH %lld:%lld (UID BODY.PEEK[HEADER]<0.%d>)",
			 (long long)last + 1, (long long)last + INBOX_BATCH, INBOX_HEADER_MAX);
		/* The worker owns msgs while no batch is posted. */
		if ((rc = inbox_cmd(c, q, inbox_fetch_cb, &f))) {
			inbox_msgs_free(ib->msgs, f.n);
			buf_free(&moved);
			return rc;
		}
		if (f.n == 0) {
			/* A gap of expunged UIDs, or the end. */
			if (ex.uidnext > 0 && last + INBOX_BATCH < ex.uidnext - 1) {
				last += INBOX_BATCH;
				continue;
			}
			break;
		}
		/* Oldest first, so the committed last UID never skips one. */
		for (size_t i = 1; i < f.n; i++)
			for (size_t j = i; j > 0 && ib->msgs[j - 1].uid > ib->msgs[j].uid; j--) {
				struct inbox_msg m = ib->msgs[j];
				ib->msgs[j] = ib->msgs[j - 1];
				ib->msgs[j - 1] = m;
			}
		uv_mutex_lock(&ib->lock);
		ib->nmsgs = f.n;
		uv_mutex_unlock(&ib->lock);
		if ((rc = inbox_post(c, ib, INBOX_HEADERS))) {
			inbox_msgs_free(ib->msgs, f.n);
			buf_free(&moved);
			return rc;
		}
		buf_init(&cmd);
		for (size_t i = 0; i < f.n; i++)
			if (ib->msgs[i].want_body)
				buf_printf(&cmd, "%s%lld", cmd.len ? "," : "",
					   (long long)ib->msgs[i].uid);
		if (cmd.len) {
			char *fq = xasprintf("UID FETCH %s (UID BODY.PEEK[]<0.%d>)", cmd.data,
					     INBOX_BODY_MAX);
			struct inbox_fetch fb = { ib->msgs, f.n, INBOX_BATCH, 0, true };
			rc = inbox_cmd(c, fq, inbox_fetch_cb, &fb);
			free(fq);
		}
		buf_free(&cmd);
		for (size_t i = 0; i < f.n; i++)
			ib->msgs[i].handled = false;
		if (rc || (rc = inbox_post(c, ib, INBOX_BODIES))) {
			inbox_msgs_free(ib->msgs, f.n);
			buf_free(&moved);
			return rc;
		}
		for (size_t i = 0; i < f.n; i++)
			if (ib->msgs[i].handled)
				buf_printf(&moved, "%s%lld", moved.len ? "," : "",
					   (long long)ib->msgs[i].uid);
		last = ib->msgs[f.n - 1].uid;
		inbox_msgs_free(ib->msgs, f.n);
	}
	if (moved.len && ib->move_to[0])
		inbox_move(ib, c, moved.data);
	buf_free(&moved);
	inbox_cmd(c, "LOGOUT", NULL, NULL);
	return 0;
}

/* Sleeps up to ms of machine time; false when told to stop. */
static bool inbox_sleep(struct inbox *ib, uint64_t ms)
{
	uint64_t until = uv_hrtime() + ms * 1000000ull;
	uv_mutex_lock(&ib->lock);
	while (!ib->stop) {
		uint64_t now = uv_hrtime();
		if (now >= until)
			break;
		uv_cond_timedwait(&ib->cond, &ib->lock, until - now);
	}
	bool ok = !ib->stop;
	uv_mutex_unlock(&ib->lock);
	return ok;
}

static void inbox_thread(void *arg)
{
	struct inbox *ib = arg;
	uint64_t backoff = 1000;
	bool down = false;
	while (!inbox_stopping(ib)) {
		struct inbox_conn c = { .ib = ib, .fd = -1 };
		int rc = inbox_session(ib, &c);
		inbox_disconnect(&c);
		if (rc == DRIP_EBUSY || inbox_stopping(ib))
			break;
		if (rc) {
			if (!down)
				inbox_note(ib, "inbox: %s: %s; retrying with backoff", ib->host,
					   c.err[0] ? c.err : drip_strerror(rc));
			down = true;
			if (!inbox_sleep(ib, backoff))
				break;
			backoff = backoff * 2 > INBOX_BACKOFF_MAX_MS ? INBOX_BACKOFF_MAX_MS
								     : backoff * 2;
			continue;
		}
		if (down)
			inbox_note(ib, "inbox: %s: reachable again", ib->host);
		down = false;
		backoff = 1000;
		uv_async_send(&ib->async);
		if (!inbox_sleep(ib, ib->poll_ms))
			break;
	}
}

/* ---- the loop side --------------------------------------------------------------------- */

static cJSON *inbox_detail(const struct classify_result *r, enum inbox_match how)
{
	static const char *const hows[] = { "none",      "token",  "thread",
					    "recipient", "sender", "company" };
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "source", "inbox");
	cJSON_AddStringToObject(o, "matched_by", hows[how]);
	if (r->from[0])
		cJSON_AddStringToObject(o, "from", r->from);
	if (r->subject[0])
		cJSON_AddStringToObject(o, "subject", r->subject);
	if (r->message_id[0])
		cJSON_AddStringToObject(o, "message_id", r->message_id);
	return o;
}

/* The lead and touch a message is about; *how says by what. */
static int inbox_match(struct dripd *d, const struct classify_result *r, struct lead *lead,
		       struct touch *t, enum inbox_match *how)
{
	int rc;
	bool report = r->kind == CLASSIFY_BOUNCE || r->kind == CLASSIFY_SOFT_BOUNCE ||
		      r->kind == CLASSIFY_COMPLAINT;
	*how = INBOX_MATCH_NONE;
	memset(t, 0, sizeof(*t));
	memset(lead, 0, sizeof(*lead));
	/* A signed address first: it cannot be forged or mistaken. A report that carries a
	 * reply+/bounce+ tag none of whose tags verify is forged (every report to dripd's own
	 * bounce address carries a good one): it may still match by thread, which takes the
	 * returned message's Message-ID, but never by the recipient it names. */
	bool forged = r->ntokens > 0;
	for (size_t i = 0; d->keys && i < r->ntokens && *how == INBOX_MATCH_NONE; i++) {
		struct token_claims cl;
		if (token_verify(d->keys, r->tokens[i].token, strlen(r->tokens[i].token),
				 TOKEN_ADDRESS, &cl) != 0 ||
		    (char)cl.kind != r->tokens[i].kind)
			continue;
		forged = false;
		if ((rc = store_touch_get(d->store, cl.touch_id, t)) == 0)
			*how = INBOX_MATCH_TOKEN;
		else if (rc != DRIP_ENOT_FOUND)
			return rc;
	}
	/* Threading: the reply's references, or the returned message's own Message-ID. */
	const char *ids[CLASSIFY_REFS_MAX + 1];
	size_t nids = 0;
	if (r->original_id[0])
		ids[nids++] = r->original_id;
	for (size_t i = 0; i < r->nrefs; i++)
		ids[nids++] = r->refs[i];
	for (size_t i = 0; i < nids && *how == INBOX_MATCH_NONE; i++) {
		if ((rc = store_touch_by_message_id(d->store, ids[i], t)) == 0)
			*how = INBOX_MATCH_THREAD;
		else if (rc != DRIP_ENOT_FOUND)
			return rc;
	}
	if (report && forged && *how == INBOX_MATCH_NONE) {
		log_warn("inbox: a %s report with a reply+/bounce+ tag that does not verify: "
			 "ignored (forged, or signed with a secret no longer configured)",
			 r->kind == CLASSIFY_COMPLAINT ? "complaint" : "bounce");
		return 0;
	}
	/* A report names its recipient: that lead, whatever the touch says. */
	if (report && r->recipient[0]) {
		rc = store_lead_by_email(d->store, r->recipient, lead);
		if (rc == 0) {
			if (*how == INBOX_MATCH_NONE)
				*how = INBOX_MATCH_RECIPIENT;
			if (t->id && t->lead_id != lead->id) {
				store_touch_clear(t);
				memset(t, 0, sizeof(*t));
			}
			return 0;
		}
		if (rc != DRIP_ENOT_FOUND)
			return rc;
	}
	if (*how != INBOX_MATCH_NONE)
		return store_lead_by_id(d->store, t->lead_id, lead);
	if (report || !r->from[0])
		return 0;
	rc = store_lead_by_email(d->store, r->from, lead);
	if (rc == 0)
		*how = INBOX_MATCH_SENDER;
	return rc == DRIP_ENOT_FOUND ? 0 : rc;
}

struct inbox_company {
	int64_t ids[64];
	size_t n;
};

/* Applies one effect to one lead; a journey error is logged and skipped, not fatal. */
static int inbox_event(struct dripd *d, struct lead *lead, int64_t touch_id, const char *kind,
		       cJSON *detail, int64_t now)
{
	char err[256];
	char *json = cJSON_PrintUnformatted(detail);
	int rc = journey_on_event(d->store, d->content, lead, touch_id, kind, json, now, err,
				  sizeof(err));
	free(json);
	if (rc)
		log_err("inbox: %s: cannot record %s: %s", lead->email, kind, err);
	else
		log_info("inbox: %s: %s", lead->email, kind);
	return rc;
}

/*
 * A reply from someone who is not a lead, on no thread of ours, from a company domain (never
 * a free-mail one): with inbox.colleague "lead" it counts for the company's lead when there is
 * exactly one, with "company" for every active lead there; "ignore" leaves it alone.
 */
static int inbox_company_reply(struct dripd *d, const struct classify_result *r, int64_t now,
			       enum inbox_match *matched)
{
	const char *mode = d->cfg->inbox.colleague;
	const char *at = strrchr(r->from, '@');
	int64_t ids[INBOX_COMPANY_MAX];
	size_t n = 0;
	int rc;
	if (matched)
		*matched = INBOX_MATCH_NONE;
	if (strcmp(mode, "ignore") == 0 || !at || !at[1] || classify_free_mail(at + 1))
		goto alone;
	if ((rc = store_leads_by_domain(d->store, at + 1, ids, INBOX_COMPANY_MAX, &n)))
		return rc;
	if (n == 0 || (strcmp(mode, "lead") == 0 && n != 1))
		goto alone;
	for (size_t i = 0; i < n; i++) {
		struct lead lead;
		if ((rc = store_lead_by_id(d->store, ids[i], &lead)))
			return rc;
		cJSON *detail = inbox_detail(r, INBOX_MATCH_COMPANY);
		cJSON_AddBoolToObject(detail, "colleague", true);
		cJSON_AddStringToObject(detail, "excerpt", r->excerpt);
		rc = inbox_event(d, &lead, 0, "reply", detail, now);
		cJSON_Delete(detail);
		store_lead_clear(&lead);
		if (rc)
			return rc;
	}
	if (matched)
		*matched = INBOX_MATCH_COMPANY;
	return 0;
alone:
	log_info("inbox: left alone: reply from <%s> \"%s\" (no lead)", r->from, r->subject);
	return 0;
}

int inbox_apply(struct dripd *d, const char *data, size_t len, int64_t now,
		enum inbox_match *matched)
{
	struct classify_result *r = xmalloc(sizeof(*r));
	struct lead lead;
	struct touch t;
	enum inbox_match how;
	int rc;
	classify_message(data, len, now, r);
	if ((rc = inbox_match(d, r, &lead, &t, &how)))
		goto done;
	if (matched)
		*matched = how;
	if (how == INBOX_MATCH_NONE && r->kind == CLASSIFY_REPLY) {
		rc = inbox_company_reply(d, r, now, matched);
		goto done;
	}
	if (how == INBOX_MATCH_NONE || r->kind == CLASSIFY_UNKNOWN) {
		log_info("inbox: left alone: %s from <%s> \"%s\" (%s)", classify_kind_name(r->kind),
			 r->from, r->subject, how == INBOX_MATCH_NONE ? "no lead" : "unknown kind");
		if (matched)
			*matched = INBOX_MATCH_NONE;
		goto done;
	}
	cJSON *detail = inbox_detail(r, how);
	switch (r->kind) {
	case CLASSIFY_REPLY:
		if (strcasecmp(r->from, lead.email) != 0)
			cJSON_AddBoolToObject(detail, "colleague", true);
		if (r->unsubscribe && strcasecmp(r->from, lead.email) == 0) {
			cJSON_AddStringToObject(detail, "via", "mailto");
			rc = inbox_event(d, &lead, t.id, "unsubscribe", detail, now);
			break;
		}
		cJSON_AddStringToObject(detail, "excerpt", r->excerpt);
		rc = inbox_event(d, &lead, t.id, "reply", detail, now);
		break;
	case CLASSIFY_AUTO_REPLY: {
		struct touch next;
		char day[16] = "";
		int64_t resume = now + d->cfg->inbox.auto_reply_pause;
		cJSON_AddStringToObject(detail, "reason", r->auto_reason);
		if (r->return_date > 0) {
			time_t tt = (time_t)r->return_date;
			struct tm tm;
			gmtime_r(&tt, &tm);
			strftime(day, sizeof(day), "%Y-%m-%d", &tm);
			cJSON_AddStringToObject(detail, "return_date", day);
			resume = r->return_date + 86400;
		}
		if ((rc = store_touch_next_for_lead(d->store, lead.id, &next)) == 0) {
			if (next.due_at < resume &&
			    (rc = store_touch_set_due(d->store, next.id, resume, now)) == 0)
				cJSON_AddNumberToObject(detail, "next_touch_at", (double)resume);
			store_touch_clear(&next);
		}
		if (rc == DRIP_ENOT_FOUND)
			rc = 0;
		if (rc == 0)
			rc = inbox_event(d, &lead, t.id, "auto_reply", detail, now);
		break;
	}
	case CLASSIFY_BOUNCE:
	case CLASSIFY_SOFT_BOUNCE:
	case CLASSIFY_COMPLAINT:
		if (r->recipient[0])
			cJSON_AddStringToObject(detail, "recipient", r->recipient);
		if (r->status[0])
			cJSON_AddStringToObject(detail, "status", r->status);
		if (r->diagnostic[0])
			cJSON_AddStringToObject(detail, "diagnostic", r->diagnostic);
		if (r->kind == CLASSIFY_SOFT_BOUNCE) {
			int64_t n = 0;
			rc = inbox_event(d, &lead, t.id, "soft_bounce", detail, now);
			if (rc == 0 &&
			    (rc = store_lead_count_events(d->store, lead.id, "soft_bounce", &n)) ==
				    0 &&
			    n >= d->cfg->inbox.soft_bounce_limit) {
				cJSON *hard = cJSON_CreateObject();
				cJSON_AddStringToObject(hard, "source", "inbox");
				char why[96];
				snprintf(why, sizeof(why), "%lld soft bounces", (long long)n);
				cJSON_AddStringToObject(hard, "reason", why);
				rc = inbox_event(d, &lead, t.id, "bounce", hard, now);
				cJSON_Delete(hard);
			}
		} else {
			rc = inbox_event(d, &lead, t.id, classify_kind_name(r->kind), detail, now);
		}
		break;
	case CLASSIFY_UNKNOWN:
		break;
	}
	cJSON_Delete(detail);
done:
	store_lead_clear(&lead);
	store_touch_clear(&t);
	free(r);
	return rc;
}

/* Headers are in: which messages need their bodies (those of a lead, and reports). */
static void inbox_decide(struct inbox *ib)
{
	struct dripd *d = ib->d;
	struct classify_result *r = xmalloc(sizeof(*r));
	for (size_t i = 0; i < ib->nmsgs; i++) {
		struct lead lead;
		struct touch t;
		enum inbox_match how = INBOX_MATCH_NONE;
		classify_message(ib->msgs[i].data, ib->msgs[i].len, clock_now(&d->clock), r);
		bool report = strcasestr(ib->msgs[i].data ? ib->msgs[i].data : "",
					 "multipart/report") != NULL;
		if (inbox_match(d, r, &lead, &t, &how) != 0)
			how = INBOX_MATCH_SENDER; /* cannot tell: fetch it and decide later */
		store_lead_clear(&lead);
		store_touch_clear(&t);
		/* A colleague's reply needs its text too, when the company has leads. */
		const char *at = strrchr(r->from, '@');
		size_t n = 0;
		int64_t one;
		if (how == INBOX_MATCH_NONE && r->kind == CLASSIFY_REPLY && at && at[1] &&
		    strcmp(d->cfg->inbox.colleague, "ignore") != 0 && !classify_free_mail(at + 1) &&
		    store_leads_by_domain(d->store, at + 1, &one, 1, &n) == 0 && n > 0)
			how = INBOX_MATCH_COMPANY;
		ib->msgs[i].want_body = report || how != INBOX_MATCH_NONE;
	}
	free(r);
}

static void inbox_commit_batch(struct inbox *ib, enum inbox_phase phase)
{
	struct dripd *d = ib->d;
	int64_t now = clock_now(&d->clock);
	int64_t uidvalidity = phase == INBOX_RESET ? ib->reset_uidvalidity : ib->uidvalidity;
	int64_t last = phase == INBOX_RESET ? ib->reset_last : ib->msgs[ib->nmsgs - 1].uid;
	size_t done = 0, unmatched = 0;
	int rc = store_begin(d->store);
	if (rc == 0)
		rc = store_inbox_state_set(d->store, ib->url, uidvalidity, last);
	for (size_t i = 0; phase == INBOX_BODIES && rc == 0 && i < ib->nmsgs; i++) {
		enum inbox_match how = INBOX_MATCH_NONE;
		if ((rc = store_part_begin(d->store)))
			break;
		int arc = inbox_apply(d, ib->msgs[i].data ? ib->msgs[i].data : "", ib->msgs[i].len,
				      now, &how);
		if (arc) {
			/* This one message is given up (logged), not the batch. */
			log_err("inbox: uid %lld: %s; left alone", (long long)ib->msgs[i].uid,
				drip_strerror(arc));
			how = INBOX_MATCH_NONE;
		}
		rc = store_part_end(d->store, arc == 0);
		ib->msgs[i].handled = arc == 0 && how != INBOX_MATCH_NONE;
		if (how == INBOX_MATCH_NONE) {
			unmatched++;
			if (rc == 0)
				rc = store_inbox_unmatched(d->store, ib->url);
		}
		done++;
	}
	if (rc == 0)
		rc = store_commit(d->store);
	if (rc) {
		store_rollback(d->store);
		log_err("inbox: cannot record the batch: %s; it will be read again",
			drip_strerror(rc));
		ib->store_failed = true;
		return;
	}
	ib->have_state = true;
	ib->uidvalidity = uidvalidity;
	ib->last_uid = last;
	if (phase == INBOX_RESET)
		log_info("inbox: watching %s (uidvalidity %lld), new mail after uid %lld", ib->url,
			 (long long)uidvalidity, (long long)last);
	else
		log_info("inbox: %zu message(s) read up to uid %lld, %zu left alone", done,
			 (long long)last, unmatched);
	if (d->sched)
		sched_kick(d->sched);
}

static void inbox_async_cb(uv_async_t *h)
{
	struct inbox *ib = h->data;
	char note[sizeof(ib->note)];
	uv_mutex_lock(&ib->lock);
	enum inbox_phase phase = ib->phase;
	memcpy(note, ib->note, sizeof(note));
	ib->note[0] = '\0';
	uv_mutex_unlock(&ib->lock);
	if (note[0])
		log_warn("%s", note);
	if (phase != INBOX_RESET && phase != INBOX_HEADERS && phase != INBOX_BODIES)
		return;
	/* The worker waits for the answer, so the batch is the loop's until it is given. */
	if (phase == INBOX_HEADERS)
		inbox_decide(ib);
	else
		inbox_commit_batch(ib, phase);
	uv_mutex_lock(&ib->lock);
	ib->phase = INBOX_ANSWERED;
	uv_cond_broadcast(&ib->cond);
	uv_mutex_unlock(&ib->lock);
}

static void inbox_free_cb(uv_handle_t *h)
{
	struct inbox *ib = h->data;
	uv_mutex_destroy(&ib->lock);
	uv_cond_destroy(&ib->cond);
	free(ib->url);
	free(ib->host);
	free(ib->port);
	free(ib->mailbox);
	free(ib->user);
	free(ib->move_to);
	if (ib->pass)
		memset(ib->pass, 0, strlen(ib->pass));
	free(ib->pass);
	free(ib);
}

/* Splits imap[s]://[user@]host[:port][/mailbox]; false when it is not usable. */
static bool inbox_parse_url(struct inbox *ib, const char *url)
{
	ib->tls = strncmp(url, "imaps://", 8) == 0;
	const char *p = url + (ib->tls ? 8 : 7);
	const char *slash = strchr(p, '/');
	const char *hostend = slash ? slash : p + strlen(p);
	const char *at = memchr(p, '@', (size_t)(hostend - p));
	if (at)
		p = at + 1;
	const char *colon = NULL;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(hostend - p));
		if (!rb)
			return false;
		ib->host = xstrndup(p + 1, (size_t)(rb - p - 1));
		colon = rb + 1 < hostend && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', (size_t)(hostend - p));
		ib->host = xstrndup(p, (size_t)((colon ? colon : hostend) - p));
	}
	ib->port = colon ? xstrndup(colon + 1, (size_t)(hostend - colon - 1))
			 : xstrdup(ib->tls ? "993" : "143");
	ib->mailbox = slash && slash[1] ? xstrdup(slash + 1) : xstrdup("INBOX");
	/* %XX escapes in the mailbox name (RFC 5092). */
	char *o = ib->mailbox;
	for (const char *s = ib->mailbox; *s; s++) {
		int hi, lo;
		if (*s == '%' && s[1] && s[2] && (hi = s[1]) && (lo = s[2]) &&
		    strchr("0123456789abcdefABCDEF", hi) && strchr("0123456789abcdefABCDEF", lo)) {
			char hex[3] = { (char)hi, (char)lo, 0 };
			*o++ = (char)strtol(hex, NULL, 16);
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return ib->host[0] && ib->port[0] && !strpbrk(ib->mailbox, "\r\n");
}

static char *inbox_read_password(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char line[1024];
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	char *p = xstrdup(line);
	memset(line, 0, sizeof(line));
	return p;
}

struct inbox *inbox_new(struct dripd *d)
{
	const struct config *cfg = d->cfg;
	if (!cfg->inbox.url[0])
		return NULL;
	struct inbox *ib = xcalloc(1, sizeof(*ib));
	ib->d = d;
	ib->fd = -1;
	ib->url = xstrdup(cfg->inbox.url);
	if (!inbox_parse_url(ib, cfg->inbox.url))
		log_fatal("inbox: cannot use the url %s", cfg->inbox.url);
	ib->user = xstrdup(cfg->inbox.username);
	ib->move_to = xstrdup(cfg->inbox.move_to);
	if (cfg->inbox.password_file[0]) {
		if (!(ib->pass = inbox_read_password(cfg->inbox.password_file)))
			log_fatal("inbox: cannot read the password file %s: %s",
				  cfg->inbox.password_file, strerror(errno));
	} else {
		ib->pass = xstrdup("");
	}
	ib->poll_ms = (uint64_t)cfg->inbox.poll * 1000;
	int64_t unmatched = 0;
	int rc = store_inbox_state(d->store, ib->url, &ib->uidvalidity, &ib->last_uid, &unmatched);
	if (rc && rc != DRIP_ENOT_FOUND)
		log_fatal("inbox: cannot read where the inbox left off");
	ib->have_state = rc == 0;
	uv_mutex_init(&ib->lock);
	uv_cond_init(&ib->cond);
	uv_async_init(d->loop, &ib->async, inbox_async_cb);
	ib->async.data = ib;
	if (uv_thread_create(&ib->thread, inbox_thread, ib) != 0)
		log_fatal("inbox: cannot start the inbox thread");
	log_info("inbox: polling %s every %llds as %s", ib->url, (long long)cfg->inbox.poll,
		 ib->user[0] ? ib->user : "(no login)");
	return ib;
}

void inbox_close(struct inbox *ib)
{
	if (!ib)
		return;
	uv_mutex_lock(&ib->lock);
	ib->stop = true;
	if (ib->fd >= 0)
		shutdown(ib->fd, SHUT_RDWR);
	uv_cond_broadcast(&ib->cond);
	uv_mutex_unlock(&ib->lock);
	uv_thread_join(&ib->thread);
	inbox_msgs_free(ib->msgs, INBOX_BATCH);
	uv_close((uv_handle_t *)&ib->async, inbox_free_cb);
}
