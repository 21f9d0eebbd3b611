/* mailer.c - the sender threads, the job hand-over and the uv_async hand-back. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "dripd/error.h"
#include "dripd/log.h"
#include "dripd/maildir.h"
#include "dripd/mailer.h"
#include "dripd/util.h"

/*
 * DESIGN. A sender waits for the server's answers (and libcurl's own SMTP blocks its caller
 * for the final dot's even in the multi interface, curl issue #8555), so delivery runs on
 * threads and the loop never waits for a server.
 * Each thread has a slot of its own (a job and a semaphore), and the loop hands a job to an
 * idle thread's slot, so a hand-over wakes exactly that thread and contends with nobody
 * else (one shared queue had nine threads on one mutex: lock wake-ups were a sixth of the
 * loop's system time). A semaphore, not a mutex and a condition variable: the loop posts
 * once and the thread wakes once, where the condition variable's woken thread often found
 * the loop still holding the mutex and slept on it again (4.4 futex calls a message).
 * Outcomes come back on a lock-free stack; the pushing thread then calls uv_async_send,
 * which wakes the loop once however many pushed, and the loop drains every outcome in one
 * callback. The Maildir path runs on the same threads, so fsync never stalls the loop
 * either.
 */

#define MAILER_MAX_CONN 64

struct mailer_node {
	struct mailer_node *next;
	struct mailer_job *job;
	size_t thread; /* the slot it ran on */
	struct mailer_result result;
	uint64_t send_ns, done_at; /* set by the thread: the delivery's length, its end */
};

struct mailer;

struct mailer_slot {
	struct mailer *m;
	size_t index;
	uv_thread_t thread;
	uv_sem_t posted; /* one post a job, one for stopping */
	_Atomic(struct mailer_node *) job;
	atomic_bool stopping;
};

struct mailer {
	uv_loop_t *loop;
	uv_async_t async;
	struct mailer_slot slots[MAILER_MAX_CONN];
	size_t nthreads;
	size_t busy; /* loop thread only */
	size_t idle[MAILER_MAX_CONN], nidle; /* loop thread only: slots without a job */
	struct mailer_node *backlog, *backlog_tail; /* loop thread only: none idle at submit */
	uint64_t done_at[MAILER_MAX_CONN]; /* loop thread only: a slot's last outcome, 0 none */
	uint64_t jobs, send_ns, between_ns; /* loop thread only: mailer_times */
	_Atomic(struct mailer_node *) results; /* a stack, newest first */
	mailer_result_cb cb;
	mailer_batch_cb batch_cb;
	void *arg;
	char *maildir; /* the Maildir path, or NULL for SMTP */
	char *url;
	char *username; /* NULL without AUTH */
	char *ca_file; /* NULL: the system's certificates */
	char *password;
	long connect_timeout_ms, reply_timeout_s, transfer_timeout_ms;
};

void mailer_job_free(struct mailer_job *job)
{
	if (!job)
		return;
	free(job->envelope_from);
	free(job->rcpt);
	free(job->data);
	free(job);
}

static void mailer_deliver_maildir(struct mailer *m, struct mailer_node *n)
{
	struct mailer_result *r = &n->result;
	char name[512];
	if (maildir_deliver(m->maildir, n->job->data, n->job->len, name, sizeof(name), r->detail,
			    sizeof(r->detail)) == 0) {
		r->outcome = MAILER_OK;
		snprintf(r->detail, sizeof(r->detail), "maildir: new/%.200s", name);
	} else {
		/* A full or unwritable disk is a reason to try later, like an SMTP 4xx. */
		r->outcome = MAILER_TEMPFAIL;
	}
}

/*
 * A sender thread's SMTP connection. libcurl opens it and greets the server
 * (CURLOPT_CONNECT_ONLY: TCP or TLS, EHLO, STARTTLS, AUTH); the thread then speaks the
 * envelope and the data itself with curl_easy_send and curl_easy_recv. libcurl's own SMTP
 * sends each command alone and waits for each answer, and its transfer machinery costs
 * ~9 polls a message: the delivery benchmark's curl_ref needs 105 us of CPU and 4.3
 * context switches a message where a sender speaking pipelined SMTP needs 31 us and 1.6
 * (tests/bench/loop_ref.c). With PIPELINING (RFC 2920) MAIL, RCPT and DATA go in one write
 * and the message with its final dot in another: two round trips a message, not four.
 */
