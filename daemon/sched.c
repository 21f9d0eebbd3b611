/* sched.c - the scheduler: due touches to messages to sender threads, one timer, no polling. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include <cjson/cJSON.h>

#include "dripd/error.h"
#include "dripd/governor.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/message.h"
#include "dripd/render.h"
#include "dripd/sched.h"
#include "dripd/util.h"

/*
 * DESIGN. A pass takes due pending touches, at most as many as there are idle sender
 * threads, and dispatches each in the same transaction: the lead and step are looked up,
 * the message is rendered and built, the touch goes from pending straight to "sending" with
 * its Message-ID, and only after the commit does a thread see it (at most once per step).
 * No touch is committed "queued" on the way (it would wait for nothing: the transaction
 * that takes it also hands it over); one that cannot be moved on for an error is parked
 * queued, out of later claims, and goes back to pending at the next start. A touch that
 * cannot be sent (lead no longer active, step gone, render error) is finished as skipped or
 * failed with an event, never retried blindly. Temporary failures come back as pending
 * with a doubling delay. The timer is re-armed after every pass for the earliest pending
 * due time; with nothing pending it stays stopped (idle means idle).
 */

#define SCHED_CLAIM_MAX 64
#define SCHED_JITTER 600 /* business seconds of spread at a window's opening */
#define SCHED_RETRY_MS 1000 /* machine time before a claim is tried again */
#define SCHED_HELD_MS 2000 /* machine time between two tries of a database refusing writes */
#define SCHED_NOTES 256 /* complaints and DSN bounces waiting for the governor */

/* A recipient domain with limits, in one account. */
struct sched_domain {
	const char *domain; /* the config's */
	int64_t per_hour, concurrency; /* the config's, or a live change (dripctl limits) */
	size_t in_flight;
	int64_t allow; /* this pass: how many more may be handed over */
	struct governor_window sent; /* its sends of the last hour, for per_hour */
};

/*
 * A delivery account: its sender threads, its governor, and what it may start in the
 * current pass. Index 0 is the default account (the delivery section and s->mailer).
 */
struct sched_account {
	struct config_account cfg; /* a view into the config */
	struct mailer *mailer; /* NULL until sched_add_accounts (it cannot send then) */
	bool owned; /* made by sched_add_accounts, closed by sched_close */
	struct governor gov;
	struct sched_domain *domains; /* one per cfg.domains */
	struct governor_window sent; /* its sends of the last 24 hours, for the caps */
	int64_t allow; /* this pass */
	char *seqs; /* the current content's sequences that use it, a JSON array */
};

/*
 * A touch with a sender thread (or waiting for its batch's commit to get one): which account
 * and limited domain it counts against, and the touch as it was committed sending, so its
 * outcome is recorded without reading it back.
 */
struct sched_flight {
	struct touch t;
	struct mailer_job *job; /* until handed over */
	struct sched_account *a;
	struct sched_domain *d;
	int64_t at; /* when it was committed sending: it counts against the caps from then */
};

struct sched_note {
	int64_t touch_id;
	enum governor_outcome outcome;
};

struct sched {
	uv_loop_t *loop;
	uv_timer_t timer;
	const struct config *cfg;
	struct store *store;
	struct clock *clock;
	struct mailer *mailer;
	struct content *content;
	const struct token_keys *keys;
	bool paused;
	bool batch; /* one transaction holds a claim's dispatch or a drain's outcomes */
	bool hashed; /* this claim: whether any suppression is a forgotten address's hash */
	struct sched_flight jobs[SCHED_CLAIM_MAX]; /* a batch's, handed over after commit */
	size_t njobs;
	struct sched_account *accts;
	size_t naccts;
	/* The accounts' and domains' send windows may differ from the database (a write
	 * refused, a touch resolved by a person): read them again before they are used. */
	bool sends_stale;
	struct sched_flight *flights;
	size_t nflights, flights_cap;
	struct sched_note notes[SCHED_NOTES]; /* from the event feed, for the governor */
	size_t nnotes;
	int64_t unblock_at; /* business time the first held-back account or domain may go */
	bool draining;
	void (*drain_cb)(void *arg);
	void *drain_arg;
	int64_t next_wake;
	/* Sending is held back while the database refuses writes (a full disk, a lock held past
	 * the busy timeout): why, for status, or "" when it is not. Outcomes that could not be
	 * recorded wait in `unrecorded` and are recorded, in order, once a probe write works;
	 * `batch_copy` keeps the outcomes of the open batch for that. */
	char held[320];
	struct mailer_result *unrecorded, *batch_copy;
	size_t nunrecorded, capunrecorded, nbatch_copy, capbatch_copy;
};

static void sched_timer_cb(uv_timer_t *t);

static void sched_push_result(struct mailer_result **arr, size_t *n, size_t *cap,
			      const struct mailer_result *r)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*arr = xrealloc(*arr, *cap * sizeof(**arr));
	}
	(*arr)[(*n)++] = *r;
}

/* The database refused a write: hold sending back, say why, and try again in a while. */
static void sched_hold(struct sched *s)
{
	char msg[200];
	int kind = store_last_error(s->store, msg, sizeof(msg));
	bool was = s->held[0] != '\0';
	snprintf(s->held, sizeof(s->held),
		 "%s: the database refuses writes (%s); sending resumes when it takes them again",
		 kind == STORE_FAIL_FULL   ? "disk full"
		 : kind == STORE_FAIL_BUSY ? "database locked by another process"
					   : "database error",
		 msg);
	if (!was)
		log_err("sched: sending held back: %s", s->held);
	s->sends_stale = true;
	s->next_wake = 0;
	if (!s->draining)
		uv_timer_start(&s->timer, sched_timer_cb, SCHED_HELD_MS, 0);
}

static void sched_record(struct sched *s, const struct mailer_result *r);

/*
 * Takes one outcome: kept for later while sending is held back, else recorded (inside a
 * batch, a copy is kept until the batch commits; alone, a failed write keeps it).
 */
static void sched_take(struct sched *s, const struct mailer_result *r)
{
	if (s->held[0] && !s->batch) {
		sched_push_result(&s->unrecorded, &s->nunrecorded, &s->capunrecorded, r);
		return;
	}
	if (s->batch) {
		sched_push_result(&s->batch_copy, &s->nbatch_copy, &s->capbatch_copy, r);
		/* After a refused write the batch is lost whole (SQLite may have rolled it back
		 * already, and then a write here would commit alone): the rest are only kept,
		 * flights and all, to be recorded with the batch's others. */
		if (store_last_error(s->store, NULL, 0) == STORE_FAIL_NONE)
			sched_record(s, r);
		return;
	}
	store_error_clear(s->store);
	sched_record(s, r);
	if (store_last_error(s->store, NULL, 0) != STORE_FAIL_NONE) {
		sched_push_result(&s->unrecorded, &s->nunrecorded, &s->capunrecorded, r);
		sched_hold(s);
	}
}

/* Whether the database takes writes again; if so, records what it refused meanwhile. */
static bool sched_unhold(struct sched *s, int64_t now)
{
	int64_t requeued = 0;
	if (store_write_probe(s->store, now, &requeued) != 0) {
		sched_hold(s);
		return false;
	}
	struct mailer_result *todo = s->unrecorded;
	size_t n = s->nunrecorded;
	log_info("sched: the database takes writes again; sending resumes (%zu outcome(s) to "
		 "record, %lld claimed touch(es) back to pending)",
		 n, (long long)requeued);
	s->held[0] = '\0';
	s->unrecorded = NULL;
	s->nunrecorded = s->capunrecorded = 0;
	if (n) {
		sched_results_begin(s);
		for (size_t i = 0; i < n; i++)
			sched_take(s, &todo[i]);
		sched_results_end(s);
	}
	free(todo);
	return s->held[0] == '\0';
}

const char *sched_held(const struct sched *s)
{
	return s->held[0] ? s->held : NULL;
}

/*
 * Complaints and bounces that the inbox (or dripctl event) records count against the
 * account that sent the touch; the feed only takes note, sched_run reads the touches.
 * SMTP bounces are counted from their outcome already.
 */
static void sched_event_cb(void *arg, const struct store_event *ev)
{
	struct sched *s = arg;
	enum governor_outcome o;
	if (!ev->touch_id)
		return;
	if (strcmp(ev->kind, "complaint") == 0)
		o = GOVERNOR_COMPLAINT;
	else if (strcmp(ev->kind, "bounce") == 0 &&
		 !(ev->detail && strstr(ev->detail, "\"source\":\"smtp\"")))
		o = GOVERNOR_BOUNCED;
	else
		return;
	if (s->nnotes < SCHED_NOTES) {
		s->notes[s->nnotes].touch_id = ev->touch_id;
		s->notes[s->nnotes++].outcome = o;
	}
	if (!s->paused)
		sched_kick(s);
}

static void sched_account_init(struct sched_account *a, const struct config_account *cfg)
{
	a->cfg = *cfg;
	governor_init(&a->gov);
	governor_window_init(&a->sent, GOVERNOR_DAY);
	a->domains = xcalloc(cfg->ndomains ? cfg->ndomains : 1, sizeof(*a->domains));
	for (size_t i = 0; i < cfg->ndomains; i++) {
		a->domains[i].domain = cfg->domains[i].domain;
		a->domains[i].per_hour = cfg->domains[i].per_hour;
		a->domains[i].concurrency = cfg->domains[i].concurrency;
		governor_window_init(&a->domains[i].sent, GOVERNOR_HOUR);
	}
	a->seqs = xstrdup("[]");
}

