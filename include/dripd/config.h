/* config.h - the daemon's configuration file: JSON with comments, defaults, validation. */
#ifndef DRIPD_CONFIG_H
#define DRIPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/governor.h"

#define CONFIG_DEFAULT_PATH "/etc/dripd/dripd.json"

struct config_webhook {
	char *url;
	char **events; /* the event kinds it receives; none listed: every kind */
	size_t nevents;
	char *secret_file; /* HMAC secrets, one a line, newest first; "" sends unsigned */
	int64_t timeout; /* seconds for one POST, connection included */
	int64_t concurrency; /* POSTs in flight to this URL at once */
	int64_t retry_min; /* business seconds before the first retry; doubles each time */
	int64_t retry_max; /* the longest wait between retries */
	int64_t give_up; /* a delivery still failing this long after its event is dropped */
};

/* A limit for mail to one recipient domain ("gmail.com"), per delivery account. */
struct config_domain_limit {
	char *domain;
	int64_t per_hour; /* at most this many in any hour of business time; 0: no cap */
	int64_t concurrency; /* at most this many in flight at once; 0: no cap */
};

/* A new sender's daily cap grows from `from` to `to` over `days` days from `start`. */
struct config_warmup {
	int64_t start; /* UTC midnight of the first day */
	int64_t days; /* 0: no warm-up */
	int64_t from;
	int64_t to;
};

/*
 * A delivery account: where its mail goes and how much of it. The default account is the
 * "delivery" section (config_account(cfg, NULL) gives a view of it); named ones come from
 * the "accounts" map. A sequence names its account with its "account" key.
 */
struct config_account {
	char *name;
	char *url;
	char *from;
	char *username;
	char *password_file;
	int64_t max_connections;
	int64_t per_hour; /* 0: no cap */
	int64_t per_day; /* 0: no cap */
	struct config_warmup warmup;
	struct config_domain_limit *domains;
	size_t ndomains;
};

#define CONFIG_DEFAULT_ACCOUNT "default"

/*
 * Every key has a default; relative paths are taken relative to the config file's folder,
 * so a config and its content can travel together. All strings are owned by the config.
 */
struct config {
	char *path;
	char *state_dir;
	char *content_dir;
	char *control_socket;
	char *timezone;
	char *log_level;
	struct {
		char *url; /* smtp://, smtps:// or maildir:PATH */
		char *from;
		char *username;
		char *password_file;
		char *ca_file; /* certificates to trust for TLS to relays, "": the system's */
		int64_t max_connections;
		int64_t per_hour; /* at most this many messages in any hour of business time; 0: no cap */
		int64_t per_day; /* the same over any rolling 24 hours */
		int64_t min_gap; /* business seconds between two touches to the same lead */
		int64_t connect_timeout; /* seconds to set up a connection */
		int64_t reply_timeout; /* seconds to wait for any one server reply */
		int64_t transfer_timeout; /* seconds for one whole message */
		int64_t retry_min; /* business seconds before the first retry */
		int64_t retry_max; /* the longest wait between retries */
		int64_t give_up; /* a touch still failing this long after it was due fails */
		struct config_warmup warmup; /* the default account's */
		struct config_domain_limit *domains; /* the default account's */
		size_t ndomains;
	} delivery;
	struct config_account *accounts; /* named accounts, besides the default */
	size_t naccounts;
	struct governor_limits governor;
	struct {
		char *listen;
		char *base_url;
		char *secret_file;
		/* addresses or networks ("10.0.0.0/8") whose X-Forwarded-For is believed */
		char **trusted_proxies;
		size_t ntrusted_proxies;
		int64_t max_connections; /* past it a new connection is closed at once */
		int64_t request_timeout; /* seconds for a whole request, from its first byte */
		int64_t idle_timeout; /* seconds a kept-alive connection may wait for the next */
	} tracking;
	struct {
		char *url;
		char *username;
		char *password_file;
		int64_t poll;
		char *reply_domain; /* Reply-To: reply+TOKEN@reply_domain when set */
		char *bounce_domain; /* envelope sender bounce+TOKEN@bounce_domain when set */
		int64_t auto_reply_pause; /* business seconds an undated auto-reply pauses for */
		int64_t soft_bounce_limit; /* soft bounces that suppress the address */
		char *colleague; /* "lead", "company" or "ignore": a reply from the lead's company */
		char *move_to; /* "" or the folder handled messages are moved to */
	} inbox;
	struct config_webhook *webhooks;
	size_t nwebhooks;
	bool test_clock;
	double clock_rate;
	/* Who may use the control socket besides root and dripd's own user (SO_PEERCRED). */
	char *control_group; /* the socket file's group ("" keeps dripd's own) */
	unsigned *control_uids; /* control_users, resolved */
	size_t ncontrol_uids;
	unsigned *control_gids; /* control_groups, resolved: a member of any may connect */
	size_t ncontrol_gids;
	/* Website signup (POST /subscribe) with double opt-in. */
	struct {
		char *site; /* the website's origin ("https://site.example"); redirects stay on it */
		int64_t expire; /* business seconds an unconfirmed signup is kept */
		int64_t per_hour; /* signups accepted per client address per hour */
		char *honeypot; /* the hidden field only bots fill */
		char *subject; /* the confirmation mail's subject */
	} signup;
	struct config_form *forms; /* the signup forms, by id */
	size_t nforms;
	struct {
		int64_t events; /* business seconds after which events are folded; 0: kept */
		int64_t batch; /* touches and events (and leads looked at) per turn of the loop */
		int64_t anonymise; /* business seconds after a lead's journey ended; 0: never */
	} retention;
};

struct config_form {
	char *id;
	char *stage; /* where a confirmed lead enters the journey */
	char *sequence; /* "" : the stage's first matching sequence */
	char *redirect; /* "" or a URL on signup.site, after the submit */
	char *confirm_redirect; /* "" or a URL on signup.site, after the confirmation */
};

/* The form `id`, or NULL. */
const struct config_form *config_form(const struct config *cfg, const char *id);
/* Whether url is on origin `site` (scheme, host and port equal, then "/" or the end). */
bool config_url_on_site(const char *site, const char *url);

/* Reads and validates `path`. NULL with err = "FILE:LINE: what is wrong" on any error. */
struct config *config_load(const char *path, char *err, size_t errlen);
/* The config as if the file were "{}" (every default); for tests and --help. */
struct config *config_defaults(void);
void config_free(struct config *cfg);
/*
 * The account `name` (NULL or "default": the delivery section) as a view into cfg (nothing
 * to free; valid while cfg is). false when there is no such account.
 */
bool config_account(const struct config *cfg, const char *name, struct config_account *out);
/* The Maildir folder of an account's url when it is "maildir:PATH", else NULL. */
const char *config_account_maildir(const struct config_account *a);
/* The Maildir folder when delivery.url is "maildir:PATH", else NULL. */
const char *config_maildir(const struct config *cfg);
/* Warnings a person should see from `dripd check` (test clock on, …), one per line; or NULL. */
char *config_warnings(const struct config *cfg);
/*
 * The first secret-file key ("delivery.password_file", …) still written "credential:NAME"
 * because $CREDENTIALS_DIRECTORY was not set when the file was loaded; NULL when none is.
 */
const char *config_unresolved_credential(const struct config *cfg);

#endif
