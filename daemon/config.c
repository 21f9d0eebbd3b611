/* config.c - loading, defaults and validation of the config file (JSON with comments). */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pwd.h>
#include <time.h>
#include <unistd.h>

#include "dripd/clock.h"
#include "dripd/config.h"
#include "dripd/error.h"
#include "dripd/json.h"
#include "dripd/sd.h"
#include "dripd/util.h"

/*
 * DESIGN. The file is parsed into a json_doc (positions, no duplicate keys), each section
 * is checked against its list of known keys, and values are copied into a plain struct
 * with defaults filled first. A config is immutable once loaded: a reload builds a new one.
 */

/* One key a line, so branches that add keys merge cleanly. */
// clang-format off
static const char *const config_top_keys[] = { "state_dir",
					       "content_dir",
					       "control_socket",
					       "timezone",
					       "log_level",
					       "delivery",
					       "tracking",
					       "inbox",
					       "webhooks",
					       "test_clock",
					       "clock_rate",
					       "control_group",
					       "control_users",
					       "control_groups",
					       "accounts",
					       "governor",
					       "signup",
					       "forms",
					       "retention",
					       NULL };
// clang-format on
static const char *const config_delivery_keys[] = { "url",           "from",
						    "username",      "password_file",
						    "ca_file",       "max_connections",
						    "per_hour",      "connect_timeout",
						    "reply_timeout", "transfer_timeout",
						    "retry_min",     "retry_max",
						    "give_up",       "per_day",
						    "min_gap",       "warmup",
						    "domains",       NULL };
static const char *const config_account_keys[] = {
	"url",      "from",    "username", "password_file", "max_connections",
	"per_hour", "per_day", "warmup",   "domains",       NULL
};
static const char *const config_warmup_keys[] = { "start", "days", "from", "to", NULL };
static const char *const config_domain_keys[] = { "per_hour", "concurrency", NULL };
static const char *const config_governor_keys[] = { "enabled",
						    "window",
						    "min_samples",
						    "slow_deferral_rate",
						    "pause_deferral_rate",
						    "slow_bounce_rate",
						    "pause_bounce_rate",
						    "slow_complaint_rate",
						    "pause_complaint_rate",
						    "pause",
						    "recover",
						    "slow_interval",
						    NULL };
static const char *const config_tracking_keys[] = { "listen",          "base_url",
						    "secret_file",     "trusted_proxies",
						    "max_connections", "request_timeout",
						    "idle_timeout",    NULL };
static const char *const config_inbox_keys[] = { "url",
						 "username",
						 "password_file",
						 "poll",
						 "reply_domain",
						 "bounce_domain",
						 "auto_reply_pause",
						 "soft_bounce_limit",
						 "colleague",
						 "move_to",
						 NULL };
static const char *const config_colleague_modes[] = { "lead", "company", "ignore", NULL };
static const char *const config_webhook_keys[] = { "url",       "events",      "secret_file",
						   "timeout",   "concurrency", "retry_min",
						   "retry_max", "give_up",     NULL };
static const char *const config_log_levels[] = { "error", "warning", "info", "debug", NULL };

static void config_set(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

struct config *config_defaults(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	cfg->path = xstrdup("");
	cfg->state_dir = xstrdup("/var/lib/dripd");
	cfg->content_dir = xstrdup("/etc/dripd/content");
	cfg->control_socket = xstrdup("/run/dripd/control.sock");
	cfg->timezone = xstrdup("UTC");
	cfg->control_group = xstrdup("");
	cfg->log_level = xstrdup("info");
	cfg->delivery.url = xstrdup("smtp://127.0.0.1:25");
	/* Must pass util_email_valid (a dot in the domain), as message_build checks it too. */
	cfg->delivery.from = xstrdup("dripd <dripd@localhost.localdomain>");
	cfg->delivery.username = xstrdup("");
	cfg->delivery.password_file = xstrdup("");
	cfg->delivery.ca_file = xstrdup("");
	cfg->delivery.max_connections = 4;
	cfg->delivery.per_hour = 0;
	cfg->delivery.connect_timeout = 30;
	cfg->delivery.reply_timeout = 300; /* RFC 5321 4.5.3.2 allows a server up to 10 minutes */
	cfg->delivery.transfer_timeout = 900;
	cfg->delivery.retry_min = 600;
	cfg->delivery.retry_max = 4 * 3600;
	cfg->delivery.give_up = 5 * 86400; /* Postfix's maximal_queue_lifetime */
	cfg->tracking.listen = xstrdup("127.0.0.1:8025");
	cfg->tracking.base_url = xstrdup("http://127.0.0.1:8025");
	cfg->tracking.secret_file = xstrdup("");
	cfg->tracking.max_connections = 16384;
	cfg->tracking.request_timeout = 10;
	cfg->tracking.idle_timeout = 60;
	cfg->signup.site = xstrdup("");
	cfg->signup.expire = 7 * 86400;
	cfg->signup.per_hour = 20;
	cfg->signup.honeypot = xstrdup("website");
	cfg->signup.subject = xstrdup("Please confirm your subscription");
	cfg->retention.batch = 200;
	cfg->inbox.url = xstrdup("");
	cfg->inbox.username = xstrdup("");
	cfg->inbox.password_file = xstrdup("");
	cfg->inbox.poll = 60;
	cfg->inbox.reply_domain = xstrdup("");
	cfg->inbox.bounce_domain = xstrdup("");
	cfg->inbox.auto_reply_pause = 7 * 86400;
	cfg->inbox.soft_bounce_limit = 3;
	cfg->inbox.colleague = xstrdup("lead");
	cfg->inbox.move_to = xstrdup("");
	cfg->test_clock = false;
	cfg->clock_rate = 1.0;
	governor_defaults(&cfg->governor);
	return cfg;
}

static void config_domains_free(struct config_domain_limit *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(d[i].domain);
	free(d);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->state_dir);
	free(cfg->content_dir);
	free(cfg->control_socket);
	free(cfg->timezone);
	free(cfg->log_level);
	free(cfg->delivery.url);
	free(cfg->delivery.from);
	free(cfg->delivery.username);
	free(cfg->delivery.password_file);
	free(cfg->delivery.ca_file);
	config_domains_free(cfg->delivery.domains, cfg->delivery.ndomains);
	for (size_t i = 0; i < cfg->naccounts; i++) {
		struct config_account *a = &cfg->accounts[i];
		free(a->name);
		free(a->url);
		free(a->from);
		free(a->username);
		free(a->password_file);
		config_domains_free(a->domains, a->ndomains);
	}
	free(cfg->accounts);
	free(cfg->tracking.listen);
	free(cfg->tracking.base_url);
	free(cfg->tracking.secret_file);
	for (size_t i = 0; i < cfg->tracking.ntrusted_proxies; i++)
		free(cfg->tracking.trusted_proxies[i]);
	free(cfg->tracking.trusted_proxies);
	free(cfg->inbox.url);
	free(cfg->inbox.username);
	free(cfg->inbox.password_file);
	free(cfg->inbox.reply_domain);
	free(cfg->inbox.bounce_domain);
	free(cfg->inbox.colleague);
	free(cfg->inbox.move_to);
	free(cfg->signup.site);
	free(cfg->signup.honeypot);
	free(cfg->signup.subject);
	for (size_t i = 0; i < cfg->nforms; i++) {
		free(cfg->forms[i].id);
		free(cfg->forms[i].stage);
		free(cfg->forms[i].sequence);
		free(cfg->forms[i].redirect);
		free(cfg->forms[i].confirm_redirect);
	}
	free(cfg->forms);
	for (size_t i = 0; i < cfg->nwebhooks; i++) {
		free(cfg->webhooks[i].url);
		free(cfg->webhooks[i].secret_file);
		for (size_t j = 0; j < cfg->webhooks[i].nevents; j++)
			free(cfg->webhooks[i].events[j]);
		free(cfg->webhooks[i].events);
	}
	free(cfg->webhooks);
	free(cfg->control_group);
	free(cfg->control_uids);
	free(cfg->control_gids);
	free(cfg);
}

