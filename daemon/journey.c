/* journey.c - stage moves, enrolment in a stage's sequence, and progress through its steps. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dripd/error.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/util.h"

static int journey_event(struct store *st, int64_t lead_id, int64_t touch_id, const char *kind,
			 int64_t now, cJSON *detail)
{
	char *json = cJSON_PrintUnformatted(detail);
	int rc = store_event_add(st, lead_id, touch_id, kind, now, json);
	cJSON_free(json);
	cJSON_Delete(detail);
	return rc;
}

int journey_enter_stage(struct store *st, const struct content *c, const struct lead *lead,
			const char *stage, const char *sequence, int64_t now, char *err,
			size_t errlen)
{
	const struct content_sequence *seq;
	int64_t enrolment_id = 0;
	int rc;

	if (content_stage_index(c, stage) < 0)
		return errf(err, errlen, DRIP_EINVALID, "unknown stage \"%s\"", stage);
	if (sequence) {
		seq = content_sequence(c, sequence);
		if (!seq)
			return errf(err, errlen, DRIP_ENOT_FOUND, "no sequence \"%s\"", sequence);
	} else {
		seq = content_sequence_for_stage(c, stage);
	}
	cJSON *detail = cJSON_CreateObject();
	if (lead->stage && *lead->stage && strcmp(lead->stage, stage) != 0)
		cJSON_AddStringToObject(detail, "from", lead->stage);
	cJSON_AddStringToObject(detail, "to", stage);
	if (seq)
		cJSON_AddStringToObject(detail, "sequence", seq->name);
	if ((rc = journey_event(st, lead->id, 0, "stage", now, detail)) ||
	    (rc = store_enrolment_exit_active(st, lead->id, "stage changed", now)) ||
	    (rc = store_lead_set_stage(st, lead->id, stage, now)))
		return errf(err, errlen, rc, "cannot move %s to %s", lead->email, stage);
	if (!seq)
		return 0;
	rc = store_enrolment_start(st, lead->id, seq->name, stage, now, &enrolment_id);
	if (rc == DRIP_EEXISTS)
		return errf(err, errlen, rc, "lead %s is already enrolled", lead->email);
	if (rc == 0)
		rc = store_touch_schedule(st, lead->id, enrolment_id, seq->name, seq->steps[0].id,
					  0, now + seq->steps[0].delay, now, NULL);
	if (rc)
		return errf(err, errlen, rc, "cannot enrol %s in %s", lead->email, seq->name);
	return 0;
}

int journey_step_sent(struct store *st, const struct content *c, const struct touch *t, int64_t now)
{
	const struct content_sequence *seq = content_sequence(c, t->sequence);
	size_t index = 0;
	int rc;
	/* DRIP_ENOT_FOUND below means the enrolment already ended while `t` was with a sender
	 * thread (the lead moved to another stage): the send still counts, nothing follows. */
	if (!seq || !content_step(seq, t->step, &index)) {
		/* The content changed under the lead: finish rather than guess the next step. */
		log_warn("journey: sequence %s no longer has step %s; enrolment %lld ends",
			 t->sequence, t->step, (long long)t->enrolment_id);
		rc = store_enrolment_end(st, t->enrolment_id, "exited", now);
		return rc == DRIP_ENOT_FOUND ? 0 : rc;
	}
	if (index + 1 >= seq->nsteps) {
		rc = store_enrolment_end(st, t->enrolment_id, "completed", now);
		return rc == DRIP_ENOT_FOUND ? 0 : rc;
	}
	const struct content_step *next = &seq->steps[index + 1];
	rc = store_touch_schedule(st, t->lead_id, t->enrolment_id, seq->name, next->id,
				  (int64_t)index + 1, now + next->delay, now, NULL);
	/* Already scheduled (a step is at most once per lead): nothing more to do. */
	return rc == DRIP_EEXISTS || rc == DRIP_ENOT_FOUND ? 0 : rc;
}
