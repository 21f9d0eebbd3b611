/* test_config.c - loading, defaults and validation of the config file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "dripd/config.h"
#include "dripd/error.h"
#include "dripd/message.h"

/* Each test gets a fresh folder holding its config file. */
struct fixture {
	char dir[128];
	char path[192];
	char err[1024];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	testutil_mkdtemp(f->dir, sizeof(f->dir), "config");
	snprintf(f->path, sizeof(f->path), "%s/dripd.json", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	return testutil_rmtree_free(f->dir, f);
}

static struct config *load_ok(struct fixture *f, const char *text)
{
	testutil_write_file(f->path, text);
	f->err[0] = '\0';
	struct config *cfg = config_load(f->path, f->err, sizeof(f->err));
	if (!cfg)
		fail_msg("expected the config to load, got \"%s\"", f->err);
	return cfg;
}

/* Loads a config that must be refused and checks the error starts with "PATH:LINE: ". */
static void load_bad(struct fixture *f, const char *text, int line, const char *what)
{
	char prefix[256];
	testutil_write_file(f->path, text);
	f->err[0] = '\0';
	struct config *cfg = config_load(f->path, f->err, sizeof(f->err));
	if (cfg) {
		config_free(cfg);
		fail_msg("expected the config to be refused (%s):\n%s", what, text);
	}
	snprintf(prefix, sizeof(prefix), "%s:%d: ", f->path, line);
	if (strncmp(f->err, prefix, strlen(prefix)) != 0)
		fail_msg("expected the error to start with \"%s\", got \"%s\"", prefix, f->err);
	assert_contains(f->err, what);
}

static void test_empty_object_gives_every_default(void **state)
{
	struct fixture *f = *state;
	struct config *cfg = load_ok(f, "{}");
	struct config *def = config_defaults();
	assert_string_equal(cfg->path, f->path);
	assert_string_equal(cfg->state_dir, "/var/lib/dripd");
	assert_string_equal(cfg->content_dir, "/etc/dripd/content");
	assert_string_equal(cfg->control_socket, "/run/dripd/control.sock");
	assert_string_equal(cfg->timezone, "UTC");
	assert_string_equal(cfg->log_level, "info");
	assert_string_equal(cfg->delivery.url, "smtp://127.0.0.1:25");
	assert_string_equal(cfg->delivery.from, "dripd <dripd@localhost.localdomain>");
	assert_string_equal(cfg->delivery.username, "");
	assert_string_equal(cfg->delivery.password_file, "");
	assert_int_equal(cfg->delivery.max_connections, 4);
	assert_int_equal(cfg->delivery.per_hour, 0);
	assert_string_equal(cfg->tracking.listen, "127.0.0.1:8025");
	assert_string_equal(cfg->tracking.base_url, "http://127.0.0.1:8025");
	assert_string_equal(cfg->tracking.secret_file, "");
	assert_string_equal(cfg->inbox.url, "");
	assert_int_equal(cfg->inbox.poll, 60);
	assert_int_equal(cfg->nwebhooks, 0);
	assert_false(cfg->test_clock);
	assert_true(cfg->clock_rate == 1.0);
	assert_null(config_maildir(cfg));
	assert_null(config_warnings(cfg));
	/* config_defaults is the same config without a file. */
	assert_string_equal(def->path, "");
	assert_string_equal(def->state_dir, cfg->state_dir);
	assert_string_equal(def->delivery.url, cfg->delivery.url);
	assert_int_equal(def->inbox.poll, cfg->inbox.poll);
	config_free(def);
	config_free(cfg);
}

static void test_default_sender_is_a_usable_address(void **state)
{
	struct fixture *f = *state;
	char addr[256] = "";
	struct config *def = config_defaults();
	/* The default must pass the same check a given "from" does, and message_build's. */
	assert_int_equal(message_address(def->delivery.from, addr, sizeof(addr)), 0);
	assert_string_equal(addr, "dripd@localhost.localdomain");
	config_free(def);
	/* A delivery section that leaves "from" at its default is accepted. */
	struct config *cfg = load_ok(f, "{\"delivery\": {\"url\": \"smtp://127.0.0.1:2525\"}}");
	assert_string_equal(cfg->delivery.url, "smtp://127.0.0.1:2525");
	config_free(cfg);
}

static const char full_config[] =
	"{\n"
	"  // every key dripd knows\n"
	"  \"state_dir\": \"/srv/dripd/state\",\n"
	"  \"content_dir\": \"/srv/dripd/content\",\n"
	"  \"control_socket\": \"/run/dripd/ctl.sock\",\n"
	"  \"timezone\": \"Europe/Berlin\",\n"
	"  \"log_level\": \"debug\",\n"
	"  \"delivery\": {\n"
	"    \"url\": \"smtps://mail.example.com:465\",\n"
	"    \"from\": \"Ana Ruiz <ana@example.com>\",\n"
	"    \"username\": \"ana\",\n"
	"    \"password_file\": \"/etc/dripd/smtp.pass\",\n"
	"    \"max_connections\": 8,\n"
	"    \"per_hour\": 500\n"
	"  },\n"
	"  \"tracking\": { \"listen\": \"0.0.0.0:9000\", \"base_url\": \"https://t.example.com\",\n"
	"                \"secret_file\": \"/etc/dripd/track.key\" },\n"
	"  \"inbox\": { \"url\": \"imaps://imap.example.com\", \"username\": \"ana\",\n"
	"             \"password_file\": \"/etc/dripd/imap.pass\", \"poll\": \"5m\" },\n"
	"  \"webhooks\": [\n"
	"    { \"url\": \"https://hooks.example.com/a\", \"events\": [\"sent\", \"replied\"] },\n"
	"    { \"url\": \"http://127.0.0.1:9999/b\" }\n"
	"  ],\n"
	"  \"test_clock\": true,\n"
	"  \"clock_rate\": 30000\n"
	"}\n";

static void test_every_key_parses(void **state)
{
	struct fixture *f = *state;
	struct config *cfg = load_ok(f, full_config);
	assert_string_equal(cfg->state_dir, "/srv/dripd/state");
	assert_string_equal(cfg->content_dir, "/srv/dripd/content");
	assert_string_equal(cfg->control_socket, "/run/dripd/ctl.sock");
	assert_string_equal(cfg->timezone, "Europe/Berlin");
	assert_string_equal(cfg->log_level, "debug");
	assert_string_equal(cfg->delivery.url, "smtps://mail.example.com:465");
	assert_string_equal(cfg->delivery.from, "Ana Ruiz <ana@example.com>");
	assert_string_equal(cfg->delivery.username, "ana");
	assert_string_equal(cfg->delivery.password_file, "/etc/dripd/smtp.pass");
	assert_int_equal(cfg->delivery.max_connections, 8);
	assert_int_equal(cfg->delivery.per_hour, 500);
	assert_string_equal(cfg->tracking.listen, "0.0.0.0:9000");
	assert_string_equal(cfg->tracking.base_url, "https://t.example.com");
	assert_string_equal(cfg->tracking.secret_file, "/etc/dripd/track.key");
	assert_string_equal(cfg->inbox.url, "imaps://imap.example.com");
	assert_string_equal(cfg->inbox.username, "ana");
	assert_string_equal(cfg->inbox.password_file, "/etc/dripd/imap.pass");
	assert_int_equal(cfg->inbox.poll, 300);
	assert_int_equal(cfg->nwebhooks, 2);
	assert_string_equal(cfg->webhooks[0].url, "https://hooks.example.com/a");
	assert_int_equal(cfg->webhooks[0].nevents, 2);
	assert_string_equal(cfg->webhooks[0].events[0], "sent");
	assert_string_equal(cfg->webhooks[0].events[1], "replied");
	assert_string_equal(cfg->webhooks[1].url, "http://127.0.0.1:9999/b");
	assert_int_equal(cfg->webhooks[1].nevents, 0);
	assert_true(cfg->test_clock);
	assert_true(cfg->clock_rate == 30000.0);
	char *warn = config_warnings(cfg);
	assert_non_null(warn);
	assert_contains(warn, f->path);
	assert_contains(warn, "\"test_clock\" is on");
	assert_contains(warn, "rate 30000");
	free(warn);
	config_free(cfg);
}

static void test_shipped_example_config_loads(void **state)
{
	char path[1024], err[1024] = "";
	(void)state;
	testutil_source_path(path, sizeof(path), "systemd/dripd.json");
	struct config *cfg = config_load(path, err, sizeof(err));
	if (!cfg)
		fail_msg("expected %s to load, got \"%s\"", path, err);
	assert_string_equal(cfg->delivery.url, "smtp://127.0.0.1:25");
	assert_null(config_maildir(cfg));
	assert_string_equal(cfg->delivery.from, "Ana Ruiz <ana@example.com>");
	assert_int_equal(cfg->delivery.reply_timeout, 300);
	assert_int_equal(cfg->delivery.give_up, 5 * 86400);
	assert_string_equal(cfg->tracking.base_url, "https://t.example.com");
	assert_int_equal(cfg->inbox.poll, 60);
	assert_false(cfg->test_clock);
	config_free(cfg);
}

static void test_relative_paths_follow_the_config_file(void **state)
{
	struct fixture *f = *state;
	char want[256];
	struct config *cfg = load_ok(f, "{\n"
					"  \"state_dir\": \"state\",\n"
					"  \"content_dir\": \"../shared/content\",\n"
					"  \"control_socket\": \"run/ctl.sock\",\n"
					"  \"delivery\": { \"url\": \"maildir:mail/Maildir\",\n"
					"                \"password_file\": \"smtp.pass\" },\n"
					"  \"tracking\": { \"secret_file\": \"keys/track\" },\n"
					"  \"inbox\": { \"password_file\": \"/abs/imap.pass\" }\n"
					"}\n");
	snprintf(want, sizeof(want), "%s/state", f->dir);
	assert_string_equal(cfg->state_dir, want);
	snprintf(want, sizeof(want), "%s/../shared/content", f->dir);
	assert_string_equal(cfg->content_dir, want);
	snprintf(want, sizeof(want), "%s/run/ctl.sock", f->dir);
	assert_string_equal(cfg->control_socket, want);
	snprintf(want, sizeof(want), "maildir:%s/mail/Maildir", f->dir);
	assert_string_equal(cfg->delivery.url, want);
	assert_string_equal(config_maildir(cfg), want + strlen("maildir:"));
	snprintf(want, sizeof(want), "%s/smtp.pass", f->dir);
	assert_string_equal(cfg->delivery.password_file, want);
	snprintf(want, sizeof(want), "%s/keys/track", f->dir);
	assert_string_equal(cfg->tracking.secret_file, want);
	/* Absolute paths stay as they are, and so do empty ones. */
	assert_string_equal(cfg->inbox.password_file, "/abs/imap.pass");
	assert_string_equal(cfg->tracking.listen, "127.0.0.1:8025");
	config_free(cfg);
}

static void test_absolute_maildir_path_is_kept(void **state)
{
	struct fixture *f = *state;
	struct config *cfg = load_ok(f, "{\"delivery\": {\"url\": \"maildir:/var/mail/drip\"}}");
	assert_string_equal(cfg->delivery.url, "maildir:/var/mail/drip");
	assert_string_equal(config_maildir(cfg), "/var/mail/drip");
	config_free(cfg);
}

static void test_unknown_top_level_key_is_refused_with_its_line(void **state)
{
	struct fixture *f = *state;
	load_bad(f,
		 "{\n"
		 "  \"state_dir\": \"/x\",\n"
		 "  // a comment\n"
		 "  \"statedir\": \"/y\"\n"
		 "}\n",
		 4, "config: unknown key \"statedir\"");
}

static void test_unknown_nested_key_is_refused_with_its_line(void **state)
{
	struct fixture *f = *state;
	load_bad(f,
		 "{\n"
		 "  \"delivery\": {\n"
		 "    \"url\": \"maildir:/tmp/m\",\n"
		 "    \"max_conections\": 2\n"
		 "  }\n"
		 "}\n",
		 4, "delivery: unknown key \"max_conections\"");
	load_bad(f, "{\n\"tracking\": {},\n\"inbox\": {\n\n\"pol\": \"5m\"}}", 5,
		 "inbox: unknown key \"pol\"");
	load_bad(f, "{\"webhooks\": [\n {\"url\": \"https://h.example.com\"},\n {\"uri\": \"x\"}]}",
		 3, "webhook: unknown key \"uri\"");
}

static void test_duplicate_key_is_refused_with_its_line(void **state)
{
	struct fixture *f = *state;
	load_bad(f,
		 "{\n"
		 "  \"log_level\": \"info\",\n"
		 "  \"delivery\": { \"from\": \"a@example.com\",\n"
		 "                \"from\": \"b@example.com\" }\n"
		 "}\n",
		 4, "duplicate key \"from\"");
}

static void test_bad_delivery_url_scheme_is_refused(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\n  \"delivery\": {\n    \"url\": \"http://mail.example.com\"\n  }\n}\n", 3,
		 "delivery: \"url\" must start with smtp://, smtps:// or maildir:");
	load_bad(f, "{\n  \"delivery\": {\n\n    \"url\": \"maildir:\"\n  }\n}\n", 4,
		 "\"maildir:\" needs a folder");
	load_bad(f, "{\"delivery\": {\"url\": 25}}", 1, "\"url\" must be a string");
}