/* A relative path in the file is relative to the file's folder. */
static char *config_path(const char *cfg_path, const char *value)
{
	if (value[0] == '/' || value[0] == '\0')
		return xstrdup(value);
	const char *slash = strrchr(cfg_path, '/');
	if (!slash)
		return xstrdup(value);
	return xasprintf("%.*s/%s", (int)(slash - cfg_path), cfg_path, value);
}

/* Copies an optional string member; paths are resolved against the file's folder. */
static int config_string(const struct json_doc *d, const cJSON *obj, const char *key, char **field,
			 bool is_path, const char *cfg_path, char *err, size_t errlen)
{
	const char *v = NULL;
	int rc = json_get_string(d, obj, key, false, &v, err, errlen);
	if (rc || !v)
		return rc;
	if (strchr(v, '\n') || strchr(v, '\r'))
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(obj, key), err, errlen,
				 "\"%s\" must not contain a line break", key);
	free(*field);
	*field = is_path ? config_path(cfg_path, v) : xstrdup(v);
	return 0;
}

/*
 * A secret file: a path, or "credential:NAME" for $CREDENTIALS_DIRECTORY/NAME (systemd's
 * LoadCredential=NAME). Without $CREDENTIALS_DIRECTORY the value stays "credential:NAME":
 * `dripd check` warns and the daemon refuses it (config_unresolved_credential).
 */
static int config_secret(const struct json_doc *d, const cJSON *obj, const char *key, char **field,
			 const char *cfg_path, char *err, size_t errlen)
{
	int rc = config_string(d, obj, key, field, false, cfg_path, err, errlen);
	if (rc || strncmp(*field, SD_CREDENTIAL_PREFIX, strlen(SD_CREDENTIAL_PREFIX)) != 0) {
		if (!rc && **field && **field != '/') {
			char *p = config_path(cfg_path, *field);
			free(*field);
			*field = p;
		}
		return rc;
	}
	char why[512], *path = NULL;
	rc = sd_credential_path(*field, getenv("CREDENTIALS_DIRECTORY"), &path, why, sizeof(why));
	if (rc == DRIP_EINVALID)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(obj, key), err, errlen,
				 "\"%s\": %s", key, why);
	if (rc == 0) {
		free(*field);
		*field = path;
	}
	return 0;
}

/* A delivery url (maildir paths resolved against the file) and a "Name <address>" sender. */
static int config_sender(struct config *cfg, const struct json_doc *d, const cJSON *o,
			 const char *what, char **url, const char *from, char *err, size_t errlen)
{
	const cJSON *url_item = cJSON_GetObjectItemCaseSensitive(o, "url");
	const char *u = *url;
	if (strncmp(u, "maildir:", 8) == 0) {
		if (u[8] == '\0')
			return json_errf(d, url_item, err, errlen,
					 "%s: \"maildir:\" needs a folder", what);
		/* The Maildir path is a path like any other: resolve it against the file. */
		char *resolved = config_path(cfg->path, u + 8);
		free(*url);
		*url = xasprintf("maildir:%s", resolved);
		free(resolved);
	} else if (strncmp(u, "smtp://", 7) != 0 && strncmp(u, "smtps://", 8) != 0) {
		return json_errf(d, url_item, err, errlen,
				 "%s: \"url\" must start with smtp://, smtps:// or maildir:", what);
	}
	const char *lt = strrchr(from, '<');
	char *addr = lt ? xstrndup(lt + 1, strcspn(lt + 1, ">")) : xstrdup(from);
	bool ok = util_email_valid(addr) && (!lt || strchr(lt, '>'));
	free(addr);
	if (!ok)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "from"), err, errlen,
				 "%s: \"from\" must be an address such as "
				 "\"Ana Ruiz <ana@example.com>\"",
				 what);
	return 0;
}

