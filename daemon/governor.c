/* governor.c - pure: reputation states from outcome rates, warm-up ramp, slow spacing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/governor.h"
#include "dripd/util.h"

void governor_defaults(struct governor_limits *l)
{
	/* Gmail's bulk-sender guidance: keep complaints under 0.3%; MTAs commonly back off
	 * when a fifth of attempts are deferred; 5% hard bounces marks a bad list. */
	*l = (struct governor_limits){
		.window = 3600,
		.min_samples = 20,
		.slow_deferral = 0.2,
		.pause_deferral = 0.5,
		.slow_bounce = 0.05,
		.pause_bounce = 0.1,
		.slow_complaint = 0.001,
		.pause_complaint = 0.003,
		.pause = 1800,
		.recover = 3600,
		.slow_interval = 30,
	};
}

void governor_init(struct governor *g)
{
	memset(g, 0, sizeof(*g));
	g->state = GOVERNOR_NORMAL;
	snprintf(g->reason, sizeof(g->reason), "rates under the thresholds");
}

const char *governor_state_name(enum governor_state s)
{
	return s == GOVERNOR_PAUSED ? "paused" : s == GOVERNOR_SLOW ? "slow" : "normal";
}

static size_t governor_index(const struct governor *g, size_t back)
{
	return (g->head + GOVERNOR_RING - back) % GOVERNOR_RING;
}

/* Drops from the running counts the entries that left the window at `now`. */
static void governor_expire(struct governor *g, const struct governor_limits *l, int64_t now)
{
	while (g->live > 0) {
		size_t k = governor_index(g, g->live);
		if (g->ring[k].at > now - l->window)
			break;
		g->counts[g->ring[k].outcome]--;
		g->live--;
	}
}

void governor_rates(const struct governor *g, const struct governor_limits *l, int64_t now,
		    struct governor_rates *out)
{
	memset(out, 0, sizeof(*out));
	/* The running counts, less what has aged out since; a full walk only when the
	 * window grew (a live limit change) past an entry they had dropped. The walk cost
	 * up to 1,024 steps for every outcome in the delivery benchmark. */
	if (g->live == g->n || g->ring[governor_index(g, g->live + 1)].at <= now - l->window) {
		int64_t c[4];
		memcpy(c, g->counts, sizeof(c));
		for (size_t back = g->live; back > 0; back--) {
			size_t k = governor_index(g, back);
			if (g->ring[k].at > now - l->window)
				break;
			c[g->ring[k].outcome]--;
		}
		out->sent = c[GOVERNOR_SENT];
		out->deferred = c[GOVERNOR_DEFERRED];
		out->bounced = c[GOVERNOR_BOUNCED];
		out->complaints = c[GOVERNOR_COMPLAINT];
		goto rates;
	}
	for (size_t i = 0; i < g->n; i++) {
		size_t k = (g->head + GOVERNOR_RING - 1 - i) % GOVERNOR_RING;
		if (g->ring[k].at <= now - l->window)
			break; /* newest first: the rest are older still */
		switch (g->ring[k].outcome) {
		case GOVERNOR_SENT:
			out->sent++;
			break;
		case GOVERNOR_DEFERRED:
			out->deferred++;
			break;
		case GOVERNOR_BOUNCED:
			out->bounced++;
			break;
		case GOVERNOR_COMPLAINT:
			out->complaints++;
			break;
		}
	}
rates:
	out->samples = out->sent + out->deferred + out->bounced;
	if (out->samples) {
		out->deferral = (double)out->deferred / (double)out->samples;
		out->bounce = (double)out->bounced / (double)out->samples;
	}
	if (out->sent)
		out->complaint = (double)out->complaints / (double)out->sent;
	else if (out->complaints)
		out->complaint = 1.0;
}