struct mailer_conn {
	CURL *e; /* NULL: not connected */
	curl_socket_t fd;
	bool pipelining, size, smtputf8; /* what the server's EHLO offered */
	char in[2048]; /* received bytes not yet taken as replies */
	size_t inlen;
	char *buf; /* the message as DATA carries it (mailer_dot_stuff) */
	size_t bufcap;
};

struct mailer_reply {
	int code; /* 0: no reply (the connection was lost or timed out) */
	char text[200]; /* the reply's last line, or what went wrong */
};

/* Whether an EHLO reply line ("250-PIPELINING\r\n") offers `word`, alone or with
 * parameters ("250-SIZE 10240000"). */
static bool mailer_ehlo_offers(const char *line, size_t size, const char *word)
{
	size_t n = strlen(word);
	return size >= 4 + n && strncasecmp(line + 4, word, n) == 0 &&
	       (size == 4 + n || memchr("\r\n ", line[4 + n], 3));
}

/* libcurl's trace while it connects: the server's EHLO lines say what it offers. Only the
 * last EHLO's count (after STARTTLS a server may offer other things). */
static int mailer_trace_cb(CURL *e, curl_infotype type, char *data, size_t size, void *arg)
{
	struct mailer_conn *c = arg;
	(void)e;
	if (type == CURLINFO_HEADER_OUT && size >= 4 && strncasecmp(data, "EHLO", 4) == 0)
		c->pipelining = c->size = c->smtputf8 = false;
	if (type != CURLINFO_HEADER_IN || size < 5 || (data[3] != '-' && data[3] != ' '))
		return 0;
	c->pipelining |= mailer_ehlo_offers(data, size, "PIPELINING");
	c->size |= mailer_ehlo_offers(data, size, "SIZE");
	c->smtputf8 |= mailer_ehlo_offers(data, size, "SMTPUTF8");
	return 0;
}

/* Closes a connection that failed or hung up. The socket is shut first: libcurl's cleanup
 * would otherwise say QUIT and wait for an answer, up to the reply timeout of a server
 * that has just been silent that long. */
static void mailer_conn_drop(struct mailer_conn *c)
{
	if (c->e) {
		shutdown(c->fd, SHUT_RDWR);
		curl_easy_cleanup(c->e);
	}
	c->e = NULL;
	c->inlen = 0;
}

/* Connects and greets; 0, or a libcurl error code with its text in r. */
static int mailer_conn_open(const struct mailer *m, struct mailer_conn *c, struct mailer_reply *r)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *e = curl_easy_init();
	if (!e) {
		snprintf(r->text, sizeof(r->text), "no libcurl handle");
		return CURLE_OUT_OF_MEMORY;
	}
	c->pipelining = c->size = c->smtputf8 = false;
	c->inlen = 0;
	curl_easy_setopt(e, CURLOPT_URL, m->url);
	curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* Without it a spike fell from thousands of messages a second to 62 (Nagle). */
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, m->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_SERVER_RESPONSE_TIMEOUT, m->reply_timeout_s);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, m->transfer_timeout_ms);
	/* With credentials, the password never crosses the wire in clear. */
	curl_easy_setopt(e, CURLOPT_USE_SSL, (long)(m->username ? CURLUSESSL_ALL : CURLUSESSL_TRY));
	if (m->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, m->ca_file);
	if (m->username) {
		curl_easy_setopt(e, CURLOPT_USERNAME, m->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, m->password);
	}
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, mailer_trace_cb);
	curl_easy_setopt(e, CURLOPT_DEBUGDATA, c);
	curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
	CURLcode rc = curl_easy_perform(e);
	curl_easy_setopt(e, CURLOPT_VERBOSE, 0L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
	if (rc == CURLE_OK)
		rc = curl_easy_getinfo(e, CURLINFO_ACTIVESOCKET, &c->fd);
	if (rc != CURLE_OK || c->fd == CURL_SOCKET_BAD) {
		snprintf(r->text, sizeof(r->text), "%.190s",
			 *errbuf ? errbuf : curl_easy_strerror(rc ? rc : CURLE_COULDNT_CONNECT));
		curl_easy_cleanup(e);
		return rc ? (int)rc : CURLE_COULDNT_CONNECT;
	}
	c->e = e;
	log_info("mailer: connected to %s%s", m->url, c->pipelining ? " (pipelining)" : "");
	return 0;
}