/* "warmup": {"start": "YYYY-MM-DD", "days": N, "from": N, "to": N}; `to` defaults to per_day. */
static int config_warmup(const struct json_doc *d, const cJSON *o, const char *what,
			 int64_t per_day, struct config_warmup *w, char *err, size_t errlen)
{
	const char *start = NULL;
	int rc;
	int64_t to = per_day;
	if ((rc = json_check_object(d, o, "warmup", config_warmup_keys, err, errlen)) ||
	    (rc = json_get_string(d, o, "start", true, &start, err, errlen)) ||
	    (rc = json_get_int(d, o, "days", 1, 3650, &w->days, err, errlen)) ||
	    (rc = json_get_int(d, o, "from", 1, 100000000, &w->from, err, errlen)) ||
	    (rc = json_get_int(d, o, "to", 1, 1000000000, &to, err, errlen)))
		return rc;
	if (!cJSON_GetObjectItemCaseSensitive(o, "days") ||
	    !cJSON_GetObjectItemCaseSensitive(o, "from"))
		return json_errf(d, o, err, errlen, "%s: warmup needs \"days\" and \"from\"", what);
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(start, "%Y-%m-%d", &tm);
	if (!end || *end || strlen(start) != 10)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "start"), err, errlen,
				 "%s: warmup \"start\" must be a date such as \"2026-12-01\"",
				 what);
	w->start = (int64_t)timegm(&tm);
	if (to <= 0)
		return json_errf(d, o, err, errlen,
				 "%s: warmup needs \"to\" (or a per_day cap to grow to)", what);
	if (to < w->from)
		return json_errf(d, o, err, errlen, "%s: warmup \"to\" is below \"from\"", what);
	w->to = to;
	return 0;
}

/* "domains": {"gmail.com": {"per_hour": N, "concurrency": N}, …} */
static int config_domains(const struct json_doc *d, const cJSON *o, const char *what,
			  struct config_domain_limit **out, size_t *nout, char *err, size_t errlen)
{
	if (!cJSON_IsObject(o))
		return json_errf(d, o, err, errlen, "%s: \"domains\" must be an object of domains",
				 what);
	size_t n = (size_t)cJSON_GetArraySize(o);
	*out = xcalloc(n ? n : 1, sizeof(**out));
	const cJSON *c;
	cJSON_ArrayForEach(c, o)
	{
		struct config_domain_limit *l = &(*out)[(*nout)++];
		int rc;
		l->domain = xstrdup(c->string);
		bool ok = strchr(c->string, '.') && strlen(c->string) < 254;
		for (const char *p = c->string; *p && ok; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
			     *p == '-';
		if (!ok)
			return json_errf(d, c, err, errlen,
					 "%s: \"%s\" is not a lower-case domain such as "
					 "\"gmail.com\"",
					 what, c->string);
		if ((rc = json_check_object(d, c, "domain limit", config_domain_keys, err,
					    errlen)) ||
		    (rc = json_get_int(d, c, "per_hour", 0, 100000000, &l->per_hour, err,
				       errlen)) ||
		    (rc = json_get_int(d, c, "concurrency", 0, 64, &l->concurrency, err, errlen)))
			return rc;
	}
	return 0;
}

static int config_accounts(struct config *cfg, const struct json_doc *d, const cJSON *o, char *err,
			   size_t errlen)
{
	if (!cJSON_IsObject(o))
		return json_errf(d, o, err, errlen,
				 "\"accounts\" must be an object of named delivery accounts");
	size_t n = (size_t)cJSON_GetArraySize(o);
	cfg->accounts = xcalloc(n ? n : 1, sizeof(*cfg->accounts));
	const cJSON *c;
	cJSON_ArrayForEach(c, o)
	{
		struct config_account *a = &cfg->accounts[cfg->naccounts++];
		const char *p = cfg->path;
		const cJSON *sec;
		const char *given = NULL;
		char what[64];
		int rc;
		a->name = xstrdup(c->string);
		a->url = xstrdup("");
		a->from = xstrdup("");
		a->username = xstrdup("");
		a->password_file = xstrdup("");
		a->max_connections = 2;
		snprintf(what, sizeof(what), "account \"%.32s\"", c->string);
		bool ok = *c->string && strlen(c->string) <= 32 &&
			  strcmp(c->string, CONFIG_DEFAULT_ACCOUNT) != 0;
		for (const char *s = c->string; *s && ok; s++)
			ok = (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
			     *s == '-';
		if (!ok)
			return json_errf(d, c, err, errlen,
					 "account \"%.64s\": a name is 1-32 of a-z 0-9 _ - and "
					 "not \"default\" (that is the \"delivery\" section)",
					 c->string);
		if ((rc = json_check_object(d, c, what, config_account_keys, err, errlen)) ||
		    (rc = json_get_string(d, c, "url", true, &given, err, errlen)) ||
		    (rc = json_get_string(d, c, "from", true, &given, err, errlen)) ||
		    (rc = config_string(d, c, "url", &a->url, false, p, err, errlen)) ||
		    (rc = config_string(d, c, "from", &a->from, false, p, err, errlen)) ||
		    (rc = config_string(d, c, "username", &a->username, false, p, err, errlen)) ||
		    (rc = config_string(d, c, "password_file", &a->password_file, true, p, err,
					errlen)) ||
		    (rc = json_get_int(d, c, "max_connections", 1, 64, &a->max_connections, err,
				       errlen)) ||
		    (rc = json_get_int(d, c, "per_hour", 0, 100000000, &a->per_hour, err,
				       errlen)) ||
		    (rc = json_get_int(d, c, "per_day", 0, 1000000000, &a->per_day, err, errlen)) ||
		    (rc = config_sender(cfg, d, c, what, &a->url, a->from, err, errlen)))
			return rc;
		if ((sec = cJSON_GetObjectItemCaseSensitive(c, "warmup")) &&
		    (rc = config_warmup(d, sec, what, a->per_day, &a->warmup, err, errlen)))
			return rc;
		if ((sec = cJSON_GetObjectItemCaseSensitive(c, "domains")) &&
		    (rc = config_domains(d, sec, what, &a->domains, &a->ndomains, err, errlen)))
			return rc;
	}
	return 0;
}

static int config_governor(struct config *cfg, const struct json_doc *d, const cJSON *o, char *err,
			   size_t errlen)
{
	struct governor_limits *g = &cfg->governor;
	bool enabled = true;
	int rc;
	if ((rc = json_check_object(d, o, "governor", config_governor_keys, err, errlen)) ||
	    (rc = json_get_bool(d, o, "enabled", &enabled, err, errlen)) ||
	    (rc = json_get_duration(d, o, "window", &g->window, err, errlen)) ||
	    (rc = json_get_int(d, o, "min_samples", 1, 1000, &g->min_samples, err, errlen)) ||
	    (rc = json_get_number(d, o, "slow_deferral_rate", 0, 1, &g->slow_deferral, err,
				  errlen)) ||
	    (rc = json_get_number(d, o, "pause_deferral_rate", 0, 1, &g->pause_deferral, err,
				  errlen)) ||
	    (rc = json_get_number(d, o, "slow_bounce_rate", 0, 1, &g->slow_bounce, err, errlen)) ||
	    (rc = json_get_number(d, o, "pause_bounce_rate", 0, 1, &g->pause_bounce, err,
				  errlen)) ||
	    (rc = json_get_number(d, o, "slow_complaint_rate", 0, 1, &g->slow_complaint, err,
				  errlen)) ||
	    (rc = json_get_number(d, o, "pause_complaint_rate", 0, 1, &g->pause_complaint, err,
				  errlen)) ||
	    (rc = json_get_duration(d, o, "pause", &g->pause, err, errlen)) ||
	    (rc = json_get_duration(d, o, "recover", &g->recover, err, errlen)) ||
	    (rc = json_get_duration(d, o, "slow_interval", &g->slow_interval, err, errlen)))
		return rc;
	if (g->window < 60)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "window"), err, errlen,
				 "governor: \"window\" must be at least 1m");
	if (!enabled)
		g->slow_deferral = g->pause_deferral = g->slow_bounce = g->pause_bounce =
			g->slow_complaint = g->pause_complaint = 0;
	return 0;
}

