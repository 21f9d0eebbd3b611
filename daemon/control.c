/* control.c - the Unix control socket: JSON lines in, one command table, JSON lines out. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "dripd/control.h"
#include "dripd/csv.h"
#include "dripd/error.h"
#include "dripd/hooks.h"
#include "dripd/journey.h"
#include "dripd/json.h"
#include "dripd/log.h"
#include "dripd/mailer.h"
#include "dripd/proto.h"
#include "dripd/sched.h"
#include "dripd/retention.h"
#include "dripd/signup.h"
#include "dripd/sd.h"

/*
 * DESIGN. The listener is a libuv pipe. Each client has a line reader; every complete line
 * is answered at once through control_handle_line, which is also what the unit tests call.
 * A client whose unsent answers pile up past CONTROL_MAX_PENDING stops being read until they
 * drain, so a slow or vanished client costs memory for one answer, not the loop's time.
 */

#define CONTROL_MAX_PENDING (4 * 1024 * 1024)
#define CONTROL_MAX_FIELD 256

#define CONTROL_WATCH_MAX (1024 * 1024) /* unsent bytes before a watcher is dropped */
#define CONTROL_WATCH_BACKLOG 100000 /* events waiting for the next flush */
#define CONTROL_BACKUP_PAGES 256 /* pages per backup step */
#define CONTROL_BACKUP_TICK_MS 2
#define CONTROL_DEFERRED 1 /* a handler that answers later (backup) */
#define CONTROL_FORGET_KEY_FILE "forget.secret"
#define CONTROL_IMPORT_SLICE_MS 10 /* the longest an import holds the loop at a time */

struct control_client {
	uv_pipe_t pipe;
	struct control *ctl;
	struct proto_reader reader;
	struct control_client *prev, *next;
	bool reading;
	bool closing;
	bool watching;
};

struct control_backup {
	struct control_backup *next;
	struct store_backup *bk;
	struct control_client *client; /* NULL once it went away */
	cJSON *id;
	char *path;
	uint64_t started_ms;
};

struct control_test_send {
	struct control_test_send *next;
	int64_t key; /* the negative "touch id" the mailer hands back */
	struct control_client *client;
	cJSON *id;
	char *to;
};

struct control {
	struct dripd *d;
	uv_pipe_t server;
	uv_timer_t flush; /* sends noted events to the watchers after the current callback */
	uv_timer_t backup_timer;
	struct control_client *clients;
	struct control_client *current; /* whose request is being handled, if any */
	const cJSON *current_id;
	size_t watchers;
	int64_t *events; /* ids of events to show the watchers */
	size_t nevents, cap, lost;
	struct control_backup *backups;
	struct control_import *imports; /* chunks being imported, oldest first */
	struct control_test_send *tests; /* send-test jobs with a sender thread */
	int64_t test_seq;
	uv_idle_t import_idle; /* one slice per loop turn while imports wait */
	char *path;
	int open_handles;
	bool inherited; /* systemd's socket (dripd.socket): never unlinked by us */
};

static void control_flush_cb(uv_timer_t *t);

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
			  : spec->kind == CONTROL_ARG_FLAG ? cJSON_IsBool(a)
							   : cJSON_IsObject(a);
		const cJSON *e;
		if (ok && (spec->kind == CONTROL_ARG_LIST || spec->kind == CONTROL_ARG_MAP))
			cJSON_ArrayForEach(e, a) ok = ok && cJSON_IsString(e);
		if (!ok)
			return errf(err, errlen, DRIP_EINVALID, "\"%s\" must be %s", a->string,
				    spec->kind == CONTROL_ARG_STRING ? "a string"
				    : spec->kind == CONTROL_ARG_LIST ? "a list of strings"
				    : spec->kind == CONTROL_ARG_FLAG ? "true or false"
								     : "an object of strings");
	}
	for (size_t i = 0; i < CONTROL_MAX_ARGS && c->args[i].key; i++)
		if (c->args[i].required && !cJSON_GetObjectItemCaseSensitive(args, c->args[i].key))
			return errf(err, errlen, DRIP_EINVALID, "%s needs %s", c->words,
				    c->args[i].meta ? c->args[i].meta : c->args[i].key);
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

static cJSON *control_lead_json(struct dripd *d, const struct lead *l)
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
	cJSON_AddNumberToObject(o, "score",
				journey_score_shown(d->content, l, clock_now(&d->clock)));
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
	if (d->sched && sched_held(d->sched))
		cJSON_AddStringToObject(result, "held", sched_held(d->sched));
	else
		cJSON_AddNullToObject(result, "held");
	if (d->clock.test)
		cJSON_AddNumberToObject(result, "clock_rate", d->clock.rate);
	cJSON_AddNumberToObject(result, "leads", (double)st.leads);
	cJSON_AddNumberToObject(result, "active_enrolments", (double)st.active_enrolments);
	cJSON_AddNumberToObject(result, "anonymised", (double)st.anonymised);
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
/* Time zones already found valid (a stat of the zoneinfo file each): an import keeps one
 * per chunk, since its rows mostly repeat a few zones. */
struct control_tzcache {
	char zone[8][64];
	size_t n, next;
};

static bool control_tz_valid(struct control_tzcache *cache, const char *tz)
{
	if (!cache)
		return clock_tz_valid(tz);
	for (size_t i = 0; i < cache->n; i++)
		if (strcmp(cache->zone[i], tz) == 0)
			return true;
	if (!clock_tz_valid(tz))
		return false;
	if (strlen(tz) < sizeof(cache->zone[0])) {
		snprintf(cache->zone[cache->next], sizeof(cache->zone[0]), "%s", tz);
		cache->next = (cache->next + 1) % (sizeof(cache->zone) / sizeof(cache->zone[0]));
		if (cache->n < sizeof(cache->zone) / sizeof(cache->zone[0]))
			cache->n++;
	}
	return true;
}

static int control_lead_profile(const cJSON *args, const struct lead *base, struct lead *out,
				char **tags_json, char **attrs_json, struct control_tzcache *tzc,
				char *err, size_t errlen)
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
	if (tz && *tz && !control_tz_valid(tzc, tz))
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
	if ((rc = control_lead_profile(args, NULL, &lead, &tags_json, &attrs_json, NULL, err,
				       errlen)))
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
		cJSON_AddItemToObject(result, "lead", control_lead_json(d, &added));
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

