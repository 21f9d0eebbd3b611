/* test_governor.c - the governor's maths: rates, states, recovery, spacing, warm-up ramp. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "testutil.h"

#include "dripd/governor.h"

#define T0 1800000000LL

static void record_n(struct governor *g, const struct governor_limits *l, int64_t at, int n,
		     enum governor_outcome o)
{
	for (int i = 0; i < n; i++)
		governor_record(g, l, at, o);
}

/* The rates from scratch: every recorded outcome (kept here) still inside the window. */
struct reference {
	int64_t at[5000];
	enum governor_outcome o[5000];
	size_t n;
};

static void reference_rates(const struct reference *ref, const struct governor_limits *l,
			    int64_t now, struct governor_rates *out)
{
	memset(out, 0, sizeof(*out));
	size_t first = ref->n > GOVERNOR_RING ? ref->n - GOVERNOR_RING : 0;
	for (size_t i = first; i < ref->n; i++) {
		if (ref->at[i] <= now - l->window)
			continue;
		out->sent += ref->o[i] == GOVERNOR_SENT;
		out->deferred += ref->o[i] == GOVERNOR_DEFERRED;
		out->bounced += ref->o[i] == GOVERNOR_BOUNCED;
		out->complaints += ref->o[i] == GOVERNOR_COMPLAINT;
	}
}

/*
 * The running counts agree with counting from scratch through a long run: the ring
 * wrapping, outcomes ageing out, windows read at other times, and a window changed live
 * (shorter, then longer again, bringing back outcomes the counts had dropped).
 */
static void test_running_counts_match_a_count_from_scratch(void **state)
{
	(void)state;
	static struct reference ref;
	struct governor_limits l;
	struct governor g;
	struct governor_rates got, want;
	uint32_t seed = 12345;
	governor_defaults(&l);
	l.min_samples = 1000000; /* states never change, so nothing resets the ring */
	governor_init(&g);
	ref.n = 0;
	int64_t now = T0;
	for (size_t i = 0; i < 5000; i++) {
		seed = seed * 1103515245u + 12345u;
		now += (seed >> 16) % 7; /* 0-6 s apart: several per second, some gaps */
		if (i == 2000)
			l.window = 600;
		if (i == 3500)
			l.window = 7200;
		enum governor_outcome o = (enum governor_outcome)((seed >> 8) % 4);
		governor_record(&g, &l, now, o);
		ref.at[ref.n] = now;
		ref.o[ref.n++] = o;
		int64_t when = now + (int64_t)((seed >> 4) % 4000);
		governor_rates(&g, &l, when, &got);
		reference_rates(&ref, &l, when, &want);
		assert_int_equal(got.sent, want.sent);
		assert_int_equal(got.deferred, want.deferred);
		assert_int_equal(got.bounced, want.bounced);
		assert_int_equal(got.complaints, want.complaints);
	}
}

static void test_rates_count_only_the_window(void **state)
{
	(void)state;
	struct governor_limits l;
	struct governor g;
	struct governor_rates r;
	governor_defaults(&l);
	governor_init(&g);
	record_n(&g, &l, T0, 6, GOVERNOR_SENT);
	record_n(&g, &l, T0 + 10, 2, GOVERNOR_DEFERRED);
	record_n(&g, &l, T0 + 20, 2, GOVERNOR_BOUNCED);
	governor_rates(&g, &l, T0 + 30, &r);
	assert_int_equal(r.samples, 10);
	assert_true(r.deferral > 0.199 && r.deferral < 0.201);
	assert_true(r.bounce > 0.199 && r.bounce < 0.201);
	/* An hour after the sends, only the deferrals and bounces are left. */
	governor_rates(&g, &l, T0 + 3600, &r);
	assert_int_equal(r.sent, 0);
	assert_int_equal(r.samples, 4);
	governor_rates(&g, &l, T0 + 3621, &r);
	assert_int_equal(r.samples, 0);
	assert_true(r.deferral == 0.0);
}

