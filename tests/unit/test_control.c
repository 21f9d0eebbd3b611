/* test_control.c - the control protocol: control_handle_line, the command table, line framing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#include "dripd/clock.h"
#include "dripd/config.h"
#include "dripd/content.h"
#include "dripd/control.h"
#include "dripd/dripd.h"
#include "dripd/error.h"
#include "dripd/log.h"
#include "dripd/proto.h"
#include "dripd/store.h"
#include "dripd/util.h"

/* ---- helpers -------------------------------------------------------------------------- */

/* A struct dripd on ":memory:" with the default config and the sample content. */
static int setup_dripd(void **state)
{
	struct dripd *d = xcalloc(1, sizeof(*d));
	testutil_dripd_init(d, config_defaults(), ":memory:");
	d->started_mono_ms = clock_mono_ms();
	d->started_at = clock_now(&d->clock);
	d->sched = NULL; /* handlers skip the kick */
	*state = d;
	return 0;
}

static int teardown_dripd(void **state)
{
	struct dripd *d = *state;
	testutil_dripd_fini(d);
	free(d);
	return 0;
}

/* Sends one request line; returns the parsed answer after checking it is one JSON line. */
static cJSON *ask(struct dripd *d, const char *line)
{
	char *out = control_handle_line(d, line);
	assert_non_null(out);
	size_t len = strlen(out);
	assert_true(len > 1);
	assert_int_equal(out[len - 1], '\n');
	assert_null(memchr(out, '\n', len - 1));
	cJSON *a = cJSON_Parse(out);
	if (!a)
		fail_msg("answer is not JSON: %s", out);
	free(out);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, "v");
	assert_true(cJSON_IsNumber(v));
	assert_int_equal(v->valueint, PROTO_VERSION);
	return a;
}

static const cJSON *item(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v)
		fail_msg("no \"%s\" in %s", key, o && o->string ? o->string : "object");
	return v;
}

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = item(o, key);
	if (!cJSON_IsString(v))
		fail_msg("\"%s\" is not a string", key);
	return v->valuestring;
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = item(o, key);
	if (!cJSON_IsNumber(v))
		fail_msg("\"%s\" is not a number", key);
	return v->valuedouble;
}

/* The result of an ok answer (fails the test with the error otherwise). */
static const cJSON *ok_result(const cJSON *a)
{
	const cJSON *ok = item(a, "ok");
	if (!cJSON_IsTrue(ok)) {
		char *s = cJSON_PrintUnformatted(a);
		fail_msg("expected ok, got %s", s);
	}
	return item(a, "result");
}

/* Checks an error answer's code and that it carries a message. */
static void assert_error(const cJSON *a, const char *code)
{
	assert_true(cJSON_IsFalse(item(a, "ok")));
	assert_null(cJSON_GetObjectItemCaseSensitive(a, "result"));
	const cJSON *e = item(a, "error");
	assert_string_equal(str(e, "code"), code);
	assert_true(strlen(str(e, "message")) > 0);
}

static void assert_error_line(struct dripd *d, const char *line, const char *code)
{
	cJSON *a = ask(d, line);
	assert_error(a, code);
	cJSON_Delete(a);
}

static const char *error_message(const cJSON *a)
{
	return str(item(a, "error"), "message");
}

static struct store_status status_of(struct dripd *d)
{
	struct store_status s;
	assert_rc(store_status(d->store, &s), 0);
	return s;
}

/* Whether nothing at all is in the database, after a refused lead.add. */
static void assert_nothing_stored(struct dripd *d)
{
	struct store_status s = status_of(d);
	assert_int_equal(s.leads, 0);
	assert_int_equal(s.active_enrolments, 0);
	assert_int_equal(s.pending, 0);
}

#define ADD_MAYA "{\"v\":1,\"id\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\"}}"

/* ---- the envelope --------------------------------------------------------------------- */

static void test_malformed_line_is_a_protocol_error(void **state)
{
	struct dripd *d = *state;
	assert_error_line(d, "{\"v\":1,\"cmd\":", "protocol");
	assert_error_line(d, "not json at all", "protocol");
	assert_error_line(d, "[1,2,3]", "protocol");
	assert_error_line(d, "\"lead.add\"", "protocol");
	assert_error_line(d, "", "protocol");
}

static void test_wrong_protocol_version_is_a_protocol_error(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":2,\"id\":3,\"cmd\":\"status\"}");
	assert_error(a, "protocol");
	assert_non_null(strstr(error_message(a), "\"v\": 1"));
	cJSON_Delete(a);
	assert_error_line(d, "{\"id\":3,\"cmd\":\"status\"}", "protocol");
	assert_error_line(d, "{\"v\":\"1\",\"cmd\":\"status\"}", "protocol");
}

static void test_request_without_cmd_is_a_protocol_error(void **state)
{
	struct dripd *d = *state;
	assert_error_line(d, "{\"v\":1,\"id\":3}", "protocol");
	assert_error_line(d, "{\"v\":1,\"cmd\":7}", "protocol");
}

static void test_args_that_are_not_an_object_are_a_protocol_error(void **state)
{
	struct dripd *d = *state;
	assert_error_line(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":[\"maya@example.org\"]}",
			  "protocol");
	assert_nothing_stored(d);
}

static void test_unknown_command_is_unknown_command(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"id\":4,\"cmd\":\"lead.frobnicate\"}");
	assert_error(a, "unknown_command");
	assert_non_null(strstr(error_message(a), "lead.frobnicate"));
	cJSON_Delete(a);
}

static void test_request_id_is_echoed_as_sent(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"id\":42,\"cmd\":\"help\"}");
	assert_int_equal(num(a, "id"), 42);
	ok_result(a);
	cJSON_Delete(a);

	a = ask(d, "{\"v\":1,\"id\":\"req-7\",\"cmd\":\"help\"}");
	assert_string_equal(str(a, "id"), "req-7");
	cJSON_Delete(a);

	/* Echoed on errors too, and absent when the request had none. */
	a = ask(d, "{\"v\":9,\"id\":\"late\",\"cmd\":\"help\"}");
	assert_string_equal(str(a, "id"), "late");
	assert_error(a, "protocol");
	cJSON_Delete(a);

	a = ask(d, "{\"v\":1,\"cmd\":\"help\"}");
	assert_null(cJSON_GetObjectItemCaseSensitive(a, "id"));
	cJSON_Delete(a);
}