/* The lead's consent record from its website signup, when it has one. */
static void control_add_consent(struct dripd *d, cJSON *result, int64_t lead_id)
{
	struct store_consent c;
	if (store_consent_get(d->store, lead_id, &c) != 0)
		return;
	cJSON *o = cJSON_AddObjectToObject(result, "consent");
	cJSON_AddStringToObject(o, "form", c.form);
	cJSON_AddStringToObject(o, "consent", c.consent);
	control_add_time(o, "signed_up_at", c.signed_up_at);
	cJSON_AddStringToObject(o, "address", c.address);
	control_add_time(o, "confirmed_at", c.confirmed_at);
	cJSON_AddStringToObject(o, "confirm_address", c.confirm_address);
	store_consent_clear(&c);
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
	cJSON_AddItemToObject(result, "lead", control_lead_json(d, &lead));
	cJSON *touches = cJSON_AddArrayToObject(result, "touches");
	cJSON *events = cJSON_AddArrayToObject(result, "events");
	if ((rc = store_touches_for_lead(d->store, lead.id, control_touch_item, touches)) ||
	    (rc = store_events_for_lead(d->store, lead.id, control_event_item, events)))
		errf(err, errlen, rc, "cannot read the history of %.200s", email);
	if (rc == 0)
		control_add_consent(d, result, lead.id);
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
	signup_kick(d->signup);
	retention_kick(d->retention);
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
		cJSON_AddItemToObject(result, "lead", control_lead_json(d, &l));
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
	if ((rc = control_lead_profile(args, &lead, &upd, &tags_json, &attrs_json, NULL, err,
				       errlen)) == 0) {
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
	/* Each outcome as a percentage of the step's sent touches, to one decimal. */
	cJSON *rates = cJSON_AddObjectToObject(o, "rates");
	const struct {
		const char *name;
		int64_t n;
	} parts[] = { { "opened", r->opened },
		      { "clicked", r->clicked },
		      { "replied", r->replied },
		      { "bounced", r->bounced },
		      { "unsubscribed", r->unsubscribed } };
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		cJSON_AddNumberToObject(
			rates, parts[i].name,
			r->sent ? round(1000.0 * (double)parts[i].n / (double)r->sent) / 10 : 0);
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
		if (d->sched)
			sched_sends_changed(d->sched); /* a send the caps count, or none */
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

/* ---- import, export, lists ------------------------------------------------------------ */

#define CONTROL_IMPORT_MAX_ERRORS 100 /* per chunk; the rest are counted */
#define CONTROL_PAGE_LEADS 2000
#define CONTROL_PAGE_EVENTS 5000

/* One lead.import chunk, worked on in slices of the loop's time. */
struct control_import {
	struct control_import *next;
	enum csv_column col[CSV_MAX_FIELDS];
	char attr[CSV_MAX_FIELDS][65];
	size_t n;
	int64_t added, updated, unchanged, suppressed, bad;
	cJSON *errors;
	bool skip_existing;
	bool hashed; /* forgotten addresses are on the suppression list (asked per slice) */
	size_t careful_end; /* rows that start before this offset get a savepoint each */
	struct control_tzcache tzc;
	cJSON *args; /* a copy of the request's args: the chunk's text lives here */
	const char *text;
	size_t len, pos;
	int64_t line;
	struct csv_record rec;
	cJSON *result; /* the answer being built (deferred imports own it) */
	struct control_client *client; /* who asked; NULL once it went away */
	cJSON *id;
};

static void control_import_error(struct control_import *im, int64_t line, const char *msg)
{
	im->bad++;
	if (cJSON_GetArraySize(im->errors) >= CONTROL_IMPORT_MAX_ERRORS)
		return;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "line", (double)line);
	cJSON_AddStringToObject(o, "message", msg);
	cJSON_AddItemToArray(im->errors, o);
}

/* The header row: every known column at most once, every other one a usable attribute name. */
static int control_import_header(struct control_import *im, const cJSON *header, char *err,
				 size_t errlen)
{
	const cJSON *h;
	bool email = false;
	im->n = 0;
	cJSON_ArrayForEach(h, header)
	{
		if (im->n >= CSV_MAX_FIELDS)
			return errf(err, errlen, DRIP_EINVALID,
				    "the header has more than %d columns", CSV_MAX_FIELDS);
		size_t i = im->n++;
		im->col[i] = csv_column(h->valuestring, im->attr[i], sizeof(im->attr[i]));
		if (im->col[i] == CSV_COL_ATTR && !im->attr[i][0])
			return errf(err, errlen, DRIP_EINVALID,
				    "header column %zu (\"%.64s\") has no usable name", i + 1,
				    h->valuestring);
		for (size_t k = 0; k < i; k++)
			if (im->col[k] == im->col[i] &&
			    (im->col[i] != CSV_COL_ATTR || strcmp(im->attr[k], im->attr[i]) == 0) &&
			    im->col[i] != CSV_COL_READONLY)
				return errf(err, errlen, DRIP_EINVALID,
					    "header columns %zu and %zu both mean %s", k + 1, i + 1,
					    im->col[i] == CSV_COL_ATTR
						    ? im->attr[i]
						    : csv_column_name(im->col[i]));
		email = email || im->col[i] == CSV_COL_EMAIL;
	}
	if (!email)
		return errf(err, errlen, DRIP_EINVALID, "the header has no email column");
	return 0;
}

static char *control_trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* One data row, inside the chunk's transaction: an added or updated lead, or a reason. */
static int control_import_row(struct dripd *d, struct control_import *im, struct csv_record *rec,
			      int64_t now, bool *wrote, char *err, size_t errlen)
{
	cJSON *args = cJSON_CreateObject(), *attrs = NULL, *tags = NULL;
	const char *email = "", *stage = NULL;
	struct lead lead, base;
	char *tags_json = NULL, *attrs_json = NULL;
	bool have_base = false;
	int rc = 0;

	memset(&lead, 0, sizeof(lead));
	if (rec->nfields != im->n) {
		rc = errf(err, errlen, DRIP_EINVALID, "%zu fields where the header has %zu",
			  rec->nfields, im->n);
		goto out;
	}
	for (size_t i = 0; i < im->n; i++) {
		char *v = control_trim(rec->fields[i]);
		switch (im->col[i]) {
		case CSV_COL_EMAIL:
			email = v;
			break;
		case CSV_COL_STAGE:
			stage = *v ? v : NULL;
			break;
		case CSV_COL_TAGS:
			if (!*v)
				break;
			tags = cJSON_AddArrayToObject(args, "tags");
			for (char *save = NULL, *t = strtok_r(v, ";", &save); t;
			     t = strtok_r(NULL, ";", &save))
				if (*(t = control_trim(t)))
					cJSON_AddItemToArray(tags, cJSON_CreateString(t));
			break;
		case CSV_COL_ATTR:
			if (!*v)
				break;
			if (!attrs)
				attrs = cJSON_AddObjectToObject(args, "attrs");
			cJSON *obj = strcmp(im->attr[i], "attrs") == 0 && *v == '{' ? cJSON_Parse(v)
										    : NULL;
			if (obj && cJSON_IsObject(obj)) {
				/* An export's attrs column: its JSON object merges in. */
				for (cJSON *a = obj->child; a; a = a->next)
					if (cJSON_IsString(a))
						cJSON_AddStringToObject(attrs, a->string,
									a->valuestring);
			} else {
				cJSON_AddStringToObject(attrs, im->attr[i], v);
			}
			cJSON_Delete(obj);
			break;
		case CSV_COL_READONLY:
			break;
		default:
			if (*v)
				cJSON_AddStringToObject(args, csv_column_name(im->col[i]), v);
		}
	}
	if (!util_email_valid(email)) {
		rc = errf(err, errlen, DRIP_EINVALID, "\"%.200s\" is not an email address", email);
		goto out;
	}
	if (stage && content_stage_index(d->content, stage) < 0) {
		rc = errf(err, errlen, DRIP_EINVALID, "unknown stage \"%.64s\"", stage);
		goto out;
	}
	rc = store_lead_by_email(d->store, email, &base);
	if (rc && rc != DRIP_ENOT_FOUND) {
		errf(err, errlen, rc, "cannot read lead %.200s", email);
		goto out;
	}
	have_base = rc == 0;
	if (have_base && im->skip_existing) {
		im->unchanged++;
		rc = 0;
		goto out;
	}
	if (!have_base &&
	    (rc = store_suppressed_quick(d->store, email, im->hashed)) != DRIP_ENOT_FOUND) {
		if (rc) {
			errf(err, errlen, rc, "cannot read the suppression list for %s", email);
			goto out;
		}
		/* An opted-out or forgotten address never comes back through an import. */
		im->suppressed++;
		goto out;
	}
	rc = 0;
	if ((rc = control_lead_profile(args, have_base ? &base : NULL, &lead, &tags_json,
				       &attrs_json, &im->tzc, err, errlen)))
		goto out;
	*wrote = true; /* from here on a failure may leave part of the row written */
	if (have_base) {
		/* An update changes the profile only: never the stage, never the status. */
		lead.id = base.id;
		if ((rc = store_lead_update(d->store, &lead, now)))
			errf(err, errlen, rc, "cannot update %s", email);
		else
			im->updated++;
		goto out;
	}
	lead.email = (char *)email;
	lead.stage = (char *)(stage ? stage : d->content->stages[0]);
	if ((rc = store_lead_insert(d->store, &lead, now)))
		errf(err, errlen, rc, "cannot add %s", email);
	else if ((rc = journey_enter_new(d->store, d->content, &lead, now, err, errlen)) == 0)
		im->added++;
out:
	if (have_base)
		store_lead_clear(&base);
	free(tags_json);
	cJSON_free(attrs_json);
	cJSON_Delete(args);
	return rc;
}

static void control_import_free(struct control_import *im)
{
	csv_record_free(&im->rec);
	cJSON_Delete(im->args);
	cJSON_Delete(im->result);
	cJSON_Delete(im->id);
	free(im);
}

/* Where a slice started, to do it again. */
struct control_import_mark {
	size_t pos;
	int64_t line, added, updated, unchanged, suppressed, bad;
	int nerrors;
};

static void control_import_mark(const struct control_import *im, struct control_import_mark *m)
{
	*m = (struct control_import_mark){ .pos = im->pos,
					   .line = im->line,
					   .added = im->added,
					   .updated = im->updated,
					   .unchanged = im->unchanged,
					   .suppressed = im->suppressed,
					   .bad = im->bad,
					   .nerrors = cJSON_GetArraySize(im->errors) };
}

static void control_import_back(struct control_import *im, const struct control_import_mark *m)
{
	im->pos = m->pos;
	im->line = m->line;
	im->added = m->added;
	im->updated = m->updated;
	im->unchanged = m->unchanged;
	im->suppressed = m->suppressed;
	im->bad = m->bad;
	while (cJSON_GetArraySize(im->errors) > m->nerrors)
		cJSON_DeleteItemFromArray(im->errors, cJSON_GetArraySize(im->errors) - 1);
}

/*
 * Works through the chunk's rows for at most budget_ms in one transaction: a bad row is
 * reported with its line and the good ones commit. Sets *done at the chunk's end. Costs one
 * commit per call.
 * A row is checked in full before it writes anything, so a bad row normally leaves nothing
 * to undo, and rows run without a savepoint each (the savepoint's journal copied every page
 * a row touched: ~10% of an import's work). Should a write fail part-way through a row
 * (which the checks leave to a full disk or a damaged database), the slice is rolled back
 * and done again with a savepoint per row up to that row, so the good rows still commit
 * and the failed one is reported with its line.
 */
static int control_import_slice(struct dripd *d, struct control_import *im, uint64_t budget_ms,
				bool *done, char *err, size_t errlen)
{
	uint64_t start = clock_mono_ms();
	int64_t now = clock_now(&d->clock);
	char why[512];
	size_t used, rows = 0;
	struct control_import_mark mark;
	int rc;
	*done = false;
	control_import_mark(im, &mark);
	if ((rc = store_begin(d->store)))
		return errf(err, errlen, rc, "cannot write to the database");
	if ((rc = store_suppressed_any_hashed(d->store, &im->hashed))) {
		store_rollback(d->store);
		return errf(err, errlen, rc, "cannot read the suppression list");
	}
	while (im->pos < im->len) {
		if (++rows > 1 && clock_mono_ms() - start >= budget_ms)
			break;
		int r = csv_next(im->text + im->pos, im->len - im->pos, true, &used, &im->rec, why,
				 sizeof(why));
		if (r < 0) {
			/* The rest of the chunk cannot be split into records: report it once. */
			control_import_error(im, im->line, why);
			im->pos = im->len;
			break;
		}
		if (r == 0) {
			im->pos = im->len;
			break;
		}
		if (!im->rec.blank) {
			bool careful = im->pos < im->careful_end, wrote = false;
			if (careful && (rc = store_part_begin(d->store)))
				break;
			int row =
				control_import_row(d, im, &im->rec, now, &wrote, why, sizeof(why));
			if (careful && (rc = store_part_end(d->store, row == 0)))
				break;
			if (row && wrote && !careful) {
				store_rollback(d->store);
				im->careful_end = im->pos + used;
				control_import_back(im, &mark);
				return 0; /* again, from the slice's start, in the next turn */
			}
			if (row)
				control_import_error(im, im->line, why);
		}
		im->line += (int64_t)im->rec.lines;
		im->pos += used;
	}
	if (rc) {
		store_rollback(d->store);
		return errf(err, errlen, rc, "cannot write to the database");
	}
	if ((rc = control_finish(d, 0, err, errlen)))
		return rc;
	*done = im->pos >= im->len;
	return 0;
}

static void control_import_totals(const struct control_import *im, cJSON *result)
{
	cJSON_AddNumberToObject(result, "added", (double)im->added);
	cJSON_AddNumberToObject(result, "updated", (double)im->updated);
	cJSON_AddNumberToObject(result, "unchanged", (double)im->unchanged);
	cJSON_AddNumberToObject(result, "suppressed", (double)im->suppressed);
	cJSON_AddNumberToObject(result, "bad", (double)im->bad);
	cJSON_AddNumberToObject(result, "next_line", (double)im->line);
}

static void control_import_cb(uv_idle_t *h);

/*
 * lead.import: one chunk of whole CSV records (dripctl cuts the file at record ends, at most
 * PROTO_MAX_LINE bytes) with the file's header and the line the chunk starts on. On the
 * socket the chunk is worked on in slices of CONTROL_IMPORT_SLICE_MS, each its own
 * transaction, with the loop's other work (sending, other clients) between them; the answer
 * comes when the whole chunk is in.
 */
static int control_lead_import(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			       size_t errlen)
{
	const char *line_s = control_str(args, "line");
	struct control *ctl = d->control;
	struct control_import *im = xcalloc(1, sizeof(*im));
	bool done = false;
	int rc;

	csv_record_init(&im->rec);
	im->args = cJSON_Duplicate(args, 1);
	im->text = control_str(im->args, "csv");
	im->len = strlen(im->text);
	im->line = line_s ? strtoll(line_s, NULL, 10) : 2;
	if (im->line < 1)
		im->line = 1;
	im->skip_existing = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(args, "skip_existing"));
	if ((rc = control_import_header(im, cJSON_GetObjectItemCaseSensitive(args, "header"), err,
					errlen)))
		goto out;
	if (ctl && ctl->current) {
		im->result = cJSON_CreateObject();
		im->errors = cJSON_AddArrayToObject(im->result, "errors");
		im->client = ctl->current;
		im->id = ctl->current_id ? cJSON_Duplicate(ctl->current_id, 0) : cJSON_CreateNull();
		struct control_import **tail = &ctl->imports;
		while (*tail)
			tail = &(*tail)->next;
		*tail = im;
		if (!uv_is_active((uv_handle_t *)&ctl->import_idle))
			uv_idle_start(&ctl->import_idle, control_import_cb);
		return CONTROL_DEFERRED;
	}
	/* No loop to come back to (the unit tests): the whole chunk at once. */
	im->errors = cJSON_AddArrayToObject(result, "errors");
	while (!done && (rc = control_import_slice(d, im, UINT64_MAX, &done, err, errlen)) == 0)
		;
	if (rc == 0)
		control_import_totals(im, result);
out:
	control_import_free(im);
	return rc;
}

