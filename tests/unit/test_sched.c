/* test_sched.c - scheduler, mailer and journey together on a real libuv loop and a Maildir. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <uv.h>

#include "testutil.h"

#include "dripd/clock.h"
#include "dripd/config.h"
#include "dripd/content.h"
#include "dripd/control.h"
#include "dripd/dripd.h"
#include "dripd/error.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/mailer.h"
#include "dripd/sched.h"
#include "dripd/store.h"
#include "dripd/util.h"

#define WAIT_MS 2000 /* the longest a test waits for the sender threads */
#define DAY 86400

/* ---- helpers -------------------------------------------------------------------------- */

struct fixture {
	uv_loop_t loop;
	uv_prepare_t prepare;
	struct dripd d; /* loop, cfg, content, store, clock, mailer, sched: one of each */
	char dir[256]; /* the temp folder: dripd.db and mail/ */
	char *db;
	char *maildir;
	int results; /* outcomes handed back by the mailer */
	int tempfails;
	/* Called once from a prepare handle (after a dispatch, before its outcome is read)
	 * as soon as a job is with a sender thread. */
	void (*on_busy)(struct fixture *f);
	bool busy_seen;
	bool drained;
	size_t busy_at_drain;
	int results_at_drain;
	bool drained_at_once;
};

static void on_result(void *arg, const struct mailer_result *r)
{
	struct fixture *f = arg;
	f->results++;
	if (r->outcome == MAILER_TEMPFAIL)
		f->tempfails++;
	sched_on_result(f->d.sched, r);
}

static void prepare_cb(uv_prepare_t *h)
{
	struct fixture *f = h->data;
	if (f->on_busy && !f->busy_seen && mailer_busy(f->d.mailer) > 0) {
		f->busy_seen = true;
		f->on_busy(f);
	}
}

static int setup(void **state)
{
	char err[512] = "";
	struct fixture *f = xcalloc(1, sizeof(*f));
	testutil_mkdtemp(f->dir, sizeof(f->dir), "sched");
	f->db = xasprintf("%s/dripd.db", f->dir);
	f->maildir = xasprintf("%s/mail", f->dir);

	struct config *cfg = config_defaults();
	free(cfg->delivery.url);
	cfg->delivery.url = xasprintf("maildir:%s", f->maildir);
	free(cfg->delivery.from);
	cfg->delivery.from = xstrdup("Ana Ruiz <ana@example.com>");
	cfg->test_clock = true;
	/* A file rather than ":memory:" so the tests can look at rows the store API does not
	 * expose (enrolment states) and set a lead's status, through a second connection. */
	testutil_dripd_init(&f->d, cfg, f->db);

	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->d.loop = &f->loop;
	f->d.mailer = mailer_new(&f->loop, cfg, on_result, f, err, sizeof(err));
	if (!f->d.mailer)
		fail_msg("mailer_new: %s", err);
	f->d.sched = sched_new(&f->loop, cfg, f->d.store, &f->d.clock, f->d.mailer);
	sched_set_content(f->d.sched, f->d.content);
	uv_prepare_init(&f->loop, &f->prepare);
	f->prepare.data = f;
	uv_prepare_start(&f->prepare, prepare_cb);
	*state = f;
	return 0;
}

static void drained_cb(void *arg)
{
	struct fixture *f = arg;
	f->drained = true;
}

