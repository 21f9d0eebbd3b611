/* test_journey.c - stage moves, enrolment, scores, rules, opt-outs, conditions and step ends. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#include "dripd/config.h"
#include "dripd/content.h"
#include "dripd/dripd.h"
#include "dripd/error.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/store.h"
#include "dripd/util.h"

/* Business time at the start of every test: Mon, 23 Nov 2026 10:00:00 UTC. */
#define T0 1795428000LL
#define DAY 86400LL

/* ---- a journey of our own ------------------------------------------------------------- */

/* The rules in the order the tests assume: a click on pricing before the score rule. */
#define RULES_CLICK_FIRST                                                                      \
	"    { \"on\": \"click\", \"tag\": \"pricing\", \"move_to\": \"decision\" },\n"        \
	"    { \"on\": \"score\", \"at_least\": 5, \"from\": [\"awareness\"], \"move_to\": "   \
	"\"consideration\" },\n"                                                               \
	"    { \"on\": \"finished\", \"sequence\": \"a\", \"move_to\": \"consideration\" },\n" \
	"    { \"on\": \"event\", \"kind\": \"purchase\", \"action\": \"customer\" },\n"       \
	"    { \"on\": \"reply\", \"from\": [\"decision\"], \"action\": \"handoff\" }\n"

/* The same rules with the score rule first. */
#define RULES_SCORE_FIRST                                                                      \
	"    { \"on\": \"score\", \"at_least\": 5, \"from\": [\"awareness\"], \"move_to\": "   \
	"\"consideration\" },\n"                                                               \
	"    { \"on\": \"click\", \"tag\": \"pricing\", \"move_to\": \"decision\" },\n"        \
	"    { \"on\": \"finished\", \"sequence\": \"a\", \"move_to\": \"consideration\" },\n" \
	"    { \"on\": \"event\", \"kind\": \"purchase\", \"action\": \"customer\" },\n"       \
	"    { \"on\": \"reply\", \"from\": [\"decision\"], \"action\": \"handoff\" }\n"

static const struct {
	const char *rel, *text;
} journey_files[] = {
	{ "templates/a/one.md", "---\nsubject: One\n---\nHi {{first_name|there}}, see "
				"[pricing](https://example.com/pricing \"pricing\").\n" },
	{ "templates/a/two.md", "---\nsubject: Two\n---\nOn the {{attrs.plan|free}} plan.\n" },
	{ "templates/v/one.md", "---\nsubject: VIP\n---\nFor our VIPs.\n" },
	{ "templates/b/one.md", "---\nsubject: B\n---\nConsider this.\n" },
	{ "templates/c/one.md", "---\nsubject: C\n---\nDecide.\n" },
	/* The stage's default, two steps. */
	{ "sequences/a.json",
	  "{\"stage\": \"awareness\", \"steps\": [\n"
	  "  {\"id\": \"s1\", \"delay\": \"0d\", \"template\": \"a/one.md\"},\n"
	  "  {\"id\": \"s2\", \"delay\": \"2d\", \"template\": \"a/two.md\"}]}\n" },
	/* For leads tagged vip only; sorts after "a". */
	{ "sequences/a-vip.json",
	  "{\"stage\": \"awareness\", \"when\": {\"tag\": \"vip\"}, \"steps\": [\n"
	  "  {\"id\": \"v1\", \"delay\": \"1h\", \"template\": \"v/one.md\"}]}\n" },
	{ "sequences/b.json",
	  "{\"stage\": \"consideration\", \"steps\": [\n"
	  "  {\"id\": \"b1\", \"delay\": \"1h\", \"template\": \"b/one.md\"}]}\n" },
	{ "sequences/c.json",
	  "{\"stage\": \"decision\", \"steps\": [\n"
	  "  {\"id\": \"c1\", \"delay\": \"0d\", \"template\": \"c/one.md\"}]}\n" },
};

struct fixture {
	char root[128];
	char dir[192];
	struct dripd d;
};

/* journey.json with `extra` (whole lines, e.g. a score_half_life) before the rules. */
static void write_journey_with(struct fixture *f, const char *extra, const char *rules)
{
	char path[512];
	struct buf j;
	buf_init(&j);
	buf_printf(&j,
		   "{\n"
		   "  \"stages\": [\"awareness\", \"consideration\", \"decision\", \"customer\"],\n"
		   "  \"sender\": {\"company\": \"Test Co\", \"postal_address\": \"1 Street\"},\n"
		   "  \"scores\": {\"open\": 1, \"click\": 3},\n"
		   "  \"attributes\": [\"plan\"],\n"
		   "%s"
		   "  \"rules\": [\n%s  ]\n"
		   "}\n",
		   extra, rules);
	snprintf(path, sizeof(path), "%s/journey.json", f->dir);
	testutil_write_file(path, j.data);
	buf_free(&j);
}

static void write_journey(struct fixture *f, const char *rules)
{
	write_journey_with(f, "", rules);
}