static void test_bad_from_address_is_refused(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\n  \"delivery\": {\n    \"from\": \"Ana Ruiz\"\n  }\n}\n", 3,
		 "delivery: \"from\" must be an address");
	load_bad(f, "{\n  \"delivery\": {\n    \"from\": \"Ana <ana@example.com\"\n  }\n}\n", 3,
		 "delivery: \"from\" must be an address");
	load_bad(f, "{\n  \"delivery\": {\n    \"from\": \"Ana <ana at example.com>\"\n  }\n}\n", 3,
		 "delivery: \"from\" must be an address");
}

static void test_good_from_addresses_are_accepted(void **state)
{
	struct fixture *f = *state;
	struct config *cfg = load_ok(f, "{\"delivery\": {\"from\": \"ana@example.com\"}}");
	assert_string_equal(cfg->delivery.from, "ana@example.com");
	config_free(cfg);
	cfg = load_ok(f, "{\"delivery\": {\"from\": \"\\\"Ruiz, Ana\\\" <ana@example.com>\"}}");
	assert_string_equal(cfg->delivery.from, "\"Ruiz, Ana\" <ana@example.com>");
	config_free(cfg);
}

static void test_clock_rate_without_test_clock_is_refused(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\n  \"log_level\": \"info\",\n  \"clock_rate\": 1000\n}\n", 3,
		 "\"clock_rate\" needs \"test_clock\": true");
	load_bad(f, "{\n  \"test_clock\": false,\n\n  \"clock_rate\": 2\n}\n", 4,
		 "\"clock_rate\" needs \"test_clock\": true");
}