/* The settings key of a live limit: "limit/ACCOUNT[/DOMAIN]/KEY". */
static char *sched_limit_key(const char *account, const char *domain, const char *key)
{
	return domain ? xasprintf("limit/%s/%s/%s", account, domain, key)
		      : xasprintf("limit/%s/%s", account, key);
}

/* The field a live limit changes, or NULL when `key` is not one. */
static int64_t *sched_limit_field(struct sched_account *a, struct sched_domain *d, const char *key)
{
	if (d)
		return strcmp(key, "per_hour") == 0      ? &d->per_hour
		       : strcmp(key, "concurrency") == 0 ? &d->concurrency
							 : NULL;
	return strcmp(key, "per_hour") == 0  ? &a->cfg.per_hour
	       : strcmp(key, "per_day") == 0 ? &a->cfg.per_day
					     : NULL;
}

/* Applies the live limits kept in the database (they outlive restarts). */
static void sched_limits_restore(struct sched *s, struct sched_account *a)
{
	static const char *const keys[] = { "per_hour", "per_day", "concurrency" };
	for (size_t j = 0; j <= a->cfg.ndomains; j++) {
		struct sched_domain *d = j < a->cfg.ndomains ? &a->domains[j] : NULL;
		for (size_t k = 0; k < 3; k++) {
			int64_t *field = sched_limit_field(a, d, keys[k]), v;
			char *name = sched_limit_key(a->cfg.name, d ? d->domain : NULL, keys[k]);
			if (field && store_setting_get(s->store, name, &v) == 0 && v >= 0) {
				*field = v;
				log_info("sched: account %s: %s%s%s is %lld (set live, not from "
					 "the config)",
					 a->cfg.name, d ? d->domain : "", d ? " " : "", keys[k],
					 (long long)v);
			}
			free(name);
		}
	}
}

struct sched *sched_new(uv_loop_t *loop, const struct config *cfg, struct store *st,
			struct clock *clk, struct mailer *m)
{
	struct sched *s = xcalloc(1, sizeof(*s));
	struct config_account def;
	s->loop = loop;
	s->cfg = cfg;
	s->store = st;
	s->clock = clk;
	s->mailer = m;
	s->naccts = 1 + cfg->naccounts;
	s->accts = xcalloc(s->naccts, sizeof(*s->accts));
	config_account(cfg, NULL, &def);
	sched_account_init(&s->accts[0], &def);
	s->accts[0].mailer = m;
	for (size_t i = 0; i < cfg->naccounts; i++)
		sched_account_init(&s->accts[i + 1], &cfg->accounts[i]);
	for (size_t i = 0; i < s->naccts; i++)
		sched_limits_restore(s, &s->accts[i]);
	s->sends_stale = true; /* read at the first pass */
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	if (store_event_listen(st, sched_event_cb, s) != 0)
		log_warn("sched: the event feed is full: complaints will not reach the governor");
	return s;
}

static void sched_mailer_result_cb(void *arg, const struct mailer_result *r)
{
	sched_on_result(arg, r);
}

static void sched_mailer_batch_cb(void *arg, bool begin)
{
	if (begin)
		sched_results_begin(arg);
	else
		sched_results_end(arg);
}

int sched_add_accounts(struct sched *s, char *err, size_t errlen)
{
	for (size_t i = 1; i < s->naccts; i++) {
		struct sched_account *a = &s->accts[i];
		if (!(a->mailer = mailer_new_account(s->loop, s->cfg, &a->cfg,
						     sched_mailer_result_cb, s, err, errlen)))
			return DRIP_ECONFIG;
		mailer_set_batch_cb(a->mailer, sched_mailer_batch_cb);
		a->owned = true;
	}
	return 0;
}

/* The account of a sequence: its "account" key, else the default. */
static struct sched_account *sched_account_named(struct sched *s, const char *name)
{
	for (size_t i = 1; name && *name && i < s->naccts; i++)
		if (strcmp(s->accts[i].cfg.name, name) == 0)
			return &s->accts[i];
	return &s->accts[0];
}

static struct sched_account *sched_account_of(struct sched *s, const char *sequence)
{
	const struct content_sequence *seq =
		s->content ? content_sequence(s->content, sequence) : NULL;
	return sched_account_named(s, seq ? seq->account : NULL);
}

static size_t sched_threads(const struct sched *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->naccts; i++)
		if (s->accts[i].mailer)
			n += mailer_threads(s->accts[i].mailer);
	return n;
}

static size_t sched_busy(const struct sched *s)
{
	size_t busy = 0;
	for (size_t i = 0; i < s->naccts; i++)
		if (s->accts[i].mailer)
			busy += mailer_busy(s->accts[i].mailer);
	return busy;
}

int sched_check_accounts(const struct config *cfg, const struct content *c, char *err,
			 size_t errlen)
{
	struct config_account a;
	for (size_t i = 0; i < c->nseqs; i++) {
		const struct content_sequence *seq = &c->seqs[i];
		if (!seq->account || !*seq->account || config_account(cfg, seq->account, &a))
			continue;
		struct buf names;
		buf_init(&names);
		buf_adds(&names, CONFIG_DEFAULT_ACCOUNT);
		for (size_t j = 0; j < cfg->naccounts; j++)
			buf_printf(&names, ", %s", cfg->accounts[j].name);
		int rc = errf(err, errlen, DRIP_ECONTENT,
			      "%s:%d: sequence: account \"%s\" is not in the config's "
			      "\"accounts\" (%s)",
			      seq->file, seq->line_of_account, seq->account, names.data);
		buf_free(&names);
		return rc;
	}
	return 0;
}

void sched_set_paused(struct sched *s, bool paused)
{
	s->paused = paused;
	if (paused) {
		uv_timer_stop(&s->timer);
		s->next_wake = 0;
	} else {
		sched_kick(s);
	}
}

bool sched_paused(const struct sched *s)
{
	return s->paused;
}

void sched_set_keys(struct sched *s, const struct token_keys *keys)
{
	s->keys = keys;
}

void sched_set_content(struct sched *s, struct content *c)
{
	struct content *old = s->content;
	s->content = content_ref(c);
	content_unref(old);
	/* Each account's sequences, for leaving them out of a claim while it is held back. */
	for (size_t i = 0; i < s->naccts; i++) {
		cJSON *arr = cJSON_CreateArray();
		for (size_t j = 0; j < c->nseqs; j++)
			if (sched_account_named(s, c->seqs[j].account) == &s->accts[i])
				cJSON_AddItemToArray(arr, cJSON_CreateString(c->seqs[j].name));
		free(s->accts[i].seqs);
		char *json = cJSON_PrintUnformatted(arr);
		s->accts[i].seqs = xstrdup(json);
		cJSON_free(json);
		cJSON_Delete(arr);
	}
}

void sched_kick(struct sched *s)
{
	if (!s->draining)
		uv_timer_start(&s->timer, sched_timer_cb, 0, 0);
}

int64_t sched_next_wake(const struct sched *s)
{
	return s->next_wake;
}

/* `v` as a JSON string, escaped as cJSON_PrintUnformatted escapes it. */
static void sched_json_str(struct buf *b, const char *v)
{
	buf_addc(b, '"');
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		switch (*p) {
		case '"':
			buf_adds(b, "\\\"");
			break;
		case '\\':
			buf_adds(b, "\\\\");
			break;
		case '\b':
			buf_adds(b, "\\b");
			break;
		case '\f':
			buf_adds(b, "\\f");
			break;
		case '\n':
			buf_adds(b, "\\n");
			break;
		case '\r':
			buf_adds(b, "\\r");
			break;
		case '\t':
			buf_adds(b, "\\t");
			break;
		default:
			if (*p < 32)
				buf_printf(b, "\\u%04x", *p);
			else
				buf_addc(b, (char)*p);
		}
	}
	buf_addc(b, '"');
}

/* Records an event whose detail is the touch's sequence and step and one key: built as a
 * string (it is one for every message sent), the same text cJSON would print. */
static void sched_event(struct sched *s, int64_t lead_id, int64_t touch_id, const char *kind,
			int64_t now, const struct touch *t, const char *key, const char *value)
{
	struct buf d;
	const char *sep = "";
	buf_init(&d);
	buf_addc(&d, '{');
	if (t) {
		buf_adds(&d, "\"sequence\":");
		sched_json_str(&d, t->sequence ? t->sequence : "");
		buf_adds(&d, ",\"step\":");
		sched_json_str(&d, t->step ? t->step : "");
		sep = ",";
	}
	if (key && value) {
		buf_adds(&d, sep);
		sched_json_str(&d, key);
		buf_addc(&d, ':');
		sched_json_str(&d, value);
	}
	buf_addc(&d, '}');
	char *json = buf_steal(&d);
	if (store_event_add(s->store, lead_id, touch_id, kind, now, json) != 0)
		log_err("sched: cannot record %s event for touch %lld", kind, (long long)touch_id);
	free(json);
}

/* One touch's writes: their own transaction, or a savepoint inside a batch's transaction. */
static int sched_write_begin(struct sched *s)
{
	return s->batch ? store_part_begin(s->store) : store_begin(s->store);
}

