/* sched.c - the scheduler: due touches to messages to sender threads, one timer, no polling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dripd/error.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/message.h"
#include "dripd/render.h"
#include "dripd/sched.h"
#include "dripd/util.h"

/*
 * DESIGN. A pass claims due pending touches (pending -> queued, one transaction), at most
 * as many as there are idle sender threads, and dispatches each: the lead and step are
 * looked up, the message is rendered and built, the touch is committed as "sending" with
 * its Message-ID, and only then does a thread see it (at most once per step). A touch that
 * cannot be sent (lead no longer active, step gone, render error) is finished as skipped or
 * failed with an event, never retried blindly. Temporary failures come back as pending
 * with a doubling delay. The timer is re-armed after every pass for the earliest pending
 * due time; with nothing pending it stays stopped (idle means idle).
 */

#define SCHED_CLAIM_MAX 64
#define SCHED_RETRY_MS 1000 /* machine time before a claim is tried again */
#define SCHED_RETRY_MIN 600 /* business seconds before the first retry */
#define SCHED_RETRY_MAX (86400LL) /* the longest wait between retries */

struct sched {
	uv_loop_t *loop;
	uv_timer_t timer;
	const struct config *cfg;
	struct store *store;
	struct clock *clock;
	struct mailer *mailer;
	struct content *content;
	bool draining;
	void (*drain_cb)(void *arg);
	void *drain_arg;
	int64_t next_wake;
};

static void sched_timer_cb(uv_timer_t *t);

struct sched *sched_new(uv_loop_t *loop, const struct config *cfg, struct store *st,
			struct clock *clk, struct mailer *m)
{
	struct sched *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->cfg = cfg;
	s->store = st;
	s->clock = clk;
	s->mailer = m;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	return s;
}

void sched_set_content(struct sched *s, struct content *c)
{
	struct content *old = s->content;
	s->content = content_ref(c);
	content_unref(old);
}

void sched_kick(struct sched *s)
{
	if (!s->draining)
		uv_timer_start(&s->timer, sched_timer_cb, 0, 0);
}

int64_t sched_next_wake(const struct sched *s)
{
	return s->next_wake;
}

static void sched_event(struct sched *s, int64_t lead_id, int64_t touch_id, const char *kind,
			int64_t now, const struct touch *t, const char *key, const char *value)
{
	cJSON *d = cJSON_CreateObject();
	char *json;
	if (t) {
		cJSON_AddStringToObject(d, "sequence", t->sequence);
		cJSON_AddStringToObject(d, "step", t->step);
	}
	if (key)
		cJSON_AddStringToObject(d, key, value);
	json = cJSON_PrintUnformatted(d);
	if (store_event_add(s->store, lead_id, touch_id, kind, now, json) != 0)
		log_err("sched: cannot record %s event for touch %lld", kind, (long long)touch_id);
	cJSON_free(json);
	cJSON_Delete(d);
}

/* Finishes a touch that will not be sent, with an event that says why. */
static void sched_give_up(struct sched *s, const struct touch *t, const char *state,
			  const char *kind, const char *reason, int64_t now)
{
	if (store_begin(s->store) != 0)
		return;
	if (store_touch_finish(s->store, t->id, state, reason, now) == 0) {
		sched_event(s, t->lead_id, t->id, kind, now, t, "reason", reason);
		if (strcmp(state, "failed") == 0)
			store_enrolment_end(s->store, t->enrolment_id, "exited", now);
	}
	if (store_commit(s->store) != 0)
		log_err("sched: cannot finish touch %lld", (long long)t->id);
	log_warn("sched: touch %lld %s: %s", (long long)t->id, state, reason);
}

