/* test_store.c - the store on ":memory:" and on temp files: schema, leads, touches, events. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "testutil.h"

#include "dripd/error.h"
#include "dripd/log.h"
#include "dripd/store.h"
#include "dripd/util.h"

#define T0 1800000000LL /* an arbitrary business time: 2027-01-15 */

/* ---- helpers -------------------------------------------------------------------------- */

static int setup_store(void **state)
{
	*state = testutil_store_open(":memory:");
	return 0;
}

static int teardown_store(void **state)
{
	store_close(*state);
	return 0;
}

static int64_t add_lead(struct store *st, const char *email)
{
	struct lead l = { .email = (char *)email,
			  .first_name = (char *)"Maya",
			  .stage = (char *)"awareness" };
	assert_rc(store_lead_insert(st, &l, T0), 0);
	assert_true(l.id > 0);
	return l.id;
}

static int64_t start_enrolment(struct store *st, int64_t lead_id, const char *sequence)
{
	int64_t eid = 0;
	assert_rc(store_enrolment_start(st, lead_id, sequence, "awareness", T0, &eid), 0);
	assert_true(eid > 0);
	return eid;
}

static int64_t schedule(struct store *st, int64_t lead_id, int64_t eid, const char *step,
			int64_t index, int64_t due)
{
	int64_t tid = 0;
	assert_rc(store_touch_schedule(st, lead_id, eid, "basics", step, index, due, T0, &tid), 0);
	assert_true(tid > 0);
	return tid;
}

/* A lead, an enrolment in "basics" and one pending touch due at `due`. */
static int64_t one_touch(struct store *st, const char *email, int64_t due)
{
	int64_t lead = add_lead(st, email);
	int64_t eid = start_enrolment(st, lead, "basics");
	return schedule(st, lead, eid, "welcome", 0, due);
}

/* A store on a file in a new temporary folder `dir` (the test removes it), at *path. */
static struct store *open_in_tmp(char *dir, size_t dirlen, char **path)
{
	char err[256] = "";
	testutil_mkdtemp(dir, dirlen, "store");
	*path = xasprintf("%s/dripd.db", dir);
	struct store *st = store_open(*path, err, sizeof(err));
	if (!st)
		fail_msg("cannot open %s: %s", *path, err);
	return st;
}

static void assert_touch_state(struct store *st, int64_t id, const char *state)
{
	struct touch t;
	assert_rc(store_touch_get(st, id, &t), 0);
	assert_string_equal(t.state, state);
	store_touch_clear(&t);
}

static void claim_one(struct store *st, int64_t id, int64_t now)
{
	int64_t ids[4];
	size_t n = 99;
	assert_rc(store_touch_claim(st, now, 4, ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], id);
}

/* ---- schema and files ----------------------------------------------------------------- */

static void test_migration_sets_user_version_to_schema_version(void **state)
{
	(void)state;
	char err[256] = "";
	char dir[512];
	testutil_mkdtemp(dir, sizeof(dir), "store");
	char *path = xasprintf("%s/dripd.db", dir);
	assert_true(store_schema_version() >= 1);

	struct store *st = store_open(path, err, sizeof(err));
	assert_non_null(st);
	store_close(st);

	char *v = testutil_sql_text(path, "PRAGMA user_version");
	char want[16];
	snprintf(want, sizeof(want), "%d", store_schema_version());
	assert_string_equal(v, want);
	free(v);
	free(path);
	testutil_rmtree(dir);
}

static void test_reopening_a_migrated_database_is_a_no_op(void **state)
{
	(void)state;
	char err[256] = "";
	char dir[512], *path;
	struct store *st = open_in_tmp(dir, sizeof(dir), &path);
	int64_t id = add_lead(st, "maya@example.org");
	assert_rc(store_setting_set(st, "clock_offset", 42), 0);
	store_close(st);
	char *schema_before = testutil_sql_text(
		path, "SELECT group_concat(sql, ';') FROM (SELECT sql FROM sqlite_master "
		      "WHERE sql IS NOT NULL ORDER BY name)");

	st = store_open(path, err, sizeof(err));
	assert_non_null(st);
	struct lead l;
	assert_rc(store_lead_by_email(st, "maya@example.org", &l), 0);
	assert_int_equal(l.id, id);
	store_lead_clear(&l);
	int64_t off = 0;
	assert_rc(store_setting_get(st, "clock_offset", &off), 0);
	assert_int_equal(off, 42);
	store_close(st);

	char *schema_after = testutil_sql_text(
		path, "SELECT group_concat(sql, ';') FROM (SELECT sql FROM sqlite_master "
		      "WHERE sql IS NOT NULL ORDER BY name)");
	assert_string_equal(schema_after, schema_before);
	char *v = testutil_sql_text(path, "PRAGMA user_version");
	assert_int_equal(atoi(v), store_schema_version());
	free(v);
	free(schema_before);
	free(schema_after);
	free(path);
	testutil_rmtree(dir);
}

/* status's counts are kept by triggers: they follow every insert and state change. */
static void test_status_counts_follow_every_change(void **state)
{
	struct store *st = *state;
	struct store_status ss;
	int64_t a = add_lead(st, "a@example.com"), b = add_lead(st, "b@example.com");
	add_lead(st, "c@example.com");
	int64_t ea = start_enrolment(st, a, "basics"), eb = start_enrolment(st, b, "basics");
	int64_t t1 = schedule(st, a, ea, "one", 0, T0), t2 = schedule(st, a, ea, "two", 1, T0 + 9);
	int64_t t3 = schedule(st, b, eb, "one", 0, T0 + 5);
	assert_rc(store_status(st, &ss), 0);
	assert_int_equal(ss.leads, 3);
	assert_int_equal(ss.active_enrolments, 2);
	assert_int_equal(ss.pending, 3);
	assert_int_equal(ss.next_due, T0);
	int64_t ids[4];
	size_t n = 0;
	assert_rc(store_touch_claim(st, T0, 4, ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], t1);
	assert_rc(store_status(st, &ss), 0);
	assert_int_equal(ss.queued, 1);
	assert_rc(store_touch_sending(st, t1, "<m1@example.com>", T0), 0);
	assert_rc(store_status(st, &ss), 0);
	assert_int_equal(ss.queued, 0);
	assert_int_equal(ss.pending, 2);
	assert_int_equal(ss.sending, 1);
	assert_rc(store_touch_sent(st, t1, T0), 0);
	assert_rc(store_touch_finish(st, t3, "failed", "550 no such user", T0), 0);
	assert_rc(store_enrolment_exit_active(st, b, "failed", T0), 0);
	assert_rc(store_status(st, &ss), 0);
	assert_int_equal(ss.sending, 0);
	assert_int_equal(ss.sent, 1);
	assert_int_equal(ss.failed, 1);
	assert_int_equal(ss.pending, 1);
	assert_int_equal(ss.active_enrolments, 1);
	assert_int_equal(ss.next_due, T0 + 9);
	assert_rc(store_touch_finish(st, t2, "skipped", "left the journey", T0), 0);
	assert_rc(store_status(st, &ss), 0);
	assert_int_equal(ss.pending, 0);
	assert_int_equal(ss.next_due, 0);
	assert_int_equal(ss.sent, 1);
	assert_int_equal(ss.leads, 3);
}

/* Rows are written without a constant IN list (each builds a temporary b-tree per row),
 * and the rewritten CHECKs still refuse what they refused. */
static void test_schema_writes_use_no_constant_in_lists(void **state)
{
	(void)state;
	char dir[512], *path;
	struct store *st = open_in_tmp(dir, sizeof(dir), &path);
	int64_t tid = one_touch(st, "maya@example.org", T0);
	assert_rc(store_lead_set_status(st, 1, "nonsense", T0), DRIP_EINVALID);
	assert_rc(store_touch_finish(st, tid, "nonsense", "", T0), DRIP_EINVALID);
	assert_rc(store_enrolment_end(st, 1, "nonsense", T0), DRIP_EINVALID);
	assert_rc(store_touch_finish(st, tid, "failed", "550", T0), 0);
	store_close(st);
	char *n = testutil_sql_text(path, "SELECT count(*) FROM sqlite_schema WHERE "
					  "(name IN ('leads', 'touches', 'enrolments') OR "
					  "name LIKE 'counts_touches_%') AND sql LIKE '% IN (%'");
	assert_string_equal(n, "0");
	free(n);
	n = testutil_sql_text(path, "PRAGMA integrity_check");
	assert_string_equal(n, "ok");
	free(n);
	n = testutil_sql_text(path, "SELECT group_concat(key || '=' || n) FROM counts WHERE "
				    "key LIKE 'touches:%' AND n != 0");
	assert_string_equal(n, "touches:failed=1");
	free(n);
	testutil_rmtree(dir);
	free(path);
}

/* Migration 18: the counts triggers are plain UPDATEs (an upsert gave every touch write a
 * statement journal), so a database whose counts never saw a failed touch or an exited
 * enrolment (migration 10 made rows only for the states it found) gets a row for every
 * key they keep, and counts into it. */