static int sched_write_end(struct sched *s, int rc)
{
	if (s->batch)
		return store_part_end(s->store, rc == 0) ? DRIP_ESTORE : rc;
	if (rc == 0)
		return store_commit(s->store);
	store_rollback(s->store);
	return rc;
}

/* Finishes a touch that will not be sent, with an event that says why; 0 when it did. */
static int sched_give_up(struct sched *s, const struct touch *t, const char *state,
			 const char *kind, const char *reason, int64_t now)
{
	int rc = sched_write_begin(s);
	if (rc)
		return rc;
	if ((rc = store_touch_finish(s->store, t->id, state, reason, now)) == 0) {
		sched_event(s, t->lead_id, t->id, kind, now, t, "reason", reason);
		if (strcmp(state, "failed") == 0)
			store_enrolment_end(s->store, t->enrolment_id, "exited", now);
	}
	if ((rc = sched_write_end(s, rc)) != 0)
		log_err("sched: cannot finish touch %lld", (long long)t->id);
	log_warn("sched: touch %lld %s: %s", (long long)t->id, state, reason);
	return rc;
}

struct sched_tracker {
	const struct token_keys *keys;
	const char *base;
	int64_t touch_id;
	struct sched_mail *mail;
};

/* A signed tracking URL for `kind` ("c" clicks carry the link index). */
static char *sched_token_url(const struct sched_tracker *tr, enum token_kind kind, uint32_t link)
{
	struct token_claims cl = { .kind = kind, .touch_id = tr->touch_id, .link = link };
	char tok[TOKEN_MAX_LEN];
	token_sign(tr->keys, &cl, TOKEN_URL, tok, sizeof(tok));
	return xasprintf("%s/%c/%s", tr->base, (char)kind, tok);
}

static char *sched_click_url(void *arg, size_t index, const char *url, const char *tag)
{
	struct sched_tracker *tr = arg;
	struct sched_mail *m = tr->mail;
	m->links = xrealloc(m->links, (m->nlinks + 1) * sizeof(*m->links));
	m->links[m->nlinks].url = xstrdup(url);
	m->links[m->nlinks].tag = xstrdup(tag);
	m->nlinks++;
	return sched_token_url(tr, TOKEN_CLICK, (uint32_t)index);
}

void sched_mail_clear(struct sched_mail *m)
{
	for (size_t i = 0; i < m->nlinks; i++) {
		free(m->links[i].url);
		free(m->links[i].tag);
	}
	free(m->links);
	free(m->message_id);
	free(m->envelope_from);
	free(m->subject);
	buf_free(&m->data);
	memset(m, 0, sizeof(*m));
}

int sched_compose(struct store *st, const struct content *c, const struct config *cfg,
		  const struct token_keys *keys, const struct lead *lead, const struct touch *t,
		  int64_t now, struct sched_mail *out, char *err, size_t errlen)
{
	const struct content_sequence *seq = content_sequence(c, t->sequence);
	const struct content_step *step = seq ? content_step(seq, t->step, NULL) : NULL;
	struct render_out r;
	char *root_id = NULL, *root_subject = NULL, addr[256], to_name[600];
	int rc;

	memset(out, 0, sizeof(*out));
	if (!step)
		return errf(err, errlen, DRIP_ENOT_FOUND, "content has no step %s/%s any more",
			    t->sequence, t->step);
	out->variant = content_variant(step, lead->email);
	/* Every message can be unsubscribed from; tracked sequences get rewritten links (and
	 * a pixel when they ask). Without secrets (unit tests) nothing is signed. */
	struct sched_tracker tr = {
		.keys = keys, .base = cfg->tracking.base_url, .touch_id = t->id, .mail = out
	};
	char *open_url = NULL, *unsub_url = NULL;
	struct render_tracking trk = { 0 };
	if (keys) {
		unsub_url = sched_token_url(&tr, TOKEN_UNSUBSCRIBE, 0);
		trk.unsubscribe_url = unsub_url;
		if (seq->track) {
			trk.click_url = sched_click_url;
			trk.arg = &tr;
			/* Evidence for the tracking listener: a click on it is a scanner's. */
			trk.honeypot_target = cfg->tracking.base_url;
		}
		/* Opt-in: a lone 1x1 image costs 2-2.8 SpamAssassin points (HTML_IMAGE_ONLY_*)
		 * on a short message, and a click proves an open anyway. */
		if (seq->pixel) {
			open_url = sched_token_url(&tr, TOKEN_OPEN, 0);
			trk.open_url = open_url;
		}
	}
	rc = render_touch(c, seq, step->variants[out->variant], lead, &trk, &r, err, errlen);
	free(open_url);
	if (rc) {
		free(unsub_url);
		sched_mail_clear(out);
		return rc;
	}
	struct config_account acct;
	if (!config_account(cfg, seq->account, &acct))
		config_account(cfg, NULL, &acct);
	const char *from = *seq->from ? seq->from : acct.from;
	message_address(from, addr, sizeof(addr));
	snprintf(to_name, sizeof(to_name), "%s%s%s", lead->first_name,
		 *lead->first_name && *lead->last_name ? " " : "", lead->last_name);
	out->message_id = message_make_id(from, t->id);
	out->envelope_from = xstrdup(addr);
	/* Replies and bounces find their way back to this touch through signed addresses,
	 * where the config names the domains that deliver them into the inbox. */
	char reply_to[TOKEN_MAX_LEN + 300] = "";
	if (keys && *cfg->inbox.reply_domain) {
		struct token_claims cl = { .kind = TOKEN_REPLY, .touch_id = t->id };
		char tok[TOKEN_MAX_LEN];
		if (token_sign(keys, &cl, TOKEN_ADDRESS, tok, sizeof(tok)))
			snprintf(reply_to, sizeof(reply_to), "reply+%s@%s", tok,
				 cfg->inbox.reply_domain);
	}
	if (keys && *cfg->inbox.bounce_domain) {
		struct token_claims cl = { .kind = TOKEN_BOUNCE, .touch_id = t->id };
		char tok[TOKEN_MAX_LEN];
		if (token_sign(keys, &cl, TOKEN_ADDRESS, tok, sizeof(tok))) {
			free(out->envelope_from);
			out->envelope_from =
				xasprintf("bounce+%s@%s", tok, cfg->inbox.bounce_domain);
		}
	}
	out->subject = xstrdup(r.subject);
	/* A prospect follow-up answers the first note of its thread: same subject, threaded. */
	if (seq->mode == CONTENT_PROSPECT && t->step_index > 0 &&
	    store_touch_thread_root(st, t->enrolment_id, &root_id, &root_subject) == 0) {
		free(out->subject);
		out->subject = strncasecmp(root_subject, "Re:", 3) == 0
				       ? xstrdup(root_subject)
				       : xasprintf("Re: %s", root_subject);
	}
	char *mailto = xasprintf("mailto:%s?subject=unsubscribe", addr);
	struct message_spec spec = {
		.unsubscribe_url = unsub_url,
		.unsubscribe_mailto = unsub_url ? mailto : NULL,
		.from = from,
		.reply_to = reply_to,
		.to_name = to_name,
		.to_addr = lead->email,
		.subject = out->subject,
		.message_id = out->message_id,
		.in_reply_to = root_id,
		.references = root_id,
		.date = now,
		.text = r.text,
		.html = seq->mode == CONTENT_NURTURE ? r.html : NULL,
	};
	rc = message_build(&spec, &out->data, err, errlen);
	free(mailto);
	free(unsub_url);
	free(root_id);
	free(root_subject);
	render_out_clear(&r);
	if (rc)
		sched_mail_clear(out);
	return rc;
}

int sched_conditions(struct store *st, const struct content *c, const struct lead *lead,
		     const struct touch *t, bool *send, char *why, size_t whylen)
{
	const struct content_sequence *seq = content_sequence(c, t->sequence);
	const struct content_step *step = seq ? content_step(seq, t->step, NULL) : NULL;
	bool when = true, unless = false;
	int rc;
	*send = true;
	if (!step)
		return 0;
	if ((rc = journey_cond_holds(st, lead, seq->name, step->when, &when)))
		return rc;
	if (step->unless && (rc = journey_cond_holds(st, lead, seq->name, step->unless, &unless)))
		return rc;
	if (!when)
		snprintf(why, whylen, "skipped: the step's \"when\" does not hold");
	else if (unless)
		snprintf(why, whylen, "skipped: the step's \"unless\" holds");
	*send = when && !unless;
	return 0;
}

/* Finishes a step whose condition says no and moves the lead to the next one. */
static int sched_skip(struct sched *s, const struct touch *t, const char *why, int64_t now)
{
	int rc = sched_write_begin(s);
	if (rc)
		goto out;
	if ((rc = store_touch_finish(s->store, t->id, "skipped", why, now)) == 0)
		rc = journey_step_done(s->store, s->content, t, now);
	rc = sched_write_end(s, rc);
out:
	if (rc)
		log_err("sched: cannot skip touch %lld: %s", (long long)t->id, drip_strerror(rc));
	else
		log_info("sched: touch %lld %s/%s %s", (long long)t->id, t->sequence, t->step, why);
	return rc;
}

