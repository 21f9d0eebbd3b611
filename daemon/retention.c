/* retention.c - old events folded into per-step counts, long-finished leads anonymised. */
#include <stdlib.h>

#include <uv.h>

#include "dripd/clock.h"
#include "dripd/dripd.h"
#include "dripd/log.h"
#include "dripd/retention.h"
#include "dripd/store.h"
#include "dripd/util.h"

/*
 * DESIGN. Events older than retention.events are the bulk of the database and the part that
 * holds what people did. A timer folds them away: each turn takes up to retention.batch sent
 * touches older than the cutoff, adds their once-per-kind flags (opened, clicked, replied,
 * bounced, unsubscribed: what `dripctl stats` counts) to step_counts by day and step, marks
 * them folded, and deletes up to retention.batch old events whose touch is folded or that
 * belong to no touch, all in one short transaction. While a turn was full the next runs a
 * millisecond later, after the loop has polled (other work goes between); otherwise the timer
 * is armed for the moment the oldest remaining send or event comes of age, or not at all.
 *
 * The same timer anonymises leads whose journey ended more than retention.anonymise ago. That
 * is a sweep of the leads table in id order, retention.batch leads looked at per turn (each
 * turn its own transaction, then a WAL checkpoint if it erased anything, so the erased text
 * leaves the files). A sweep notes the earliest moment a done but recent lead comes of age;
 * the next sweep starts then, or one `anonymise` after this one, whichever is first (a lead
 * still in its journey is looked at again by then), so a lead is anonymised within a sweep of
 * its time and an idle daemon wakes at most once per `anonymise`.
 */

struct retention {
	struct dripd *d;
	uv_timer_t timer;
	bool closed;
	int64_t folded, removed, anonymised; /* since the last log line */
	bool sweeping; /* an anonymise sweep is under way */
	int64_t sweep_after; /* its cursor: the last lead id looked at */
	int64_t sweep_next; /* the earliest last activity of a done, recent lead it passed */
	int64_t sweep_due; /* business time the next sweep starts (0: at once) */
};

/* One turn of folding; *more when a batch was full, else *wake (0: never) is when more is due. */
static int retention_fold(struct retention *r, int64_t now, bool *more, int64_t *wake)
{
	struct dripd *d = r->d;
	const struct config *cfg = d->cfg;
	int64_t folded = 0, removed = 0, oldest = 0;
	size_t max = (size_t)cfg->retention.batch;
	if (store_retention_step(d->store, now - cfg->retention.events, max, &folded, &removed)) {
		log_err("retention: a batch failed; trying again in a minute");
		return -1;
	}
	r->folded += folded;
	r->removed += removed;
	if ((size_t)folded == max || (size_t)removed == max) {
		*more = true;
		return 0;
	}
	if (store_retention_oldest(d->store, &oldest) != 0)
		return -1;
	if (oldest)
		*wake = oldest + cfg->retention.events + 1;
	return 0;
}

/* One turn of the anonymise sweep, with the same contract as retention_fold. */
static int retention_anonymise(struct retention *r, int64_t now, bool *more, int64_t *wake)
{
	struct dripd *d = r->d;
	const struct config *cfg = d->cfg;
	int64_t age = cfg->retention.anonymise;
	struct store_anonymise_turn turn;
	if (!r->sweeping && now >= r->sweep_due) {
		r->sweeping = true;
		r->sweep_after = r->sweep_next = 0;
	}
	if (!r->sweeping) {
		*wake = r->sweep_due;
		return 0;
	}
	if (store_anonymise_step(d->store, r->sweep_after, now - age, (size_t)cfg->retention.batch,
				 now, &turn)) {
		log_err("retention: anonymising a batch of leads failed; trying again in a minute");
		return -1;
	}
	if (turn.anonymised) {
		r->anonymised += turn.anonymised;
		/* secure_delete zeroed the erased text in the pages; the WAL may still hold
		 * copies of the old pages until a checkpoint cuts it. */
		if (store_checkpoint(d->store) != 0)
			log_warn("retention: leads anonymised, but the WAL checkpoint did not "
				 "finish; the next one erases its old pages");
	}
	if (turn.next_at && (!r->sweep_next || turn.next_at < r->sweep_next))
		r->sweep_next = turn.next_at;
	if (turn.seen == cfg->retention.batch) {
		r->sweep_after = turn.last_id;
		*more = true;
		return 0;
	}
	r->sweeping = false;
	r->sweep_due = now + age;
	if (r->sweep_next && r->sweep_next + age + 1 < r->sweep_due)
		r->sweep_due = r->sweep_next + age + 1;
	*wake = r->sweep_due;
	return 0;
}

static void retention_timer_cb(uv_timer_t *h)
{
	struct retention *r = h->data;
	struct dripd *d = r->d;
	const struct config *cfg = d->cfg;
	int64_t now = clock_now(&d->clock), wake = 0, w;
	bool more = false;
	if (cfg->retention.events > 0) {
		w = 0;
		if (retention_fold(r, now, &more, &w) != 0)
			goto retry;
		wake = w;
	}
	if (cfg->retention.anonymise > 0) {
		w = 0;
		if (retention_anonymise(r, now, &more, &w) != 0)
			goto retry;
		if (w && (!wake || w < wake))
			wake = w;
	}
	if (more) {
		/* 1 ms, not 0: libuv before 1.45 runs a timer re-armed with 0 from its own
		 * callback again in the same timer phase, so a 0 would chain every turn of a
		 * long sweep without polling once (measured: the control socket unanswered for
		 * 27 s while 100k leads were anonymised). 1 ms lets the loop poll between turns. */
		uv_timer_start(&r->timer, retention_timer_cb, 1, 0);
		return;
	}
	if (r->folded || r->removed)
		log_info("retention: %lld touches folded into step counts, %lld events removed",
			 (long long)r->folded, (long long)r->removed);
	if (r->anonymised)
		log_info("retention: %lld leads anonymised", (long long)r->anonymised);
	r->folded = r->removed = r->anonymised = 0;
	if (wake)
		uv_timer_start(&r->timer, retention_timer_cb, clock_delay_ms(&d->clock, wake, now),
			       0);
	return;
retry:
	uv_timer_start(&r->timer, retention_timer_cb, 60000, 0);
}

struct retention *retention_new(struct dripd *d)
{
	struct retention *r = xcalloc(1, sizeof(*r));
	r->d = d;
	uv_timer_init(d->loop, &r->timer);
	r->timer.data = r;
	retention_kick(r);
	return r;
}

void retention_kick(struct retention *r)
{
	if (r && !r->closed &&
	    (r->d->cfg->retention.events > 0 || r->d->cfg->retention.anonymise > 0))
		uv_timer_start(&r->timer, retention_timer_cb, 0, 0);
}

static void retention_free_cb(uv_handle_t *h)
{
	free(h->data);
}

void retention_close(struct retention *r)
{
	if (!r || r->closed)
		return;
	r->closed = true;
	uv_close((uv_handle_t *)&r->timer, retention_free_cb);
}