/* Builds the job for a claimed touch and hands it over; false when it was not sent. */
static void sched_dispatch(struct sched *s, int64_t id, int64_t now)
{
	struct touch t;
	struct lead lead;
	struct render_out r;
	struct buf msg;
	char err[512];
	char *message_id = NULL;
	const struct content_sequence *seq;
	const struct content_step *step;

	memset(&lead, 0, sizeof(lead));
	memset(&r, 0, sizeof(r));
	buf_init(&msg);
	if (store_touch_get(s->store, id, &t) != 0)
		return;
	if (store_lead_by_id(s->store, t.lead_id, &lead) != 0) {
		sched_give_up(s, &t, "failed", "error", "lead not found", now);
		goto out;
	}
	if (strcmp(lead.status, "active") != 0) {
		snprintf(err, sizeof(err), "lead is %s", lead.status);
		sched_give_up(s, &t, "skipped", "error", err, now);
		goto out;
	}
	seq = content_sequence(s->content, t.sequence);
	step = seq ? content_step(seq, t.step, NULL) : NULL;
	if (!step) {
		snprintf(err, sizeof(err), "content has no step %s/%s any more", t.sequence,
			 t.step);
		sched_give_up(s, &t, "failed", "error", err, now);
		goto out;
	}
	if (render_message(s->content, step->tpl, &lead, &r, err, sizeof(err)) != 0) {
		sched_give_up(s, &t, "failed", "error", err, now);
		goto out;
	}
	char to_name[512];
	snprintf(to_name, sizeof(to_name), "%s%s%s", lead.first_name,
		 *lead.first_name && *lead.last_name ? " " : "", lead.last_name);
	message_id = message_make_id(s->cfg->delivery.from, t.id);
	struct message_spec spec = {
		.from = s->cfg->delivery.from,
		.to_name = to_name,
		.to_addr = lead.email,
		.subject = r.subject,
		.message_id = message_id,
		.date = now,
		.text = r.text,
		.html = seq->mode == CONTENT_NURTURE ? r.html : NULL,
	};
	if (message_build(&spec, &msg, err, sizeof(err)) != 0) {
		sched_give_up(s, &t, "failed", "error", err, now);
		goto out;
	}
	/* Committed as sending before any thread sees it: a crash from here on leaves the
	 * touch uncertain, never silently re-sent. */
	if (store_touch_sending(s->store, t.id, message_id, now) != 0) {
		log_err("sched: cannot mark touch %lld sending; left for recovery",
			(long long)t.id);
		goto out;
	}
	char addr[256];
	message_address(s->cfg->delivery.from, addr, sizeof(addr));
	struct mailer_job *job = xcalloc(1, sizeof(*job));
	job->touch_id = t.id;
	job->envelope_from = xstrdup(addr);
	job->rcpt = xstrdup(lead.email);
	job->len = msg.len;
	job->data = buf_steal(&msg);
	mailer_submit(s->mailer, job);
	log_debug("sched: touch %lld (%s/%s) to %s handed to a sender thread", (long long)t.id,
		  t.sequence, t.step, lead.email);
out:
	free(message_id);
	buf_free(&msg);
	render_out_clear(&r);
	store_lead_clear(&lead);
	store_touch_clear(&t);
}

static void sched_arm(struct sched *s, int64_t now)
{
	int64_t due;
	s->next_wake = 0;
	if (s->draining || mailer_idle(s->mailer) == 0)
		return; /* an outcome coming back kicks the scheduler */
	if (store_touch_next_due(s->store, &due) != 0) {
		uv_timer_stop(&s->timer);
		return;
	}
	s->next_wake = due;
	uv_timer_start(&s->timer, sched_timer_cb, clock_delay_ms(s->clock, due, now), 0);
}

static void sched_run(struct sched *s)
{
	int64_t ids[SCHED_CLAIM_MAX];
	size_t n;
	int64_t now = clock_now(s->clock);
	while (!s->draining && s->content && mailer_idle(s->mailer) > 0) {
		size_t want = mailer_idle(s->mailer);
		if (want > SCHED_CLAIM_MAX)
			want = SCHED_CLAIM_MAX;
		if (store_touch_claim(s->store, now, want, ids, &n) != 0) {
			/* The database refused (busy, full): look again in a while, not at once. */
			log_warn("sched: cannot claim due touches; retrying in %d ms",
				 SCHED_RETRY_MS);
			s->next_wake = 0;
			uv_timer_start(&s->timer, sched_timer_cb, SCHED_RETRY_MS, 0);
			return;
		}
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++)
			sched_dispatch(s, ids[i], now);
	}
	sched_arm(s, now);
}