static void test_a_few_bad_outcomes_change_nothing_below_min_samples(void **state)
{
	(void)state;
	struct governor_limits l;
	struct governor g;
	governor_defaults(&l);
	governor_init(&g);
	record_n(&g, &l, T0, 19, GOVERNOR_DEFERRED); /* 100% deferred, but only 19 */
	assert_int_equal(g.state, GOVERNOR_NORMAL);
	assert_int_equal(governor_concurrency(&g, 4), 4);
	assert_int_equal(governor_next_start(&g, &l, T0), T0);
}

static void test_a_burst_of_421s_pauses_then_slows_then_recovers(void **state)
{
	(void)state;
	struct governor_limits l;
	struct governor g;
	governor_defaults(&l);
	governor_init(&g);
	record_n(&g, &l, T0, 15, GOVERNOR_SENT);
	/* 5 deferrals out of 20: 25% crosses the slow threshold (20%), not the pause one. */
	record_n(&g, &l, T0 + 1, 5, GOVERNOR_DEFERRED);
	assert_int_equal(g.state, GOVERNOR_SLOW);
	assert_contains(g.reason, "deferral rate 0.250 >= 0.200 over 20 outcomes");
	assert_int_equal(governor_concurrency(&g, 4), 1);
	governor_started(&g, T0 + 2);
	assert_int_equal(governor_next_start(&g, &l, T0 + 2), T0 + 2 + l.slow_interval);
	/* Deferrals keep coming: 10 of 25 is 40%, still slow; 15 of 30 is 50%: paused. */
	record_n(&g, &l, T0 + 3, 5, GOVERNOR_DEFERRED);
	assert_int_equal(g.state, GOVERNOR_SLOW);
	assert_true(governor_record(&g, &l, T0 + 4, GOVERNOR_DEFERRED) == false);
	record_n(&g, &l, T0 + 4, 3, GOVERNOR_DEFERRED);
	assert_int_equal(g.state, GOVERNOR_SLOW);
	assert_true(governor_record(&g, &l, T0 + 4, GOVERNOR_DEFERRED));
	assert_int_equal(g.state, GOVERNOR_PAUSED);
	assert_contains(g.reason, "paused: deferral rate 0.500");
	assert_int_equal(governor_concurrency(&g, 4), 0);
	assert_int_equal(governor_next_start(&g, &l, T0 + 10), T0 + 4 + l.pause);
	/* The pause ends by itself into slow, and slow into normal after `recover`. */
	assert_false(governor_tick(&g, &l, T0 + 4 + l.pause - 1));
	assert_true(governor_tick(&g, &l, T0 + 4 + l.pause));
	assert_int_equal(g.state, GOVERNOR_SLOW);
	assert_contains(g.reason, "recovering");
	record_n(&g, &l, T0 + 4 + l.pause + 60, 30, GOVERNOR_SENT);
	assert_int_equal(g.state, GOVERNOR_SLOW);
	assert_false(governor_tick(&g, &l, T0 + 4 + l.pause + l.recover - 1));
	assert_true(governor_tick(&g, &l, T0 + 4 + l.pause + l.recover));
	assert_int_equal(g.state, GOVERNOR_NORMAL);
	assert_int_equal(governor_concurrency(&g, 4), 4);
}

static void test_bounces_and_complaints_pause_at_their_own_thresholds(void **state)
{
	(void)state;
	struct governor_limits l;
	struct governor g;
	governor_defaults(&l);
	governor_init(&g);
	record_n(&g, &l, T0, 90, GOVERNOR_SENT);
	record_n(&g, &l, T0, 10, GOVERNOR_BOUNCED); /* 10% */
	assert_int_equal(g.state, GOVERNOR_PAUSED);
	assert_contains(g.reason, "bounce rate 0.100");

	governor_init(&g);
	record_n(&g, &l, T0, 400, GOVERNOR_SENT);
	governor_record(&g, &l, T0 + 1, GOVERNOR_COMPLAINT); /* 1 in 400 = 0.25%: slow */
	assert_int_equal(g.state, GOVERNOR_SLOW);
	assert_contains(g.reason, "complaint rate");
	governor_record(&g, &l, T0 + 2, GOVERNOR_COMPLAINT); /* 2 in 400 = 0.5%: paused */
	assert_int_equal(g.state, GOVERNOR_PAUSED);
}