/* Why a touch waits, as sched_window_opens found it (for dripctl explain). */
struct sched_why {
	int64_t gap_until; /* min_gap after the lead's last touch, or 0 */
	const char *zone; /* the zone the window and skip dates were read in */
	int64_t window_opens; /* the window's next opening from then on, or 0 */
	int skipped; /* skip dates passed over */
	int32_t first_skipped;
};

/*
 * When touch `t` may go: not before min_gap after the lead's last touch, inside its
 * sequence's send window, and not on one of journey.json's skip dates, all in the lead's
 * zone (then the sequence's, then the config's). A touch that has to wait gets a per-lead
 * jitter of up to SCHED_JITTER seconds so a thousand leads do not all go at 09:00:00.
 */
static int64_t sched_window_opens_for(const struct config *cfg, const struct content *c,
				      struct store *st, const struct lead *lead,
				      const struct touch *t, int64_t now, struct sched_why *why)
{
	struct sched_why unused;
	if (!why)
		why = &unused;
	memset(why, 0, sizeof(*why));
	const struct content_sequence *seq = content_sequence(c, t->sequence);
	const struct clock_window *w = seq ? seq->window : NULL;
	const struct clock_zone *z = NULL;
	int64_t from = now, last = 0;
	char err[256];
	if (cfg->delivery.min_gap > 0 && store_lead_last_sent(st, lead->id, &last) == 0 &&
	    last > 0 && now < last + cfg->delivery.min_gap)
		from = why->gap_until = last + cfg->delivery.min_gap;
	if (!w && from == now && c->nskip_dates == 0)
		return now;
	const char *names[] = { lead->tz, seq->timezone, cfg->timezone };
	for (size_t i = 0; i < 3 && !z; i++) {
		if (!names[i] || !*names[i])
			continue;
		if (!(z = clock_zone_get(names[i], err, sizeof(err))))
			log_warn("sched: %s: %s", lead->email, err);
		else
			why->zone = clock_zone_name(z);
	}
	int64_t opens = clock_window_next(w, z, from);
	if (w)
		why->window_opens = opens;
	/* Skipped dates: start again from the next local midnight. A year of them at most. */
	for (int i = 0; i < 400; i++) {
		struct tm tm;
		clock_zone_local(z, opens, &tm);
		int32_t date = (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
		if (!content_skip_date(c, date))
			break;
		if (why->skipped++ == 0)
			why->first_skipped = date;
		opens = clock_window_next(
			w, z, opens + 86400 - (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec));
	}
	if (opens <= now)
		return now;
	uint64_t h = util_fnv1a(UTIL_FNV1A_SEED, lead->email, strlen(lead->email));
	int64_t at = opens + (int64_t)(h % SCHED_JITTER);
	/* The jitter never pushes a touch past the window's end. */
	return clock_window_next(w, z, at) == at ? at : opens;
}

static int64_t sched_window_opens(struct sched *s, const struct lead *lead, const struct touch *t,
				  int64_t now, struct sched_why *why)
{
	return sched_window_opens_for(s->cfg, s->content, s->store, lead, t, now, why);
}

int64_t sched_send_time(const struct config *cfg, const struct content *c, struct store *st,
			const struct lead *lead, const struct touch *t, int64_t now)
{
	return sched_window_opens_for(cfg, c, st, lead, t, now, NULL);
}

static struct sched_domain *sched_domain_of(struct sched_account *a, const char *domain)
{
	for (size_t i = 0; i < a->cfg.ndomains; i++)
		if (strcmp(a->domains[i].domain, domain) == 0)
			return &a->domains[i];
	return NULL;
}

/* Counts n sends at `at` against an account's caps and its limited domain's, if any (n -1:
 * takes one back). */
static void sched_count_send(struct sched_account *a, struct sched_domain *d, int64_t at, int64_t n)
{
	governor_window_move(&a->sent, at, n);
	if (d)
		governor_window_move(&d->sent, at, n);
}

/* Hands a job to its account's threads and remembers the flight (taken over from f). */
static void sched_submit(struct sched *s, struct sched_flight *f, int64_t now)
{
	if (s->nflights == s->flights_cap) {
		s->flights_cap = s->flights_cap ? s->flights_cap * 2 : 16;
		s->flights = xrealloc(s->flights, s->flights_cap * sizeof(*s->flights));
	}
	struct mailer_job *job = f->job;
	f->job = NULL;
	s->flights[s->nflights++] = *f;
	if (f->d)
		f->d->in_flight++;
	sched_count_send(f->a, f->d, f->at, 1);
	governor_started(&f->a->gov, now);
	mailer_submit(f->a->mailer, job);
}

/* Drops a flight that was never handed over (its batch did not commit). */
static void sched_flight_free(struct sched_flight *f)
{
	mailer_job_free(f->job);
	store_touch_clear(&f->t);
}

/*
 * Ends a touch's flight, which moves to *f (its touch with it); false when there was none
 * (an outcome recorded again after its batch failed): then *f is zeroed but for the
 * default account.
 */
static bool sched_flight_done(struct sched *s, int64_t touch_id, struct sched_flight *f)
{
	for (size_t i = 0; i < s->nflights; i++) {
		if (s->flights[i].t.id != touch_id)
			continue;
		*f = s->flights[i];
		if (f->d)
			f->d->in_flight--;
		s->flights[i] = s->flights[--s->nflights];
		return true;
	}
	*f = (struct sched_flight){ .a = &s->accts[0] };
	return false;
}

/*
 * A taken touch that could not be moved on (an error, not a verdict): parked queued, as a
 * claim left it before, so the passes that follow leave it alone until the next start.
 */
static void sched_park(struct sched *s, int64_t id, int64_t now)
{
	if (store_touch_queue(s->store, id, now) != 0)
		log_err("sched: cannot park touch %lld as queued", (long long)id);
}

/*
 * Builds the job for a taken touch (pending, in this transaction) and hands it over, or
 * finishes, postpones or leaves it with the reason.
 */
static void sched_dispatch(struct sched *s, int64_t id, int64_t now)
{
	struct touch t;
	struct lead lead;
	struct sched_mail mail;
	char err[512];
	bool send;
	bool park = true; /* until the touch is moved on */

	memset(&lead, 0, sizeof(lead));
	memset(&mail, 0, sizeof(mail));
	if (store_touch_get(s->store, id, &t) != 0) {
		sched_park(s, id, now);
		return;
	}
	if (store_lead_by_id(s->store, t.lead_id, &lead) != 0) {
		park = sched_give_up(s, &t, "failed", "error", "lead not found", now) != 0;
		goto out;
	}
	if (strcmp(lead.status, "active") != 0) {
		snprintf(err, sizeof(err), "lead is %s", lead.status);
		park = sched_give_up(s, &t, "skipped", "error", err, now) != 0;
		goto out;
	}
	/* Opt-outs win: checked again at the moment of sending. */
	char reason[64];
	/* The quick probe first: the keyed hash of the address (an HMAC) only when the list
	 * holds hashes at all, and the reason only for an address that is on it. */
	if (store_suppressed_quick(s->store, lead.email, s->hashed) == 0) {
		if (store_suppressed(s->store, lead.email, reason, sizeof(reason)) != 0)
			snprintf(reason, sizeof(reason), "listed");
		snprintf(err, sizeof(err), "suppressed (%s)", reason);
		park = sched_give_up(s, &t, "skipped", "error", err, now) != 0;
		goto out;
	}
	if (sched_conditions(s->store, s->content, &lead, &t, &send, err, sizeof(err)) != 0) {
		log_err("sched: cannot evaluate the conditions of touch %lld; left queued",
			(long long)t.id);
		goto out;
	}
	if (!send) {
		park = sched_skip(s, &t, err, now) != 0;
		goto out;
	}
	int64_t opens = sched_window_opens(s, &lead, &t, now, NULL);
	if (opens > now) {
		if (store_touch_postpone(s->store, t.id, opens, now) != 0) {
			log_err("sched: cannot postpone touch %lld", (long long)t.id);
			goto out;
		}
		park = false;
		log_debug("sched: touch %lld waits %llds for its send window", (long long)t.id,
			  (long long)(opens - now));
		goto out;
	}
	struct sched_account *a = sched_account_of(s, t.sequence);
	char domain[256];
	const char *at = strrchr(lead.email, '@');
	snprintf(domain, sizeof(domain), "%s", at ? at + 1 : "");
	for (char *p = domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	struct sched_domain *dl = sched_domain_of(a, domain);
	if (a->allow <= 0 || (dl && dl->allow <= 0)) {
		/* More than its account or domain may start in this pass: it stays pending;
		 * the next claim leaves it out until the limit lets it go. */
		park = false;
		goto out;
	}
	if (sched_compose(s->store, s->content, s->cfg, s->keys, &lead, &t, now, &mail, err,
			  sizeof(err)) != 0) {
		park = sched_give_up(s, &t, "failed", "error", err, now) != 0;
		goto out;
	}
	/* Committed as sending before any thread sees it: a crash from here on leaves the
	 * touch uncertain, never silently re-sent. The links go first and the touch's UPDATE
	 * last, each one statement (atomic by itself), so no savepoint is needed: links
	 * written for a touch that then failed to go sending are keyed by it and written over
	 * when it is dispatched again. */
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < mail.nlinks; i++)
		rc = store_link_add(s->store, t.id, (int64_t)i, mail.links[i].url,
				    mail.links[i].tag);
	if (rc == 0)
		rc = store_touch_sending_note(s->store, t.id, mail.message_id, a->cfg.name, domain,
					      mail.subject, (int64_t)mail.variant, now);
	if (rc) {
		log_err("sched: cannot mark touch %lld sending; left for recovery",
			(long long)t.id);
		goto out;
	}
	park = false;
	/* The touch as committed, kept with its flight for recording the outcome. */
	free(t.message_id);
	t.message_id = mail.message_id;
	mail.message_id = NULL;
	free(t.account);
	t.account = xstrdup(a->cfg.name);
	free(t.state);
	t.state = xstrdup("sending");
	t.attempts++;
	if (!t.first_attempt_at)
		t.first_attempt_at = now;
	struct mailer_job *job = xcalloc(1, sizeof(*job));
	job->touch_id = t.id;
	job->envelope_from = mail.envelope_from;
	mail.envelope_from = NULL;
	job->rcpt = xstrdup(lead.email);
	job->len = mail.data.len;
	job->data = buf_steal(&mail.data);
	a->allow--;
	if (dl)
		dl->allow--;
	log_debug("sched: touch %lld (%s/%s) to %s handed to a sender thread", (long long)t.id,
		  t.sequence, t.step, lead.email);
	/* Dispatch runs inside a claim's transaction: handed over once it has committed. The
	 * flight owns the touch now. */
	s->jobs[s->njobs++] =
		(struct sched_flight){ .t = t, .job = job, .a = a, .d = dl, .at = now };
	memset(&t, 0, sizeof(t));
out:
	if (park)
		sched_park(s, t.id, now);
	sched_mail_clear(&mail);
	store_lead_clear(&lead);
	store_touch_clear(&t);
}

static void sched_arm(struct sched *s, int64_t now)
{
	int64_t due;
	s->next_wake = 0;
	if (s->draining)
		return;
	int64_t fall;
	bool have = store_touch_next_due(s->store, &due) == 0;
	if (have && due <= now) {
		/* Due but held back by a limit: wake when the first one lets go; with only
		 * busy threads holding it, an outcome coming back kicks the scheduler. */
		have = s->unblock_at != 0;
		due = s->unblock_at;
	}
	/* A lead's score fading under a fall threshold of journey.json (journey.c). */
	if (s->content && store_lead_next_fall(s->store, &fall) == 0) {
		if (fall <= now)
			fall = now + 1;
		if (!have || fall < due)
			due = fall, have = true;
	}
	if (!have) {
		uv_timer_stop(&s->timer);
		return;
	}
	s->next_wake = due;
	uv_timer_start(&s->timer, sched_timer_cb, clock_delay_ms(s->clock, due, now), 0);
}

/*
 * How many more messages a cap of `cap` per `span` seconds allows now (INT64_MAX without a
 * cap), from the sends in `w`; when none, *refill becomes at least the time the oldest send
 * in the window ages out.
 */
static int64_t sched_window_allow(struct governor_window *w, int64_t span, int64_t cap, int64_t now,
				  int64_t *refill)
{
	int64_t oldest;
	if (cap <= 0)
		return INT64_MAX;
	int64_t count = governor_window_count(w, span, now, &oldest);
	if (count < cap)
		return cap - count;
	if (oldest + span > *refill)
		*refill = oldest + span;
	return 0;
}

static void sched_send_seen(void *arg, const char *account, const char *rcpt_domain, int64_t at)
{
	struct sched *s = arg;
	for (size_t i = 0; i < s->naccts; i++) {
		struct sched_account *a = &s->accts[i];
		if (strcmp(a->cfg.name, account) != 0)
			continue;
		sched_count_send(a, sched_domain_of(a, rcpt_domain), at, 1);
		return;
	}
}

/*
 * Reads the sends of the last 24 hours into the accounts' and domains' windows, when they
 * may differ from the database: at start, after a refused write, after `touch resolve`.
 * Otherwise the windows move with each hand-over and outcome, and a pass asks no SQL.
 */
static void sched_sends_load(struct sched *s, int64_t now)
{
	if (!s->sends_stale)
		return;
	for (size_t i = 0; i < s->naccts; i++) {
		struct sched_account *a = &s->accts[i];
		governor_window_clear(&a->sent);
		for (size_t j = 0; j < a->cfg.ndomains; j++)
			governor_window_clear(&a->domains[j].sent);
	}
	if (store_sends_each(s->store, now - GOVERNOR_DAY, sched_send_seen, s) == 0)
		s->sends_stale = false;
	else
		log_warn("sched: cannot read the recent sends for the caps; trying again");
}

void sched_sends_changed(struct sched *s)
{
	s->sends_stale = true;
}

/* The warm-up ramp's cap for today, or -1; *next_day is when the ramp next grows. */
static int64_t sched_warmup(const struct sched_account *a, int64_t now, int64_t *next_day)
{
	const struct config_warmup *w = &a->cfg.warmup;
	int64_t cap = governor_warmup_cap(w->start, w->days, w->from, w->to, now);
	*next_day = now < w->start ? w->start + 86400 : now + 86400 - (now - w->start) % 86400;
	return cap;
}

/*
 * The day's cap in force: per_day, or the warm-up ramp's cap for today when that is lower
 * (<= 0: none). *ramped says it is the ramp's; *next_day is when the ramp next grows.
 */
static int64_t sched_day_cap(const struct sched_account *a, int64_t now, bool *ramped,
			     int64_t *next_day)
{
	int64_t per_day = a->cfg.per_day, ramp = sched_warmup(a, now, next_day);
	*ramped = ramp >= 0 && (per_day <= 0 || ramp < per_day);
	return *ramped ? ramp : per_day;
}

/*
 * What an account's caps allow now: per_hour, per_day and the warm-up ramp (its daily cap
 * over any rolling 24 hours). When nothing, *refill says when the first room comes.
 */
static int64_t sched_account_allowance(struct sched_account *a, int64_t now, int64_t *refill)
{
	bool ramped;
	int64_t next_day, per_day = sched_day_cap(a, now, &ramped, &next_day);
	*refill = 0;
	int64_t hour = sched_window_allow(&a->sent, GOVERNOR_HOUR, a->cfg.per_hour, now, refill);
	int64_t day_refill = 0;
	int64_t day = sched_window_allow(&a->sent, GOVERNOR_DAY, per_day, now, &day_refill);
	if (day == 0) {
		/* A ramp's cap grows at the next day: that may come before a send ages out. */
		if (ramped && next_day < day_refill)
			day_refill = next_day;
		if (day_refill > *refill)
			*refill = day_refill;
	}
	return hour < day ? hour : day;
}

static void sched_wake_at(int64_t *unblock_at, int64_t until, int64_t now)
{
	if (until > now && (!*unblock_at || until < *unblock_at))
		*unblock_at = until;
}

/*
 * Plans a pass: how many messages each account, and each limited domain of it, may start
 * now (its free threads as the governor allows, its caps), and what the claim must leave
 * out. Returns the total, and the claim's filter in *blocked (NULL: none; the caller frees).
 */
static size_t sched_plan(struct sched *s, int64_t now, char **blocked)
{
	const struct governor_limits *gl = &s->cfg->governor;
	cJSON *out = NULL;
	size_t total = 0;
	s->unblock_at = 0;
	sched_sends_load(s, now);
	for (size_t i = 0; i < s->naccts; i++) {
		struct sched_account *a = &s->accts[i];
		size_t threads = a->mailer ? mailer_threads(a->mailer) : 0;
		size_t busy = a->mailer ? mailer_busy(a->mailer) : 0;
		size_t conc = governor_concurrency(&a->gov, threads);
		int64_t next = governor_next_start(&a->gov, gl, now), refill = 0;
		a->allow = conc > busy ? (int64_t)(conc - busy) : 0;
		if (a->allow > 0 && next > now) {
			a->allow = 0;
			sched_wake_at(&s->unblock_at, next, now);
		}
		if (a->allow > 0) {
			int64_t caps = sched_account_allowance(a, now, &refill);
			if (caps < a->allow)
				a->allow = caps;
			sched_wake_at(&s->unblock_at, refill, now);
		}
		if (a->gov.state == GOVERNOR_PAUSED)
			sched_wake_at(&s->unblock_at, a->gov.until, now);
		if (!out)
			out = cJSON_CreateArray();
		if (a->allow <= 0) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddItemToObject(o, "s", cJSON_Parse(a->seqs));
			cJSON_AddItemToArray(out, o);
			continue;
		}
		cJSON *doms = NULL;
		for (size_t j = 0; j < a->cfg.ndomains; j++) {
			struct sched_domain *d = &a->domains[j];
			int64_t drefill = 0;
			d->allow = INT64_MAX;
			if (d->concurrency > 0)
				d->allow = d->concurrency - (int64_t)d->in_flight;
			int64_t w = sched_window_allow(&d->sent, GOVERNOR_HOUR, d->per_hour, now,
						       &drefill);
			if (w < d->allow)
				d->allow = w;
			sched_wake_at(&s->unblock_at, drefill, now);
			if (d->allow > 0)
				continue;
			if (!doms)
				doms = cJSON_CreateArray();
			cJSON_AddItemToArray(doms, cJSON_CreateString(d->domain));
		}
		if (doms) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddItemToObject(o, "s", cJSON_Parse(a->seqs));
			cJSON_AddItemToObject(o, "d", doms);
			cJSON_AddItemToArray(out, o);
		}
		total += (size_t)a->allow;
	}
	*blocked = NULL;
	if (out && cJSON_GetArraySize(out) > 0) {
		char *json = cJSON_PrintUnformatted(out);
		*blocked = xstrdup(json);
		cJSON_free(json);
	}
	cJSON_Delete(out);
	return total;
}