static int config_delivery(struct config *cfg, const struct json_doc *d, const cJSON *o, char *err,
			   size_t errlen)
{
	const char *p = cfg->path;
	int rc;
	if ((rc = json_check_object(d, o, "delivery", config_delivery_keys, err, errlen)) ||
	    (rc = config_string(d, o, "url", &cfg->delivery.url, false, p, err, errlen)) ||
	    (rc = config_string(d, o, "from", &cfg->delivery.from, false, p, err, errlen)) ||
	    (rc = config_string(d, o, "username", &cfg->delivery.username, false, p, err,
				errlen)) ||
	    (rc = config_secret(d, o, "password_file", &cfg->delivery.password_file, p, err,
				errlen)) ||
	    (rc = config_string(d, o, "ca_file", &cfg->delivery.ca_file, true, p, err, errlen)) ||
	    (rc = json_get_int(d, o, "max_connections", 1, 64, &cfg->delivery.max_connections, err,
			       errlen)) ||
	    (rc = json_get_int(d, o, "per_hour", 0, 100000000, &cfg->delivery.per_hour, err,
			       errlen)) ||
	    (rc = json_get_duration(d, o, "connect_timeout", &cfg->delivery.connect_timeout, err,
				    errlen)) ||
	    (rc = json_get_duration(d, o, "reply_timeout", &cfg->delivery.reply_timeout, err,
				    errlen)) ||
	    (rc = json_get_duration(d, o, "transfer_timeout", &cfg->delivery.transfer_timeout, err,
				    errlen)) ||
	    (rc = json_get_duration(d, o, "retry_min", &cfg->delivery.retry_min, err, errlen)) ||
	    (rc = json_get_duration(d, o, "retry_max", &cfg->delivery.retry_max, err, errlen)) ||
	    (rc = json_get_duration(d, o, "give_up", &cfg->delivery.give_up, err, errlen)) ||
	    (rc = json_get_int(d, o, "per_day", 0, 1000000000, &cfg->delivery.per_day, err,
			       errlen)) ||
	    (rc = json_get_duration(d, o, "min_gap", &cfg->delivery.min_gap, err, errlen)))
		return rc;
	if (cfg->delivery.connect_timeout < 1 || cfg->delivery.reply_timeout < 1 ||
	    cfg->delivery.transfer_timeout < 1)
		return json_errf(d, o, err, errlen, "delivery: timeouts must be at least 1s");
	if (*cfg->delivery.ca_file && access(cfg->delivery.ca_file, R_OK) != 0)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "ca_file"), err, errlen,
				 "delivery: cannot read ca_file %s: %s", cfg->delivery.ca_file,
				 strerror(errno));
	if (cfg->delivery.retry_min < 1 || cfg->delivery.retry_max < cfg->delivery.retry_min)
		return json_errf(d, o, err, errlen,
				 "delivery: retry_min must be at least 1s and at most retry_max");
	const cJSON *sec;
	if ((rc = config_sender(cfg, d, o, "delivery", &cfg->delivery.url, cfg->delivery.from, err,
				errlen)))
		return rc;
	if ((sec = cJSON_GetObjectItemCaseSensitive(o, "warmup")) &&
	    (rc = config_warmup(d, sec, "delivery", cfg->delivery.per_day, &cfg->delivery.warmup,
				err, errlen)))
		return rc;
	if ((sec = cJSON_GetObjectItemCaseSensitive(o, "domains")) &&
	    (rc = config_domains(d, sec, "delivery", &cfg->delivery.domains,
				 &cfg->delivery.ndomains, err, errlen)))
		return rc;
	return 0;
}