static void run_for(struct fixture *f, uint64_t ms)
{
	uint64_t end = clock_mono_ms() + ms;
	while (clock_mono_ms() < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	uint64_t end = clock_mono_ms() + WAIT_MS;
	/* As main.c does at SIGTERM: drain, close the scheduler, then the mailer. */
	sched_drain(f->d.sched, drained_cb, f);
	while (!f->drained && clock_mono_ms() < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
	assert_true(f->drained);
	assert_int_equal(mailer_busy(f->d.mailer), 0);
	sched_close(f->d.sched);
	mailer_close(f->d.mailer);
	uv_close((uv_handle_t *)&f->prepare, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0); /* no handle left behind */

	testutil_dripd_fini(&f->d);
	testutil_rmtree(f->dir);
	free(f->db);
	free(f->maildir);
	free(f);
	return 0;
}

/* Files in a folder of the Maildir ("new" or "tmp"); -1 if it cannot be read. */
static int count_files(struct fixture *f, const char *sub)
{
	char *path = xasprintf("%s/%s", f->maildir, sub);
	DIR *dir = opendir(path);
	int n = 0;
	free(path);
	if (!dir)
		return -1;
	for (struct dirent *e; (e = readdir(dir));)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

/* Every message in new/, one after the other. */
static char *read_new(struct fixture *f)
{
	struct buf all;
	char *path = xasprintf("%s/new", f->maildir);
	DIR *dir = opendir(path);
	assert_non_null(dir);
	buf_init(&all);
	buf_adds(&all, "");
	for (struct dirent *e; (e = readdir(dir));) {
		if (e->d_name[0] == '.')
			continue;
		char *file = xasprintf("%s/%s", path, e->d_name);
		size_t n;
		char *text = testutil_read_file_len(file, &n);
		buf_add(&all, text, n);
		free(text);
		free(file);
	}
	closedir(dir);
	free(path);
	return buf_steal(&all);
}

/* Runs the loop until `n` outcomes came back and the pass after them ran; false on timeout. */
static bool wait_results(struct fixture *f, int n)
{
	uint64_t end = clock_mono_ms() + WAIT_MS;
	while (f->results < n) {
		if (clock_mono_ms() > end)
			return false;
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
	run_for(f, 30);
	return true;
}

static char *touch_state(struct fixture *f, int64_t id)
{
	struct touch t;
	assert_rc(store_touch_get(f->d.store, id, &t), 0);
	char *s = xstrdup(t.state);
	store_touch_clear(&t);
	return s;
}

static bool wait_touch_state(struct fixture *f, int64_t id, const char *state)
{
	uint64_t end = clock_mono_ms() + WAIT_MS;
	for (;;) {
		char *s = touch_state(f, id);
		bool done = strcmp(s, state) == 0;
		free(s);
		if (done)
			break;
		if (clock_mono_ms() > end)
			return false;
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
	run_for(f, 30);
	return true;
}

static void assert_touch_state(struct fixture *f, int64_t id, const char *state)
{
	char *s = touch_state(f, id);
	assert_string_equal(s, state);
	free(s);
}

/* The first column of the first row of `sql` through a second connection to the file. */
static char *query_text(struct fixture *f, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 2000);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	int rc = sqlite3_step(s);
	char *out = xstrdup(rc == SQLITE_ROW && sqlite3_column_text(s, 0)
				    ? (const char *)sqlite3_column_text(s, 0)
				    : "");
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return out;
}

static void assert_query(struct fixture *f, const char *sql, const char *want)
{
	char *got = query_text(f, sql);
	assert_string_equal(got, want);
	free(got);
}

/* Adds a lead through the control protocol, which kicks the scheduler; returns its id. */
static int64_t add_lead(struct fixture *f, const char *email, const char *extra)
{
	char *line = xasprintf("{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"%s\","
			       "\"first_name\":\"Maya\"%s%s}}",
			       email, extra ? "," : "", extra ? extra : "");
	char *out = control_handle_line(&f->d, line);
	cJSON *a = cJSON_Parse(out);
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "ok")))
		fail_msg("lead.add failed: %s", out);
	const cJSON *lead = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(a, "result"), "lead");
	int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(lead, "id")->valuedouble;
	cJSON_Delete(a);
	free(out);
	free(line);
	return id;
}

/* Adds a lead through the store and the journey in one transaction, without a kick. */
static int64_t add_lead_quietly(struct fixture *f, const char *email)
{
	char err[256] = "";
	int64_t now = clock_now(&f->d.clock);
	struct lead l = { .email = (char *)email,
			  .first_name = (char *)"Sam",
			  .stage = (char *)"awareness" };
	assert_rc(store_begin(f->d.store), 0);
	assert_rc(store_lead_insert(f->d.store, &l, now), 0);
	if (journey_enter_stage(f->d.store, f->d.content, &l, "awareness", NULL, now, err,
				sizeof(err)) != 0)
		fail_msg("journey_enter_stage: %s", err);
	assert_rc(store_commit(f->d.store), 0);
	return l.id;
}