static void test_clock_rate_with_test_clock_is_accepted(void **state)
{
	struct fixture *f = *state;
	struct config *cfg = load_ok(f, "{\"test_clock\": true, \"clock_rate\": 1000}");
	assert_true(cfg->test_clock);
	assert_true(cfg->clock_rate == 1000.0);
	config_free(cfg);
	load_bad(f, "{\"test_clock\": true,\n \"clock_rate\": 0}", 2,
		 "\"clock_rate\" must be a number from");
	load_bad(f, "{\"test_clock\": \"yes\"}", 1, "\"test_clock\" must be true or false");
}

static void test_bad_inbox_poll_duration_is_refused(void **state)
{
	struct fixture *f = *state;
	load_bad(f,
		 "{\n  \"inbox\": {\n    \"url\": \"imap://imap.example.com\",\n    \"poll\": \"5 "
		 "minutes\"\n  }\n}\n",
		 4, "\"poll\" must be a duration");
	load_bad(f, "{\n  \"inbox\": {\n    \"poll\": 60\n  }\n}\n", 3,
		 "\"poll\" must be a duration");
	load_bad(f, "{\n  \"inbox\": {\n    \"poll\": \"0\"\n  }\n}\n", 3,
		 "inbox: \"poll\" must be at least 1s");
	load_bad(f, "{\n  \"inbox\": {\n    \"url\": \"pop3://x\"\n  }\n}\n", 3,
		 "inbox: \"url\" must start with imap:// or imaps://");
}