static void sched_timer_cb(uv_timer_t *t)
{
	sched_run(t->data);
}

static int64_t sched_backoff(int64_t attempts)
{
	int64_t d = SCHED_RETRY_MIN;
	for (int64_t i = 1; i < attempts && d < SCHED_RETRY_MAX; i++)
		d *= 2;
	return d < SCHED_RETRY_MAX ? d : SCHED_RETRY_MAX;
}

/*
 * Moves the lead on after a send. The message went out whatever happens here, so a failure
 * undoes only this part and is recorded as an error event; the "sent" record stays.
 */
static int sched_next_step(struct sched *s, const struct touch *t, int64_t now)
{
	int rc = store_part_begin(s->store);
	if (rc)
		return rc;
	rc = journey_step_sent(s->store, s->content, t, now);
	if (store_part_end(s->store, rc == 0) != 0)
		return DRIP_ESTORE;
	if (rc) {
		log_err("sched: touch %lld was sent but the lead could not be moved on: %s",
			(long long)t->id, drip_strerror(rc));
		sched_event(s, t->lead_id, t->id, "error", now, t, "reason",
			    "sent, but the next step could not be scheduled");
	}
	return 0;
}

void sched_on_result(struct sched *s, const struct mailer_result *r)
{
	int64_t now = clock_now(s->clock);
	struct touch t;
	int rc;
	if (store_touch_get(s->store, r->touch_id, &t) != 0) {
		log_err("sched: outcome for unknown touch %lld", (long long)r->touch_id);
		goto kick;
	}
	if ((rc = store_begin(s->store)) != 0)
		goto out;
	switch (r->outcome) {
	case MAILER_OK:
		rc = store_touch_sent(s->store, t.id, now);
		if (rc == 0) {
			sched_event(s, t.lead_id, t.id, "sent", now, &t, "message_id",
				    t.message_id);
			rc = sched_next_step(s, &t, now);
		}
		break;
	case MAILER_TEMPFAIL: {
		int64_t due = now + sched_backoff(t.attempts);
		rc = store_touch_defer(s->store, t.id, due, r->detail, now);
		if (rc == 0)
			sched_event(s, t.lead_id, t.id, "deferred", now, &t, "reason", r->detail);
		break;
	}
	case MAILER_PERMFAIL:
		rc = store_touch_finish(s->store, t.id, "failed", r->detail, now);
		if (rc == 0)
			sched_event(s, t.lead_id, t.id, "failed", now, &t, "reason", r->detail);
		break;
	}
	if (rc == 0)
		rc = store_commit(s->store);
	else
		store_rollback(s->store);
out:
	if (rc)
		log_err("sched: cannot record the outcome of touch %lld: %s", (long long)t.id,
			drip_strerror(rc));
	else if (r->outcome == MAILER_OK)
		log_info("sched: touch %lld %s/%s sent (%s)", (long long)t.id, t.sequence, t.step,
			 r->detail);
	else
		log_warn("sched: touch %lld %s/%s %s: %s", (long long)t.id, t.sequence, t.step,
			 r->outcome == MAILER_TEMPFAIL ? "deferred" : "failed", r->detail);
	store_touch_clear(&t);
kick:
	if (s->draining) {
		if (mailer_busy(s->mailer) == 0 && s->drain_cb) {
			void (*cb)(void *) = s->drain_cb;
			s->drain_cb = NULL;
			cb(s->drain_arg);
		}
		return;
	}
	sched_kick(s);
}

void sched_drain(struct sched *s, void (*done)(void *arg), void *arg)
{
	s->draining = true;
	uv_timer_stop(&s->timer);
	if (mailer_busy(s->mailer) == 0) {
		done(arg);
		return;
	}
	log_info("sched: waiting for %zu message(s) with the sender threads",
		 mailer_busy(s->mailer));
	s->drain_cb = done;
	s->drain_arg = arg;
}

static void sched_closed_cb(uv_handle_t *h)
{
	struct sched *s = h->data;
	content_unref(s->content);
	free(s);
}

void sched_close(struct sched *s)
{
	uv_close((uv_handle_t *)&s->timer, sched_closed_cb);
}