/* The "after" cursor of a paged command: the last id the client saw, 0 at the start. */
static int64_t control_after(const cJSON *args)
{
	const char *s = control_str(args, "after");
	return s ? strtoll(s, NULL, 10) : 0;
}

static void control_next(cJSON *result, size_t got, size_t page, int64_t last)
{
	if (got < page) {
		cJSON_AddNullToObject(result, "next");
	} else {
		char next[32];
		snprintf(next, sizeof(next), "%lld", (long long)last);
		cJSON_AddStringToObject(result, "next", next);
	}
}

static int control_check_stage_status(struct dripd *d, const char *stage, const char *status,
				      char *err, size_t errlen)
{
	static const char *const statuses[] = { "active",       "paused",   "replied",
						"handoff",      "customer", "completed",
						"unsubscribed", "bounced",  "complained",
						"forgotten",    NULL };
	bool known = !status;
	for (const char *const *s = statuses; *s && !known; s++)
		known = strcmp(*s, status) == 0;
	if (stage && content_stage_index(d->content, stage) < 0)
		return errf(err, errlen, DRIP_EINVALID, "unknown stage \"%.64s\"", stage);
	if (!known)
		return errf(err, errlen, DRIP_EINVALID, "unknown status \"%.32s\"", status);
	return 0;
}

struct control_page {
	struct buf csv;
	cJSON *list;
	size_t n;
	int64_t last;
	struct store *st; /* lead export: for each lead's consent record */
	const struct content *content; /* for the decayed score; NULL: as stored */
	int64_t now;
};

static double control_page_score(const struct control_page *p, const struct lead *l)
{
	return p->content ? journey_score_shown(p->content, l, p->now) : l->score;
}

static int control_export_lead(void *arg, const struct lead *l)
{
	struct control_page *p = arg;
	char created[32], score[32];
	struct buf tags;
	cJSON *t, *arr = cJSON_Parse(l->tags);
	buf_init(&tags);
	buf_adds(&tags, "");
	cJSON_ArrayForEach(t, arr) if (cJSON_IsString(t))
		buf_printf(&tags, "%s%s", tags.len ? ";" : "", t->valuestring);
	cJSON_Delete(arr);
	clock_format_utc(l->created_at, created, sizeof(created));
	snprintf(score, sizeof(score), "%g", control_page_score(p, l));
	struct store_consent c = { 0 };
	char cat[32] = "", conf[32] = "";
	if (p->st && store_consent_get(p->st, l->id, &c) == 0) {
		clock_format_utc(c.signed_up_at, cat, sizeof(cat));
		clock_format_utc(c.confirmed_at, conf, sizeof(conf));
	}
	const char *row[] = { l->email,
			      l->first_name,
			      l->last_name,
			      l->company,
			      l->title,
			      l->tz,
			      l->stage,
			      l->status,
			      score,
			      tags.data,
			      l->attrs,
			      created,
			      c.form ? c.form : "",
			      c.consent ? c.consent : "",
			      cat,
			      c.address ? c.address : "",
			      conf };
	csv_write_row(&p->csv, row, sizeof(row) / sizeof(row[0]), true);
	store_consent_clear(&c);
	buf_free(&tags);
	p->n++;
	p->last = l->id;
	return 0;
}

/* The CSV export frame that lead export and events export share: the header on the first
 * page, then the page's rows, its count and where the next page starts. */
static void control_csv_begin(struct control_page *p, int64_t after, const char *const *header,
			      size_t ncols)
{
	buf_init(&p->csv);
	buf_adds(&p->csv, "");
	if (after == 0)
		csv_write_row(&p->csv, header, ncols, false);
}

static int control_csv_end(struct control_page *p, int rc, size_t page, const char *what,
			   cJSON *result, char *err, size_t errlen)
{
	if (rc == 0) {
		cJSON_AddStringToObject(result, "csv", p->csv.data);
		cJSON_AddNumberToObject(result, "count", (double)p->n);
		control_next(result, p->n, page, p->last);
	} else {
		errf(err, errlen, rc, "cannot read the %s", what);
	}
	buf_free(&p->csv);
	return rc;
}

static int control_lead_export(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			       size_t errlen)
{
	static const char *const header[] = { "email",        "first_name",
					      "last_name",    "company",
					      "title",        "tz",
					      "stage",        "status",
					      "score",        "tags",
					      "attrs",        "created_at",
					      "consent_form", "consent_version",
					      "consent_at",   "consent_address",
					      "confirmed_at" };
	const char *stage = control_str(args, "stage");
	int64_t after = control_after(args);
	struct control_page p = {
		.n = 0, .st = d->store, .content = d->content, .now = clock_now(&d->clock)
	};
	int rc;
	if ((rc = control_check_stage_status(d, stage, NULL, err, errlen)))
		return rc;
	control_csv_begin(&p, after, header, sizeof(header) / sizeof(header[0]));
	rc = store_leads_page(d->store, after, stage ? stage : "", "", CONTROL_PAGE_LEADS,
			      control_export_lead, &p);
	return control_csv_end(&p, rc, CONTROL_PAGE_LEADS, "leads", result, err, errlen);
}

static int control_export_event(void *arg, const struct store_event *ev, const char *email,
				const char *sequence, const char *step)
{
	struct control_page *p = arg;
	char id[32], at[32];
	snprintf(id, sizeof(id), "%lld", (long long)ev->id);
	clock_format_utc(ev->at, at, sizeof(at));
	const char *row[] = { id, at, email, ev->kind, sequence, step, ev->detail };
	csv_write_row(&p->csv, row, sizeof(row) / sizeof(row[0]), true);
	p->n++;
	p->last = ev->id;
	return 0;
}

/* "2026-11-20", "2026-11-20T10:00:00Z" or a duration back from now ("7d"). */
static int control_parse_since(struct dripd *d, const char *s, int64_t *out)
{
	struct tm tm;
	int64_t secs;
	memset(&tm, 0, sizeof(tm));
	if (clock_parse_duration(s, &secs) == 0) {
		*out = clock_now(&d->clock) - secs;
		return 0;
	}
	const char *end = strptime(s, "%Y-%m-%d", &tm);
	if (end && *end == 'T')
		end = strptime(end + 1, "%H:%M:%S", &tm);
	if (!end || (*end && strcmp(end, "Z") != 0))
		return DRIP_EINVALID;
	*out = (int64_t)timegm(&tm);
	return 0;
}

