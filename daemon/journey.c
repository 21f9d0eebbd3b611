/* journey.c - the buyer's journey: stage moves, enrolment, conditions, scoring and rules. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dripd/error.h"
#include "dripd/journey.h"
#include "dripd/json.h"
#include "dripd/log.h"
#include "dripd/util.h"

/*
 * DESIGN. Everything here runs on the loop thread inside the caller's transaction, so a
 * stage move, the enrolment it starts and the events that record it commit together or not
 * at all. Events come in through journey_on_event (from dripctl today; tracking and the
 * inbox later): the event's points are added to the score, then journey.json's rules are
 * tried in order and the first that matches applies. A reply that no rule handles hands the
 * lead to a person; an opt-out (unsubscribe, hard bounce, complaint) always stops the drip.
 *
 * Decay. A score is stored with the business time it was last set (score_at) and decays
 * lazily: wherever it is read or added to it is score * 2^-(now - score_at) / half_life,
 * computed from the stored pair (never from a value already rounded), so it is the same
 * whenever and however often it is read, and under the test clock it follows the clock.
 * It is shown and compared with thresholds rounded to 0.01.
 * A fall ("on": "score", "below": N) happens when the decayed score crosses under N while
 * the lead is in one of the rule's "from" stages. Since the score only fades between
 * events, the moment of that crossing is known in advance: each time a score is set the
 * lead's fall_at is set to it, and the scheduler's one timer wakes for the earliest fall_at
 * of all leads as it does for the next due touch (journey_falls_due). No polling: a lead
 * whose score is under every fall threshold, or a journey without falls, arms nothing.
 * Entering a stage re-bases the score (stores it decayed, with score_at = now), so a fall
 * is a crossing while in the stage, never a lead that came in with a low score.
 */

static int journey_event(struct store *st, int64_t lead_id, int64_t touch_id, const char *kind,
			 int64_t now, cJSON *detail)
{
	char *json = cJSON_PrintUnformatted(detail);
	int rc = store_event_add(st, lead_id, touch_id, kind, now, json);
	cJSON_free(json);
	cJSON_Delete(detail);
	return rc;
}

static bool journey_has_tag(const struct lead *lead, const char *tag)
{
	cJSON *tags = cJSON_Parse(lead->tags && *lead->tags ? lead->tags : "[]");
	bool found = json_string_index(tags, tag) >= 0;
	cJSON_Delete(tags);
	return found;
}

static bool journey_has_attr(const struct lead *lead, const char *key, const char *value)
{
	cJSON *attrs = cJSON_Parse(lead->attrs && *lead->attrs ? lead->attrs : "{}");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(attrs, key);
	bool found = cJSON_IsString(a) &&
		     (value ? strcmp(a->valuestring, value) == 0 : a->valuestring[0] != '\0');
	cJSON_Delete(attrs);
	return found;
}

double journey_score(const struct content *c, double score, int64_t at, int64_t now)
{
	if (c->score_half_life <= 0 || now <= at || score == 0)
		return score;
	return score * exp2(-(double)(now - at) / (double)c->score_half_life);
}

/* Scores are shown, and compared with thresholds, rounded to 0.01: a lead shown at 6 has
 * reached an "at_least": 6, though two clicks a second apart make it 5.99999. */
static double journey_round(double score)
{
	return round(score * 100) / 100;
}

double journey_score_shown(const struct content *c, const struct lead *lead, int64_t now)
{
	return journey_round(journey_score(c, lead->score, lead->score_at, now));
}

int64_t journey_fall_at(const struct content *c, const char *stage, double score, int64_t at)
{
	int64_t best = 0;
	if (c->score_half_life <= 0 || !stage)
		return 0;
	for (size_t i = 0; i < c->nrules; i++) {
		const struct content_rule *r = &c->rules[i];
		if (r->below <= 0 || !content_rule_applies(r, stage) ||
		    journey_round(score) < (double)r->below)
			continue;
		/* Rounded under `below` once under below - 0.005:
		 * score * 2^-(dt/h) < b  <=>  dt > h * log2(score / b) */
		double b = (double)r->below - 0.005;
		double dt = (double)c->score_half_life * log2(score / b);
		if (!(dt < 1e15))
			continue;
		int64_t t = at + (int64_t)floor(dt) + 1;
		if (!best || t < best)
			best = t;
	}
	return best;
}