/* The string `key` of an event's detail JSON ("" when absent). */
static char *detail_str(const char *detail, const char *key)
{
	cJSON *o = cJSON_Parse(detail);
	assert_non_null(o);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	char *s = xstrdup(cJSON_IsString(v) ? v->valuestring : "");
	cJSON_Delete(o);
	return s;
}

static void assert_detail(const char *detail, const char *key, const char *want)
{
	char *got = detail_str(detail, key);
	assert_string_equal(got, want);
	free(got);
}

static void count_timer_cb(uv_handle_t *h, void *arg)
{
	if (h->type == UV_TIMER && uv_is_active(h))
		(*(int *)arg)++;
}

/* Timers armed on the loop: the scheduler's is the only timer there is. */
static int active_timers(struct fixture *f)
{
	int n = 0;
	uv_walk(&f->loop, count_timer_cb, &n);
	return n;
}

static void advance(struct fixture *f, int64_t secs)
{
	assert_rc(clock_advance(&f->d.clock, secs, clock_mono_ms()), 0);
	sched_kick(f->d.sched);
}

/* ---- delivery ------------------------------------------------------------------------- */

static void test_first_step_is_delivered_and_recorded_as_sent(void **state)
{
	struct fixture *f = *state;
	int64_t lead = add_lead(f, "maya@example.org", NULL);
	int64_t before = clock_now(&f->d.clock);
	assert_true(wait_results(f, 1));
	int64_t after = clock_now(&f->d.clock);
	assert_int_equal(f->tempfails, 0);
	assert_int_equal(count_files(f, "new"), 1);
	assert_int_equal(count_files(f, "tmp"), 0);

	struct testutil_touches w;
	testutil_touches_of(f->d.store, lead, &w);
	assert_int_equal(w.n, 2);
	const struct touch *first = &w.t[0], *second = &w.t[1];
	assert_string_equal(first->step, "welcome");
	assert_string_equal(first->state, "sent");
	assert_in_range(first->sent_at, before, after);
	assert_int_equal(first->attempts, 1);
	assert_true(strlen(first->message_id) > 2);
	assert_string_equal(second->sequence, "awareness-basics");
	assert_string_equal(second->step, "two-jobs");
	assert_int_equal(second->step_index, 1);
	assert_string_equal(second->state, "pending");
	assert_int_equal(second->due_at, first->sent_at + 3 * DAY);

	/* The file is the message the touch records: its Message-ID, to the lead, from Ana. */
	char *msg = read_new(f);
	assert_non_null(strstr(msg, first->message_id));
	assert_non_null(strstr(msg, "maya@example.org"));
	assert_non_null(strstr(msg, "ana@example.com"));
	assert_non_null(strstr(msg, "Subject: "));
	free(msg);

	struct testutil_events ev;
	testutil_events_of(f->d.store, lead, &ev);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.kind[0], "stage");
	assert_string_equal(ev.kind[1], "sent");
	assert_int_equal(ev.touch[1], first->id);
	assert_detail(ev.detail[1], "message_id", first->message_id);
	assert_detail(ev.detail[1], "sequence", "awareness-basics");
	assert_detail(ev.detail[1], "step", "welcome");

	/* Asleep until the next step is due, on the one timer. */
	assert_int_equal(sched_next_wake(f->d.sched), second->due_at);
	assert_int_equal(active_timers(f), 1);
	testutil_touches_clear(&w);
}

static void test_next_step_is_delivered_after_its_delay_and_not_before(void **state)
{
	struct fixture *f = *state;
	int64_t lead = add_lead(f, "maya@example.org", NULL);
	assert_true(wait_results(f, 1));

	advance(f, 3 * DAY - 120);
	run_for(f, 100);
	assert_int_equal(f->results, 1);
	assert_int_equal(count_files(f, "new"), 1);

	advance(f, 120);
	assert_true(wait_results(f, 2));
	assert_int_equal(count_files(f, "new"), 2);
	struct testutil_touches w;
	testutil_touches_of(f->d.store, lead, &w);
	assert_int_equal(w.n, 3);
	assert_string_equal(w.t[1].step, "two-jobs");
	assert_string_equal(w.t[1].state, "sent");
	assert_string_equal(w.t[2].step, "healthy-or-thin");
	assert_string_equal(w.t[2].state, "pending");
	assert_int_equal(w.t[2].due_at, w.t[1].sent_at + 4 * DAY);
	testutil_touches_clear(&w);
}