static void test_counts_have_a_row_for_every_key_the_triggers_keep(void **state)
{
	(void)state;
	char err[256] = "";
	char dir[512], *path;
	struct store *st = open_in_tmp(dir, sizeof(dir), &path);
	int64_t tid = one_touch(st, "maya@example.org", T0);
	store_close(st);
	testutil_sql_exec(
		path, "DELETE FROM counts WHERE key IN ('touches:sent', 'touches:failed', "
		      "'enrolments:completed', 'enrolments:exited'); PRAGMA user_version = 17;");

	st = store_open(path, err, sizeof(err));
	assert_non_null(st);
	assert_rc(store_touch_finish(st, tid, "failed", "550 no such user", T0), 0);
	assert_rc(store_enrolment_end(st, 1, "exited", T0), 0);
	store_close(st);
	char *n = testutil_sql_text(path, "SELECT group_concat(key || '=' || n) FROM (SELECT * "
					  "FROM counts WHERE key LIKE 'touches:%' OR key LIKE "
					  "'enrolments:%' ORDER BY key)");
	assert_string_equal(n, "enrolments:active=0,enrolments:completed=0,enrolments:exited=1,"
			       "touches:failed=1,touches:pending=0,touches:sent=0");
	free(n);
	n = testutil_sql_text(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' "
				    "AND sql LIKE '%ON CONFLICT%'");
	assert_string_equal(n, "0");
	free(n);
	testutil_rmtree(dir);
	free(path);
}

/* SQLite may roll a transaction back by itself (here a trigger's RAISE(ROLLBACK); in life
 * an I/O error or a full disk): the writes after it are refused instead of each running,
 * and committing, alone. */
static void test_a_transaction_sqlite_rolled_back_refuses_what_follows(void **state)
{
	(void)state;
	char dir[512], *path;
	struct store *st = open_in_tmp(dir, sizeof(dir), &path);
	store_close(st);
	testutil_sql_exec(path, "CREATE TRIGGER boom BEFORE INSERT ON leads WHEN new.email = "
				"'boom@example.org' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END;");
	char err[256] = "";
	st = store_open(path, err, sizeof(err));
	assert_non_null(st);
	assert_rc(store_begin(st), 0);
	add_lead(st, "a@example.org");
	struct lead boom = { .email = (char *)"boom@example.org", .stage = (char *)"awareness" };
	assert_true(store_lead_insert(st, &boom, T0) != 0);
	struct lead b = { .email = (char *)"b@example.org", .stage = (char *)"awareness" };
	assert_rc(store_lead_insert(st, &b, T0), DRIP_ESTORE);
	char msg[200];
	assert_int_not_equal(store_last_error(st, msg, sizeof(msg)), STORE_FAIL_NONE);
	assert_rc(store_commit(st), DRIP_ESTORE);
	/* Once the caller has ended it, the store takes writes again. */
	add_lead(st, "c@example.org");
	store_close(st);
	char *n = testutil_sql_text(path, "SELECT group_concat(email) FROM leads");
	assert_string_equal(n, "c@example.org");
	free(n);
	testutil_rmtree(dir);
	free(path);
}

/* The import's suppression check finds what store_suppressed finds: the address (any
 * case), its domain, and a forgotten address by its keyed hash when asked to look. */
static void test_quick_suppression_check_matches_the_full_one(void **state)
{
	struct store *st = *state;
	bool any = true;
	assert_rc(store_suppressed_any_hashed(st, &any), 0);
	assert_false(any);
	assert_rc(store_suppress(st, "Maya@Example.org", "unsubscribe", "journey", T0), 0);
	assert_rc(store_suppress(st, "blocked.example", "manual", "dripctl", T0), 0);
	assert_rc(store_suppressed_quick(st, "maya@example.org", false), 0);
	assert_rc(store_suppressed_quick(st, "x@BLOCKED.example", false), 0);
	assert_rc(store_suppressed_quick(st, "x@example.org", false), DRIP_ENOT_FOUND);
	assert_rc(store_suppressed_quick(st, "blocked.example", false), 0);
	assert_rc(store_set_hash_key(st, "0123456789abcdef", 16), 0);
	char h[STORE_HASH_LEN];
	assert_rc(store_address_hash(st, "gone@example.org", h), 0);
	assert_rc(store_suppress(st, h, "forgotten", "dripctl", T0), 0);
	assert_rc(store_suppressed_any_hashed(st, &any), 0);
	assert_true(any);
	assert_rc(store_suppressed_quick(st, "Gone@example.org", true), 0);
	assert_rc(store_suppressed(st, "Gone@example.org", NULL, 0), 0);
	assert_rc(store_suppressed_quick(st, "Gone@example.org", false), DRIP_ENOT_FOUND);
	assert_rc(store_suppressed_quick(st, "other@example.org", true), DRIP_ENOT_FOUND);
}

static void test_database_file_runs_in_wal_mode(void **state)
{
	(void)state;
	char err[256] = "";
	char dir[512];
	testutil_mkdtemp(dir, sizeof(dir), "store");
	char *path = xasprintf("%s/dripd.db", dir);
	char *wal = xasprintf("%s-wal", path);
	struct store *st = store_open(path, err, sizeof(err));
	assert_non_null(st);
	add_lead(st, "maya@example.org");
	struct stat sb;
	assert_rc(stat(wal, &sb), 0); /* the write went to the WAL while open */
	store_close(st);

	char *mode = testutil_sql_text(path, "PRAGMA journal_mode");
	assert_string_equal(mode, "wal");
	free(mode);
	free(wal);
	free(path);
	testutil_rmtree(dir);
}

/*
 * With the loop's pool checkpointing, a long run of commits keeps the WAL small: checkpoints
 * happen off the committing thread and the WAL is reused after each, and nothing is lost.
 */
