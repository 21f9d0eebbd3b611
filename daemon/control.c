/* control.c - the Unix control socket: JSON lines in, one command table, JSON lines out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "dripd/control.h"
#include "dripd/error.h"
#include "dripd/hooks.h"
#include "dripd/journey.h"
#include "dripd/json.h"
#include "dripd/log.h"
#include "dripd/mailer.h"
#include "dripd/proto.h"
#include "dripd/sched.h"

/*
 * DESIGN. The listener is a libuv pipe. Each client has a line reader; every complete line
 * is answered at once through control_handle_line, which is also what the unit tests call.
 * A client whose unsent answers pile up past CONTROL_MAX_PENDING stops being read until they
 * drain, so a slow or vanished client costs memory for one answer, not the loop's time.
 */

#define CONTROL_MAX_PENDING (4 * 1024 * 1024)
#define CONTROL_MAX_FIELD 256

struct control_client {
	uv_pipe_t pipe;
	struct control *ctl;
	struct proto_reader reader;
	struct control_client *prev, *next;
	bool reading;
	bool closing;
};

struct control {
	struct dripd *d;
	uv_pipe_t server;
	struct control_client *clients;
	char *path;
	int open_handles;
};

/* ---- arguments ------------------------------------------------------------------------ */

static const char *control_str(const cJSON *args, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A short text field of a lead: no control characters, at most CONTROL_MAX_FIELD bytes. */
static int control_check_field(const char *key, const char *v, char *err, size_t errlen)
{
	if (strlen(v) > CONTROL_MAX_FIELD)
		return errf(err, errlen, DRIP_EINVALID, "%s is longer than %d bytes", key,
			    CONTROL_MAX_FIELD);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return errf(err, errlen, DRIP_EINVALID,
				    "%s must not contain control characters", key);
	return 0;
}

/* Checks args against the command's table entry: types, required ones, no strangers. */
static int control_check_args(const struct control_cmd *c, const cJSON *args, char *err,
			      size_t errlen)
{
	if (!cJSON_IsObject(args))
		return errf(err, errlen, DRIP_EPROTOCOL, "\"args\" must be an object");
	for (const cJSON *a = args->child; a; a = a->next) {
		const struct control_arg *spec = NULL;
		for (size_t i = 0; i < CONTROL_MAX_ARGS && c->args[i].key && !spec; i++)
			if (strcmp(c->args[i].key, a->string) == 0)
				spec = &c->args[i];
		if (!spec)
			return errf(err, errlen, DRIP_EINVALID, "%s takes no argument \"%s\"",
				    c->words, a->string);
		bool ok = spec->kind == CONTROL_ARG_STRING ? cJSON_IsString(a)
			  : spec->kind == CONTROL_ARG_LIST ? cJSON_IsArray(a)
							   : cJSON_IsObject(a);
		const cJSON *e;
		if (ok && spec->kind != CONTROL_ARG_STRING)
			cJSON_ArrayForEach(e, a) ok = ok && cJSON_IsString(e);
		if (!ok)
			return errf(err, errlen, DRIP_EINVALID, "\"%s\" must be %s", a->string,
				    spec->kind == CONTROL_ARG_STRING ? "a string"
				    : spec->kind == CONTROL_ARG_LIST ? "a list of strings"
								     : "an object of strings");
	}
	for (size_t i = 0; i < CONTROL_MAX_ARGS && c->args[i].key; i++)
		if (c->args[i].required && !cJSON_GetObjectItemCaseSensitive(args, c->args[i].key))
			return errf(err, errlen, DRIP_EINVALID, "%s needs %s", c->words,
				    c->args[i].meta);
	return 0;
}

/* ---- results -------------------------------------------------------------------------- */

static void control_add_time(cJSON *o, const char *key, int64_t t)
{
	char iso[32];
	if (t <= 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	clock_format_utc(t, iso, sizeof(iso));
	cJSON_AddStringToObject(o, key, iso);
}

static cJSON *control_lead_json(const struct lead *l)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)l->id);
	cJSON_AddStringToObject(o, "email", l->email);
	cJSON_AddStringToObject(o, "first_name", l->first_name);
	cJSON_AddStringToObject(o, "last_name", l->last_name);
	cJSON_AddStringToObject(o, "company", l->company);
	cJSON_AddStringToObject(o, "title", l->title);
	cJSON_AddStringToObject(o, "tz", l->tz);
	cJSON_AddStringToObject(o, "stage", l->stage);
	cJSON_AddStringToObject(o, "status", l->status);
	cJSON_AddNumberToObject(o, "score", (double)l->score);
	cJSON *tags = cJSON_Parse(l->tags);
	cJSON_AddItemToObject(o, "tags", tags ? tags : cJSON_CreateArray());
	cJSON *attrs = cJSON_Parse(l->attrs);
	cJSON_AddItemToObject(o, "attrs", attrs ? attrs : cJSON_CreateObject());
	control_add_time(o, "created_at", l->created_at);
	return o;
}

static cJSON *control_touch_json(const struct touch *t)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)t->id);
	cJSON_AddStringToObject(o, "sequence", t->sequence);
	cJSON_AddStringToObject(o, "step", t->step);
	cJSON_AddStringToObject(o, "state", t->state);
	control_add_time(o, "due_at", t->due_at);
	control_add_time(o, "sent_at", t->sent_at);
	cJSON_AddNumberToObject(o, "attempts", (double)t->attempts);
	if (*t->message_id)
		cJSON_AddStringToObject(o, "message_id", t->message_id);
	if (*t->last_error)
		cJSON_AddStringToObject(o, "last_error", t->last_error);
	return o;
}

static int control_touch_item(void *arg, const struct touch *t)
{
	cJSON_AddItemToArray(arg, control_touch_json(t));
	return 0;
}

static int control_event_item(void *arg, const struct store_event *ev)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "kind", ev->kind);
	control_add_time(o, "at", ev->at);
	if (ev->touch_id)
		cJSON_AddNumberToObject(o, "touch", (double)ev->touch_id);
	cJSON *detail = cJSON_Parse(ev->detail);
	cJSON_AddItemToObject(o, "detail", detail ? detail : cJSON_CreateObject());
	cJSON_AddItemToArray(arg, o);
	return 0;
}

/* ---- handlers ------------------------------------------------------------------------- */

static int control_help(struct dripd *d, const cJSON *args, cJSON *result, char *err, size_t errlen)
{
	(void)d, (void)args, (void)err, (void)errlen;
	cJSON *list = cJSON_AddArrayToObject(result, "commands");
	for (const struct control_cmd *c = control_cmds; c->name; c++) {
		struct buf usage;
		buf_init(&usage);
		control_usage(c, &usage);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", c->name);
		cJSON_AddStringToObject(o, "usage", usage.data);
		cJSON_AddStringToObject(o, "summary", c->summary);
		cJSON_AddItemToArray(list, o);
		buf_free(&usage);
	}
	return 0;
}