/* Waits until the socket is readable (or writable); false on a timeout, with r's text. */
static bool mailer_conn_wait(struct mailer_conn *c, short events, uint64_t deadline,
			     struct mailer_reply *r)
{
	for (;;) {
		uint64_t now = uv_hrtime();
		if (now >= deadline)
			break;
		struct pollfd p = { .fd = c->fd, .events = events };
		int ms = (int)((deadline - now + 999999) / 1000000);
		int n = poll(&p, 1, ms);
		if (n > 0)
			return true;
		if (n < 0 && errno != EINTR) {
			snprintf(r->text, sizeof(r->text), "poll: %s", strerror(errno));
			return false;
		}
	}
	snprintf(r->text, sizeof(r->text), "timeout waiting for the server");
	return false;
}

static bool mailer_conn_send(struct mailer_conn *c, const char *data, size_t len, uint64_t deadline,
			     struct mailer_reply *r)
{
	size_t off = 0;
	while (off < len) {
		size_t n = 0;
		CURLcode rc = curl_easy_send(c->e, data + off, len - off, &n);
		if (rc == CURLE_AGAIN) {
			if (!mailer_conn_wait(c, POLLOUT, deadline, r))
				return false;
			continue;
		}
		if (rc != CURLE_OK) {
			snprintf(r->text, sizeof(r->text), "send: %s", curl_easy_strerror(rc));
			return false;
		}
		off += n;
	}
	return true;
}

/* Reads one whole reply (its continuation lines too); r->code 0 when none came. */
static bool mailer_conn_reply(struct mailer_conn *c, uint64_t deadline, struct mailer_reply *r)
{
	r->code = 0;
	for (;;) {
		/* A complete line in the buffer: a final one ("250 ok") ends the reply. */
		char *nl;
		while ((nl = memchr(c->in, '\n', c->inlen))) {
			size_t len = (size_t)(nl - c->in) + 1;
			bool final = len >= 4 && c->in[3] != '-';
			if (final) {
				size_t t = len;
				while (t > 0 && (c->in[t - 1] == '\n' || c->in[t - 1] == '\r'))
					t--;
				snprintf(r->text, sizeof(r->text), "%.*s", (int)t, c->in);
				r->code = c->in[0] >= '1' && c->in[0] <= '5' ? atoi(c->in) : 0;
			}
			memmove(c->in, c->in + len, c->inlen - len);
			c->inlen -= len;
			if (final) {
				if (r->code)
					return true;
				snprintf(r->text, sizeof(r->text), "not an SMTP reply");
				return false;
			}
		}
		if (c->inlen == sizeof(c->in))
			c->inlen = 0; /* a line longer than the buffer: its start is lost */
		size_t n = 0;
		CURLcode rc = curl_easy_recv(c->e, c->in + c->inlen, sizeof(c->in) - c->inlen, &n);
		if (rc == CURLE_AGAIN) {
			if (!mailer_conn_wait(c, POLLIN, deadline, r))
				return false;
			continue;
		}
		if (rc != CURLE_OK || n == 0) {
			snprintf(r->text, sizeof(r->text), "%s",
				 rc ? curl_easy_strerror(rc) : "the server closed the connection");
			return false;
		}
		c->inlen += n;
	}
}

/* Whether the connection can take the next message. A server that hung up (or said 421
 * as it did) while nobody spoke has made the socket readable; so may TLS records it sent
 * after the handshake (session tickets), which libcurl reads here and which leave nothing. */
static bool mailer_conn_idle_ok(struct mailer_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	if (c->inlen != 0)
		return false;
	if (poll(&p, 1, 0) == 0)
		return true;
	size_t n = 0;
	return curl_easy_recv(c->e, c->in, sizeof(c->in), &n) == CURLE_AGAIN;
}