/* The first fall rule the score crosses going from `before` to `after`, or NULL. */
static const struct content_rule *journey_fall_rule(const struct content *c,
						    const struct lead *lead, double before,
						    double after)
{
	for (size_t i = 0; i < c->nrules; i++) {
		const struct content_rule *r = &c->rules[i];
		if (r->below > 0 && content_rule_applies(r, lead->stage) &&
		    journey_round(before) >= (double)r->below &&
		    journey_round(after) < (double)r->below && strcmp(r->move_to, lead->stage) != 0)
			return r;
	}
	return NULL;
}

/* Stores the lead's score as of `now` and when it next falls in its stage. */
static int journey_set_score(struct store *st, const struct content *c, struct lead *lead,
			     double score, int64_t now)
{
	int64_t fall_at = journey_fall_at(c, lead->stage, score, now);
	int rc = store_lead_set_score(st, lead->id, score, now, fall_at);
	if (rc == 0) {
		lead->score = score;
		lead->score_at = now;
		lead->fall_at = fall_at;
	}
	return rc;
}

int journey_cond_holds(struct store *st, const struct lead *lead, const char *sequence,
		       const struct content_cond *cond, bool *holds)
{
	bool found;
	int rc;
	*holds = true;
	if (!cond)
		return 0;
	if (cond->tag && !journey_has_tag(lead, cond->tag))
		return *holds = false, 0;
	if (cond->attr && !journey_has_attr(lead, cond->attr, cond->attr_value))
		return *holds = false, 0;
	if (cond->opened) {
		if ((rc = store_lead_has_event(st, lead->id, "open", sequence, cond->opened,
					       &found)))
			return rc;
		/* A click proves the message was opened, even when the pixel was blocked. */
		if (!found && (rc = store_lead_has_event(st, lead->id, "click", sequence,
							 cond->opened, &found)))
			return rc;
		if (!found)
			return *holds = false, 0;
	}
	if (cond->clicked) {
		if ((rc = store_lead_has_event(st, lead->id, "click", sequence, cond->clicked,
					       &found)))
			return rc;
		if (!found)
			return *holds = false, 0;
	}
	if (cond->event) {
		if ((rc = store_lead_has_event(st, lead->id, cond->event, NULL, NULL, &found)))
			return rc;
		if (!found)
			return *holds = false, 0;
	}
	return 0;
}

/*
 * The sequence a lead entering `stage` gets: the first (by name) of the stage's sequences
 * whose `when` holds for it; failing that, the first without a `when` (the stage's
 * default); or NULL.
 */
static int journey_pick_sequence(struct store *st, const struct content *c, const struct lead *lead,
				 const char *stage, const struct content_sequence **out)
{
	const struct content_sequence *fallback = NULL;
	*out = NULL;
	for (size_t i = 0; i < c->nseqs; i++) {
		const struct content_sequence *seq = &c->seqs[i];
		bool holds;
		int rc;
		if (strcmp(seq->stage, stage) != 0)
			continue;
		if (!seq->when) {
			if (!fallback)
				fallback = seq;
			continue;
		}
		if ((rc = journey_cond_holds(st, lead, seq->name, seq->when, &holds)))
			return rc;
		if (holds) {
			*out = seq;
			return 0;
		}
	}
	*out = fallback;
	return 0;
}

/*
 * Schedules step `from` of `seq` for the lead, after its delay. A step the lead already
 * had (in an earlier enrolment: each step goes to a lead at most once) is passed over for
 * the next one; when none is left the enrolment is complete. DRIP_ENOT_FOUND when the
 * enrolment is no longer active (the lead moved on meanwhile).
 */