static int control_status(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			  size_t errlen)
{
	struct store_status st;
	int rc;
	(void)args;
	if ((rc = store_status(d->store, &st)))
		return errf(err, errlen, rc, "cannot read the database");
	int64_t now = clock_now(&d->clock);
	cJSON_AddStringToObject(result, "version", DRIPD_VERSION);
	cJSON_AddNumberToObject(result, "pid", (double)getpid());
	cJSON_AddNumberToObject(result, "uptime_s",
				(double)((clock_mono_ms() - d->started_mono_ms) / 1000));
	control_add_time(result, "now", now);
	cJSON_AddBoolToObject(result, "test_clock", d->clock.test);
	cJSON_AddBoolToObject(result, "paused", d->sched && sched_paused(d->sched));
	if (d->clock.test)
		cJSON_AddNumberToObject(result, "clock_rate", d->clock.rate);
	cJSON_AddNumberToObject(result, "leads", (double)st.leads);
	cJSON_AddNumberToObject(result, "active_enrolments", (double)st.active_enrolments);
	cJSON *t = cJSON_AddObjectToObject(result, "touches");
	cJSON_AddNumberToObject(t, "pending", (double)st.pending);
	cJSON_AddNumberToObject(t, "queued", (double)st.queued);
	cJSON_AddNumberToObject(t, "sending", (double)st.sending);
	cJSON_AddNumberToObject(t, "sent", (double)st.sent);
	cJSON_AddNumberToObject(t, "failed", (double)st.failed);
	cJSON_AddNumberToObject(t, "uncertain", (double)st.uncertain);
	control_add_time(result, "next_due", st.next_due);
	cJSON_AddStringToObject(result, "delivery", d->cfg->delivery.url);
	if (d->hooks && (rc = hooks_status(d->hooks, result)))
		return errf(err, errlen, rc, "cannot read the webhook outbox");
	if (d->sched && (rc = sched_status(d->sched, result)))
		return errf(err, errlen, rc, "cannot read the accounts' state");
	cJSON *c = cJSON_AddObjectToObject(result, "content");
	cJSON_AddStringToObject(c, "dir", d->content->dir);
	cJSON_AddNumberToObject(c, "sequences", (double)d->content->nseqs);
	cJSON *stages = cJSON_AddArrayToObject(c, "stages");
	for (size_t i = 0; i < d->content->nstages; i++)
		cJSON_AddItemToArray(stages, cJSON_CreateString(d->content->stages[i]));
	return 0;
}

/* A tag: 1-64 characters without spaces, ',' or ';' (CSV splits tags on ';'). */
static int control_check_tag(const char *s, char *err, size_t errlen)
{
	if (!*s || strlen(s) > 64 || strpbrk(s, ",; \t\r\n"))
		return errf(err, errlen, DRIP_EINVALID,
			    "tag \"%.64s\" must be 1-64 characters without spaces, ',' or ';'", s);
	return 0;
}

static char *control_tags_json(const cJSON *tags, char *err, size_t errlen, int *rc)
{
	cJSON *out = cJSON_CreateArray();
	const cJSON *t;
	*rc = 0;
	cJSON_ArrayForEach(t, tags)
	{
		const char *s = t->valuestring;
		if ((*rc = control_check_tag(s, err, errlen)))
			break;
		if (json_string_index(out, s) < 0)
			cJSON_AddItemToArray(out, cJSON_CreateString(s));
	}
	char *json = *rc ? NULL : cJSON_PrintUnformatted(out);
	cJSON_Delete(out);
	return json;
}

/*
 * Validates the profile fields of args (names, company, title, tz, tags, attrs) and fills
 * `out` with them, falling back to `base` (the stored lead, or NULL for a new one) for what
 * args leave out. Tags given replace the list; attrs given are merged into base's. The
 * strings point into args or base, except *tags_json and *attrs_json, which the caller
 * frees (free and cJSON_free).
 */