/* Loads f->dir as the daemon's content, replacing what it had. */
static void load_content(struct fixture *f)
{
	char err[1024] = "";
	struct content *c = content_load(f->dir, err, sizeof(err));
	if (!c)
		fail_msg("expected the test journey to load, got \"%s\"", err);
	content_unref(f->d.content);
	f->d.content = c;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char path[512];
	testutil_mkdtemp(f->root, sizeof(f->root), "journey");
	snprintf(f->dir, sizeof(f->dir), "%s/content", f->root);
	static const char *const dirs[] = { "",
					    "/templates",
					    "/templates/a",
					    "/templates/v",
					    "/templates/b",
					    "/templates/c",
					    "/sequences" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", f->dir, dirs[i]);
		if (mkdir(path, 0700) != 0)
			fail_msg("mkdir %s: %s", path, strerror(errno));
	}
	for (size_t i = 0; i < sizeof(journey_files) / sizeof(journey_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, journey_files[i].rel);
		testutil_write_file(path, journey_files[i].text);
	}
	write_journey(f, RULES_CLICK_FIRST);
	testutil_dripd_init(&f->d, config_defaults(), ":memory:");
	load_content(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	testutil_dripd_fini(&f->d);
	return testutil_rmtree_free(f->root, f);
}

/* ---- helpers -------------------------------------------------------------------------- */

/* Adds a lead in `stage` at T0 and puts it there as "lead add" does; returns its id. */
static int64_t add_lead(struct fixture *f, const char *email, const char *tags, const char *attrs,
			const char *stage)
{
	char err[512] = "";
	struct lead lead = { .email = (char *)email,
			     .first_name = "Maya",
			     .last_name = "",
			     .company = "",
			     .title = "",
			     .tz = "",
			     .stage = (char *)stage,
			     .tags = (char *)tags,
			     .attrs = (char *)attrs };
	assert_rc(store_lead_insert(f->d.store, &lead, T0), 0);
	int rc = journey_enter_stage(f->d.store, f->d.content, &lead, stage, NULL, T0, err,
				     sizeof(err));
	if (rc != 0)
		fail_msg("expected %s to enter %s, got %d: %s", email, stage, rc, err);
	return lead.id;
}

static void get_lead(struct fixture *f, int64_t id, struct lead *out)
{
	assert_rc(store_lead_by_id(f->d.store, id, out), 0);
}

/* Puts the stored lead through journey_on_event; returns the score it reports. */
static int64_t event(struct fixture *f, int64_t id, int64_t touch_id, const char *kind,
		     const char *detail, int64_t at)
{
	struct lead lead;
	char err[512] = "";
	get_lead(f, id, &lead);
	int rc = journey_on_event(f->d.store, f->d.content, &lead, touch_id, kind, detail, at, err,
				  sizeof(err));
	if (rc != 0)
		fail_msg("expected the %s event to apply, got %d: %s", kind, rc, err);
	int64_t score = lead.score;
	store_lead_clear(&lead);
	return score;
}

/* Moves a stored lead to `stage` (its sequence chosen as usual) at `at`. */
static void enter_stage(struct fixture *f, int64_t id, const char *stage, int64_t at)
{
	struct lead lead;
	char err[512] = "";
	get_lead(f, id, &lead);
	int rc = journey_enter_stage(f->d.store, f->d.content, &lead, stage, NULL, at, err,
				     sizeof(err));
	if (rc != 0)
		fail_msg("expected %s to enter %s, got %d: %s", lead.email, stage, rc, err);
	store_lead_clear(&lead);
}

static void expect_lead(struct fixture *f, int64_t id, const char *stage, const char *status)
{
	struct lead lead;
	char email[128], got_stage[64], got_status[32];
	get_lead(f, id, &lead);
	snprintf(email, sizeof(email), "%s", lead.email);
	snprintf(got_stage, sizeof(got_stage), "%s", lead.stage);
	snprintf(got_status, sizeof(got_status), "%s", lead.status);
	store_lead_clear(&lead);
	if (strcmp(got_stage, stage) != 0 || strcmp(got_status, status) != 0)
		fail_msg("expected %s to be %s/%s, got %s/%s", email, stage, status, got_stage,
			 got_status);
}

static void expect_score(struct fixture *f, int64_t id, int64_t want)
{
	struct lead lead;
	get_lead(f, id, &lead);
	int64_t got = lead.score;
	store_lead_clear(&lead);
	if (got != want)
		fail_msg("expected lead %lld to score %lld, got %lld", (long long)id,
			 (long long)want, (long long)got);
}

static int count_state(const struct testutil_touches *w, const char *state)
{
	int n = 0;
	for (int i = 0; i < w->n && i < TESTUTIL_TOUCHES_MAX; i++)
		n += strcmp(w->t[i].state, state) == 0;
	return n;
}

static int pending_touches(struct fixture *f, int64_t id)
{
	struct testutil_touches w;
	testutil_touches_of(f->d.store, id, &w);
	int n = count_state(&w, "pending");
	testutil_touches_clear(&w);
	return n;
}

/* A copy of the lead's touch for `step` (clear it with store_touch_clear); fails if none. */
static void touch_of(struct fixture *f, int64_t id, const char *sequence, const char *step,
		     struct touch *out)
{
	int rc = store_touch_find(f->d.store, id, sequence, step, out);
	if (rc != 0)
		fail_msg("expected lead %lld to have a touch for %s/%s, got %d", (long long)id,
			 sequence, step, rc);
}

/* Takes touch `id` through queued and sending to sent at `at` (at or after its due time). */
static void mark_sent(struct fixture *f, int64_t id, int64_t at)
{
	int64_t ids[32];
	size_t n = 0;
	bool found = false;
	assert_rc(store_touch_claim(f->d.store, at, 32, ids, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (ids[i] != id) {
			assert_rc(store_touch_release(f->d.store, ids[i]), 0);
			continue;
		}
		char *mid = xasprintf("<t%lld.test@example.com>", (long long)id);
		assert_rc(store_touch_sending(f->d.store, id, mid, at), 0);
		assert_rc(store_touch_sent(f->d.store, id, at), 0);
		free(mid);
		found = true;
	}
	if (!found)
		fail_msg("touch %lld was not due at %lld", (long long)id, (long long)at);
}

/* The detail of the lead's last event of `kind`, parsed (cJSON_Delete it); fails if none. */
static cJSON *last_event(struct fixture *f, int64_t id, const char *kind, int *count)
{
	struct testutil_events w;
	int last = -1;
	testutil_events_of(f->d.store, id, &w);
	if (count)
		*count = 0;
	for (int i = 0; i < w.n && i < TESTUTIL_EVENTS_MAX; i++) {
		if (strcmp(w.kind[i], kind) == 0) {
			last = i;
			if (count)
				(*count)++;
		}
	}
	if (w.n > TESTUTIL_EVENTS_MAX)
		fail_msg("lead %lld has %d events, more than this helper keeps", (long long)id,
			 w.n);
	if (last < 0)
		fail_msg("expected lead %lld to have a \"%s\" event", (long long)id, kind);
	cJSON *d = cJSON_Parse(w.detail[last]);
	if (!d)
		fail_msg("event detail is not JSON: %s", w.detail[last]);
	return d;
}

static int count_events(struct fixture *f, int64_t id, const char *kind)
{
	struct testutil_events w;
	int n = 0;
	testutil_events_of(f->d.store, id, &w);
	for (int i = 0; i < w.n && i < TESTUTIL_EVENTS_MAX; i++)
		n += strcmp(w.kind[i], kind) == 0;
	return n;
}

/* Checks member `key` of an event detail: a string equal to `want`, or absent if NULL. */
static void expect_detail(const cJSON *d, const char *key, const char *want)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, key);
	char *all = cJSON_PrintUnformatted(d);
	if (!want && v)
		fail_msg("expected no \"%s\" in %s", key, all);
	if (want && (!cJSON_IsString(v) || strcmp(v->valuestring, want) != 0))
		fail_msg("expected \"%s\": \"%s\" in %s", key, want, all);
	cJSON_free(all);
}

/* ---- journey_enter_stage -------------------------------------------------------------- */

static void test_enter_stage_picks_the_when_sequence_for_a_vip_lead(void **state)
{
	struct fixture *f = *state;
	int64_t id = add_lead(f, "vip@example.org", "[\"vip\"]", "{}", "awareness");
	struct testutil_touches w;
	testutil_touches_of(f->d.store, id, &w);
	if (w.n != 1 || strcmp(w.t[0].sequence, "a-vip") != 0)
		fail_msg("expected one touch of a-vip, got %d, the first of %s", w.n,
			 w.n ? w.t[0].sequence : "(none)");
	assert_string_equal(w.t[0].step, "v1");
	assert_string_equal(w.t[0].state, "pending");
	if (w.t[0].due_at != T0 + 3600)
		fail_msg("expected v1 due at %lld, got %lld", T0 + 3600, (long long)w.t[0].due_at);
	testutil_touches_clear(&w);
	cJSON *d = last_event(f, id, "stage", NULL);
	expect_detail(d, "to", "awareness");
	expect_detail(d, "sequence", "a-vip");
	expect_detail(d, "from", NULL); /* the lead was added in this stage */
	cJSON_Delete(d);
}

static void test_enter_stage_gives_other_leads_the_default_sequence(void **state)
{
	struct fixture *f = *state;
	int64_t id = add_lead(f, "plain@example.org", "[\"early\"]", "{}", "awareness");
	struct testutil_touches w;
	testutil_touches_of(f->d.store, id, &w);
	if (w.n != 1 || strcmp(w.t[0].sequence, "a") != 0)
		fail_msg("expected one touch of a, got %d, the first of %s", w.n,
			 w.n ? w.t[0].sequence : "(none)");
	assert_string_equal(w.t[0].step, "s1");
	assert_int_equal(w.t[0].step_index, 0);
	if (w.t[0].due_at != T0)
		fail_msg("expected s1 due at %lld, got %lld", T0, (long long)w.t[0].due_at);
	testutil_touches_clear(&w);
	cJSON *d = last_event(f, id, "stage", NULL);
	expect_detail(d, "sequence", "a");
	cJSON_Delete(d);
}