size_t mailer_dot_stuff(const char *data, size_t len, char **buf, size_t *cap)
{
	size_t need = len + len / 40 + 8, o = 0;
	if (need > *cap) {
		free(*buf);
		*cap = need * 2;
		*buf = xmalloc(*cap);
	}
	bool bol = true;
	for (size_t i = 0; i < len; i++) {
		if (bol && data[i] == '.') {
			/* Room for the dot, the rest and the end, however many dots came before. */
			if (o + (len - i) + 8 >= *cap) {
				*cap = *cap * 2 + len;
				*buf = xrealloc(*buf, *cap);
			}
			(*buf)[o++] = '.';
		}
		/* The rest of the line in one copy. */
		const char *nl = memchr(data + i, '\n', len - i);
		size_t run = nl ? (size_t)(nl - (data + i)) + 1 : len - i;
		memcpy(*buf + o, data + i, run);
		o += run;
		i += run - 1;
		bol = nl != NULL;
	}
	if (o < 2 || (*buf)[o - 2] != '\r' || (*buf)[o - 1] != '\n') {
		memcpy(*buf + o, "\r\n", 2);
		o += 2;
	}
	memcpy(*buf + o, ".\r\n", 3);
	return o + 3;
}

/* Ends the thread's connection: libcurl's cleanup says QUIT on a live one. */
static void mailer_conn_close(struct mailer_conn *c)
{
	if (c->e)
		curl_easy_cleanup(c->e);
	c->e = NULL;
	free(c->buf);
	c->buf = NULL;
	c->bufcap = 0;
}

/* "<a@b>" for an address given with or without its angle brackets. */
static void mailer_path(struct buf *b, const char *verb, const char *addr, const char *extra)
{
	size_t len = strlen(addr);
	if (len >= 2 && addr[0] == '<' && addr[len - 1] == '>') {
		addr++;
		len -= 2;
	}
	buf_printf(b, "%s:<%.*s>%s\r\n", verb, (int)len, addr, extra);
}

/* When the next reply is due: the reply timeout from now, within the message's own. */
static uint64_t mailer_deadline(uint64_t reply_ns, uint64_t transfer_end)
{
	uint64_t t = uv_hrtime() + reply_ns;
	return t < transfer_end ? t : transfer_end;
}

/* A refusal before the data: a 5xx at RCPT is the address's (a hard bounce); a 5xx at MAIL
 * or DATA refuses the sender or the transaction, not the address (the touch fails, the
 * address stays); anything else is for later. */
static enum mailer_outcome mailer_refusal(int code, int step)
{
	if (code / 100 != 5)
		return MAILER_TEMPFAIL;
	return step == 1 ? MAILER_BOUNCE : MAILER_PERMFAIL;
}

static bool mailer_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static void mailer_outcome(struct mailer_result *r, const struct mailer_reply *reply,
			   enum mailer_outcome o)
{
	r->outcome = o;
	r->code = reply->code;
	snprintf(r->detail, sizeof(r->detail), "%s", reply->text);
}

/*
 * Sends one message and classifies the outcome: 2xx sent; 4xx, a refused or dropped
 * connection or a timeout before the message was handed over: try later; 5xx at RCPT: the
 * address bounced; 5xx at MAIL, at DATA or after the data: the sender, the transaction or
 * the message was refused (the touch fails, the address stays); and a connection lost
 * (or silent past the reply timeout) after the whole message went out but before the
 * server answered: uncertain, because the server may have accepted it.
 */
