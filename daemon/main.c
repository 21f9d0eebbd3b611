/* main.c - dripd: arguments, start-up order, signals, reload and an orderly shutdown. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <uv.h>

#include "dripd/control.h"
#include "dripd/dripd.h"
#include "dripd/error.h"
#include "dripd/inbox.h"
#include "dripd/hooks.h"
#include "dripd/log.h"
#include "dripd/mailer.h"
#include "dripd/render.h"
#include "dripd/sched.h"
#include "dripd/retention.h"
#include "dripd/sd.h"
#include "dripd/signup.h"
#include "dripd/token.h"
#include "dripd/track.h"
#include "dripd/util.h"

/*
 * DESIGN. Start-up goes config, content, database (with crash recovery), clock, sender
 * threads, scheduler, control socket, signals; any failure there is fatal with a reason.
 * SIGTERM and SIGINT drain: no new touch is dispatched, the ones with sender threads finish
 * and are recorded, then every handle is closed and the loop ends, so the database is left
 * consistent and valgrind sees no leak. SIGHUP reloads config and content together; if
 * either is bad the old ones keep running and the reason is logged. It also re-reads the
 * tracking and webhook secrets (a rotation); a bad secret file keeps the running secrets.
 *
 * systemd (sd.c) hears READY=1 only after every listening socket accepts: a listener added
 * later (the tracking listener) is set up before sd_ready(), and takes the socket systemd
 * passed under its name (sd_listen_fd(d->sd, "tracking", 0, …)) before binding its own.
 * SIGHUP is bracketed by RELOADING=1 … READY=1, SIGTERM sends STOPPING=1.
 */

static const char main_usage[] =
	"usage: dripd [-c FILE]          run in the foreground\n"
	"       dripd check [-c FILE]    validate config and content; exit 1 on any error\n"
	"\n"
	"  -c, --config FILE   the config file (default " CONFIG_DEFAULT_PATH ")\n"
	"  -h, --help          this text\n"
	"  -V, --version       print the version\n"
	"\n"
	"dripd walks leads through email sequences matched to their stage in the buyer's\n"
	"journey. Drive it with dripctl; signals: SIGTERM/SIGINT drain and exit, SIGHUP\n"
	"reloads config and content and re-reads the secret files.\n";

struct main_signals {
	uv_signal_t term, intr, hup, pipe;
};

static struct main_signals main_sigs;

static void main_set_log_level(const struct config *cfg)
{
	static const struct {
		const char *name;
		enum log_level level;
	} levels[] = { { "error", LOG_LEVEL_ERR },
		       { "warning", LOG_LEVEL_WARN },
		       { "info", LOG_LEVEL_INFO },
		       { "debug", LOG_LEVEL_DEBUG } };
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (strcmp(levels[i].name, cfg->log_level) == 0)
			log_set_level(levels[i].level);
}

static int main_check(const char *path)
{
	char err[1024];
	struct config *cfg = config_load(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "dripd check: %s\n", err);
		return 1;
	}
	char *warnings = config_warnings(cfg);
	if (warnings)
		fprintf(stderr, "dripd check: warning: %s", warnings);
	free(warnings);
	struct content *c = content_load(cfg->content_dir, err, sizeof(err));
	if (!c || sched_check_accounts(cfg, c, err, sizeof(err)) != 0) {
		fprintf(stderr, "dripd check: %s\n", err);
		content_unref(c);
		config_free(cfg);
		return 1;
	}
	size_t steps = 0;
	for (size_t i = 0; i < c->nseqs; i++)
		steps += c->seqs[i].nsteps;
	printf("%s: ok\n%s: ok (%zu stages, %zu sequences, %zu steps, %zu templates)\n", path,
	       c->dir, c->nstages, c->nseqs, steps, c->ntpls);
	content_unref(c);
	config_free(cfg);
	return 0;
}

static void main_mailer_result_cb(void *arg, const struct mailer_result *r)
{
	struct dripd *d = arg;
	if (r->touch_id <= SIGNUP_JOB_BASE) { /* a signup's confirmation mail */
		signup_on_result(d->signup, r);
		return;
	}
	if (r->touch_id < 0) { /* a dripctl send-test, outside the books */
		if (d->control)
			control_on_test_result(d->control, r);
		return;
	}
	sched_on_result(d->sched, r);
}