static void test_whole_sequence_completes_the_enrolment(void **state)
{
	struct fixture *f = *state;
	int64_t lead = add_lead(f, "maya@example.org", NULL);
	const struct content_sequence *seq = content_sequence(f->d.content, "awareness-basics");
	const struct content_sequence *next =
		content_sequence(f->d.content, "consideration-playbook");
	assert_non_null(seq);
	assert_non_null(next);
	assert_int_equal(seq->nsteps, 4);
	assert_true(wait_results(f, 1));
	for (size_t i = 1; i < seq->nsteps; i++) {
		advance(f, seq->steps[i].delay);
		assert_true(wait_results(f, (int)i + 1));
	}
	/* The sample journey's "finished" rule moves the lead on to consideration, whose first
	 * step is due at once. */
	assert_true(wait_results(f, 5));
	assert_int_equal(f->tempfails, 0);
	assert_int_equal(count_files(f, "new"), 5);

	struct testutil_touches w;
	testutil_touches_of(f->d.store, lead, &w);
	assert_int_equal(w.n, 6);
	for (int i = 0; i < 4; i++) {
		assert_string_equal(w.t[i].sequence, "awareness-basics");
		assert_string_equal(w.t[i].step, seq->steps[i].id);
		assert_string_equal(w.t[i].state, "sent");
	}
	assert_string_equal(w.t[4].step, next->steps[0].id);
	assert_string_equal(w.t[4].state, "sent");
	assert_string_equal(w.t[5].step, next->steps[1].id);
	assert_string_equal(w.t[5].state, "pending");
	testutil_touches_clear(&w);
	struct store_status s;
	assert_rc(store_status(f->d.store, &s), 0);
	assert_int_equal(s.sent, 5);
	assert_int_equal(s.pending, 1);
	assert_int_equal(s.queued, 0);
	assert_int_equal(s.sending, 0);
	assert_int_equal(s.active_enrolments, 1);
	assert_query(f, "SELECT group_concat(sequence || ':' || state) FROM enrolments",
		     "awareness-basics:completed,consideration-playbook:active");
	assert_query(f, "SELECT stage FROM leads", "consideration");

	/* Asleep until the next step of the new sequence. */
	assert_true(sched_next_wake(f->d.sched) > 0);
	assert_int_equal(active_timers(f), 1);
}

static void test_scheduler_is_idle_with_nothing_due(void **state)
{
	struct fixture *f = *state;
	sched_kick(f->d.sched);
	run_for(f, 50);
	assert_int_equal(sched_next_wake(f->d.sched), 0);
	assert_int_equal(active_timers(f), 0);

	/* A lead in a stage without a sequence gives the scheduler nothing to wait for. */
	add_lead(f, "ceo@example.org", "\"stage\":\"customer\"");
	run_for(f, 50);
	assert_int_equal(f->results, 0);
	assert_int_equal(sched_next_wake(f->d.sched), 0);
	assert_int_equal(active_timers(f), 0);
	struct store_status s;
	assert_rc(store_status(f->d.store, &s), 0);
	assert_int_equal(s.pending, 0);
	assert_int_equal(s.queued, 0);
	assert_int_equal(count_files(f, "new"), 0);
}

/* ---- touches that are not sent -------------------------------------------------------- */

static void test_step_missing_from_the_content_fails_with_an_error_event(void **state)
{
	struct fixture *f = *state;
	int64_t now = clock_now(&f->d.clock);
	struct lead l = { .email = (char *)"maya@example.org", .stage = (char *)"awareness" };
	int64_t eid = 0, tid = 0;
	assert_rc(store_lead_insert(f->d.store, &l, now), 0);
	assert_rc(store_enrolment_start(f->d.store, l.id, "gone", "awareness", now, &eid), 0);
	assert_rc(store_touch_schedule(f->d.store, l.id, eid, "gone", "x", 0, now, now, &tid), 0);
	sched_kick(f->d.sched);

	assert_true(wait_touch_state(f, tid, "failed"));
	assert_int_equal(f->results, 0);
	assert_int_equal(count_files(f, "new"), 0);
	struct touch t;
	assert_rc(store_touch_get(f->d.store, tid, &t), 0);
	assert_non_null(strstr(t.last_error, "gone/x"));
	assert_string_equal(t.message_id, "");
	assert_int_equal(t.attempts, 0);
	store_touch_clear(&t);

	struct testutil_events ev;
	testutil_events_of(f->d.store, l.id, &ev);
	assert_int_equal(ev.n, 1);
	assert_string_equal(ev.kind[0], "error");
	assert_int_equal(ev.touch[0], tid);
	assert_detail(ev.detail[0], "sequence", "gone");
	assert_detail(ev.detail[0], "step", "x");
	char *reason = detail_str(ev.detail[0], "reason");
	assert_non_null(strstr(reason, "gone/x"));
	free(reason);
	assert_query(f, "SELECT state FROM enrolments", "exited");
	assert_int_equal(sched_next_wake(f->d.sched), 0);
}