static void test_background_checkpoints_keep_the_wal_small(void **state)
{
	(void)state;
	char err[256] = "", dir[512], email[64], title[3000];
	uv_loop_t loop;
	uint64_t done = 0, failed = 0, on_loop = 0;
	testutil_mkdtemp(dir, sizeof(dir), "store");
	char *path = xasprintf("%s/dripd.db", dir);
	char *wal = xasprintf("%s-wal", path);
	assert_rc(uv_loop_init(&loop), 0);
	struct store *st = store_open(path, err, sizeof(err));
	assert_non_null(st);
	assert_rc(store_checkpoint_in_background(st, &loop), 0);
	memset(title, 'x', sizeof(title) - 1);
	title[sizeof(title) - 1] = '\0';
	/* 200 commits of 100 leads, each lead near a page: over 80 MB written in all. */
	for (int c = 0; c < 200; c++) {
		assert_rc(store_begin(st), 0);
		for (int i = 0; i < 100; i++) {
			snprintf(email, sizeof(email), "lead%d.%d@example.org", c, i);
			struct lead l = { .email = email,
					  .title = title,
					  .stage = (char *)"awareness" };
			assert_rc(store_lead_insert(st, &l, T0), 0);
		}
		assert_rc(store_commit(st), 0);
		/* Lets a finished checkpoint's callback run, as the daemon's loop does. */
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	for (int i = 0; i < 1000; i++) {
		store_checkpoint_counts(st, &done, &failed, &on_loop);
		if (uv_run(&loop, UV_RUN_NOWAIT) == 0)
			break;
		uv_sleep(5);
	}
	store_checkpoint_counts(st, &done, &failed, &on_loop);
	assert_true(done >= 1);
	assert_int_equal(failed, 0);
	struct stat sb;
	assert_rc(stat(wal, &sb), 0);
	/* Without checkpoints the WAL would hold every page written; the pool does most
	 * of them, the loop now and then copies the rest so the file is reused. */
	assert_true(sb.st_size < (STORE_WAL_MAX_PAGES + 400) * 4096);
	assert_true(done >= 10);
	assert_true(on_loop < done);
	struct store_status ss;
	assert_rc(store_status(st, &ss), 0);
	assert_int_equal(ss.leads, 20000);
	store_close(st);
	assert_rc(uv_loop_close(&loop), 0);

	char *n = testutil_sql_text(path, "SELECT count(*) FROM leads");
	assert_string_equal(n, "20000");
	free(n);
	/* A :memory: store has no WAL to checkpoint. */
	st = store_open(":memory:", err, sizeof(err));
	assert_non_null(st);
	assert_int_equal(store_checkpoint_in_background(st, &loop), DRIP_EINVALID);
	store_close(st);
	free(wal);
	free(path);
	testutil_rmtree(dir);
}

/*
 * The store's VFS gathers a commit's WAL frames into one write: what a commit wrote is in
 * the file for another connection (the default VFS, as sqlite3 or a second process would
 * read it) while the store stays open, a transaction larger than the gathering buffer
 * commits whole, one rolled back leaves nothing, and the file is sound afterwards.
 */
static void test_gathered_wal_writes_are_seen_by_other_connections(void **state)
{
	(void)state;
	char err[256] = "", dir[512], email[64], title[3000], want[32];
	testutil_mkdtemp(dir, sizeof(dir), "store");
	char *path = xasprintf("%s/dripd.db", dir);
	struct store *st = store_open(path, err, sizeof(err));
	assert_non_null(st);
	memset(title, 'y', sizeof(title) - 1);
	title[sizeof(title) - 1] = '\0';
	int total = 0;
	for (int c = 0; c < 5; c++) {
		assert_rc(store_begin(st), 0);
		/* The third is ~2.4 MB of pages: many times what the buffer holds. */
		int n = c == 2 ? 800 : 3;
		for (int i = 0; i < n; i++) {
			snprintf(email, sizeof(email), "w%d.%d@example.org", c, i);
			struct lead l = { .email = email,
					  .title = title,
					  .stage = (char *)"awareness" };
			assert_rc(store_lead_insert(st, &l, T0), 0);
		}
		assert_rc(store_commit(st), 0);
		total += n;
		char *seen = testutil_sql_text(path, "SELECT count(*) FROM leads");
		snprintf(want, sizeof(want), "%d", total);
		assert_string_equal(seen, want);
		free(seen);
	}
	/* Rolled back after the cache spilled frames into the WAL: none of it counts. */
	assert_rc(store_begin(st), 0);
	for (int i = 0; i < 3000; i++) {
		snprintf(email, sizeof(email), "gone%d@example.org", i);
		struct lead l = { .email = email, .title = title, .stage = (char *)"awareness" };
		assert_rc(store_lead_insert(st, &l, T0), 0);
	}
	store_rollback(st);
	add_lead(st, "after@example.org");
	total++;
	char *seen = testutil_sql_text(path, "SELECT count(*) FROM leads");
	snprintf(want, sizeof(want), "%d", total);
	assert_string_equal(seen, want);
	free(seen);
	char *ok = testutil_sql_text(path, "PRAGMA integrity_check");
	assert_string_equal(ok, "ok");
	free(ok);
	store_close(st);
	seen = testutil_sql_text(path, "SELECT count(*) FROM leads WHERE email LIKE 'gone%'");
	assert_string_equal(seen, "0");
	free(seen);
	free(path);
	testutil_rmtree(dir);
}

static void test_newer_schema_is_refused_with_a_clear_error(void **state)
{
	(void)state;
	char err[256] = "";
	char dir[512];
	testutil_mkdtemp(dir, sizeof(dir), "store");
	char *path = xasprintf("%s/dripd.db", dir);
	char *sql = xasprintf("CREATE TABLE future (x); PRAGMA user_version = %d;",
			      store_schema_version() + 1);
	testutil_sql_exec(path, sql);

	struct store *st = store_open(path, err, sizeof(err));
	assert_null(st);
	assert_non_null(strstr(err, "newer"));
	char want[64];
	snprintf(want, sizeof(want), "%d", store_schema_version() + 1);
	assert_non_null(strstr(err, want));

	assert_non_null(strstr(err, path));
	/* Nothing was migrated, dropped or even switched to WAL: the file is as it was. */
	char *mode = testutil_sql_text(path, "PRAGMA journal_mode");
	assert_string_equal(mode, "delete");
	free(mode);
	char *v = testutil_sql_text(path, "PRAGMA user_version");
	assert_string_equal(v, want);
	free(v);
	char *tables = testutil_sql_text(path, "SELECT group_concat(name) FROM sqlite_master");
	assert_string_equal(tables, "future");
	free(tables);
	free(sql);
	free(path);
	testutil_rmtree(dir);
}

static void test_file_that_is_not_a_database_is_refused_not_recreated(void **state)
{
	(void)state;
	char err[256] = "";
	char dir[512];
	testutil_mkdtemp(dir, sizeof(dir), "store");
	char *path = xasprintf("%s/dripd.db", dir);
	char garbage[4096];
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (char)((i * 131 + 7) & 0xff);
	testutil_write_bytes(path, garbage, sizeof(garbage));

	struct store *st = store_open(path, err, sizeof(err));
	assert_null(st);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "not a database"));

	size_t n = 0;
	char *after = testutil_read_file_len(path, &n);
	assert_int_equal(n, sizeof(garbage));
	assert_memory_equal(after, garbage, sizeof(garbage));
	free(after);
	free(path);
	testutil_rmtree(dir);
}

/* ---- leads ---------------------------------------------------------------------------- */

static void test_lead_is_found_by_email_ignoring_case_and_by_id(void **state)
{
	struct store *st = *state;
	struct lead in = { .email = (char *)"Maya.Ortiz@Example.org",
			   .first_name = (char *)"Maya",
			   .last_name = (char *)"Ortiz",
			   .company = (char *)"Acme",
			   .title = (char *)"VP Sales",
			   .tz = (char *)"Europe/Madrid",
			   .stage = (char *)"consideration",
			   .tags = (char *)"[\"webinar\"]",
			   .attrs = (char *)"{\"source\":\"fair\"}" };
	assert_rc(store_lead_insert(st, &in, T0), 0);
	assert_true(in.id > 0);
	assert_int_equal(in.created_at, T0);

	struct lead l;
	assert_rc(store_lead_by_email(st, "maya.ortiz@EXAMPLE.ORG", &l), 0);
	assert_int_equal(l.id, in.id);
	assert_string_equal(l.email, "Maya.Ortiz@Example.org");
	assert_string_equal(l.first_name, "Maya");
	assert_string_equal(l.last_name, "Ortiz");
	assert_string_equal(l.company, "Acme");
	assert_string_equal(l.title, "VP Sales");
	assert_string_equal(l.tz, "Europe/Madrid");
	assert_string_equal(l.stage, "consideration");
	assert_string_equal(l.status, "active");
	assert_string_equal(l.tags, "[\"webinar\"]");
	assert_string_equal(l.attrs, "{\"source\":\"fair\"}");
	assert_int_equal(l.score, 0);
	assert_int_equal(l.created_at, T0);
	assert_int_equal(l.updated_at, T0);
	store_lead_clear(&l);

	assert_rc(store_lead_by_id(st, in.id, &l), 0);
	assert_string_equal(l.email, "Maya.Ortiz@Example.org");
	store_lead_clear(&l);

	assert_rc(store_lead_by_email(st, "nobody@example.org", &l), DRIP_ENOT_FOUND);
	assert_rc(store_lead_by_id(st, in.id + 100, &l), DRIP_ENOT_FOUND);
}

static void test_lead_without_tags_or_attrs_gets_empty_json(void **state)
{
	struct store *st = *state;
	int64_t id = add_lead(st, "bare@example.org");
	struct lead l;
	assert_rc(store_lead_by_id(st, id, &l), 0);
	assert_string_equal(l.tags, "[]");
	assert_string_equal(l.attrs, "{}");
	assert_string_equal(l.last_name, "");
	store_lead_clear(&l);
}

static void test_duplicate_email_is_refused_as_exists(void **state)
{
	struct store *st = *state;
	add_lead(st, "maya@example.org");
	struct lead again = { .email = (char *)"MAYA@example.org", .stage = (char *)"awareness" };
	assert_rc(store_lead_insert(st, &again, T0), DRIP_EEXISTS);
	struct store_status s;
	assert_rc(store_status(st, &s), 0);
	assert_int_equal(s.leads, 1);
}

static void test_lead_with_invalid_json_tags_is_refused_as_invalid(void **state)
{
	struct store *st = *state;
	struct lead l = { .email = (char *)"maya@example.org",
			  .stage = (char *)"awareness",
			  .tags = (char *)"[not json" };
	assert_rc(store_lead_insert(st, &l, T0), DRIP_EINVALID);
}

static void test_lead_stage_is_set_and_unknown_lead_is_not_found(void **state)
{
	struct store *st = *state;
	int64_t id = add_lead(st, "maya@example.org");
	assert_rc(store_lead_set_stage(st, id, "decision", T0 + 5), 0);
	struct lead l;
	assert_rc(store_lead_by_id(st, id, &l), 0);
	assert_string_equal(l.stage, "decision");
	assert_int_equal(l.updated_at, T0 + 5);
	store_lead_clear(&l);
	assert_rc(store_lead_set_stage(st, id + 1, "decision", T0), DRIP_ENOT_FOUND);
}

/* ---- enrolments ----------------------------------------------------------------------- */

static void test_lead_has_at_most_one_active_enrolment(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t first = start_enrolment(st, lead, "basics");
	int64_t second = 0;
	assert_rc(store_enrolment_start(st, lead, "playbook", "consideration", T0, &second),
		  DRIP_EEXISTS);
	assert_int_equal(second, 0);

	assert_rc(store_enrolment_end(st, first, "completed", T0 + 10), 0);
	assert_rc(store_enrolment_start(st, lead, "playbook", "consideration", T0 + 10, &second),
		  0);
	assert_true(second > first);

	/* Another lead is not held back by the first one's enrolment. */
	int64_t other = add_lead(st, "sam@example.org");
	start_enrolment(st, other, "basics");
	struct store_status s;
	assert_rc(store_status(st, &s), 0);
	assert_int_equal(s.active_enrolments, 2);
}

static void test_enrolment_end_only_ends_an_active_enrolment(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	assert_rc(store_enrolment_end(st, eid, "exited", T0 + 1), 0);
	assert_rc(store_enrolment_end(st, eid, "completed", T0 + 2), DRIP_ENOT_FOUND);
	assert_rc(store_enrolment_end(st, eid + 50, "completed", T0 + 2), DRIP_ENOT_FOUND);
}