/* Feeds the governors what the event feed noted and what time alone changes. */
static void sched_governors(struct sched *s, int64_t now)
{
	for (size_t i = 0; i < s->nnotes; i++) {
		struct touch t;
		if (store_touch_get(s->store, s->notes[i].touch_id, &t) != 0)
			continue;
		struct sched_account *a = sched_account_named(s, t.account);
		if (*t.account &&
		    governor_record(&a->gov, &s->cfg->governor, now, s->notes[i].outcome))
			log_warn("sched: account %s is %s: %s", a->cfg.name,
				 governor_state_name(a->gov.state), a->gov.reason);
		store_touch_clear(&t);
	}
	s->nnotes = 0;
	for (size_t i = 0; i < s->naccts; i++) {
		struct sched_account *a = &s->accts[i];
		if (governor_tick(&a->gov, &s->cfg->governor, now))
			log_warn("sched: account %s is %s: %s", a->cfg.name,
				 governor_state_name(a->gov.state), a->gov.reason);
	}
}

/* Leads whose decaying score crossed a fall threshold move back (journey_falls_due); one
 * indexed lookup when none is due. */
static void sched_falls(struct sched *s, int64_t now)
{
	int64_t fall;
	size_t n = 1;
	while (!s->draining && s->content && n > 0 && store_lead_next_fall(s->store, &fall) == 0 &&
	       fall <= now) {
		int rc = store_begin(s->store);
		if (rc == 0)
			rc = journey_falls_due(s->store, s->content, now, 64, &n);
		if (rc == 0)
			rc = store_commit(s->store);
		else
			store_rollback(s->store);
		if (rc) {
			log_warn(
				"sched: cannot move back the leads whose score faded; trying again "
				"in a second");
			return;
		}
	}
}