/* A new lead through journey_enter_new ends as journey_enter_stage leaves it: its
 * sequence picked by `when`, one touch, one stage event, one active enrolment. */
static void test_enter_new_is_enter_stage_for_a_lead_just_added(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	struct lead lead = { .email = "new@example.org",
			     .first_name = "",
			     .last_name = "",
			     .company = "",
			     .title = "",
			     .tz = "",
			     .stage = "awareness",
			     .tags = "[\"vip\"]",
			     .attrs = "{}" };
	struct store_status ss;
	assert_rc(store_lead_insert(f->d.store, &lead, T0), 0);
	int rc = journey_enter_new(f->d.store, f->d.content, &lead, T0, err, sizeof(err));
	if (rc != 0)
		fail_msg("expected the new lead to enter, got %d: %s", rc, err);
	struct testutil_touches w;
	testutil_touches_of(f->d.store, lead.id, &w);
	if (w.n != 1 || strcmp(w.t[0].sequence, "a-vip") != 0 || strcmp(w.t[0].step, "v1") != 0)
		fail_msg("expected one touch a-vip/v1, got %d", w.n);
	assert_int_equal(w.t[0].due_at, T0 + 3600);
	testutil_touches_clear(&w);
	int count = 0;
	cJSON *d = last_event(f, lead.id, "stage", &count);
	assert_int_equal(count, 1);
	expect_detail(d, "to", "awareness");
	expect_detail(d, "sequence", "a-vip");
	expect_detail(d, "from", NULL);
	cJSON_Delete(d);
	expect_lead(f, lead.id, "awareness", "active");
	assert_rc(store_status(f->d.store, &ss), 0);
	assert_int_equal(ss.active_enrolments, 1);
	assert_int_equal(ss.pending, 1);
	lead.stage = "limbo";
	assert_rc(journey_enter_new(f->d.store, f->d.content, &lead, T0, err, sizeof(err)),
		  DRIP_EINVALID);
}

static void test_enter_stage_records_from_to_and_sequence(void **state)
{
	struct fixture *f = *state;
	int count = 0;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	enter_stage(f, id, "consideration", T0 + 10);
	expect_lead(f, id, "consideration", "active");
	cJSON *d = last_event(f, id, "stage", &count);
	assert_int_equal(count, 2);
	expect_detail(d, "from", "awareness");
	expect_detail(d, "to", "consideration");
	expect_detail(d, "sequence", "b");
	cJSON_Delete(d);
}

static void test_enter_stage_ends_the_previous_enrolment(void **state)
{
	struct fixture *f = *state;
	struct touch s1, b1;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	enter_stage(f, id, "consideration", T0 + 10);
	touch_of(f, id, "a", "s1", &s1);
	touch_of(f, id, "b", "b1", &b1);
	/* The pending step of the old sequence is skipped, never sent. */
	assert_string_equal(s1.state, "skipped");
	assert_string_equal(b1.state, "pending");
	if (b1.due_at != T0 + 10 + 3600)
		fail_msg("expected b1 due at %lld, got %lld", T0 + 10 + 3600, (long long)b1.due_at);
	assert_true(b1.enrolment_id != s1.enrolment_id);
	/* The old enrolment is over: nothing more can be scheduled in it. */
	assert_rc(store_touch_schedule(f->d.store, id, s1.enrolment_id, "a", "s2", 1, T0 + DAY,
				       T0 + 20, NULL),
		  DRIP_ENOT_FOUND);
	assert_int_equal(pending_touches(f, id), 1);
	store_touch_clear(&s1);
	store_touch_clear(&b1);
}

static void test_enter_stage_refuses_unknown_stages_and_foreign_sequences(void **state)
{
	struct fixture *f = *state;
	struct lead lead;
	char err[512] = "";
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	get_lead(f, id, &lead);
	assert_rc(journey_enter_stage(f->d.store, f->d.content, &lead, "limbo", NULL, T0, err,
				      sizeof(err)),
		  DRIP_EINVALID);
	assert_contains(err, "unknown stage \"limbo\"");
	assert_rc(journey_enter_stage(f->d.store, f->d.content, &lead, "decision", "b", T0, err,
				      sizeof(err)),
		  DRIP_EINVALID);
	assert_contains(err, "sequence \"b\" belongs to stage consideration, not decision");
	assert_rc(journey_enter_stage(f->d.store, f->d.content, &lead, "decision", "zz", T0, err,
				      sizeof(err)),
		  DRIP_ENOT_FOUND);
	store_lead_clear(&lead);
	expect_lead(f, id, "awareness", "active");
	assert_int_equal(pending_touches(f, id), 1);
}

static void test_stage_without_a_sequence_leaves_the_lead_enrolled_in_nothing(void **state)
{
	struct fixture *f = *state;
	struct store_status s;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	enter_stage(f, id, "customer", T0 + 10);
	expect_lead(f, id, "customer", "active");
	assert_int_equal(pending_touches(f, id), 0);
	assert_rc(store_status(f->d.store, &s), 0);
	assert_int_equal(s.active_enrolments, 0);
	cJSON *d = last_event(f, id, "stage", NULL);
	expect_detail(d, "to", "customer");
	expect_detail(d, "sequence", NULL);
	cJSON_Delete(d);
}

/* ---- journey_on_event: scores and rules ----------------------------------------------- */

static void test_events_add_their_points_to_the_score(void **state)
{
	struct fixture *f = *state;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	assert_int_equal(event(f, id, 0, "open", NULL, T0 + 1), 1);
	expect_score(f, id, 1);
	assert_int_equal(event(f, id, 0, "click", "{\"tag\": \"other\"}", T0 + 2), 4);
	expect_score(f, id, 4);
	/* A kind journey.json gives no points adds none, and is still recorded. */
	assert_int_equal(event(f, id, 0, "webinar", "{}", T0 + 3), 4);
	expect_score(f, id, 4);
	assert_int_equal(count_events(f, id, "webinar"), 1);
	assert_int_equal(count_events(f, id, "open"), 1);
	expect_lead(f, id, "awareness", "active");
}

static void test_first_matching_rule_wins(void **state)
{
	struct fixture *f = *state;
	int64_t a = add_lead(f, "a@example.org", "[]", "{}", "awareness");
	int64_t b = add_lead(f, "b@example.org", "[]", "{}", "awareness");
	/* Score 2, then a click on pricing makes it 5: the click rule and the score rule both
	 * match, and the click rule comes first. */
	event(f, a, 0, "open", NULL, T0 + 1);
	event(f, a, 0, "open", NULL, T0 + 2);
	assert_int_equal(event(f, a, 0, "click", "{\"tag\": \"pricing\"}", T0 + 3), 5);
	expect_lead(f, a, "decision", "active");
	cJSON *d = last_event(f, a, "stage", NULL);
	expect_detail(d, "from", "awareness");
	expect_detail(d, "to", "decision");
	expect_detail(d, "sequence", "c");
	cJSON_Delete(d);
	/* The same score from another link: only the score rule matches. */
	event(f, b, 0, "open", NULL, T0 + 1);
	event(f, b, 0, "open", NULL, T0 + 2);
	assert_int_equal(event(f, b, 0, "click", "{\"tag\": \"guide\"}", T0 + 3), 5);
	expect_lead(f, b, "consideration", "active");
}