static int journey_schedule_from(struct store *st, int64_t lead_id, int64_t enrolment_id,
				 const struct content_sequence *seq, size_t from, int64_t now)
{
	for (size_t i = from; i < seq->nsteps; i++) {
		const struct content_step *step = &seq->steps[i];
		struct touch had;
		int rc = store_touch_schedule(st, lead_id, enrolment_id, seq->name, step->id,
					      (int64_t)i, now + step->delay, now, NULL);
		if (rc != DRIP_EEXISTS)
			return rc;
		if ((rc = store_touch_find(st, lead_id, seq->name, step->id, &had)))
			return rc;
		bool ours = had.enrolment_id == enrolment_id;
		store_touch_clear(&had);
		if (ours)
			return 0; /* already scheduled by this enrolment */
	}
	return store_enrolment_end(st, enrolment_id, "completed", now);
}

static int journey_move(struct store *st, const struct content *c, const struct lead *lead,
			const char *stage, const char *sequence, const char *reason, int64_t now,
			char *err, size_t errlen)
{
	const struct content_sequence *seq = NULL;
	int64_t enrolment_id = 0;
	int rc;

	if (content_stage_index(c, stage) < 0)
		return errf(err, errlen, DRIP_EINVALID, "unknown stage \"%s\"", stage);
	if (sequence) {
		seq = content_sequence(c, sequence);
		if (!seq)
			return errf(err, errlen, DRIP_ENOT_FOUND, "no sequence \"%s\"", sequence);
		if (strcmp(seq->stage, stage) != 0)
			return errf(err, errlen, DRIP_EINVALID,
				    "sequence \"%s\" belongs to stage %s, not %s", sequence,
				    seq->stage, stage);
	} else if ((rc = journey_pick_sequence(st, c, lead, stage, &seq))) {
		return errf(err, errlen, rc, "cannot choose a sequence for %s", lead->email);
	}
	cJSON *detail = cJSON_CreateObject();
	if (lead->stage && *lead->stage && strcmp(lead->stage, stage) != 0)
		cJSON_AddStringToObject(detail, "from", lead->stage);
	cJSON_AddStringToObject(detail, "to", stage);
	if (seq)
		cJSON_AddStringToObject(detail, "sequence", seq->name);
	if (reason)
		cJSON_AddStringToObject(detail, "reason", reason);
	if ((rc = journey_event(st, lead->id, 0, "stage", now, detail)) ||
	    (rc = store_enrolment_exit_active(st, lead->id, "stage changed", now)) ||
	    (rc = store_lead_set_stage(st, lead->id, stage, now)))
		return errf(err, errlen, rc, "cannot move %s to %s", lead->email, stage);
	/* Re-base the score on entering the stage: a fall is a crossing while in it. */
	if (lead->score != 0 || lead->fall_at != 0) {
		double score = journey_score(c, lead->score, lead->score_at, now);
		if ((rc = store_lead_set_score(st, lead->id, score, now,
					       journey_fall_at(c, stage, score, now))))
			return errf(err, errlen, rc, "cannot update the score of %s", lead->email);
	}
	if (!seq)
		return 0;
	rc = store_enrolment_start(st, lead->id, seq->name, stage, now, &enrolment_id);
	if (rc == DRIP_EEXISTS)
		return errf(err, errlen, rc, "lead %s is already enrolled", lead->email);
	if (rc == 0)
		rc = journey_schedule_from(st, lead->id, enrolment_id, seq, 0, now);
	if (rc)
		return errf(err, errlen, rc, "cannot enrol %s in %s", lead->email, seq->name);
	return 0;
}

int journey_enter_stage(struct store *st, const struct content *c, const struct lead *lead,
			const char *stage, const char *sequence, int64_t now, char *err,
			size_t errlen)
{
	return journey_move(st, c, lead, stage, sequence, NULL, now, err, errlen);
}