/* ---- status --------------------------------------------------------------------------- */

static void test_status_reports_leads_touches_clock_and_content(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, ADD_MAYA);
	ok_result(a);
	cJSON_Delete(a);

	a = ask(d, "{\"v\":1,\"id\":2,\"cmd\":\"status\"}");
	const cJSON *r = ok_result(a);
	assert_string_equal(str(r, "version"), DRIPD_VERSION);
	assert_true(num(r, "pid") > 0);
	assert_true(cJSON_IsTrue(item(r, "test_clock")));
	assert_int_equal(num(r, "clock_rate"), 1);
	assert_int_equal(num(r, "leads"), 1);
	assert_int_equal(num(r, "active_enrolments"), 1);
	const cJSON *t = item(r, "touches");
	assert_int_equal(num(t, "pending"), 1);
	assert_int_equal(num(t, "queued"), 0);
	assert_int_equal(num(t, "sending"), 0);
	assert_int_equal(num(t, "sent"), 0);
	assert_int_equal(num(t, "failed"), 0);
	assert_int_equal(num(t, "uncertain"), 0);
	assert_true(cJSON_IsString(item(r, "next_due")));
	assert_int_equal(strlen(str(r, "now")), strlen("2026-11-23T10:00:00Z"));
	assert_string_equal(str(r, "delivery"), d->cfg->delivery.url);
	const cJSON *c = item(r, "content");
	assert_string_equal(str(c, "dir"), d->content->dir);
	assert_int_equal(num(c, "sequences"), d->content->nseqs);
	const cJSON *stages = item(c, "stages");
	assert_int_equal(cJSON_GetArraySize(stages), 4);
	assert_string_equal(cJSON_GetArrayItem(stages, 0)->valuestring, "awareness");
	assert_string_equal(cJSON_GetArrayItem(stages, 3)->valuestring, "customer");
	cJSON_Delete(a);
}

static void test_status_with_nothing_pending_has_no_next_due(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"status\"}");
	const cJSON *r = ok_result(a);
	assert_int_equal(num(r, "leads"), 0);
	assert_true(cJSON_IsNull(item(r, "next_due")));
	cJSON_Delete(a);
}

/* ---- lead.add ------------------------------------------------------------------------- */

static void test_lead_add_returns_the_lead_and_schedules_its_first_touch_now(void **state)
{
	struct dripd *d = *state;
	int64_t before = clock_now(&d->clock);
	cJSON *a = ask(d, "{\"v\":1,\"id\":1,\"cmd\":\"lead.add\",\"args\":{"
			  "\"email\":\"maya@example.org\",\"first_name\":\"Maya\","
			  "\"last_name\":\"Ortiz\",\"company\":\"Acme\",\"title\":\"VP Sales\","
			  "\"tz\":\"Europe/Madrid\"}}");
	int64_t after = clock_now(&d->clock);
	const cJSON *r = ok_result(a);
	const cJSON *l = item(r, "lead");
	assert_true(num(l, "id") > 0);
	assert_string_equal(str(l, "email"), "maya@example.org");
	assert_string_equal(str(l, "first_name"), "Maya");
	assert_string_equal(str(l, "last_name"), "Ortiz");
	assert_string_equal(str(l, "company"), "Acme");
	assert_string_equal(str(l, "title"), "VP Sales");
	assert_string_equal(str(l, "tz"), "Europe/Madrid");
	assert_string_equal(str(l, "stage"), "awareness"); /* the journey's first stage */
	assert_string_equal(str(l, "status"), "active");
	assert_int_equal(num(l, "score"), 0);
	assert_int_equal(cJSON_GetArraySize(item(l, "tags")), 0);
	assert_true(cJSON_IsString(item(l, "created_at")));
	int64_t id = (int64_t)num(l, "id");
	cJSON_Delete(a);

	struct lead stored;
	assert_rc(store_lead_by_email(d->store, "maya@example.org", &stored), 0);
	assert_int_equal(stored.id, id);
	assert_string_equal(stored.stage, "awareness");
	store_lead_clear(&stored);

	struct testutil_touches w;
	testutil_touches_of(d->store, id, &w);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.t[0].sequence, "awareness-basics");
	assert_string_equal(w.t[0].step, "welcome");
	assert_int_equal(w.t[0].step_index, 0);
	assert_string_equal(w.t[0].state, "pending");
	assert_in_range(w.t[0].due_at, before, after);
	testutil_touches_clear(&w);

	struct store_status s = status_of(d);
	assert_int_equal(s.leads, 1);
	assert_int_equal(s.active_enrolments, 1);
	assert_int_equal(s.pending, 1);
	int64_t due = 0;
	assert_rc(store_touch_next_due(d->store, &due), 0);
	assert_in_range(due, before, after);
}

static void test_lead_add_keeps_tags_once_and_attrs(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"sam@example.org\","
			  "\"tags\":[\"webinar\",\"vip\",\"webinar\"],"
			  "\"attrs\":{\"source\":\"trade fair\",\"team_size\":\"12\"}}}");
	const cJSON *l = item(ok_result(a), "lead");
	const cJSON *tags = item(l, "tags");
	assert_int_equal(cJSON_GetArraySize(tags), 2);
	assert_string_equal(cJSON_GetArrayItem(tags, 0)->valuestring, "webinar");
	assert_string_equal(cJSON_GetArrayItem(tags, 1)->valuestring, "vip");
	const cJSON *attrs = item(l, "attrs");
	assert_string_equal(str(attrs, "source"), "trade fair");
	assert_string_equal(str(attrs, "team_size"), "12");
	cJSON_Delete(a);

	struct lead stored;
	assert_rc(store_lead_by_email(d->store, "sam@example.org", &stored), 0);
	assert_string_equal(stored.tags, "[\"webinar\",\"vip\"]");
	assert_string_equal(stored.attrs, "{\"source\":\"trade fair\",\"team_size\":\"12\"}");
	store_lead_clear(&stored);
}

