/* dripd.h - the one struct that holds the daemon's parts; owned by main.c, never global. */
#ifndef DRIPD_DRIPD_H
#define DRIPD_DRIPD_H

#include <stdbool.h>
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
struct hooks;

struct dripd {
	uv_loop_t *loop;
	struct config *cfg;
	struct content *content;
	struct store *store;
	struct clock clock;
	struct mailer *mailer;
	struct sched *sched;
	struct control *control;
	struct hooks *hooks; /* webhooks */
	struct token_keys *keys; /* the tracking secrets, newest first */
	int64_t started_at; /* business time at start */
	uint64_t started_mono_ms;
	bool stopping;
};

/* Saves the test clock's offset so a restart resumes the same business time. */
void dripd_save_clock(struct dripd *d);

#endif