int journey_enter_new(struct store *st, const struct content *c, const struct lead *lead,
		      int64_t now, char *err, size_t errlen)
{
	const struct content_sequence *seq = NULL;
	int64_t enrolment_id = 0;
	int rc;

	if (content_stage_index(c, lead->stage) < 0)
		return errf(err, errlen, DRIP_EINVALID, "unknown stage \"%s\"", lead->stage);
	if ((rc = journey_pick_sequence(st, c, lead, lead->stage, &seq)))
		return errf(err, errlen, rc, "cannot choose a sequence for %s", lead->email);
	cJSON *detail = cJSON_CreateObject();
	cJSON_AddStringToObject(detail, "to", lead->stage);
	if (seq)
		cJSON_AddStringToObject(detail, "sequence", seq->name);
	if ((rc = journey_event(st, lead->id, 0, "stage", now, detail)))
		return errf(err, errlen, rc, "cannot move %s to %s", lead->email, lead->stage);
	if (!seq)
		return 0;
	/* No touch of the lead exists yet, so its first step is its first touch. */
	if ((rc = store_enrolment_start(st, lead->id, seq->name, lead->stage, now,
					&enrolment_id)) == 0)
		rc = seq->nsteps == 0 ? store_enrolment_end(st, enrolment_id, "completed", now)
				      : store_touch_schedule_new(st, lead->id, enrolment_id,
								 seq->name, seq->steps[0].id, 0,
								 now + seq->steps[0].delay, now);
	if (rc)
		return errf(err, errlen, rc, "cannot enrol %s in %s", lead->email, seq->name);
	return 0;
}

/* Ends the journey for this lead: status, no more mail, an event saying why. */
static int journey_stop(struct store *st, const struct content *c, const struct lead *lead,
			const char *status, const char *kind, const char *why, int64_t now)
{
	int rc;
	cJSON *detail = cJSON_CreateObject();
	cJSON_AddStringToObject(detail, "reason", why);
	if ((rc = store_enrolment_exit_active(st, lead->id, why, now)) ||
	    (rc = store_lead_set_status(st, lead->id, status, now)))
		return rc;
	if (lead->fall_at &&
	    (rc = store_lead_set_score(st, lead->id, lead->score, lead->score_at, 0)))
		return rc; /* a lead out of the journey falls no more */
	if (strcmp(status, "customer") == 0 && c->nstages > 1) {
		const char *last = c->stages[c->nstages - 1];
		cJSON_AddStringToObject(detail, "to", last);
		if (lead->stage && strcmp(lead->stage, last) != 0)
			cJSON_AddStringToObject(detail, "from", lead->stage);
		if ((rc = store_lead_set_stage(st, lead->id, last, now)))
			return rc;
	}
	return journey_event(st, lead->id, 0, kind, now, detail);
}

/*
 * The first rule that matches the trigger, or NULL. A score rule matches the event that
 * takes the score across its threshold (from below `at_least` to at least it), so a lead
 * moved back by hand is not pushed on again by its old score at the next event.
 */
static const struct content_rule *journey_match(const struct content *c, const struct lead *lead,
						double old_score, const char *kind, const char *tag,
						const char *sequence)
{
	for (size_t i = 0; i < c->nrules; i++) {
		const struct content_rule *r = &c->rules[i];
		bool m = false;
		if (!content_rule_applies(r, lead->stage))
			continue;
		switch (r->on) {
		case RULE_ON_SCORE:
			m = r->below == 0 && journey_round(old_score) < (double)r->at_least &&
			    journey_round(lead->score) >= (double)r->at_least;
			break;
		case RULE_ON_CLICK:
			m = strcmp(kind, "click") == 0 && tag && strcmp(tag, r->tag) == 0;
			break;
		case RULE_ON_REPLY:
			m = strcmp(kind, "reply") == 0;
			break;
		case RULE_ON_FINISHED:
			m = strcmp(kind, "finished") == 0 && sequence &&
			    strcmp(sequence, r->sequence) == 0;
			break;
		case RULE_ON_EVENT:
			m = strcmp(kind, r->kind) == 0;
			break;
		}
		/* A move to where the lead already is would only restart its sequence. */
		if (m && r->action == RULE_MOVE && strcmp(r->move_to, lead->stage) == 0)
			continue;
		if (m)
			return r;
	}
	return NULL;
}

