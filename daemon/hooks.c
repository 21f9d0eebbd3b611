/* hooks.c - webhooks: the outbox, signed JSON POSTs through curl's multi socket API on libuv. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dripd/error.h"
#include "dripd/hooks.h"
#include "dripd/log.h"
#include "dripd/util.h"

/*
 * DESIGN. The events table is the source of truth. The store's event feed only wakes the
 * pump (a zero timer, so it runs after the transaction that recorded the event committed);
 * the pump reads events above a cursor kept in `settings`, writes one outbox row per
 * subscribed webhook with the payload frozen, and moves the cursor, all in one
 * transaction: a crash anywhere neither loses an event nor queues it twice. Then each URL
 * gets up to `concurrency` due rows as POSTs on curl's multi handle, whose sockets are
 * uv_poll handles and whose timeout is a uv_timer (curl's multi-uv example), so a slow or
 * hanging endpoint costs a socket and a timer, never the loop, and holds only its own
 * slots. An outcome updates the row: 2xx deletes it; anything else counts an attempt and
 * sets the next one (backoff in business time), until the give-up age, when the row is
 * deleted and an `error` event says so. One timer sleeps until the earliest retry.
 */

#define HOOKS_CURSOR_SETTING "hooks_cursor"
#define HOOKS_BATCH 256 /* events read per pump transaction */
#define HOOKS_RESPONSE_KEEP 160 /* bytes of a failing answer kept for the log and event */

struct hooks_secret {
	unsigned char *data;
	size_t len;
};

struct hooks_endpoint {
	const struct config_webhook *cfg;
	struct hooks_secret *secrets; /* newest first; none: unsigned */
	size_t nsecrets;
	size_t in_flight;
};

struct hooks_transfer {
	struct hooks *h;
	struct hooks_endpoint *ep;
	CURL *easy;
	struct curl_slist *headers;
	int64_t row_id, event_id, lead_id, created_at, attempts;
	char *delivery_id;
	char *kind;
	char *body;
	char answer[HOOKS_RESPONSE_KEEP];
	size_t answer_len;
	char errbuf[CURL_ERROR_SIZE];
	struct hooks_transfer *next;
};

struct hooks_sock {
	uv_poll_t poll;
	struct hooks *h;
	curl_socket_t fd;
	struct hooks_sock *next;
};

struct hooks {
	uv_loop_t *loop;
	const struct config *cfg;
	struct store *st;
	struct clock *clk;
	CURLM *multi;
	uv_timer_t curl_timer; /* curl's own timeouts */
	uv_timer_t wake; /* the pump: new events, due retries */
	struct hooks_endpoint *eps;
	size_t neps;
	struct hooks_transfer *transfers; /* in flight */
	struct hooks_sock *socks; /* open uv_poll handles */
	int64_t cursor; /* the last event id queued */
	int64_t wake_at; /* business time the wake timer is set for; 0: none */
	size_t handles; /* libuv handles not yet closed */
	bool listening;
	bool closing;
	bool unread; /* events may have been recorded since the pump last read them */
};

void hooks_sign(const void *secret, size_t secretlen, int64_t ts, const char *body, size_t len,
		char out[HOOKS_SIGNATURE_MAX])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	/* One-shot HMAC over "TS.BODY" (the HMAC_CTX calls are deprecated in OpenSSL 3). */
	char *msg = xasprintf("%" PRId64 ".", ts);
	size_t n = strlen(msg);
	msg = xrealloc(msg, n + len + 1);
	memcpy(msg + n, body, len);
	if (!HMAC(EVP_sha256(), secret, (int)secretlen, (const unsigned char *)msg, n + len, mac,
		  &maclen))
		log_fatal("hooks: HMAC-SHA256 failed"); /* libcrypto out of memory */
	free(msg);
	int off = snprintf(out, HOOKS_SIGNATURE_MAX, "t=%" PRId64 ",v1=", ts);
	for (unsigned int i = 0; i < maclen && off + 2 < HOOKS_SIGNATURE_MAX; i++)
		off += snprintf(out + off, (size_t)(HOOKS_SIGNATURE_MAX - off), "%02x", mac[i]);
}