static void test_a_paused_lead_waits_and_goes_on_when_resumed(void **state)
{
	struct fixture *f = *state;
	int64_t lead = add_lead_quietly(f, "pat@example.org");
	assert_rc(store_lead_set_status(f->d.store, lead, "paused", clock_now(&f->d.clock)), 0);
	sched_kick(f->d.sched);
	/* Its touch is due, but neither claimed nor counted as due: the scheduler sleeps. */
	for (int i = 0; i < 20; i++)
		uv_run(f->d.loop, UV_RUN_NOWAIT);
	assert_int_equal(count_files(f, "new"), 0);
	assert_int_equal(sched_next_wake(f->d.sched), 0);
	struct store_status st;
	assert_rc(store_status(f->d.store, &st), 0);
	assert_int_equal(st.pending, 1);
	assert_rc(store_lead_set_status(f->d.store, lead, "active", clock_now(&f->d.clock)), 0);
	sched_kick(f->d.sched);
	assert_true(wait_results(f, 1));
	assert_int_equal(count_files(f, "new"), 1);
}

static void test_a_global_pause_holds_everything_until_resumed(void **state)
{
	struct fixture *f = *state;
	sched_set_paused(f->d.sched, true);
	add_lead_quietly(f, "one@example.org");
	sched_kick(f->d.sched);
	for (int i = 0; i < 20; i++)
		uv_run(f->d.loop, UV_RUN_NOWAIT);
	assert_int_equal(count_files(f, "new"), 0);
	assert_true(sched_paused(f->d.sched));
	sched_set_paused(f->d.sched, false);
	assert_true(wait_results(f, 1));
	assert_int_equal(count_files(f, "new"), 1);
}

static void test_lead_that_is_not_active_is_skipped(void **state)
{
	struct fixture *f = *state;
	int64_t lead = add_lead_quietly(f, "sam@example.org");
	char *sql =
		xasprintf("UPDATE leads SET status = 'handoff' WHERE id = %lld RETURNING status",
			  (long long)lead);
	assert_query(f, sql, "handoff");
	free(sql);
	struct testutil_touches w;
	testutil_touches_of(f->d.store, lead, &w);
	assert_int_equal(w.n, 1);
	int64_t tid = w.t[0].id;
	testutil_touches_clear(&w);

	sched_kick(f->d.sched);
	assert_true(wait_touch_state(f, tid, "skipped"));
	assert_int_equal(f->results, 0);
	assert_int_equal(count_files(f, "new"), 0);
	struct testutil_events ev;
	testutil_events_of(f->d.store, lead, &ev);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.kind[1], "error");
	assert_detail(ev.detail[1], "reason", "lead is handoff");
	/* A skipped touch does not schedule the next step. */
	testutil_touches_of(f->d.store, lead, &w);
	assert_int_equal(w.n, 1);
	testutil_touches_clear(&w);
}

