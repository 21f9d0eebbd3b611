/* retention.c - old events folded into per-step daily counts and removed, in small batches. */
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
 * belong to no touch, all in one short transaction. While a turn was full the next runs on the
 * following loop iteration (other work goes between); otherwise the timer is armed for the
 * moment the oldest remaining send or event comes of age, or not at all.
 */

struct retention {
	struct dripd *d;
	uv_timer_t timer;
	bool closed;
	int64_t folded, removed; /* since start, for the log */
};

static void retention_timer_cb(uv_timer_t *h)
{
	struct retention *r = h->data;
	struct dripd *d = r->d;
	const struct config *cfg = d->cfg;
	if (cfg->retention.events <= 0)
		return;
	int64_t now = clock_now(&d->clock), folded = 0, removed = 0, oldest = 0;
	size_t max = (size_t)cfg->retention.batch;
	if (store_retention_step(d->store, now - cfg->retention.events, max, &folded, &removed)) {
		log_err("retention: a batch failed; trying again in a minute");
		uv_timer_start(&r->timer, retention_timer_cb, 60000, 0);
		return;
	}
	r->folded += folded;
	r->removed += removed;
	if ((size_t)folded == max || (size_t)removed == max) {
		uv_timer_start(&r->timer, retention_timer_cb, 0, 0);
		return;
	}
	if (r->folded || r->removed)
		log_info("retention: %lld touches folded into step counts, %lld events removed",
			 (long long)r->folded, (long long)r->removed);
	r->folded = r->removed = 0;
	if (store_retention_oldest(d->store, &oldest) != 0) {
		uv_timer_start(&r->timer, retention_timer_cb, 60000, 0);
		return;
	}
	if (oldest)
		uv_timer_start(&r->timer, retention_timer_cb,
			       clock_delay_ms(&d->clock, oldest + cfg->retention.events + 1, now),
			       0);
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
	if (r && !r->closed && r->d->cfg->retention.events > 0)
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