int64_t hooks_backoff(int64_t attempts, int64_t min, int64_t max)
{
	int64_t wait = min < 1 ? 1 : min;
	for (int64_t i = 1; i < attempts && wait < max; i++)
		wait = wait > INT64_MAX / 2 ? INT64_MAX : wait * 2;
	return wait > max ? max : wait;
}

bool hooks_wants(const struct config_webhook *w, const char *kind)
{
	if (w->nevents == 0)
		return true;
	for (size_t i = 0; i < w->nevents; i++)
		if (strcmp(w->events[i], kind) == 0 || strcmp(w->events[i], "*") == 0)
			return true;
	return false;
}

static void hooks_secrets_free(struct hooks_secret *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		OPENSSL_cleanse(s[i].data, s[i].len);
		free(s[i].data);
	}
	free(s);
}

/* Reads a secret file: one secret a line, newest first, trailing blanks trimmed. */
static int hooks_secrets_load(const char *path, struct hooks_secret **out, size_t *nout, char *err,
			      size_t errlen)
{
	FILE *f = fopen(path, "re");
	struct hooks_secret *s = NULL;
	size_t n = 0, cap = 0, lineno = 0;
	char *line = NULL;
	size_t linecap = 0;
	ssize_t len;
	int rc = 0;
	if (!f)
		return errf(err, errlen, DRIP_EIO, "%s: %s", path, strerror(errno));
	while ((len = getline(&line, &linecap, f)) >= 0) {
		lineno++;
		while (len > 0 && strchr("\r\n \t", line[len - 1]))
			len--;
		if (len == 0)
			continue;
		if (len < 16) {
			rc = errf(err, errlen, DRIP_EINVALID,
				  "%s:%zu: a webhook secret needs at least 16 bytes", path, lineno);
			goto fail;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 2;
			s = xrealloc(s, cap * sizeof(*s));
		}
		s[n].data = xmalloc((size_t)len);
		memcpy(s[n].data, line, (size_t)len);
		s[n++].len = (size_t)len;
	}
	if (n == 0) {
		rc = errf(err, errlen, DRIP_EINVALID, "%s: no secret in the file", path);
		goto fail;
	}
	OPENSSL_cleanse(line, linecap);
	free(line);
	fclose(f);
	*out = s;
	*nout = n;
	return 0;
fail:
	if (line)
		OPENSSL_cleanse(line, linecap);
	free(line);
	fclose(f);
	hooks_secrets_free(s, n);
	return rc;
}

static void hooks_arm(struct hooks *h, int64_t due);
static void hooks_wake_cb(uv_timer_t *t);

static void hooks_handle_closed_cb(uv_handle_t *hd)
{
	struct hooks *h = hd->data;
	if (hd->type == UV_POLL)
		free(hd); /* the uv_poll_t is the first member of its hooks_sock */
	if (--h->handles == 0 && h->closing) {
		for (size_t i = 0; i < h->neps; i++)
			hooks_secrets_free(h->eps[i].secrets, h->eps[i].nsecrets);
		free(h->eps);
		free(h);
	}
}

static void hooks_sock_close(struct hooks *h, struct hooks_sock *hs)
{
	for (struct hooks_sock **p = &h->socks; *p; p = &(*p)->next) {
		if (*p == hs) {
			*p = hs->next;
			break;
		}
	}
	uv_poll_stop(&hs->poll);
	hs->poll.data = h;
	uv_close((uv_handle_t *)&hs->poll, hooks_handle_closed_cb);
}

static void hooks_transfer_free(struct hooks_transfer *t)
{
	curl_slist_free_all(t->headers);
	free(t->delivery_id);
	free(t->kind);
	free(t->body);
	free(t);
}

