/* journey.h - the buyer's journey: stage moves, enrolment, conditions, scoring and rules. */
#ifndef DRIPD_JOURNEY_H
#define DRIPD_JOURNEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/content.h"
#include "dripd/store.h"

/*
 * The journey module decides what a lead receives next. It runs on the loop thread inside
 * the caller's transaction and records each decision as an event. Functions that take an
 * err buffer fill it with a sentence a person can read.
 */

/*
 * Puts `lead` in `stage`: ends its active enrolment (as exited, its pending touches
 * skipped), enrols it in `sequence` (or the first of the stage's sequences whose `when`
 * holds, when NULL) with the first step due after that step's delay, and records a "stage"
 * event. A stage without a matching sequence leaves the lead there, enrolled in nothing.
 */
int journey_enter_stage(struct store *st, const struct content *c, const struct lead *lead,
			const char *stage, const char *sequence, int64_t now, char *err,
			size_t errlen);

/*
 * journey_enter_stage for a lead just inserted in this transaction into lead->stage: the
 * same stage event, enrolment and first touch, without what only a lead that moves needs
 * (ending an active enrolment, which a new lead cannot have, and setting the stage it was
 * inserted with). For bulk imports.
 */
int journey_enter_new(struct store *st, const struct content *c, const struct lead *lead,
		      int64_t now, char *err, size_t errlen);

/*
 * Records an event of `kind` for the lead (touch_id 0 when not about one message), adds the
 * journey's points for it, and applies the first matching rule of journey.json. An opt-out
 * (unsubscribe, bounce, complaint) stops the drip whatever the rules say; a reply that no
 * rule handles hands the lead to a person. lead->score is updated.
 */
int journey_on_event(struct store *st, const struct content *c, struct lead *lead, int64_t touch_id,
		     const char *kind, const char *detail_json, int64_t now, char *err,
		     size_t errlen);

/*
 * Score decay: `score`, set at business time `at`, as of `now` (halving every
 * journey.json score_half_life; unchanged without one).
 */
double journey_score(const struct content *c, double score, int64_t at, int64_t now);
/* The lead's decayed score as shown (lead show, list, explain): rounded to 0.01. */
double journey_score_shown(const struct content *c, const struct lead *lead, int64_t now);
/*
 * The first business time after `at` at which `score` (set at `at`) has decayed under the
 * "below" of a fall rule for `stage`; 0 when it never will.
 */
int64_t journey_fall_at(const struct content *c, const char *stage, double score, int64_t at);
/*
 * Moves back the leads (up to `max`, at most 64) whose fall time has come, as their fall
 * rules say (a "stage" event with the reason), and re-arms the rest; *n: how many were
 * looked at (a full batch means there may be more). Runs inside the caller's transaction.
 */
int journey_falls_due(struct store *st, const struct content *c, int64_t now, size_t max,
		      size_t *n);

/* Whether a step's or sequence's condition holds for the lead (true when cond is NULL). */
int journey_cond_holds(struct store *st, const struct lead *lead, const char *sequence,
		       const struct content_cond *cond, bool *holds);

/*
 * After touch `t` was sent (or skipped by its condition) at `now`: schedules the sequence's
 * next step after its delay, or completes the enrolment (applying any "finished" rule) when
 * `t` was the last step. Nothing follows when the enrolment ended while `t` was in flight.
 * Each write is whole or not done (the rule's several writes share a savepoint), so a
 * failure leaves what was written before it true: no savepoint is needed around this.
 */
int journey_step_done(struct store *st, const struct content *c, const struct touch *t,
		      int64_t now);

#endif