static int config_tracking(struct config *cfg, const struct json_doc *d, const cJSON *o, char *err,
			   size_t errlen)
{
	const char *p = cfg->path;
	int rc;
	if ((rc = json_check_object(d, o, "tracking", config_tracking_keys, err, errlen)) ||
	    (rc = config_string(d, o, "listen", &cfg->tracking.listen, false, p, err, errlen)) ||
	    (rc = config_string(d, o, "base_url", &cfg->tracking.base_url, false, p, err,
				errlen)) ||
	    (rc = config_secret(d, o, "secret_file", &cfg->tracking.secret_file, p, err, errlen)))
		return rc;
	if (strncmp(cfg->tracking.base_url, "http://", 7) != 0 &&
	    strncmp(cfg->tracking.base_url, "https://", 8) != 0)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "base_url"), err, errlen,
				 "tracking: \"base_url\" must start with http:// or https://");
	if ((rc = json_get_int(d, o, "max_connections", 1, 1000000, &cfg->tracking.max_connections,
			       err, errlen)) ||
	    (rc = json_get_duration(d, o, "request_timeout", &cfg->tracking.request_timeout, err,
				    errlen)) ||
	    (rc = json_get_duration(d, o, "idle_timeout", &cfg->tracking.idle_timeout, err,
				    errlen)))
		return rc;
	if (cfg->tracking.request_timeout < 1 || cfg->tracking.idle_timeout < 1)
		return json_errf(d,
				 cJSON_GetObjectItemCaseSensitive(
					 o, cfg->tracking.request_timeout < 1 ? "request_timeout"
									      : "idle_timeout"),
				 err, errlen, "tracking: timeouts must be at least 1s");
	const cJSON *tp = cJSON_GetObjectItemCaseSensitive(o, "trusted_proxies");
	if (!tp)
		return 0;
	if (!cJSON_IsArray(tp))
		return json_errf(d, tp, err, errlen,
				 "tracking: \"trusted_proxies\" must be an array of addresses");
	cfg->tracking.trusted_proxies = xcalloc((size_t)cJSON_GetArraySize(tp) + 1, sizeof(char *));
	const cJSON *e;
	cJSON_ArrayForEach(e, tp)
	{
		if (!cJSON_IsString(e) || !util_cidr_parse(e->valuestring, NULL))
			return json_errf(d, e, err, errlen,
					 "tracking: \"trusted_proxies\": each entry must be an IP "
					 "address or a network such as \"10.0.0.0/8\" or \"::1\"");
		cfg->tracking.trusted_proxies[cfg->tracking.ntrusted_proxies++] =
			xstrdup(e->valuestring);
	}
	return 0;
}

static int config_inbox(struct config *cfg, const struct json_doc *d, const cJSON *o, char *err,
			size_t errlen)
{
	const char *p = cfg->path;
	int rc;
	if ((rc = json_check_object(d, o, "inbox", config_inbox_keys, err, errlen)) ||
	    (rc = config_string(d, o, "url", &cfg->inbox.url, false, p, err, errlen)) ||
	    (rc = config_string(d, o, "username", &cfg->inbox.username, false, p, err, errlen)) ||
	    (rc = config_secret(d, o, "password_file", &cfg->inbox.password_file, p, err,
				errlen)) ||
	    (rc = json_get_duration(d, o, "poll", &cfg->inbox.poll, err, errlen)) ||
	    (rc = config_string(d, o, "reply_domain", &cfg->inbox.reply_domain, false, p, err,
				errlen)) ||
	    (rc = config_string(d, o, "bounce_domain", &cfg->inbox.bounce_domain, false, p, err,
				errlen)) ||
	    (rc = json_get_duration(d, o, "auto_reply_pause", &cfg->inbox.auto_reply_pause, err,
				    errlen)) ||
	    (rc = json_get_int(d, o, "soft_bounce_limit", 1, 1000, &cfg->inbox.soft_bounce_limit,
			       err, errlen)) ||
	    (rc = config_string(d, o, "colleague", &cfg->inbox.colleague, false, p, err, errlen)) ||
	    (rc = config_string(d, o, "move_to", &cfg->inbox.move_to, false, p, err, errlen)))
		return rc;
	static const char *const domains[] = { "reply_domain", "bounce_domain" };
	for (size_t i = 0; i < 2; i++) {
		const char *v = i ? cfg->inbox.bounce_domain : cfg->inbox.reply_domain;
		char probe[300];
		snprintf(probe, sizeof(probe), "x@%s", v);
		if (*v && (strlen(v) > 200 || !util_email_valid(probe) || strchr(v, '@')))
			return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, domains[i]), err,
					 errlen, "inbox: \"%s\" must be a mail domain", domains[i]);
	}
	bool known = false;
	for (size_t i = 0; config_colleague_modes[i]; i++)
		known |= strcmp(cfg->inbox.colleague, config_colleague_modes[i]) == 0;
	if (!known)
		return json_errf(
			d, cJSON_GetObjectItemCaseSensitive(o, "colleague"), err, errlen,
			"inbox: \"colleague\" must be \"lead\", \"company\" or \"ignore\"");
	if (cfg->inbox.url[0] && strncmp(cfg->inbox.url, "imap://", 7) != 0 &&
	    strncmp(cfg->inbox.url, "imaps://", 8) != 0)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "url"), err, errlen,
				 "inbox: \"url\" must start with imap:// or imaps://");
	if (cfg->inbox.poll < 1)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "poll"), err, errlen,
				 "inbox: \"poll\" must be at least 1s");
	return 0;
}