static int control_lead_profile(const cJSON *args, const struct lead *base, struct lead *out,
				char **tags_json, char **attrs_json, char *err, size_t errlen)
{
	static const char *const text_keys[] = { "first_name", "last_name", "company", "title",
						 NULL };
	char **fields[] = { &out->first_name, &out->last_name, &out->company, &out->title };
	char *const base_fields[] = { base ? base->first_name : NULL, base ? base->last_name : NULL,
				      base ? base->company : NULL, base ? base->title : NULL };
	const char *tz = control_str(args, "tz");
	const cJSON *tags = cJSON_GetObjectItemCaseSensitive(args, "tags");
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(args, "attrs");
	int rc = 0;

	*tags_json = *attrs_json = NULL;
	for (size_t k = 0; text_keys[k]; k++) {
		const char *v = control_str(args, text_keys[k]);
		if (v && (rc = control_check_field(text_keys[k], v, err, errlen)))
			return rc;
		*fields[k] = (char *)(v ? v : base_fields[k] ? base_fields[k] : "");
	}
	if (tz && *tz && !clock_tz_valid(tz))
		return errf(err, errlen, DRIP_EINVALID, "unknown time zone \"%.64s\"", tz);
	out->tz = (char *)(tz ? tz : base ? base->tz : "");
	if (tags) {
		if (!(*tags_json = control_tags_json(tags, err, errlen, &rc)))
			return rc;
	} else {
		*tags_json = xstrdup(base ? base->tags : "[]");
	}
	cJSON *merged = cJSON_Parse(base ? base->attrs : "{}");
	if (!merged)
		merged = cJSON_CreateObject();
	for (const cJSON *a = attrs ? attrs->child : NULL; a && rc == 0; a = a->next) {
		if (!*a->string || strlen(a->string) > 64 ||
		    strspn(a->string, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(a->string))
			rc = errf(err, errlen, DRIP_EINVALID,
				  "attribute name \"%.64s\" must be lower-case letters, digits or "
				  "'_'",
				  a->string);
		else if (strlen(a->valuestring) > 4096)
			rc = errf(err, errlen, DRIP_EINVALID,
				  "attribute %s is longer than 4096 bytes", a->string);
		else {
			cJSON_DeleteItemFromObjectCaseSensitive(merged, a->string);
			cJSON_AddStringToObject(merged, a->string, a->valuestring);
		}
	}
	if (rc) {
		cJSON_Delete(merged);
		free(*tags_json);
		*tags_json = NULL;
		return rc;
	}
	*attrs_json = cJSON_PrintUnformatted(merged);
	cJSON_Delete(merged);
	out->tags = *tags_json;
	out->attrs = *attrs_json;
	return 0;
}

static int control_lead_add(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			    size_t errlen)
{
	struct lead lead;
	const char *email = control_str(args, "email");
	const char *stage = control_str(args, "stage");
	const char *sequence = control_str(args, "sequence");
	char *tags_json = NULL, *attrs_json = NULL;
	int64_t now = clock_now(&d->clock);
	int rc;

	memset(&lead, 0, sizeof(lead));
	if (!util_email_valid(email))
		return errf(err, errlen, DRIP_EINVALID, "\"%.200s\" is not an email address",
			    email);
	if (!stage && sequence && content_sequence(d->content, sequence))
		stage = content_sequence(d->content, sequence)->stage;
	if (!stage)
		stage = d->content->stages[0];
	if (content_stage_index(d->content, stage) < 0)
		return errf(err, errlen, DRIP_EINVALID, "unknown stage \"%.64s\" (stages: %s…)",
			    stage, d->content->stages[0]);
	if (sequence && !content_sequence(d->content, sequence))
		return errf(err, errlen, DRIP_ENOT_FOUND, "no sequence \"%.64s\"", sequence);
	if ((rc = control_lead_profile(args, NULL, &lead, &tags_json, &attrs_json, err, errlen)))
		return rc;
	lead.email = (char *)email;
	lead.stage = (char *)stage;

	/* The lead, its stage move and its first touch are one transaction. */
	if ((rc = store_begin(d->store))) {
		errf(err, errlen, rc, "cannot write to the database");
		goto out;
	}
	rc = store_lead_insert(d->store, &lead, now);
	if (rc == DRIP_EEXISTS) {
		errf(err, errlen, rc, "lead %.200s exists (use lead update)", email);
	} else if (rc) {
		errf(err, errlen, rc, "cannot add lead %.200s", email);
	} else {
		rc = journey_enter_stage(d->store, d->content, &lead, stage, sequence, now, err,
					 errlen);
	}
	if (rc == 0)
		rc = store_commit(d->store);
	else
		store_rollback(d->store);
	if (rc)
		goto out;
	struct lead added;
	if (store_lead_by_id(d->store, lead.id, &added) == 0) {
		cJSON_AddItemToObject(result, "lead", control_lead_json(&added));
		store_lead_clear(&added);
	}
	log_info("control: lead %lld %s added in %s", (long long)lead.id, email, stage);
	if (d->sched)
		sched_kick(d->sched);
out:
	free(tags_json);
	cJSON_free(attrs_json);
	return rc;
}

static int control_lead_show(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			     size_t errlen)
{
	struct lead lead;
	const char *email = control_str(args, "email");
	int rc = store_lead_by_email(d->store, email, &lead);
	if (rc == DRIP_ENOT_FOUND)
		return errf(err, errlen, rc, "no lead %.200s", email);
	if (rc)
		return errf(err, errlen, rc, "cannot read lead %.200s", email);
	cJSON_AddItemToObject(result, "lead", control_lead_json(&lead));
	cJSON *touches = cJSON_AddArrayToObject(result, "touches");
	cJSON *events = cJSON_AddArrayToObject(result, "events");
	if ((rc = store_touches_for_lead(d->store, lead.id, control_touch_item, touches)) ||
	    (rc = store_events_for_lead(d->store, lead.id, control_event_item, events)))
		errf(err, errlen, rc, "cannot read the history of %.200s", email);
	store_lead_clear(&lead);
	return rc;
}

static int control_clock_advance(struct dripd *d, const cJSON *args, cJSON *result, char *err,
				 size_t errlen)
{
	int64_t secs;
	const char *dur = control_str(args, "duration");
	if (clock_parse_duration(dur, &secs) != 0)
		return errf(err, errlen, DRIP_EINVALID,
			    "\"%.32s\" is not a duration such as 30s, 15m, 12h, 3d or 2w", dur);
	int rc = clock_advance(&d->clock, secs, clock_mono_ms());
	if (rc)
		return errf(err, errlen, rc,
			    "the test clock is off (\"test_clock\": true enables it)");
	dripd_save_clock(d);
	control_add_time(result, "now", clock_now(&d->clock));
	cJSON_AddNumberToObject(result, "advanced_s", (double)secs);
	if (d->sched)
		sched_kick(d->sched);
	hooks_kick(d->hooks);
	return 0;
}

/* Event kinds only dripd itself records; `dripctl event` may not forge them. */
static const char *const control_internal_kinds[] = { "sent",  "deferred", "failed", "uncertain",
						      "stage", "handoff",  "error",  NULL };

/* Loads the lead named by args' "email" into *lead, or fills err. */
static int control_lead(struct dripd *d, const cJSON *args, struct lead *lead, char *err,
			size_t errlen)
{
	const char *email = control_str(args, "email");
	int rc = store_lead_by_email(d->store, email, lead);
	if (rc == DRIP_ENOT_FOUND)
		return errf(err, errlen, rc, "no lead %.200s", email);
	if (rc)
		return errf(err, errlen, rc, "cannot read lead %.200s", email);
	return 0;
}

/* Commits the open transaction when rc is 0, else rolls it back; returns rc. */
static int control_finish(struct dripd *d, int rc, char *err, size_t errlen)
{
	if (rc == 0 && (rc = store_commit(d->store)))
		errf(err, errlen, rc, "cannot commit");
	if (rc)
		store_rollback(d->store);
	else if (d->sched)
		sched_kick(d->sched);
	return rc;
}

static void control_add_lead(struct dripd *d, cJSON *result, int64_t id)
{
	struct lead l;
	if (store_lead_by_id(d->store, id, &l) == 0) {
		cJSON_AddItemToObject(result, "lead", control_lead_json(&l));
		store_lead_clear(&l);
	}
}

/* Splits "SEQUENCE/STEP" and checks both exist in the content. */
static int control_step_arg(struct dripd *d, const char *arg, char *seq, size_t seqlen,
			    const char **step, char *err, size_t errlen)
{
	const char *slash = arg ? strchr(arg, '/') : NULL;
	const struct content_sequence *s;
	if (!slash || (size_t)(slash - arg) >= seqlen)
		return errf(err, errlen, DRIP_EINVALID,
			    "a step is written SEQUENCE/STEP, not \"%.64s\"", arg ? arg : "");
	memcpy(seq, arg, (size_t)(slash - arg));
	seq[slash - arg] = '\0';
	*step = slash + 1;
	if (!(s = content_sequence(d->content, seq)))
		return errf(err, errlen, DRIP_ENOT_FOUND, "no sequence \"%.64s\"", seq);
	if (!content_step(s, *step, NULL))
		return errf(err, errlen, DRIP_ENOT_FOUND, "sequence %s has no step \"%.64s\"", seq,
			    *step);
	return 0;
}

static int control_event(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			 size_t errlen)
{
	const char *kind = control_str(args, "kind");
	const char *detail = control_str(args, "detail");
	const char *step_arg = control_str(args, "step");
	char seq[128];
	const char *step = NULL;
	struct lead lead;
	struct touch t;
	int64_t touch_id = 0, now = clock_now(&d->clock);
	cJSON *parsed = NULL;
	char *detail_json = NULL;
	int rc;

	if (!content_name_valid(kind) || strlen(kind) > 32)
		return errf(
			err, errlen, DRIP_EINVALID,
			"an event kind is lower-case letters, digits, '-' or '_', not \"%.32s\"",
			kind);
	for (const char *const *k = control_internal_kinds; *k; k++)
		if (strcmp(*k, kind) == 0)
			return errf(err, errlen, DRIP_EINVALID,
				    "\"%s\" events are recorded by dripd itself", kind);
	if (detail && (!(parsed = cJSON_Parse(detail)) || !cJSON_IsObject(parsed))) {
		cJSON_Delete(parsed);
		return errf(err, errlen, DRIP_EINVALID, "--detail must be a JSON object");
	}
	if (step_arg &&
	    (rc = control_step_arg(d, step_arg, seq, sizeof(seq), &step, err, errlen))) {
		cJSON_Delete(parsed);
		return rc;
	}
	if ((rc = control_lead(d, args, &lead, err, errlen))) {
		cJSON_Delete(parsed);
		return rc;
	}
	if (step) {
		if ((rc = store_touch_find(d->store, lead.id, seq, step, &t))) {
			errf(err, errlen, rc, "%s has no touch for %s/%s", lead.email, seq, step);
			goto out;
		}
		touch_id = t.id;
		store_touch_clear(&t);
	}
	if (!parsed)
		parsed = cJSON_CreateObject();
	cJSON_AddStringToObject(parsed, "source", "dripctl");
	detail_json = cJSON_PrintUnformatted(parsed);
	if ((rc = store_begin(d->store))) {
		errf(err, errlen, rc, "cannot write to the database");
		goto out;
	}
	rc = journey_on_event(d->store, d->content, &lead, touch_id, kind, detail_json, now, err,
			      errlen);
	if ((rc = control_finish(d, rc, err, errlen)) == 0)
		control_add_lead(d, result, lead.id);
out:
	cJSON_Delete(parsed);
	cJSON_free(detail_json);
	store_lead_clear(&lead);
	return rc;
}

static int control_lead_update(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			       size_t errlen)
{
	struct lead lead, upd;
	char *tags_json = NULL, *attrs_json = NULL;
	int rc = control_lead(d, args, &lead, err, errlen);
	if (rc)
		return rc;
	upd = lead;
	if ((rc = control_lead_profile(args, &lead, &upd, &tags_json, &attrs_json, err, errlen)) ==
	    0) {
		rc = store_lead_update(d->store, &upd, clock_now(&d->clock));
		if (rc)
			errf(err, errlen, rc, "cannot update %s", lead.email);
		else
			control_add_lead(d, result, lead.id);
	}
	free(tags_json);
	cJSON_free(attrs_json);
	store_lead_clear(&lead);
	return rc;
}

/* "+TAG" adds a tag, "-TAG" removes it; the rest of the list stays. */
static int control_lead_tag(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			    size_t errlen)
{
	const cJSON *changes = cJSON_GetObjectItemCaseSensitive(args, "changes"), *c;
	struct lead lead;
	int rc = control_lead(d, args, &lead, err, errlen);
	if (rc)
		return rc;
	cJSON *tags = cJSON_Parse(lead.tags);
	if (!tags)
		tags = cJSON_CreateArray();
	cJSON_ArrayForEach(c, changes)
	{
		const char *v = c->valuestring;
		if ((v[0] != '+' && v[0] != '-') || (rc = control_check_tag(v + 1, err, errlen))) {
			if (!rc)
				rc = errf(err, errlen, DRIP_EINVALID,
					  "write +TAG to add a tag or -TAG to remove one, not "
					  "\"%.64s\"",
					  v);
			break;
		}
		int at = json_string_index(tags, v + 1);
		if (v[0] == '+' && at < 0)
			cJSON_AddItemToArray(tags, cJSON_CreateString(v + 1));
		else if (v[0] == '-' && at >= 0)
			cJSON_DeleteItemFromArray(tags, at);
	}
	if (rc == 0) {
		char *json = cJSON_PrintUnformatted(tags);
		free(lead.tags);
		lead.tags = xstrdup(json);
		cJSON_free(json);
		if ((rc = store_lead_update(d->store, &lead, clock_now(&d->clock))))
			errf(err, errlen, rc, "cannot update %s", lead.email);
		else
			control_add_lead(d, result, lead.id);
	}
	cJSON_Delete(tags);
	store_lead_clear(&lead);
	return rc;
}

static int control_lead_stage(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			      size_t errlen)
{
	struct lead lead;
	const char *stage = control_str(args, "stage");
	int rc;
	if (content_stage_index(d->content, stage) < 0)
		return errf(err, errlen, DRIP_EINVALID, "unknown stage \"%.64s\"", stage);
	if ((rc = control_lead(d, args, &lead, err, errlen)))
		return rc;
	if ((rc = store_begin(d->store)) == 0)
		rc = journey_enter_stage(d->store, d->content, &lead, stage, NULL,
					 clock_now(&d->clock), err, errlen);
	if ((rc = control_finish(d, rc, err, errlen)) == 0)
		control_add_lead(d, result, lead.id);
	store_lead_clear(&lead);
	return rc;
}

static int control_lead_enroll(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			       size_t errlen)
{
	struct lead lead;
	const char *name = control_str(args, "sequence");
	const struct content_sequence *seq = content_sequence(d->content, name);
	int rc;
	if (!seq)
		return errf(err, errlen, DRIP_ENOT_FOUND, "no sequence \"%.64s\"", name);
	if ((rc = control_lead(d, args, &lead, err, errlen)))
		return rc;
	if ((rc = store_begin(d->store)) == 0)
		rc = journey_enter_stage(d->store, d->content, &lead, seq->stage, seq->name,
					 clock_now(&d->clock), err, errlen);
	if ((rc = control_finish(d, rc, err, errlen)) == 0)
		control_add_lead(d, result, lead.id);
	store_lead_clear(&lead);
	return rc;
}

static int control_preview(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			   size_t errlen)
{
	const char *step_arg = control_str(args, "step");
	struct lead lead;
	struct touch t;
	struct sched_mail mail;
	char seq[128], why[256] = "";
	const char *step = NULL;
	bool send = true;
	int rc;

	memset(&t, 0, sizeof(t));
	if (step_arg && (rc = control_step_arg(d, step_arg, seq, sizeof(seq), &step, err, errlen)))
		return rc;
	if ((rc = control_lead(d, args, &lead, err, errlen)))
		return rc;
	if (step) {
		/* The lead's own touch for that step when it has one (so threading and the
		 * Message-ID's touch number are the real ones), else a touch as it would be. */
		if (store_touch_find(d->store, lead.id, seq, step, &t) != 0) {
			size_t index = 0;
			content_step(content_sequence(d->content, seq), step, &index);
			t.sequence = xstrdup(seq);
			t.step = xstrdup(step);
			t.step_index = (int64_t)index;
		}
	} else if ((rc = store_touch_next_for_lead(d->store, lead.id, &t))) {
		errf(err, errlen, rc, "%s has no step due; name one with --step SEQUENCE/STEP",
		     lead.email);
		goto out;
	}
	if ((rc = sched_conditions(d->store, d->content, &lead, &t, &send, why, sizeof(why))) ||
	    (rc = sched_compose(d->store, d->content, d->cfg, d->keys, &lead, &t,
				clock_now(&d->clock), &mail, err, errlen)))
		goto out;
	cJSON_AddStringToObject(result, "sequence", t.sequence);
	cJSON_AddStringToObject(result, "step", t.step);
	cJSON_AddNumberToObject(result, "variant", (double)mail.variant);
	cJSON_AddBoolToObject(result, "would_send", send);
	if (!send)
		cJSON_AddStringToObject(result, "reason", why);
	cJSON_AddStringToObject(result, "message", mail.data.data);
	sched_mail_clear(&mail);
out:
	store_touch_clear(&t);
	store_lead_clear(&lead);
	return rc;
}

static void control_funnel_row(void *arg, const char *stage, const char *status, int64_t n)
{
	cJSON *funnel = arg, *row = cJSON_GetObjectItemCaseSensitive(funnel, stage);
	cJSON *by = row ? cJSON_GetObjectItemCaseSensitive(row, "by_status") : NULL;
	if (!row) {
		row = cJSON_AddObjectToObject(funnel, stage);
		cJSON_AddNumberToObject(row, "leads", 0);
		by = cJSON_AddObjectToObject(row, "by_status");
	}
	cJSON *leads = cJSON_GetObjectItemCaseSensitive(row, "leads");
	cJSON_SetNumberValue(leads, leads->valuedouble + (double)n);
	cJSON_AddNumberToObject(by, status, (double)n);
}

static void control_step_row(void *arg, const struct store_step_stats *r)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "sequence", r->sequence);
	cJSON_AddStringToObject(o, "step", r->step);
	cJSON_AddNumberToObject(o, "variant", (double)r->variant);
	cJSON_AddNumberToObject(o, "sent", (double)r->sent);
	cJSON_AddNumberToObject(o, "opened", (double)r->opened);
	cJSON_AddNumberToObject(o, "clicked", (double)r->clicked);
	cJSON_AddNumberToObject(o, "replied", (double)r->replied);
	cJSON_AddNumberToObject(o, "bounced", (double)r->bounced);
	cJSON_AddNumberToObject(o, "unsubscribed", (double)r->unsubscribed);
	cJSON_AddItemToArray(arg, o);
}