static int control_events_export(struct dripd *d, const cJSON *args, cJSON *result, char *err,
				 size_t errlen)
{
	static const char *const header[] = { "id",       "at",   "email", "kind",
					      "sequence", "step", "detail" };
	const char *since_s = control_str(args, "since");
	int64_t since = 0, after = control_after(args);
	struct control_page p = { .content = d->content, .now = clock_now(&d->clock) };
	int rc;
	if (since_s && control_parse_since(d, since_s, &since) != 0)
		return errf(err, errlen, DRIP_EINVALID,
			    "--since takes a date (2026-11-20), a UTC time (2026-11-20T10:00:00Z) "
			    "or a duration back from now (7d), not \"%.32s\"",
			    since_s);
	control_csv_begin(&p, after, header, sizeof(header) / sizeof(header[0]));
	rc = store_events_page(d->store, after, since, CONTROL_PAGE_EVENTS, control_export_event,
			       &p);
	return control_csv_end(&p, rc, CONTROL_PAGE_EVENTS, "events", result, err, errlen);
}

static int control_list_lead(void *arg, const struct lead *l)
{
	struct control_page *p = arg;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "email", l->email);
	cJSON_AddStringToObject(o, "first_name", l->first_name);
	cJSON_AddStringToObject(o, "last_name", l->last_name);
	cJSON_AddStringToObject(o, "company", l->company);
	cJSON_AddStringToObject(o, "stage", l->stage);
	cJSON_AddStringToObject(o, "status", l->status);
	cJSON_AddNumberToObject(o, "score", control_page_score(p, l));
	control_add_time(o, "updated_at", l->updated_at);
	cJSON_AddItemToArray(p->list, o);
	p->n++;
	p->last = l->id;
	return 0;
}

static int control_lead_list(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			     size_t errlen)
{
	const char *stage = control_str(args, "stage"), *status = control_str(args, "status");
	struct control_page p = { .list = cJSON_AddArrayToObject(result, "leads"),
				  .content = d->content,
				  .now = clock_now(&d->clock) };
	int rc;
	if ((rc = control_check_stage_status(d, stage, status, err, errlen)))
		return rc;
	if ((rc = store_leads_page(d->store, control_after(args), stage ? stage : "",
				   status ? status : "", CONTROL_PAGE_LEADS, control_list_lead,
				   &p)))
		return errf(err, errlen, rc, "cannot read the leads");
	control_next(result, p.n, CONTROL_PAGE_LEADS, p.last);
	return 0;
}

/* ---- forgetting and the suppression list ------------------------------------------------ */

static int control_lead_forget(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			       size_t errlen)
{
	const char *email = control_str(args, "email");
	struct lead lead;
	int rc = store_lead_by_email(d->store, email, &lead);
	if (rc == DRIP_ENOT_FOUND) {
		char hashed[STORE_HASH_LEN];
		if (store_address_hash(d->store, email, hashed) == 0 &&
		    store_suppression_get(d->store, hashed, NULL, NULL) == 0)
			return errf(err, errlen, DRIP_ENOT_FOUND, "%.200s was forgotten already",
				    email);
		return errf(err, errlen, rc, "no lead %.200s", email);
	}
	if (rc)
		return errf(err, errlen, rc, "cannot read lead %.200s", email);
	if ((rc = store_begin(d->store)) == 0) {
		int64_t now = clock_now(&d->clock);
		rc = store_lead_forget(d->store, &lead, "forgotten", now);
		if (rc == DRIP_EINVALID)
			errf(err, errlen, rc, "no key for forgotten addresses (state_dir/%s)",
			     CONTROL_FORGET_KEY_FILE);
		if (rc == 0)
			rc = store_event_add(d->store, lead.id, 0, "forget", now, "{}");
	}
	if ((rc = control_finish(d, rc, err, errlen)) == 0) {
		/* secure_delete zeroed the erased rows in the pages; the WAL may still hold
		 * copies of the old pages until a checkpoint cuts it. */
		if (store_checkpoint(d->store) != 0)
			log_warn("control: lead %lld forgotten, but the WAL checkpoint did not "
				 "finish; the next one erases its old pages",
				 (long long)lead.id);
		cJSON_AddNumberToObject(result, "id", (double)lead.id);
		cJSON_AddBoolToObject(result, "forgotten", 1);
		log_info("control: lead %lld forgotten", (long long)lead.id);
	}
	store_lead_clear(&lead);
	return rc;
}

/* An address, or a whole domain (example.com): lower-case letters, digits, '.', '-'. */
static bool control_domain_valid(const char *s)
{
	size_t n = strlen(s);
	return n > 2 && n < 254 && strchr(s, '.') && s[0] != '.' && s[n - 1] != '.' &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == n;
}

static int control_suppression_item(void *arg, const struct store_suppression *e)
{
	cJSON *o = cJSON_CreateObject();
	bool hashed = strncmp(e->address, "hmac:", 5) == 0;
	cJSON_AddStringToObject(o, "address", e->address);
	cJSON_AddStringToObject(o, "kind",
				hashed                    ? "forgotten"
				: strchr(e->address, '@') ? "address"
							  : "domain");
	cJSON_AddStringToObject(o, "reason", e->reason);
	cJSON_AddStringToObject(o, "source", e->source);
	control_add_time(o, "at", e->at);
	if (cJSON_IsArray((cJSON *)arg))
		cJSON_AddItemToArray(arg, o);
	else
		cJSON_AddItemToObject(arg, "entry", o);
	return 0;
}

static int control_suppress_add(struct dripd *d, const cJSON *args, cJSON *result, char *err,
				size_t errlen)
{
	const char *addr = control_str(args, "address"), *reason = control_str(args, "reason");
	int rc;
	if (!util_email_valid(addr) && !control_domain_valid(addr))
		return errf(err, errlen, DRIP_EINVALID,
			    "\"%.200s\" is neither an email address nor a domain", addr);
	if (reason && (rc = control_check_field("reason", reason, err, errlen)))
		return rc;
	if ((rc = store_suppress(d->store, addr, reason ? reason : "manual", "dripctl",
				 clock_now(&d->clock))))
		return errf(err, errlen, rc, "cannot suppress %.200s", addr);
	log_info("control: %s suppressed", addr);
	store_suppression_get(d->store, addr, control_suppression_item, result);
	return 0;
}

struct control_suppression_copy {
	char reason[64];
	char source[64];
	int64_t at;
};

static int control_suppression_copy(void *arg, const struct store_suppression *e)
{
	struct control_suppression_copy *c = arg;
	snprintf(c->reason, sizeof(c->reason), "%s", e->reason);
	snprintf(c->source, sizeof(c->source), "%s", e->source);
	c->at = e->at;
	return 0;
}

static int control_suppress_remove(struct dripd *d, const cJSON *args, cJSON *result, char *err,
				   size_t errlen)
{
	const char *addr = control_str(args, "address");
	bool force = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(args, "force"));
	struct control_suppression_copy e;
	char when[32];
	int rc = store_suppression_get(d->store, addr, control_suppression_copy, &e);
	if (rc == DRIP_ENOT_FOUND)
		return errf(err, errlen, rc, "%.200s is not on the suppression list", addr);
	if (rc)
		return errf(err, errlen, rc, "cannot read the suppression list");
	if (strcmp(e.source, "forget") == 0)
		return errf(err, errlen, DRIP_EINVALID,
			    "a forgotten address stays suppressed: the person asked to be erased");
	/* The person's own opt-out (an unsubscribe, a complaint) is theirs to undo. */
	bool own = strcmp(e.reason, "unsubscribe") == 0 || strcmp(e.reason, "complaint") == 0;
	clock_format_utc(e.at, when, sizeof(when));
	if (own && !force)
		return errf(err, errlen, DRIP_EDENIED,
			    "%.200s opted out themself (%s on %s): removing that needs --force",
			    addr, e.reason, when);
	struct lead lead;
	bool has_lead = store_lead_by_email(d->store, addr, &lead) == 0;
	if ((rc = store_begin(d->store)) == 0) {
		rc = store_unsuppress(d->store, addr);
		if (rc == 0 && has_lead) {
			cJSON *detail = cJSON_CreateObject();
			cJSON_AddStringToObject(detail, "reason", e.reason);
			cJSON_AddStringToObject(detail, "source", "dripctl");
			cJSON_AddBoolToObject(detail, "forced", force);
			char *json = cJSON_PrintUnformatted(detail);
			rc = store_event_add(d->store, lead.id, 0, "unsuppress",
					     clock_now(&d->clock), json);
			cJSON_free(json);
			cJSON_Delete(detail);
		}
	}
	if ((rc = control_finish(d, rc, err, errlen)) == 0) {
		if (own)
			log_warn("control: %s taken off the suppression list with --force (it was "
				 "the person's own %s of %s)",
				 addr, e.reason, when);
		else
			log_info("control: %s taken off the suppression list", addr);
		cJSON_AddStringToObject(result, "address", addr);
		cJSON_AddStringToObject(result, "was", e.reason);
		cJSON_AddBoolToObject(result, "forced", own);
	}
	if (has_lead)
		store_lead_clear(&lead);
	return rc;
}

static int control_suppress_list(struct dripd *d, const cJSON *args, cJSON *result, char *err,
				 size_t errlen)
{
	(void)args;
	int rc = store_suppressions(d->store, control_suppression_item,
				    cJSON_AddArrayToObject(result, "entries"));
	return rc ? errf(err, errlen, rc, "cannot read the suppression list") : 0;
}

/* ---- queue, reload -------------------------------------------------------------------- */