static int config_webhooks(struct config *cfg, const struct json_doc *d, const cJSON *arr,
			   char *err, size_t errlen)
{
	if (!cJSON_IsArray(arr))
		return json_errf(d, arr, err, errlen, "\"webhooks\" must be an array");
	size_t n = (size_t)cJSON_GetArraySize(arr);
	cfg->webhooks = xcalloc(n, sizeof(*cfg->webhooks));
	const cJSON *o;
	cJSON_ArrayForEach(o, arr)
	{
		struct config_webhook *w = &cfg->webhooks[cfg->nwebhooks++];
		const char *url = NULL;
		int rc;
		w->url = xstrdup("");
		w->secret_file = xstrdup("");
		w->timeout = 10;
		w->concurrency = 2;
		w->retry_min = 30;
		w->retry_max = 3600;
		w->give_up = 3 * 86400;
		if ((rc = json_check_object(d, o, "webhook", config_webhook_keys, err, errlen)) ||
		    (rc = json_get_string(d, o, "url", true, &url, err, errlen)) ||
		    (rc = config_string(d, o, "secret_file", &w->secret_file, true, cfg->path, err,
					errlen)) ||
		    (rc = json_get_duration(d, o, "timeout", &w->timeout, err, errlen)) ||
		    (rc = json_get_int(d, o, "concurrency", 1, 64, &w->concurrency, err, errlen)) ||
		    (rc = json_get_duration(d, o, "retry_min", &w->retry_min, err, errlen)) ||
		    (rc = json_get_duration(d, o, "retry_max", &w->retry_max, err, errlen)) ||
		    (rc = json_get_duration(d, o, "give_up", &w->give_up, err, errlen)))
			return rc;
		config_set(&w->url, url);
		if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
			return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "url"), err, errlen,
					 "webhook: \"url\" must start with http:// or https://");
		/* The URL names the webhook's deliveries in the outbox: one webhook per URL. */
		for (size_t i = 0; i + 1 < cfg->nwebhooks; i++)
			if (strcmp(cfg->webhooks[i].url, url) == 0)
				return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "url"), err,
						 errlen, "webhook: \"%s\" is listed twice", url);
		if (w->timeout < 1 || w->timeout > 600)
			return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "timeout"), err,
					 errlen, "webhook: \"timeout\" must be from 1s to 10m");
		if (w->retry_min < 1 || w->retry_max < w->retry_min)
			return json_errf(d, o, err, errlen,
					 "webhook: retry_min must be at least 1s and at most "
					 "retry_max");
		if (w->give_up < 1)
			return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "give_up"), err,
					 errlen, "webhook: \"give_up\" must be at least 1s");
		const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "events");
		if (!ev)
			continue;
		if (!cJSON_IsArray(ev))
			return json_errf(d, ev, err, errlen,
					 "webhook: \"events\" must be an array of event kinds");
		w->events = xcalloc((size_t)cJSON_GetArraySize(ev), sizeof(char *));
		const cJSON *e;
		cJSON_ArrayForEach(e, ev)
		{
			if (!cJSON_IsString(e))
				return json_errf(d, e, err, errlen,
						 "webhook: each event kind must be a string");
			w->events[w->nevents++] = xstrdup(e->valuestring);
		}
	}
	return 0;
}

/* control_users / control_groups: names that must exist on this machine, kept as ids. */
static int config_ids(const struct json_doc *d, const cJSON *root, const char *key, bool users,
		      unsigned **ids, size_t *n, char *err, size_t errlen)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key), *e;
	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr))
		return json_errf(d, arr, err, errlen, "\"%s\" must be an array of %s names", key,
				 users ? "user" : "group");
	*ids = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(**ids));
	cJSON_ArrayForEach(e, arr)
	{
		struct passwd *pw = NULL;
		struct group *gr = NULL;
		if (!cJSON_IsString(e))
			return json_errf(d, e, err, errlen, "\"%s\": each entry must be a name",
					 key);
		if (users ? !(pw = getpwnam(e->valuestring)) : !(gr = getgrnam(e->valuestring)))
			return json_errf(d, e, err, errlen,
					 "\"%s\": no %s \"%.64s\" on this machine", key,
					 users ? "user" : "group", e->valuestring);
		(*ids)[(*n)++] = users ? (unsigned)pw->pw_uid : (unsigned)gr->gr_gid;
	}
	return 0;
}

/* [a-z0-9][a-z0-9_-]*, 1-64 bytes (as content names): 0 when valid. */
static int config_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 64 || !strchr("abcdefghijklmnopqrstuvwxyz0123456789", s[0]))
		return -1;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n ? 0 : -1;
}

static const char *const config_signup_keys[] = { "site",     "expire",  "per_hour",
						  "honeypot", "subject", NULL };
static const char *const config_form_keys[] = { "stage", "sequence", "redirect", "confirm_redirect",
						NULL };

bool config_url_on_site(const char *site, const char *url)
{
	size_t n = strlen(site);
	if (!n || strncmp(url, site, n) != 0 || (url[n] != '\0' && url[n] != '/'))
		return false;
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return strlen(url) < 2048;
}

/* An origin: http(s)://host[:port], nothing after it. */
static bool config_origin_valid(const char *s)
{
	const char *h = strncmp(s, "https://", 8) == 0  ? s + 8
			: strncmp(s, "http://", 7) == 0 ? s + 7
							: NULL;
	return h && *h &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			 ".-:[]") == strlen(h);
}

const struct config_form *config_form(const struct config *cfg, const char *id)
{
	for (size_t i = 0; id && i < cfg->nforms; i++)
		if (strcmp(cfg->forms[i].id, id) == 0)
			return &cfg->forms[i];
	return NULL;
}