static void test_a_slow_account_stays_slow_while_rates_stay_bad(void **state)
{
	(void)state;
	struct governor_limits l;
	struct governor g;
	governor_defaults(&l);
	governor_init(&g);
	record_n(&g, &l, T0, 16, GOVERNOR_SENT);
	record_n(&g, &l, T0, 4, GOVERNOR_DEFERRED);
	assert_int_equal(g.state, GOVERNOR_SLOW);
	/* At the end of `recover` the window still holds the deferrals: not yet. */
	l.window = 2 * l.recover;
	assert_false(governor_tick(&g, &l, T0 + l.recover));
	assert_int_equal(g.state, GOVERNOR_SLOW);
	assert_true(governor_tick(&g, &l, T0 + l.window));
	assert_int_equal(g.state, GOVERNOR_NORMAL);
}

static void test_the_warm_up_ramp_grows_linearly_then_ends(void **state)
{
	(void)state;
	int64_t start = 1798761600; /* 2027-01-01T00:00:00Z */
	assert_int_equal(governor_warmup_cap(start, 10, 50, 1050, start - 86400), 50);
	assert_int_equal(governor_warmup_cap(start, 10, 50, 1050, start), 50);
	assert_int_equal(governor_warmup_cap(start, 10, 50, 1050, start + 86399), 50);
	assert_int_equal(governor_warmup_cap(start, 10, 50, 1050, start + 86400), 150);
	assert_int_equal(governor_warmup_cap(start, 10, 50, 1050, start + 9 * 86400), 950);
	assert_int_equal(governor_warmup_cap(start, 10, 50, 1050, start + 10 * 86400), -1);
	assert_int_equal(governor_warmup_cap(start, 0, 50, 1050, start), -1);
}

/* Sends as the scheduler sees them: each send's time, or 0 once it left the window. */
struct sends {
	int64_t at[20000];
	size_t n;
};

static int64_t sends_count(const struct sends *r, int64_t since, int64_t *oldest)
{
	int64_t count = 0;
	*oldest = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (!r->at[i] || r->at[i] <= since)
			continue;
		count++;
		if (!*oldest || r->at[i] < *oldest)
			*oldest = r->at[i];
	}
	return count;
}

static void check_window(struct governor_window *w, const struct sends *r, int64_t now)
{
	int64_t oldest, want_oldest;
	int64_t hour = governor_window_count(w, GOVERNOR_HOUR, now, &oldest);
	assert_int_equal(hour, sends_count(r, now - GOVERNOR_HOUR, &want_oldest));
	assert_int_equal(oldest, want_oldest);
	int64_t all = governor_window_count(w, w->keep, now, &oldest);
	assert_int_equal(all, sends_count(r, now - w->keep, &want_oldest));
	assert_int_equal(oldest, want_oldest);
}

/*
 * The caps' running counts agree with counting from scratch through two days of sends:
 * many in one second and seconds without any, sends committed then moved to the time they
 * went (sent) or taken away (deferred, bounced), tallies ageing out of the hour and of the
 * day, the array compacting and growing, and a clear then fill as from the database.
 */