/*
 * One claim: what the plan allows, claimed and dispatched. Alone (`open` false) it commits
 * the claim as sending in one transaction and only then hands the jobs to the sender
 * threads (at most once per step). With `open`, the transaction that holds a drain's
 * outcomes is open already: the claim joins it and its jobs wait in s->jobs for the
 * caller's commit (sched_results_end). Returns 1 when it claimed something, 0 when there
 * was nothing to claim, -1 when the database refused.
 */
static int sched_claim_once(struct sched *s, int64_t now, bool open)
{
	int64_t ids[SCHED_CLAIM_MAX];
	size_t n;
	char *blocked = NULL;
	size_t want = sched_plan(s, now, &blocked);
	if (want == 0) {
		free(blocked);
		return 0;
	}
	if (want > SCHED_CLAIM_MAX)
		want = SCHED_CLAIM_MAX;
	if (!open) {
		/* The claim and the hand-over's writes in one transaction: one commit. */
		if (store_begin(s->store) != 0) {
			free(blocked);
			log_warn("sched: cannot claim due touches; retrying in %d ms",
				 SCHED_HELD_MS);
			return -1;
		}
		s->batch = true;
		s->njobs = 0;
	}
	uint64_t claim_start = uv_hrtime();
	int rc = store_touch_take(s->store, now, want, blocked, ids, &n);
	free(blocked);
	if (rc == 0 && n > 0)
		log_debug("sched: claimed %zu touch(es) in %.3f ms", n,
			  (double)(uv_hrtime() - claim_start) / 1e6);
	if (rc != 0 || n == 0) {
		if (!open) {
			s->batch = false;
			store_rollback(s->store);
		}
		if (rc == 0)
			return 0;
		/* The database refused (busy, full): hold back and probe it in a while. */
		log_warn("sched: cannot claim due touches; retrying in %d ms", SCHED_HELD_MS);
		return -1;
	}
	/* Only a forgotten lead adds a hash, and no command runs during this dispatch. */
	if (store_suppressed_any_hashed(s->store, &s->hashed) != 0)
		s->hashed = true;
	/* After a refused write the transaction may be gone (SQLite rolls back on a full disk
	 * or an I/O error): the rest stay pending rather than be written outside it. */
	for (size_t i = 0; i < n && store_last_error(s->store, NULL, 0) == STORE_FAIL_NONE; i++)
		sched_dispatch(s, ids[i], now);
	if (open)
		return 1;
	s->batch = false;
	if (store_commit(s->store) == 0) {
		for (size_t i = 0; i < s->njobs; i++)
			sched_submit(s, &s->jobs[i], now);
	} else {
		log_err("sched: cannot commit a claim of %zu touches; they stay pending until "
			"the database takes writes",
			n);
		for (size_t i = 0; i < s->njobs; i++)
			sched_flight_free(&s->jobs[i]);
	}
	s->njobs = 0;
	if (store_last_error(s->store, NULL, 0) != STORE_FAIL_NONE)
		return -1; /* a write of this claim failed: its touch may be left queued */
	return 1;
}

static void sched_run(struct sched *s)
{
	int64_t now = clock_now(s->clock);
	if (s->paused) {
		s->next_wake = 0;
		uv_timer_stop(&s->timer);
		return; /* idle: resuming kicks the scheduler */
	}
	if (s->held[0] && !sched_unhold(s, now))
		return; /* sched_hold re-armed the timer */
	store_error_clear(s->store);
	sched_governors(s, now);
	sched_falls(s, now);
	while (!s->draining && s->content) {
		int rc = sched_claim_once(s, now, false);
		if (rc < 0) {
			sched_hold(s);
			return;
		}
		if (rc == 0)
			break;
	}
	sched_arm(s, now);
}

static void sched_timer_cb(uv_timer_t *t)
{
	sched_run(t->data);
}

/* retry_min, doubling with each attempt, never more than retry_max. */
static int64_t sched_backoff(const struct config *cfg, int64_t attempts)
{
	int64_t d = cfg->delivery.retry_min, max = cfg->delivery.retry_max;
	for (int64_t i = 1; i < attempts && d < max; i++)
		d *= 2;
	return d < max ? d : max;
}

/* A hard bounce: the touch is bounced, and the journey suppresses the address and stops. */
static int sched_bounce(struct sched *s, const struct touch *t, const struct mailer_result *r,
			int64_t now)
{
	struct lead lead;
	char err[256];
	int rc = store_touch_finish(s->store, t->id, "bounced", r->detail, now);
	if (rc || (rc = store_lead_by_id(s->store, t->lead_id, &lead)))
		return rc;
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "code", r->code);
	cJSON_AddStringToObject(d, "reason", r->detail);
	cJSON_AddStringToObject(d, "source", "smtp");
	char *json = cJSON_PrintUnformatted(d);
	rc = journey_on_event(s->store, s->content, &lead, t->id, "bounce", json, now, err,
			      sizeof(err));
	cJSON_free(json);
	cJSON_Delete(d);
	store_lead_clear(&lead);
	return rc;
}

/*
 * Moves the lead on after a send. The message went out whatever happens here, so a failure
 * undoes only this part and is recorded as an error event; the "sent" record stays.
 */
static int sched_next_step(struct sched *s, const struct touch *t, int64_t now)
{
	int rc = journey_step_done(s->store, s->content, t, now);
	if (rc == DRIP_ESTORE && store_last_error(s->store, NULL, 0) != STORE_FAIL_NONE)
		return rc; /* the database refused a write: the batch is lost whole */
	if (rc) {
		log_err("sched: touch %lld was sent but the lead could not be moved on: %s",
			(long long)t->id, drip_strerror(rc));
		sched_event(s, t->lead_id, t->id, "error", now, t, "reason",
			    "sent, but the next step could not be scheduled");
	}
	return 0;
}

void sched_results_begin(struct sched *s)
{
	s->nbatch_copy = 0;
	if (s->held[0])
		return; /* the outcomes wait in `unrecorded` */
	store_error_clear(s->store);
	s->batch = store_begin(s->store) == 0;
	if (!s->batch)
		sched_hold(s);
}

void sched_results_end(struct sched *s)
{
	if (!s->batch)
		return;
	bool failed = store_last_error(s->store, NULL, 0) != STORE_FAIL_NONE;
	/* The threads these outcomes freed get their next touches in the same transaction:
	 * one commit records the outcomes and marks the new touches sending, so a crash still
	 * leaves at most one touch per thread sending, with one commit where there were three
	 * (outcomes, claim, sending). */
	s->njobs = 0;
	if (!failed && !s->draining && !s->paused && s->content && s->nunrecorded == 0)
		failed = sched_claim_once(s, clock_now(s->clock), true) < 0 ||
			 store_last_error(s->store, NULL, 0) != STORE_FAIL_NONE;
	s->batch = false;
	if (failed)
		store_rollback(s->store);
	if (failed || store_commit(s->store) != 0) {
		/* Nothing of the batch was recorded: keep every outcome for when it can be
		 * (the touches it claimed are pending again with the rollback). */
		log_err("sched: cannot record a batch of %zu outcome(s); they are kept and "
			"recorded once the database takes writes",
			s->nbatch_copy);
		for (size_t i = 0; i < s->nbatch_copy; i++)
			sched_push_result(&s->unrecorded, &s->nunrecorded, &s->capunrecorded,
					  &s->batch_copy[i]);
		for (size_t i = 0; i < s->njobs; i++)
			sched_flight_free(&s->jobs[i]);
		sched_hold(s);
	} else {
		int64_t now = clock_now(s->clock);
		for (size_t i = 0; i < s->njobs; i++)
			sched_submit(s, &s->jobs[i], now);
	}
	s->njobs = 0;
	s->nbatch_copy = 0;
	/* With every thread busy again, the next outcome comes back here: a pass of the
	 * scheduler now would find nothing to do (and cost ~10 us a message). Otherwise it
	 * claims what the limits held back, or arms the timer for the next due touch. */
	if (sched_busy(s) < sched_threads(s))
		sched_kick(s);
}

