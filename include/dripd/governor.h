/* governor.h - pure: a delivery account's reputation state, warm-up ramp and send spacing. */
#ifndef DRIPD_GOVERNOR_H
#define DRIPD_GOVERNOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Pure: no loop, no database, no logging; the scheduler feeds it outcomes and business
 * time and asks what an account may do. It keeps the outcomes of the last `window` (a ring
 * of GOVERNOR_RING) and from their rates decides a state:
 *
 *   normal --(a rate over a slow threshold)--> slow --(a rate over a pause threshold)--> paused
 *   paused --(after `pause`)--> slow --(`recover` with rates back under the thresholds)--> normal
 *
 * Slow means one message at a time, `slow_interval` apart; paused means none. Rates need
 * `min_samples` outcomes in the window before they count, so one 421 does not slow anyone.
 * Deferral and bounce rates are per SMTP attempt; the complaint rate is per message sent.
 */

enum governor_outcome {
	GOVERNOR_SENT, /* 2xx */
	GOVERNOR_DEFERRED, /* 4xx (421 included), no connection, timeout */
	GOVERNOR_BOUNCED, /* 5xx for the recipient, or a DSN hard bounce */
	GOVERNOR_COMPLAINT, /* an abuse report (ARF) */
};

enum governor_state { GOVERNOR_NORMAL, GOVERNOR_SLOW, GOVERNOR_PAUSED };

struct governor_limits {
	int64_t window; /* business seconds of outcomes the rates are read over */
	int64_t min_samples;
	double slow_deferral, pause_deferral;
	double slow_bounce, pause_bounce;
	double slow_complaint, pause_complaint;
	int64_t pause; /* how long a pause lasts */
	int64_t recover; /* how long slow lasts once the rates are good again */
	int64_t slow_interval; /* business seconds between two messages while slow */
};

#define GOVERNOR_RING 1024

struct governor {
	struct {
		int64_t at;
		enum governor_outcome outcome;
	} ring[GOVERNOR_RING];
	size_t head, n;
	/* Running counts, by outcome, of the newest `live` entries: those still inside the
	 * window when the last outcome was recorded (governor_rates starts from them). */
	int64_t counts[4];
	size_t live;
	enum governor_state state;
	int64_t since; /* when the state began */
	int64_t until; /* paused: when the pause ends; slow: the earliest return to normal */
	int64_t last_start; /* when the last message was handed over (for slow_interval) */
	char reason[160]; /* why the state is what it is */
};

struct governor_rates {
	int64_t sent, deferred, bounced, complaints, samples;
	double deferral, bounce, complaint;
};

/* The limits a config without a "governor" section gets. */
void governor_defaults(struct governor_limits *l);
void governor_init(struct governor *g);
const char *governor_state_name(enum governor_state s);
/* The outcomes of the window ending at `now`, and their rates (0 when there are none). */
void governor_rates(const struct governor *g, const struct governor_limits *l, int64_t now,
		    struct governor_rates *out);
/* Records an outcome and moves the state; true when the state changed (reason says why). */
bool governor_record(struct governor *g, const struct governor_limits *l, int64_t now,
		     enum governor_outcome o);
/* The changes time alone makes (a pause ending, slow ending); true when the state changed. */
bool governor_tick(struct governor *g, const struct governor_limits *l, int64_t now);
/* A message was handed over at `now`. */
void governor_started(struct governor *g, int64_t now);
/* The earliest business time the account may hand over another message (now if it may). */
int64_t governor_next_start(const struct governor *g, const struct governor_limits *l, int64_t now);
/* How many messages may be in flight at once out of `threads`: all, 1 when slow, 0 paused. */
size_t governor_concurrency(const struct governor *g, size_t threads);

/*
 * The warm-up ramp's daily cap on day `now`: `from` on the start day (UTC midnight `start`),
 * growing linearly to `to` on day `days`; -1 when there is no ramp (days 0) or it is over.
 * Before the start day the cap is `from`.
 */
int64_t governor_warmup_cap(int64_t start, int64_t days, int64_t from, int64_t to, int64_t now);

/*
 * The sends of a rolling window, for the caps (per hour, per rolling 24 hours): how many
 * went out after a time, and the oldest of them, without asking the database every pass
 * (counting a range in SQLite walks it: a pass cost ~1 ms at 30,000 sends a day). Kept as
 * one tally a second that had sends, in time order, for the last `keep` seconds; the
 * counts of the last hour and of the whole window run along as time moves on.
 *
 * A send counts at a time and may move (committed sending, then sent) or leave (deferred,
 * bounced): governor_window_move with -1 at its old time. The scheduler keeps one per
 * account and per limited domain, and fills them from the database at start.
 */
#define GOVERNOR_HOUR 3600
#define GOVERNOR_DAY 86400

struct governor_tally {
	int64_t at, n;
};

struct governor_window {
	struct governor_tally *v;
	size_t head, len, cap; /* the live tallies are v[head..len), oldest first */
	size_t hour; /* the first of them inside the last hour, as of `now` */
	int64_t keep; /* seconds kept: GOVERNOR_HOUR or more */
	int64_t now; /* the latest time the window was read at */
	int64_t in_hour, in_keep; /* sends in v[hour..len) and in v[head..len) */
};

void governor_window_init(struct governor_window *w, int64_t keep);
void governor_window_free(struct governor_window *w);
/* Forgets every send (before filling it again from the database). */
void governor_window_clear(struct governor_window *w);
/* n sends at `at` (n < 0 takes sends away; a tally never goes under 0). */
void governor_window_move(struct governor_window *w, int64_t at, int64_t n);
/*
 * Sends after now - span (span GOVERNOR_HOUR, or the window's keep), and in *oldest the
 * time of the oldest of them (0 when none). Time going back counts what it counted.
 */
int64_t governor_window_count(struct governor_window *w, int64_t span, int64_t now,
			      int64_t *oldest);

#endif