/* Records the outcome of a finished POST and frees it. */
static void hooks_finish(struct hooks *h, struct hooks_transfer *t, CURLcode res)
{
	long status = 0;
	char why[512];
	int64_t now = clock_now(h->clk);
	const struct config_webhook *w = t->ep->cfg;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	if (res == CURLE_OK && status >= 200 && status < 300) {
		if (store_hook_done(h->st, t->row_id) != 0)
			log_err("hooks: %s: delivery %s went out but could not be marked: it "
				"will be sent again",
				w->url, t->delivery_id);
		else
			log_debug("hooks: %s: %s delivered (%s, HTTP %ld)", w->url, t->delivery_id,
				  t->kind, status);
		return;
	}
	if (res != CURLE_OK)
		snprintf(why, sizeof(why), "%s",
			 t->errbuf[0] ? t->errbuf : curl_easy_strerror(res));
	else
		snprintf(why, sizeof(why), "HTTP %ld%s%.*s", status, t->answer_len ? ": " : "",
			 (int)t->answer_len, t->answer);
	for (char *p = why; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	int64_t attempts = t->attempts + 1;
	if (now - t->created_at >= w->give_up) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "reason", "webhook gave up");
		cJSON_AddStringToObject(d, "webhook", w->url);
		cJSON_AddStringToObject(d, "delivery_id", t->delivery_id);
		cJSON_AddNumberToObject(d, "event_id", (double)t->event_id);
		cJSON_AddStringToObject(d, "event_kind", t->kind);
		cJSON_AddNumberToObject(d, "attempts", (double)attempts);
		cJSON_AddStringToObject(d, "error", why);
		char *json = cJSON_PrintUnformatted(d);
		cJSON_Delete(d);
		int rc = store_begin(h->st);
		if (rc == 0 && (rc = store_hook_done(h->st, t->row_id)) == 0 &&
		    (rc = store_event_add(h->st, t->lead_id, 0, "error", now, json)) == 0)
			rc = store_commit(h->st);
		else
			store_rollback(h->st);
		free(json);
		log_warn("hooks: %s: gave up on %s (%s event %" PRId64 ") after %" PRId64
			 " attempts: %s%s",
			 w->url, t->delivery_id, t->kind, t->event_id, attempts, why,
			 rc ? " (could not record it; it stays queued)" : "");
		return;
	}
	int64_t wait = hooks_backoff(attempts, w->retry_min, w->retry_max);
	char dur[32];
	clock_format_duration(wait, dur, sizeof(dur));
	log_info("hooks: %s: %s (%s) failed: %s; retry %" PRId64 " in %s", w->url, t->delivery_id,
		 t->kind, why, attempts, dur);
	/* Business time is in whole seconds and `now` is this second's start: without the +1 a
	 * failure late in a second was retried up to a second before `retry_min` had passed
	 * (seen in CI: 8 ms after the first attempt with retry_min 1s). */
	if (store_hook_retry(h->st, t->row_id, now + wait + 1, why) != 0)
		log_err("hooks: %s: cannot record the failure of %s", w->url, t->delivery_id);
}