static int journey_apply(struct store *st, const struct content *c, struct lead *lead,
			 double old_score, const char *kind, const char *tag, const char *sequence,
			 int64_t now, char *err, size_t errlen)
{
	const struct content_rule *r;
	if (strcmp(lead->status, "active") != 0 && strcmp(lead->status, "paused") != 0)
		return 0; /* the journey already ended for this lead */
	r = journey_match(c, lead, old_score, kind, tag, sequence);
	if (!r) {
		if (strcmp(kind, "reply") == 0)
			return journey_stop(st, c, lead, "handoff", "handoff",
					    "replied: a person takes over", now);
		return 0;
	}
	log_info("journey: %s: %s matches the rule of journey.json line %d", lead->email, kind,
		 r->line);
	char reason[160];
	if (r->on == RULE_ON_SCORE)
		snprintf(reason, sizeof(reason), "score %.2f reached %lld (journey.json line %d)",
			 lead->score, (long long)r->at_least, r->line);
	else
		snprintf(reason, sizeof(reason), "%s%s%s (journey.json line %d)", kind,
			 tag ? " " : "", tag ? tag : "", r->line);
	switch (r->action) {
	case RULE_MOVE:
		return journey_move(st, c, lead, r->move_to, NULL, reason, now, err, errlen);
	case RULE_HANDOFF:
		return journey_stop(st, c, lead, "handoff", "handoff", kind, now);
	case RULE_CUSTOMER:
		return journey_stop(st, c, lead, "customer", "stage", kind, now);
	}
	return 0;
}

/*
 * Moves the lead back by fall rule `r`: its score `score` (as of `now`) went under the
 * rule's threshold. lead->stage follows.
 */
static int journey_fall(struct store *st, const struct content *c, struct lead *lead,
			const struct content_rule *r, double score, int64_t now, char *err,
			size_t errlen)
{
	char reason[160];
	int rc;
	if (strcmp(lead->status, "active") != 0 && strcmp(lead->status, "paused") != 0)
		return 0;
	snprintf(reason, sizeof(reason), "score %.2f fell below %lld (journey.json line %d)", score,
		 (long long)r->below, r->line);
	log_info("journey: %s: %s", lead->email, reason);
	lead->score = score;
	lead->score_at = now;
	if ((rc = journey_move(st, c, lead, r->move_to, NULL, reason, now, err, errlen)))
		return rc;
	free(lead->stage);
	lead->stage = xstrdup(r->move_to);
	lead->fall_at = journey_fall_at(c, lead->stage, score, now);
	return 0;
}

int journey_on_event(struct store *st, const struct content *c, struct lead *lead, int64_t touch_id,
		     const char *kind, const char *detail_json, int64_t now, char *err,
		     size_t errlen)
{
	static const struct {
		const char *kind, *status;
	} optouts[] = { { "unsubscribe", "unsubscribed" },
			{ "bounce", "bounced" },
			{ "complaint", "complained" } };
	int64_t points = content_score(c, kind);
	double old_score = journey_score(c, lead->score, lead->score_at, now);
	const struct content_rule *fall;
	int rc;
	/* An erased lead (forgotten or anonymised: it has no address any more) has no journey
	 * left: an event that still comes for it (an old pixel, a late unsubscribe) is kept for
	 * the step's stats, without its detail, and moves nothing. */
	if (!strchr(lead->email, '@')) {
		if ((rc = store_event_add(st, lead->id, touch_id, kind, now, "{}")))
			return errf(err, errlen, rc, "cannot record the %s event", kind);
		return 0;
	}
	if ((rc = store_event_add(st, lead->id, touch_id, kind, now, detail_json)))
		return errf(err, errlen, rc, "cannot record the %s event", kind);
	/* A score that faded under a fall threshold before this event (its timer not yet
	 * run) falls first, so the outcome does not depend on which came first. */
	if ((fall = journey_fall_rule(c, lead, lead->score, old_score)) &&
	    (rc = journey_fall(st, c, lead, fall, old_score, now, err, errlen)))
		return rc;
	if (points != 0) {
		if ((rc = journey_set_score(st, c, lead, old_score + (double)points, now)))
			return errf(err, errlen, rc, "cannot update the score");
	}
	for (size_t i = 0; i < sizeof(optouts) / sizeof(optouts[0]); i++) {
		if (strcmp(kind, optouts[i].kind) == 0) {
			/* Opt-outs win: the address is never mailed again, whatever sequence or
			 * import says later. */
			if ((rc = store_suppress(st, lead->email, kind, "journey", now)) ||
			    (rc = journey_stop(st, c, lead, optouts[i].status, "stage", kind, now)))
				return errf(err, errlen, rc, "cannot stop the drip");
			return 0;
		}
	}
	/* Negative points can take a score under a fall threshold at once. */
	if (points < 0 && (fall = journey_fall_rule(c, lead, old_score, lead->score)))
		return journey_fall(st, c, lead, fall, lead->score, now, err, errlen);
	cJSON *detail = cJSON_Parse(detail_json && *detail_json ? detail_json : "{}");
	const cJSON *tag = cJSON_GetObjectItemCaseSensitive(detail, "tag");
	rc = journey_apply(st, c, lead, old_score, kind,
			   cJSON_IsString(tag) ? tag->valuestring : NULL, NULL, now, err, errlen);
	cJSON_Delete(detail);
	return rc;
}