static void test_bad_log_level_is_refused(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\n  \"state_dir\": \"/x\",\n  \"log_level\": \"verbose\"\n}\n", 3,
		 "\"log_level\" must be error, warning, info or debug");
	load_bad(f, "{\n  \"log_level\": \"INFO\"\n}\n", 2, "\"log_level\" must be");
}

static void test_unknown_timezone_is_refused_with_its_line(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\n  \"state_dir\": \"/x\",\n  \"timezone\": \"Mars/Olympus\"\n}\n", 3,
		 "unknown time zone \"Mars/Olympus\"");
	load_bad(f, "{\n  \"timezone\": \"../../etc/passwd\"\n}\n", 2, "unknown time zone");
	struct config *cfg = load_ok(f, "{ \"timezone\": \"America/Chicago\" }");
	assert_string_equal(cfg->timezone, "America/Chicago");
	config_free(cfg);
}

static void test_every_log_level_is_accepted(void **state)
{
	static const char *const levels[] = { "error", "warning", "info", "debug" };
	struct fixture *f = *state;
	for (size_t i = 0; i < 4; i++) {
		char text[128];
		snprintf(text, sizeof(text), "{\"log_level\": \"%s\"}", levels[i]);
		struct config *cfg = load_ok(f, text);
		assert_string_equal(cfg->log_level, levels[i]);
		config_free(cfg);
	}
}