/* Collects finished transfers, records them, and lets the pump fill the freed slots. */
static void hooks_check(struct hooks *h)
{
	CURLMsg *msg;
	int left;
	bool done = false;
	while ((msg = curl_multi_info_read(h->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct hooks_transfer *t = NULL;
		CURLcode res = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		hooks_finish(h, t, res);
		for (struct hooks_transfer **p = &h->transfers; *p; p = &(*p)->next) {
			if (*p == t) {
				*p = t->next;
				break;
			}
		}
		t->ep->in_flight--;
		curl_multi_remove_handle(h->multi, t->easy);
		curl_easy_cleanup(t->easy);
		hooks_transfer_free(t);
		done = true;
	}
	if (done && !h->closing)
		hooks_arm(h, 0);
}

static void hooks_poll_cb(uv_poll_t *p, int status, int events)
{
	struct hooks_sock *hs = (struct hooks_sock *)p;
	struct hooks *h = hs->h;
	int flags = 0, running;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(h->multi, hs->fd, flags, &running);
	hooks_check(h);
}

static int hooks_socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct hooks *h = userp;
	struct hooks_sock *hs = socketp;
	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (hs) {
			curl_multi_assign(h->multi, s, NULL);
			hooks_sock_close(h, hs);
		}
		return 0;
	}
	if (!hs) {
		hs = xcalloc(1, sizeof(*hs));
		if (uv_poll_init_socket(h->loop, &hs->poll, s) != 0) {
			free(hs);
			return -1;
		}
		hs->h = h;
		hs->fd = s;
		hs->poll.data = hs;
		hs->next = h->socks;
		h->socks = hs;
		h->handles++;
		curl_multi_assign(h->multi, s, hs);
	}
	int ev = 0;
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&hs->poll, ev, hooks_poll_cb);
	return 0;
}

static void hooks_curl_timer_cb(uv_timer_t *t)
{
	struct hooks *h = t->data;
	int running;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	hooks_check(h);
}

static int hooks_timer_fn(CURLM *m, long timeout_ms, void *userp)
{
	struct hooks *h = userp;
	(void)m;
	if (h->closing)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&h->curl_timer);
	else /* never act from inside curl's callback: a zero timer runs it next turn */
		uv_timer_start(&h->curl_timer, hooks_curl_timer_cb, (uint64_t)timeout_ms, 0);
	return 0;
}

/* Keeps the first bytes of an answer (for the log of a failure) and drops the rest. */
static size_t hooks_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct hooks_transfer *t = arg;
	size_t n = size * nmemb;
	size_t room = sizeof(t->answer) - 1 - t->answer_len;
	size_t take = n < room ? n : room;
	memcpy(t->answer + t->answer_len, ptr, take);
	t->answer_len += take;
	return n;
}

struct hooks_due {
	struct hooks *h;
	struct hooks_endpoint *ep;
};

static bool hooks_in_flight(const struct hooks *h, int64_t row_id)
{
	for (const struct hooks_transfer *t = h->transfers; t; t = t->next)
		if (t->row_id == row_id)
			return true;
	return false;
}

/* Starts the POST of one due outbox row, unless it is in flight already or slots are full. */
static int hooks_start_cb(void *arg, const struct store_hook_delivery *dl)
{
	struct hooks_due *due = arg;
	struct hooks *h = due->h;
	struct hooks_endpoint *ep = due->ep;
	if ((int64_t)ep->in_flight >= ep->cfg->concurrency)
		return 1;
	if (hooks_in_flight(h, dl->id))
		return 0;
	struct hooks_transfer *t = xcalloc(1, sizeof(*t));
	t->h = h;
	t->ep = ep;
	t->row_id = dl->id;
	t->event_id = dl->event_id;
	t->lead_id = dl->lead_id;
	t->created_at = dl->created_at;
	t->attempts = dl->attempts;
	t->delivery_id = xstrdup(dl->delivery_id);
	t->kind = xstrdup(dl->kind);
	t->body = xstrdup(dl->payload);
	char *hdr;
	t->headers = curl_slist_append(t->headers, "Content-Type: application/json");
	t->headers = curl_slist_append(t->headers, "Expect:");
	hdr = xasprintf("Dripd-Delivery: %s", t->delivery_id);
	t->headers = curl_slist_append(t->headers, hdr);
	free(hdr);
	hdr = xasprintf("Dripd-Event: %s", t->kind);
	t->headers = curl_slist_append(t->headers, hdr);
	free(hdr);
	hdr = xasprintf("Dripd-Attempt: %" PRId64, t->attempts + 1);
	t->headers = curl_slist_append(t->headers, hdr);
	free(hdr);
	if (ep->nsecrets) {
		/* The receiver compares t= with its own clock: the wall clock, not business time. */
		char sig[HOOKS_SIGNATURE_MAX];
		hooks_sign(ep->secrets[0].data, ep->secrets[0].len, (int64_t)time(NULL), t->body,
			   strlen(t->body), sig);
		hdr = xasprintf(HOOKS_SIGNATURE_HEADER ": %s", sig);
		t->headers = curl_slist_append(t->headers, hdr);
		free(hdr);
	}
	if (!t->headers || !(t->easy = curl_easy_init())) {
		log_err("hooks: %s: cannot set up a transfer", ep->cfg->url);
		if (t->easy)
			curl_easy_cleanup(t->easy);
		hooks_transfer_free(t);
		return 1;
	}
	CURL *e = t->easy;
	long timeout_ms = (long)ep->cfg->timeout * 1000;
	curl_easy_setopt(e, CURLOPT_URL, ep->cfg->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(t->body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "dripd/" DRIPD_VERSION);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hooks_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, t);
	t->next = h->transfers;
	h->transfers = t;
	ep->in_flight++;
	if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
		log_err("hooks: %s: cannot start a transfer", ep->cfg->url);
		h->transfers = t->next;
		ep->in_flight--;
		curl_easy_cleanup(e);
		hooks_transfer_free(t);
		return 1;
	}
	return 0;
}