static void mailer_deliver_smtp(struct mailer *m, struct mailer_conn *c, struct mailer_node *n)
{
	struct mailer_result *r = &n->result;
	struct mailer_reply rep = { 0 }, first_bad = { 0 };
	int bad_step = -1; /* 0 MAIL, 1 RCPT, 2 DATA: the first the server refused */
	uint64_t start = uv_hrtime();
	uint64_t transfer_end = start + (uint64_t)m->transfer_timeout_ms * 1000000u;
	uint64_t reply_ns = (uint64_t)m->reply_timeout_s * 1000000000u;

	if (c->e && !mailer_conn_idle_ok(c))
		mailer_conn_drop(c); /* it hung up while idle: a new one, the message is safe */
	if (!c->e && mailer_conn_open(m, c, &rep) != 0) {
		mailer_outcome(r, &rep, MAILER_TEMPFAIL);
		return;
	}
	/* An address beyond ASCII needs the server's SMTPUTF8 (RFC 6531). */
	bool utf8 = !mailer_ascii(n->job->envelope_from) || !mailer_ascii(n->job->rcpt);
	if (utf8 && !c->smtputf8) {
		snprintf(rep.text, sizeof(rep.text),
			 "the server does not offer SMTPUTF8, which %.120s needs", n->job->rcpt);
		mailer_outcome(r, &rep, MAILER_PERMFAIL);
		return;
	}
	struct buf env;
	buf_init(&env);
	char params[64] = "";
	if (c->size)
		snprintf(params, sizeof(params), " SIZE=%zu", n->job->len);
	if (utf8)
		snprintf(params + strlen(params), sizeof(params) - strlen(params), " SMTPUTF8");
	mailer_path(&env, "MAIL FROM", n->job->envelope_from, params);
	size_t mail_end = env.len;
	mailer_path(&env, "RCPT TO", n->job->rcpt, "");
	size_t rcpt_end = env.len;
	buf_adds(&env, "DATA\r\n");
	/* Pipelined: the three commands in one write, then their three replies. Otherwise
	 * each command alone. */
	size_t ends[] = { mail_end, rcpt_end, env.len }, from = 0;
	bool lost = false;
	for (int i = 0; i < 3; i++) {
		if (!c->pipelining || i == 0) {
			size_t to = c->pipelining ? env.len : ends[i];
			if (!mailer_conn_send(c, env.data + from, to - from,
					      mailer_deadline(reply_ns, transfer_end), &rep)) {
				lost = true;
				break;
			}
			from = to;
		}
		if (!mailer_conn_reply(c, mailer_deadline(reply_ns, transfer_end), &rep)) {
			lost = true;
			break;
		}
		bool good = i == 2 ? rep.code == 354 : rep.code / 100 == 2;
		if (!good && !first_bad.code) {
			first_bad = rep;
			bad_step = i;
		}
		/* Without pipelining nothing more is sent after a refusal; with it, the replies
		 * to what was sent are still read, and a DATA the server took all the same is
		 * ended with an empty message. */
		if (!good && !c->pipelining)
			break;
		if (c->pipelining && i == 2 && rep.code == 354 && first_bad.code) {
			struct mailer_reply ignored;
			if (!mailer_conn_send(c, ".\r\n", 3,
					      mailer_deadline(reply_ns, transfer_end), &ignored) ||
			    !mailer_conn_reply(c, mailer_deadline(reply_ns, transfer_end),
					       &ignored))
				lost = true;
		}
	}
	buf_free(&env);
	if (lost) {
		/* Nothing of the message went: try later. */
		mailer_conn_drop(c);
		mailer_outcome(r, first_bad.code ? &first_bad : &rep,
			       mailer_refusal(first_bad.code, bad_step));
		return;
	}
	if (first_bad.code) {
		/* The transaction is over; RSET starts the next one clean. */
		struct mailer_reply ignored;
		uint64_t deadline = mailer_deadline(reply_ns, transfer_end);
		if (!mailer_conn_send(c, "RSET\r\n", 6, deadline, &ignored) ||
		    !mailer_conn_reply(c, deadline, &ignored) || ignored.code / 100 != 2)
			mailer_conn_drop(c);
		mailer_outcome(r, &first_bad, mailer_refusal(first_bad.code, bad_step));
		return;
	}
	size_t len = mailer_dot_stuff(n->job->data, n->job->len, &c->buf, &c->bufcap);
	if (!mailer_conn_send(c, c->buf, len, transfer_end, &rep)) {
		/* Part of the message went, not its end: the server cannot have taken it. */
		mailer_conn_drop(c);
		mailer_outcome(r, &rep, MAILER_TEMPFAIL);
		return;
	}
	if (!mailer_conn_reply(c, mailer_deadline(reply_ns, transfer_end), &rep)) {
		mailer_conn_drop(c);
		mailer_outcome(r, &rep, MAILER_UNCERTAIN);
		return;
	}
	if (rep.code / 100 == 2)
		mailer_outcome(r, &rep, MAILER_OK);
	else
		mailer_outcome(r, &rep, rep.code / 100 == 5 ? MAILER_PERMFAIL : MAILER_TEMPFAIL);
}

