/* journey.h - where a lead is in the buyer's journey: stage moves, enrolment, progress. */
#ifndef DRIPD_JOURNEY_H
#define DRIPD_JOURNEY_H

#include <stddef.h>
#include <stdint.h>

#include "dripd/content.h"
#include "dripd/store.h"

/*
 * The journey module decides what a lead receives next; it runs on the loop thread inside
 * the caller's transaction and records each decision as an event. The skeleton moves a lead
 * into a stage and walks it through that stage's sequence; scoring and stage-move rules on
 * events extend it.
 */

/*
 * Puts `lead` in `stage`: ends its active enrolment (as exited), enrols it in `sequence` (or
 * the stage's sequence when NULL) with the first step due after that step's delay, and
 * records a "stage" event. A stage without a sequence leaves the lead there, enrolled in
 * nothing. Errors (unknown stage or sequence) fill err with a sentence.
 */
int journey_enter_stage(struct store *st, const struct content *c, const struct lead *lead,
			const char *stage, const char *sequence, int64_t now, char *err,
			size_t errlen);

/*
 * After touch `t` was sent at `now`: schedules the sequence's next step after its delay, or
 * marks the enrolment completed when `t` was the last step. Nothing follows when the
 * enrolment ended while `t` was in flight (the lead moved on).
 */
int journey_step_sent(struct store *st, const struct content *c, const struct touch *t,
		      int64_t now);

#endif