static void test_out_of_range_numbers_are_refused(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\"delivery\": {\n\"max_connections\": 0}}", 2,
		 "\"max_connections\" must be a whole number from 1 to 64");
	load_bad(f, "{\"delivery\": {\n\"max_connections\": 65}}", 2,
		 "\"max_connections\" must be a whole number from 1 to 64");
	load_bad(f, "{\"delivery\": {\n\"max_connections\": 2.5}}", 2,
		 "\"max_connections\" must be a whole number");
	load_bad(f, "{\"delivery\": {\n\n\"per_hour\": -1}}", 3,
		 "\"per_hour\" must be a whole number from 0");
}

static void test_line_breaks_in_strings_are_refused(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\n\"timezone\": \"UTC\\nX-Evil: 1\"}", 2,
		 "\"timezone\" must not contain a line break");
	load_bad(f, "{\"delivery\": {\n\"from\": \"ana@example.com\\r\\nBcc: x@y.z\"}}", 2,
		 "\"from\" must not contain a line break");
}

static void test_overlong_control_socket_is_refused(void **state)
{
	struct fixture *f = *state;
	char text[512];
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	snprintf(text, sizeof(text), "{\n\n\"control_socket\": \"%s\"}", longpath);
	load_bad(f, text, 3, "\"control_socket\" path is longer than 107 bytes");
}

static void test_bad_tracking_and_webhooks_are_refused(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\n\"tracking\": {\n\"base_url\": \"ftp://t.example.com\"}}", 3,
		 "tracking: \"base_url\" must start with http:// or https://");
	load_bad(f, "{\n\"webhooks\": {}}", 2, "\"webhooks\" must be an array");
	load_bad(f, "{\"webhooks\": [\n{\"url\": \"file:///etc/passwd\"}]}", 2,
		 "webhook: \"url\" must start with http:// or https://");
	load_bad(f, "{\"webhooks\": [\n{\"events\": []}]}", 2, "missing \"url\"");
	load_bad(f, "{\"webhooks\": [{\"url\": \"https://h.example.com\",\n\"events\": \"sent\"}]}",
		 2, "webhook: \"events\" must be an array");
	load_bad(f,
		 "{\"webhooks\": [{\"url\": \"https://h.example.com\",\n\"events\": [\"sent\",\n "
		 "3]}]}",
		 3, "webhook: each event kind must be a string");
}

static void test_invalid_json_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	load_bad(f, "{\n  \"state_dir\": \"/x\"\n  \"log_level\": \"info\"\n}\n", 3,
		 "invalid JSON");
	load_bad(f, "[1, 2]", 1, "config must be an object");
}

static void test_missing_file_is_reported(void **state)
{
	struct fixture *f = *state;
	char want[256];
	struct config *cfg = config_load(f->path, f->err, sizeof(f->err));
	assert_null(cfg);
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", f->path);
	assert_string_equal(f->err, want);
}