static void test_rule_order_decides_between_two_matching_rules(void **state)
{
	struct fixture *f = *state;
	write_journey(f, RULES_SCORE_FIRST);
	load_content(f);
	int64_t a = add_lead(f, "a@example.org", "[]", "{}", "awareness");
	event(f, a, 0, "open", NULL, T0 + 1);
	event(f, a, 0, "open", NULL, T0 + 2);
	event(f, a, 0, "click", "{\"tag\": \"pricing\"}", T0 + 3);
	expect_lead(f, a, "consideration", "active");
}

static void test_from_restricts_a_rule_to_its_stages(void **state)
{
	struct fixture *f = *state;
	int count = 0;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "consideration");
	for (int i = 0; i < 6; i++)
		event(f, id, 0, "open", NULL, T0 + 1 + i);
	expect_score(f, id, 6);
	/* The score rule is for awareness only. */
	expect_lead(f, id, "consideration", "active");
	cJSON_Delete(last_event(f, id, "stage", &count));
	assert_int_equal(count, 1);
	/* A reply rule for decision does not apply in consideration either: no rule, so a
	 * person takes over (checked in full below). */
}

static void test_a_move_to_the_current_stage_is_ignored(void **state)
{
	struct fixture *f = *state;
	struct touch c1;
	int count = 0;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "decision");
	touch_of(f, id, "c", "c1", &c1);
	event(f, id, 0, "click", "{\"tag\": \"pricing\"}", T0 + 5);
	expect_lead(f, id, "decision", "active");
	cJSON_Delete(last_event(f, id, "stage", &count));
	if (count != 1)
		fail_msg("expected the lead's first stage event only, got %d stage events", count);
	/* Its sequence was not restarted: the same touch, still pending. */
	struct touch again;
	touch_of(f, id, "c", "c1", &again);
	assert_int_equal(again.id, c1.id);
	assert_string_equal(again.state, "pending");
	assert_int_equal(pending_touches(f, id), 1);
	store_touch_clear(&c1);
	store_touch_clear(&again);
}

static void test_reply_without_a_rule_hands_the_lead_off(void **state)
{
	struct fixture *f = *state;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	event(f, id, 0, "reply", "{\"subject\": \"Re: One\"}", T0 + 60);
	expect_lead(f, id, "awareness", "handoff");
	assert_int_equal(pending_touches(f, id), 0);
	struct touch s1;
	touch_of(f, id, "a", "s1", &s1);
	assert_string_equal(s1.state, "skipped");
	store_touch_clear(&s1);
	assert_int_equal(count_events(f, id, "reply"), 1);
	cJSON *d = last_event(f, id, "handoff", NULL);
	expect_detail(d, "reason", "replied: a person takes over");
	cJSON_Delete(d);
}

static void test_reply_rule_hands_the_lead_off(void **state)
{
	struct fixture *f = *state;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "decision");
	event(f, id, 0, "reply", NULL, T0 + 60);
	expect_lead(f, id, "decision", "handoff");
	assert_int_equal(pending_touches(f, id), 0);
	cJSON *d = last_event(f, id, "handoff", NULL);
	expect_detail(d, "reason", "reply");
	cJSON_Delete(d);
}

static void test_opt_outs_stop_the_drip_whatever_the_rules_say(void **state)
{
	struct fixture *f = *state;
	static const char *const kinds[] = { "unsubscribe", "bounce", "complaint" };
	static const char *const statuses[] = { "unsubscribed", "bounced", "complained" };
	for (size_t i = 0; i < 3; i++) {
		char email[64];
		int64_t score = 0;
		snprintf(email, sizeof(email), "%s@example.org", kinds[i]);
		int64_t id = add_lead(f, email, "[]", "{}", "awareness");
		/* Score 5 in awareness: the score rule's threshold is reached already. */
		assert_rc(store_lead_add_score(f->d.store, id, 5, T0, &score), 0);
		event(f, id, 0, kinds[i], "{}", T0 + 60);
		expect_lead(f, id, "awareness", statuses[i]);
		if (pending_touches(f, id) != 0)
			fail_msg("%s: expected no pending touch, got %d", kinds[i],
				 pending_touches(f, id));
		assert_int_equal(count_events(f, id, kinds[i]), 1);
		/* Later events change nothing. */
		event(f, id, 0, "click", "{\"tag\": \"pricing\"}", T0 + 120);
		expect_lead(f, id, "awareness", statuses[i]);
		assert_int_equal(pending_touches(f, id), 0);
	}
	/* The control: the same lead without an opt-out is moved by the score rule once an
	 * event takes its score across the threshold (4 + an open's 1 point); an event worth
	 * nothing does not, since score rules fire on the crossing. */
	int64_t score = 0;
	int64_t id = add_lead(f, "control@example.org", "[]", "{}", "awareness");
	assert_rc(store_lead_add_score(f->d.store, id, 4, T0, &score), 0);
	event(f, id, 0, "webinar", "{}", T0 + 60);
	expect_lead(f, id, "awareness", "active");
	event(f, id, 0, "open", "{}", T0 + 90);
	expect_lead(f, id, "consideration", "active");
}

static void test_purchase_makes_the_lead_a_customer_in_the_last_stage(void **state)
{
	struct fixture *f = *state;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	event(f, id, 0, "purchase", "{\"amount\": 1200}", T0 + 60);
	expect_lead(f, id, "customer", "customer");
	assert_int_equal(pending_touches(f, id), 0);
	cJSON *d = last_event(f, id, "stage", NULL);
	expect_detail(d, "from", "awareness");
	expect_detail(d, "to", "customer");
	cJSON_Delete(d);
	assert_int_equal(count_events(f, id, "purchase"), 1);
}

static void test_events_after_handoff_do_not_move_the_lead(void **state)
{
	struct fixture *f = *state;
	int count = 0;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	event(f, id, 0, "reply", NULL, T0 + 60);
	expect_lead(f, id, "awareness", "handoff");
	/* A click on pricing and a score past 5 would each move an active lead. */
	event(f, id, 0, "click", "{\"tag\": \"pricing\"}", T0 + 120);
	event(f, id, 0, "click", "{\"tag\": \"guide\"}", T0 + 180);
	event(f, id, 0, "reply", NULL, T0 + 240);
	expect_lead(f, id, "awareness", "handoff");
	assert_int_equal(pending_touches(f, id), 0);
	cJSON_Delete(last_event(f, id, "stage", &count));
	assert_int_equal(count, 1);
	assert_int_equal(count_events(f, id, "handoff"), 1);
}