static int control_queue(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			 size_t errlen)
{
	const char *limit_s = control_str(args, "limit");
	long limit = limit_s ? strtol(limit_s, NULL, 10) : 20;
	struct store_status st;
	int rc;
	if (limit < 1 || limit > 1000)
		return errf(err, errlen, DRIP_EINVALID, "--limit takes 1 to 1000");
	if ((rc = store_status(d->store, &st)))
		return errf(err, errlen, rc, "cannot read the database");
	control_add_time(result, "now", clock_now(&d->clock));
	cJSON_AddBoolToObject(result, "paused", d->sched && sched_paused(d->sched));
	cJSON_AddNumberToObject(result, "pending", (double)st.pending);
	cJSON_AddNumberToObject(result, "in_flight", (double)(st.queued + st.sending));
	struct control_touch_walk w = { .list = cJSON_AddArrayToObject(result, "touches"),
					.store = d->store };
	if ((rc = store_touches_due(d->store, (size_t)limit, control_touch_with_email, &w)))
		return errf(err, errlen, rc, "cannot read the queue");
	return 0;
}

static int control_reload(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			  size_t errlen)
{
	(void)args;
	if (!d->reload)
		return errf(err, errlen, DRIP_EUNSUPPORTED, "reload is not available here");
	int rc = d->reload(d, err, errlen);
	if (rc)
		return rc;
	cJSON_AddStringToObject(result, "content_dir", d->content->dir);
	cJSON_AddNumberToObject(result, "sequences", (double)d->content->nseqs);
	cJSON_AddNumberToObject(result, "templates", (double)d->content->ntpls);
	return 0;
}

/* ---- simulate: the journey on a private copy of the database ---------------------------- */

#define CONTROL_SIM_MAX_LEADS 1000
#define CONTROL_SIM_MAX_ACTIONS 200

struct control_sim {
	struct dripd *d;
	struct store *st; /* the copy */
	double opens, clicks, replies; /* assumed behaviour, 0-1 */
	int64_t until;
};

/* Whether the assumed behaviour has this lead do `kind` with this step: a stable draw. */
static bool control_sim_draw(const char *email, const struct touch *t, const char *kind, double p)
{
	if (p <= 0)
		return false;
	uint64_t h = util_fnv1a(UTIL_FNV1A_SEED, email, strlen(email));
	h = util_fnv1a(h, t->sequence, strlen(t->sequence));
	h = util_fnv1a(h, t->step, strlen(t->step));
	h = util_fnv1a(h, kind, strlen(kind));
	return (double)(h % 10000) < p * 10000;
}

static void control_sim_line(cJSON *timeline, int64_t at, const char *action, const struct touch *t,
			     const char *detail)
{
	cJSON *o = cJSON_CreateObject();
	control_add_time(o, "at", at);
	cJSON_AddStringToObject(o, "action", action);
	if (t) {
		cJSON_AddStringToObject(o, "sequence", t->sequence);
		cJSON_AddStringToObject(o, "step", t->step);
	}
	if (detail && *detail)
		cJSON_AddStringToObject(o, "detail", detail);
	cJSON_AddItemToArray(timeline, o);
}

/*
 * One lead's journey on the copy: its next touch at the scheduler's own send time
 * (sched_send_time), the step's conditions (sched_conditions), the send recorded as the
 * scheduler would, the journey moved on by journey_step_done, and the assumed opens, clicks
 * and replies fed through journey_on_event, until the horizon or the journey's end.
 */
static void control_sim_lead(struct control_sim *sim, const char *email, int64_t now, cJSON *out)
{
	struct dripd *d = sim->d;
	struct lead lead;
	char why[256], err[256];
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "email", email);
	cJSON_AddItemToArray(out, o);
	if (store_lead_by_email(sim->st, email, &lead) != 0) {
		cJSON_AddStringToObject(o, "error", "no such lead");
		return;
	}
	cJSON_AddStringToObject(o, "stage", lead.stage);
	cJSON *timeline = cJSON_AddArrayToObject(o, "timeline");
	for (int n = 0; n < CONTROL_SIM_MAX_ACTIONS; n++) {
		struct touch t;
		bool send = true;
		if (strcmp(lead.status, "active") != 0) {
			snprintf(why, sizeof(why), "the lead is %s: no more mail", lead.status);
			control_sim_line(timeline, now, "stop", NULL, why);
			break;
		}
		if (store_touch_next_for_lead(sim->st, lead.id, &t) != 0) {
			control_sim_line(timeline, now, "end", NULL, "nothing more is scheduled");
			break;
		}
		int64_t at = sched_send_time(d->cfg, d->content, sim->st, &lead, &t,
					     t.due_at > now ? t.due_at : now);
		if (at > sim->until) {
			control_sim_line(timeline, at, "later", &t, "after the horizon");
			store_touch_clear(&t);
			break;
		}
		now = at;
		if (store_suppressed(sim->st, lead.email, why, sizeof(why)) == 0) {
			control_sim_line(timeline, at, "stop", &t, "suppressed");
			store_touch_clear(&t);
			break;
		}
		if (sched_conditions(sim->st, d->content, &lead, &t, &send, why, sizeof(why)) != 0)
			send = false;
		int rc;
		if (!send) {
			control_sim_line(timeline, at, "skip", &t, why);
			rc = store_touch_finish(sim->st, t.id, "skipped", why, at);
		} else {
			char mid[64];
			snprintf(mid, sizeof(mid), "<sim.%lld@dripd>", (long long)t.id);
			control_sim_line(timeline, at, "send", &t, NULL);
			rc = store_touch_queue(sim->st, t.id, at);
			if (rc == 0)
				rc = store_touch_sending(sim->st, t.id, mid, at);
			if (rc == 0)
				rc = store_touch_sent(sim->st, t.id, at);
			if (rc == 0)
				rc = store_event_add(sim->st, lead.id, t.id, "sent", at, "{}");
		}
		if (rc == 0)
			rc = journey_step_done(sim->st, d->content, &t, at);
		/* The assumed behaviour, an hour or two after the message. */
		static const struct {
			const char *kind;
			int64_t after;
			size_t off;
		} acts[] = { { "open", 3600, offsetof(struct control_sim, opens) },
			     { "click", 3700, offsetof(struct control_sim, clicks) },
			     { "reply", 7200, offsetof(struct control_sim, replies) } };
		for (size_t k = 0; send && rc == 0 && k < 3; k++) {
			double p = *(const double *)((const char *)sim + acts[k].off);
			if (!control_sim_draw(lead.email, &t, acts[k].kind, p) ||
			    at + acts[k].after > sim->until)
				continue;
			control_sim_line(timeline, at + acts[k].after, acts[k].kind, &t,
					 "assumed behaviour");
			rc = journey_on_event(sim->st, d->content, &lead, t.id, acts[k].kind,
					      "{\"simulated\":true}", at + acts[k].after, err,
					      sizeof(err));
		}
		int64_t id = lead.id;
		store_touch_clear(&t);
		store_lead_clear(&lead);
		if (rc || store_lead_by_id(sim->st, id, &lead) != 0) {
			control_sim_line(timeline, now, "error", NULL, rc ? err : "lead vanished");
			return;
		}
	}
	cJSON_AddStringToObject(o, "stage_after", lead.stage);
	cJSON_AddStringToObject(o, "status_after", lead.status);
	store_lead_clear(&lead);
}

static int control_sim_rate(const cJSON *args, const char *key, double *out, char *err,
			    size_t errlen)
{
	const char *v = control_str(args, key);
	char *end = NULL;
	*out = 0;
	if (!v)
		return 0;
	*out = strtod(v, &end);
	if (end == v || *end || *out < 0 || *out > 1)
		return errf(err, errlen, DRIP_EINVALID,
			    "--%s takes a share from 0 to 1, not \"%.32s\"", key, v);
	return 0;
}