static void main_mailer_batch_cb(void *arg, bool begin)
{
	struct dripd *d = arg;
	if (begin)
		sched_results_begin(d->sched);
	else
		sched_results_end(d->sched);
}

/* Keys that only a restart can change; a reload that changes one says so. */
static void main_reload_warn(const struct config *old, const struct config *cfg)
{
	static const struct {
		const char *name;
		size_t off;
	} keys[] = {
		{ "state_dir", offsetof(struct config, state_dir) },
		{ "control_socket", offsetof(struct config, control_socket) },
		{ "delivery.url", offsetof(struct config, delivery.url) },
		{ "inbox.url", offsetof(struct config, inbox.url) },
		{ "inbox.username", offsetof(struct config, inbox.username) },
		{ "inbox.password_file", offsetof(struct config, inbox.password_file) },
		{ "inbox.move_to", offsetof(struct config, inbox.move_to) },
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *a = *(char *const *)((const char *)old + keys[i].off);
		const char *b = *(char *const *)((const char *)cfg + keys[i].off);
		if (strcmp(a, b) != 0)
			log_warn("dripd: %s changed: it takes effect at the next restart",
				 keys[i].name);
	}
	if (old->delivery.max_connections != cfg->delivery.max_connections ||
	    old->test_clock != cfg->test_clock || old->clock_rate != cfg->clock_rate)
		log_warn("dripd: delivery.max_connections, test_clock and clock_rate take effect "
			 "at the next restart");
	if (old->inbox.poll != cfg->inbox.poll)
		log_warn("dripd: inbox.poll changed: it takes effect at the next restart");
}

struct main_orphans {
	const struct content *c;
	int64_t touches;
};

static int main_orphan_cb(void *arg, const char *sequence, const char *step, int64_t touches)
{
	struct main_orphans *o = arg;
	const struct content_sequence *seq = content_sequence(o->c, sequence);
	if (seq && content_step(seq, step, NULL))
		return 0;
	log_warn("dripd: %lld lead(s) wait for step %s/%s, which the new content does not have: "
		 "when due, each fails with an error event (see dripctl lead show)",
		 (long long)touches, sequence, step);
	o->touches += touches;
	return 0;
}

static void main_reload_keys(struct dripd *d);

/* 0 when reloaded; a negative code when refused (the reason in `why` and the log; the old
 * config and content stay). Tells systemd RELOADING=1 … READY=1 around it. */
static int main_reload(struct dripd *d, char *why, size_t whylen)
{
	char err[1024];
	int rc = 0;
	struct config *cfg = NULL;
	struct content *c = NULL;
	if (d->sd)
		sd_reloading(d->sd);
	if (!(cfg = config_load(d->cfg->path, err, sizeof(err)))) {
		rc = errf(why, whylen, DRIP_ECONFIG, "reload refused, the running config stays: %s",
			  err);
		log_err("dripd: reload refused, the running config stays: %s", err);
		goto refused;
	}
	const char *cred = config_unresolved_credential(cfg);
	if (cred) {
		snprintf(err, sizeof(err),
			 "%s: \"%s\" names a credential but $CREDENTIALS_DIRECTORY is not set",
			 cfg->path, cred);
		rc = errf(why, whylen, DRIP_ECONFIG, "reload refused, the running config stays: %s",
			  err);
		log_err("dripd: reload refused, the running config stays: %s", err);
		goto refused;
	}
	if (!(c = content_load(cfg->content_dir, err, sizeof(err))) ||
	    sched_check_accounts(d->cfg, c, err, sizeof(err)) != 0) {
		rc = errf(why, whylen, DRIP_ECONTENT,
			  "reload refused, the running content stays: %s", err);
		log_err("dripd: reload refused, the running content stays: %s", err);
		goto refused;
	}
	main_reload_warn(d->cfg, cfg);
	/* Leads keep their place by step id; one whose step is gone is reported, not dropped. */
	struct main_orphans orphans = { .c = c };
	store_pending_steps(d->store, main_orphan_cb, &orphans);
	/* The running config object stays (modules hold pointers into it); only what a
	 * reload may change is taken from the new one. */
	free(d->cfg->content_dir);
	d->cfg->content_dir = xstrdup(cfg->content_dir);
	free(d->cfg->log_level);
	d->cfg->log_level = xstrdup(cfg->log_level);
	main_set_log_level(d->cfg);
	/* Read by the loop thread at each use (sched, inbox effects), so they change at once. */
	free(d->cfg->inbox.reply_domain);
	d->cfg->inbox.reply_domain = xstrdup(cfg->inbox.reply_domain);
	free(d->cfg->inbox.bounce_domain);
	d->cfg->inbox.bounce_domain = xstrdup(cfg->inbox.bounce_domain);
	free(d->cfg->inbox.colleague);
	d->cfg->inbox.colleague = xstrdup(cfg->inbox.colleague);
	d->cfg->inbox.auto_reply_pause = cfg->inbox.auto_reply_pause;
	d->cfg->inbox.soft_bounce_limit = cfg->inbox.soft_bounce_limit;
	config_free(cfg);
	content_unref(d->content);
	d->content = c;
	sched_set_content(d->sched, c);
	sched_kick(d->sched);
	hooks_reload(d->hooks);
	main_reload_keys(d);
	log_info("dripd: reloaded: %zu sequences from %s", c->nseqs, c->dir);
	if (d->sd)
		sd_reloaded(d->sd, NULL);
	return 0;
refused:
	content_unref(c);
	config_free(cfg);
	if (d->sd)
		sd_reloaded(d->sd, "the old config and content keep running");
	return rc;
}