static void test_enrolment_end_with_an_unknown_state_is_invalid(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	assert_rc(store_enrolment_end(st, eid, "vanished", T0 + 1), DRIP_EINVALID);
	/* Still active: a new enrolment is still refused. */
	int64_t other = 0;
	assert_rc(store_enrolment_start(st, lead, "playbook", "consideration", T0, &other),
		  DRIP_EEXISTS);
}

/* ---- touches -------------------------------------------------------------------------- */

static void test_step_is_scheduled_at_most_once(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t tid = schedule(st, lead, eid, "welcome", 0, T0);

	int64_t again = 0;
	assert_rc(store_touch_schedule(st, lead, eid, "basics", "welcome", 0, T0 + 99, T0, &again),
		  DRIP_EEXISTS);
	assert_int_equal(again, 0);

	/* Even after the first was sent and in a later enrolment, the step is not repeated. */
	claim_one(st, tid, T0);
	assert_rc(store_touch_sending(st, tid, "<t1@example.com>", T0), 0);
	assert_rc(store_touch_sent(st, tid, T0), 0);
	assert_rc(store_enrolment_end(st, eid, "completed", T0), 0);
	int64_t eid2 = start_enrolment(st, lead, "basics");
	assert_rc(store_touch_schedule(st, lead, eid2, "basics", "welcome", 0, T0 + 99, T0, &again),
		  DRIP_EEXISTS);

	/* The same step for another lead, and another step for this lead, are fine. */
	int64_t other = add_lead(st, "sam@example.org");
	int64_t oeid = start_enrolment(st, other, "basics");
	schedule(st, other, oeid, "welcome", 0, T0);
	schedule(st, lead, eid2, "two-jobs", 1, T0);
}

static void test_touch_is_stored_with_its_schedule(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t tid = schedule(st, lead, eid, "two-jobs", 1, T0 + 3 * 86400);
	struct touch t;
	assert_rc(store_touch_get(st, tid, &t), 0);
	assert_int_equal(t.id, tid);
	assert_int_equal(t.lead_id, lead);
	assert_int_equal(t.enrolment_id, eid);
	assert_string_equal(t.sequence, "basics");
	assert_string_equal(t.step, "two-jobs");
	assert_int_equal(t.step_index, 1);
	assert_string_equal(t.state, "pending");
	assert_int_equal(t.due_at, T0 + 3 * 86400);
	assert_int_equal(t.sent_at, 0);
	assert_int_equal(t.attempts, 0);
	assert_string_equal(t.message_id, "");
	assert_string_equal(t.last_error, "");
	store_touch_clear(&t);
	assert_rc(store_touch_get(st, tid + 1, &t), DRIP_ENOT_FOUND);
}

static void test_touch_is_only_scheduled_in_the_leads_active_enrolment(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t other = add_lead(st, "sam@example.org");
	int64_t tid = 0;
	assert_rc(store_touch_schedule(st, lead, 999, "basics", "welcome", 0, T0, T0, &tid),
		  DRIP_ENOT_FOUND);
	/* Another lead's enrolment is not this lead's. */
	int64_t theirs = start_enrolment(st, other, "basics");
	assert_rc(store_touch_schedule(st, lead, theirs, "basics", "welcome", 0, T0, T0, &tid),
		  DRIP_ENOT_FOUND);
	/* An ended enrolment takes no more steps. */
	int64_t eid = start_enrolment(st, lead, "basics");
	assert_rc(store_enrolment_end(st, eid, "exited", T0), 0);
	assert_rc(store_touch_schedule(st, lead, eid, "basics", "welcome", 0, T0, T0, &tid),
		  DRIP_ENOT_FOUND);
	assert_int_equal(tid, 0);
	int64_t due = 0;
	assert_rc(store_touch_next_due(st, &due), DRIP_ENOT_FOUND);
}

/* Inside a transaction (a sent step scheduling the next) the same answers, by another path. */
static void test_touch_is_only_scheduled_in_the_active_enrolment_inside_a_transaction(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t other = add_lead(st, "sam@example.org");
	int64_t theirs = start_enrolment(st, other, "basics");
	int64_t ended = start_enrolment(st, lead, "basics");
	assert_rc(store_enrolment_end(st, ended, "exited", T0), 0);
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t tid = 0, again = 0;
	assert_rc(store_begin(st), 0);
	assert_rc(store_touch_schedule(st, lead, 999, "basics", "welcome", 0, T0, T0, &tid),
		  DRIP_ENOT_FOUND);
	assert_rc(store_touch_schedule(st, lead, theirs, "basics", "welcome", 0, T0, T0, &tid),
		  DRIP_ENOT_FOUND);
	assert_rc(store_touch_schedule(st, lead, ended, "basics", "welcome", 0, T0, T0, &tid),
		  DRIP_ENOT_FOUND);
	assert_int_equal(tid, 0);
	assert_rc(store_touch_schedule(st, lead, eid, "basics", "welcome", 0, T0 + 60, T0, &tid),
		  0);
	assert_true(tid > 0);
	assert_rc(store_touch_schedule(st, lead, eid, "basics", "welcome", 0, T0, T0, &again),
		  DRIP_EEXISTS);
	assert_int_equal(again, 0);
	assert_rc(store_commit(st), 0);
	struct touch t;
	assert_rc(store_touch_get(st, tid, &t), 0);
	assert_int_equal(t.enrolment_id, eid);
	assert_int_equal(t.due_at, T0 + 60);
	assert_string_equal(t.state, "pending");
	store_touch_clear(&t);
	struct store_status ss;
	assert_rc(store_status(st, &ss), 0);
	assert_int_equal(ss.pending, 1);
}

/* The hand-over's one UPDATE: sending, Message-ID, account, domain, subject and variant,
 * from queued (a claim) or from pending (taken with store_touch_take, in one transaction). */
/* What store_sends_each gave: how many, the first's account and domain, the oldest and
 * the newest time. */
struct sends {
	size_t n;
	char account[32], domain[64];
	int64_t first, last;
};

static void sends_add(void *arg, const char *account, const char *rcpt_domain, int64_t at)
{
	struct sends *s = arg;
	if (s->n++ == 0) {
		snprintf(s->account, sizeof(s->account), "%s", account);
		snprintf(s->domain, sizeof(s->domain), "%s", rcpt_domain);
		s->first = s->last = at;
	}
	if (at < s->first)
		s->first = at;
	if (at > s->last)
		s->last = at;
}

static void test_touch_sending_with_its_note_in_one_write(void **state)
{
	struct store *st = *state;
	int64_t tid = one_touch(st, "maya@example.org", T0);
	int64_t other = one_touch(st, "sam@example.org", T0 + 1);
	int64_t ids[4];
	size_t n = 99;
	assert_rc(store_begin(st), 0);
	assert_rc(store_touch_take(st, T0, 4, NULL, ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], tid);
	assert_touch_state(st, tid, "pending"); /* taken, not marked */
	assert_rc(store_touch_sending_note(st, tid, "<t1@example.com>", "main", "example.org",
					   "Hello", 2, T0 + 5),
		  0);
	assert_rc(store_commit(st), 0);
	struct touch t;
	assert_rc(store_touch_get(st, tid, &t), 0);
	assert_string_equal(t.state, "sending");
	assert_string_equal(t.message_id, "<t1@example.com>");
	assert_string_equal(t.account, "main");
	assert_int_equal(t.attempts, 1);
	assert_int_equal(t.first_attempt_at, T0 + 5);
	char *mid = NULL, *subject = NULL;
	assert_rc(store_touch_thread_root(st, t.enrolment_id, &mid, &subject), 0);
	assert_string_equal(mid, "<t1@example.com>");
	assert_string_equal(subject, "Hello");
	free(mid);
	free(subject);
	store_touch_clear(&t);
	/* Twice is refused: it is no longer pending or queued. */
	assert_rc(store_touch_sending_note(st, tid, "<t2@example.com>", "main", "example.org",
					   "Again", 0, T0 + 6),
		  DRIP_ENOT_FOUND);
	/* A claimed (queued) touch goes too. */
	claim_one(st, other, T0 + 1);
	assert_rc(store_touch_sending_note(st, other, "<t3@example.com>", "main", "example.org",
					   "Hi", 0, T0 + 7),
		  0);
	assert_touch_state(st, other, "sending");
	/* Both count against the caps, at the time they were handed over. */
	struct sends sends = { 0 };
	assert_rc(store_sends_each(st, T0, sends_add, &sends), 0);
	assert_int_equal(sends.n, 2);
	assert_string_equal(sends.account, "main");
	assert_string_equal(sends.domain, "example.org");
	assert_int_equal(sends.first, T0 + 5);
	assert_int_equal(sends.last, T0 + 7);
	struct store_status ss;
	assert_rc(store_status(st, &ss), 0);
	assert_int_equal(ss.pending, 0);
	assert_int_equal(ss.queued, 0);
	assert_int_equal(ss.sending, 2);
	/* A sent touch counts at the time it went; a deferred one counts no more. */
	assert_rc(store_touch_sent(st, tid, T0 + 9), 0);
	assert_rc(store_touch_defer(st, other, T0 + 100, "451 later", T0 + 8), 0);
	memset(&sends, 0, sizeof(sends));
	assert_rc(store_sends_each(st, T0 + 5, sends_add, &sends), 0);
	assert_int_equal(sends.n, 1);
	assert_int_equal(sends.first, T0 + 9);
	/* One sent and one being sent: both. */
	assert_rc(store_touch_sending_note(st, other, "<t4@example.com>", "main", "example.org",
					   "Hi", 0, T0 + 10),
		  0);
	memset(&sends, 0, sizeof(sends));
	assert_rc(store_sends_each(st, T0 + 5, sends_add, &sends), 0);
	assert_int_equal(sends.n, 2);
	assert_int_equal(sends.first, T0 + 9);
	assert_int_equal(sends.last, T0 + 10);
}