static int control_simulate(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			    size_t errlen)
{
	const char *days_s = control_str(args, "days"), *one = control_str(args, "email");
	const cJSON *emails = cJSON_GetObjectItemCaseSensitive(args, "emails"), *e;
	struct control_sim sim = { .d = d };
	long days = days_s ? strtol(days_s, NULL, 10) : 30;
	int64_t now = clock_now(&d->clock);
	int rc;
	if (days < 1 || days > 365)
		return errf(err, errlen, DRIP_EINVALID, "--days takes 1 to 365");
	if ((rc = control_sim_rate(args, "opens", &sim.opens, err, errlen)) ||
	    (rc = control_sim_rate(args, "clicks", &sim.clicks, err, errlen)) ||
	    (rc = control_sim_rate(args, "replies", &sim.replies, err, errlen)))
		return rc;
	if (control_str(args, "leads"))
		return errf(err, errlen, DRIP_EINVALID,
			    "--leads FILE.csv is read by dripctl, which sends its addresses");
	if (!one && cJSON_GetArraySize(emails) == 0)
		return errf(err, errlen, DRIP_EINVALID,
			    "simulate needs --lead EMAIL or --leads FILE.csv");
	if (cJSON_GetArraySize(emails) > CONTROL_SIM_MAX_LEADS)
		return errf(err, errlen, DRIP_ETOO_BIG, "simulate takes at most %d leads at a time",
			    CONTROL_SIM_MAX_LEADS);
	if (!(sim.st = store_copy(d->store, err, errlen)))
		return DRIP_ESTORE;
	sim.until = now + days * 86400;
	control_add_time(result, "from", now);
	control_add_time(result, "until", sim.until);
	cJSON_AddNumberToObject(result, "days", (double)days);
	cJSON *leads = cJSON_AddArrayToObject(result, "leads");
	if (one)
		control_sim_lead(&sim, one, now, leads);
	cJSON_ArrayForEach(e, emails) control_sim_lead(&sim, e->valuestring, now, leads);
	store_close(sim.st);
	return 0;
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

static int control_watch(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			 size_t errlen);
static int control_backup(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			  size_t errlen);
static int control_send_test(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			     size_t errlen);

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
	{ "stats", "stats",
	  "funnel by stage; per step and variant: sent, opened, clicked, replied, bounced, "
	  "unsubscribed, with rates",
	  0, { { 0 } }, control_stats },
	{ "clock.advance", "clock advance", "move the test clock forward (test clock only)",
	  CONTROL_CHANGES_STATE | CONTROL_TEST_CLOCK,
	  { { NULL, "duration", CONTROL_ARG_STRING, true, "DURATION" } }, control_clock_advance },
	{ "lead.import", "lead import",
	  "add leads from a CSV file with a header row; a known address is updated (profile "
	  "only), a suppressed one never comes back",
	  CONTROL_CHANGES_STATE | CONTROL_CLIENT_FILE,
	  { { NULL, "file", CONTROL_ARG_STRING, true, "FILE.csv" },
	    { "--update", "update", CONTROL_ARG_FLAG, false, "(the default)" },
	    { "--skip-existing", "skip_existing", CONTROL_ARG_FLAG, false, "" },
	    { NULL, "header", CONTROL_ARG_LIST, true, NULL },
	    { NULL, "csv", CONTROL_ARG_STRING, true, NULL },
	    { NULL, "line", CONTROL_ARG_STRING, false, NULL } }, control_lead_import },
	{ "lead.export", "lead export", "every lead (or one stage's) as CSV on standard output",
	  CONTROL_PAGED,
	  { { "--stage", "stage", CONTROL_ARG_STRING, false, "STAGE" },
	    { NULL, "after", CONTROL_ARG_STRING, false, NULL } }, control_lead_export },
	{ "events.export", "events export", "events (since a date or duration ago) as CSV",
	  CONTROL_PAGED,
	  { { "--since", "since", CONTROL_ARG_STRING, false, "DATE|DURATION" },
	    { NULL, "after", CONTROL_ARG_STRING, false, NULL } }, control_events_export },
	{ "lead.list", "lead list", "leads with their stage, status and score", CONTROL_PAGED,
	  { { "--stage", "stage", CONTROL_ARG_STRING, false, "STAGE" },
	    { "--status", "status", CONTROL_ARG_STRING, false, "STATUS" },
	    { NULL, "after", CONTROL_ARG_STRING, false, NULL } }, control_lead_list },
	{ "lead.forget", "lead forget",
	  "erase a lead's personal data; only a keyed hash stays, so it is never mailed again",
	  CONTROL_CHANGES_STATE, { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" } },
	  control_lead_forget },
	{ "suppress.add", "suppress add", "never mail an address, or a whole domain, again",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "address", CONTROL_ARG_STRING, true, "ADDRESS|DOMAIN" },
	    { "--reason", "reason", CONTROL_ARG_STRING, false, "TEXT" } }, control_suppress_add },
	{ "suppress.remove", "suppress remove",
	  "take an entry off the suppression list (a person's own opt-out needs --force)",
	  CONTROL_CHANGES_STATE,
	  { { NULL, "address", CONTROL_ARG_STRING, true, "ADDRESS|DOMAIN" },
	    { "--force", "force", CONTROL_ARG_FLAG, false, "" } }, control_suppress_remove },
	{ "suppress.list", "suppress list", "the suppression list", 0, { { 0 } },
	  control_suppress_list },
	{ "queue", "queue", "what is due next, and when", 0,
	  { { "--limit", "limit", CONTROL_ARG_STRING, false, "N" } }, control_queue },
	{ "watch", "watch", "live events until interrupted", CONTROL_STREAM, { { 0 } },
	  control_watch },
	{ "reload", "reload", "reload config and content (as SIGHUP); bad ones are refused",
	  CONTROL_CHANGES_STATE, { { 0 } }, control_reload },
	{ "backup", "backup", "a consistent copy of the database through SQLite's backup API",
	  0, { { NULL, "file", CONTROL_ARG_STRING, true, "FILE" } }, control_backup },
	{ "send-test", "send-test",
	  "a real send of what the lead would get, to another address; marked as a test, never "
	  "counted", 0,
	  { { NULL, "email", CONTROL_ARG_STRING, true, "EMAIL" },
	    { "--to", "to", CONTROL_ARG_STRING, true, "ADDRESS" },
	    { "--step", "step", CONTROL_ARG_STRING, false, "SEQUENCE/STEP" } }, control_send_test },
	{ "simulate", "simulate",
	  "what the journey would send over the next days, on a private copy: nothing is sent "
	  "or changed", 0,
	  { { "--days", "days", CONTROL_ARG_STRING, false, "N" },
	    { "--lead", "email", CONTROL_ARG_STRING, false, "EMAIL" },
	    { "--leads", "leads", CONTROL_ARG_STRING, false, "FILE.csv" },
	    { "--opens", "opens", CONTROL_ARG_STRING, false, "SHARE" },
	    { "--clicks", "clicks", CONTROL_ARG_STRING, false, "SHARE" },
	    { "--replies", "replies", CONTROL_ARG_STRING, false, "SHARE" },
	    { NULL, "emails", CONTROL_ARG_LIST, false, NULL } }, control_simulate },

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
		if (!a->meta)
			continue; /* filled in by dripctl, not typed */
		if (a->kind == CONTROL_ARG_FLAG)
			buf_printf(out, " [%s]", a->flag);
		else if (!a->flag)
			buf_printf(out, a->required ? " %s%s" : " [%s%s]", a->meta,
				   a->kind == CONTROL_ARG_LIST ? "…" : "");
		else
			buf_printf(out, a->required ? " %s %s%s" : " [%s %s]%s", a->flag, a->meta,
				   a->kind == CONTROL_ARG_STRING ? "" : "…");
	}
}

/* ---- requests ------------------------------------------------------------------------- */

/* One answer line: ok with `result` (consumed), or the error rc with its message. */
static char *control_answer(const cJSON *id, int rc, cJSON *result, const char *err)
{
	cJSON *answer = cJSON_CreateObject();
	cJSON_AddNumberToObject(answer, "v", PROTO_VERSION);
	if (cJSON_IsNumber(id) || cJSON_IsString(id))
		cJSON_AddItemToObject(answer, "id", cJSON_Duplicate(id, 0));
	if (rc == 0) {
		cJSON_AddBoolToObject(answer, "ok", 1);
		cJSON_AddItemToObject(answer, "result", result);
	} else {
		cJSON_Delete(result);
		cJSON_AddBoolToObject(answer, "ok", 0);
		cJSON *e = cJSON_AddObjectToObject(answer, "error");
		cJSON_AddStringToObject(e, "code", drip_errname(rc));
		cJSON_AddStringToObject(e, "message", err && *err ? err : drip_strerror(rc));
	}
	char *out = proto_line(answer);
	cJSON_Delete(answer);
	return out;
}

char *control_handle_line(struct dripd *d, const char *line)
{
	char err[1024] = "";
	cJSON *req = cJSON_Parse(line);
	cJSON *result = cJSON_CreateObject();
	const cJSON *id = req ? cJSON_GetObjectItemCaseSensitive(req, "id") : NULL;
	const cJSON *v = req ? cJSON_GetObjectItemCaseSensitive(req, "v") : NULL;
	const cJSON *cmd = req ? cJSON_GetObjectItemCaseSensitive(req, "cmd") : NULL;
	const cJSON *args = req ? cJSON_GetObjectItemCaseSensitive(req, "args") : NULL;
	cJSON *empty = NULL;
	const struct control_cmd *c = NULL;
	char *out = NULL;
	int rc = 0;

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
		if (rc == 0) {
			if (d->control)
				d->control->current_id = id;
			rc = c->handler(d, args, result, err, sizeof(err));
			if (d->control)
				d->control->current_id = NULL;
		}
	}
	if (rc == CONTROL_DEFERRED)
		cJSON_Delete(result); /* the handler answers later, with the request's id */
	else
		out = control_answer(id, rc, result, err);
	cJSON_Delete(req);
	cJSON_Delete(empty);
	return out;
}

/* ---- the socket ----------------------------------------------------------------------- */

static void control_release(struct control *ctl)
{
	if (--ctl->open_handles == 0) {
		free(ctl->events);
		free(ctl->path);
		free(ctl);
	}
}

static void control_handle_closed_cb(uv_handle_t *h)
{
	control_release(h->data);
}

static void control_client_closed_cb(uv_handle_t *h)
{
	struct control_client *cl = h->data;
	struct control *ctl = cl->ctl;
	proto_reader_free(&cl->reader);
	free(cl);
	control_release(ctl);
}

static void control_client_close(struct control_client *cl)
{
	if (cl->closing)
		return;
	cl->closing = true;
	if (cl->watching)
		cl->ctl->watchers--;
	for (struct control_backup *b = cl->ctl->backups; b; b = b->next)
		if (b->client == cl)
			b->client = NULL; /* the backup finishes; nobody hears the answer */
	for (struct control_import *im = cl->ctl->imports; im; im = im->next)
		if (im->client == cl)
			im->client = NULL; /* its rows still go in, as if answered */
	for (struct control_test_send *ts = cl->ctl->tests; ts; ts = ts->next)
		if (ts->client == cl)
			ts->client = NULL;
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
	if (cl->closing ||
	    uv_write(&w->req, (uv_stream_t *)&cl->pipe, &b, 1, control_write_cb) != 0) {
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
		cl->ctl->current = cl;
		char *answer = control_handle_line(cl->ctl->d, line);
		cl->ctl->current = NULL;
		if (answer)
			control_send(cl, answer);
	}
}

/* ---- watch: the event feed to every watching client ------------------------------------ */