static void main_close_walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void main_drained_cb(void *arg)
{
	struct dripd *d = arg;
	dripd_save_clock(d);
	inbox_close(d->inbox);
	d->inbox = NULL;
	mailer_close(d->mailer);
	sched_close(d->sched);
	hooks_close(d->hooks);
	d->hooks = NULL;
	uv_close((uv_handle_t *)&main_sigs.term, NULL);
	uv_close((uv_handle_t *)&main_sigs.intr, NULL);
	uv_close((uv_handle_t *)&main_sigs.hup, NULL);
	uv_close((uv_handle_t *)&main_sigs.pipe, NULL);
	sd_close(d->sd);
	d->sd = NULL;
	log_info("dripd: stopped");
}

static void main_signal_cb(uv_signal_t *h, int signum)
{
	struct dripd *d = h->data;
	if (signum == SIGPIPE)
		return;
	if (signum == SIGHUP) {
		log_info("dripd: SIGHUP: reloading");
		main_reload(d, NULL, 0);
		return;
	}
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("dripd: %s: draining", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	if (d->sd)
		sd_stopping(d->sd);
	control_close(d->control);
	d->control = NULL;
	inbox_close(d->inbox);
	d->inbox = NULL;
	track_close(d->track);
	d->track = NULL;
	signup_close(d->signup);
	d->signup = NULL;
	retention_close(d->retention);
	d->retention = NULL;
	sched_drain(d->sched, main_drained_cb, d);
}

static void main_signal(uv_loop_t *loop, uv_signal_t *h, int signum, struct dripd *d)
{
	uv_signal_init(loop, h);
	h->data = d;
	uv_signal_start(h, main_signal_cb, signum);
}

static int main_mkdirs(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;
	for (char *s = p + 1; *s && rc == 0; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0750) != 0 && errno != EEXIST)
			rc = -1;
		*s = '/';
	}
	if (rc == 0 && mkdir(p, 0750) != 0 && errno != EEXIST)
		rc = -1;
	free(p);
	return rc;
}

/*
 * The tracking secrets: tracking.secret_file when the config names one (systemd
 * credentials put it there), else state_dir/tracking.secret, created with a random secret
 * on first start (`create`) so links signed today still verify after a restart. NULL, the
 * reason in err, when the file cannot be read or holds a bad secret.
 */
static struct token_keys *main_keys_load(const struct config *cfg, bool create, char *err,
					 size_t errlen)
{
	struct token_keys *keys = token_keys_new();
	char *path = *cfg->tracking.secret_file ? xstrdup(cfg->tracking.secret_file)
						: xasprintf("%s/tracking.secret", cfg->state_dir);
	if (create && !*cfg->tracking.secret_file && access(path, F_OK) != 0) {
		char secret[65];
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		util_random_hex(secret, 32);
		secret[64] = '\n';
		if (fd < 0 || write(fd, secret, sizeof(secret)) != (ssize_t)sizeof(secret) ||
		    fsync(fd) != 0)
			log_fatal("dripd: cannot create %s: %s", path, strerror(errno));
		close(fd);
		log_info("dripd: created a tracking secret in %s", path);
	}
	if (token_keys_load(keys, path, err, errlen) != 0) {
		token_keys_free(keys);
		keys = NULL;
	}
	free(path);
	return keys;
}