static void test_events_for_an_erased_lead_are_kept_without_detail_and_move_nothing(void **state)
{
	struct fixture *f = *state;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	struct store_anonymise_turn turn;
	/* Its journey over and anonymised a day later, as retention.anonymise does. */
	assert_rc(store_enrolment_exit_active(f->d.store, id, "completed", T0), 0);
	assert_rc(store_set_hash_key(f->d.store, "0123456789abcdef0123456789abcdef", 32), 0);
	assert_rc(store_anonymise_step(f->d.store, 0, T0 + 60, 10, T0 + 86400, &turn), 0);
	assert_int_equal(turn.anonymised, 1);
	event(f, id, 0, "unsubscribe", "{\"address\": \"192.0.2.1\"}", T0 + 86460);
	event(f, id, 0, "purchase", "{}", T0 + 86490);
	event(f, id, 0, "click", "{\"tag\": \"pricing\"}", T0 + 86520);
	expect_lead(f, id, "awareness", "active");
	assert_int_equal(pending_touches(f, id), 0);
	assert_int_equal(count_events(f, id, "unsubscribe"), 1);
	cJSON *d = last_event(f, id, "unsubscribe", NULL);
	assert_null(cJSON_GetObjectItemCaseSensitive(d, "address"));
	cJSON_Delete(d);
	char reason[64];
	assert_rc(store_suppressed(f->d.store, "anonymised:1", reason, sizeof(reason)),
		  DRIP_ENOT_FOUND);
}

/* ---- journey_cond_holds --------------------------------------------------------------- */

static bool holds(struct fixture *f, const struct lead *lead, const char *sequence,
		  const struct content_cond *cond)
{
	bool h = false;
	assert_rc(journey_cond_holds(f->d.store, lead, sequence, cond, &h), 0);
	return h;
}

static void expect_holds(struct fixture *f, const struct lead *lead, const char *sequence,
			 const struct content_cond *cond, bool want, const char *what)
{
	bool got = holds(f, lead, sequence, cond);
	if (got != want)
		fail_msg("%s: expected the condition to %s, it did %s", what,
			 want ? "hold" : "fail", got ? "hold" : "fail");
}

static void test_cond_on_a_tag(void **state)
{
	struct fixture *f = *state;
	struct content_cond cond = { .tag = "vip" };
	struct lead lead = { .id = 1, .tags = "[\"early\", \"vip\"]", .attrs = "{}" };
	expect_holds(f, &lead, "a", NULL, true, "no condition");
	expect_holds(f, &lead, "a", &cond, true, "tags [early, vip]");
	lead.tags = "[]";
	expect_holds(f, &lead, "a", &cond, false, "tags []");
	lead.tags = "[\"VIP\", \"vip2\"]";
	expect_holds(f, &lead, "a", &cond, false, "tags [VIP, vip2]");
	lead.tags = "";
	expect_holds(f, &lead, "a", &cond, false, "no tags");
}

static void test_cond_on_an_attribute_present_or_equal(void **state)
{
	struct fixture *f = *state;
	struct content_cond present = { .attr = "plan" };
	struct content_cond equals = { .attr = "plan", .attr_value = "pro" };
	struct lead lead = { .id = 1, .tags = "[]", .attrs = "{\"plan\": \"pro\"}" };
	expect_holds(f, &lead, "a", &present, true, "plan=pro, attr plan");
	expect_holds(f, &lead, "a", &equals, true, "plan=pro, attr plan=pro");
	lead.attrs = "{\"plan\": \"team\"}";
	expect_holds(f, &lead, "a", &present, true, "plan=team, attr plan");
	expect_holds(f, &lead, "a", &equals, false, "plan=team, attr plan=pro");
	lead.attrs = "{\"plan\": \"\"}";
	expect_holds(f, &lead, "a", &present, false, "plan empty, attr plan");
	lead.attrs = "{\"plan\": 3}";
	expect_holds(f, &lead, "a", &present, false, "plan a number, attr plan");
	lead.attrs = "{}";
	expect_holds(f, &lead, "a", &present, false, "no plan, attr plan");
	expect_holds(f, &lead, "a", &equals, false, "no plan, attr plan=pro");
	/* Every part that is set must hold. */
	struct content_cond both = { .tag = "vip", .attr = "plan" };
	lead.attrs = "{\"plan\": \"pro\"}";
	expect_holds(f, &lead, "a", &both, false, "plan but no vip tag");
	lead.tags = "[\"vip\"]";
	expect_holds(f, &lead, "a", &both, true, "plan and vip tag");
}

static void test_cond_opened_counts_an_open_or_a_click_of_that_step(void **state)
{
	struct fixture *f = *state;
	struct content_cond opened = { .opened = "s1" };
	struct touch s1;
	struct lead lead;
	int64_t a = add_lead(f, "a@example.org", "[]", "{}", "awareness");
	int64_t b = add_lead(f, "b@example.org", "[]", "{}", "awareness");

	get_lead(f, a, &lead);
	expect_holds(f, &lead, "a", &opened, false, "no events");
	/* An open not about that step's touch does not count. */
	assert_rc(store_event_add(f->d.store, a, 0, "open", T0 + 1, "{}"), 0);
	expect_holds(f, &lead, "a", &opened, false, "an open of no touch");
	touch_of(f, a, "a", "s1", &s1);
	assert_rc(store_event_add(f->d.store, a, s1.id, "open", T0 + 2, "{}"), 0);
	expect_holds(f, &lead, "a", &opened, true, "an open of s1");
	/* The step is named within the sequence. */
	expect_holds(f, &lead, "b", &opened, false, "an open of a/s1, asked about b/s1");
	store_touch_clear(&s1);
	store_lead_clear(&lead);

	/* A click proves the open when the pixel was blocked. */
	get_lead(f, b, &lead);
	touch_of(f, b, "a", "s1", &s1);
	assert_rc(store_event_add(f->d.store, b, s1.id, "click", T0 + 2, "{\"tag\": \"x\"}"), 0);
	expect_holds(f, &lead, "a", &opened, true, "a click of s1");
	store_touch_clear(&s1);
	store_lead_clear(&lead);
}

static void test_cond_clicked_needs_a_click_of_that_step(void **state)
{
	struct fixture *f = *state;
	struct content_cond clicked = { .clicked = "s1" };
	struct touch s1;
	struct lead lead;
	int64_t a = add_lead(f, "a@example.org", "[]", "{}", "awareness");
	int64_t b = add_lead(f, "b@example.org", "[]", "{}", "awareness");
	get_lead(f, a, &lead);
	touch_of(f, a, "a", "s1", &s1);
	assert_rc(store_event_add(f->d.store, a, s1.id, "open", T0 + 1, "{}"), 0);
	expect_holds(f, &lead, "a", &clicked, false, "an open of s1");
	assert_rc(store_event_add(f->d.store, a, s1.id, "click", T0 + 2, "{}"), 0);
	expect_holds(f, &lead, "a", &clicked, true, "a click of s1");
	store_touch_clear(&s1);
	store_lead_clear(&lead);
	/* Another lead's click is not this lead's. */
	get_lead(f, b, &lead);
	expect_holds(f, &lead, "a", &clicked, false, "another lead clicked");
	store_lead_clear(&lead);
}

static void test_cond_event_needs_that_kind_for_the_lead(void **state)
{
	struct fixture *f = *state;
	struct content_cond webinar = { .event = "webinar" };
	struct lead lead;
	int64_t a = add_lead(f, "a@example.org", "[]", "{}", "awareness");
	int64_t b = add_lead(f, "b@example.org", "[]", "{}", "awareness");
	get_lead(f, a, &lead);
	expect_holds(f, &lead, "a", &webinar, false, "no events");
	assert_rc(store_event_add(f->d.store, b, 0, "webinar", T0 + 1, "{}"), 0);
	expect_holds(f, &lead, "a", &webinar, false, "another lead's webinar");
	assert_rc(store_event_add(f->d.store, a, 0, "webinars", T0 + 1, "{}"), 0);
	expect_holds(f, &lead, "a", &webinar, false, "a webinars event");
	assert_rc(store_event_add(f->d.store, a, 0, "webinar", T0 + 2, "{}"), 0);
	expect_holds(f, &lead, "a", &webinar, true, "a webinar event");
	store_lead_clear(&lead);
}