static void test_inbox_keys_parse_and_bad_ones_name_their_line(void **state)
{
	struct fixture *f = *state;
	struct config *cfg = config_defaults();
	assert_string_equal(cfg->inbox.reply_domain, "");
	assert_int_equal(cfg->inbox.auto_reply_pause, 7 * 86400);
	assert_int_equal(cfg->inbox.soft_bounce_limit, 3);
	assert_string_equal(cfg->inbox.colleague, "lead");
	config_free(cfg);
	cfg = load_ok(f, "{ \"inbox\": { \"reply_domain\": \"in.example.com\",\n"
			 "  \"bounce_domain\": \"b.example.com\", \"auto_reply_pause\": \"3d\",\n"
			 "  \"soft_bounce_limit\": 5, \"colleague\": \"company\" } }\n");
	assert_string_equal(cfg->inbox.reply_domain, "in.example.com");
	assert_string_equal(cfg->inbox.bounce_domain, "b.example.com");
	assert_int_equal(cfg->inbox.auto_reply_pause, 3 * 86400);
	assert_int_equal(cfg->inbox.soft_bounce_limit, 5);
	assert_string_equal(cfg->inbox.colleague, "company");
	config_free(cfg);
	load_bad(f, "{ \"inbox\": {\n  \"colleague\": \"everyone\" } }\n", 2,
		 "\"colleague\" must be");
	load_bad(f, "{ \"inbox\": {\n\n  \"reply_domain\": \"a@b.example\" } }\n", 3,
		 "must be a mail domain");
	load_bad(f, "{ \"inbox\": {\n  \"soft_bounce_limit\": 0 } }\n", 2, "soft_bounce_limit");
}

static void test_accounts_domains_warmup_governor_and_webhook_options_parse(void **state)
{
	struct fixture *f = *state;
	struct config *cfg = load_ok(
		f, "{\"delivery\": {\"per_day\": 100, \"domains\": {\"gmail.com\": "
		   "{\"per_hour\": 5, \"concurrency\": 1}},\n"
		   " \"warmup\": {\"start\": \"2027-01-01\", \"days\": 10, \"from\": 5}},\n"
		   "\"accounts\": {\"sam\": {\"url\": \"smtp://127.0.0.1:2525\",\n"
		   " \"from\": \"Sam <sam@example.com>\", \"max_connections\": 3, "
		   "\"per_hour\": 7}},\n"
		   "\"governor\": {\"min_samples\": 5, \"pause_deferral_rate\": 0.4, "
		   "\"slow_interval\": \"2m\"},\n"
		   "\"webhooks\": [{\"url\": \"https://h.example.com/x\", \"timeout\": \"3s\", "
		   "\"concurrency\": 4, \"retry_min\": \"5s\", \"retry_max\": \"1m\", "
		   "\"give_up\": \"2h\"}]}");
	struct config_account a;
	assert_true(config_account(cfg, NULL, &a));
	assert_string_equal(a.name, "default");
	assert_int_equal(a.ndomains, 1);
	assert_string_equal(a.domains[0].domain, "gmail.com");
	assert_int_equal(a.domains[0].per_hour, 5);
	assert_int_equal(a.domains[0].concurrency, 1);
	assert_int_equal(a.warmup.start, 1798761600);
	assert_int_equal(a.warmup.days, 10);
	assert_int_equal(a.warmup.to, 100); /* per_day */
	assert_true(config_account(cfg, "sam", &a));
	assert_string_equal(a.from, "Sam <sam@example.com>");
	assert_int_equal(a.max_connections, 3);
	assert_int_equal(a.per_hour, 7);
	assert_false(config_account(cfg, "nobody", &a));
	assert_int_equal(cfg->governor.min_samples, 5);
	assert_true(cfg->governor.pause_deferral == 0.4);
	assert_int_equal(cfg->governor.slow_interval, 120);
	assert_int_equal(cfg->governor.window, 3600); /* a default */
	assert_int_equal(cfg->webhooks[0].timeout, 3);
	assert_int_equal(cfg->webhooks[0].concurrency, 4);
	assert_int_equal(cfg->webhooks[0].retry_min, 5);
	assert_int_equal(cfg->webhooks[0].retry_max, 60);
	assert_int_equal(cfg->webhooks[0].give_up, 7200);
	char *warn = config_warnings(cfg);
	assert_contains(warn, "has no \"secret_file\": its POSTs go out unsigned");
	free(warn);
	config_free(cfg);
	load_bad(f,
		 "{\"delivery\": {\"warmup\":\n {\"start\": \"2027-01-01\", \"days\": 3, "
		 "\"from\": 5}}}",
		 1, "warmup needs \"to\" (or a per_day cap to grow to)");
	load_bad(f, "{\"governor\": {\n\"slow_bounce_rate\": 2}}", 2, "slow_bounce_rate");
	load_bad(f, "{\"accounts\": {\"default\":\n {\"url\": \"smtp://x\"}}}", 1,
		 "not \"default\"");
}

