/* mailer.c - the sender threads, the job hand-over and the uv_async hand-back. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/error.h"
#include "dripd/log.h"
#include "dripd/maildir.h"
#include "dripd/mailer.h"
#include "dripd/util.h"

/*
 * DESIGN. libcurl's SMTP blocks its caller while it waits for the answer to the final dot
 * (curl issue #8555), so delivery runs on threads and the loop never waits for a server.
 * The loop owns `busy` and only submits when a thread is free; jobs and results cross in
 * two lists under one mutex. A result is pushed, then uv_async_send wakes the loop, which
 * drains every result in one callback (uv_async coalesces sends). The Maildir path runs on
 * the same threads, so fsync never stalls the loop either.
 */

#define MAILER_MAX_CONN 64

struct mailer_node {
	struct mailer_node *next;
	struct mailer_job *job;
	struct mailer_result result;
};

struct mailer {
	uv_loop_t *loop;
	uv_async_t async;
	uv_mutex_t lock;
	uv_cond_t cond;
	uv_thread_t threads[MAILER_MAX_CONN];
	size_t nthreads;
	size_t busy; /* loop thread only */
	bool stopping; /* under lock */
	struct mailer_node *jobs, *jobs_tail; /* under lock */
	struct mailer_node *results, *results_tail; /* under lock */
	mailer_result_cb cb;
	void *arg;
	char *maildir;
};

static void mailer_job_free(struct mailer_job *job)
{
	if (!job)
		return;
	free(job->envelope_from);
	free(job->rcpt);
	free(job->data);
	free(job);
}

static void mailer_deliver(struct mailer *m, struct mailer_node *n)
{
	struct mailer_result *r = &n->result;
	char name[512];
	r->touch_id = n->job->touch_id;
	if (maildir_deliver(m->maildir, n->job->data, n->job->len, name, sizeof(name), r->detail,
			    sizeof(r->detail)) == 0) {
		r->outcome = MAILER_OK;
		snprintf(r->detail, sizeof(r->detail), "maildir: new/%.200s", name);
	} else {
		/* A full or unwritable disk is a reason to try later, like an SMTP 4xx. */
		r->outcome = MAILER_TEMPFAIL;
	}
}

static void mailer_thread(void *arg)
{
	struct mailer *m = arg;
	for (;;) {
		uv_mutex_lock(&m->lock);
		while (!m->jobs && !m->stopping)
			uv_cond_wait(&m->cond, &m->lock);
		if (!m->jobs) {
			uv_mutex_unlock(&m->lock);
			return;
		}
		struct mailer_node *n = m->jobs;
		m->jobs = n->next;
		if (!m->jobs)
			m->jobs_tail = NULL;
		uv_mutex_unlock(&m->lock);

		mailer_deliver(m, n);
		mailer_job_free(n->job);
		n->job = NULL;
		n->next = NULL;

		uv_mutex_lock(&m->lock);
		if (m->results_tail)
			m->results_tail->next = n;
		else
			m->results = n;
		m->results_tail = n;
		uv_mutex_unlock(&m->lock);
		uv_async_send(&m->async);
	}
}

static void mailer_async_cb(uv_async_t *handle)
{
	struct mailer *m = handle->data;
	uv_mutex_lock(&m->lock);
	struct mailer_node *n = m->results;
	m->results = m->results_tail = NULL;
	uv_mutex_unlock(&m->lock);
	while (n) {
		struct mailer_node *next = n->next;
		m->busy--;
		m->cb(m->arg, &n->result);
		free(n);
		n = next;
	}
}

struct mailer *mailer_new(uv_loop_t *loop, const struct config *cfg, mailer_result_cb cb, void *arg,
			  char *err, size_t errlen)
{
	const char *maildir = config_maildir(cfg);
	if (!maildir) {
		errf(err, errlen, DRIP_EUNSUPPORTED,
		     "mailer: delivery to %s is not built yet; use \"maildir:PATH\"",
		     cfg->delivery.url);
		return NULL;
	}
	if (maildir_prepare(maildir, err, errlen) != 0)
		return NULL;
	struct mailer *m = xcalloc(1, sizeof(*m));
	m->loop = loop;
	m->cb = cb;
	m->arg = arg;
	m->maildir = xstrdup(maildir);
	uv_mutex_init(&m->lock);
	uv_cond_init(&m->cond);
	uv_async_init(loop, &m->async, mailer_async_cb);
	m->async.data = m;
	m->nthreads = (size_t)cfg->delivery.max_connections;
	if (m->nthreads < 1 || m->nthreads > MAILER_MAX_CONN)
		m->nthreads = 1;
	for (size_t i = 0; i < m->nthreads; i++)
		if (uv_thread_create(&m->threads[i], mailer_thread, m) != 0)
			log_fatal("mailer: cannot start sender thread %zu", i);
	log_info("mailer: %zu sender thread(s) delivering to maildir:%s", m->nthreads, m->maildir);
	return m;
}

size_t mailer_idle(const struct mailer *m)
{
	return m->nthreads - m->busy;
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
	uv_mutex_lock(&m->lock);
	if (m->jobs_tail)
		m->jobs_tail->next = n;
	else
		m->jobs = n;
	m->jobs_tail = n;
	uv_cond_signal(&m->cond);
	uv_mutex_unlock(&m->lock);
}

static void mailer_closed_cb(uv_handle_t *handle)
{
	struct mailer *m = handle->data;
	uv_mutex_destroy(&m->lock);
	uv_cond_destroy(&m->cond);
	free(m->maildir);
	free(m);
}

void mailer_close(struct mailer *m)
{
	uv_mutex_lock(&m->lock);
	m->stopping = true;
	uv_cond_broadcast(&m->cond);
	uv_mutex_unlock(&m->lock);
	for (size_t i = 0; i < m->nthreads; i++)
		uv_thread_join(&m->threads[i]);
	/* Results that arrived after the last async callback are delivered, not dropped. */
	mailer_async_cb(&m->async);
	uv_close((uv_handle_t *)&m->async, mailer_closed_cb);
}