/* ---- journey_step_done ---------------------------------------------------------------- */

static void test_step_done_schedules_the_next_step_after_its_delay(void **state)
{
	struct fixture *f = *state;
	struct touch s1, s2;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	touch_of(f, id, "a", "s1", &s1);
	mark_sent(f, s1.id, T0 + 100);
	assert_rc(journey_step_done(f->d.store, f->d.content, &s1, T0 + 100), 0);
	touch_of(f, id, "a", "s2", &s2);
	assert_string_equal(s2.state, "pending");
	assert_int_equal(s2.step_index, 1);
	assert_int_equal(s2.enrolment_id, s1.enrolment_id);
	if (s2.due_at != T0 + 100 + 2 * DAY)
		fail_msg("expected s2 due at %lld (2 days after s1 was done), got %lld",
			 T0 + 100 + 2 * DAY, (long long)s2.due_at);
	/* Done twice (a retry): the step is still scheduled once. */
	assert_rc(journey_step_done(f->d.store, f->d.content, &s1, T0 + 200), 0);
	assert_int_equal(pending_touches(f, id), 1);
	expect_lead(f, id, "awareness", "active");
	store_touch_clear(&s1);
	store_touch_clear(&s2);
}

/* Maya in awareness, sequence a's first step sent and done, its last (s2) sent at T0 + 2
 * days and not yet done: returns her id. */
static int64_t lead_with_the_last_step_sent(struct fixture *f, struct touch *s1, struct touch *s2)
{
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	touch_of(f, id, "a", "s1", s1);
	mark_sent(f, s1->id, T0);
	assert_rc(journey_step_done(f->d.store, f->d.content, s1, T0), 0);
	touch_of(f, id, "a", "s2", s2);
	mark_sent(f, s2->id, T0 + 2 * DAY);
	return id;
}

static void test_step_done_after_the_last_step_applies_the_finished_rule(void **state)
{
	struct fixture *f = *state;
	struct touch s1, s2, b1;
	int64_t id = lead_with_the_last_step_sent(f, &s1, &s2);
	assert_rc(journey_step_done(f->d.store, f->d.content, &s2, T0 + 2 * DAY), 0);
	/* The enrolment in a is over, and "finished a" moved the lead on. */
	assert_rc(store_touch_schedule(f->d.store, id, s1.enrolment_id, "a", "s3", 2, T0 + 3 * DAY,
				       T0 + 2 * DAY, NULL),
		  DRIP_ENOT_FOUND);
	expect_lead(f, id, "consideration", "active");
	cJSON *d = last_event(f, id, "stage", NULL);
	expect_detail(d, "from", "awareness");
	expect_detail(d, "to", "consideration");
	expect_detail(d, "sequence", "b");
	cJSON_Delete(d);
	touch_of(f, id, "b", "b1", &b1);
	assert_string_equal(b1.state, "pending");
	assert_true(b1.enrolment_id != s1.enrolment_id);
	/* What was sent stays sent. */
	store_touch_clear(&s2);
	touch_of(f, id, "a", "s2", &s2);
	assert_string_equal(s2.state, "sent");
	store_touch_clear(&s1);
	store_touch_clear(&s2);
	store_touch_clear(&b1);
}

/*
 * A "finished" rule that fails part-way (here a trigger refuses the lead's stage change)
 * leaves none of its writes, inside the delivery path's transaction as sched runs it: the
 * enrolment it finished stays completed, the sent touches stay sent, the transaction
 * commits, and the store is not left refusing writes.
 */
static void test_step_done_when_the_finished_rule_fails_keeps_the_completion(void **state)
{
	struct fixture *f = *state;
	char path[256];
	struct touch s1, s2;
	struct store_status st;
	/* A file database, so that a connection of the test's own can add the trigger. */
	snprintf(path, sizeof(path), "%s/journey.db", f->root);
	store_close(f->d.store);
	f->d.store = testutil_store_open(path);
	int64_t id = lead_with_the_last_step_sent(f, &s1, &s2);
	int stage_events = count_events(f, id, "stage");
	testutil_sql_exec(path, "CREATE TRIGGER boom BEFORE UPDATE OF stage ON leads "
				"WHEN new.stage = 'consideration' "
				"BEGIN SELECT RAISE(ABORT, 'boom'); END");

	assert_rc(store_begin(f->d.store), 0);
	int rc = journey_step_done(f->d.store, f->d.content, &s2, T0 + 2 * DAY);
	if (rc == 0)
		fail_msg("expected the finished rule to fail on the trigger");
	assert_int_equal(store_last_error(f->d.store, NULL, 0), STORE_FAIL_NONE);
	assert_rc(store_commit(f->d.store), 0);

	expect_lead(f, id, "awareness", "active");
	assert_int_equal(count_events(f, id, "stage"), stage_events);
	char *sql = xasprintf("SELECT group_concat(sequence || ':' || state, ' ') FROM "
			      "(SELECT sequence, state FROM enrolments WHERE lead_id = %lld "
			      "ORDER BY id)",
			      (long long)id);
	char *enrolments = testutil_sql_text(path, sql);
	assert_string_equal(enrolments, "a:completed");
	free(enrolments);
	free(sql);
	sql = xasprintf("SELECT group_concat(step || ':' || state, ' ') FROM "
			"(SELECT step, state FROM touches WHERE lead_id = %lld ORDER BY id)",
			(long long)id);
	char *touches = testutil_sql_text(path, sql);
	assert_string_equal(touches, "s1:sent s2:sent");
	free(touches);
	free(sql);
	assert_rc(store_status(f->d.store, &st), 0);
	assert_int_equal(st.active_enrolments, 0);
	/* The store takes writes again, and the lead can still move by hand. */
	enter_stage(f, id, "decision", T0 + 3 * DAY);
	expect_lead(f, id, "decision", "active");
	store_touch_clear(&s1);
	store_touch_clear(&s2);
}

static void test_step_done_after_the_last_step_without_a_rule_completes(void **state)
{
	struct fixture *f = *state;
	struct store_status s;
	struct touch v1;
	int64_t id = add_lead(f, "vip@example.org", "[\"vip\"]", "{}", "awareness");
	assert_rc(store_status(f->d.store, &s), 0);
	assert_int_equal(s.active_enrolments, 1);
	touch_of(f, id, "a-vip", "v1", &v1);
	mark_sent(f, v1.id, T0 + 3600);
	assert_rc(journey_step_done(f->d.store, f->d.content, &v1, T0 + 3600), 0);
	assert_rc(store_status(f->d.store, &s), 0);
	assert_int_equal(s.active_enrolments, 0);
	/* Ended already: ending it again finds nothing active. */
	assert_rc(store_enrolment_end(f->d.store, v1.enrolment_id, "completed", T0 + 3601),
		  DRIP_ENOT_FOUND);
	expect_lead(f, id, "awareness", "active");
	assert_int_equal(pending_touches(f, id), 0);
	store_touch_clear(&v1);
}