static void test_forms_are_checked_with_their_line(void **state)
{
	struct fixture *f = *state;
	struct config *cfg = load_ok(
		f, "{\n\"signup\": {\"site\": \"https://www.example.com\", \"expire\": \"3d\"},\n"
		   "\"forms\": {\"news\": {\"stage\": \"awareness\", \"sequence\": \"welcome\",\n"
		   "  \"redirect\": \"https://www.example.com/thanks\"}}\n}\n");
	assert_int_equal(cfg->signup.expire, 3 * 86400);
	assert_int_equal(cfg->signup.per_hour, 20);
	assert_string_equal(cfg->signup.honeypot, "website");
	assert_int_equal(cfg->nforms, 1);
	const struct config_form *cf = config_form(cfg, "news");
	assert_non_null(cf);
	assert_string_equal(cf->stage, "awareness");
	assert_string_equal(cf->redirect, "https://www.example.com/thanks");
	assert_null(config_form(cfg, "other"));
	config_free(cfg);
	load_bad(f,
		 "{\n\"signup\": {\"site\": \"https://www.example.com\"},\n"
		 "\"forms\": {\"news\": {\"stage\": \"awareness\",\n"
		 "  \"redirect\": \"https://evil.example/x\"}}\n}\n",
		 4, "must be a URL on https://www.example.com");
	load_bad(f,
		 "{\n\"forms\": {\"news\": {\"stage\": \"awareness\",\n"
		 "  \"redirect\": \"https://www.example.com/x\"}}\n}\n",
		 3, "needs signup.site");
	load_bad(f, "{\n\"forms\": {\n \"news\": {\"sequence\": \"a\"}}\n}\n", 3,
		 "needs a \"stage\"");
	load_bad(f, "{\n\"forms\": {\"news\": {\"stage\": \"a\",\n \"colour\": 1}}\n}\n", 3,
		 "colour");
	load_bad(f, "{\n\"signup\": {\n\"site\": \"https://www.example.com/path\"}\n}\n", 3,
		 "origin");
	load_bad(f, "{\n\"signup\": {\n\"expire\": \"10s\"}\n}\n", 3, "at least 1m");
	assert_true(config_url_on_site("https://a.example", "https://a.example/x"));
	assert_true(config_url_on_site("https://a.example", "https://a.example"));
	assert_false(config_url_on_site("https://a.example", "https://a.example.evil/x"));
	assert_false(config_url_on_site("https://a.example", "https://a.example@evil/x"));
	assert_false(config_url_on_site("https://a.example", "https://a.example/x\r\nSet-Cookie:"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_object_gives_every_default, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_default_sender_is_a_usable_address, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_every_key_parses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shipped_example_config_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forms_are_checked_with_their_line, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_relative_paths_follow_the_config_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_absolute_maildir_path_is_kept, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unknown_top_level_key_is_refused_with_its_line,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_inbox_keys_parse_and_bad_ones_name_their_line,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_nested_key_is_refused_with_its_line,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_key_is_refused_with_its_line, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_delivery_url_scheme_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_from_address_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_good_from_addresses_are_accepted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_clock_rate_without_test_clock_is_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_clock_rate_with_test_clock_is_accepted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_inbox_poll_duration_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_log_level_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_timezone_is_refused_with_its_line,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_log_level_is_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range_numbers_are_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_line_breaks_in_strings_are_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_overlong_control_socket_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_tracking_and_webhooks_are_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_invalid_json_names_file_and_line, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_missing_file_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_accounts_domains_warmup_governor_and_webhook_options_parse, setup,
			teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
