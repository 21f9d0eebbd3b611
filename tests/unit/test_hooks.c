/* test_hooks.c - webhook signing, backoff, routing and the durable outbox on a real loop. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <uv.h>

#include "testutil.h"

#include "dripd/error.h"
#include "dripd/hooks.h"
#include "dripd/store.h"
#include "dripd/util.h"

static void test_the_signature_is_hmac_sha256_of_timestamp_dot_body(void **state)
{
	(void)state;
	char sig[HOOKS_SIGNATURE_MAX];
	const char *body = "{\"a\":1}";
	/* Python: hmac.new(b"0123456789abcdef0123", b'1700000000.{"a":1}', sha256) */
	hooks_sign("0123456789abcdef0123", 20, 1700000000, body, strlen(body), sig);
	assert_string_equal(sig,
			    "t=1700000000,v1="
			    "34e41bd41c08899dd901e050eca2824e8dfecfe16d4778add8a6f330817db525");
	/* Another timestamp or one byte more of body: another signature. */
	char other[HOOKS_SIGNATURE_MAX];
	hooks_sign("0123456789abcdef0123", 20, 1700000001, body, strlen(body), other);
	assert_string_not_equal(sig + 16, other + 16);
}

static void test_backoff_doubles_from_min_and_stops_at_max(void **state)
{
	(void)state;
	assert_int_equal(hooks_backoff(1, 30, 3600), 30);
	assert_int_equal(hooks_backoff(2, 30, 3600), 60);
	assert_int_equal(hooks_backoff(5, 30, 3600), 480);
	assert_int_equal(hooks_backoff(8, 30, 3600), 3600);
	assert_int_equal(hooks_backoff(1000000, 30, 3600), 3600);
	assert_int_equal(hooks_backoff(0, 30, 3600), 30);
}

static void test_a_webhook_gets_only_the_kinds_it_lists(void **state)
{
	(void)state;
	char *kinds[] = { "reply", "handoff" };
	struct config_webhook all = { .url = "http://x.example/" };
	struct config_webhook some = { .url = "http://x.example/", .events = kinds, .nevents = 2 };
	assert_true(hooks_wants(&all, "open"));
	assert_true(hooks_wants(&some, "handoff"));
	assert_false(hooks_wants(&some, "open"));
	char *star[] = { "*" };
	struct config_webhook any = { .url = "http://x.example/", .events = star, .nevents = 1 };
	assert_true(hooks_wants(&any, "failed"));
}

/* ---- the outbox on a real loop, against a port where nothing listens ------------------ */

struct fixture {
	uv_loop_t loop;
	struct store *st;
	struct config *cfg;
	struct clock clk;
	int64_t lead;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct lead l = { .email = "maya@example.org",
			  .stage = "awareness",
			  .tags = "[]",
			  .attrs = "{}",
			  .first_name = "",
			  .last_name = "",
			  .company = "",
			  .title = "",
			  .tz = "" };
	uv_loop_init(&f->loop);
	f->st = testutil_store_open(":memory:");
	assert_rc(store_lead_insert(f->st, &l, 1000), 0);
	f->lead = l.id;
	f->cfg = config_defaults();
	f->cfg->nwebhooks = 1;
	f->cfg->webhooks = xcalloc(1, sizeof(*f->cfg->webhooks));
	struct config_webhook *w = &f->cfg->webhooks[0];
	/* Port 1 on loopback: the connection is refused at once. */
	w->url = xstrdup("http://127.0.0.1:1/hook");
	w->secret_file = xstrdup("");
	w->events = xcalloc(2, sizeof(char *));
	w->events[w->nevents++] = xstrdup("reply");
	w->events[w->nevents++] = xstrdup("error");
	w->timeout = 5;
	w->concurrency = 2;
	w->retry_min = 60;
	w->retry_max = 600;
	w->give_up = 3600;
	clock_init(&f->clk, true, 1.0, 0, clock_wall_ms(), clock_mono_ms());
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->st);
	config_free(f->cfg);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

static void counts(struct fixture *f, int64_t *waiting, int64_t *retrying)
{
	assert_rc(store_hook_count(f->st, waiting, retrying), 0);
}

/* Runs the loop until the outbox has `retrying` failed rows, for at most ~5 s. */
static void run_until_retrying(struct fixture *f, int64_t want)
{
	int64_t waiting = 0, retrying = 0;
	uint64_t until = clock_mono_ms() + 5000;
	while (clock_mono_ms() < until) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		counts(f, &waiting, &retrying);
		if (retrying == want)
			return;
		uv_sleep(5);
	}
	fail_msg("expected %lld retrying deliveries, have %lld", (long long)want,
		 (long long)retrying);
}