struct hooks_pending {
	int64_t id, lead_id, touch_id, at;
	char *kind;
	char *detail;
};

struct hooks_batch {
	struct hooks_pending *ev;
	size_t n;
};

static int hooks_collect_cb(void *arg, const struct store_event *ev)
{
	struct hooks_batch *b = arg;
	struct hooks_pending *p = &b->ev[b->n++];
	p->id = ev->id;
	p->lead_id = ev->lead_id;
	p->touch_id = ev->touch_id;
	p->at = ev->at;
	p->kind = xstrdup(ev->kind);
	p->detail = xstrdup(ev->detail ? ev->detail : "{}");
	return 0;
}

static int hooks_last_reply_cb(void *arg, const struct store_event *ev)
{
	char **detail = arg;
	if (strcmp(ev->kind, "reply") == 0) {
		free(*detail);
		*detail = xstrdup(ev->detail ? ev->detail : "{}");
	}
	return 0;
}

static void hooks_add_time(cJSON *o, const char *key, int64_t t)
{
	char when[32];
	clock_format_utc(t, when, sizeof(when));
	cJSON_AddStringToObject(o, key, when);
}

static cJSON *hooks_json_or_empty(const char *text)
{
	cJSON *j = text ? cJSON_Parse(text) : NULL;
	return j ? j : cJSON_CreateObject();
}

/*
 * The body of a delivery: the event, the lead as it is now, the touch the event is about,
 * and for a handoff the reply that caused it (what a CRM needs to pick the lead up).
 */