static void test_tempfail_defers_the_touch_and_it_is_sent_when_due_again(void **state)
{
	struct fixture *f = *state;
	/* new/ becomes a plain file: the rename into it fails, as a full disk would. */
	char *new_dir = xasprintf("%s/new", f->maildir);
	assert_int_equal(rmdir(new_dir), 0);
	testutil_write_file(new_dir, "");

	int64_t lead = add_lead(f, "maya@example.org", NULL);
	int64_t before = clock_now(&f->d.clock);
	assert_true(wait_results(f, 1));
	int64_t after = clock_now(&f->d.clock);
	assert_int_equal(f->tempfails, 1);
	assert_int_equal(count_files(f, "tmp"), 0); /* the half-delivered copy was removed */

	struct testutil_touches w;
	testutil_touches_of(f->d.store, lead, &w);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.t[0].state, "pending");
	assert_int_equal(w.t[0].attempts, 1);
	assert_int_equal(w.t[0].sent_at, 0);
	assert_in_range(w.t[0].due_at, before + 600, after + 600);
	assert_non_null(strstr(w.t[0].last_error, "maildir"));
	int64_t due = w.t[0].due_at;
	testutil_touches_clear(&w);
	struct testutil_events ev;
	testutil_events_of(f->d.store, lead, &ev);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.kind[1], "deferred");
	char *reason = detail_str(ev.detail[1], "reason");
	assert_non_null(strstr(reason, "maildir"));
	free(reason);
	assert_int_equal(sched_next_wake(f->d.sched), due);

	/* The disk recovers; at the retry time the touch goes out, once. */
	assert_int_equal(unlink(new_dir), 0);
	assert_int_equal(mkdir(new_dir, 0700), 0);
	free(new_dir);
	advance(f, 600);
	assert_true(wait_results(f, 2));
	assert_int_equal(f->tempfails, 1);
	assert_int_equal(count_files(f, "new"), 1);
	testutil_touches_of(f->d.store, lead, &w);
	assert_int_equal(w.n, 2);
	assert_string_equal(w.t[0].state, "sent");
	assert_int_equal(w.t[0].attempts, 2);
	testutil_touches_clear(&w);
}

/* ---- draining ------------------------------------------------------------------------- */

static void drain_when_busy(struct fixture *f)
{
	f->busy_at_drain = mailer_busy(f->d.mailer);
	f->results_at_drain = f->results;
	sched_drain(f->d.sched, drained_cb, f);
	f->drained_at_once = f->drained;
}

static void test_drain_calls_back_only_after_in_flight_jobs_come_back(void **state)
{
	struct fixture *f = *state;
	f->on_busy = drain_when_busy;
	int64_t lead = add_lead(f, "maya@example.org", NULL);
	uint64_t end = clock_mono_ms() + WAIT_MS;
	while (!f->busy_seen && clock_mono_ms() < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(200);
	}
	assert_true(f->busy_seen);
	/* At the drain a job was with a sender thread, and sched_drain did not call back. */
	assert_int_equal(f->busy_at_drain, 1);
	assert_int_equal(f->results_at_drain, 0);
	assert_false(f->drained_at_once);

	end = clock_mono_ms() + WAIT_MS;
	while (!f->drained && clock_mono_ms() < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(500);
	}
	assert_true(f->drained);
	assert_int_equal(f->results, 1);
	assert_int_equal(mailer_busy(f->d.mailer), 0);
	/* The outcome was recorded before the callback. */
	struct testutil_touches w;
	testutil_touches_of(f->d.store, lead, &w);
	assert_string_equal(w.t[0].state, "sent");
	testutil_touches_clear(&w);

	/* Drained means no more dispatching, even for work that is due. */
	int64_t other = add_lead(f, "sam@example.org", NULL);
	run_for(f, 100);
	assert_int_equal(f->results, 1);
	assert_int_equal(count_files(f, "new"), 1);
	testutil_touches_of(f->d.store, other, &w);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.t[0].state, "pending");
	testutil_touches_clear(&w);
}

static void test_drain_with_nothing_in_flight_calls_back_at_once(void **state)
{
	struct fixture *f = *state;
	sched_drain(f->d.sched, drained_cb, f);
	assert_true(f->drained);
}

/* ---- a stage change while a step is in flight ----------------------------------------- */

/* Moves maya@example.org to `stage` through the journey, in one transaction, no kick. */
static void move_maya_to(struct fixture *f, const char *stage)
{
	char err[256] = "";
	struct lead l;
	int64_t now = clock_now(&f->d.clock);
	assert_rc(store_lead_by_email(f->d.store, "maya@example.org", &l), 0);
	assert_rc(store_begin(f->d.store), 0);
	if (journey_enter_stage(f->d.store, f->d.content, &l, stage, NULL, now, err, sizeof(err)) !=
	    0)
		fail_msg("journey_enter_stage: %s", err);
	assert_rc(store_commit(f->d.store), 0);
	store_lead_clear(&l);
}