/* Live limits: an account's per_hour/per_day, or a configured domain's per_hour/concurrency. */
static int control_limits(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			  size_t errlen)
{
	static const char *const keys[] = { "per_hour", "per_day", "concurrency" };
	const char *account = control_str(args, "account");
	const char *domain = control_str(args, "domain");
	int rc;
	for (size_t i = 0; i < 3; i++) {
		const char *v = control_str(args, keys[i]);
		char *end = NULL;
		long long n;
		if (!v)
			continue;
		if (strcmp(v, "config") == 0) {
			n = -1;
		} else {
			errno = 0;
			n = strtoll(v, &end, 10);
			if (!*v || *end || errno || n < 0 || n > 1000000000)
				return errf(err, errlen, DRIP_EINVALID,
					    "%s must be a number from 0 (no cap) up, or \"config\"",
					    keys[i]);
		}
		if ((rc = sched_set_limit(d->sched, account, domain, keys[i], n, err, errlen)))
			return rc;
	}
	return sched_status(d->sched, result);
}

static int control_stats(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			 size_t errlen)
{
	cJSON *funnel = cJSON_CreateObject(), *ordered = cJSON_AddArrayToObject(result, "funnel");
	int rc;
	(void)args;
	if ((rc = store_stats_funnel(d->store, control_funnel_row, funnel)) ||
	    (rc = store_stats_steps(d->store, control_step_row,
				    cJSON_AddArrayToObject(result, "steps")))) {
		cJSON_Delete(funnel);
		return errf(err, errlen, rc, "cannot read the statistics");
	}
	/* The funnel in the journey's order, every stage present even when empty. */
	for (size_t i = 0; i < d->content->nstages; i++) {
		cJSON *row = cJSON_DetachItemFromObjectCaseSensitive(funnel, d->content->stages[i]);
		if (!row) {
			row = cJSON_CreateObject();
			cJSON_AddNumberToObject(row, "leads", 0);
			cJSON_AddObjectToObject(row, "by_status");
		}
		cJSON_AddItemToObject(row, "stage", cJSON_CreateString(d->content->stages[i]));
		cJSON_AddItemToArray(ordered, row);
	}
	cJSON_Delete(funnel); /* stages the content no longer has are not part of the funnel */
	return 0;
}

