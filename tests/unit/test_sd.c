/* test_sd.c - what dripd tells systemd, the sockets and credentials it takes from it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "testutil.h"

#include "dripd/config.h"
#include "dripd/error.h"
#include "dripd/sd.h"

/* A datagram socket playing systemd's NOTIFY_SOCKET, in a fresh folder. */
struct fixture {
	char dir[64];
	char sock_path[100];
	int sock;
};

static void clear_env(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("CREDENTIALS_DIRECTORY");
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	testutil_mkdtemp(f->dir, sizeof(f->dir), "sd");
	snprintf(f->sock_path, sizeof(f->sock_path), "%s/notify", f->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock_path);
	f->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(f->sock >= 0);
	assert_int_equal(bind(f->sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	clear_env();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close(f->sock);
	clear_env();
	return testutil_rmtree_free(f->dir, f);
}

/* The next datagram, or "" when none is waiting. */
static const char *next_msg(struct fixture *f, char *buf, size_t len)
{
	ssize_t n = recv(f->sock, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/*
 * Runs the loop for about `ms` milliseconds (the sd timer keeps waking it), reading what
 * arrives as it comes, as systemd would; returns how many datagrams equal `want`, and fails
 * on any other.
 */
static int count_msgs(struct fixture *f, uv_loop_t *loop, uint64_t ms, const char *want)
{
	char buf[512];
	int n = 0;
	uv_update_time(loop);
	uint64_t end = uv_now(loop) + ms;
	while (uv_now(loop) < end) {
		uv_run(loop, UV_RUN_ONCE);
		uv_update_time(loop);
		while (*next_msg(f, buf, sizeof(buf))) {
			assert_string_equal(buf, want);
			n++;
		}
	}
	return n;
}

static void test_status_line_says_due_sending_and_pause(void **state)
{
	char buf[128];
	(void)state;
	sd_status_format(buf, sizeof(buf), 412, false, 3, false);
	assert_string_equal(buf, "412 due, 3 sending, paused: no");
	sd_status_format(buf, sizeof(buf), SD_DUE_CAP, true, 0, true);
	char want[64];
	snprintf(want, sizeof(want), "%d+ due, 0 sending, paused: yes", SD_DUE_CAP);
	assert_string_equal(buf, want);
}

static void test_credential_names_a_file_in_the_credentials_directory(void **state)
{
	char err[256] = "", *path = NULL;
	(void)state;
	assert_rc(sd_credential_path("credential:dripd.smtp-password", "/run/credentials/x", &path,
				     err, sizeof(err)),
		  0);
	assert_string_equal(path, "/run/credentials/x/dripd.smtp-password");
	free(path);
	assert_rc(sd_credential_path("credential:../etc/shadow", "/run/c", &path, err, sizeof(err)),
		  DRIP_EINVALID);
	assert_null(path);
	assert_contains(err, "without '/'");
	assert_rc(sd_credential_path("credential:", "/run/c", &path, err, sizeof(err)),
		  DRIP_EINVALID);
	assert_rc(sd_credential_path("credential:..", "/run/c", &path, err, sizeof(err)),
		  DRIP_EINVALID);
	assert_rc(sd_credential_path("credential:smtp", NULL, &path, err, sizeof(err)),
		  DRIP_ENOT_FOUND);
	assert_contains(err, "$CREDENTIALS_DIRECTORY");
	assert_contains(err, "LoadCredential=smtp");
	assert_rc(sd_credential_path("credential:smtp", "", &path, err, sizeof(err)),
		  DRIP_ENOT_FOUND);
}

static void test_config_resolves_credentials_under_systemd(void **state)
{
	struct fixture *f = *state;
	char cfgpath[256], err[512] = "";
	snprintf(cfgpath, sizeof(cfgpath), "%s/dripd.json", f->dir);
	testutil_write_file(
		cfgpath,
		"{\n"
		"  \"delivery\": { \"password_file\": \"credential:dripd.smtp-password\" },\n"
		"  \"tracking\": { \"secret_file\": \"credential:dripd.tracking-secret\" },\n"
		"  \"inbox\": { \"password_file\": \"imap.pw\" }\n"
		"}\n");
	setenv("CREDENTIALS_DIRECTORY", "/run/credentials/dripd.service", 1);
	struct config *cfg = config_load(cfgpath, err, sizeof(err));
	if (!cfg)
		fail_msg("expected the config to load, got \"%s\"", err);
	assert_string_equal(cfg->delivery.password_file,
			    "/run/credentials/dripd.service/dripd.smtp-password");
	assert_string_equal(cfg->tracking.secret_file,
			    "/run/credentials/dripd.service/dripd.tracking-secret");
	char want[256];
	snprintf(want, sizeof(want), "%s/imap.pw", f->dir); /* a plain path: as before */
	assert_string_equal(cfg->inbox.password_file, want);
	assert_null(config_unresolved_credential(cfg));
	config_free(cfg);

	/* By hand (dripd check): the value stays, a warning says why, the daemon refuses. */
	unsetenv("CREDENTIALS_DIRECTORY");
	cfg = config_load(cfgpath, err, sizeof(err));
	assert_non_null(cfg);
	assert_string_equal(config_unresolved_credential(cfg), "delivery.password_file");
	char *warnings = config_warnings(cfg);
	assert_contains(warnings, "\"delivery.password_file\" names a credential");
	free(warnings);
	config_free(cfg);
}

static void test_config_refuses_a_bad_credential_name_with_its_line(void **state)
{
	struct fixture *f = *state;
	char cfgpath[256], err[512] = "", prefix[300];
	snprintf(cfgpath, sizeof(cfgpath), "%s/dripd.json", f->dir);
	testutil_write_file(cfgpath,
			    "{\n  \"tracking\": {\n    \"secret_file\": \"credential:a/b\"\n"
			    "  }\n}\n");
	setenv("CREDENTIALS_DIRECTORY", "/run/credentials/dripd.service", 1);
	struct config *cfg = config_load(cfgpath, err, sizeof(err));
	assert_null(cfg);
	snprintf(prefix, sizeof(prefix), "%s:3: ", cfgpath);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("expected the error to start with \"%s\", got \"%s\"", prefix, err);
	assert_contains(err, "\"secret_file\"");
	assert_contains(err, "credential name");
}

static void test_without_systemd_nothing_is_sent(void **state)
{
	struct fixture *f = *state;
	char buf[512];
	struct sd *sd = sd_new();
	assert_false(sd_notifying(sd));
	assert_int_equal(sd_watchdog_usec(sd), 0);
	char err[256];
	assert_rc(sd_listen_fd(sd, "control", AF_UNIX, err, sizeof(err)), DRIP_ENOT_FOUND);
	struct dripd d;
	memset(&d, 0, sizeof(d));
	sd_ready(sd, &d); /* no loop needed: no timer without systemd */
	sd_stopping(sd);
	sd_close(sd);
	assert_string_equal(next_msg(f, buf, sizeof(buf)), "");
}

static void test_ready_status_watchdog_reload_and_stop(void **state)
{
	struct fixture *f = *state;
	char buf[512];
	uv_loop_t loop;
	struct dripd d;
	memset(&d, 0, sizeof(d));
	testutil_dripd_init(&d, config_defaults(), ":memory:");
	uv_loop_init(&loop);
	d.loop = &loop;

	setenv("NOTIFY_SOCKET", f->sock_path, 1);
	setenv("WATCHDOG_USEC", "40000", 1); /* 40 ms: a ping every 20 ms */
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	struct sd *sd = sd_new();
	assert_true(sd_notifying(sd));
	assert_int_equal(sd_watchdog_usec(sd), 40000);
	assert_string_equal(next_msg(f, buf, sizeof(buf)), ""); /* nothing before ready */

	sd_ready(sd, &d);
	assert_string_equal(next_msg(f, buf, sizeof(buf)),
			    "READY=1\nWATCHDOG=1\nSTATUS=0 due, 0 sending, paused: no");

	/* Only pings: the status did not change. */
	int pings = count_msgs(f, &loop, 300, "WATCHDOG=1");
	/* 300 ms / 20 ms = 15; a busy machine may delay some. */
	if (pings < 5 || pings > 16)
		fail_msg("expected 5-16 watchdog pings in 300 ms, got %d", pings);

	sd_reloading(sd);
	next_msg(f, buf, sizeof(buf));
	assert_true(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
	char *end;
	unsigned long long usec = strtoull(buf + 27, &end, 10);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long now = (unsigned long long)ts.tv_sec * 1000000ull + ts.tv_nsec / 1000;
	if (usec == 0 || usec > now || now - usec > 5000000ull)
		fail_msg("MONOTONIC_USEC=%llu is not CLOCK_MONOTONIC now (%llu)", usec, now);
	assert_string_equal(end, "\nSTATUS=reloading");

	sd_reloaded(sd, "bad content");
	assert_string_equal(next_msg(f, buf, sizeof(buf)),
			    "READY=1\nSTATUS=0 due, 0 sending, paused: no; last reload refused "
			    "(see the journal)");
	sd_reloaded(sd, NULL);
	assert_string_equal(next_msg(f, buf, sizeof(buf)),
			    "READY=1\nSTATUS=0 due, 0 sending, paused: no");

	d.stopping = true;
	sd_stopping(sd);
	assert_string_equal(next_msg(f, buf, sizeof(buf)),
			    "STOPPING=1\nSTATUS=0 due, 0 sending, paused: no; stopping");
	sd_close(sd);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	testutil_dripd_fini(&d);
}

static void test_a_slow_systemd_never_blocks_the_loop(void **state)
{
	struct fixture *f = *state;
	char buf[512];
	setenv("NOTIFY_SOCKET", f->sock_path, 1);
	struct sd *sd = sd_new();
	/* Nobody reads: the socket's queue fills after a few datagrams; the rest are dropped. */
	for (int i = 0; i < 1000; i++)
		sd_reloading(sd);
	sd_close(sd);
	int got = 0;
	while (*next_msg(f, buf, sizeof(buf)))
		got++;
	if (got < 1 || got >= 1000)
		fail_msg("expected some but not all of 1000 datagrams queued, got %d", got);
}

static void test_status_counts_due_touches(void **state)
{
	struct fixture *f = *state;
	char buf[512];
	uv_loop_t loop;
	struct dripd d;
	memset(&d, 0, sizeof(d));
	testutil_dripd_init(&d, config_defaults(), ":memory:");
	uv_loop_init(&loop);
	d.loop = &loop;
	int64_t now = clock_now(&d.clock);
	struct lead lead = { .email = "maya@example.org", .stage = "awareness" };
	assert_rc(store_lead_insert(d.store, &lead, now), 0);
	int64_t enrol = 0, touch = 0;
	assert_rc(store_enrolment_start(d.store, lead.id, "awareness-basics", "awareness", now,
					&enrol),
		  0);
	assert_rc(store_touch_schedule(d.store, lead.id, enrol, "awareness-basics", "welcome", 0,
				       now - 10, now, &touch),
		  0);
	assert_rc(store_touch_schedule(d.store, lead.id, enrol, "awareness-basics", "two-jobs", 1,
				       now + 86400, now, &touch),
		  0);
	int64_t due = -1;
	assert_rc(store_touch_due_count(d.store, now, 10, &due), 0);
	assert_int_equal(due, 1);

	setenv("NOTIFY_SOCKET", f->sock_path, 1);
	struct sd *sd = sd_new();
	sd_ready(sd, &d);
	assert_string_equal(next_msg(f, buf, sizeof(buf)),
			    "READY=1\nSTATUS=1 due, 0 sending, paused: no");
	sd_close(sd);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	testutil_dripd_fini(&d);
}

/* Puts fd at number `at` (3, 4, …) as systemd would; returns what was there to restore. */
static int place_fd(int fd, int at)
{
	if (fd == at)
		return -1; /* it got the number itself: nothing else was there */
	int saved = fcntl(at, F_GETFD) >= 0 ? fcntl(at, F_DUPFD_CLOEXEC, 100) : -1;
	assert_int_equal(dup2(fd, at), at);
	close(fd);
	return saved;
}

static void restore_fd(int saved, int at)
{
	if (saved >= 0) {
		dup2(saved, at);
		close(saved);
	} else {
		close(at);
	}
}

static int listening_unix_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path));
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static void test_listen_fds_are_taken_by_name(void **state)
{
	struct fixture *f = *state;
	char path[100], err[512] = "", pid[32];
	snprintf(path, sizeof(path), "%s/control.sock", f->dir);
	int s3 = place_fd(listening_unix_socket(path), 3);
	int s4 = place_fd(socket(AF_UNIX, SOCK_STREAM, 0), 4); /* not listening */
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "control:tracking", 1);
	struct sd *sd = sd_new();
	assert_null(getenv("LISTEN_FDS")); /* nothing started later inherits them */
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDNAMES"));
	assert_int_equal(fcntl(3, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

	assert_rc(sd_listen_fd(sd, "control", AF_INET, err, sizeof(err)), DRIP_EINVALID);
	assert_contains(err, "\"control\" is not a listening TCP stream socket");
	sd_close(sd);
	/* Refused means closed (place_fd finds nothing at 3): put a good one back. */
	assert_true(fcntl(3, F_GETFD) < 0);
	unlink(path);
	assert_int_equal(place_fd(listening_unix_socket(path), 3), -1);
	assert_int_equal(place_fd(socket(AF_UNIX, SOCK_STREAM, 0), 4), -1);

	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "control:tracking", 1);
	sd = sd_new();
	assert_int_equal(sd_listen_fd(sd, "control", AF_UNIX, err, sizeof(err)), 3);
	assert_rc(sd_listen_fd(sd, "control", AF_UNIX, err, sizeof(err)), DRIP_ENOT_FOUND);
	assert_rc(sd_listen_fd(sd, "tracking", 0, err, sizeof(err)), DRIP_EINVALID);
	assert_contains(err, "\"tracking\" is not a listening TCP stream socket");
	assert_rc(sd_listen_fd(sd, "metrics", 0, err, sizeof(err)), DRIP_ENOT_FOUND);
	sd_close(sd);
	restore_fd(s3, 3);
	restore_fd(s4, 4);
}

static void test_unclaimed_and_foreign_fds(void **state)
{
	struct fixture *f = *state;
	char path[100], err[512] = "", pid[32];
	snprintf(path, sizeof(path), "%s/control.sock", f->dir);
	int s3 = place_fd(listening_unix_socket(path), 3);

	/* LISTEN_PID names another process: the fds are not ours to take. */
	snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	setenv("LISTEN_FDNAMES", "control", 1);
	struct sd *sd = sd_new();
	assert_rc(sd_listen_fd(sd, "control", AF_UNIX, err, sizeof(err)), DRIP_ENOT_FOUND);
	sd_close(sd);
	assert_true(fcntl(3, F_GETFD) >= 0); /* and left alone */

	/* Ours but unnamed ("unknown") and never claimed: closed at ready. */
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	sd = sd_new();
	assert_rc(sd_listen_fd(sd, "control", AF_UNIX, err, sizeof(err)), DRIP_ENOT_FOUND);
	struct dripd d;
	memset(&d, 0, sizeof(d));
	sd_ready(sd, &d);
	assert_true(fcntl(3, F_GETFD) < 0);
	sd_close(sd);
	restore_fd(s3, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_line_says_due_sending_and_pause),
		cmocka_unit_test(test_credential_names_a_file_in_the_credentials_directory),
		cmocka_unit_test_setup_teardown(test_config_resolves_credentials_under_systemd,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_config_refuses_a_bad_credential_name_with_its_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_without_systemd_nothing_is_sent, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ready_status_watchdog_reload_and_stop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_a_slow_systemd_never_blocks_the_loop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_status_counts_due_touches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_fds_are_taken_by_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unclaimed_and_foreign_fds, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