static void test_lead_add_in_a_stage_enrols_in_that_stages_sequence(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"sam@example.org\","
			  "\"stage\":\"decision\"}}");
	const cJSON *l = item(ok_result(a), "lead");
	assert_string_equal(str(l, "stage"), "decision");
	int64_t id = (int64_t)num(l, "id");
	cJSON_Delete(a);
	struct testutil_touches w;
	testutil_touches_of(d->store, id, &w);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.t[0].sequence, "decision-next-step");
	assert_string_equal(w.t[0].step, "pipeline-review");
	testutil_touches_clear(&w);
}

static void test_lead_add_with_a_sequence_enrols_in_that_sequence(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"sam@example.org\","
			  "\"sequence\":\"consideration-playbook\"}}");
	const cJSON *l = item(ok_result(a), "lead");
	/* A sequence given without a stage puts the lead in that sequence's stage. */
	assert_string_equal(str(l, "stage"), "consideration");
	int64_t id = (int64_t)num(l, "id");
	cJSON_Delete(a);
	struct testutil_touches w;
	testutil_touches_of(d->store, id, &w);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.t[0].sequence, "consideration-playbook");
	assert_string_equal(w.t[0].step, "nine-attempts");
	testutil_touches_clear(&w);
	/* A sequence of another stage than the one asked for is refused, and nothing added. */
	a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"kim@example.org\","
		   "\"stage\":\"awareness\",\"sequence\":\"consideration-playbook\"}}");
	assert_error(a, "invalid");
	cJSON_Delete(a);
	assert_int_equal(status_of(d).leads, 1);
}

static void test_lead_add_in_a_stage_without_sequence_schedules_nothing(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"sam@example.org\","
			  "\"stage\":\"customer\"}}");
	assert_string_equal(str(item(ok_result(a), "lead"), "stage"), "customer");
	cJSON_Delete(a);
	struct store_status s = status_of(d);
	assert_int_equal(s.leads, 1);
	assert_int_equal(s.active_enrolments, 0);
	assert_int_equal(s.pending, 0);
}

static void test_lead_add_without_email_is_invalid(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"first_name\":\"Maya\"}}");
	assert_error(a, "invalid");
	assert_non_null(strstr(error_message(a), "EMAIL"));
	cJSON_Delete(a);
	assert_error_line(d, "{\"v\":1,\"cmd\":\"lead.add\"}", "invalid");
	assert_nothing_stored(d);
}

static void test_lead_add_with_a_bad_email_is_invalid(void **state)
{
	struct dripd *d = *state;
	static const char *const bad[] = {
		"maya",
		"maya@",
		"@example.org",
		"maya@example",
		"ma ya@example.org",
		"maya@@example.org",
		"<maya@example.org>",
		"maya@example.org.",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *line = xasprintf("{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"%s\"}}",
				       bad[i]);
		cJSON *a = ask(d, line);
		assert_error(a, "invalid");
		assert_non_null(strstr(error_message(a), bad[i]));
		cJSON_Delete(a);
		free(line);
	}
	assert_nothing_stored(d);
}

static void test_lead_add_with_an_unknown_stage_is_invalid(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"stage\":\"evangelist\"}}");
	assert_error(a, "invalid");
	assert_non_null(strstr(error_message(a), "evangelist"));
	cJSON_Delete(a);
	assert_nothing_stored(d);
}

static void test_lead_add_with_an_unknown_time_zone_is_invalid(void **state)
{
	struct dripd *d = *state;
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"tz\":\"Mars/Olympus_Mons\"}}",
			  "invalid");
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"tz\":\"../../etc/passwd\"}}",
			  "invalid");
	assert_nothing_stored(d);
}

static void test_lead_add_with_an_unknown_sequence_is_not_found(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"sequence\":\"no-such-sequence\"}}");
	assert_error(a, "not_found");
	assert_non_null(strstr(error_message(a), "no-such-sequence"));
	cJSON_Delete(a);
	assert_nothing_stored(d);
}

static void test_lead_add_of_a_known_address_is_exists_and_changes_nothing(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, ADD_MAYA);
	int64_t id = (int64_t)num(item(ok_result(a), "lead"), "id");
	cJSON_Delete(a);
	struct store_status before = status_of(d);

	a = ask(d, "{\"v\":1,\"id\":2,\"cmd\":\"lead.add\",\"args\":{"
		   "\"email\":\"MAYA@example.org\",\"first_name\":\"Other\","
		   "\"stage\":\"decision\"}}");
	assert_error(a, "exists");
	assert_int_equal(num(a, "id"), 2);
	cJSON_Delete(a);

	struct store_status after = status_of(d);
	assert_int_equal(after.leads, before.leads);
	assert_int_equal(after.active_enrolments, before.active_enrolments);
	assert_int_equal(after.pending, before.pending);
	struct lead l;
	assert_rc(store_lead_by_id(d->store, id, &l), 0);
	assert_string_equal(l.first_name, "");
	assert_string_equal(l.stage, "awareness");
	store_lead_clear(&l);
	struct testutil_touches w;
	testutil_touches_of(d->store, id, &w);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.t[0].sequence, "awareness-basics");
	testutil_touches_clear(&w);
}

static void test_lead_add_with_an_unknown_argument_is_invalid(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"nickname\":\"M\"}}");
	assert_error(a, "invalid");
	assert_non_null(strstr(error_message(a), "nickname"));
	cJSON_Delete(a);
	assert_nothing_stored(d);
}

static void test_lead_add_with_a_wrong_argument_type_is_invalid(void **state)
{
	struct dripd *d = *state;
	assert_error_line(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":42}}", "invalid");
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"tags\":\"vip\"}}",
			  "invalid");
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"tags\":[\"vip\",3]}}",
			  "invalid");
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"attrs\":{\"size\":12}}}",
			  "invalid");
	assert_nothing_stored(d);
}

static void test_lead_add_with_a_control_character_in_a_name_is_invalid(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"first_name\":\"Maya\\r\\nBcc: x@evil.example\"}}");
	assert_error(a, "invalid");
	assert_non_null(strstr(error_message(a), "first_name"));
	cJSON_Delete(a);
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"company\":\"Acme\\u007f\"}}",
			  "invalid");
	assert_nothing_stored(d);
}