/* Counts an outcome against its account's reputation, and says when the state changes. */
static void sched_govern(struct sched *s, struct sched_account *a, const struct mailer_result *r,
			 int64_t now)
{
	enum governor_outcome o;
	switch (r->outcome) {
	case MAILER_OK:
		o = GOVERNOR_SENT;
		break;
	case MAILER_TEMPFAIL:
		o = GOVERNOR_DEFERRED;
		break;
	case MAILER_BOUNCE:
	case MAILER_PERMFAIL:
		o = GOVERNOR_BOUNCED;
		break;
	default:
		return; /* uncertain: says nothing about the account */
	}
	if (governor_record(&a->gov, &s->cfg->governor, now, o))
		log_warn("sched: account %s is %s: %s", a->cfg.name,
			 governor_state_name(a->gov.state), a->gov.reason);
}

void sched_on_result(struct sched *s, const struct mailer_result *r)
{
	bool batch = s->batch;
	sched_take(s, r);
	if (s->draining) {
		if (sched_busy(s) == 0 && s->drain_cb) {
			void (*cb)(void *) = s->drain_cb;
			s->drain_cb = NULL;
			if (s->nunrecorded)
				log_err("sched: %zu outcome(s) could not be recorded before the "
					"exit: "
					"their touches become uncertain at the next start",
					s->nunrecorded);
			cb(s->drain_arg);
		}
		return;
	}
	if (!batch)
		sched_kick(s); /* in a batch, sched_results_end decides */
}

/* Records one outcome in the store and moves the lead along. */
static void sched_record(struct sched *s, const struct mailer_result *r)
{
	int64_t now = clock_now(s->clock);
	struct sched_flight f;
	int rc = 0;
	bool flew = sched_flight_done(s, r->touch_id, &f);
	struct touch t = f.t;
	sched_govern(s, f.a, r, now);
	if (!flew)
		s->sends_stale = true; /* its send's time and domain are in the database only */
	if (!flew && store_touch_get(s->store, r->touch_id, &t) != 0) {
		log_err("sched: outcome for unknown touch %lld", (long long)r->touch_id);
		return;
	}
	/* A send in a drain's transaction takes no savepoint of its own: the touch's UPDATE is
	 * one statement, the event's failure is only logged, and moving the lead on has its own
	 * part (sched_next_step). */
	bool part = !(r->outcome == MAILER_OK && s->batch);
	if (part && (rc = sched_write_begin(s)) != 0)
		goto out;
	switch (r->outcome) {
	case MAILER_OK:
		rc = store_touch_sent(s->store, t.id, now);
		if (rc == 0) {
			sched_event(s, t.lead_id, t.id, "sent", now, &t, "message_id",
				    t.message_id);
			rc = sched_next_step(s, &t, now);
		}
		break;
	case MAILER_TEMPFAIL: {
		int64_t first = t.first_attempt_at ? t.first_attempt_at : now;
		if (now - first >= s->cfg->delivery.give_up) {
			/* Like an MTA's queue lifetime: past it, the touch fails for good. */
			rc = store_touch_finish(s->store, t.id, "failed", r->detail, now);
			if (rc == 0)
				sched_event(s, t.lead_id, t.id, "failed", now, &t, "reason",
					    "gave up after retrying");
			if (rc == 0)
				rc = store_enrolment_end(s->store, t.enrolment_id, "exited", now);
			if (rc == DRIP_ENOT_FOUND)
				rc = 0;
			break;
		}
		int64_t due = now + sched_backoff(s->cfg, t.attempts);
		rc = store_touch_defer(s->store, t.id, due, r->detail, now);
		if (rc == 0)
			sched_event(s, t.lead_id, t.id, "deferred", now, &t, "reason", r->detail);
		break;
	}
	case MAILER_PERMFAIL:
		rc = store_touch_finish(s->store, t.id, "failed", r->detail, now);
		if (rc == 0)
			sched_event(s, t.lead_id, t.id, "failed", now, &t, "reason", r->detail);
		if (rc == 0 && (rc = store_enrolment_end(s->store, t.enrolment_id, "exited",
							 now)) == DRIP_ENOT_FOUND)
			rc = 0;
		break;
	case MAILER_BOUNCE:
		rc = sched_bounce(s, &t, r, now);
		break;
	case MAILER_UNCERTAIN:
		/* The server may have the message: never re-sent without a person. */
		rc = store_touch_finish(s->store, t.id, "uncertain", r->detail, now);
		if (rc == 0)
			sched_event(s, t.lead_id, t.id, "uncertain", now, &t, "reason", r->detail);
		break;
	}
	if (part)
		rc = sched_write_end(s, rc);
out:
	if (rc == 0 && flew) {
		/* It no longer counts from its hand-over: from when it went, or not at all. */
		sched_count_send(f.a, f.d, f.at, -1);
		if (r->outcome == MAILER_OK)
			sched_count_send(f.a, f.d, now, 1);
	} else if (rc) {
		s->sends_stale = true;
	}
	if (rc)
		log_err("sched: cannot record the outcome of touch %lld: %s", (long long)t.id,
			drip_strerror(rc));
	else if (r->outcome == MAILER_OK)
		log_info("sched: touch %lld %s/%s sent (%s)", (long long)t.id, t.sequence, t.step,
			 r->detail);
	else
		log_warn("sched: touch %lld %s/%s %s: %s", (long long)t.id, t.sequence, t.step,
			 r->outcome == MAILER_TEMPFAIL    ? "deferred"
			 : r->outcome == MAILER_BOUNCE    ? "bounced"
			 : r->outcome == MAILER_UNCERTAIN ? "uncertain"
							  : "failed",
			 r->detail);
	store_touch_clear(&t);
}

void sched_drain(struct sched *s, void (*done)(void *arg), void *arg)
{
	s->draining = true;
	uv_timer_stop(&s->timer);
	if (sched_busy(s) == 0) {
		done(arg);
		return;
	}
	log_info("sched: waiting for %zu message(s) with the sender threads", sched_busy(s));
	s->drain_cb = done;
	s->drain_arg = arg;
}

static void sched_closed_cb(uv_handle_t *h)
{
	struct sched *s = h->data;
	content_unref(s->content);
	free(s->unrecorded);
	free(s->batch_copy);
	for (size_t i = 0; i < s->naccts; i++) {
		struct sched_account *a = &s->accts[i];
		for (size_t j = 0; j < a->cfg.ndomains; j++)
			governor_window_free(&a->domains[j].sent);
		governor_window_free(&a->sent);
		free(a->domains);
		free(a->seqs);
	}
	free(s->accts);
	/* Touches whose outcome never came back (the exit's wait ran out): the database has
	 * them sending, for the next start to find uncertain. */
	for (size_t i = 0; i < s->nflights; i++)
		store_touch_clear(&s->flights[i].t);
	free(s->flights);
	free(s);
}

void sched_close(struct sched *s)
{
	store_event_unlisten(s->store, sched_event_cb, s);
	for (size_t i = 0; i < s->naccts; i++)
		if (s->accts[i].owned)
			mailer_close(s->accts[i].mailer);
	uv_close((uv_handle_t *)&s->timer, sched_closed_cb);
}

static void sched_explain_line(cJSON *trace, const char *check, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void sched_explain_line(cJSON *trace, const char *check, bool ok, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "check", check);
	cJSON_AddBoolToObject(o, "ok", ok);
	cJSON_AddStringToObject(o, "detail", detail);
	cJSON_AddItemToArray(trace, o);
}