static const char *const control_touch_states[] = { "pending",   "queued",  "sending", "sent",
						    "deferred",  "bounced", "failed",  "skipped",
						    "uncertain", NULL };

struct control_touch_walk {
	cJSON *list;
	struct store *store;
};

/* A touch as lead show lists it, plus who it was for: a person resolving one needs that. */
static int control_touch_with_email(void *arg, const struct touch *t)
{
	struct control_touch_walk *w = arg;
	struct lead l;
	cJSON *o = control_touch_json(t);
	if (store_lead_by_id(w->store, t->lead_id, &l) == 0) {
		cJSON_AddStringToObject(o, "email", l.email);
		store_lead_clear(&l);
	}
	cJSON_AddItemToArray(w->list, o);
	return 0;
}

static int control_touch_list(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			      size_t errlen)
{
	const char *state = control_str(args, "state");
	bool known = false;
	int rc;
	if (!state)
		state = "uncertain";
	for (const char *const *k = control_touch_states; *k; k++)
		known = known || strcmp(*k, state) == 0;
	if (!known)
		return errf(err, errlen, DRIP_EINVALID, "unknown touch state \"%.32s\"", state);
	struct control_touch_walk w = { .list = cJSON_AddArrayToObject(result, "touches"),
					.store = d->store };
	if ((rc = store_touches_in_state(d->store, state, 1000, control_touch_with_email, &w)))
		return errf(err, errlen, rc, "cannot list touches");
	return 0;
}