static char *hooks_payload(struct hooks *h, const struct hooks_pending *ev, const char *delivery_id)
{
	cJSON *root = cJSON_CreateObject();
	struct lead lead;
	struct touch t;
	cJSON_AddStringToObject(root, "delivery_id", delivery_id);
	cJSON *e = cJSON_AddObjectToObject(root, "event");
	cJSON_AddNumberToObject(e, "id", (double)ev->id);
	cJSON_AddStringToObject(e, "kind", ev->kind);
	cJSON_AddNumberToObject(e, "at", (double)ev->at);
	hooks_add_time(e, "time", ev->at);
	cJSON_AddItemToObject(e, "detail", hooks_json_or_empty(ev->detail));
	memset(&lead, 0, sizeof(lead));
	if (ev->lead_id && store_lead_by_id(h->st, ev->lead_id, &lead) == 0) {
		cJSON *l = cJSON_AddObjectToObject(root, "lead");
		cJSON_AddNumberToObject(l, "id", (double)lead.id);
		cJSON_AddStringToObject(l, "email", lead.email);
		cJSON_AddStringToObject(l, "first_name", lead.first_name);
		cJSON_AddStringToObject(l, "last_name", lead.last_name);
		cJSON_AddStringToObject(l, "company", lead.company);
		cJSON_AddStringToObject(l, "title", lead.title);
		cJSON_AddStringToObject(l, "stage", lead.stage);
		cJSON_AddStringToObject(l, "status", lead.status);
		cJSON_AddNumberToObject(l, "score", (double)lead.score);
		cJSON *tags = cJSON_Parse(lead.tags);
		cJSON_AddItemToObject(l, "tags", tags ? tags : cJSON_CreateArray());
		cJSON_AddItemToObject(l, "attrs", hooks_json_or_empty(lead.attrs));
		store_lead_clear(&lead);
	} else {
		cJSON_AddNullToObject(root, "lead");
	}
	memset(&t, 0, sizeof(t));
	if (ev->touch_id && store_touch_get(h->st, ev->touch_id, &t) == 0) {
		cJSON *to = cJSON_AddObjectToObject(root, "touch");
		cJSON_AddNumberToObject(to, "id", (double)t.id);
		cJSON_AddStringToObject(to, "sequence", t.sequence);
		cJSON_AddStringToObject(to, "step", t.step);
		cJSON_AddStringToObject(to, "state", t.state);
		cJSON_AddNumberToObject(to, "attempts", (double)t.attempts);
		if (t.message_id)
			cJSON_AddStringToObject(to, "message_id", t.message_id);
		store_touch_clear(&t);
	} else {
		cJSON_AddNullToObject(root, "touch");
	}
	if (strcmp(ev->kind, "handoff") == 0 && ev->lead_id) {
		char *reply = NULL;
		store_events_for_lead(h->st, ev->lead_id, hooks_last_reply_cb, &reply);
		if (reply)
			cJSON_AddItemToObject(root, "reply", hooks_json_or_empty(reply));
		else
			cJSON_AddNullToObject(root, "reply");
		free(reply);
	}
	char *out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return out;
}

/*
 * Whether webhook `w` gets event `ev`: it subscribes to the kind, and the event is not
 * the record of this same webhook giving up (which would feed on itself).
 */
static bool hooks_routes(const struct config_webhook *w, const struct hooks_pending *ev)
{
	if (!hooks_wants(w, ev->kind))
		return false;
	if (strcmp(ev->kind, "error") != 0)
		return true;
	cJSON *d = cJSON_Parse(ev->detail);
	const cJSON *hook = cJSON_GetObjectItemCaseSensitive(d, "webhook");
	bool own = cJSON_IsString(hook) && strcmp(hook->valuestring, w->url) == 0;
	cJSON_Delete(d);
	return !own;
}

/*
 * Queues the events recorded since the cursor, one transaction per batch. Returns 1 when
 * a full batch was read (more may wait), 0 when caught up, or an error.
 */
static int hooks_queue_events(struct hooks *h)
{
	struct hooks_batch b = { .ev = xcalloc(HOOKS_BATCH, sizeof(*b.ev)) };
	int64_t now = clock_now(h->clk);
	int rc = store_begin(h->st);
	if (rc)
		goto out;
	if ((rc = store_events_after(h->st, h->cursor, HOOKS_BATCH, hooks_collect_cb, &b)))
		goto fail;
	for (size_t i = 0; i < b.n; i++) {
		for (size_t j = 0; j < h->neps; j++) {
			const struct config_webhook *w = h->eps[j].cfg;
			if (!hooks_routes(w, &b.ev[i]))
				continue;
			char id[40];
			util_random_hex(id, 12);
			char *payload = hooks_payload(h, &b.ev[i], id);
			rc = store_hook_enqueue(h->st, w->url, id, b.ev[i].id, b.ev[i].lead_id,
						b.ev[i].kind, payload, now);
			free(payload);
			if (rc)
				goto fail;
		}
	}
	if (b.n && (rc = store_setting_set(h->st, HOOKS_CURSOR_SETTING, b.ev[b.n - 1].id)))
		goto fail;
	if ((rc = store_commit(h->st)))
		goto out;
	if (b.n)
		h->cursor = b.ev[b.n - 1].id;
	rc = b.n == HOOKS_BATCH;
	goto out;
fail:
	store_rollback(h->st);
out:
	for (size_t i = 0; i < b.n; i++) {
		free(b.ev[i].kind);
		free(b.ev[i].detail);
	}
	free(b.ev);
	return rc;
}