static void test_lead_add_with_a_bad_tag_or_attribute_name_is_invalid(void **state)
{
	struct dripd *d = *state;
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"tags\":[\"two words\"]}}",
			  "invalid");
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"tags\":[\"\"]}}",
			  "invalid");
	assert_error_line(d,
			  "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"attrs\":{\"Team Size\":\"12\"}}}",
			  "invalid");
	assert_nothing_stored(d);
}

/* ---- lead.show ------------------------------------------------------------------------ */

static void test_lead_show_returns_the_lead_its_touches_and_its_stage_event(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"lead.add\",\"args\":{\"email\":\"maya@example.org\","
			  "\"first_name\":\"Maya\",\"tags\":[\"vip\"]}}");
	ok_result(a);
	cJSON_Delete(a);

	a = ask(d, "{\"v\":1,\"cmd\":\"lead.show\",\"args\":{\"email\":\"Maya@Example.org\"}}");
	const cJSON *r = ok_result(a);
	const cJSON *l = item(r, "lead");
	assert_string_equal(str(l, "email"), "maya@example.org");
	assert_string_equal(str(l, "first_name"), "Maya");
	assert_string_equal(cJSON_GetArrayItem(item(l, "tags"), 0)->valuestring, "vip");

	const cJSON *touches = item(r, "touches");
	assert_int_equal(cJSON_GetArraySize(touches), 1);
	const cJSON *t = cJSON_GetArrayItem(touches, 0);
	assert_string_equal(str(t, "sequence"), "awareness-basics");
	assert_string_equal(str(t, "step"), "welcome");
	assert_string_equal(str(t, "state"), "pending");
	assert_true(cJSON_IsString(item(t, "due_at")));
	assert_true(cJSON_IsNull(item(t, "sent_at")));
	assert_int_equal(num(t, "attempts"), 0);
	assert_null(cJSON_GetObjectItemCaseSensitive(t, "message_id"));

	const cJSON *events = item(r, "events");
	assert_int_equal(cJSON_GetArraySize(events), 1);
	const cJSON *ev = cJSON_GetArrayItem(events, 0);
	assert_string_equal(str(ev, "kind"), "stage");
	assert_true(cJSON_IsString(item(ev, "at")));
	const cJSON *detail = item(ev, "detail");
	assert_string_equal(str(detail, "to"), "awareness");
	assert_string_equal(str(detail, "sequence"), "awareness-basics");
	assert_null(cJSON_GetObjectItemCaseSensitive(detail, "from"));
	cJSON_Delete(a);
}

static void test_lead_show_of_an_unknown_lead_is_not_found(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask(
		d, "{\"v\":1,\"cmd\":\"lead.show\",\"args\":{\"email\":\"nobody@example.org\"}}");
	assert_error(a, "not_found");
	assert_non_null(strstr(error_message(a), "nobody@example.org"));
	cJSON_Delete(a);
	assert_error_line(d, "{\"v\":1,\"cmd\":\"lead.show\",\"args\":{}}", "invalid");
}

/* ---- clock.advance -------------------------------------------------------------------- */

static void test_clock_advance_moves_business_time_by_the_duration(void **state)
{
	struct dripd *d = *state;
	int64_t before = clock_now(&d->clock);
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"clock.advance\",\"args\":{\"duration\":\"3d\"}}");
	int64_t after = clock_now(&d->clock);
	const cJSON *r = ok_result(a);
	assert_int_equal(num(r, "advanced_s"), 3 * 86400);
	assert_true(cJSON_IsString(item(r, "now")));
	cJSON_Delete(a);
	/* Three days on, give or take the second or two this test took. */
	assert_in_range(after - before, 3 * 86400, 3 * 86400 + 2);

	/* The offset is saved so a restart resumes the same business time. */
	int64_t off = 0;
	assert_rc(store_setting_get(d->store, DRIPD_CLOCK_SETTING, &off), 0);
	assert_in_range(off, 3 * 86400 - 2, 3 * 86400 + 2);
}

static void test_clock_advance_with_a_bad_duration_is_invalid(void **state)
{
	struct dripd *d = *state;
	int64_t before = clock_now(&d->clock);
	static const char *const bad[] = { "3 days", "-1d", "d", "3x", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *line = xasprintf(
			"{\"v\":1,\"cmd\":\"clock.advance\",\"args\":{\"duration\":\"%s\"}}",
			bad[i]);
		assert_error_line(d, line, "invalid");
		free(line);
	}
	assert_error_line(d, "{\"v\":1,\"cmd\":\"clock.advance\"}", "invalid");
	assert_in_range(clock_now(&d->clock) - before, 0, 2);
	int64_t off;
	assert_rc(store_setting_get(d->store, DRIPD_CLOCK_SETTING, &off), DRIP_ENOT_FOUND);
}

static void test_clock_advance_without_the_test_clock_is_disabled(void **state)
{
	struct dripd *d = *state;
	clock_init(&d->clock, false, 1.0, 0, clock_wall_ms(), clock_mono_ms());
	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"clock.advance\",\"args\":{\"duration\":\"3d\"}}");
	assert_error(a, "disabled");
	assert_non_null(strstr(error_message(a), "test_clock"));
	cJSON_Delete(a);
	int64_t wall = clock_wall_ms() / 1000;
	assert_in_range(clock_now(&d->clock), wall - 2, wall + 2);
}

/* ---- help and usage ------------------------------------------------------------------- */

static void test_help_lists_every_command_of_the_table(void **state)
{
	struct dripd *d = *state;
	size_t ncmds = 0;
	while (control_cmds[ncmds].name)
		ncmds++;
	assert_true(ncmds >= 5);

	cJSON *a = ask(d, "{\"v\":1,\"cmd\":\"help\"}");
	const cJSON *list = item(ok_result(a), "commands");
	assert_int_equal(cJSON_GetArraySize(list), ncmds);
	for (size_t i = 0; i < ncmds; i++) {
		const cJSON *c = cJSON_GetArrayItem(list, (int)i);
		assert_string_equal(str(c, "name"), control_cmds[i].name);
		assert_string_equal(str(c, "summary"), control_cmds[i].summary);
		const char *usage = str(c, "usage");
		assert_memory_equal(usage, control_cmds[i].words, strlen(control_cmds[i].words));
		assert_ptr_equal(control_cmd_find(control_cmds[i].name), &control_cmds[i]);
	}
	cJSON_Delete(a);
	assert_null(control_cmd_find("lead.frobnicate"));
}