static int control_touch_resolve(struct dripd *d, const cJSON *args, cJSON *result, char *err,
				 size_t errlen)
{
	const char *id_s = control_str(args, "id"), *how = control_str(args, "as");
	char *end = NULL;
	long long id = strtoll(id_s, &end, 10);
	int64_t now = clock_now(&d->clock);
	struct touch t;
	int rc;
	if (!*id_s || *end || id <= 0)
		return errf(err, errlen, DRIP_EINVALID, "a touch id is a number, not \"%.32s\"",
			    id_s);
	if (strcmp(how, "sent") != 0 && strcmp(how, "resend") != 0)
		return errf(err, errlen, DRIP_EINVALID,
			    "resolve a touch as \"sent\" (it arrived) or \"resend\" (it did not)");
	if ((rc = store_touch_get(d->store, id, &t)))
		return errf(err, errlen, rc, "no touch %lld", id);
	if ((rc = store_begin(d->store)) == 0) {
		rc = store_touch_resolve(d->store, id,
					 strcmp(how, "sent") == 0 ? "sent" : "pending", now);
		if (rc == DRIP_ENOT_FOUND)
			errf(err, errlen, rc, "touch %lld is %s, not uncertain", id, t.state);
		cJSON *detail = cJSON_CreateObject();
		cJSON_AddStringToObject(detail, "sequence", t.sequence);
		cJSON_AddStringToObject(detail, "step", t.step);
		cJSON_AddStringToObject(detail, "resolved_as", how);
		char *json = cJSON_PrintUnformatted(detail);
		if (rc == 0)
			rc = store_event_add(d->store, t.lead_id, t.id,
					     strcmp(how, "sent") == 0 ? "sent" : "deferred", now,
					     json);
		/* A step a person says arrived moves the lead on like any other. */
		if (rc == 0 && strcmp(how, "sent") == 0)
			rc = journey_step_done(d->store, d->content, &t, now);
		cJSON_free(json);
		cJSON_Delete(detail);
	}
	if ((rc = control_finish(d, rc, err, errlen)) == 0) {
		cJSON_AddNumberToObject(result, "id", (double)id);
		cJSON_AddStringToObject(result, "state",
					strcmp(how, "sent") == 0 ? "sent" : "pending");
	}
	store_touch_clear(&t);
	return rc;
}

/* The global pause, kept in the database so it survives a restart. */
static int control_set_paused(struct dripd *d, bool paused, cJSON *result, char *err, size_t errlen)
{
	int rc = store_setting_set(d->store, DRIPD_PAUSED_SETTING, paused);
	if (rc)
		return errf(err, errlen, rc, "cannot record the pause");
	if (d->sched)
		sched_set_paused(d->sched, paused);
	log_info("control: sending %s", paused ? "paused" : "resumed");
	cJSON_AddBoolToObject(result, "paused", paused);
	return 0;
}

static int control_pause(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			 size_t errlen)
{
	(void)args;
	return control_set_paused(d, true, result, err, errlen);
}

static int control_resume(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			  size_t errlen)
{
	(void)args;
	return control_set_paused(d, false, result, err, errlen);
}

/* A paused lead's touches wait (they are not claimed) until it is resumed. */
static int control_lead_set_status(struct dripd *d, const cJSON *args, cJSON *result, char *err,
				   size_t errlen, const char *from, const char *to)
{
	struct lead lead;
	int rc = control_lead(d, args, &lead, err, errlen);
	if (rc)
		return rc;
	if (strcmp(lead.status, from) != 0) {
		rc = errf(err, errlen, DRIP_EINVALID, "lead %s is %s, not %s", lead.email,
			  lead.status, from);
	} else if ((rc = store_begin(d->store)) == 0) {
		cJSON *detail = cJSON_CreateObject();
		cJSON_AddStringToObject(detail, "status", to);
		char *json = cJSON_PrintUnformatted(detail);
		int64_t now = clock_now(&d->clock);
		rc = store_lead_set_status(d->store, lead.id, to, now);
		if (rc == 0)
			rc = store_event_add(d->store, lead.id, 0,
					     strcmp(to, "paused") == 0 ? "pause" : "resume", now,
					     json);
		cJSON_free(json);
		cJSON_Delete(detail);
		if ((rc = control_finish(d, rc, err, errlen)) == 0)
			control_add_lead(d, result, lead.id);
	}
	store_lead_clear(&lead);
	return rc;
}

static int control_lead_pause(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			      size_t errlen)
{
	return control_lead_set_status(d, args, result, err, errlen, "active", "paused");
}

static int control_lead_resume(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			       size_t errlen)
{
	return control_lead_set_status(d, args, result, err, errlen, "paused", "active");
}

static int control_explain(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			   size_t errlen)
{
	struct lead lead;
	int rc = control_lead(d, args, &lead, err, errlen);
	if (rc)
		return rc;
	if (!d->sched)
		rc = errf(err, errlen, DRIP_EUNSUPPORTED, "the scheduler is not running");
	else if ((rc = sched_explain(d->sched, &lead, result)))
		errf(err, errlen, rc, "cannot explain %s", lead.email);
	store_lead_clear(&lead);
	return rc;
}

/* The profile options lead add and lead update share (control_lead_profile reads them). */
#define CONTROL_PROFILE_ARGS                                                       \
	{ "--first-name", "first_name", CONTROL_ARG_STRING, false, "NAME" },       \
		{ "--last-name", "last_name", CONTROL_ARG_STRING, false, "NAME" }, \
		{ "--company", "company", CONTROL_ARG_STRING, false, "NAME" },     \
		{ "--title", "title", CONTROL_ARG_STRING, false, "TITLE" },        \
		{ "--tz", "tz", CONTROL_ARG_STRING, false, "ZONE" },               \
		{ "--tag", "tags", CONTROL_ARG_LIST, false, "TAG" },               \
	{                                                                          \
		"--attr", "attrs", CONTROL_ARG_MAP, false, "KEY=VALUE"             \
	}