/* Sets the wake timer for business time `due` (0: now), unless it is set earlier already. */
static void hooks_arm(struct hooks *h, int64_t due)
{
	int64_t now = clock_now(h->clk);
	if (h->closing)
		return;
	if (due > now && h->wake_at && h->wake_at <= due && uv_is_active((uv_handle_t *)&h->wake))
		return;
	h->wake_at = due > now ? due : now;
	uv_timer_start(&h->wake, hooks_wake_cb, due > now ? clock_delay_ms(h->clk, due, now) : 0,
		       0);
}

static void hooks_wake_cb(uv_timer_t *timer)
{
	struct hooks *h = timer->data;
	int64_t now = clock_now(h->clk), next = 0;
	/* Only read the events table when the feed said something was recorded. */
	int more = h->unread ? hooks_queue_events(h) : 0;
	h->unread = more != 0;
	h->wake_at = 0;
	if (more < 0) {
		/* The database refused (busy, full): try again shortly rather than lose events. */
		log_err("hooks: cannot queue new events (%s); retrying in 1s", drip_strerror(more));
		uv_timer_start(&h->wake, hooks_wake_cb, 1000, 0);
		return;
	}
	for (size_t i = 0; i < h->neps; i++) {
		struct hooks_endpoint *ep = &h->eps[i];
		if ((int64_t)ep->in_flight >= ep->cfg->concurrency)
			continue;
		struct hooks_due due = { h, ep };
		store_hook_due(h->st, ep->cfg->url, now,
			       (size_t)ep->cfg->concurrency + ep->in_flight, hooks_start_cb, &due);
	}
	if (more > 0)
		hooks_arm(h, 0);
	else if (store_hook_next_due(h->st, now, &next) == 0)
		hooks_arm(h, next);
}

static void hooks_event_cb(void *arg, const struct store_event *ev)
{
	struct hooks *h = arg;
	(void)ev;
	/* Only a note: the pump reads the events table after this transaction commits. */
	h->unread = true;
	if (!h->closing && !(h->wake_at && uv_is_active((uv_handle_t *)&h->wake) &&
			     h->wake_at <= clock_now(h->clk)))
		hooks_arm(h, 0);
}

static int hooks_load_secrets(struct hooks_endpoint *ep, char *err, size_t errlen)
{
	struct hooks_secret *s = NULL;
	size_t n = 0;
	if (*ep->cfg->secret_file) {
		int rc = hooks_secrets_load(ep->cfg->secret_file, &s, &n, err, errlen);
		if (rc)
			return rc;
	}
	hooks_secrets_free(ep->secrets, ep->nsecrets);
	ep->secrets = s;
	ep->nsecrets = n;
	return 0;
}

