/* mailer.c - the sender threads, the job hand-over and the uv_async hand-back. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "dripd/error.h"
#include "dripd/log.h"
#include "dripd/maildir.h"
#include "dripd/mailer.h"
#include "dripd/util.h"

/*
 * DESIGN. libcurl's SMTP blocks its caller while it waits for the answer to the final dot
 * (curl issue #8555), so delivery runs on threads and the loop never waits for a server.
 * Each thread has a slot of its own (a job and a semaphore), and the loop hands a job to an
 * idle thread's slot, so a hand-over wakes exactly that thread and contends with nobody
 * else (one shared queue had nine threads on one mutex: lock wake-ups were a sixth of the
 * loop's system time). A semaphore, not a mutex and a condition variable: the loop posts
 * once and the thread wakes once, where the condition variable's woken thread often found
 * the loop still holding the mutex and slept on it again (4.4 futex calls a message). Outcomes come back on a lock-free stack; the
 * pushing thread then calls uv_async_send, which wakes the loop once however many pushed,
 * and the loop drains every outcome in one callback. The Maildir path runs on the same
 * threads, so fsync never stalls the loop either.
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

/* What a sender thread's libcurl reads the message from. */
struct mailer_upload {
	const char *data;
	size_t len, off; /* off == len: the whole message went to libcurl */
};

static size_t mailer_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct mailer_upload *u = arg;
	size_t n = size * nitems, left = u->len - u->off;
	if (n > left)
		n = left;
	memcpy(buf, u->data + u->off, n);
	u->off += n;
	return n;
}

/* One easy handle per thread, set up once, so its connection is reused across messages. */
static CURL *mailer_easy_new(const struct mailer *m)
{
	CURL *e = curl_easy_init();
	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_URL, m->url);
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, mailer_read_cb);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* Without it a spike fell from thousands of messages a second to 62 (Nagle). */
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, m->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_SERVER_RESPONSE_TIMEOUT, m->reply_timeout_s);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, m->transfer_timeout_ms);
	curl_easy_setopt(e, CURLOPT_MAXCONNECTS, 1L);
	/* With credentials, the password never crosses the wire in clear. */
	curl_easy_setopt(e, CURLOPT_USE_SSL, (long)(m->username ? CURLUSESSL_ALL : CURLUSESSL_TRY));
	if (m->username) {
		curl_easy_setopt(e, CURLOPT_USERNAME, m->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, m->password);
	}
	return e;
}

/*
 * Sends one message and classifies the outcome: 2xx sent; 4xx, a refused or dropped
 * connection or a timeout before the message was handed over: try later; 5xx before the
 * data: the address bounced; 5xx after it: the message was refused; and a connection lost
 * after the whole message went out but before the server answered: uncertain, because the
 * server may have accepted it.
 */
static void mailer_deliver_smtp(struct mailer *m, CURL *e, struct mailer_node *n)
{
	struct mailer_result *r = &n->result;
	struct mailer_upload u = { .data = n->job->data, .len = n->job->len };
	struct curl_slist *rcpt = curl_slist_append(NULL, n->job->rcpt);
	char errbuf[CURL_ERROR_SIZE] = "";
	long code = 0;
	CURLcode rc;

	curl_easy_setopt(e, CURLOPT_MAIL_FROM, n->job->envelope_from);
	curl_easy_setopt(e, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(e, CURLOPT_READDATA, &u);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)n->job->len);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_setopt(e, CURLOPT_MAIL_RCPT, NULL);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(rcpt);
	r->code = (int)code;
	if (rc == CURLE_OK) {
		r->outcome = MAILER_OK;
		snprintf(r->detail, sizeof(r->detail), "%ld from %s", code, m->url);
		return;
	}
	snprintf(r->detail, sizeof(r->detail), "%ld: %.200s", code,
		 *errbuf ? errbuf : curl_easy_strerror(rc));
	if (code >= 500 && code < 600)
		r->outcome = u.off == 0 ? MAILER_BOUNCE : MAILER_PERMFAIL;
	else if (code >= 400 && code < 500)
		r->outcome = MAILER_TEMPFAIL;
	else if (u.off == u.len && u.len > 0)
		/* libcurl knows the size and may never ask for the end, so "every byte handed
		 * over" is the test; it errs towards uncertain, never towards sending twice. */
		r->outcome = MAILER_UNCERTAIN;
	else
		r->outcome = MAILER_TEMPFAIL;
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
	CURL *e = m->maildir ? NULL : mailer_easy_new(m);
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
		else if (e)
			mailer_deliver_smtp(m, e, n);
		else
			snprintf(n->result.detail, sizeof(n->result.detail), "no libcurl handle");
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
	if (e)
		curl_easy_cleanup(e); /* says QUIT on a live connection */
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
	if (!maildir && *acct->username) {
		m->username = xstrdup(acct->username);
		m->password = *acct->password_file
				      ? mailer_read_secret(acct->password_file, err, errlen)
				      : xstrdup("");
		if (!m->password) {
			free(m->username);
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