static void test_usage_of_lead_add_shows_positional_and_repeatable_options(void **state)
{
	(void)state;
	const struct control_cmd *c = control_cmd_find("lead.add");
	assert_non_null(c);
	struct buf out;
	buf_init(&out);
	control_usage(c, &out);
	assert_non_null(out.data);
	assert_memory_equal(out.data, "lead add EMAIL ", strlen("lead add EMAIL "));
	assert_non_null(strstr(out.data, "[--first-name NAME]"));
	assert_non_null(strstr(out.data, "[--tz ZONE]"));
	assert_non_null(strstr(out.data, "[--tag TAG]…"));
	assert_non_null(strstr(out.data, "[--attr KEY=VALUE]…"));
	assert_null(strstr(out.data, "[--first-name NAME]…"));
	buf_free(&out);

	buf_init(&out);
	control_usage(control_cmd_find("clock.advance"), &out);
	assert_string_equal(out.data, "clock advance DURATION");
	buf_free(&out);
}

/* ---- import, export, forget, suppress, backup ------------------------------------------ */

/* Sends cmd with args (a JSON object text) and returns the answer. */
static cJSON *ask_cmd(struct dripd *d, const char *cmd, const char *args)
{
	char *line = xasprintf("{\"v\":1,\"id\":9,\"cmd\":\"%s\",\"args\":%s}", cmd, args);
	cJSON *a = ask(d, line);
	free(line);
	return a;
}

/* One lead.import chunk of `csv` under `header` (a JSON list), starting at line 2. */
static cJSON *import_chunk(struct dripd *d, const char *header, const char *csv)
{
	cJSON *args = cJSON_CreateObject();
	cJSON_AddStringToObject(args, "file", "t.csv");
	cJSON_AddItemToObject(args, "header", cJSON_Parse(header));
	cJSON_AddStringToObject(args, "csv", csv);
	cJSON_AddStringToObject(args, "line", "2");
	char *text = cJSON_PrintUnformatted(args);
	cJSON *a = ask_cmd(d, "lead.import", text);
	cJSON_free(text);
	cJSON_Delete(args);
	return a;
}

#define IMPORT_HEADER "[\"Email\",\"First Name\",\"Time Zone\",\"Stage\",\"Tags\",\"Lead Source\"]"

static void test_import_adds_good_rows_and_reports_bad_ones_by_line(void **state)
{
	struct dripd *d = *state;
	cJSON *a = import_chunk(d, IMPORT_HEADER,
				"maya@example.org,Maya,Europe/Berlin,awareness,a; b,web\r\n"
				"not-an-address,X,,,,\r\n"
				"\"bob@example.org\",\"Bob\",,,,\"two\nlines\"\r\n"
				"cat@example.org,Cat,Mars/Olympus,,,\r\n"
				"dan@example.org,Dan,,nosuchstage,,\r\n"
				"eve@example.org,Eve\r\n");
	const cJSON *r = ok_result(a);
	assert_int_equal((int)num(r, "added"), 2);
	assert_int_equal((int)num(r, "bad"), 4);
	const cJSON *errors = item(r, "errors");
	static const int lines[] = { 3, 6, 7, 8 };
	static const char *const why[] = { "not an email address", "unknown time zone",
					   "unknown stage", "fields where the header has 6" };
	assert_int_equal(cJSON_GetArraySize(errors), 4);
	for (int i = 0; i < 4; i++) {
		const cJSON *e = cJSON_GetArrayItem(errors, i);
		if ((int)num(e, "line") != lines[i])
			fail_msg("error %d: expected line %d, got %d (%s)", i, lines[i],
				 (int)num(e, "line"), str(e, "message"));
		assert_contains(str(e, "message"), why[i]);
	}
	assert_int_equal((int)num(r, "next_line"), 9);
	cJSON_Delete(a);
	struct lead l;
	assert_rc(store_lead_by_email(d->store, "maya@example.org", &l), 0);
	assert_string_equal(l.tz, "Europe/Berlin");
	assert_string_equal(l.tags, "[\"a\",\"b\"]");
	assert_string_equal(l.attrs, "{\"lead_source\":\"web\"}");
	store_lead_clear(&l);
	assert_rc(store_lead_by_email(d->store, "bob@example.org", &l), 0);
	assert_string_equal(l.attrs, "{\"lead_source\":\"two\\nlines\"}");
	store_lead_clear(&l);
	assert_int_equal(status_of(d).leads, 2);
}

static void test_reimport_updates_the_profile_and_never_duplicates(void **state)
{
	struct dripd *d = *state;
	cJSON_Delete(import_chunk(d, IMPORT_HEADER, "maya@example.org,Maya,,,,web\n"));
	cJSON *a = import_chunk(d, IMPORT_HEADER, "MAYA@example.org,Maia,,decision,x,fair\n");
	const cJSON *r = ok_result(a);
	assert_int_equal((int)num(r, "added"), 0);
	assert_int_equal((int)num(r, "updated"), 1);
	cJSON_Delete(a);
	struct lead l;
	assert_rc(store_lead_by_email(d->store, "maya@example.org", &l), 0);
	assert_string_equal(l.first_name, "Maia");
	assert_string_equal(l.stage, "awareness"); /* an import never moves a known lead */
	assert_string_equal(l.attrs, "{\"lead_source\":\"fair\"}");
	store_lead_clear(&l);
	assert_int_equal(status_of(d).leads, 1);
}

static void test_import_never_brings_back_a_suppressed_address(void **state)
{
	struct dripd *d = *state;
	assert_rc(store_suppress(d->store, "gone@example.org", "unsubscribe", "journey", 1), 0);
	assert_rc(store_suppress(d->store, "blocked.example", "manual", "dripctl", 1), 0);
	cJSON *a = import_chunk(
		d, IMPORT_HEADER,
		"gone@example.org,G,,,,\nx@blocked.example,X,,,,\nok@example.org,O,,,,\n");
	const cJSON *r = ok_result(a);
	assert_int_equal((int)num(r, "added"), 1);
	assert_int_equal((int)num(r, "suppressed"), 2);
	cJSON_Delete(a);
	assert_int_equal(status_of(d).leads, 1);
}