/* Which threshold the rates cross, worst first: 2 pause, 1 slow, 0 none; `why` says. */
static int governor_verdict(const struct governor_rates *r, const struct governor_limits *l,
			    char *why, size_t whylen)
{
	if (r->samples < l->min_samples)
		return 0;
	const struct {
		const char *what;
		double rate, slow, pause;
	} checks[] = {
		{ "complaint", r->complaint, l->slow_complaint, l->pause_complaint },
		{ "bounce", r->bounce, l->slow_bounce, l->pause_bounce },
		{ "deferral", r->deferral, l->slow_deferral, l->pause_deferral },
	};
	int worst = 0;
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		int v = checks[i].pause > 0 && checks[i].rate >= checks[i].pause ? 2
			: checks[i].slow > 0 && checks[i].rate >= checks[i].slow ? 1
										 : 0;
		if (v > worst) {
			worst = v;
			snprintf(why, whylen, "%s rate %.3f >= %.3f over %lld outcomes",
				 checks[i].what, checks[i].rate,
				 v == 2 ? checks[i].pause : checks[i].slow, (long long)r->samples);
		}
	}
	return worst;
}

static void governor_set(struct governor *g, enum governor_state s, int64_t now, int64_t until)
{
	g->state = s;
	g->since = now;
	g->until = until;
}

bool governor_record(struct governor *g, const struct governor_limits *l, int64_t now,
		     enum governor_outcome o)
{
	struct governor_rates r;
	char why[128] = "";
	enum governor_state was = g->state;
	if (g->n == GOVERNOR_RING && g->live == g->n) {
		/* The oldest entry is overwritten: it leaves the counts too. */
		g->counts[g->ring[g->head].outcome]--;
		g->live--;
	}
	g->ring[g->head].at = now;
	g->ring[g->head].outcome = o;
	g->head = (g->head + 1) % GOVERNOR_RING;
	if (g->n < GOVERNOR_RING)
		g->n++;
	g->counts[o]++;
	g->live++;
	governor_expire(g, l, now);
	governor_tick(g, l, now);
	if (g->state == GOVERNOR_PAUSED)
		return g->state != was;
	governor_rates(g, l, now, &r);
	int v = governor_verdict(&r, l, why, sizeof(why));
	if (v == 2) {
		/* A fresh start after the pause: the outcomes that caused it are not held
		 * against the first messages that follow. */
		governor_set(g, GOVERNOR_PAUSED, now, now + l->pause);
		g->n = g->live = 0;
		memset(g->counts, 0, sizeof(g->counts));
		snprintf(g->reason, sizeof(g->reason), "paused: %s", why);
	} else if (v == 1) {
		if (g->state == GOVERNOR_NORMAL)
			governor_set(g, GOVERNOR_SLOW, now, now + l->recover);
		else
			g->until = now + l->recover;
		snprintf(g->reason, sizeof(g->reason), "slow: %s", why);
	}
	return g->state != was;
}

bool governor_tick(struct governor *g, const struct governor_limits *l, int64_t now)
{
	struct governor_rates r;
	char why[128];
	if (g->state == GOVERNOR_PAUSED && now >= g->until) {
		governor_set(g, GOVERNOR_SLOW, now, now + l->recover);
		snprintf(g->reason, sizeof(g->reason), "recovering: slow after a pause");
		return true;
	}
	if (g->state == GOVERNOR_SLOW && now >= g->until) {
		governor_rates(g, l, now, &r);
		if (governor_verdict(&r, l, why, sizeof(why)) == 0) {
			governor_set(g, GOVERNOR_NORMAL, now, 0);
			snprintf(g->reason, sizeof(g->reason),
				 "recovered: rates under the thresholds");
			return true;
		}
	}
	return false;
}

void governor_started(struct governor *g, int64_t now)
{
	g->last_start = now;
}

int64_t governor_next_start(const struct governor *g, const struct governor_limits *l, int64_t now)
{
	if (g->state == GOVERNOR_PAUSED)
		return g->until > now ? g->until : now;
	if (g->state == GOVERNOR_SLOW && g->last_start && g->last_start + l->slow_interval > now)
		return g->last_start + l->slow_interval;
	return now;
}