static void mailer_thread(void *arg)
{
	struct mailer_slot *slot = arg;
	struct mailer *m = slot->m;
	/* Throughput work: a woken sender thread no longer preempts the loop thread, which
	 * decides for all of them (in the delivery benchmark the loop was preempted 20,000
	 * times in 30,000 messages; SCHED_BATCH: 2,400). Unprivileged; failure changes nothing. */
	struct sched_param sp = { 0 };
	pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	struct mailer_conn conn = { .e = NULL, .fd = CURL_SOCKET_BAD };
	for (;;) {
		uv_sem_wait(&slot->posted);
		struct mailer_node *n =
			atomic_exchange_explicit(&slot->job, NULL, memory_order_acquire);
		if (!n) {
			if (atomic_load_explicit(&slot->stopping, memory_order_acquire))
				break;
			continue;
		}

		n->result.touch_id = n->job->touch_id;
		uint64_t start = uv_hrtime();
		if (m->maildir)
			mailer_deliver_maildir(m, n);
		else
			mailer_deliver_smtp(m, &conn, n);
		mailer_job_free(n->job);
		n->job = NULL;
		n->done_at = uv_hrtime();
		n->send_ns = n->done_at - start;

		n->next = atomic_load_explicit(&m->results, memory_order_relaxed);
		while (!atomic_compare_exchange_weak_explicit(
			&m->results, &n->next, n, memory_order_release, memory_order_relaxed))
			;
		uv_async_send(&m->async);
	}
	mailer_conn_close(&conn);
}

static void mailer_hand(struct mailer *m, struct mailer_node *n)
{
	struct mailer_slot *slot = &m->slots[m->idle[--m->nidle]];
	n->thread = slot->index;
	if (m->done_at[slot->index]) {
		m->between_ns += uv_hrtime() - m->done_at[slot->index];
		m->done_at[slot->index] = 0;
	}
	atomic_store_explicit(&slot->job, n, memory_order_release);
	uv_sem_post(&slot->posted);
}

static void mailer_async_cb(uv_async_t *handle)
{
	struct mailer *m = handle->data;
	struct mailer_node *n = atomic_exchange_explicit(&m->results, NULL, memory_order_acquire);
	struct mailer_node *fifo = NULL;
	if (!n)
		return;
	/* The stack is newest first: reversed, outcomes are recorded in the order they came. */
	while (n) {
		struct mailer_node *next = n->next;
		n->next = fifo;
		fifo = n;
		n = next;
		m->idle[m->nidle++] = fifo->thread;
		m->done_at[fifo->thread] = fifo->done_at;
		m->send_ns += fifo->send_ns;
		m->jobs++;
	}
	/* A job that found no idle thread goes to one freed now. */
	while (m->backlog && m->nidle > 0) {
		struct mailer_node *b = m->backlog;
		m->backlog = b->next;
		if (!m->backlog)
			m->backlog_tail = NULL;
		mailer_hand(m, b);
	}
	if (m->batch_cb)
		m->batch_cb(m->arg, true);
	for (n = fifo; n;) {
		struct mailer_node *next = n->next;
		m->busy--;
		m->cb(m->arg, &n->result);
		free(n);
		n = next;
	}
	if (m->batch_cb)
		m->batch_cb(m->arg, false);
}

void mailer_set_batch_cb(struct mailer *m, mailer_batch_cb cb)
{
	m->batch_cb = cb;
}