static void test_import_header_without_email_or_with_twins_is_invalid(void **state)
{
	struct dripd *d = *state;
	cJSON *a = import_chunk(d, "[\"name\",\"company\"]", "x,y\n");
	assert_error(a, "invalid");
	assert_contains(error_message(a), "no email column");
	cJSON_Delete(a);
	a = import_chunk(d, "[\"email\",\"E-mail\"]", "x@y.org,x@y.org\n");
	assert_error(a, "invalid");
	assert_contains(error_message(a), "both mean email");
	cJSON_Delete(a);
	assert_nothing_stored(d);
}

static void test_export_guards_formulas_and_reads_back(void **state)
{
	struct dripd *d = *state;
	cJSON_Delete(import_chunk(d, IMPORT_HEADER, "maya@example.org,=HYPERLINK(\"x\"),,,,\n"));
	cJSON *a = ask_cmd(d, "lead.export", "{}");
	const cJSON *r = ok_result(a);
	assert_contains(str(r, "csv"), "email,first_name,last_name");
	assert_contains(str(r, "csv"), "maya@example.org,\"'=HYPERLINK(\"\"x\"\")\"");
	assert_true(cJSON_IsNull(item(r, "next")));
	cJSON_Delete(a);
}

static void test_lead_list_filters_by_stage_and_status(void **state)
{
	struct dripd *d = *state;
	cJSON_Delete(import_chunk(d, IMPORT_HEADER,
				  "a@example.org,,,awareness,,\nb@example.org,,,decision,,\n"));
	cJSON *a = ask_cmd(d, "lead.list", "{\"stage\":\"decision\"}");
	const cJSON *leads = item(ok_result(a), "leads");
	assert_int_equal(cJSON_GetArraySize(leads), 1);
	assert_string_equal(str(cJSON_GetArrayItem(leads, 0), "email"), "b@example.org");
	cJSON_Delete(a);
	assert_error_line(d, "{\"v\":1,\"cmd\":\"lead.list\",\"args\":{\"status\":\"asleep\"}}",
			  "invalid");
}

static void test_forget_erases_the_person_and_keeps_only_a_hash(void **state)
{
	struct dripd *d = *state;
	assert_rc(store_set_hash_key(d->store, "0123456789abcdef0123456789abcdef", 32), 0);
	cJSON_Delete(import_chunk(d, IMPORT_HEADER, "maya@example.org,Maya,,,,web\n"));
	cJSON *a = ask_cmd(d, "lead.forget", "{\"email\":\"maya@example.org\"}");
	ok_result(a);
	cJSON_Delete(a);
	struct lead l;
	assert_rc(store_lead_by_email(d->store, "maya@example.org", &l), DRIP_ENOT_FOUND);
	assert_rc(store_lead_by_id(d->store, 1, &l), 0);
	assert_string_equal(l.status, "forgotten");
	assert_string_equal(l.first_name, "");
	assert_string_equal(l.attrs, "{}");
	assert_null(strstr(l.email, "maya"));
	store_lead_clear(&l);
	/* Still suppressed, by hash, whatever the case of the address. */
	assert_rc(store_suppressed(d->store, "Maya@Example.org", NULL, 0), 0);
	cJSON *list = ask_cmd(d, "suppress.list", "{}");
	char *text = cJSON_PrintUnformatted(list);
	assert_null(strstr(text, "maya"));
	assert_contains(text, "hmac:");
	cJSON_free(text);
	cJSON_Delete(list);
	/* A second forget says so; an import does not bring the person back. */
	a = ask_cmd(d, "lead.forget", "{\"email\":\"maya@example.org\"}");
	assert_error(a, "not_found");
	assert_contains(error_message(a), "forgotten already");
	cJSON_Delete(a);
	a = import_chunk(d, IMPORT_HEADER, "maya@example.org,Maya,,,,web\n");
	assert_int_equal((int)num(ok_result(a), "suppressed"), 1);
	cJSON_Delete(a);
}

static void test_removing_a_persons_own_opt_out_needs_force(void **state)
{
	struct dripd *d = *state;
	cJSON_Delete(import_chunk(d, IMPORT_HEADER, "maya@example.org,Maya,,,,\n"));
	assert_rc(store_suppress(d->store, "maya@example.org", "unsubscribe", "journey", 1), 0);
	cJSON *a = ask_cmd(d, "suppress.remove", "{\"address\":\"maya@example.org\"}");
	assert_error(a, "denied");
	assert_contains(error_message(a), "--force");
	cJSON_Delete(a);
	assert_rc(store_suppressed(d->store, "maya@example.org", NULL, 0), 0);
	a = ask_cmd(d, "suppress.remove", "{\"address\":\"maya@example.org\",\"force\":true}");
	ok_result(a);
	cJSON_Delete(a);
	assert_rc(store_suppressed(d->store, "maya@example.org", NULL, 0), DRIP_ENOT_FOUND);
	bool found = false;
	struct lead l;
	assert_rc(store_lead_by_email(d->store, "maya@example.org", &l), 0);
	assert_rc(store_lead_has_event(d->store, l.id, "unsuppress", NULL, NULL, &found), 0);
	assert_true(found);
	store_lead_clear(&l);
	a = ask_cmd(d, "suppress.remove", "{\"address\":\"maya@example.org\"}");
	assert_error(a, "not_found");
	cJSON_Delete(a);
}

static void test_suppress_add_takes_addresses_and_domains_only(void **state)
{
	struct dripd *d = *state;
	cJSON *a = ask_cmd(d, "suppress.add", "{\"address\":\"example.net\"}");
	assert_string_equal(str(item(ok_result(a), "entry"), "kind"), "domain");
	cJSON_Delete(a);
	assert_rc(store_suppressed(d->store, "anyone@example.net", NULL, 0), 0);
	assert_error_line(d, "{\"v\":1,\"cmd\":\"suppress.add\",\"args\":{\"address\":\"no way\"}}",
			  "invalid");
}