static void test_a_rolling_window_counts_like_a_count_from_scratch(void **state)
{
	(void)state;
	static struct sends r;
	struct governor_window w;
	uint64_t seed = 42;
	governor_window_init(&w, GOVERNOR_DAY);
	memset(&r, 0, sizeof(r));
	int64_t now = T0;
	while (now < T0 + 2 * GOVERNOR_DAY && r.n < 20000) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		unsigned roll = (unsigned)(seed >> 33) % 100;
		if (roll < 40) {
			governor_window_move(&w, now, 1);
			r.at[r.n++] = now;
		} else if (roll < 70 && r.n > 0) {
			/* A send comes back: sent a little later, or gone (mostly one of the
			 * latest, now and then one from hours ago). */
			size_t i = r.n - 1 -
				   (size_t)(seed >> 40) % (roll < 65 ? (r.n < 8 ? r.n : 8) : r.n);
			if (r.at[i] && r.at[i] > now - GOVERNOR_DAY) {
				governor_window_move(&w, r.at[i], -1);
				r.at[i] = roll < 55 ? now : 0;
				if (r.at[i])
					governor_window_move(&w, now, 1);
			}
		} else {
			now += (int64_t)(seed >> 45) % 30;
		}
		if (roll % 7 == 0)
			check_window(&w, &r, now);
	}
	check_window(&w, &r, now);
	assert_true(r.n > 10000);
	/* Nothing leaves a tally under zero: taking away a send that is not there. */
	governor_window_move(&w, now - 10, -1);
	check_window(&w, &r, now);
	/* Filled again from scratch, oldest first, as sched does from the database. */
	governor_window_clear(&w);
	for (size_t i = 0; i < r.n; i++)
		if (r.at[i] > now - GOVERNOR_DAY)
			governor_window_move(&w, r.at[i], 1);
	check_window(&w, &r, now);
	check_window(&w, &r, now + GOVERNOR_HOUR);
	check_window(&w, &r, now + GOVERNOR_DAY);
	int64_t oldest;
	assert_int_equal(governor_window_count(&w, GOVERNOR_DAY, now + GOVERNOR_DAY, &oldest), 0);
	assert_int_equal(oldest, 0);
	governor_window_free(&w);
}

/* A domain's window keeps one hour: a send older than that is counted nowhere. */
static void test_an_hour_window_forgets_what_aged_out(void **state)
{
	(void)state;
	struct governor_window w;
	int64_t oldest;
	governor_window_init(&w, GOVERNOR_HOUR);
	governor_window_move(&w, T0, 3);
	governor_window_move(&w, T0 + 100, 2);
	assert_int_equal(governor_window_count(&w, GOVERNOR_HOUR, T0 + 100, &oldest), 5);
	assert_int_equal(oldest, T0);
	assert_int_equal(governor_window_count(&w, GOVERNOR_HOUR, T0 + 3600, &oldest), 2);
	assert_int_equal(oldest, T0 + 100);
	/* A send at a time already aged out (the clock moved on) is not counted. */
	governor_window_move(&w, T0, 1);
	assert_int_equal(governor_window_count(&w, GOVERNOR_HOUR, T0 + 3600, &oldest), 2);
	/* Time going back counts what it counted at the latest time. */
	assert_int_equal(governor_window_count(&w, GOVERNOR_HOUR, T0, &oldest), 2);
	assert_int_equal(governor_window_count(&w, GOVERNOR_HOUR, T0 + 3700, &oldest), 0);
	assert_int_equal(oldest, 0);
	governor_window_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rates_count_only_the_window),
		cmocka_unit_test(test_running_counts_match_a_count_from_scratch),
		cmocka_unit_test(test_a_few_bad_outcomes_change_nothing_below_min_samples),
		cmocka_unit_test(test_a_burst_of_421s_pauses_then_slows_then_recovers),
		cmocka_unit_test(test_bounces_and_complaints_pause_at_their_own_thresholds),
		cmocka_unit_test(test_a_slow_account_stays_slow_while_rates_stay_bad),
		cmocka_unit_test(test_the_warm_up_ramp_grows_linearly_then_ends),
		cmocka_unit_test(test_a_rolling_window_counts_like_a_count_from_scratch),
		cmocka_unit_test(test_an_hour_window_forgets_what_aged_out),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