/* Reads the first line of a secret file (a password); NULL with err on failure. */
static char *mailer_read_secret(const char *path, char *err, size_t errlen)
{
	char line[1024];
	FILE *f = fopen(path, "r");
	if (!f) {
		errf(err, errlen, DRIP_EIO, "mailer: cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	return xstrdup(line);
}

struct mailer *mailer_new(uv_loop_t *loop, const struct config *cfg, mailer_result_cb cb, void *arg,
			  char *err, size_t errlen)
{
	struct config_account a;
	config_account(cfg, NULL, &a);
	return mailer_new_account(loop, cfg, &a, cb, arg, err, errlen);
}

struct mailer *mailer_new_account(uv_loop_t *loop, const struct config *cfg,
				  const struct config_account *acct, mailer_result_cb cb, void *arg,
				  char *err, size_t errlen)
{
	const char *maildir = config_account_maildir(acct);
	struct mailer *m;
	if (maildir && maildir_prepare(maildir, err, errlen) != 0)
		return NULL;
	m = xcalloc(1, sizeof(*m));
	m->loop = loop;
	m->cb = cb;
	m->arg = arg;
	m->maildir = maildir ? xstrdup(maildir) : NULL;
	m->url = xstrdup(acct->url);
	m->connect_timeout_ms = (long)cfg->delivery.connect_timeout * 1000;
	m->reply_timeout_s = (long)cfg->delivery.reply_timeout;
	m->transfer_timeout_ms = (long)cfg->delivery.transfer_timeout * 1000;
	m->ca_file = *cfg->delivery.ca_file ? xstrdup(cfg->delivery.ca_file) : NULL;
	if (!maildir && *acct->username) {
		m->username = xstrdup(acct->username);
		m->password = *acct->password_file
				      ? mailer_read_secret(acct->password_file, err, errlen)
				      : xstrdup("");
		if (!m->password) {
			free(m->username);
			free(m->ca_file);
			free(m->url);
			free(m->maildir);
			free(m);
			return NULL;
		}
	}
	atomic_init(&m->results, NULL);
	uv_async_init(loop, &m->async, mailer_async_cb);
	m->async.data = m;
	m->nthreads = (size_t)acct->max_connections;
	if (m->nthreads < 1 || m->nthreads > MAILER_MAX_CONN)
		m->nthreads = 1;
	for (size_t i = 0; i < m->nthreads; i++) {
		struct mailer_slot *slot = &m->slots[i];
		slot->m = m;
		slot->index = i;
		if (uv_sem_init(&slot->posted, 0) != 0)
			log_fatal("mailer: cannot create sender thread %zu's semaphore", i);
		atomic_init(&slot->job, NULL);
		atomic_init(&slot->stopping, false);
		m->idle[m->nidle++] = m->nthreads - 1 - i; /* slot 0 first */
	}
	for (size_t i = 0; i < m->nthreads; i++)
		if (uv_thread_create(&m->slots[i].thread, mailer_thread, &m->slots[i]) != 0)
			log_fatal("mailer: cannot start sender thread %zu", i);
	log_info("mailer: account %s: %zu sender thread(s) delivering to %s", acct->name,
		 m->nthreads, acct->url);
	return m;
}

size_t mailer_threads(const struct mailer *m)
{
	return m->nthreads;
}

size_t mailer_idle(const struct mailer *m)
{
	return m->nthreads - m->busy;
}

void mailer_times(const struct mailer *m, struct mailer_times *out)
{
	out->jobs = m->jobs;
	out->sending_s = (double)m->send_ns / 1e9;
	out->between_s = (double)m->between_ns / 1e9;
}

size_t mailer_busy(const struct mailer *m)
{
	return m->busy;
}

void mailer_submit(struct mailer *m, struct mailer_job *job)
{
	struct mailer_node *n = xcalloc(1, sizeof(*n));
	n->job = job;
	m->busy++;
	if (m->nidle > 0) {
		mailer_hand(m, n);
		return;
	}
	/* Callers submit only while mailer_idle() > 0; if one did not, the job waits here
	 * (on the loop) for the next thread to come back, never lost. */
	if (m->backlog_tail)
		m->backlog_tail->next = n;
	else
		m->backlog = n;
	m->backlog_tail = n;
}

static void mailer_closed_cb(uv_handle_t *handle)
{
	struct mailer *m = handle->data;
	for (size_t i = 0; i < m->nthreads; i++)
		uv_sem_destroy(&m->slots[i].posted);
	free(m->maildir);
	free(m->url);
	free(m->ca_file);
	free(m->username);
	if (m->password)
		OPENSSL_cleanse(m->password, strlen(m->password));
	free(m->password);
	free(m);
}

void mailer_close(struct mailer *m)
{
	for (size_t i = 0; i < m->nthreads; i++) {
		struct mailer_slot *slot = &m->slots[i];
		atomic_store_explicit(&slot->stopping, true, memory_order_release);
		uv_sem_post(&slot->posted);
	}
	/* A thread finishes the job it has before it stops. */
	for (size_t i = 0; i < m->nthreads; i++)
		uv_thread_join(&m->slots[i].thread);
	/* Results that arrived after the last async callback are delivered, not dropped. */
	mailer_async_cb(&m->async);
	while (m->backlog) {
		struct mailer_node *b = m->backlog;
		m->backlog = b->next;
		mailer_job_free(b->job);
		free(b);
	}
	uv_close((uv_handle_t *)&m->async, mailer_closed_cb);
}