static void test_backup_writes_a_copy_and_never_overwrites(void **state)
{
	struct dripd *d = *state;
	char dir[256];
	testutil_mkdtemp(dir, sizeof(dir), "backup");
	char *path = xasprintf("%s/copy.db", dir);
	char *args = xasprintf("{\"file\":\"%s\"}", path);
	cJSON_Delete(import_chunk(d, IMPORT_HEADER, "maya@example.org,Maya,,,,\n"));
	cJSON *a = ask_cmd(d, "backup", args);
	assert_string_equal(str(ok_result(a), "file"), path);
	cJSON_Delete(a);
	char err[256];
	struct store *copy = store_open(path, err, sizeof(err));
	assert_non_null(copy);
	struct lead l;
	assert_rc(store_lead_by_email(copy, "maya@example.org", &l), 0);
	store_lead_clear(&l);
	store_close(copy);
	a = ask_cmd(d, "backup", args);
	assert_error(a, "exists");
	cJSON_Delete(a);
	assert_error_line(d, "{\"v\":1,\"cmd\":\"backup\",\"args\":{\"file\":\"rel.db\"}}",
			  "invalid");
	free(args);
	free(path);
	testutil_rmtree(dir);
}

static void test_watch_and_reload_need_the_daemon(void **state)
{
	struct dripd *d = *state;
	assert_error_line(d, "{\"v\":1,\"cmd\":\"watch\"}", "unsupported");
	assert_error_line(d, "{\"v\":1,\"cmd\":\"reload\"}", "unsupported");
}

static void test_simulate_runs_on_a_copy_and_changes_nothing(void **state)
{
	struct dripd *d = *state;
	cJSON_Delete(import_chunk(d, IMPORT_HEADER, "maya@example.org,Maya,,,,\n"));
	struct store_status before = status_of(d);
	cJSON *a = ask_cmd(d, "simulate", "{\"email\":\"maya@example.org\",\"days\":\"60\"}");
	const cJSON *lead = cJSON_GetArrayItem(item(ok_result(a), "leads"), 0);
	const cJSON *e;
	int sends = 0;
	cJSON_ArrayForEach(e, item(lead, "timeline")) sends +=
		strcmp(str(e, "action"), "send") == 0;
	if (sends < 2)
		fail_msg("expected at least 2 sends in 60 days, got %d", sends);
	cJSON_Delete(a);
	struct store_status after = status_of(d);
	assert_int_equal(after.sent, before.sent);
	assert_int_equal(after.pending, before.pending);
	a = ask_cmd(d, "simulate", "{\"email\":\"maya@example.org\",\"replies\":\"1.5\"}");
	assert_error(a, "invalid");
	cJSON_Delete(a);
	assert_error_line(d, "{\"v\":1,\"cmd\":\"simulate\"}", "invalid");
}

/* ---- line framing (proto.c) ----------------------------------------------------------- */

static void feed_str(struct proto_reader *r, const char *s)
{
	proto_reader_feed(r, s, strlen(s));
}

static void test_reader_joins_a_line_fed_in_pieces(void **state)
{
	(void)state;
	struct proto_reader r;
	bool too_long = true;
	proto_reader_init(&r);
	assert_null(proto_reader_next(&r, &too_long));
	assert_false(too_long);
	feed_str(&r, "{\"v\":1,");
	assert_null(proto_reader_next(&r, &too_long));
	assert_false(too_long);
	feed_str(&r, "\"cmd\":");
	assert_null(proto_reader_next(&r, &too_long));
	feed_str(&r, "\"help\"}\n{\"v\"");
	char *line = proto_reader_next(&r, &too_long);
	assert_non_null(line);
	assert_false(too_long);
	assert_string_equal(line, "{\"v\":1,\"cmd\":\"help\"}");
	assert_null(proto_reader_next(&r, &too_long));
	feed_str(&r, ":1}\n");
	line = proto_reader_next(&r, &too_long);
	assert_non_null(line);
	assert_string_equal(line, "{\"v\":1}");
	assert_null(proto_reader_next(&r, &too_long));
	proto_reader_free(&r);
}

static void test_reader_returns_every_line_of_one_feed_and_strips_crlf(void **state)
{
	(void)state;
	struct proto_reader r;
	bool too_long;
	proto_reader_init(&r);
	const char *in = "first\r\nsecond\n\nthird\r";
	proto_reader_feed(&r, in, strlen(in));
	char *line = proto_reader_next(&r, &too_long);
	assert_non_null(line);
	assert_string_equal(line, "first");
	line = proto_reader_next(&r, &too_long);
	assert_non_null(line);
	assert_string_equal(line, "second");
	line = proto_reader_next(&r, &too_long);
	assert_non_null(line);
	assert_string_equal(line, "");
	/* "third\r" is not a line until its \n arrives. */
	assert_null(proto_reader_next(&r, &too_long));
	feed_str(&r, "\n");
	line = proto_reader_next(&r, &too_long);
	assert_non_null(line);
	assert_string_equal(line, "third");
	proto_reader_free(&r);
}

static void test_reader_drops_a_too_long_line_and_parses_the_next(void **state)
{
	(void)state;
	struct proto_reader r;
	bool too_long = false;
	size_t chunk = 64 * 1024, total = PROTO_MAX_LINE + 3 * chunk / 2;
	char *junk = xmalloc(chunk);
	memset(junk, 'x', chunk);
	proto_reader_init(&r);
	/* Fed as a client would send it, looking for lines after every piece. */
	for (size_t sent = 0; sent < total; sent += chunk) {
		proto_reader_feed(&r, junk, chunk);
		assert_null(proto_reader_next(&r, &too_long));
		assert_false(too_long);
	}
	/* Memory stays bounded while the line is skipped. */
	assert_true(r.in.len - r.start <= PROTO_MAX_LINE + chunk);
	const char *rest = "tail\n{\"v\":1,\"cmd\":\"status\"}\n";
	proto_reader_feed(&r, rest, strlen(rest));
	assert_null(proto_reader_next(&r, &too_long));
	assert_true(too_long);
	char *line = proto_reader_next(&r, &too_long);
	assert_false(too_long);
	assert_non_null(line);
	assert_string_equal(line, "{\"v\":1,\"cmd\":\"status\"}");
	assert_null(proto_reader_next(&r, &too_long));
	assert_false(too_long);
	proto_reader_free(&r);
	free(junk);
}