static void test_next_due_is_not_found_when_nothing_is_pending(void **state)
{
	struct store *st = *state;
	int64_t due = -1;
	assert_rc(store_touch_next_due(st, &due), DRIP_ENOT_FOUND);
	int64_t tid = one_touch(st, "maya@example.org", T0 + 60);
	assert_rc(store_touch_next_due(st, &due), 0);
	assert_int_equal(due, T0 + 60);
	/* A touch that is no longer pending does not count. */
	assert_rc(store_touch_finish(st, tid, "skipped", "test", T0), 0);
	assert_rc(store_touch_next_due(st, &due), DRIP_ENOT_FOUND);
}

static void test_next_due_is_the_earliest_pending_touch(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	schedule(st, lead, eid, "a", 0, T0 + 300);
	schedule(st, lead, eid, "b", 1, T0 + 100);
	schedule(st, lead, eid, "c", 2, T0 + 200);
	int64_t due = 0;
	assert_rc(store_touch_next_due(st, &due), 0);
	assert_int_equal(due, T0 + 100);
}

static void test_claim_takes_due_pending_touches_oldest_first_up_to_max(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t late = schedule(st, lead, eid, "late", 0, T0 - 10);
	int64_t oldest = schedule(st, lead, eid, "oldest", 1, T0 - 300);
	int64_t middle = schedule(st, lead, eid, "middle", 2, T0 - 100);
	int64_t future = schedule(st, lead, eid, "future", 3, T0 + 1);
	int64_t done = schedule(st, lead, eid, "done", 4, T0 - 1000);
	assert_rc(store_touch_finish(st, done, "skipped", "test", T0), 0);

	int64_t ids[8] = { 0 };
	size_t n = 0;
	assert_rc(store_touch_claim(st, T0, 2, ids, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], oldest);
	assert_int_equal(ids[1], middle);
	assert_touch_state(st, oldest, "queued");
	assert_touch_state(st, middle, "queued");
	assert_touch_state(st, late, "pending");
	assert_touch_state(st, future, "pending");
	assert_touch_state(st, done, "skipped");

	assert_rc(store_touch_claim(st, T0, 8, ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], late);
	assert_touch_state(st, future, "pending");
}

static void test_claimed_touches_are_not_claimed_again(void **state)
{
	struct store *st = *state;
	int64_t tid = one_touch(st, "maya@example.org", T0);
	claim_one(st, tid, T0);
	int64_t ids[4];
	size_t n = 99;
	assert_rc(store_touch_claim(st, T0 + 3600, 4, ids, &n), 0);
	assert_int_equal(n, 0);
	int64_t due = 0;
	assert_rc(store_touch_next_due(st, &due), DRIP_ENOT_FOUND);
}

static void test_claim_of_a_touch_due_at_exactly_now_takes_it(void **state)
{
	struct store *st = *state;
	int64_t tid = one_touch(st, "maya@example.org", T0);
	int64_t ids[4];
	size_t n = 99;
	assert_rc(store_touch_claim(st, T0 - 1, 4, ids, &n), 0);
	assert_int_equal(n, 0);
	assert_touch_state(st, tid, "pending");
	claim_one(st, tid, T0);
}

static void test_sending_only_from_queued(void **state)
{
	struct store *st = *state;
	int64_t tid = one_touch(st, "maya@example.org", T0);
	assert_rc(store_touch_sending(st, tid, "<a@example.com>", T0), DRIP_ENOT_FOUND);
	assert_touch_state(st, tid, "pending");

	claim_one(st, tid, T0);
	assert_rc(store_touch_sending(st, tid, "<a@example.com>", T0 + 1), 0);
	struct touch t;
	assert_rc(store_touch_get(st, tid, &t), 0);
	assert_string_equal(t.state, "sending");
	assert_string_equal(t.message_id, "<a@example.com>");
	assert_int_equal(t.attempts, 1);
	store_touch_clear(&t);

	assert_rc(store_touch_sending(st, tid, "<b@example.com>", T0 + 2), DRIP_ENOT_FOUND);
	assert_rc(store_touch_sending(st, tid + 10, "<c@example.com>", T0), DRIP_ENOT_FOUND);
}

static void test_sent_only_from_sending(void **state)
{
	struct store *st = *state;
	int64_t tid = one_touch(st, "maya@example.org", T0);
	assert_rc(store_touch_sent(st, tid, T0), DRIP_ENOT_FOUND);
	claim_one(st, tid, T0);
	assert_rc(store_touch_sent(st, tid, T0), DRIP_ENOT_FOUND);
	assert_touch_state(st, tid, "queued");
	assert_rc(store_touch_sending(st, tid, "<a@example.com>", T0), 0);
	assert_rc(store_touch_sent(st, tid, T0 + 5), 0);

	struct touch t;
	assert_rc(store_touch_get(st, tid, &t), 0);
	assert_string_equal(t.state, "sent");
	assert_int_equal(t.sent_at, T0 + 5);
	store_touch_clear(&t);
	assert_rc(store_touch_sent(st, tid, T0 + 6), DRIP_ENOT_FOUND);
}

static void test_same_message_id_cannot_be_given_to_two_touches(void **state)
{
	struct store *st = *state;
	int64_t a = one_touch(st, "maya@example.org", T0);
	int64_t b = one_touch(st, "sam@example.org", T0);
	int64_t ids[4];
	size_t n = 0;
	assert_rc(store_touch_claim(st, T0, 4, ids, &n), 0);
	assert_int_equal(n, 2);
	assert_rc(store_touch_sending(st, a, "<same@example.com>", T0), 0);
	assert_rc(store_touch_sending(st, b, "<same@example.com>", T0), DRIP_EEXISTS);
	assert_touch_state(st, b, "queued");
}

static void test_defer_returns_a_sending_touch_to_pending_later(void **state)
{
	struct store *st = *state;
	int64_t tid = one_touch(st, "maya@example.org", T0);
	assert_rc(store_touch_defer(st, tid, T0 + 600, "451 busy", T0), DRIP_ENOT_FOUND);
	claim_one(st, tid, T0);
	assert_rc(store_touch_defer(st, tid, T0 + 600, "451 busy", T0), DRIP_ENOT_FOUND);
	assert_rc(store_touch_sending(st, tid, "<a@example.com>", T0), 0);
	assert_rc(store_touch_defer(st, tid, T0 + 600, "451 busy", T0 + 1), 0);

	struct touch t;
	assert_rc(store_touch_get(st, tid, &t), 0);
	assert_string_equal(t.state, "pending");
	assert_int_equal(t.due_at, T0 + 600);
	assert_string_equal(t.last_error, "451 busy");
	assert_int_equal(t.attempts, 1);
	store_touch_clear(&t);

	/* Not due before its new time, due after. */
	int64_t ids[4];
	size_t n = 99;
	assert_rc(store_touch_claim(st, T0 + 599, 4, ids, &n), 0);
	assert_int_equal(n, 0);
	claim_one(st, tid, T0 + 600);
}

static void test_finish_moves_an_unfinished_touch_to_a_final_state(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t pending = schedule(st, lead, eid, "a", 0, T0 + 100);
	int64_t sending = schedule(st, lead, eid, "b", 1, T0);
	claim_one(st, sending, T0);
	assert_rc(store_touch_sending(st, sending, "<b@example.com>", T0), 0);

	assert_rc(store_touch_finish(st, pending, "skipped", "lead paused", T0), 0);
	assert_rc(store_touch_finish(st, sending, "failed", "550 no such user", T0), 0);

	struct touch t;
	assert_rc(store_touch_get(st, pending, &t), 0);
	assert_string_equal(t.state, "skipped");
	assert_string_equal(t.last_error, "lead paused");
	store_touch_clear(&t);
	assert_rc(store_touch_get(st, sending, &t), 0);
	assert_string_equal(t.state, "failed");
	assert_string_equal(t.last_error, "550 no such user");
	store_touch_clear(&t);

	/* A final state is final. */
	assert_rc(store_touch_finish(st, sending, "skipped", "again", T0), DRIP_ENOT_FOUND);
	assert_touch_state(st, sending, "failed");
}

static void test_finish_with_an_unknown_state_is_invalid(void **state)
{
	struct store *st = *state;
	int64_t tid = one_touch(st, "maya@example.org", T0);
	assert_rc(store_touch_finish(st, tid, "lost", "why", T0), DRIP_EINVALID);
	assert_touch_state(st, tid, "pending");
}

