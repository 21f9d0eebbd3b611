/* signup.c - website signup with double opt-in: the form, the confirmation mail, the confirm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "dripd/clock.h"
#include "dripd/config.h"
#include "dripd/content.h"
#include "dripd/dripd.h"
#include "dripd/error.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/mailer.h"
#include "dripd/message.h"
#include "dripd/sched.h"
#include "dripd/signup.h"
#include "dripd/store.h"
#include "dripd/token.h"
#include "dripd/util.h"

/*
 * DESIGN. A website form POSTs to /subscribe on the tracking listener. A valid signup is a
 * row of the `signups` table, not a lead: nothing of the journey can reach the address until
 * the person confirms. A timer hands each signup's confirmation mail to an idle sender thread
 * (the same mailer, so the same relay, DKIM and logs as every touch) and removes signups that
 * were not confirmed in time (signup.expire), a batch at a time, armed for the next due moment
 * only. The mail's link carries a signed token (TOKEN_CONFIRM, the signup's id, which
 * AUTOINCREMENT never reuses); GET shows a page with a button and changes nothing, so link
 * scanners confirm nothing, and POST makes (or re-opens) the lead, records its consent and
 * enters it into the form's stage and sequence, in one transaction.
 */

#define SIGNUP_BATCH 32 /* expired signups removed per turn */
#define SIGNUP_RATE_SLOTS 1024
#define SIGNUP_RETRY_MS 1000 /* mail waiting for an idle sender thread */
#define SIGNUP_TEMPFAIL_S 300 /* a confirmation mail refused for now goes again after this */

struct signup_rate {
	uint64_t key; /* FNV-1a of the client address; 0 empty */
	uint64_t start_ms;
	int64_t n;
};

struct signup {
	struct dripd *d;
	uv_timer_t timer;
	bool closed;
	struct signup_rate rate[SIGNUP_RATE_SLOTS];
};

/* ---------------------------------------------------------------- pure: parsing */

/* Percent-decodes (and '+' to space) into out; false when out is too small or a byte is bad. */
static bool signup_urldecode(const char *in, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)in[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (i + 2 >= n || util_hex_value(in[i + 1]) < 0 ||
			    util_hex_value(in[i + 2]) < 0)
				return false;
			c = util_hex_value(in[i + 1]) * 16 + util_hex_value(in[i + 2]);
			i += 2;
		}
		if (c == 0)
			return false;
		if (o + 1 >= outlen)
			return false;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return true;
}

/* No control characters (CR, LF, NUL, …), no markup. */
static bool signup_value_ok(const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return true;
}