static void test_reader_drops_a_too_long_line_that_arrives_whole(void **state)
{
	(void)state;
	struct proto_reader r;
	bool too_long = false;
	size_t n = PROTO_MAX_LINE + 1;
	char *big = xmalloc(n + 1);
	memset(big, 'y', n);
	big[n] = '\n';
	proto_reader_init(&r);
	feed_str(&r, "ok\n");
	proto_reader_feed(&r, big, n + 1);
	feed_str(&r, "next\n");
	char *line = proto_reader_next(&r, &too_long);
	assert_non_null(line);
	assert_string_equal(line, "ok");
	assert_null(proto_reader_next(&r, &too_long));
	assert_true(too_long);
	line = proto_reader_next(&r, &too_long);
	assert_non_null(line);
	assert_false(too_long);
	assert_string_equal(line, "next");
	proto_reader_free(&r);
	free(big);
}

static void test_reader_keeps_a_line_of_exactly_the_limit(void **state)
{
	(void)state;
	struct proto_reader r;
	bool too_long = true;
	char *big = xmalloc(PROTO_MAX_LINE + 1);
	memset(big, 'z', PROTO_MAX_LINE);
	big[PROTO_MAX_LINE] = '\n';
	proto_reader_init(&r);
	proto_reader_feed(&r, big, PROTO_MAX_LINE);
	assert_null(proto_reader_next(&r, &too_long));
	assert_false(too_long);
	proto_reader_feed(&r, big + PROTO_MAX_LINE, 1);
	char *line = proto_reader_next(&r, &too_long);
	assert_false(too_long);
	assert_non_null(line);
	assert_int_equal(strlen(line), PROTO_MAX_LINE);
	proto_reader_free(&r);
	free(big);
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERR);
#define CONTROL_TEST(f) cmocka_unit_test_setup_teardown(f, setup_dripd, teardown_dripd)
	const struct CMUnitTest tests[] = {
		CONTROL_TEST(test_malformed_line_is_a_protocol_error),
		CONTROL_TEST(test_wrong_protocol_version_is_a_protocol_error),
		CONTROL_TEST(test_request_without_cmd_is_a_protocol_error),
		CONTROL_TEST(test_args_that_are_not_an_object_are_a_protocol_error),
		CONTROL_TEST(test_unknown_command_is_unknown_command),
		CONTROL_TEST(test_request_id_is_echoed_as_sent),
		CONTROL_TEST(test_status_reports_leads_touches_clock_and_content),
		CONTROL_TEST(test_status_with_nothing_pending_has_no_next_due),
		CONTROL_TEST(test_lead_add_returns_the_lead_and_schedules_its_first_touch_now),
		CONTROL_TEST(test_lead_add_keeps_tags_once_and_attrs),
		CONTROL_TEST(test_lead_add_in_a_stage_enrols_in_that_stages_sequence),
		CONTROL_TEST(test_lead_add_with_a_sequence_enrols_in_that_sequence),
		CONTROL_TEST(test_lead_add_in_a_stage_without_sequence_schedules_nothing),
		CONTROL_TEST(test_lead_add_without_email_is_invalid),
		CONTROL_TEST(test_lead_add_with_a_bad_email_is_invalid),
		CONTROL_TEST(test_lead_add_with_an_unknown_stage_is_invalid),
		CONTROL_TEST(test_lead_add_with_an_unknown_time_zone_is_invalid),
		CONTROL_TEST(test_lead_add_with_an_unknown_sequence_is_not_found),
		CONTROL_TEST(test_lead_add_of_a_known_address_is_exists_and_changes_nothing),
		CONTROL_TEST(test_lead_add_with_an_unknown_argument_is_invalid),
		CONTROL_TEST(test_lead_add_with_a_wrong_argument_type_is_invalid),
		CONTROL_TEST(test_lead_add_with_a_control_character_in_a_name_is_invalid),
		CONTROL_TEST(test_lead_add_with_a_bad_tag_or_attribute_name_is_invalid),
		CONTROL_TEST(test_lead_show_returns_the_lead_its_touches_and_its_stage_event),
		CONTROL_TEST(test_lead_show_of_an_unknown_lead_is_not_found),
		CONTROL_TEST(test_clock_advance_moves_business_time_by_the_duration),
		CONTROL_TEST(test_clock_advance_with_a_bad_duration_is_invalid),
		CONTROL_TEST(test_clock_advance_without_the_test_clock_is_disabled),
		CONTROL_TEST(test_help_lists_every_command_of_the_table),
		CONTROL_TEST(test_import_adds_good_rows_and_reports_bad_ones_by_line),
		CONTROL_TEST(test_reimport_updates_the_profile_and_never_duplicates),
		CONTROL_TEST(test_import_never_brings_back_a_suppressed_address),
		CONTROL_TEST(test_import_header_without_email_or_with_twins_is_invalid),
		CONTROL_TEST(test_export_guards_formulas_and_reads_back),
		CONTROL_TEST(test_lead_list_filters_by_stage_and_status),
		CONTROL_TEST(test_forget_erases_the_person_and_keeps_only_a_hash),
		CONTROL_TEST(test_removing_a_persons_own_opt_out_needs_force),
		CONTROL_TEST(test_suppress_add_takes_addresses_and_domains_only),
		CONTROL_TEST(test_backup_writes_a_copy_and_never_overwrites),
		CONTROL_TEST(test_watch_and_reload_need_the_daemon),
		CONTROL_TEST(test_simulate_runs_on_a_copy_and_changes_nothing),
		cmocka_unit_test(test_usage_of_lead_add_shows_positional_and_repeatable_options),
		cmocka_unit_test(test_reader_joins_a_line_fed_in_pieces),
		cmocka_unit_test(test_reader_returns_every_line_of_one_feed_and_strips_crlf),
		cmocka_unit_test(test_reader_drops_a_too_long_line_and_parses_the_next),
		cmocka_unit_test(test_reader_drops_a_too_long_line_that_arrives_whole),
		cmocka_unit_test(test_reader_keeps_a_line_of_exactly_the_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