static void move_to_consideration(struct fixture *f)
{
	move_maya_to(f, "consideration");
	sched_kick(f->d.sched);
}

static void test_step_in_flight_at_a_stage_change_schedules_nothing_more_of_the_old_sequence(
	void **state)
{
	struct fixture *f = *state;
	f->on_busy = move_to_consideration;
	int64_t lead = add_lead(f, "maya@example.org", NULL);
	/* The awareness welcome, then the consideration sequence's first step. */
	assert_true(wait_results(f, 2));
	assert_true(f->busy_seen);
	assert_int_equal(count_files(f, "new"), 2);

	struct testutil_touches w;
	testutil_touches_of(f->d.store, lead, &w);
	int pending = 0;
	for (int i = 0; i < w.n && i < 8; i++) {
		if (strcmp(w.t[i].state, "pending") != 0)
			continue;
		pending++;
		assert_string_equal(w.t[i].sequence, "consideration-playbook");
	}
	assert_int_equal(pending, 1);
	assert_int_equal(w.n, 3); /* welcome, nine-attempts (both sent), six-moments */
	assert_string_equal(w.t[0].step, "welcome");
	assert_string_equal(w.t[0].state, "sent");
	testutil_touches_clear(&w);
	assert_query(f,
		     "SELECT group_concat(sequence || ':' || state, ' ') FROM "
		     "(SELECT * FROM enrolments ORDER BY id)",
		     "awareness-basics:exited consideration-playbook:active");
}

static void move_to_customer(struct fixture *f)
{
	move_maya_to(f, "customer");
}

static void test_last_step_in_flight_at_a_stage_change_is_still_recorded_as_sent(void **state)
{
	struct fixture *f = *state;
	int64_t now = clock_now(&f->d.clock);
	struct lead l = { .email = (char *)"maya@example.org", .stage = (char *)"decision" };
	int64_t eid = 0, tid = 0;
	assert_rc(store_lead_insert(f->d.store, &l, now), 0);
	assert_rc(store_enrolment_start(f->d.store, l.id, "decision-next-step", "decision", now,
					&eid),
		  0);
	assert_rc(store_touch_schedule(f->d.store, l.id, eid, "decision-next-step", "last-note", 2,
				       now, now, &tid),
		  0);
	f->on_busy = move_to_customer;
	sched_kick(f->d.sched);
	assert_true(wait_results(f, 1));
	assert_true(f->busy_seen);
	assert_int_equal(count_files(f, "new"), 1);
	/* Delivered, so "sent" — never left "sending" to become "uncertain" at a restart. */
	assert_touch_state(f, tid, "sent");
	struct testutil_events ev;
	testutil_events_of(f->d.store, l.id, &ev);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.kind[0], "stage");
	assert_string_equal(ev.kind[1], "sent");
	assert_query(f, "SELECT state FROM enrolments", "exited");
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERR);
#define SCHED_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		SCHED_TEST(test_first_step_is_delivered_and_recorded_as_sent),
		SCHED_TEST(test_next_step_is_delivered_after_its_delay_and_not_before),
		SCHED_TEST(test_whole_sequence_completes_the_enrolment),
		SCHED_TEST(test_scheduler_is_idle_with_nothing_due),
		SCHED_TEST(test_step_missing_from_the_content_fails_with_an_error_event),
		SCHED_TEST(test_lead_that_is_not_active_is_skipped),
		SCHED_TEST(test_a_paused_lead_waits_and_goes_on_when_resumed),
		SCHED_TEST(test_a_global_pause_holds_everything_until_resumed),
		SCHED_TEST(test_tempfail_defers_the_touch_and_it_is_sent_when_due_again),
		SCHED_TEST(test_drain_calls_back_only_after_in_flight_jobs_come_back),
		SCHED_TEST(test_drain_with_nothing_in_flight_calls_back_at_once),
		SCHED_TEST(
			test_step_in_flight_at_a_stage_change_schedules_nothing_more_of_the_old_sequence),
		SCHED_TEST(test_last_step_in_flight_at_a_stage_change_is_still_recorded_as_sent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