/* clang-format off */
const struct control_cmd control_cmds[] = {
	{ "status", "status", "what the daemon is doing: leads, touches by state, next due",
	  0, { { 0 } }, control_status },
	{ "pause", "pause", "stop handing messages to the sender threads (kept across restarts)",
	  CONTROL_CHANGES_STATE, { { 0 } }, control_pause },
	{ "resume", "resume", "resume sending after a pause", CONTROL_CHANGES_STATE, { { 0 } },
	  control_resume },
	{ "lead.add", "lead add", "add a lead and enrol it in its stage's sequence",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" },
	    CONTROL_PROFILE_ARGS,
	    { "--stage", "stage", CONTROL_ARG_STRING, false, "STAGE" },
	    { "--sequence", "sequence", CONTROL_ARG_STRING, false, "NAME" } },
	  control_lead_add },
	{ "lead.update", "lead update", "change a lead's profile (given fields; --attr merges)",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" }, CONTROL_PROFILE_ARGS },
	  control_lead_update },
	{ "lead.tag", "lead tag", "add (+TAG) or remove (-TAG) tags",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" },
	    { NULL, "changes", CONTROL_ARG_LIST, true, "+TAG|-TAG" } },
	  control_lead_tag },
	{ "lead.show", "lead show", "a lead's profile, touches and timeline of events",
	  0, { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" } }, control_lead_show },
	{ "lead.pause", "lead pause", "hold a lead's mail where it is until resumed",
	  CONTROL_CHANGES_STATE, { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" } },
	  control_lead_pause },
	{ "lead.resume", "lead resume", "let a paused lead's mail go again",
	  CONTROL_CHANGES_STATE, { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" } },
	  control_lead_resume },
	{ "lead.stage", "lead stage", "move a lead to a stage and enrol it in that stage's sequence",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" },
	    { NULL, "stage", CONTROL_ARG_STRING, true, "STAGE" } }, control_lead_stage },
	{ "lead.enroll", "lead enroll", "enrol a lead in a sequence (and that sequence's stage)",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" },
	    { NULL, "sequence", CONTROL_ARG_STRING, true, "SEQUENCE" } }, control_lead_enroll },
	{ "event", "event", "record an outside event for a lead (a reply seen in the CRM, say)",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" },
	    { NULL, "kind", CONTROL_ARG_STRING, true, "KIND" },
	    { "--detail", "detail", CONTROL_ARG_STRING, false, "JSON" },
	    { "--step", "step", CONTROL_ARG_STRING, false, "SEQUENCE/STEP" } }, control_event },
	{ "explain", "explain", "why a lead is where it is and why its next step has or has not gone",
	  0, { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" } }, control_explain },
	{ "preview", "preview", "the message exactly as it would be sent, through the real path",
	  0,
	  { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" },
	    { "--step", "step", CONTROL_ARG_STRING, false, "SEQUENCE/STEP" } }, control_preview },
	{ "touch.list", "touch list", "touches in a state (default: uncertain, which need a person)",
	  0, { { "--state", "state", CONTROL_ARG_STRING, false, "STATE" } }, control_touch_list },
	{ "touch.resolve", "touch resolve",
	  "settle an uncertain touch: it arrived (sent) or it did not (resend)",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "id", CONTROL_ARG_STRING, true, "ID" },
	    { NULL, "as", CONTROL_ARG_STRING, true, "sent|resend" } }, control_touch_resolve },
	{ "stats", "stats", "funnel by stage; per step and variant: sent, opened, clicked, replied",
	  0, { { 0 } }, control_stats },
	{ "clock.advance", "clock advance", "move the test clock forward (test clock only)",
	  CONTROL_CHANGES_STATE | CONTROL_TEST_CLOCK,
	  { { NULL, "duration", CONTROL_ARG_STRING, true, "DURATION" } }, control_clock_advance },
	{ "limits", "limits",
	  "change an account's per_hour/per_day, or a domain's per_hour/concurrency, live "
	  "(kept across restarts; \"config\" goes back to the config's)",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "account", CONTROL_ARG_STRING, true, "ACCOUNT" },
	    { "--domain", "domain", CONTROL_ARG_STRING, false, "DOMAIN" },
	    { "--per-hour", "per_hour", CONTROL_ARG_STRING, false, "N" },
	    { "--per-day", "per_day", CONTROL_ARG_STRING, false, "N" },
	    { "--concurrency", "concurrency", CONTROL_ARG_STRING, false, "N" } }, control_limits },
	{ "help", "help", "list the commands", 0, { { 0 } }, control_help },
	{ 0 },
};
/* clang-format on */

const struct control_cmd *control_cmd_find(const char *name)
{
	for (const struct control_cmd *c = control_cmds; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

void control_usage(const struct control_cmd *c, struct buf *out)
{
	buf_adds(out, c->words);
	for (size_t i = 0; i < CONTROL_MAX_ARGS && c->args[i].key; i++) {
		const struct control_arg *a = &c->args[i];
		if (!a->flag)
			buf_printf(out, a->required ? " %s%s" : " [%s%s]", a->meta,
				   a->kind == CONTROL_ARG_LIST ? "…" : "");
		else
			buf_printf(out, " [%s %s]%s", a->flag, a->meta,
				   a->kind == CONTROL_ARG_STRING ? "" : "…");
	}
}

/* ---- requests ------------------------------------------------------------------------- */

char *control_handle_line(struct dripd *d, const char *line)
{
	char err[1024] = "";
	cJSON *req = cJSON_Parse(line);
	cJSON *answer = cJSON_CreateObject();
	cJSON *result = cJSON_CreateObject();
	const cJSON *id = req ? cJSON_GetObjectItemCaseSensitive(req, "id") : NULL;
	const cJSON *v = req ? cJSON_GetObjectItemCaseSensitive(req, "v") : NULL;
	const cJSON *cmd = req ? cJSON_GetObjectItemCaseSensitive(req, "cmd") : NULL;
	const cJSON *args = req ? cJSON_GetObjectItemCaseSensitive(req, "args") : NULL;
	cJSON *empty = NULL;
	const struct control_cmd *c = NULL;
	int rc = 0;

	cJSON_AddNumberToObject(answer, "v", PROTO_VERSION);
	if (cJSON_IsNumber(id) || cJSON_IsString(id))
		cJSON_AddItemToObject(answer, "id", cJSON_Duplicate(id, 0));
	if (!cJSON_IsObject(req)) {
		rc = errf(err, sizeof(err), DRIP_EPROTOCOL,
			  "a request is one JSON object per line");
	} else if (!cJSON_IsNumber(v) || v->valuedouble != PROTO_VERSION) {
		rc = errf(err, sizeof(err), DRIP_EPROTOCOL,
			  "unsupported protocol version (this dripd speaks \"v\": %d)",
			  PROTO_VERSION);
	} else if (!cJSON_IsString(cmd)) {
		rc = errf(err, sizeof(err), DRIP_EPROTOCOL, "a request needs \"cmd\"");
	} else if (!(c = control_cmd_find(cmd->valuestring))) {
		rc = errf(err, sizeof(err), DRIP_EUNKNOWN_COMMAND,
			  "unknown command \"%.64s\" (try help)", cmd->valuestring);
	} else if ((c->flags & CONTROL_TEST_CLOCK) && !d->clock.test) {
		rc = errf(err, sizeof(err), DRIP_EDISABLED,
			  "%s needs \"test_clock\": true in the config", c->words);
	} else {
		if (!args)
			args = empty = cJSON_CreateObject();
		rc = control_check_args(c, args, err, sizeof(err));
		if (rc == 0)
			rc = c->handler(d, args, result, err, sizeof(err));
	}
	if (rc == 0) {
		cJSON_AddBoolToObject(answer, "ok", 1);
		cJSON_AddItemToObject(answer, "result", result);
	} else {
		cJSON_Delete(result);
		cJSON_AddBoolToObject(answer, "ok", 0);
		cJSON *e = cJSON_AddObjectToObject(answer, "error");
		cJSON_AddStringToObject(e, "code", drip_errname(rc));
		cJSON_AddStringToObject(e, "message", *err ? err : drip_strerror(rc));
	}
	char *out = proto_line(answer);
	cJSON_Delete(answer);
	cJSON_Delete(req);
	cJSON_Delete(empty);
	return out;
}

/* ---- the socket ----------------------------------------------------------------------- */

static void control_client_closed_cb(uv_handle_t *h)
{
	struct control_client *cl = h->data;
	struct control *ctl = cl->ctl;
	proto_reader_free(&cl->reader);
	free(cl);
	if (--ctl->open_handles == 0) {
		free(ctl->path);
		free(ctl);
	}
}

static void control_client_close(struct control_client *cl)
{
	if (cl->closing)
		return;
	cl->closing = true;
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		cl->ctl->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	uv_close((uv_handle_t *)&cl->pipe, control_client_closed_cb);
}

static void control_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	b->base = xmalloc(suggested);
	b->len = suggested;
}

static void control_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

struct control_write {
	uv_write_t req;
	char *data;
};

static void control_write_cb(uv_write_t *req, int status)
{
	struct control_write *w = (struct control_write *)req;
	struct control_client *cl = req->handle->data;
	free(w->data);
	free(w);
	if (status < 0 || cl->closing)
		return;
	if (!cl->reading &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) < CONTROL_MAX_PENDING / 2) {
		cl->reading = true;
		uv_read_start((uv_stream_t *)&cl->pipe, control_alloc_cb, control_read_cb);
	}
}