static void test_step_done_after_the_lead_moved_on_schedules_nothing(void **state)
{
	struct fixture *f = *state;
	struct testutil_touches w;
	struct touch s1;
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	touch_of(f, id, "a", "s1", &s1);
	mark_sent(f, s1.id, T0);
	/* The lead moves while s1 is with a sender thread. */
	enter_stage(f, id, "decision", T0 + 1);
	assert_rc(journey_step_done(f->d.store, f->d.content, &s1, T0 + 2), 0);
	testutil_touches_of(f->d.store, id, &w);
	for (int i = 0; i < w.n && i < TESTUTIL_TOUCHES_MAX; i++)
		if (strcmp(w.t[i].sequence, "a") == 0 && strcmp(w.t[i].step, "s2") == 0)
			fail_msg("expected no s2 after the lead left a, got one %s", w.t[i].state);
	testutil_touches_clear(&w);
	expect_lead(f, id, "decision", "active");
	store_touch_clear(&s1);
}

/*
 * A lead that comes back to a stage whose sequence it already had: each step is at most
 * once per lead, so the first step is not scheduled again. The enrolment must still be able
 * to progress or end; one with no touch waits for a journey_step_done that never comes.
 */
static void test_reentering_a_stage_never_leaves_an_enrolment_that_cannot_progress(void **state)
{
	struct fixture *f = *state;
	struct store_status s;
	struct touch s1, s2;
	int64_t id = lead_with_the_last_step_sent(f, &s1, &s2);
	assert_rc(journey_step_done(f->d.store, f->d.content, &s2, T0 + 2 * DAY), 0);
	expect_lead(f, id, "consideration", "active");
	store_touch_clear(&s1);
	store_touch_clear(&s2);
	/* Moved back by hand (dripctl lead stage). */
	enter_stage(f, id, "awareness", T0 + 3 * DAY);
	expect_lead(f, id, "awareness", "active");
	assert_rc(store_status(f->d.store, &s), 0);
	if (s.active_enrolments > 0 && pending_touches(f, id) == 0)
		fail_msg(
			"expected the new enrolment in a to have a pending touch or to have ended, "
			"got %lld active enrolment(s) and %d pending touch(es)",
			(long long)s.active_enrolments, pending_touches(f, id));
}

/* ---- the sample journey --------------------------------------------------------------- */

/*
 * content/journey.json says "Any reply goes to a person: the drip stops at once", and
 * journey.h that a reply hands the lead to a person. A reply is worth 10 points there, and
 * the score rule (at_least 8, from awareness) comes before the reply rule.
 */