static int config_signup(struct config *cfg, const struct json_doc *d, const cJSON *root, char *err,
			 size_t errlen)
{
	const char *p = cfg->path;
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "signup");
	int rc;
	if (o) {
		if ((rc = json_check_object(d, o, "signup", config_signup_keys, err, errlen)) ||
		    (rc = config_string(d, o, "site", &cfg->signup.site, false, p, err, errlen)) ||
		    (rc = json_get_duration(d, o, "expire", &cfg->signup.expire, err, errlen)) ||
		    (rc = json_get_int(d, o, "per_hour", 1, 1000000, &cfg->signup.per_hour, err,
				       errlen)) ||
		    (rc = config_string(d, o, "honeypot", &cfg->signup.honeypot, false, p, err,
					errlen)) ||
		    (rc = config_string(d, o, "subject", &cfg->signup.subject, false, p, err,
					errlen)))
			return rc;
		if (*cfg->signup.site && !config_origin_valid(cfg->signup.site))
			return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "site"), err,
					 errlen,
					 "signup: \"site\" must be an origin such as "
					 "\"https://www.example.com\" (no path)");
		if (cfg->signup.expire < 60)
			return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "expire"), err,
					 errlen, "signup: \"expire\" must be at least 1m");
		if (config_name_valid(cfg->signup.honeypot) != 0)
			return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "honeypot"), err,
					 errlen, "signup: \"honeypot\" must be a field name");
	}
	const cJSON *forms = cJSON_GetObjectItemCaseSensitive(root, "forms");
	if (!forms)
		return 0;
	if (!cJSON_IsObject(forms))
		return json_errf(d, forms, err, errlen,
				 "\"forms\" must be an object of form id to its settings");
	cfg->forms = xcalloc((size_t)cJSON_GetArraySize(forms) + 1, sizeof(*cfg->forms));
	const cJSON *f;
	cJSON_ArrayForEach(f, forms)
	{
		struct config_form *cf = &cfg->forms[cfg->nforms++];
		cf->id = xstrdup(f->string);
		cf->stage = xstrdup("");
		cf->sequence = xstrdup("");
		cf->redirect = xstrdup("");
		cf->confirm_redirect = xstrdup("");
		if (config_name_valid(f->string) != 0)
			return json_errf(d, f, err, errlen,
					 "forms: \"%.64s\" is not a form id (letters, digits, - "
					 "and _)",
					 f->string);
		if (!cJSON_IsObject(f))
			return json_errf(d, f, err, errlen, "forms: \"%.64s\" must be an object",
					 f->string);
		if ((rc = json_check_object(d, f, "form", config_form_keys, err, errlen)) ||
		    (rc = config_string(d, f, "stage", &cf->stage, false, p, err, errlen)) ||
		    (rc = config_string(d, f, "sequence", &cf->sequence, false, p, err, errlen)) ||
		    (rc = config_string(d, f, "redirect", &cf->redirect, false, p, err, errlen)) ||
		    (rc = config_string(d, f, "confirm_redirect", &cf->confirm_redirect, false, p,
					err, errlen)))
			return rc;
		if (!*cf->stage || config_name_valid(cf->stage) != 0)
			return json_errf(d, f, err, errlen,
					 "forms: \"%.64s\" needs a \"stage\" (a stage name)",
					 f->string);
		if (*cf->sequence && config_name_valid(cf->sequence) != 0)
			return json_errf(d, cJSON_GetObjectItemCaseSensitive(f, "sequence"), err,
					 errlen, "forms: \"%.64s\": \"sequence\" is not a name",
					 f->string);
		static const char *const keys[] = { "redirect", "confirm_redirect" };
		const char *vals[] = { cf->redirect, cf->confirm_redirect };
		for (int k = 0; k < 2; k++) {
			if (!*vals[k])
				continue;
			if (!*cfg->signup.site)
				return json_errf(d, cJSON_GetObjectItemCaseSensitive(f, keys[k]),
						 err, errlen,
						 "forms: \"%.64s\": \"%s\" needs signup.site (the "
						 "website redirects may go to)",
						 f->string, keys[k]);
			if (!config_url_on_site(cfg->signup.site, vals[k]))
				return json_errf(d, cJSON_GetObjectItemCaseSensitive(f, keys[k]),
						 err, errlen,
						 "forms: \"%.64s\": \"%s\" must be a URL on %s",
						 f->string, keys[k], cfg->signup.site);
		}
	}
	return 0;
}

static const char *const config_retention_keys[] = { "events", "batch", "anonymise", NULL };

static int config_retention(struct config *cfg, const struct json_doc *d, const cJSON *o, char *err,
			    size_t errlen)
{
	int rc;
	if ((rc = json_check_object(d, o, "retention", config_retention_keys, err, errlen)) ||
	    (rc = json_get_duration(d, o, "events", &cfg->retention.events, err, errlen)) ||
	    (rc = json_get_int(d, o, "batch", 1, 10000, &cfg->retention.batch, err, errlen)) ||
	    (rc = json_get_duration(d, o, "anonymise", &cfg->retention.anonymise, err, errlen)))
		return rc;
	if (cfg->retention.anonymise != 0 && cfg->retention.anonymise < 86400)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "anonymise"), err, errlen,
				 "retention: \"anonymise\" must be at least 1d (or 0s: never)");
	if (cfg->retention.events != 0 && cfg->retention.events < 86400)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "events"), err, errlen,
				 "retention: \"events\" must be at least 1d (or 0s: keep them)");
	return 0;
}