static void control_send(struct control_client *cl, char *line)
{
	struct control_write *w = xcalloc(1, sizeof(*w));
	uv_buf_t b = uv_buf_init(line, (unsigned)strlen(line));
	w->data = line;
	if (uv_write(&w->req, (uv_stream_t *)&cl->pipe, &b, 1, control_write_cb) != 0) {
		free(line);
		free(w);
		control_client_close(cl);
		return;
	}
	if (cl->reading &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) > CONTROL_MAX_PENDING) {
		cl->reading = false;
		uv_read_stop((uv_stream_t *)&cl->pipe);
	}
}

static void control_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct control_client *cl = s->data;
	if (n < 0) {
		free(b->base);
		control_client_close(cl);
		return;
	}
	proto_reader_feed(&cl->reader, b->base, (size_t)n);
	free(b->base);
	bool too_long;
	char *line;
	for (;;) {
		line = proto_reader_next(&cl->reader, &too_long);
		if (too_long) {
			char *e = xasprintf("{\"v\":%d,\"ok\":false,\"error\":{\"code\":\"%s\","
					    "\"message\":\"request longer than %d bytes\"}}\n",
					    PROTO_VERSION, drip_errname(DRIP_ETOO_BIG),
					    PROTO_MAX_LINE);
			control_send(cl, e);
			continue;
		}
		if (!line || cl->closing)
			break;
		if (!*line)
			continue;
		control_send(cl, control_handle_line(cl->ctl->d, line));
	}
}

static void control_connection_cb(uv_stream_t *server, int status)
{
	struct control *ctl = server->data;
	if (status < 0) {
		log_warn("control: accept: %s", uv_strerror(status));
		return;
	}
	struct control_client *cl = xcalloc(1, sizeof(*cl));
	cl->ctl = ctl;
	proto_reader_init(&cl->reader);
	uv_pipe_init(ctl->d->loop, &cl->pipe, 0);
	cl->pipe.data = cl;
	ctl->open_handles++;
	cl->next = ctl->clients;
	if (cl->next)
		cl->next->prev = cl;
	ctl->clients = cl;
	if (uv_accept(server, (uv_stream_t *)&cl->pipe) != 0) {
		control_client_close(cl);
		return;
	}
	cl->reading = true;
	uv_read_start((uv_stream_t *)&cl->pipe, control_alloc_cb, control_read_cb);
}

/* A socket file nobody answers on is a crash's leftover; one that answers is another dripd. */
static int control_clear_stale(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return 0;
	if (!S_ISSOCK(sb.st_mode))
		return errf(err, errlen, DRIP_EEXISTS,
			    "control: %s exists and is not a socket: refusing to replace it", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	if (live)
		return errf(err, errlen, DRIP_EBUSY,
			    "control: another dripd answers on %s: refusing to start", path);
	if (unlink(path) != 0)
		return errf(err, errlen, DRIP_EIO, "control: cannot remove stale %s: %s", path,
			    strerror(errno));
	log_info("control: removed stale socket %s", path);
	return 0;
}

struct control *control_new(struct dripd *d, char *err, size_t errlen)
{
	const char *path = d->cfg->control_socket;
	struct control *ctl;
	int rc;
	if (control_clear_stale(path, err, errlen))
		return NULL;
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->d = d;
	ctl->path = xstrdup(path);
	uv_pipe_init(d->loop, &ctl->server, 0);
	ctl->server.data = ctl;
	ctl->open_handles = 1;
	if ((rc = uv_pipe_bind(&ctl->server, path)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&ctl->server, 64, control_connection_cb)) != 0) {
		errf(err, errlen, DRIP_EIO, "control: cannot listen on %s: %s", path,
		     uv_strerror(rc));
		control_close(ctl);
		return NULL;
	}
	/* Users in the daemon's group may drive it; nobody else may. */
	if (chmod(path, 0660) != 0)
		log_warn("control: chmod %s: %s", path, strerror(errno));
	log_info("control: listening on %s", path);
	return ctl;
}

static void control_server_closed_cb(uv_handle_t *h)
{
	struct control *ctl = h->data;
	if (--ctl->open_handles == 0) {
		free(ctl->path);
		free(ctl);
	}
}

void control_close(struct control *ctl)
{
	while (ctl->clients)
		control_client_close(ctl->clients);
	if (uv_is_active((uv_handle_t *)&ctl->server))
		unlink(ctl->path);
	uv_close((uv_handle_t *)&ctl->server, control_server_closed_cb);
}
