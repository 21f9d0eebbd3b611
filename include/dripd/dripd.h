/* dripd.h - the one struct that holds the daemon's parts; owned by main.c, never global. */
#ifndef DRIPD_DRIPD_H
#define DRIPD_DRIPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dripd/clock.h"
#include "dripd/config.h"
#include "dripd/content.h"
#include "dripd/store.h"

/* The settings key that keeps the test clock's offset across restarts. */
#define DRIPD_CLOCK_SETTING "clock_offset"
/* The settings key of the global pause (dripctl pause / resume). */
#define DRIPD_PAUSED_SETTING "paused"

struct mailer;
struct token_keys;
struct sched;
struct control;
struct track;
struct inbox;
struct sd;
struct hooks;
struct signup;
struct retention;

struct dripd {
	uv_loop_t *loop;
	struct config *cfg;
	struct content *content;
	struct store *store;
	struct clock clock;
	struct mailer *mailer;
	struct sched *sched;
	struct control *control;
	struct track *track; /* the HTTP tracking listener */
	struct inbox *inbox; /* NULL when no inbox is configured */
	struct hooks *hooks; /* webhooks */
	struct signup *signup; /* website signup with double opt-in */
	struct retention *retention; /* old events folded into step counts */
	struct token_keys *keys; /* the tracking secrets, newest first */
	struct sd *sd; /* systemd: notify, watchdog, inherited sockets; NULL in tests */
	int64_t started_at; /* business time at start */
	uint64_t started_mono_ms;
	bool stopping;
	/* Reloads config and content as SIGHUP does (set by main.c); 0, or an error with the
	 * reason in err while the old config and content keep running. */
	int (*reload)(struct dripd *d, char *err, size_t errlen);
};

/* Saves the test clock's offset so a restart resumes the same business time. */
void dripd_save_clock(struct dripd *d);

#endif