static int config_apply(struct config *cfg, const struct json_doc *d, char *err, size_t errlen)
{
	const cJSON *root = json_doc_root(d);
	const char *p = cfg->path;
	const cJSON *sec;
	int rc;
	if ((rc = json_check_object(d, root, "config", config_top_keys, err, errlen)) ||
	    (rc = config_string(d, root, "state_dir", &cfg->state_dir, true, p, err, errlen)) ||
	    (rc = config_string(d, root, "content_dir", &cfg->content_dir, true, p, err, errlen)) ||
	    (rc = config_string(d, root, "control_socket", &cfg->control_socket, true, p, err,
				errlen)) ||
	    (rc = config_string(d, root, "timezone", &cfg->timezone, false, p, err, errlen)) ||
	    (rc = config_string(d, root, "log_level", &cfg->log_level, false, p, err, errlen)) ||
	    (rc = json_get_bool(d, root, "test_clock", &cfg->test_clock, err, errlen)) ||
	    (rc = json_get_number(d, root, "clock_rate", 0.001, 10000000, &cfg->clock_rate, err,
				  errlen)))
		return rc;
	if ((rc = config_string(d, root, "control_group", &cfg->control_group, false, p, err,
				errlen)) ||
	    (rc = config_ids(d, root, "control_users", true, &cfg->control_uids,
			     &cfg->ncontrol_uids, err, errlen)) ||
	    (rc = config_ids(d, root, "control_groups", false, &cfg->control_gids,
			     &cfg->ncontrol_gids, err, errlen)))
		return rc;
	if (*cfg->control_group && !getgrnam(cfg->control_group))
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "control_group"), err,
				 errlen, "\"control_group\": no group \"%.64s\" on this machine",
				 cfg->control_group);
	if (!clock_tz_valid(cfg->timezone))
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "timezone"), err, errlen,
				 "\"timezone\": unknown time zone \"%s\" (an IANA name such as "
				 "\"Europe/Berlin\")",
				 cfg->timezone);
	bool level_ok = false;
	for (const char *const *l = config_log_levels; *l; l++)
		level_ok |= strcmp(*l, cfg->log_level) == 0;
	if (!level_ok)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "log_level"), err,
				 errlen, "\"log_level\" must be error, warning, info or debug");
	if (cfg->clock_rate != 1.0 && !cfg->test_clock)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "clock_rate"), err,
				 errlen, "\"clock_rate\" needs \"test_clock\": true");
	if (strlen(cfg->control_socket) >= 108)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "control_socket"), err,
				 errlen, "\"control_socket\" path is longer than 107 bytes");
	if ((sec = cJSON_GetObjectItemCaseSensitive(root, "delivery")) &&
	    (rc = config_delivery(cfg, d, sec, err, errlen)))
		return rc;
	if ((sec = cJSON_GetObjectItemCaseSensitive(root, "tracking")) &&
	    (rc = config_tracking(cfg, d, sec, err, errlen)))
		return rc;
	if ((sec = cJSON_GetObjectItemCaseSensitive(root, "inbox")) &&
	    (rc = config_inbox(cfg, d, sec, err, errlen)))
		return rc;
	if ((sec = cJSON_GetObjectItemCaseSensitive(root, "webhooks")) &&
	    (rc = config_webhooks(cfg, d, sec, err, errlen)))
		return rc;
	if ((sec = cJSON_GetObjectItemCaseSensitive(root, "accounts")) &&
	    (rc = config_accounts(cfg, d, sec, err, errlen)))
		return rc;
	if ((sec = cJSON_GetObjectItemCaseSensitive(root, "governor")) &&
	    (rc = config_governor(cfg, d, sec, err, errlen)))
		return rc;
	if ((rc = config_signup(cfg, d, root, err, errlen)))
		return rc;
	if ((sec = cJSON_GetObjectItemCaseSensitive(root, "retention")) &&
	    (rc = config_retention(cfg, d, sec, err, errlen)))
		return rc;
	return 0;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct json_doc *d = json_doc_load(path, err, errlen);
	if (!d)
		return NULL;
	struct config *cfg = config_defaults();
	config_set(&cfg->path, path);
	/* Defaults that are paths follow the file too only when given; absolute defaults stay. */
	if (config_apply(cfg, d, err, errlen) != 0) {
		json_doc_free(d);
		config_free(cfg);
		return NULL;
	}
	json_doc_free(d);
	return cfg;
}

bool config_account(const struct config *cfg, const char *name, struct config_account *out)
{
	if (!name || !*name || strcmp(name, CONFIG_DEFAULT_ACCOUNT) == 0) {
		*out = (struct config_account){
			.name = (char *)CONFIG_DEFAULT_ACCOUNT,
			.url = cfg->delivery.url,
			.from = cfg->delivery.from,
			.username = cfg->delivery.username,
			.password_file = cfg->delivery.password_file,
			.max_connections = cfg->delivery.max_connections,
			.per_hour = cfg->delivery.per_hour,
			.per_day = cfg->delivery.per_day,
			.warmup = cfg->delivery.warmup,
			.domains = cfg->delivery.domains,
			.ndomains = cfg->delivery.ndomains,
		};
		return true;
	}
	for (size_t i = 0; i < cfg->naccounts; i++) {
		if (strcmp(cfg->accounts[i].name, name) == 0) {
			*out = cfg->accounts[i];
			return true;
		}
	}
	return false;
}

const char *config_account_maildir(const struct config_account *a)
{
	return strncmp(a->url, "maildir:", 8) == 0 ? a->url + 8 : NULL;
}

const char *config_maildir(const struct config *cfg)
{
	return strncmp(cfg->delivery.url, "maildir:", 8) == 0 ? cfg->delivery.url + 8 : NULL;
}

char *config_warnings(const struct config *cfg)
{
	struct buf b;
	buf_init(&b);
	if (cfg->test_clock)
		buf_printf(&b,
			   "%s: \"test_clock\" is on: business time can be moved by "
			   "`dripctl clock advance` (rate %g); never in production\n",
			   cfg->path, cfg->clock_rate);
	const char *key = config_unresolved_credential(cfg);
	if (key)
		buf_printf(&b,
			   "%s: \"%s\" names a credential but $CREDENTIALS_DIRECTORY is not set: "
			   "the daemon reads it only under systemd (LoadCredential=)\n",
			   cfg->path, key);
	for (size_t i = 0; i < cfg->nwebhooks; i++)
		if (!*cfg->webhooks[i].secret_file)
			buf_printf(&b,
				   "%s: webhook %s has no \"secret_file\": its POSTs go out "
				   "unsigned\n",
				   cfg->path, cfg->webhooks[i].url);
	return b.len ? buf_steal(&b) : NULL;
}

const char *config_unresolved_credential(const struct config *cfg)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "delivery.password_file", offsetof(struct config, delivery.password_file) },
		{ "tracking.secret_file", offsetof(struct config, tracking.secret_file) },
		{ "inbox.password_file", offsetof(struct config, inbox.password_file) },
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v = *(char *const *)((const char *)cfg + keys[i].off);
		if (strncmp(v, SD_CREDENTIAL_PREFIX, strlen(SD_CREDENTIAL_PREFIX)) == 0)
			return keys[i].key;
	}
	return NULL;
}