static struct token_keys *main_keys(const struct config *cfg)
{
	char err[1024];
	struct token_keys *keys = main_keys_load(cfg, true, err, sizeof(err));
	if (!keys)
		log_fatal("dripd: %s", err);
	return keys;
}

/*
 * A reload re-reads the tracking secrets (a rotation); a bad file keeps the running ones.
 * Every user of the keys runs on the loop thread and reads d->keys (the scheduler its copy)
 * at each use, so swapping them between two callbacks is safe.
 */
static void main_reload_keys(struct dripd *d)
{
	char err[1024];
	struct token_keys *keys = main_keys_load(d->cfg, false, err, sizeof(err));
	if (!keys) {
		log_err("dripd: the tracking secrets stay as they were: %s", err);
		return;
	}
	struct token_keys *old = d->keys;
	d->keys = keys;
	sched_set_keys(d->sched, keys);
	token_keys_free(old);
	log_info("dripd: %zu tracking secret(s) read", token_keys_count(keys));
}

static int main_run(const char *path)
{
	struct dripd d;
	char err[1024];
	int64_t offset = 0, requeued = 0, uncertain = 0;
	uv_loop_t loop;

	memset(&d, 0, sizeof(d));
	/* First, so the LISTEN_* variables are read (and cleared) before anything else runs. */
	d.sd = sd_new();
	/*
	 * Keep freed heap instead of trimming it: SQLite builds and drops small b-trees on
	 * every touch update, and glibc returning that memory at once and faulting it back in
	 * cost 101 page faults and 8 brk calls per message in the delivery benchmark (a ~40%
	 * slower loop). Peak RSS stayed ~16 MiB with this.
	 * Setting it turns off glibc's sliding mmap threshold, which would otherwise rise after
	 * the first large free: fixed at 128 KiB, libcurl's 128 KiB SMTP escape buffer was
	 * mmap'd and munmap'd for every message on every sender thread (each munmap a TLB
	 * shootdown on both cores): sender threads cost 372 us a message against bare libcurl's
	 * 148. Blocks up to 4 MiB come from the heap instead.
	 */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	if (!(d.cfg = config_load(path, err, sizeof(err))))
		log_fatal("dripd: %s", err);
	main_set_log_level(d.cfg);
	const char *cred = config_unresolved_credential(d.cfg);
	if (cred)
		log_fatal("dripd: %s: \"%s\" names a credential but $CREDENTIALS_DIRECTORY is not "
			  "set: run dripd under systemd with LoadCredential=, or name a file",
			  d.cfg->path, cred);
	char *warnings = config_warnings(d.cfg);
	if (warnings) {
		warnings[strcspn(warnings, "\n")] = '\0';
		log_warn("dripd: %s", warnings);
	}
	free(warnings);
	if (!(d.content = content_load(d.cfg->content_dir, err, sizeof(err))) ||
	    sched_check_accounts(d.cfg, d.content, err, sizeof(err)) != 0)
		log_fatal("dripd: %s", err);
	if (main_mkdirs(d.cfg->state_dir) != 0)
		log_fatal("dripd: cannot create %s: %s", d.cfg->state_dir, strerror(errno));
	char *db = xasprintf("%s/dripd.db", d.cfg->state_dir);
	d.store = store_open(db, err, sizeof(err));
	free(db);
	if (!d.store)
		log_fatal("dripd: %s", err);
	if (store_recover(d.store, &requeued, &uncertain) != 0)
		log_fatal("dripd: cannot recover touches left by the last run");
	if (requeued)
		log_info("dripd: %lld queued touch(es) from the last run go back to pending",
			 (long long)requeued);
	if (uncertain)
		log_warn("dripd: %lld touch(es) were being sent when the last run ended: marked "
			 "uncertain, never re-sent without a person (dripctl touch list --state "
			 "uncertain)",
			 (long long)uncertain);
	d.keys = main_keys(d.cfg);
	if (store_setting_get(d.store, DRIPD_CLOCK_SETTING, &offset) != 0)
		offset = 0;
	clock_init(&d.clock, d.cfg->test_clock, d.cfg->clock_rate, offset, clock_wall_ms(),
		   clock_mono_ms());
	d.started_at = clock_now(&d.clock);
	d.started_mono_ms = clock_mono_ms();

	if (uv_loop_init(&loop) != 0)
		log_fatal("dripd: cannot create the event loop");
	d.loop = &loop;
	d.reload = main_reload;
	/* WAL checkpoints (a copy and two fsyncs) leave the loop thread's commits. */
	store_checkpoint_in_background(d.store, &loop);
	if (!(d.mailer = mailer_new(&loop, d.cfg, main_mailer_result_cb, &d, err, sizeof(err))))
		log_fatal("dripd: %s", err);
	d.sched = sched_new(&loop, d.cfg, d.store, &d.clock, d.mailer);
	if (sched_add_accounts(d.sched, err, sizeof(err)) != 0)
		log_fatal("dripd: %s", err);
	mailer_set_batch_cb(d.mailer, main_mailer_batch_cb);
	sched_set_content(d.sched, d.content);
	sched_set_keys(d.sched, d.keys);
	int64_t paused = 0;
	if (store_setting_get(d.store, DRIPD_PAUSED_SETTING, &paused) == 0 && paused) {
		sched_set_paused(d.sched, true);
		log_warn("dripd: sending is paused (dripctl resume lets it go on)");
	}
	if (!(d.hooks = hooks_new(&loop, d.cfg, d.store, &d.clock, err, sizeof(err))))
		log_fatal("dripd: %s", err);
	if (!(d.control = control_new(&d, err, sizeof(err))))
		log_fatal("dripd: %s", err);
	int tracking_fd = sd_listen_fd(d.sd, "tracking", 0, err, sizeof(err));
	if (tracking_fd < 0 && tracking_fd != DRIP_ENOT_FOUND)
		log_fatal("dripd: %s", err);
	if (!(d.track = track_new(&d, tracking_fd, err, sizeof(err))))
		log_fatal("dripd: %s", err);
	d.signup = signup_new(&d);
	d.retention = retention_new(&d);
	main_signal(&loop, &main_sigs.term, SIGTERM, &d);
	main_signal(&loop, &main_sigs.intr, SIGINT, &d);
	main_signal(&loop, &main_sigs.hup, SIGHUP, &d);
	main_signal(&loop, &main_sigs.pipe, SIGPIPE, &d);
	sched_kick(d.sched);
	d.inbox = inbox_new(&d);
	/* Database open, content loaded, control socket accepting: tell systemd. */
	sd_ready(d.sd, &d);
	log_info("dripd: %s started: %zu sequences, business time %lld%s", DRIPD_VERSION,
		 d.content->nseqs, (long long)d.started_at, d.clock.test ? " (test clock)" : "");

	uv_run(&loop, UV_RUN_DEFAULT);

	/* Anything still open is closed so the loop can be closed cleanly. */
	sd_close(d.sd);
	uv_walk(&loop, main_close_walk_cb, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		log_err("dripd: the loop still had handles at exit");
	store_close(d.store);
	token_keys_free(d.keys);
	clock_zones_free();
	render_cache_clear();
	content_unref(d.content);
	config_free(d.cfg);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "config", required_argument, NULL, 'c' },
					      { "help", no_argument, NULL, 'h' },
					      { "version", no_argument, NULL, 'V' },
					      { NULL, 0, NULL, 0 } };
	const char *path = CONFIG_DEFAULT_PATH;
	bool check = false;
	int ch;

	if (argc > 1 && strcmp(argv[1], "check") == 0) {
		check = true;
		argv++;
		argc--;
	}
	while ((ch = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			fputs(main_usage, stdout);
			return 0;
		case 'V':
			printf("dripd %s\n", DRIPD_VERSION);
			return 0;
		default:
			fputs(main_usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "dripd: unexpected argument \"%s\"\n%s", argv[optind], main_usage);
		return 2;
	}
	if (check)
		return main_check(path);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc = main_run(path);
	curl_global_cleanup();
	return rc;
}