struct hooks *hooks_new(uv_loop_t *loop, const struct config *cfg, struct store *st,
			struct clock *clk, char *err, size_t errlen)
{
	struct hooks *h = xcalloc(1, sizeof(*h));
	int64_t cursor = 0;
	h->loop = loop;
	h->cfg = cfg;
	h->st = st;
	h->clk = clk;
	h->neps = cfg->nwebhooks;
	h->eps = xcalloc(h->neps ? h->neps : 1, sizeof(*h->eps));
	for (size_t i = 0; i < h->neps; i++) {
		h->eps[i].cfg = &cfg->webhooks[i];
		if (hooks_load_secrets(&h->eps[i], err, errlen) != 0)
			goto fail;
	}
	/*
	 * Without a webhook nothing is queued, and the cursor follows the newest event, so a
	 * webhook configured later starts from its first start, not from all history.
	 */
	int rc = store_setting_get(st, HOOKS_CURSOR_SETTING, &cursor);
	if (rc == DRIP_ENOT_FOUND || h->neps == 0) {
		if (store_event_max_id(st, &cursor) != 0 ||
		    store_setting_set(st, HOOKS_CURSOR_SETTING, cursor) != 0) {
			errf(err, errlen, DRIP_ESTORE, "hooks: cannot read or set the cursor");
			goto fail;
		}
	} else if (rc) {
		errf(err, errlen, rc, "hooks: cannot read the cursor");
		goto fail;
	}
	h->cursor = cursor;
	if (!(h->multi = curl_multi_init())) {
		errf(err, errlen, DRIP_EIO, "hooks: cannot create curl's multi handle");
		goto fail;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, hooks_socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, hooks_timer_fn);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	uv_timer_init(loop, &h->curl_timer);
	uv_timer_init(loop, &h->wake);
	h->curl_timer.data = h;
	h->wake.data = h;
	h->handles = 2;
	if (h->neps) {
		if (store_event_listen(st, hooks_event_cb, h) != 0) {
			errf(err, errlen, DRIP_EBUSY, "hooks: the event feed has no free slot");
			h->closing = true;
			uv_close((uv_handle_t *)&h->curl_timer, hooks_handle_closed_cb);
			uv_close((uv_handle_t *)&h->wake, hooks_handle_closed_cb);
			curl_multi_cleanup(h->multi);
			return NULL;
		}
		h->listening = true;
		h->unread = true; /* events recorded while dripd was stopped */
		hooks_arm(h, 0);
	}
	return h;
fail:
	for (size_t i = 0; i < h->neps; i++)
		hooks_secrets_free(h->eps[i].secrets, h->eps[i].nsecrets);
	free(h->eps);
	free(h);
	return NULL;
}

void hooks_kick(struct hooks *h)
{
	if (h && h->neps)
		hooks_arm(h, 0);
}

void hooks_reload(struct hooks *h)
{
	char err[512];
	for (size_t i = 0; h && i < h->neps; i++)
		if (hooks_load_secrets(&h->eps[i], err, sizeof(err)) != 0)
			log_err("hooks: %s keeps its old secrets: %s", h->eps[i].cfg->url, err);
}

int hooks_status(struct hooks *h, cJSON *out)
{
	int64_t waiting = 0, retrying = 0;
	size_t in_flight = 0;
	int rc = store_hook_count(h->st, &waiting, &retrying);
	if (rc)
		return rc;
	for (const struct hooks_transfer *t = h->transfers; t; t = t->next)
		in_flight++;
	cJSON *o = cJSON_AddObjectToObject(out, "webhooks");
	cJSON_AddNumberToObject(o, "configured", (double)h->neps);
	cJSON_AddNumberToObject(o, "waiting", (double)waiting);
	cJSON_AddNumberToObject(o, "retrying", (double)retrying);
	cJSON_AddNumberToObject(o, "in_flight", (double)in_flight);
	return 0;
}

void hooks_close(struct hooks *h)
{
	if (!h)
		return;
	h->closing = true;
	if (h->listening)
		store_event_unlisten(h->st, hooks_event_cb, h);
	size_t abandoned = 0;
	while (h->transfers) {
		struct hooks_transfer *t = h->transfers;
		h->transfers = t->next;
		curl_multi_remove_handle(h->multi, t->easy);
		curl_easy_cleanup(t->easy);
		hooks_transfer_free(t);
		abandoned++;
	}
	if (abandoned)
		log_info("hooks: %zu delivery(ies) in flight stay queued for the next start",
			 abandoned);
	curl_multi_cleanup(h->multi);
	while (h->socks)
		hooks_sock_close(h, h->socks);
	uv_close((uv_handle_t *)&h->curl_timer, hooks_handle_closed_cb);
	uv_close((uv_handle_t *)&h->wake, hooks_handle_closed_cb);
}