int sched_explain(struct sched *s, const struct lead *lead, cJSON *out)
{
	int64_t now = clock_now(s->clock), refill = 0;
	cJSON *trace = cJSON_AddArrayToObject(out, "trace");
	char when[32], reason[64], why[256];
	struct touch t;
	bool send = true, blocked = false;
	int rc;

	sched_explain_line(trace, "lead", strcmp(lead->status, "active") == 0,
			   "stage %s, status %s, score %g", lead->stage, lead->status,
			   s->content ? journey_score_shown(s->content, lead, now) : lead->score);
	blocked |= strcmp(lead->status, "active") != 0;
	if (store_suppressed(s->store, lead->email, reason, sizeof(reason)) == 0) {
		sched_explain_line(trace, "suppression", false,
				   "suppressed (%s): never mailed again", reason);
		blocked = true;
	}
	if (s->paused) {
		sched_explain_line(trace, "pause", false, "sending is paused (dripctl resume)");
		blocked = true;
	}
	rc = store_touch_next_for_lead(s->store, lead->id, &t);
	if (rc == DRIP_ENOT_FOUND) {
		sched_explain_line(
			trace, "next step", false,
			"nothing is scheduled: the lead finished its sequence or its stage "
			"has none");
		cJSON_AddStringToObject(out, "verdict", "nothing to send");
		return 0;
	}
	if (rc)
		return rc;
	cJSON_AddStringToObject(out, "sequence", t.sequence);
	cJSON_AddStringToObject(out, "step", t.step);
	clock_format_utc(t.due_at, when, sizeof(when));
	sched_explain_line(trace, "due", t.due_at <= now, "%s/%s is due %s%s", t.sequence, t.step,
			   when, t.due_at <= now ? " (now)" : "");
	if ((rc = sched_conditions(s->store, s->content, lead, &t, &send, why, sizeof(why))) == 0) {
		sched_explain_line(trace, "conditions", send, "%s",
				   send ? "when/unless allow it" : why);
	}
	/* What holds it back right now (window, skip dates, gap), then when it may go. */
	struct sched_why w;
	int64_t opens = sched_window_opens(s, lead, &t, now, &w), at = now;
	if (t.due_at > now)
		opens = sched_window_opens(s, lead, &t, t.due_at, NULL);
	if (w.gap_until) {
		clock_format_utc(w.gap_until, when, sizeof(when));
		sched_explain_line(trace, "min_gap", false,
				   "the lead's last touch was recent: not before %s", when);
	}
	if (w.window_opens) {
		clock_format_utc(w.window_opens, when, sizeof(when));
		sched_explain_line(trace, "window", w.window_opens <= at, "window opens %s (%s)",
				   when, w.zone ? w.zone : "UTC");
	}
	if (w.skipped)
		sched_explain_line(trace, "skip_dates", false, "%d skipped date(s) from %d",
				   w.skipped, (int)w.first_skipped);
	struct sched_account *a = sched_account_of(s, t.sequence);
	sched_sends_load(s, now);
	if (sched_account_allowance(a, now, &refill) == 0) {
		clock_format_utc(refill, when, sizeof(when));
		sched_explain_line(trace, "caps", false,
				   "a sending cap of account %s is full until %s", a->cfg.name,
				   when);
	}
	if (a->gov.state != GOVERNOR_NORMAL)
		sched_explain_line(trace, "governor", false, "account %s is %s: %s", a->cfg.name,
				   governor_state_name(a->gov.state), a->gov.reason);
	clock_format_utc(opens, when, sizeof(when));
	cJSON_AddStringToObject(out, "next_send", when);
	cJSON_AddStringToObject(out, "verdict",
				blocked                           ? "held: see the trace"
				: !send                           ? "will be skipped when due"
				: opens <= now && t.due_at <= now ? "due now"
								  : "waits");
	store_touch_clear(&t);
	return rc;
}

int sched_status(struct sched *s, cJSON *out)
{
	int64_t now = clock_now(s->clock);
	char when[32];
	sched_sends_load(s, now);
	if (s->sends_stale)
		return DRIP_ESTORE;
	cJSON *arr = cJSON_AddArrayToObject(out, "accounts");
	for (size_t i = 0; i < s->naccts; i++) {
		struct sched_account *a = &s->accts[i];
		struct governor_rates r;
		int64_t oldest, next_day;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, o);
		cJSON_AddStringToObject(o, "name", a->cfg.name);
		cJSON_AddStringToObject(o, "url", a->cfg.url);
		cJSON_AddNumberToObject(o, "threads",
					a->mailer ? (double)mailer_threads(a->mailer) : 0);
		cJSON_AddNumberToObject(o, "busy", a->mailer ? (double)mailer_busy(a->mailer) : 0);
		cJSON_AddNumberToObject(
			o, "sent_last_hour",
			(double)governor_window_count(&a->sent, GOVERNOR_HOUR, now, &oldest));
		cJSON_AddNumberToObject(
			o, "sent_last_24h",
			(double)governor_window_count(&a->sent, GOVERNOR_DAY, now, &oldest));
		cJSON_AddNumberToObject(o, "per_hour", (double)a->cfg.per_hour);
		cJSON_AddNumberToObject(o, "per_day", (double)a->cfg.per_day);
		int64_t ramp = sched_warmup(a, now, &next_day);
		if (ramp >= 0)
			cJSON_AddNumberToObject(o, "warmup_cap_today", (double)ramp);
		cJSON *g = cJSON_AddObjectToObject(o, "governor");
		cJSON_AddStringToObject(g, "state", governor_state_name(a->gov.state));
		cJSON_AddStringToObject(g, "reason", a->gov.reason);
		if (a->gov.state != GOVERNOR_NORMAL) {
			clock_format_utc(a->gov.until, when, sizeof(when));
			cJSON_AddStringToObject(g, "until", when);
		}
		governor_rates(&a->gov, &s->cfg->governor, now, &r);
		cJSON_AddNumberToObject(g, "samples", (double)r.samples);
		cJSON_AddNumberToObject(g, "deferral_rate", r.deferral);
		cJSON_AddNumberToObject(g, "bounce_rate", r.bounce);
		cJSON_AddNumberToObject(g, "complaint_rate", r.complaint);
		if (a->cfg.ndomains == 0)
			continue;
		cJSON *doms = cJSON_AddArrayToObject(o, "domains");
		for (size_t j = 0; j < a->cfg.ndomains; j++) {
			struct sched_domain *d = &a->domains[j];
			int64_t n = governor_window_count(&d->sent, GOVERNOR_HOUR, now, &oldest);
			cJSON *x = cJSON_CreateObject();
			cJSON_AddItemToArray(doms, x);
			cJSON_AddStringToObject(x, "domain", d->domain);
			cJSON_AddNumberToObject(x, "per_hour", (double)d->per_hour);
			cJSON_AddNumberToObject(x, "concurrency", (double)d->concurrency);
			cJSON_AddNumberToObject(x, "sent_last_hour", (double)n);
			cJSON_AddNumberToObject(x, "in_flight", (double)d->in_flight);
		}
	}
	return 0;
}

void sched_accounts_each(struct sched *s, sched_account_cb cb, void *arg)
{
	int64_t now = clock_now(s->clock), oldest, next_day;
	sched_sends_load(s, now);
	for (size_t i = 0; i < s->naccts; i++) {
		struct sched_account *a = &s->accts[i];
		struct governor_rates r;
		governor_rates(&a->gov, &s->cfg->governor, now, &r);
		bool ramped;
		int64_t day_cap = sched_day_cap(a, now, &ramped, &next_day);
		struct sched_account_view v = {
			.account = a->cfg.name,
			.state = governor_state_name(a->gov.state),
			.samples = r.samples,
			.deferral_rate = r.deferral,
			.bounce_rate = r.bounce,
			.complaint_rate = r.complaint,
			.sent_hour = governor_window_count(&a->sent, GOVERNOR_HOUR, now, &oldest),
			.sent_day = governor_window_count(&a->sent, GOVERNOR_DAY, now, &oldest),
			.cap_hour = a->cfg.per_hour > 0 ? a->cfg.per_hour : 0,
			.cap_day = day_cap > 0 ? day_cap : 0,
		};
		if (a->mailer)
			mailer_times(a->mailer, &v.times);
		cb(arg, &v);
	}
}

int sched_set_limit(struct sched *s, const char *account, const char *domain, const char *key,
		    int64_t value, char *err, size_t errlen)
{
	struct sched_account *a = NULL;
	struct sched_domain *d = NULL;
	for (size_t i = 0; i < s->naccts && !a; i++)
		if (strcmp(s->accts[i].cfg.name, account) == 0)
			a = &s->accts[i];
	if (!a)
		return errf(err, errlen, DRIP_ENOT_FOUND, "no account \"%.64s\"", account);
	if (domain && !(d = sched_domain_of(a, domain)))
		return errf(err, errlen, DRIP_ENOT_FOUND,
			    "account %s has no limits for %.200s (only domains in the config's "
			    "\"domains\" can be changed live)",
			    a->cfg.name, domain);
	int64_t *field = sched_limit_field(a, d, key);
	if (!field)
		return errf(err, errlen, DRIP_EINVALID, "\"%s\" cannot be changed live", key);
	/* A negative value goes back to the config's. */
	int64_t config_value = *field;
	if (value < 0) {
		struct config_account c;
		config_account(
			s->cfg,
			strcmp(a->cfg.name, CONFIG_DEFAULT_ACCOUNT) == 0 ? NULL : a->cfg.name, &c);
		config_value = strcmp(key, "per_day") == 0 ? c.per_day : c.per_hour;
		for (size_t i = 0; d && i < c.ndomains; i++)
			if (strcmp(c.domains[i].domain, d->domain) == 0)
				config_value = strcmp(key, "concurrency") == 0
						       ? c.domains[i].concurrency
						       : c.domains[i].per_hour;
	}
	char *name = sched_limit_key(a->cfg.name, domain, key);
	int rc = store_setting_set(s->store, name, value);
	free(name);
	if (rc)
		return errf(err, errlen, rc, "cannot save the limit");
	*field = value < 0 ? config_value : value;
	log_info("sched: account %s: %s%s%s set to %lld%s", a->cfg.name, domain ? domain : "",
		 domain ? " " : "", key, (long long)*field, value < 0 ? " (the config's)" : "");
	sched_kick(s);
	return 0;
}