static int signup_set(struct signup_form *f, const char *name, const char *value,
		      const char *honeypot, char *err, size_t errlen)
{
	char *dst = NULL;
	size_t cap = 0;
	if (strcmp(name, honeypot) == 0) {
		f->honeypot |= value[0] != '\0';
		return 0;
	}
	if (strcmp(name, "email") == 0)
		dst = f->email, cap = sizeof(f->email);
	else if (strcmp(name, "first_name") == 0)
		dst = f->first_name, cap = sizeof(f->first_name);
	else if (strcmp(name, "last_name") == 0)
		dst = f->last_name, cap = sizeof(f->last_name);
	else if (strcmp(name, "company") == 0)
		dst = f->company, cap = sizeof(f->company);
	else if (strcmp(name, "form") == 0)
		dst = f->form, cap = sizeof(f->form);
	else if (strcmp(name, "consent") == 0)
		dst = f->consent, cap = sizeof(f->consent);
	if (!signup_value_ok(value))
		return errf(err, errlen, DRIP_EINVALID, "field %.32s holds a character not allowed",
			    name);
	if (strcmp(name, "tags") == 0) {
		char copy[1024];
		snprintf(copy, sizeof(copy), "%s", value);
		for (char *save = NULL, *t = strtok_r(copy, ", ", &save); t;
		     t = strtok_r(NULL, ", ", &save)) {
			size_t n = strlen(t);
			if (f->ntags == SIGNUP_TAGS_MAX || n >= sizeof(f->tags[0]) ||
			    strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
				return errf(err, errlen, DRIP_EINVALID,
					    "field tags: at most %d tags of a-z, 0-9, - and _",
					    SIGNUP_TAGS_MAX);
			snprintf(f->tags[f->ntags++], sizeof(f->tags[0]), "%s", t);
		}
		return 0;
	}
	if (!dst)
		return 0; /* other fields of the website's form are not ours */
	if (strlen(value) >= cap)
		return errf(err, errlen, DRIP_EINVALID, "field %.32s is too long", name);
	snprintf(dst, cap, "%s", value);
	return 0;
}

static int signup_finish(struct signup_form *f, char *err, size_t errlen)
{
	if (f->honeypot)
		return 0;
	if (!util_email_valid(f->email))
		return errf(err, errlen, DRIP_EINVALID, "field email is not an email address");
	if (!f->form[0])
		return errf(err, errlen, DRIP_EINVALID, "field form is missing");
	return 0;
}

int signup_parse(const char *content_type, const char *body, size_t len, const char *honeypot,
		 struct signup_form *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (memchr(body, '\0', len))
		return errf(err, errlen, DRIP_EINVALID, "the body holds a NUL byte");
	if (strncasecmp(content_type, "application/json", 16) == 0) {
		out->json = true;
		cJSON *root = cJSON_ParseWithLength(body, len);
		int rc = 0;
		if (!cJSON_IsObject(root)) {
			cJSON_Delete(root);
			return errf(err, errlen, DRIP_EINVALID, "the body is not a JSON object");
		}
		const cJSON *e;
		cJSON_ArrayForEach(e, root)
		{
			if (rc)
				break;
			if (cJSON_IsString(e)) {
				rc = signup_set(out, e->string, e->valuestring, honeypot, err,
						errlen);
			} else if (cJSON_IsArray(e) && strcmp(e->string, "tags") == 0) {
				const cJSON *t;
				cJSON_ArrayForEach(t, e)
				{
					if (!rc && !cJSON_IsString(t))
						rc = errf(err, errlen, DRIP_EINVALID,
							  "field tags must hold strings");
					else if (!rc)
						rc = signup_set(out, "tags", t->valuestring,
								honeypot, err, errlen);
				}
			} else if (strcmp(e->string, honeypot) == 0) {
				out->honeypot |= !cJSON_IsNull(e) && !cJSON_IsFalse(e);
			} else {
				rc = errf(err, errlen, DRIP_EINVALID,
					  "field %.32s must be a string", e->string);
			}
		}
		cJSON_Delete(root);
		return rc ? rc : signup_finish(out, err, errlen);
	}
	if (strncasecmp(content_type, "application/x-www-form-urlencoded", 33) != 0)
		return errf(err, errlen, DRIP_EINVALID,
			    "expected application/x-www-form-urlencoded or application/json");
	const char *p = body, *end = body + len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *pe = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(pe - p));
		char name[64], value[1024];
		if (pe > p) {
			if (!eq || !signup_urldecode(p, (size_t)(eq - p), name, sizeof(name)) ||
			    !signup_urldecode(eq + 1, (size_t)(pe - eq - 1), value, sizeof(value)))
				return errf(err, errlen, DRIP_EINVALID, "the form is malformed");
			if (!signup_value_ok(name))
				return errf(err, errlen, DRIP_EINVALID, "the form is malformed");
			int rc = signup_set(out, name, value, honeypot, err, errlen);
			if (rc)
				return rc;
		}
		p = pe + 1;
	}
	return signup_finish(out, err, errlen);
}

/* ---------------------------------------------------------------- answers */

void signup_answer_clear(struct signup_answer *a)
{
	free(a->location);
	free(a->body);
	memset(a, 0, sizeof(*a));
}