static void test_release_returns_a_queued_touch_to_pending(void **state)
{
	struct store *st = *state;
	int64_t tid = one_touch(st, "maya@example.org", T0);
	assert_rc(store_touch_release(st, tid), DRIP_ENOT_FOUND);
	claim_one(st, tid, T0);
	assert_rc(store_touch_release(st, tid), 0);
	assert_touch_state(st, tid, "pending");
	claim_one(st, tid, T0);
}

static void test_recover_requeues_queued_and_marks_sending_uncertain(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t q1 = schedule(st, lead, eid, "q1", 0, T0 - 3);
	int64_t q2 = schedule(st, lead, eid, "q2", 1, T0 - 2);
	int64_t s1 = schedule(st, lead, eid, "s1", 2, T0 - 1);
	int64_t sent = schedule(st, lead, eid, "sent", 3, T0 - 4);
	int64_t later = schedule(st, lead, eid, "later", 4, T0 + 100);
	int64_t ids[8];
	size_t n = 0;
	assert_rc(store_touch_claim(st, T0, 8, ids, &n), 0);
	assert_int_equal(n, 4);
	assert_rc(store_touch_sending(st, s1, "<s1@example.com>", T0), 0);
	assert_rc(store_touch_sending(st, sent, "<sent@example.com>", T0), 0);
	assert_rc(store_touch_sent(st, sent, T0), 0);

	int64_t requeued = -1, uncertain = -1;
	assert_rc(store_recover(st, &requeued, &uncertain), 0);
	assert_int_equal(requeued, 2);
	assert_int_equal(uncertain, 1);
	assert_touch_state(st, q1, "pending");
	assert_touch_state(st, q2, "pending");
	assert_touch_state(st, s1, "uncertain");
	assert_touch_state(st, sent, "sent");
	assert_touch_state(st, later, "pending");

	/* An uncertain touch is never claimed again by itself. */
	assert_rc(store_touch_claim(st, T0 + 86400, 8, ids, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(ids[i], s1);

	assert_rc(store_recover(st, &requeued, &uncertain), 0);
	assert_int_equal(requeued, 3);
	assert_int_equal(uncertain, 0);
}

struct touch_walk {
	int n;
	char steps[8][32];
};

static int collect_touch(void *arg, const struct touch *t)
{
	struct touch_walk *w = arg;
	if (w->n < 8)
		snprintf(w->steps[w->n], sizeof(w->steps[0]), "%s", t->step);
	w->n++;
	return 0;
}

static void test_touches_are_walked_in_the_order_they_were_scheduled(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	schedule(st, lead, eid, "first", 0, T0 + 500);
	schedule(st, lead, eid, "second", 1, T0 + 100);
	int64_t other = add_lead(st, "sam@example.org");
	schedule(st, other, start_enrolment(st, other, "basics"), "theirs", 0, T0);

	struct touch_walk w = { 0 };
	assert_rc(store_touches_for_lead(st, lead, collect_touch, &w), 0);
	assert_int_equal(w.n, 2);
	assert_string_equal(w.steps[0], "first");
	assert_string_equal(w.steps[1], "second");
}

static void test_exit_active_skips_pending_touches_and_ends_the_enrolment(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t sent = schedule(st, lead, eid, "a", 0, T0);
	int64_t pending = schedule(st, lead, eid, "b", 1, T0 + 3 * 86400);
	claim_one(st, sent, T0);
	assert_rc(store_touch_sending(st, sent, "<a@example.com>", T0), 0);
	assert_rc(store_touch_sent(st, sent, T0), 0);
	int64_t other = add_lead(st, "sam@example.org");
	int64_t theirs = schedule(st, other, start_enrolment(st, other, "basics"), "a", 0, T0);

	assert_rc(store_enrolment_exit_active(st, lead, "stage changed", T0 + 10), 0);

	struct touch t;
	assert_rc(store_touch_get(st, pending, &t), 0);
	assert_string_equal(t.state, "skipped");
	assert_string_equal(t.last_error, "stage changed");
	store_touch_clear(&t);
	assert_touch_state(st, sent, "sent");
	assert_touch_state(st, theirs, "pending");
	/* The enrolment is over: ending it again finds nothing, a new one may start. */
	assert_rc(store_enrolment_end(st, eid, "completed", T0 + 11), DRIP_ENOT_FOUND);
	start_enrolment(st, lead, "playbook");

	/* A lead without an active enrolment: nothing to do, no error. */
	int64_t idle = add_lead(st, "idle@example.org");
	assert_rc(store_enrolment_exit_active(st, idle, "stage changed", T0), 0);
}

/* ---- events --------------------------------------------------------------------------- */

static void test_events_are_walked_oldest_first_with_their_detail(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t tid = schedule(st, lead, eid, "welcome", 0, T0);
	int64_t other = add_lead(st, "sam@example.org");

	assert_rc(store_event_add(st, lead, tid, "sent", T0 + 20,
				  "{\"message_id\":\"<a@example.com>\"}"),
		  0);
	assert_rc(store_event_add(st, lead, 0, "stage", T0 + 10, "{\"to\":\"awareness\"}"), 0);
	assert_rc(store_event_add(st, lead, tid, "open", T0 + 20, NULL), 0);
	assert_rc(store_event_add(st, other, 0, "stage", T0, "{}"), 0);

	struct testutil_events w;
	testutil_events_of(st, lead, &w);
	assert_int_equal(w.n, 3);
	assert_string_equal(w.kind[0], "stage");
	assert_int_equal(w.at[0], T0 + 10);
	assert_int_equal(w.touch[0], 0);
	assert_string_equal(w.detail[0], "{\"to\":\"awareness\"}");
	/* Same time: in the order they were recorded. */
	assert_string_equal(w.kind[1], "sent");
	assert_int_equal(w.touch[1], tid);
	assert_string_equal(w.detail[1], "{\"message_id\":\"<a@example.com>\"}");
	assert_string_equal(w.kind[2], "open");
	assert_string_equal(w.detail[2], "{}");

	struct testutil_events first = { .stop_after = 1 };
	assert_rc(store_events_for_lead(st, lead, testutil_collect_event, &first), 0);
	assert_int_equal(first.n, 1);
	assert_string_equal(first.kind[0], "stage");
}

struct heard {
	int n;
	int64_t id[4];
	char kind[4][16];
};

static void hear(void *arg, const struct store_event *ev)
{
	struct heard *h = arg;
	if (h->n < 4) {
		h->id[h->n] = ev->id;
		snprintf(h->kind[h->n], sizeof(h->kind[0]), "%s", ev->kind);
	}
	h->n++;
}

static void test_event_listeners_hear_each_recorded_event_until_they_leave(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	struct heard a = { 0 }, b = { 0 };
	assert_rc(store_event_listen(st, hear, &a), 0);
	assert_rc(store_event_listen(st, hear, &b), 0);
	assert_rc(store_event_add(st, lead, 0, "open", T0, NULL), 0);
	/* A refused event is not heard. */
	assert_rc(store_event_add(st, lead, 0, "stage", T0, "{oops"), DRIP_EINVALID);
	store_event_unlisten(st, hear, &b);
	assert_rc(store_event_add(st, lead, 0, "click", T0, NULL), 0);
	assert_int_equal(a.n, 2);
	assert_int_equal(b.n, 1);
	assert_string_equal(a.kind[0], "open");
	assert_string_equal(a.kind[1], "click");
	assert_true(a.id[1] > a.id[0]);
	assert_int_equal(b.id[0], a.id[0]);

	struct heard more[STORE_MAX_LISTENERS];
	int taken = 1; /* a is still listening */
	while (taken < STORE_MAX_LISTENERS)
		assert_rc(store_event_listen(st, hear, &more[taken++]), 0);
	assert_rc(store_event_listen(st, hear, &b), DRIP_EBUSY);
}

static void test_event_with_invalid_json_detail_is_refused(void **state)
{
	struct store *st = *state;
	int64_t lead = add_lead(st, "maya@example.org");
	assert_rc(store_event_add(st, lead, 0, "stage", T0, "{oops"), DRIP_EINVALID);
	struct testutil_events w;
	testutil_events_of(st, lead, &w);
	assert_int_equal(w.n, 0);
}

/* ---- status, settings, transactions --------------------------------------------------- */

static void test_status_counts_leads_enrolments_and_touches_by_state(void **state)
{
	struct store *st = *state;
	struct store_status s;
	memset(&s, 0xff, sizeof(s));
	assert_rc(store_status(st, &s), 0);
	assert_int_equal(s.leads, 0);
	assert_int_equal(s.active_enrolments, 0);
	assert_int_equal(s.pending, 0);
	assert_int_equal(s.next_due, 0);

	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	int64_t a = schedule(st, lead, eid, "a", 0, T0 - 5);
	int64_t b = schedule(st, lead, eid, "b", 1, T0 - 4);
	int64_t c = schedule(st, lead, eid, "c", 2, T0 - 3);
	int64_t d = schedule(st, lead, eid, "d", 3, T0 - 2);
	int64_t e = schedule(st, lead, eid, "e", 4, T0 - 1);
	schedule(st, lead, eid, "f", 5, T0 + 50);
	schedule(st, lead, eid, "g", 6, T0 + 40);
	add_lead(st, "sam@example.org");

	int64_t ids[8];
	size_t n = 0;
	int64_t rq = -1, unc = -1;
	/* a: sent, b: failed, c: sending then uncertain after a recovery */
	assert_rc(store_touch_claim(st, T0, 3, ids, &n), 0);
	assert_int_equal(n, 3);
	assert_rc(store_touch_sending(st, a, "<a@x.example>", T0), 0);
	assert_rc(store_touch_sent(st, a, T0), 0);
	assert_rc(store_touch_finish(st, b, "failed", "550", T0), 0);
	assert_rc(store_touch_sending(st, c, "<c@x.example>", T0), 0);
	assert_rc(store_recover(st, &rq, &unc), 0);
	assert_int_equal(rq, 0);
	assert_int_equal(unc, 1);
	/* d: sending, e: queued */
	assert_rc(store_touch_claim(st, T0, 2, ids, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], d);
	assert_int_equal(ids[1], e);
	assert_rc(store_touch_sending(st, d, "<d@x.example>", T0), 0);

	assert_rc(store_status(st, &s), 0);
	assert_int_equal(s.leads, 2);
	assert_int_equal(s.active_enrolments, 1);
	assert_int_equal(s.pending, 2);
	assert_int_equal(s.queued, 1);
	assert_int_equal(s.sending, 1);
	assert_int_equal(s.sent, 1);
	assert_int_equal(s.failed, 1);
	assert_int_equal(s.uncertain, 1);
	assert_int_equal(s.next_due, T0 + 40);
}

static void test_settings_are_read_back_and_overwritten(void **state)
{
	struct store *st = *state;
	int64_t v = 7;
	assert_rc(store_setting_get(st, "clock_offset", &v), DRIP_ENOT_FOUND);
	assert_int_equal(v, 7);
	assert_rc(store_setting_set(st, "clock_offset", 86400), 0);
	assert_rc(store_setting_get(st, "clock_offset", &v), 0);
	assert_int_equal(v, 86400);
	assert_rc(store_setting_set(st, "clock_offset", -5), 0);
	assert_rc(store_setting_get(st, "clock_offset", &v), 0);
	assert_int_equal(v, -5);
	assert_rc(store_setting_get(st, "other", &v), DRIP_ENOT_FOUND);
}

static void test_an_undone_part_keeps_the_rest_of_the_transaction(void **state)
{
	struct store *st = *state;
	struct store_status s;
	assert_rc(store_begin(st), 0);
	add_lead(st, "kept@example.org");
	assert_rc(store_part_begin(st), 0);
	add_lead(st, "undone@example.org");
	assert_rc(store_part_end(st, false), 0);
	assert_rc(store_part_begin(st), 0);
	add_lead(st, "also-kept@example.org");
	assert_rc(store_part_end(st, true), 0);
	assert_rc(store_commit(st), 0);

	struct lead l;
	assert_rc(store_lead_by_email(st, "undone@example.org", &l), DRIP_ENOT_FOUND);
	assert_rc(store_lead_by_email(st, "kept@example.org", &l), 0);
	store_lead_clear(&l);
	assert_rc(store_lead_by_email(st, "also-kept@example.org", &l), 0);
	store_lead_clear(&l);
	assert_rc(store_status(st, &s), 0);
	assert_int_equal(s.leads, 2);
}

static void test_rolled_back_transaction_leaves_nothing(void **state)
{
	struct store *st = *state;
	assert_rc(store_begin(st), 0);
	int64_t lead = add_lead(st, "maya@example.org");
	int64_t eid = start_enrolment(st, lead, "basics");
	schedule(st, lead, eid, "welcome", 0, T0);
	assert_rc(store_event_add(st, lead, 0, "stage", T0, "{}"), 0);
	assert_rc(store_setting_set(st, "clock_offset", 9), 0);
	store_rollback(st);

	struct store_status s;
	assert_rc(store_status(st, &s), 0);
	assert_int_equal(s.leads, 0);
	assert_int_equal(s.active_enrolments, 0);
	assert_int_equal(s.pending, 0);
	struct lead l;
	assert_rc(store_lead_by_email(st, "maya@example.org", &l), DRIP_ENOT_FOUND);
	int64_t v;
	assert_rc(store_setting_get(st, "clock_offset", &v), DRIP_ENOT_FOUND);
	struct testutil_events w;
	testutil_events_of(st, lead, &w);
	assert_int_equal(w.n, 0);

	/* A rollback with no transaction open is harmless, and commit keeps what it wrote. */
	store_rollback(st);
	assert_rc(store_begin(st), 0);
	add_lead(st, "sam@example.org");
	assert_rc(store_commit(st), 0);
	assert_rc(store_status(st, &s), 0);
	assert_int_equal(s.leads, 1);
}

struct steps_sum {
	int64_t sent, opened, clicked, replied;
};

static void steps_sum_cb(void *arg, const struct store_step_stats *row)
{
	struct steps_sum *t = arg;
	t->sent += row->sent;
	t->opened += row->opened;
	t->clicked += row->clicked;
	t->replied += row->replied;
}

static void test_retention_folds_events_and_keeps_step_stats(void **state)
{
	struct store *st = *state;
	int64_t tids[5];
	for (int i = 0; i < 5; i++) {
		char email[32], mid[32];
		snprintf(email, sizeof(email), "r%d@example.org", i);
		snprintf(mid, sizeof(mid), "<r%d@example.com>", i);
		tids[i] = one_touch(st, email, T0);
		claim_one(st, tids[i], T0);
		assert_rc(store_touch_sending(st, tids[i], mid, T0), 0);
		assert_rc(store_touch_sent(st, tids[i], T0 + i * 86400), 0);
	}
	struct touch t;
	for (int i = 0; i < 3; i++) {
		assert_rc(store_touch_get(st, tids[i], &t), 0);
		assert_rc(store_event_add(st, t.lead_id, tids[i], "click", T0 + 10, "{}"), 0);
		assert_rc(store_event_add(st, t.lead_id, tids[i], "click", T0 + 11, "{}"), 0);
		if (i == 0)
			assert_rc(store_event_add(st, t.lead_id, tids[i], "reply", T0 + 12, "{}"),
				  0);
		store_touch_clear(&t);
	}
	struct steps_sum before = { 0 }, after = { 0 };
	assert_rc(store_stats_steps(st, steps_sum_cb, &before), 0);
	assert_int_equal(before.sent, 5);
	assert_int_equal(before.clicked, 3);
	assert_int_equal(before.replied, 1);
	int64_t folded = 0, removed = 0, total_f = 0, total_r = 0, oldest = 0;
	/* Batches of two until nothing is left older than the cutoff. */
	do {
		assert_rc(store_retention_step(st, T0 + 30 * 86400, 2, &folded, &removed), 0);
		total_f += folded;
		total_r += removed;
	} while (folded == 2 || removed == 2);
	assert_int_equal(total_f, 5);
	assert_int_equal(total_r, 7);
	assert_rc(store_stats_steps(st, steps_sum_cb, &after), 0);
	assert_int_equal(after.sent, before.sent);
	assert_int_equal(after.opened, before.opened);
	assert_int_equal(after.clicked, before.clicked);
	assert_int_equal(after.replied, before.replied);
	assert_rc(store_retention_oldest(st, &oldest), 0);
	assert_int_equal(oldest, 0);
	/* Nothing older than a cutoff before every send: nothing happens. */
	assert_rc(store_retention_step(st, T0 - 1, 2, &folded, &removed), 0);
	assert_int_equal(folded + removed, 0);
}

static void test_signups_expire_and_consent_is_forgotten(void **state)
{
	struct store *st = *state;
	struct store_signup in = { .email = (char *)"s@example.org",
				   .first_name = (char *)"Sam",
				   .form = (char *)"news",
				   .consent = (char *)"v1",
				   .address = (char *)"192.0.2.1",
				   .at = T0,
				   .expires_at = T0 + 100 };
	int64_t id = 0, id2 = 0, removed = 0, next = 0;
	bool found = false;
	assert_rc(store_signup_add(st, &in, &id), 0);
	assert_rc(store_signup_pending(st, "s@example.org", T0, &found), 0);
	assert_true(found);
	assert_rc(store_signup_expire(st, T0 + 99, 10, &removed, &next), 0);
	assert_int_equal(removed, 0);
	assert_int_equal(next, T0 + 100);
	assert_rc(store_signup_expire(st, T0 + 100, 10, &removed, &next), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(next, 0);
	struct store_signup got;
	assert_rc(store_signup_get(st, id, &got), DRIP_ENOT_FOUND);
	/* Ids are never reused: an old confirm link cannot name a new signup. */
	assert_rc(store_signup_add(st, &in, &id2), 0);
	assert_true(id2 > id);
	int64_t lead = add_lead(st, "s@example.org");
	assert_rc(store_consent_set(st, lead, &in, "192.0.2.2", T0 + 5), 0);
	struct store_consent c;
	assert_rc(store_consent_get(st, lead, &c), 0);
	assert_string_equal(c.form, "news");
	assert_string_equal(c.confirm_address, "192.0.2.2");
	assert_int_equal(c.confirmed_at, T0 + 5);
	store_consent_clear(&c);
	assert_rc(store_signup_forget(st, lead, "s@example.org"), 0);
	assert_rc(store_consent_get(st, lead, &c), DRIP_ENOT_FOUND);
	assert_rc(store_signup_get(st, id2, &got), DRIP_ENOT_FOUND);
}

/* A lead whose one touch was sent at `sent_at` and whose enrolment ended then. */
static int64_t finished_lead(struct store *st, const char *email, int64_t sent_at)
{
	char mid[64];
	int64_t tid = one_touch(st, email, T0);
	struct touch t;
	snprintf(mid, sizeof(mid), "<%s>", email);
	claim_one(st, tid, T0);
	assert_rc(store_touch_sending(st, tid, mid, sent_at), 0);
	assert_rc(store_touch_sent(st, tid, sent_at), 0);
	assert_rc(store_touch_get(st, tid, &t), 0);
	assert_rc(store_enrolment_end(st, t.enrolment_id, "completed", sent_at), 0);
	int64_t lead = t.lead_id;
	store_touch_clear(&t);
	return lead;
}

static void funnel_sum_cb(void *arg, const char *stage, const char *status, int64_t n)
{
	char *out = arg;
	size_t len = strlen(out);
	snprintf(out + len, 512 - len, "%s/%s=%lld;", stage, status, (long long)n);
}

static void test_anonymise_erases_done_old_leads_and_keeps_counts_and_opt_outs(void **state)
{
	struct store *st = *state;
	struct store_anonymise_turn turn;
	struct store_status status;
	struct lead l;
	char reason[64], before[512] = "", after[512] = "";
	assert_rc(store_set_hash_key(st, "0123456789abcdef0123456789abcdef", 32), 0);
	int64_t done = finished_lead(st, "done@example.org", T0);
	int64_t out = finished_lead(st, "out@example.org", T0);
	assert_rc(store_suppress(st, "out@example.org", "unsubscribe", "journey", T0), 0);
	assert_rc(store_lead_set_status(st, out, "unsubscribed", T0), 0);
	int64_t busy = add_lead(st, "busy@example.org");
	schedule(st, busy, start_enrolment(st, busy, "basics"), "welcome", 0, T0 + 90 * 86400);
	int64_t recent = finished_lead(st, "recent@example.org", T0 + 40 * 86400);
	assert_rc(store_stats_funnel(st, funnel_sum_cb, before), 0);
	/* Batches of two leads looked at, until a batch is short. */
	int64_t after_id = 0, total = 0, next = 0;
	do {
		assert_rc(store_anonymise_step(st, after_id, T0 + 30 * 86400, 2, T0 + 60 * 86400,
					       &turn),
			  0);
		total += turn.anonymised;
		after_id = turn.last_id;
		if (turn.next_at)
			next = turn.next_at;
	} while (turn.seen == 2);
	assert_int_equal(total, 2);
	assert_int_equal(next, T0 + 40 * 86400); /* the recent one, when it comes of age */
	assert_rc(store_lead_by_id(st, done, &l), 0);
	assert_string_equal(l.email, "anonymised:1");
	assert_string_equal(l.first_name, "");
	assert_string_equal(l.status, "active");
	assert_string_equal(l.stage, "awareness");
	store_lead_clear(&l);
	assert_rc(store_lead_by_id(st, out, &l), 0);
	assert_string_equal(l.status, "unsubscribed");
	store_lead_clear(&l);
	assert_rc(store_lead_by_email(st, "busy@example.org", &l), 0);
	store_lead_clear(&l);
	assert_rc(store_lead_by_email(st, "recent@example.org", &l), 0);
	store_lead_clear(&l);
	assert_rc(store_lead_by_email(st, "done@example.org", &l), DRIP_ENOT_FOUND);
	/* The opt-out still wins, as a hash; the other address is free. */
	assert_rc(store_suppression_get(st, "out@example.org", NULL, NULL), DRIP_ENOT_FOUND);
	assert_rc(store_suppressed(st, "OUT@example.org", reason, sizeof(reason)), 0);
	assert_string_equal(reason, "unsubscribe");
	assert_rc(store_suppressed(st, "done@example.org", reason, sizeof(reason)),
		  DRIP_ENOT_FOUND);
	assert_rc(store_stats_funnel(st, funnel_sum_cb, after), 0);
	assert_string_equal(after, before);
	assert_rc(store_status(st, &status), 0);
	assert_int_equal(status.anonymised, 2);
	/* A second sweep finds nothing more to do. */
	assert_rc(store_anonymise_step(st, 0, T0 + 30 * 86400, 10, T0 + 61 * 86400, &turn), 0);
	assert_int_equal(turn.anonymised, 0);
	assert_int_equal(turn.seen, 4);
	(void)recent;
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERR);
#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, setup_store, teardown_store)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migration_sets_user_version_to_schema_version),
		cmocka_unit_test(test_reopening_a_migrated_database_is_a_no_op),
		cmocka_unit_test(test_counts_have_a_row_for_every_key_the_triggers_keep),
		cmocka_unit_test(test_a_transaction_sqlite_rolled_back_refuses_what_follows),
		cmocka_unit_test(test_database_file_runs_in_wal_mode),
		cmocka_unit_test_setup_teardown(test_status_counts_follow_every_change, setup_store,
						teardown_store),
		cmocka_unit_test(test_background_checkpoints_keep_the_wal_small),
		cmocka_unit_test(test_gathered_wal_writes_are_seen_by_other_connections),
		cmocka_unit_test(test_newer_schema_is_refused_with_a_clear_error),
		cmocka_unit_test(test_schema_writes_use_no_constant_in_lists),
		STORE_TEST(test_quick_suppression_check_matches_the_full_one),
		cmocka_unit_test(test_file_that_is_not_a_database_is_refused_not_recreated),
		STORE_TEST(test_lead_is_found_by_email_ignoring_case_and_by_id),
		STORE_TEST(test_lead_without_tags_or_attrs_gets_empty_json),
		STORE_TEST(test_duplicate_email_is_refused_as_exists),
		STORE_TEST(test_lead_with_invalid_json_tags_is_refused_as_invalid),
		STORE_TEST(test_lead_stage_is_set_and_unknown_lead_is_not_found),
		STORE_TEST(test_lead_has_at_most_one_active_enrolment),
		STORE_TEST(test_enrolment_end_only_ends_an_active_enrolment),
		STORE_TEST(test_enrolment_end_with_an_unknown_state_is_invalid),
		STORE_TEST(test_step_is_scheduled_at_most_once),
		STORE_TEST(test_touch_is_stored_with_its_schedule),
		STORE_TEST(test_touch_is_only_scheduled_in_the_leads_active_enrolment),
		STORE_TEST(
			test_touch_is_only_scheduled_in_the_active_enrolment_inside_a_transaction),
		STORE_TEST(test_touch_sending_with_its_note_in_one_write),
		STORE_TEST(test_next_due_is_not_found_when_nothing_is_pending),
		STORE_TEST(test_next_due_is_the_earliest_pending_touch),
		STORE_TEST(test_claim_takes_due_pending_touches_oldest_first_up_to_max),
		STORE_TEST(test_claimed_touches_are_not_claimed_again),
		STORE_TEST(test_claim_of_a_touch_due_at_exactly_now_takes_it),
		STORE_TEST(test_sending_only_from_queued),
		STORE_TEST(test_sent_only_from_sending),
		STORE_TEST(test_retention_folds_events_and_keeps_step_stats),
		STORE_TEST(test_signups_expire_and_consent_is_forgotten),
		STORE_TEST(test_anonymise_erases_done_old_leads_and_keeps_counts_and_opt_outs),
		STORE_TEST(test_same_message_id_cannot_be_given_to_two_touches),
		STORE_TEST(test_defer_returns_a_sending_touch_to_pending_later),
		STORE_TEST(test_finish_moves_an_unfinished_touch_to_a_final_state),
		STORE_TEST(test_finish_with_an_unknown_state_is_invalid),
		STORE_TEST(test_release_returns_a_queued_touch_to_pending),
		STORE_TEST(test_recover_requeues_queued_and_marks_sending_uncertain),
		STORE_TEST(test_touches_are_walked_in_the_order_they_were_scheduled),
		STORE_TEST(test_exit_active_skips_pending_touches_and_ends_the_enrolment),
		STORE_TEST(test_events_are_walked_oldest_first_with_their_detail),
		STORE_TEST(test_event_with_invalid_json_detail_is_refused),
		STORE_TEST(test_event_listeners_hear_each_recorded_event_until_they_leave),
		STORE_TEST(test_status_counts_leads_enrolments_and_touches_by_state),
		STORE_TEST(test_settings_are_read_back_and_overwritten),
		STORE_TEST(test_rolled_back_transaction_leaves_nothing),
		STORE_TEST(test_an_undone_part_keeps_the_rest_of_the_transaction),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