/* Notes an event for the watchers; sent after the current callback (and its commit). */
static void control_event_cb(void *arg, const struct store_event *ev)
{
	struct control *ctl = arg;
	if (ctl->watchers == 0)
		return;
	if (ctl->nevents >= CONTROL_WATCH_BACKLOG) {
		ctl->lost++;
		return;
	}
	if (ctl->nevents == ctl->cap) {
		ctl->cap = ctl->cap ? ctl->cap * 2 : 64;
		ctl->events = xrealloc(ctl->events, ctl->cap * sizeof(*ctl->events));
	}
	ctl->events[ctl->nevents++] = ev->id;
	if (!uv_is_active((uv_handle_t *)&ctl->flush))
		uv_timer_start(&ctl->flush, control_flush_cb, 0, 0);
}

struct control_event_line {
	struct control *ctl;
	char *line;
};

static int control_event_line_cb(void *arg, const struct store_event *ev, const char *email,
				 const char *sequence, const char *step)
{
	struct control_event_line *el = arg;
	cJSON *msg = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(msg, "event");
	cJSON_AddNumberToObject(msg, "v", PROTO_VERSION);
	cJSON_AddNumberToObject(o, "id", (double)ev->id);
	cJSON_AddStringToObject(o, "kind", ev->kind);
	control_add_time(o, "at", ev->at);
	cJSON_AddStringToObject(o, "email", email);
	if (ev->lead_id)
		cJSON_AddNumberToObject(o, "lead", (double)ev->lead_id);
	if (ev->touch_id)
		cJSON_AddNumberToObject(o, "touch", (double)ev->touch_id);
	if (*sequence) {
		cJSON_AddStringToObject(o, "sequence", sequence);
		cJSON_AddStringToObject(o, "step", step);
	}
	cJSON *detail = cJSON_Parse(ev->detail);
	cJSON_AddItemToObject(o, "detail", detail ? detail : cJSON_CreateObject());
	el->line = proto_line(msg);
	cJSON_Delete(msg);
	return 1;
}

static void control_flush_cb(uv_timer_t *t)
{
	struct control *ctl = t->data;
	for (size_t i = 0; i < ctl->nevents && ctl->watchers > 0; i++) {
		struct control_event_line el = { .ctl = ctl };
		/* Read back by id: an event whose transaction rolled back is not there. */
		if (store_events_page(ctl->d->store, ctl->events[i] - 1, 0, 1,
				      control_event_line_cb, &el) != 0 ||
		    !el.line)
			continue;
		for (struct control_client *cl = ctl->clients, *next; cl; cl = next) {
			next = cl->next;
			if (!cl->watching)
				continue;
			if (uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) >
			    CONTROL_WATCH_MAX) {
				/* A watcher that does not read is dropped, never waited for. */
				log_warn("control: dropping a watch client that stopped reading");
				control_client_close(cl);
				continue;
			}
			control_send(cl, xstrdup(el.line));
		}
		free(el.line);
	}
	if (ctl->lost)
		log_warn("control: %zu event(s) not shown to watchers (backlog full)", ctl->lost);
	ctl->lost = 0;
	ctl->nevents = 0;
}

static int control_watch(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			 size_t errlen)
{
	(void)args;
	struct control *ctl = d->control;
	if (!ctl || !ctl->current)
		return errf(err, errlen, DRIP_EUNSUPPORTED,
			    "watch streams over the control socket");
	if (!ctl->current->watching) {
		ctl->current->watching = true;
		ctl->watchers++;
	}
	cJSON_AddBoolToObject(result, "watching", 1);
	return 0;
}

/* ---- import: one slice of the oldest chunk per loop turn --------------------------------- */

/*
 * An idle handle, not a 0 ms timer: libuv runs a timer restarted at 0 ms from its own
 * callback again in the same turn (its due time is the loop's unchanged "now"), so a whole
 * chunk went in one turn and `status` waited for it; an idle callback runs once per turn,
 * with a poll for the sockets between turns.
 */
static void control_import_cb(uv_idle_t *h)
{
	struct control *ctl = h->data;
	struct control_import *im = ctl->imports;
	char err[1024] = "";
	bool done = false;
	if (!im) {
		uv_idle_stop(h);
		return;
	}
	int rc = control_import_slice(ctl->d, im, CONTROL_IMPORT_SLICE_MS, &done, err, sizeof(err));
	if (rc == 0 && !done)
		return;
	ctl->imports = im->next;
	if (rc == 0)
		control_import_totals(im, im->result);
	if (im->client) {
		control_send(im->client, control_answer(im->id, rc, im->result, err));
		im->result = NULL;
	}
	control_import_free(im);
	if (!ctl->imports)
		uv_idle_stop(h);
}

/* ---- send-test: one real message on a sender thread, outside the books ------------------ */

static int control_send_test(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			     size_t errlen)
{
	const char *to = control_str(args, "to"), *step_arg = control_str(args, "step");
	struct control *ctl = d->control;
	struct lead lead;
	struct touch t;
	struct sched_mail mail;
	char seq[128];
	const char *step = NULL;
	int rc;
	(void)result;

	memset(&t, 0, sizeof(t));
	if (!ctl || !ctl->current || !d->mailer)
		return errf(err, errlen, DRIP_EUNSUPPORTED, "send-test needs the running daemon");
	if (!util_email_valid(to))
		return errf(err, errlen, DRIP_EINVALID, "--to \"%.200s\" is not an email address",
			    to);
	if (step_arg && (rc = control_step_arg(d, step_arg, seq, sizeof(seq), &step, err, errlen)))
		return rc;
	if ((rc = control_lead(d, args, &lead, err, errlen)))
		return rc;
	if (step) {
		size_t index = 0;
		content_step(content_sequence(d->content, seq), step, &index);
		t.sequence = xstrdup(seq);
		t.step = xstrdup(step);
		t.step_index = (int64_t)index;
	} else if ((rc = store_touch_next_for_lead(d->store, lead.id, &t))) {
		errf(err, errlen, rc, "%s has no step due; name one with --step SEQUENCE/STEP",
		     lead.email);
		goto out;
	}
	if ((rc = sched_compose(d->store, d->content, d->cfg, d->keys, &lead, &t,
				clock_now(&d->clock), &mail, err, errlen)))
		goto out;
	if (mailer_idle(d->mailer) == 0) {
		rc = errf(err, errlen, DRIP_EBUSY,
			  "every sender thread is busy: try again in a moment");
	} else {
		/* No touch, no event: the message is marked and goes only to --to. */
		struct mailer_job *job = xcalloc(1, sizeof(*job));
		struct buf data;
		buf_init(&data);
		buf_printf(&data, "X-Dripd-Test: send-test of %s/%s, not counted\r\n", t.sequence,
			   t.step);
		buf_add(&data, mail.data.data, mail.data.len);
		job->touch_id = --ctl->test_seq;
		job->envelope_from = xstrdup(mail.envelope_from);
		job->rcpt = xstrdup(to);
		job->len = data.len;
		job->data = buf_steal(&data);
		struct control_test_send *ts = xcalloc(1, sizeof(*ts));
		ts->key = job->touch_id;
		ts->client = ctl->current;
		ts->id = ctl->current_id ? cJSON_Duplicate(ctl->current_id, 0) : cJSON_CreateNull();
		ts->to = xstrdup(to);
		ts->next = ctl->tests;
		ctl->tests = ts;
		mailer_submit(d->mailer, job);
		log_info("control: send-test of %s/%s for lead %lld to %s", t.sequence, t.step,
			 (long long)lead.id, to);
		rc = CONTROL_DEFERRED;
	}
	sched_mail_clear(&mail);
out:
	store_touch_clear(&t);
	store_lead_clear(&lead);
	return rc;
}

void control_on_test_result(struct control *ctl, const struct mailer_result *r)
{
	for (struct control_test_send **p = &ctl->tests; *p; p = &(*p)->next) {
		struct control_test_send *ts = *p;
		if (ts->key != r->touch_id)
			continue;
		*p = ts->next;
		cJSON *result = cJSON_CreateObject();
		char err[512] = "";
		int rc = 0;
		if (r->outcome == MAILER_OK) {
			cJSON_AddStringToObject(result, "to", ts->to);
			cJSON_AddNumberToObject(result, "code", r->code);
			cJSON_AddStringToObject(result, "detail", r->detail);
		} else {
			rc = errf(err, sizeof(err),
				  r->outcome == MAILER_TEMPFAIL ? DRIP_ETEMPFAIL : DRIP_EPERMFAIL,
				  "the test message to %s was not accepted: %d %s", ts->to, r->code,
				  r->detail);
		}
		if (ts->client)
			control_send(ts->client, control_answer(ts->id, rc, result, err));
		else
			cJSON_Delete(result);
		cJSON_Delete(ts->id);
		free(ts->to);
		free(ts);
		return;
	}
}

/* ---- backup: SQLite's online backup, a few pages per loop turn ------------------------- */

static void control_backup_cb(uv_timer_t *t)
{
	struct control *ctl = t->data;
	for (struct control_backup **pb = &ctl->backups; *pb;) {
		struct control_backup *b = *pb;
		char err[512] = "";
		int remaining, total;
		int rc = store_backup_step(b->bk, CONTROL_BACKUP_PAGES, err, sizeof(err));
		if (rc == 0) {
			pb = &b->next;
			continue;
		}
		store_backup_progress(b->bk, &remaining, &total);
		int end = store_backup_end(b->bk, rc == 1);
		if (rc == 1 && end)
			rc = errf(err, sizeof(err), end, "cannot finish the backup into %s",
				  b->path);
		cJSON *result = cJSON_CreateObject();
		if (rc == 1) {
			rc = 0;
			cJSON_AddStringToObject(result, "file", b->path);
			cJSON_AddNumberToObject(result, "pages", total);
			cJSON_AddNumberToObject(result, "ms",
						(double)(clock_mono_ms() - b->started_ms));
			log_info("control: backup of %d pages into %s", total, b->path);
		} else {
			log_err("control: %s", err);
		}
		if (b->client)
			control_send(b->client, control_answer(b->id, rc, result, err));
		else
			cJSON_Delete(result);
		*pb = b->next;
		cJSON_Delete(b->id);
		free(b->path);
		free(b);
	}
	if (!ctl->backups)
		uv_timer_stop(t);
}