/* A small page; with `button`, a form that POSTs back to the same URL. */
static void signup_page(struct signup_answer *a, int status, const char *title, const char *para,
			bool button)
{
	struct buf b;
	buf_init(&b);
	buf_add_page_start(&b, title, para);
	buf_adds(&b, "</p>");
	if (button)
		buf_adds(&b, "<form method=\"post\"><input type=\"hidden\" name=\"confirm\" "
			     "value=\"yes\"><button id=\"confirm\" type=\"submit\">Confirm my "
			     "subscription</button></form>");
	buf_add_page_end(&b);
	a->status = status;
	a->ctype = "text/html; charset=utf-8";
	a->body = buf_steal(&b);
}

static void signup_json(struct signup_answer *a, int status, const char *msg)
{
	a->status = status;
	a->ctype = "application/json";
	a->body = status < 300 ? xasprintf("{\"ok\":true,\"message\":\"%s\"}\n", msg)
			       : xasprintf("{\"ok\":false,\"error\":\"%s\"}\n", msg);
}

/* ---------------------------------------------------------------- the timer */

static void signup_timer_cb(uv_timer_t *h);

static void signup_arm(struct signup *s, uint64_t ms)
{
	if (s->closed)
		return;
	if (uv_is_active((uv_handle_t *)&s->timer) && uv_timer_get_due_in(&s->timer) <= ms)
		return;
	uv_timer_start(&s->timer, signup_timer_cb, ms, 0);
}

void signup_kick(struct signup *s)
{
	if (s)
		signup_arm(s, 0);
}

struct signup_send {
	struct signup *s;
	bool waiting; /* a mail is due but no sender thread is idle */
};

static void signup_mail_one(void *arg, const struct store_signup *su)
{
	struct signup_send *ss = arg;
	struct dripd *d = ss->s->d;
	const struct config *cfg = d->cfg;
	if (!d->mailer || mailer_idle(d->mailer) == 0) {
		ss->waiting = true;
		return;
	}
	char tok[TOKEN_MAX_LEN], from[320], err[256];
	struct token_claims cl = { .kind = TOKEN_CONFIRM, .touch_id = su->id };
	if (!token_sign(d->keys, &cl, TOKEN_URL, tok, sizeof(tok)) ||
	    message_address(cfg->delivery.from, from, sizeof(from)) != 0) {
		log_err("signup: cannot sign the confirmation link of signup %lld",
			(long long)su->id);
		return;
	}
	char *url = xasprintf("%s/confirm/%s", cfg->tracking.base_url, tok);
	char *text = xasprintf("Hello%s%s,\n\nplease confirm that you want to receive our emails "
			       "by opening this link and pressing the button:\n\n%s\n\nIf you did "
			       "not sign up, ignore this message: without your confirmation you "
			       "will get nothing more from us, and the request is erased.\n",
			       su->first_name[0] ? " " : "", su->first_name, url);
	char *mid = message_make_id(cfg->delivery.from, SIGNUP_JOB_BASE - su->id);
	struct message_spec m = {
		.from = cfg->delivery.from,
		.to_name = su->first_name,
		.to_addr = su->email,
		.subject = cfg->signup.subject,
		.message_id = mid,
		.date = clock_now(&d->clock),
		.text = text,
	};
	struct buf data;
	buf_init(&data);
	if (message_build(&m, &data, err, sizeof(err)) != 0 ||
	    store_signup_mail_state(d->store, su->id, 1) != 0) {
		log_err("signup: cannot build the confirmation mail of signup %lld: %s",
			(long long)su->id, err);
		store_signup_delete(d->store, su->id);
	} else {
		struct mailer_job *job = xcalloc(1, sizeof(*job));
		job->touch_id = SIGNUP_JOB_BASE - su->id;
		job->envelope_from = xstrdup(from);
		job->rcpt = xstrdup(su->email);
		job->len = data.len;
		job->data = buf_steal(&data);
		mailer_submit(d->mailer, job);
	}
	buf_free(&data);
	free(mid);
	free(text);
	free(url);
}