size_t governor_concurrency(const struct governor *g, size_t threads)
{
	if (g->state == GOVERNOR_PAUSED)
		return 0;
	if (g->state == GOVERNOR_SLOW)
		return threads ? 1 : 0;
	return threads;
}

int64_t governor_warmup_cap(int64_t start, int64_t days, int64_t from, int64_t to, int64_t now)
{
	if (days <= 0)
		return -1;
	int64_t day = now < start ? 0 : (now - start) / 86400;
	if (day >= days)
		return -1;
	return from + (to - from) * day / days;
}

void governor_window_init(struct governor_window *w, int64_t keep)
{
	memset(w, 0, sizeof(*w));
	w->keep = keep < GOVERNOR_HOUR ? GOVERNOR_HOUR : keep;
}

void governor_window_free(struct governor_window *w)
{
	free(w->v);
	governor_window_init(w, w->keep);
}

void governor_window_clear(struct governor_window *w)
{
	w->head = w->len = w->hour = 0;
	w->in_hour = w->in_keep = 0;
}

/* Moves the window's end to `now`: tallies age out of the hour, then out of the window. */
static void governor_window_advance(struct governor_window *w, int64_t now)
{
	if (now <= w->now)
		return;
	w->now = now;
	while (w->hour < w->len && w->v[w->hour].at <= now - GOVERNOR_HOUR)
		w->in_hour -= w->v[w->hour++].n;
	/* keep >= an hour: what leaves the window left the hour already. */
	while (w->head < w->hour && w->v[w->head].at <= now - w->keep)
		w->in_keep -= w->v[w->head++].n;
}

/* The first live tally at or after `at`. */
static size_t governor_window_find(const struct governor_window *w, int64_t at)
{
	size_t lo = w->head, hi = w->len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (w->v[mid].at < at)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Room for one more tally: when at least half the array has aged out it moves down over
 * them, else the array doubles (either way a tally is moved O(1) times on average).
 */
static void governor_window_room(struct governor_window *w)
{
	if (w->len < w->cap)
		return;
	if (w->head > 0 && w->head >= w->len / 2) {
		memmove(w->v, w->v + w->head, (w->len - w->head) * sizeof(*w->v));
		w->len -= w->head;
		w->hour -= w->head;
		w->head = 0;
		return;
	}
	w->cap = w->cap ? w->cap * 2 : 64;
	w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
}

void governor_window_move(struct governor_window *w, int64_t at, int64_t n)
{
	if (n == 0 || at <= w->now - w->keep)
		return; /* aged out already: counted nowhere */
	size_t i = governor_window_find(w, at);
	if (i == w->len || w->v[i].at != at) {
		if (n < 0)
			return;
		governor_window_room(w);
		i = governor_window_find(w, at);
		memmove(w->v + i + 1, w->v + i, (w->len - i) * sizeof(*w->v));
		w->v[i] = (struct governor_tally){ .at = at, .n = 0 };
		w->len++;
		if (at <= w->now - GOVERNOR_HOUR)
			w->hour++; /* it went in before the hour's first */
	}
	if (w->v[i].n + n < 0)
		n = -w->v[i].n;
	w->v[i].n += n;
	w->in_keep += n;
	if (at > w->now - GOVERNOR_HOUR)
		w->in_hour += n;
	if (w->v[i].n == 0) {
		memmove(w->v + i, w->v + i + 1, (w->len - i - 1) * sizeof(*w->v));
		w->len--;
		if (i < w->hour)
			w->hour--;
	}
}

int64_t governor_window_count(struct governor_window *w, int64_t span, int64_t now, int64_t *oldest)
{
	governor_window_advance(w, now);
	size_t from = span <= GOVERNOR_HOUR ? w->hour : w->head;
	*oldest = from < w->len ? w->v[from].at : 0;
	return span <= GOVERNOR_HOUR ? w->in_hour : w->in_keep;
}