int journey_falls_due(struct store *st, const struct content *c, int64_t now, size_t max, size_t *n)
{
	int64_t ids[64];
	char err[256];
	int rc;
	if (max > sizeof(ids) / sizeof(ids[0]))
		max = sizeof(ids) / sizeof(ids[0]);
	if ((rc = store_leads_falling(st, now, ids, max, n)))
		return rc;
	for (size_t i = 0; i < *n; i++) {
		struct lead lead;
		if ((rc = store_lead_by_id(st, ids[i], &lead)))
			return rc;
		double score = journey_score(c, lead.score, lead.score_at, now);
		const struct content_rule *r = journey_fall_rule(c, &lead, lead.score, score);
		if (r &&
		    (strcmp(lead.status, "active") == 0 || strcmp(lead.status, "paused") == 0)) {
			if ((rc = journey_fall(st, c, &lead, r, score, now, err, sizeof(err))))
				log_err("journey: %s: %s", lead.email, err);
		} else {
			/* Not (or no longer) falling: out of the journey, the content changed, or
			 * rounding left it a hair above; look again when it next crosses. */
			int64_t at =
				strcmp(lead.status, "active") == 0 ||
						strcmp(lead.status, "paused") == 0
					? journey_fall_at(c, lead.stage, lead.score, lead.score_at)
					: 0;
			if (at && at <= now)
				at = now + 1;
			rc = store_lead_set_score(st, lead.id, lead.score, lead.score_at, at);
		}
		store_lead_clear(&lead);
		if (rc)
			return rc;
	}
	return 0;
}

int journey_step_done(struct store *st, const struct content *c, const struct touch *t, int64_t now)
{
	const struct content_sequence *seq = content_sequence(c, t->sequence);
	size_t index = 0;
	int rc;
	/* DRIP_ENOT_FOUND below means the enrolment already ended while `t` was with a sender
	 * thread (the lead moved on): the send still counts, nothing follows. */
	if (!seq || !content_step(seq, t->step, &index)) {
		/* The content changed under the lead: finish rather than guess the next step. */
		log_warn("journey: sequence %s no longer has step %s; enrolment %lld ends",
			 t->sequence, t->step, (long long)t->enrolment_id);
		rc = store_enrolment_end(st, t->enrolment_id, "exited", now);
		return rc == DRIP_ENOT_FOUND ? 0 : rc;
	}
	if (index + 1 >= seq->nsteps) {
		struct lead lead;
		char err[256];
		rc = store_enrolment_end(st, t->enrolment_id, "completed", now);
		if (rc == DRIP_ENOT_FOUND)
			return 0;
		if (rc || (rc = store_lead_by_id(st, t->lead_id, &lead)))
			return rc;
		/* Finishing a sequence may move the lead on (an "on": "finished" rule): several
		 * writes, all or none. The enrolment stays completed either way. */
		double score = journey_score(c, lead.score, lead.score_at, now);
		if ((rc = store_part_begin(st)) == 0) {
			rc = journey_apply(st, c, &lead, score, "finished", NULL, seq->name, now,
					   err, sizeof(err));
			if (rc)
				log_err("journey: %s finished %s: %s", lead.email, seq->name, err);
			if (store_part_end(st, rc == 0) != 0)
				rc = DRIP_ESTORE;
		}
		store_lead_clear(&lead);
		return rc;
	}
	rc = journey_schedule_from(st, t->lead_id, t->enrolment_id, seq, index + 1, now);
	return rc == DRIP_ENOT_FOUND ? 0 : rc;
}