static void test_events_are_queued_once_retried_and_given_up_as_an_error(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	int64_t waiting, retrying;
	/* History from before the hooks existed is not sent. */
	assert_rc(store_event_add(f->st, f->lead, 0, "reply", clock_now(&f->clk), "{}"), 0);
	struct hooks *h = hooks_new(&f->loop, f->cfg, f->st, &f->clk, err, sizeof(err));
	assert_non_null(h);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	counts(f, &waiting, &retrying);
	assert_int_equal(waiting, 0);

	/* A kind it does not list: nothing. One it lists: one row, tried, failed, kept. */
	assert_rc(store_event_add(f->st, f->lead, 0, "open", clock_now(&f->clk), "{}"), 0);
	assert_rc(store_event_add(f->st, f->lead, 0, "reply", clock_now(&f->clk),
				  "{\"subject\":\"Re: hi\"}"),
		  0);
	run_until_retrying(f, 1);
	counts(f, &waiting, &retrying);
	assert_int_equal(waiting, 1);

	/* Past the give-up age the row goes and an error event says why. */
	assert_rc(clock_advance(&f->clk, 7200, clock_mono_ms()), 0);
	hooks_kick(h);
	uint64_t until = clock_mono_ms() + 5000;
	do {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		counts(f, &waiting, &retrying);
		uv_sleep(5);
	} while (waiting && clock_mono_ms() < until);
	/* The error event of this webhook's own give-up is not sent to it again. */
	for (int i = 0; i < 20; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		uv_sleep(5);
	}
	counts(f, &waiting, &retrying);
	assert_int_equal(waiting, 0);
	struct testutil_events ev;
	testutil_events_of(f->st, f->lead, &ev);
	assert_int_equal(ev.n, 4);
	assert_string_equal(ev.kind[3], "error");
	assert_contains(ev.detail[3], "\"reason\":\"webhook gave up\"");
	assert_contains(ev.detail[3], "\"webhook\":\"http://127.0.0.1:1/hook\"");
	assert_contains(ev.detail[3], "\"event_kind\":\"reply\"");

	cJSON *status = cJSON_CreateObject();
	assert_rc(hooks_status(h, status), 0);
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(status, "webhooks");
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "waiting")->valueint, 0);
	cJSON_Delete(status);
	hooks_close(h);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void test_a_restart_resumes_from_the_cursor_without_repeats(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	int64_t waiting, retrying;
	struct hooks *h = hooks_new(&f->loop, f->cfg, f->st, &f->clk, err, sizeof(err));
	assert_non_null(h);
	hooks_close(h); /* stopped: events recorded now wait in the events table */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_rc(store_event_add(f->st, f->lead, 0, "reply", clock_now(&f->clk), "{}"), 0);
	assert_rc(store_event_add(f->st, f->lead, 0, "reply", clock_now(&f->clk), "{}"), 0);
	h = hooks_new(&f->loop, f->cfg, f->st, &f->clk, err, sizeof(err));
	assert_non_null(h);
	run_until_retrying(f, 2);
	hooks_close(h);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	/* A third start queues nothing new: the cursor moved with the rows. */
	h = hooks_new(&f->loop, f->cfg, f->st, &f->clk, err, sizeof(err));
	for (int i = 0; i < 10; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	counts(f, &waiting, &retrying);
	assert_int_equal(waiting, 2);
	hooks_close(h);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void test_a_bad_secret_file_is_refused_with_its_name(void **state)
{
	struct fixture *f = *state;
	char dir[256], path[300], err[512] = "";
	testutil_mkdtemp(dir, sizeof(dir), "hooks");
	snprintf(path, sizeof(path), "%s/secret", dir);
	testutil_write_file(path, "short\n");
	free(f->cfg->webhooks[0].secret_file);
	f->cfg->webhooks[0].secret_file = xstrdup(path);
	assert_null(hooks_new(&f->loop, f->cfg, f->st, &f->clk, err, sizeof(err)));
	assert_contains(err, path);
	assert_contains(err, ":1: a webhook secret needs at least 16 bytes");
	testutil_write_file(path, "\n\n");
	assert_null(hooks_new(&f->loop, f->cfg, f->st, &f->clk, err, sizeof(err)));
	assert_contains(err, "no secret in the file");
	testutil_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_signature_is_hmac_sha256_of_timestamp_dot_body),
		cmocka_unit_test(test_backoff_doubles_from_min_and_stops_at_max),
		cmocka_unit_test(test_a_webhook_gets_only_the_kinds_it_lists),
		cmocka_unit_test_setup_teardown(
			test_events_are_queued_once_retried_and_given_up_as_an_error, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_a_restart_resumes_from_the_cursor_without_repeats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_bad_secret_file_is_refused_with_its_name,
						setup, teardown),
	};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