static void signup_timer_cb(uv_timer_t *h)
{
	struct signup *s = h->data;
	struct dripd *d = s->d;
	int64_t now = clock_now(&d->clock), removed = 0, next_at = 0;
	struct signup_send ss = { .s = s };
	if (store_signup_mail_due(d->store, 16, signup_mail_one, &ss) != 0)
		ss.waiting = true;
	if (store_signup_expire(d->store, now, SIGNUP_BATCH, &removed, &next_at) != 0) {
		signup_arm(s, 60000);
		return;
	}
	if (removed)
		log_info("signup: %lld unconfirmed signups expired", (long long)removed);
	if (removed == SIGNUP_BATCH || ss.waiting)
		signup_arm(s, removed == SIGNUP_BATCH ? 0 : SIGNUP_RETRY_MS);
	else if (next_at)
		signup_arm(s, clock_delay_ms(&d->clock, next_at, now));
}

void signup_on_result(struct signup *s, const struct mailer_result *r)
{
	int64_t id = SIGNUP_JOB_BASE - r->touch_id;
	if (!s)
		return;
	if (r->outcome == MAILER_OK) {
		store_signup_mail_state(s->d->store, id, 2);
		log_info("signup: confirmation mail of signup %lld accepted", (long long)id);
	} else if (r->outcome == MAILER_TEMPFAIL) {
		store_signup_mail_state(s->d->store, id, 0);
		log_warn("signup: confirmation mail of signup %lld deferred: %d %s", (long long)id,
			 r->code, r->detail);
		signup_arm(s, SIGNUP_TEMPFAIL_S * 1000);
		return;
	} else {
		/* Refused or uncertain: never sent twice; the signup goes. */
		store_signup_delete(s->d->store, id);
		log_warn("signup: confirmation mail of signup %lld not delivered: %d %s",
			 (long long)id, r->code, r->detail);
	}
	signup_arm(s, 0); /* a thread is idle again */
}

struct signup *signup_new(struct dripd *d)
{
	struct signup *s = xcalloc(1, sizeof(*s));
	s->d = d;
	uv_timer_init(d->loop, &s->timer);
	s->timer.data = s;
	/* Mail handed over before a restart whose outcome was lost stays unsent (state 1):
	 * at most once, as touches. */
	signup_arm(s, 0);
	return s;
}

static void signup_free_cb(uv_handle_t *h)
{
	free(h->data);
}

void signup_close(struct signup *s)
{
	if (!s || s->closed)
		return;
	s->closed = true;
	uv_close((uv_handle_t *)&s->timer, signup_free_cb);
}

/* ---------------------------------------------------------------- the routes */

/* Whether the client may sign up once more this hour (counts the attempt). */
static bool signup_rate_ok(struct signup *s, const char *addr)
{
	uint64_t key = util_fnv1a(14695981039346656037ULL, addr, strlen(addr)) | 1;
	struct signup_rate *r = &s->rate[key % SIGNUP_RATE_SLOTS];
	uint64_t now = uv_now(s->d->loop);
	if (r->key != key || now - r->start_ms >= 3600 * 1000) {
		r->key = key;
		r->start_ms = now;
		r->n = 0;
	}
	return ++r->n <= s->d->cfg->signup.per_hour;
}

static void signup_done(struct signup *s, const struct signup_form *f, const struct config_form *cf,
			struct signup_answer *a)
{
	(void)s;
	if (f->json) {
		signup_json(a, 202, "check your inbox to confirm");
	} else if (cf && *cf->redirect) {
		a->status = 303;
		a->location = xstrdup(cf->redirect);
		a->ctype = "text/plain; charset=utf-8";
		a->body = xstrdup("");
	} else {
		signup_page(a, 200, "Check your inbox",
			    "We sent you an email: open its link to confirm your subscription.",
			    false);
	}
}