static void test_sample_journey_reply_in_awareness_hands_off_not_score_move(void **state)
{
	struct fixture *f = *state;
	content_unref(f->d.content);
	f->d.content = testutil_sample_content();
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	event(f, id, 0, "reply", "{\"subject\": \"Re: Welcome\"}", T0 + 60);
	struct lead lead;
	char status[32], stage[32];
	get_lead(f, id, &lead);
	snprintf(status, sizeof(status), "%s", lead.status);
	snprintf(stage, sizeof(stage), "%s", lead.stage);
	int64_t score = lead.score;
	store_lead_clear(&lead);
	if (strcmp(status, "handoff") != 0)
		fail_msg("expected a reply to hand the lead off (status handoff, no pending "
			 "touch), got status %s, stage %s, score %lld, %d pending touch(es)",
			 status, stage, (long long)score, pending_touches(f, id));
	assert_int_equal(pending_touches(f, id), 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* ---- decay and falls ------------------------------------------------------------------ */

/* Up at 5 points from awareness, back below 2 from consideration; scores halve in 10 days. */
#define RULES_FALL                                                                             \
	"    { \"on\": \"score\", \"at_least\": 5, \"from\": [\"awareness\"], \"move_to\": "   \
	"\"consideration\" },\n"                                                               \
	"    { \"on\": \"score\", \"below\": 2, \"from\": [\"consideration\"], \"move_to\": "  \
	"\"awareness\" },\n"                                                                   \
	"    { \"on\": \"finished\", \"sequence\": \"a\", \"move_to\": \"consideration\" },\n" \
	"    { \"on\": \"click\", \"tag\": \"pricing\", \"move_to\": \"decision\" },\n"        \
	"    { \"on\": \"event\", \"kind\": \"purchase\", \"action\": \"customer\" }\n"

static void use_fall_journey(struct fixture *f)
{
	write_journey_with(f, "  \"score_half_life\": \"10d\",\n", RULES_FALL);
	load_content(f);
}

static double lead_score(struct fixture *f, int64_t id, int64_t now)
{
	struct lead lead;
	get_lead(f, id, &lead);
	double s = journey_score(f->d.content, lead.score, lead.score_at, now);
	store_lead_clear(&lead);
	return s;
}

static int64_t lead_fall_at(struct fixture *f, int64_t id)
{
	struct lead lead;
	get_lead(f, id, &lead);
	int64_t at = lead.fall_at;
	store_lead_clear(&lead);
	return at;
}

static void test_decay_halves_the_score_every_half_life(void **state)
{
	struct fixture *f = *state;
	const struct content *c;
	/* Without a half-life nothing fades. */
	assert_true(journey_score(f->d.content, 8, T0, T0 + 1000 * DAY) == 8);
	use_fall_journey(f);
	c = f->d.content;
	assert_int_equal(c->score_half_life, 10 * DAY);
	assert_true(journey_score(c, 8, T0, T0) == 8);
	assert_true(journey_score(c, 8, T0, T0 - DAY) == 8); /* never grows backwards */
	assert_true(journey_score(c, 8, T0, T0 + 10 * DAY) == 4);
	assert_true(journey_score(c, 8, T0, T0 + 30 * DAY) == 1);
	double half = journey_score(c, 8, T0, T0 + 5 * DAY);
	assert_true(half > 5.6568542494 && half < 5.6568542495); /* 8 / sqrt(2) */
	/* The same inputs give the same score, bit for bit. */
	assert_true(journey_score(c, 7.3, T0, T0 + 12345) == journey_score(c, 7.3, T0, T0 + 12345));
	/* The fall time: the first second at which 8 has faded under 2 as shown (1.995, just
	 * after two half-lives). */
	int64_t at = journey_fall_at(c, "consideration", 8, T0);
	assert_true(at > T0 + 20 * DAY && at < T0 + 20 * DAY + 3600);
	assert_true(journey_score(c, 8, T0, at) < 1.995);
	assert_true(journey_score(c, 8, T0, at - 1) >= 1.995);
	at = journey_fall_at(c, "consideration", 6.5, T0);
	assert_true(journey_score(c, 6.5, T0, at) < 1.995);
	assert_true(journey_score(c, 6.5, T0, at - 1) >= 1.995);
	/* No fall where no fall rule applies, or for a score already under it. */
	assert_int_equal(journey_fall_at(c, "awareness", 8, T0), 0);
	assert_int_equal(journey_fall_at(c, "consideration", 1.5, T0), 0);
}

static void test_events_add_to_the_decayed_score(void **state)
{
	struct fixture *f = *state;
	use_fall_journey(f);
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	event(f, id, 0, "click", "{}", T0);
	assert_true(lead_score(f, id, T0) == 3);
	/* Ten days on the 3 is 1.5; an open makes it 2.5, stored as of that moment. */
	event(f, id, 0, "open", "{}", T0 + 10 * DAY);
	struct lead lead;
	get_lead(f, id, &lead);
	assert_true(lead.score == 2.5);
	assert_int_equal(lead.score_at, T0 + 10 * DAY);
	assert_int_equal(lead.fall_at, 0); /* no fall rule in awareness */
	assert_true(journey_score_shown(f->d.content, &lead, T0 + 20 * DAY) == 1.25);
	store_lead_clear(&lead);
	/* 2.5 faded to 1.25 plus 3 is 4.25: under the 5 that moves it on. */
	event(f, id, 0, "click", "{}", T0 + 20 * DAY);
	expect_lead(f, id, "awareness", "active");
	event(f, id, 0, "click", "{}", T0 + 20 * DAY);
	expect_lead(f, id, "consideration", "active");
	cJSON *d = last_event(f, id, "stage", NULL);
	expect_detail(d, "reason", "score 7.25 reached 5 (journey.json line 8)");
	cJSON_Delete(d);
}

static void test_a_faded_score_moves_the_lead_back_with_hysteresis(void **state)
{
	struct fixture *f = *state;
	size_t n = 0;
	use_fall_journey(f);
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	event(f, id, 0, "click", "{}", T0);
	event(f, id, 0, "click", "{}", T0); /* 6 points: on to consideration */
	expect_lead(f, id, "consideration", "active");
	/* 6 fades under 2 after log2(3) half-lives, about 15.85 days. */
	int64_t fall = lead_fall_at(f, id);
	assert_true(fall > T0 + 15 * DAY && fall < T0 + 16 * DAY);
	assert_rc(journey_falls_due(f->d.store, f->d.content, fall - 1, 64, &n), 0);
	assert_int_equal(n, 0);
	expect_lead(f, id, "consideration", "active");
	assert_rc(journey_falls_due(f->d.store, f->d.content, fall, 64, &n), 0);
	assert_int_equal(n, 1);
	expect_lead(f, id, "awareness", "active");
	cJSON *d = last_event(f, id, "stage", NULL);
	expect_detail(d, "from", "consideration");
	expect_detail(d, "to", "awareness");
	const cJSON *why = cJSON_GetObjectItemCaseSensitive(d, "reason");
	assert_true(cJSON_IsString(why));
	assert_contains(why->valuestring, "fell below 2 (journey.json line 9)");
	cJSON_Delete(d);
	assert_int_equal(lead_fall_at(f, id), 0); /* nothing more to fall from */
	assert_rc(journey_falls_due(f->d.store, f->d.content, fall + DAY, 64, &n), 0);
	assert_int_equal(n, 0);
	/* Hysteresis: a click takes the score to about 5 minus a hair, under the 5 that
	 * moved it up, and the lead stays; a second one moves it up again. */
	event(f, id, 0, "click", "{}", fall);
	expect_lead(f, id, "awareness", "active");
	assert_true(lead_score(f, id, fall) < 5 && lead_score(f, id, fall) > 4.99);
	event(f, id, 0, "open", "{}", fall);
	expect_lead(f, id, "consideration", "active");
	assert_int_equal(count_events(f, id, "stage"), 4);
}

static void test_an_event_after_the_fall_time_falls_first(void **state)
{
	struct fixture *f = *state;
	use_fall_journey(f);
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	event(f, id, 0, "click", "{}", T0);
	event(f, id, 0, "click", "{}", T0);
	expect_lead(f, id, "consideration", "active");
	/* 30 days on (the timer not run): the open finds the score faded under 2, the lead
	 * falls back, then the open's point counts in awareness. */
	event(f, id, 0, "open", "{}", T0 + 30 * DAY);
	expect_lead(f, id, "awareness", "active");
	double want = 6 * 0.125 + 1;
	assert_true(lead_score(f, id, T0 + 30 * DAY) == want);
	/* The content changed under a due fall (no rule any more): nothing moves, fall_at
	 * is cleared. */
	event(f, id, 0, "click", "{}", T0 + 30 * DAY);
	event(f, id, 0, "click", "{}", T0 + 30 * DAY);
	expect_lead(f, id, "consideration", "active");
	int64_t fall = lead_fall_at(f, id);
	assert_true(fall > T0 + 30 * DAY);
	write_journey_with(f, "  \"score_half_life\": \"10d\",\n", RULES_CLICK_FIRST);
	load_content(f);
	size_t n = 0;
	assert_rc(journey_falls_due(f->d.store, f->d.content, fall, 64, &n), 0);
	assert_int_equal(n, 1);
	expect_lead(f, id, "consideration", "active");
	assert_int_equal(lead_fall_at(f, id), 0);
}

static void test_leaving_the_journey_clears_the_fall(void **state)
{
	struct fixture *f = *state;
	use_fall_journey(f);
	int64_t id = add_lead(f, "maya@example.org", "[]", "{}", "awareness");
	event(f, id, 0, "click", "{}", T0);
	event(f, id, 0, "click", "{}", T0);
	assert_true(lead_fall_at(f, id) > 0);
	event(f, id, 0, "unsubscribe", "{}", T0 + 60);
	expect_lead(f, id, "consideration", "unsubscribed");
	assert_int_equal(lead_fall_at(f, id), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_enter_stage_picks_the_when_sequence_for_a_vip_lead),
		T(test_enter_stage_gives_other_leads_the_default_sequence),
		T(test_enter_new_is_enter_stage_for_a_lead_just_added),
		T(test_enter_stage_records_from_to_and_sequence),
		T(test_enter_stage_ends_the_previous_enrolment),
		T(test_enter_stage_refuses_unknown_stages_and_foreign_sequences),
		T(test_stage_without_a_sequence_leaves_the_lead_enrolled_in_nothing),
		T(test_events_add_their_points_to_the_score),
		T(test_first_matching_rule_wins),
		T(test_rule_order_decides_between_two_matching_rules),
		T(test_from_restricts_a_rule_to_its_stages),
		T(test_a_move_to_the_current_stage_is_ignored),
		T(test_reply_without_a_rule_hands_the_lead_off),
		T(test_reply_rule_hands_the_lead_off),
		T(test_opt_outs_stop_the_drip_whatever_the_rules_say),
		T(test_purchase_makes_the_lead_a_customer_in_the_last_stage),
		T(test_events_after_handoff_do_not_move_the_lead),
		T(test_events_for_an_erased_lead_are_kept_without_detail_and_move_nothing),
		T(test_cond_on_a_tag),
		T(test_cond_on_an_attribute_present_or_equal),
		T(test_cond_opened_counts_an_open_or_a_click_of_that_step),
		T(test_cond_clicked_needs_a_click_of_that_step),
		T(test_cond_event_needs_that_kind_for_the_lead),
		T(test_step_done_schedules_the_next_step_after_its_delay),
		T(test_step_done_after_the_last_step_applies_the_finished_rule),
		T(test_step_done_when_the_finished_rule_fails_keeps_the_completion),
		T(test_step_done_after_the_last_step_without_a_rule_completes),
		T(test_step_done_after_the_lead_moved_on_schedules_nothing),
		T(test_reentering_a_stage_never_leaves_an_enrolment_that_cannot_progress),
		T(test_sample_journey_reply_in_awareness_hands_off_not_score_move),
		T(test_decay_halves_the_score_every_half_life),
		T(test_events_add_to_the_decayed_score),
		T(test_a_faded_score_moves_the_lead_back_with_hysteresis),
		T(test_an_event_after_the_fall_time_falls_first),
		T(test_leaving_the_journey_clears_the_fall),
	};
	log_set_level(LOG_LEVEL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