static int control_backup(struct dripd *d, const cJSON *args, cJSON *result, char *err,
			  size_t errlen)
{
	const char *path = control_str(args, "file");
	struct control *ctl = d->control;
	struct store_backup *bk;
	int rc;
	if (path[0] != '/')
		return errf(err, errlen, DRIP_EINVALID, "backup needs an absolute path, not %.200s",
			    path);
	if (access(path, F_OK) == 0)
		return errf(err, errlen, DRIP_EEXISTS, "%.200s exists: refusing to overwrite it",
			    path);
	if (!(bk = store_backup_begin(d->store, path, err, errlen)))
		return DRIP_EIO;
	if (!ctl || !ctl->current) {
		/* No loop to come back to (the unit tests): all pages at once. */
		while ((rc = store_backup_step(bk, -1, err, errlen)) == 0)
			;
		int end = store_backup_end(bk, rc == 1);
		if (rc == 1 && end)
			return errf(err, errlen, end, "cannot finish the backup into %s", path);
		if (rc == 1)
			cJSON_AddStringToObject(result, "file", path);
		return rc == 1 ? 0 : rc;
	}
	struct control_backup *b = xcalloc(1, sizeof(*b));
	b->bk = bk;
	b->client = ctl->current;
	b->id = ctl->current_id ? cJSON_Duplicate(ctl->current_id, 0) : cJSON_CreateNull();
	b->path = xstrdup(path);
	b->started_ms = clock_mono_ms();
	b->next = ctl->backups;
	ctl->backups = b;
	if (!uv_is_active((uv_handle_t *)&ctl->backup_timer))
		uv_timer_start(&ctl->backup_timer, control_backup_cb, 0, CONTROL_BACKUP_TICK_MS);
	return CONTROL_DEFERRED;
}

/* ---- connections ---------------------------------------------------------------------- */

/* Root, dripd's own user, control_users, and members of control_groups may connect. */
static bool control_peer_allowed(const struct config *cfg, int fd, char *who, size_t wholen)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return false;
	snprintf(who, wholen, "uid %u gid %u pid %d", (unsigned)cred.uid, (unsigned)cred.gid,
		 (int)cred.pid);
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	for (size_t i = 0; i < cfg->ncontrol_uids; i++)
		if (cfg->control_uids[i] == (unsigned)cred.uid)
			return true;
	/* The socket's group may drive dripd: control_group, or dripd's own group (under
	 * systemd, dripd.socket's SocketGroup=dripd) when dripd does not run as root. */
	gid_t own = geteuid() != 0 ? getegid() : (gid_t)-1, sock = (gid_t)-1;
	struct group *gr = *cfg->control_group ? getgrnam(cfg->control_group) : NULL;
	if (gr)
		sock = gr->gr_gid;
	if (cfg->ncontrol_gids == 0 && own == (gid_t)-1 && sock == (gid_t)-1)
		return false;
	gid_t groups[256];
	socklen_t glen = sizeof(groups);
	size_t ngroups = 0;
	groups[ngroups++] = cred.gid;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups + 1, &glen) == 0)
		ngroups += glen / sizeof(gid_t);
	for (size_t g = 0; g < ngroups && g < 256; g++) {
		if (groups[g] == own || groups[g] == sock)
			return true;
		for (size_t i = 0; i < cfg->ncontrol_gids; i++)
			if (cfg->control_gids[i] == (unsigned)groups[g])
				return true;
	}
	return false;
}

static void control_connection_cb(uv_stream_t *server, int status)
{
	struct control *ctl = server->data;
	uv_os_fd_t fd;
	char who[96] = "";
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
	if (uv_fileno((uv_handle_t *)&cl->pipe, &fd) != 0 ||
	    !control_peer_allowed(ctl->d->cfg, fd, who, sizeof(who))) {
		char *e = xasprintf("{\"v\":%d,\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":"
				    "\"%s is not allowed to drive dripd (control_users, "
				    "control_groups)\"}}\n",
				    PROTO_VERSION, drip_errname(DRIP_EDENIED), who);
		uv_buf_t b = uv_buf_init(e, (unsigned)strlen(e));
		uv_try_write((uv_stream_t *)&cl->pipe, &b, 1);
		free(e);
		log_warn("control: refused a connection from %s", who);
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

/*
 * The key of forgotten addresses' hashes: state_dir/forget.secret, created with 32 random
 * bytes (mode 0600) on first start, like the tracking secret. Losing it would let a
 * forgotten address be imported again, so it is never rotated.
 */
static int control_forget_key(struct dripd *d, char *err, size_t errlen)
{
	char *path = xasprintf("%s/%s", d->cfg->state_dir, CONTROL_FORGET_KEY_FILE);
	char hex[65];
	int rc = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		util_random_hex(hex, 32);
		hex[64] = '\n';
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, hex, 65) != 65 || fsync(fd) != 0)
			rc = errf(err, errlen, DRIP_EIO, "control: cannot create %s: %s", path,
				  strerror(errno));
		else
			log_info("control: created the key of forgotten addresses in %s", path);
		if (fd >= 0)
			close(fd);
		fd = rc ? -1 : open(path, O_RDONLY | O_CLOEXEC);
	}
	if (rc == 0) {
		ssize_t n = fd >= 0 ? read(fd, hex, 64) : -1;
		if (n < 32)
			rc = errf(err, errlen, DRIP_EIO, "control: cannot read %s: %s", path,
				  n < 0 ? strerror(errno) : "shorter than 32 bytes");
		else
			rc = store_set_hash_key(d->store, hex, (size_t)n);
	}
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

struct control *control_new(struct dripd *d, char *err, size_t errlen)
{
	const char *path = d->cfg->control_socket;
	struct control *ctl;
	int rc, fd = d->sd ? sd_listen_fd(d->sd, "control", AF_UNIX, err, errlen) : DRIP_ENOT_FOUND;
	if (fd < 0 && fd != DRIP_ENOT_FOUND)
		return NULL;
	if (control_forget_key(d, err, errlen) ||
	    (fd < 0 && control_clear_stale(path, err, errlen)))
		return NULL;
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->d = d;
	ctl->path = xstrdup(path);
	uv_pipe_init(d->loop, &ctl->server, 0);
	ctl->server.data = ctl;
	uv_timer_init(d->loop, &ctl->flush);
	ctl->flush.data = ctl;
	uv_timer_init(d->loop, &ctl->backup_timer);
	ctl->backup_timer.data = ctl;
	uv_idle_init(d->loop, &ctl->import_idle);
	ctl->import_idle.data = ctl;
	ctl->open_handles = 4;
	if (store_event_listen(d->store, control_event_cb, ctl) != 0)
		log_warn("control: every event-feed slot is taken: watch will show nothing");
	if (fd >= 0) {
		/* Socket activation: systemd bound it (path and mode come from dripd.socket). */
		ctl->inherited = true;
		if ((rc = uv_pipe_open(&ctl->server, fd)) != 0 ||
		    (rc = uv_listen((uv_stream_t *)&ctl->server, 64, control_connection_cb)) != 0) {
			errf(err, errlen, DRIP_EIO,
			     "control: cannot listen on systemd's socket: %s", uv_strerror(rc));
			control_close(ctl);
			return NULL;
		}
		return ctl;
	}
	/* The socket is created 0660 (never briefly wider), then given control_group. */
	mode_t old = umask(0117);
	rc = uv_pipe_bind(&ctl->server, path);
	umask(old);
	if (rc != 0 ||
	    (rc = uv_listen((uv_stream_t *)&ctl->server, 64, control_connection_cb)) != 0) {
		errf(err, errlen, DRIP_EIO, "control: cannot listen on %s: %s", path,
		     uv_strerror(rc));
		control_close(ctl);
		return NULL;
	}
	if (chmod(path, 0660) != 0)
		log_warn("control: chmod %s: %s", path, strerror(errno));
	if (*d->cfg->control_group) {
		struct group *g = getgrnam(d->cfg->control_group);
		if (!g || chown(path, (uid_t)-1, g->gr_gid) != 0)
			log_warn("control: cannot give %s to group %s: %s", path,
				 d->cfg->control_group, g ? strerror(errno) : "no such group");
	}
	log_info("control: listening on %s", path);
	return ctl;
}

void control_close(struct control *ctl)
{
	store_event_unlisten(ctl->d->store, control_event_cb, ctl);
	while (ctl->clients)
		control_client_close(ctl->clients);
	while (ctl->backups) {
		struct control_backup *b = ctl->backups;
		ctl->backups = b->next;
		store_backup_end(b->bk, false);
		cJSON_Delete(b->id);
		free(b->path);
		free(b);
	}
	if (uv_is_active((uv_handle_t *)&ctl->server) && !ctl->inherited)
		unlink(ctl->path);
	uv_close((uv_handle_t *)&ctl->flush, control_handle_closed_cb);
	uv_close((uv_handle_t *)&ctl->backup_timer, control_handle_closed_cb);
	uv_close((uv_handle_t *)&ctl->import_idle, control_handle_closed_cb);
	while (ctl->imports) {
		struct control_import *im = ctl->imports;
		ctl->imports = im->next;
		control_import_free(im);
	}
	while (ctl->tests) {
		struct control_test_send *ts = ctl->tests;
		ctl->tests = ts->next;
		cJSON_Delete(ts->id);
		free(ts->to);
		free(ts);
	}
	uv_close((uv_handle_t *)&ctl->server, control_handle_closed_cb);
}