static void signup_refuse(struct signup_answer *a, bool json, int status, const char *msg)
{
	if (json)
		signup_json(a, status, msg);
	else
		signup_page(a, status,
			    status == 429 ? "Too many requests" : "Please check the form", msg,
			    false);
}

void signup_subscribe(struct signup *s, const char *content_type, const char *body, size_t len,
		      const char *addr, struct signup_answer *a)
{
	struct dripd *d = s->d;
	const struct config *cfg = d->cfg;
	struct signup_form f;
	char err[128];
	bool json = strncasecmp(content_type, "application/json", 16) == 0;
	if (!signup_rate_ok(s, addr)) {
		signup_refuse(a, json, 429, "too many signups from your address; try again later");
		return;
	}
	if (signup_parse(content_type, body, len, cfg->signup.honeypot, &f, err, sizeof(err))) {
		signup_refuse(a, json, 400, err);
		return;
	}
	const struct config_form *cf = config_form(cfg, f.form);
	if (f.honeypot) {
		/* A bot: it is told what a person is told, and nothing is kept. */
		log_info("signup: honeypot filled from %s, ignored", addr);
		signup_done(s, &f, cf, a);
		return;
	}
	if (!cf) {
		signup_refuse(a, json, 400, "unknown form");
		return;
	}
	for (char *p = f.email; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	int64_t now = clock_now(&d->clock);
	bool pending = false;
	int rc = store_signup_pending(d->store, f.email, now, &pending);
	if (rc == 0 && !pending) {
		/* One confirmation mail per address until it expires: a form cannot be used
		 * to flood someone's inbox. */
		cJSON *tags = cJSON_CreateArray();
		for (size_t i = 0; i < f.ntags; i++)
			cJSON_AddItemToArray(tags, cJSON_CreateString(f.tags[i]));
		char *tags_json = cJSON_PrintUnformatted(tags);
		cJSON_Delete(tags);
		struct store_signup su = {
			.email = f.email,
			.first_name = f.first_name,
			.last_name = f.last_name,
			.company = f.company,
			.tags = tags_json,
			.form = f.form,
			.consent = f.consent,
			.address = (char *)addr,
			.at = now,
			.expires_at = now + cfg->signup.expire,
		};
		int64_t id = 0;
		rc = store_signup_add(d->store, &su, &id);
		cJSON_free(tags_json);
		if (rc == 0) {
			log_info("signup: signup %lld on form %s from %s", (long long)id, f.form,
				 addr);
			signup_arm(s, 0);
		}
	}
	if (rc) {
		signup_refuse(a, json, 503, "could not record the signup; please try again");
		return;
	}
	signup_done(s, &f, cf, a);
}

/* The lead for a confirmed signup: made, or re-opened when it had opted out. */
static int signup_make_lead(struct signup *s, const struct store_signup *su,
			    const struct config_form *cf, int64_t now, int64_t *lead_id, char *err,
			    size_t errlen)
{
	struct dripd *d = s->d;
	struct lead lead;
	const char *stage = cf ? cf->stage : d->content->stages[0];
	const char *seq = cf && *cf->sequence ? cf->sequence : NULL;
	int rc;
	if (content_stage_index(d->content, stage) < 0)
		stage = d->content->stages[0];
	if (seq && !content_sequence(d->content, seq))
		seq = NULL;
	/* A fresh, confirmed consent lifts an earlier opt-out or forget (never a bounce or a
	 * complaint: those say the address itself is bad). */
	char hashed[STORE_HASH_LEN], reason[64];
	if (store_suppressed(d->store, su->email, reason, sizeof(reason)) == 0 &&
	    (strcmp(reason, "bounce") == 0 || strcmp(reason, "complaint") == 0))
		return errf(err, errlen, DRIP_EINVALID, "the address is suppressed (%s)", reason);
	if ((rc = store_unsuppress(d->store, su->email)) && rc != DRIP_ENOT_FOUND)
		return rc;
	if (store_address_hash(d->store, su->email, hashed) == 0 &&
	    (rc = store_unsuppress(d->store, hashed)) && rc != DRIP_ENOT_FOUND)
		return rc;
	rc = store_lead_by_email(d->store, su->email, &lead);
	if (rc == DRIP_ENOT_FOUND) {
		memset(&lead, 0, sizeof(lead));
		lead.email = su->email;
		lead.first_name = su->first_name;
		lead.last_name = su->last_name;
		lead.company = su->company;
		lead.tags = su->tags;
		lead.stage = (char *)stage;
		if ((rc = store_lead_insert(d->store, &lead, now)))
			return rc;
		*lead_id = lead.id;
		return journey_enter_stage(d->store, d->content, &lead, stage, seq, now, err,
					   errlen);
	}
	if (rc)
		return rc;
	*lead_id = lead.id;
	if (strcmp(lead.status, "unsubscribed") == 0) {
		if ((rc = store_lead_set_status(d->store, lead.id, "active", now)) == 0)
			rc = journey_enter_stage(d->store, d->content, &lead, stage, seq, now, err,
						 errlen);
	}
	/* An active lead keeps its place in the journey. */
	store_lead_clear(&lead);
	return rc;
}

void signup_confirm(struct signup *s, const char *token, size_t len, bool post, const char *addr,
		    struct signup_answer *a)
{
	struct dripd *d = s->d;
	struct token_claims cl;
	struct store_signup su;
	char err[256] = "";
	int64_t now = clock_now(&d->clock);
	memset(&su, 0, sizeof(su));
	if (len == 0 || len >= TOKEN_MAX_LEN ||
	    token_verify(d->keys, token, len, TOKEN_URL, &cl) != 0 || cl.kind != TOKEN_CONFIRM ||
	    store_signup_get(d->store, cl.touch_id, &su) != 0 || su.expires_at <= now) {
		store_signup_clear(&su);
		signup_page(a, 404, "Link expired",
			    "This confirmation link is not valid any more. Please sign up again.",
			    false);
		return;
	}
	const struct config_form *cf = config_form(d->cfg, su.form);
	if (!post) {
		/* Link scanners only GET: the page asks, the button does it. */
		signup_page(a, 200, "Confirm your subscription",
			    "Press the button to confirm that you want our emails.", true);
		store_signup_clear(&su);
		return;
	}
	int64_t lead_id = 0;
	int rc = store_begin(d->store);
	if (rc == 0) {
		rc = signup_make_lead(s, &su, cf, now, &lead_id, err, sizeof(err));
		if (rc == 0)
			rc = store_consent_set(d->store, lead_id, &su, addr, now);
		if (rc == 0) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "form", su.form);
			cJSON_AddStringToObject(o, "consent", su.consent);
			char *detail = cJSON_PrintUnformatted(o);
			cJSON_Delete(o);
			rc = store_event_add(d->store, lead_id, 0, "confirm", now, detail);
			cJSON_free(detail);
		}
		if (rc == 0)
			rc = store_signup_remove(d->store, su.email);
		if (rc == 0)
			rc = store_commit(d->store);
		else
			store_rollback(d->store);
	}
	if (rc) {
		log_err("signup: cannot confirm signup %lld: %s", (long long)su.id,
			err[0] ? err : drip_strerror(rc));
		signup_page(a, 503, "Not confirmed",
			    "We could not confirm your subscription right now; please try again.",
			    false);
	} else {
		log_info("signup: signup %lld confirmed: lead %lld", (long long)su.id,
			 (long long)lead_id);
		if (d->sched)
			sched_kick(d->sched);
		if (cf && *cf->confirm_redirect &&
		    config_url_on_site(d->cfg->signup.site, cf->confirm_redirect)) {
			a->status = 303;
			a->location = xstrdup(cf->confirm_redirect);
			a->ctype = "text/plain; charset=utf-8";
			a->body = xstrdup("");
		} else {
			signup_page(a, 200, "Subscription confirmed",
				    "Thank you: your subscription is confirmed.", false);
		}
	}
	store_signup_clear(&su);
}
