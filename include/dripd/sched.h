/* sched.h - which touch is due next: claim, render, build, hand to a sender thread. */
#ifndef DRIPD_SCHED_H
#define DRIPD_SCHED_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "dripd/clock.h"
#include "dripd/config.h"
#include "dripd/content.h"
#include "dripd/mailer.h"
#include "dripd/store.h"
#include "dripd/token.h"
#include "dripd/util.h"

/*
 * The scheduler follows OpenSMTPD's shape: take due touches up to the free sender threads,
 * dispatch them, look again at once while more is due, else sleep on one timer until the
 * next due time (converted from business to machine time). Nothing polls: a lead added, a
 * clock advanced or an outcome returned calls sched_kick.
 */
struct sched;

struct sched *sched_new(uv_loop_t *loop, const struct config *cfg, struct store *st,
			struct clock *clk, struct mailer *m);
/*
 * Starts the sender threads of the config's named accounts (the default account's mailer
 * is the one given to sched_new); the scheduler closes them in sched_close. 0, or an error
 * with a sentence in err.
 */
int sched_add_accounts(struct sched *s, char *err, size_t errlen);
/* Whether every sequence's "account" is in the config; else file:line of the first that
 * is not, in err. */
int sched_check_accounts(const struct config *cfg, const struct content *c, char *err,
			 size_t errlen);
/* Adds "accounts": each account's threads, sends in the last hour and day, caps, warm-up
 * cap, governor state and rates, and its domains' limits. */
int sched_status(struct sched *s, cJSON *out);
/*
 * The scheduler counts each account's and limited domain's sends (for the caps and status)
 * as it hands touches over and records outcomes; a touch made sent, or no longer sent,
 * elsewhere (dripctl touch resolve) makes it read them from the database again.
 */
void sched_sends_changed(struct sched *s);
/* One delivery account, for /metrics: no SQL, cheap enough for every scrape. */
struct sched_account_view {
	const char *account;
	const char *state; /* the governor's: "normal", "slow" or "paused" */
	int64_t samples;
	double deferral_rate, bounce_rate, complaint_rate;
	/* The sends its caps count in the last hour and 24 hours, and the caps (0: none; the
	 * day's is the warm-up ramp's when that is lower). */
	int64_t sent_hour, sent_day, cap_hour, cap_day;
	struct mailer_times times; /* its sender threads' (zero without a mailer) */
};
typedef void (*sched_account_cb)(void *arg, const struct sched_account_view *v);
void sched_accounts_each(struct sched *s, sched_account_cb cb, void *arg);
/*
 * Changes a limit live and keeps it across restarts: `key` is per_hour or per_day of an
 * account, or per_hour or concurrency of one of its configured domains; 0 means no cap, a
 * negative value goes back to the config's. DRIP_ENOT_FOUND / DRIP_EINVALID with err.
 */
int sched_set_limit(struct sched *s, const char *account, const char *domain, const char *key,
		    int64_t value, char *err, size_t errlen);
/* A global pause: nothing new is handed to the sender threads until resumed. */
void sched_set_paused(struct sched *s, bool paused);
bool sched_paused(const struct sched *s);
/*
 * Why sending is held back, or NULL: the database refused a write (a full disk, a lock held
 * past the busy timeout). Claims stop, outcomes are kept in memory, and a probe write every
 * 2 s resumes everything (recording the kept outcomes first) once the database takes it.
 */
const char *sched_held(const struct sched *s);
/* The tracking secrets that sign the links of every message from now on (not owned). */
void sched_set_keys(struct sched *s, const struct token_keys *keys);
/* The content to render with from now on (takes a reference, drops the old one). */
void sched_set_content(struct sched *s, struct content *c);
/* Something changed: look for due work on the next loop turn. */
void sched_kick(struct sched *s);
/* The mailer's result callback: records the outcome, then moves the lead along. */
void sched_on_result(struct sched *s, const struct mailer_result *r);
/*
 * Around the outcomes of one mailer drain: they are recorded in one transaction (each in
 * its own savepoint, so one that fails does not undo the others), which saves a commit,
 * its WAL frames and its locks per message.
 */
void sched_results_begin(struct sched *s);
void sched_results_end(struct sched *s);
/* Stops dispatching; `done` runs once no job is with a sender thread any more. */
void sched_drain(struct sched *s, void (*done)(void *arg), void *arg);
/* Frees the scheduler (after the drain). */
void sched_close(struct sched *s);
/* A message as a touch would send it. */
struct sched_link {
	char *url;
	char *tag;
};

struct sched_mail {
	struct sched_link *links; /* the message's tracked links, by index */
	size_t nlinks;
	char *message_id;
	char *envelope_from;
	char *subject;
	size_t variant; /* which of the step's variants */
	struct buf data; /* the complete RFC 5322 message */
};

/*
 * Builds the message touch `t` would send to `lead` now: the step's variant for this lead,
 * rendered, threaded under the first note in prospect mode, built. The one path for a real
 * send and for `dripctl preview`. 0, or an error with a sentence in err.
 */
int sched_compose(struct store *st, const struct content *c, const struct config *cfg,
		  const struct token_keys *keys, const struct lead *lead, const struct touch *t,
		  int64_t now, struct sched_mail *out, char *err, size_t errlen);
void sched_mail_clear(struct sched_mail *m);
/*
 * When touch `t` may go at the earliest from `now`: min_gap after the lead's last touch,
 * the sequence's send window and the skip dates in the lead's zone, with the per-lead
 * jitter. The scheduler's own rule; `dripctl simulate` uses it on a copy of the database.
 */
int64_t sched_send_time(const struct config *cfg, const struct content *c, struct store *st,
			const struct lead *lead, const struct touch *t, int64_t now);
/* Whether the step's when/unless let touch `t` go to `lead`; when not, why says so. */
int sched_conditions(struct store *st, const struct content *c, const struct lead *lead,
		     const struct touch *t, bool *send, char *why, size_t whylen);

/*
 * Why a lead's next step has or has not gone: a trace of the scheduler's own checks (status,
 * suppression, pause, due time, when/unless, min_gap, window, skip dates, caps), the time it
 * may go, and a verdict, added to `out`.
 */
int sched_explain(struct sched *s, const struct lead *lead, cJSON *out);

/* Business time of the next wake-up, 0 when asleep with nothing pending. */
int64_t sched_next_wake(const struct sched *s);

#endif
