/* test_inbox.c - what an inbound message does to a lead: matching and effects (inbox_apply),
 * on an in-memory store; the IMAP side is tested against Dovecot in test_inbox.py. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/inbox.h"
#include "dripd/journey.h"
#include "dripd/token.h"
#include "testutil.h"

static const char secret[] = "inbox-test-secret-0123456789";

static int setup(void **state)
{
	struct dripd *d = xcalloc(1, sizeof(*d));
	char err[256];
	testutil_dripd_init(d, config_defaults(), ":memory:");
	d->keys = token_keys_new();
	if (token_keys_add(d->keys, secret, strlen(secret), err, sizeof(err)))
		fail_msg("%s", err);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dripd *d = *state;
	token_keys_free(d->keys);
	testutil_dripd_fini(d);
	free(d);
	return 0;
}

/* A lead in awareness, its first touch pending and its id in *touch. */
static int64_t add_lead(struct dripd *d, const char *email, int64_t *touch)
{
	char err[256];
	int64_t now = clock_now(&d->clock);
	struct lead lead = { .email = (char *)email,
			     .first_name = "",
			     .last_name = "",
			     .company = "",
			     .title = "",
			     .tz = "",
			     .stage = "awareness",
			     .tags = "[]",
			     .attrs = "{}" };
	assert_rc(store_lead_insert(d->store, &lead, now), 0);
	if (journey_enter_stage(d->store, d->content, &lead, "awareness", NULL, now, err,
				sizeof(err)))
		fail_msg("%s", err);
	struct touch t;
	assert_rc(store_touch_next_for_lead(d->store, lead.id, &t), 0);
	if (touch)
		*touch = t.id;
	store_touch_clear(&t);
	return lead.id;
}

static void apply(struct dripd *d, const char *msg, enum inbox_match want)
{
	enum inbox_match got = INBOX_MATCH_NONE;
	assert_rc(store_begin(d->store), 0);
	assert_rc(inbox_apply(d, msg, strlen(msg), clock_now(&d->clock), &got), 0);
	assert_rc(store_commit(d->store), 0);
	if (got != want)
		fail_msg("expected match %d, got %d for:\n%s", want, got, msg);
}

static const char *status_of(struct dripd *d, int64_t id, char *out, size_t n)
{
	struct lead l;
	assert_rc(store_lead_by_id(d->store, id, &l), 0);
	snprintf(out, n, "%s", l.status);
	store_lead_clear(&l);
	return out;
}

static void test_a_reply_by_its_signed_address_hands_the_lead_over(void **state)
{
	struct dripd *d = *state;
	int64_t touch, lead = add_lead(d, "maya@acme.example", &touch);
	struct token_claims cl = { .kind = TOKEN_REPLY, .touch_id = touch };
	char tok[TOKEN_MAX_LEN], st[32];
	token_sign(d->keys, &cl, TOKEN_ADDRESS, tok, sizeof(tok));
	char *m = xasprintf("From: Boss <boss@acme.example>\r\nTo: reply+%s@in.example\r\n"
			    "Subject: Re: hi\r\n\r\nCall me tomorrow.\r\n> quoted\r\n",
			    tok);
	apply(d, m, INBOX_MATCH_TOKEN);
	free(m);
	struct testutil_events ev;
	testutil_events_of(d->store, lead, &ev);
	bool found = false;
	for (int i = 0; i < ev.n && i < TESTUTIL_EVENTS_MAX; i++)
		if (strcmp(ev.kind[i], "reply") == 0) {
			found = true;
			assert_contains(ev.detail[i], "\"excerpt\":\"Call me tomorrow.\"");
			assert_contains(ev.detail[i], "\"colleague\":true");
			assert_int_equal(ev.touch[i], touch);
		}
	assert_true(found);
	assert_string_equal(status_of(d, lead, st, sizeof(st)), "handoff");
	/* A forged token matches nothing. */
	m = xasprintf("From: x@else.example\r\nTo: reply+%c%s@in.example\r\nSubject: hi\r\n\r\nx",
		      tok[0] == 'a' ? 'b' : 'a', tok + 1);
	apply(d, m, INBOX_MATCH_NONE);
	free(m);
}

static void test_an_auto_reply_moves_the_next_touch_past_the_return_date(void **state)
{
	struct dripd *d = *state;
	int64_t touch, lead = add_lead(d, "olga@corp.example", &touch);
	int64_t now = clock_now(&d->clock);
	/* A return date 20 days on, written as the sender would (ISO, no doubt about it). */
	int64_t back = (now / 86400 + 20) * 86400;
	time_t tt = (time_t)back;
	struct tm tm;
	char day[16], st[32];
	gmtime_r(&tt, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	char *m = xasprintf("From: olga@corp.example\r\nAuto-Submitted: auto-replied\r\n"
			    "Subject: Out of office\r\n\r\nI am away until %s.\r\n",
			    day);
	apply(d, m, INBOX_MATCH_SENDER);
	free(m);
	struct touch t;
	assert_rc(store_touch_get(d->store, touch, &t), 0);
	assert_int_equal(t.due_at, back + 86400);
	store_touch_clear(&t);
	assert_string_equal(status_of(d, lead, st, sizeof(st)), "active");
	/* Without a date: the configured pause (7 days by default). */
	int64_t touch2, lead2 = add_lead(d, "nodate@corp.example", &touch2);
	(void)lead2;
	apply(d, "From: nodate@corp.example\r\nX-Autoreply: yes\r\nSubject: away\r\n\r\nAway.\r\n",
	      INBOX_MATCH_SENDER);
	assert_rc(store_touch_get(d->store, touch2, &t), 0);
	assert_true(t.due_at >= now + 7 * 86400);
	assert_true(t.due_at <= clock_now(&d->clock) + 7 * 86400);
	store_touch_clear(&t);
}

/* A DSN or complaint that carries a bounce+ tag that does not verify is forged: it names a
 * lead, but the lead is neither bounced nor suppressed. The same report with the good tag is. */
static void test_a_report_with_a_forged_tag_changes_nothing(void **state)
{
	struct dripd *d = *state;
	int64_t touch, lead = add_lead(d, "victim@corp.example", &touch);
	struct token_claims cl = { .kind = TOKEN_BOUNCE, .touch_id = touch };
	char tok[TOKEN_MAX_LEN], forged[TOKEN_MAX_LEN], st[32], reason[64];
	token_sign(d->keys, &cl, TOKEN_ADDRESS, tok, sizeof(tok));
	snprintf(forged, sizeof(forged), "%s", tok);
	forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == 'a' ? 'b' : 'a';
	static const char dsn[] =
		"From: MAILER-DAEMON@relay.example\r\nTo: bounce+%s@in.example\r\n"
		"Subject: Undelivered Mail\r\nContent-Type: multipart/report; "
		"report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: "
		"message/delivery-status\r\n\r\nReporting-MTA: dns; relay\r\n\r\n"
		"Final-Recipient: rfc822; victim@corp.example\r\nAction: failed\r\n"
		"Status: 5.1.1\r\n--b--\r\n";
	static const char arf[] =
		"From: fbl@isp.example\r\nTo: bounce+%s@in.example\r\nSubject: report\r\n"
		"Content-Type: multipart/report; report-type=feedback-report; boundary=f\r\n\r\n"
		"--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
		"Original-Rcpt-To: victim@corp.example\r\n--f--\r\n";
	for (int i = 0; i < 2; i++) {
		char *m = xasprintf(i ? arf : dsn, forged);
		apply(d, m, INBOX_MATCH_NONE);
		free(m);
		assert_string_equal(status_of(d, lead, st, sizeof(st)), "active");
		assert_rc(store_suppressed(d->store, "victim@corp.example", reason, sizeof(reason)),
			  DRIP_ENOT_FOUND);
	}
	/* A tag of another kind (a reply tag where a bounce tag goes) is no better. */
	struct token_claims rc = { .kind = TOKEN_REPLY, .touch_id = touch };
	char reply[TOKEN_MAX_LEN];
	token_sign(d->keys, &rc, TOKEN_ADDRESS, reply, sizeof(reply));
	char *m = xasprintf(dsn, reply);
	apply(d, m, INBOX_MATCH_NONE);
	free(m);
	assert_string_equal(status_of(d, lead, st, sizeof(st)), "active");
	/* The genuine tag bounces the lead. */
	m = xasprintf(dsn, tok);
	apply(d, m, INBOX_MATCH_TOKEN);
	free(m);
	assert_string_equal(status_of(d, lead, st, sizeof(st)), "bounced");
	assert_rc(store_suppressed(d->store, "victim@corp.example", reason, sizeof(reason)), 0);
}

static void test_soft_bounces_suppress_after_the_limit(void **state)
{
	struct dripd *d = *state;
	int64_t lead = add_lead(d, "full@mx.example", NULL);
	char st[32], reason[64];
	const char *dsn = "From: MAILER-DAEMON@relay.example\r\nSubject: Delayed Mail\r\n"
			  "Content-Type: multipart/report; report-type=delivery-status; "
			  "boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
			  "Reporting-MTA: dns; relay\r\n\r\nFinal-Recipient: rfc822; "
			  "full@mx.example\r\nAction: delayed\r\nStatus: 4.2.2\r\n--b--\r\n";
	for (int i = 0; i < 2; i++)
		apply(d, dsn, INBOX_MATCH_RECIPIENT);
	assert_string_equal(status_of(d, lead, st, sizeof(st)), "active");
	assert_rc(store_suppressed(d->store, "full@mx.example", reason, sizeof(reason)),
		  DRIP_ENOT_FOUND);
	apply(d, dsn, INBOX_MATCH_RECIPIENT);
	assert_string_equal(status_of(d, lead, st, sizeof(st)), "bounced");
	assert_rc(store_suppressed(d->store, "full@mx.example", reason, sizeof(reason)), 0);
}

static void test_a_colleague_reply_follows_the_colleague_setting(void **state)
{
	struct dripd *d = *state;
	char st[32];
	int64_t a = add_lead(d, "ann@bigco.example", NULL);
	int64_t b = add_lead(d, "bob@bigco.example", NULL);
	const char *m = "From: cfo@bigco.example\r\nSubject: stop please\r\n\r\nWe are set.\r\n";
	/* "lead" (the default): two leads there, so nobody can be sure which: left alone. */
	apply(d, m, INBOX_MATCH_NONE);
	assert_string_equal(status_of(d, a, st, sizeof(st)), "active");
	free(d->cfg->inbox.colleague);
	d->cfg->inbox.colleague = xstrdup("company");
	apply(d, m, INBOX_MATCH_COMPANY);
	assert_string_equal(status_of(d, a, st, sizeof(st)), "handoff");
	assert_string_equal(status_of(d, b, st, sizeof(st)), "handoff");
	/* Never for a free-mail domain. */
	int64_t g = add_lead(d, "someone@gmail.com", NULL);
	apply(d, "From: other@gmail.com\r\nSubject: hi\r\n\r\nhello\r\n", INBOX_MATCH_NONE);
	assert_string_equal(status_of(d, g, st, sizeof(st)), "active");
}

static void test_unknown_and_unmatched_mail_changes_nothing(void **state)
{
	struct dripd *d = *state;
	char st[32];
	int64_t lead = add_lead(d, "lee@example.org", NULL);
	apply(d,
	      "From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n\r\nlee@example.org\r\n",
	      INBOX_MATCH_NONE);
	apply(d, "garbage\0\0", INBOX_MATCH_NONE);
	assert_string_equal(status_of(d, lead, st, sizeof(st)), "active");
	struct testutil_events ev;
	testutil_events_of(d->store, lead, &ev);
	for (int i = 0; i < ev.n && i < TESTUTIL_EVENTS_MAX; i++)
		assert_string_not_equal(ev.kind[i], "reply");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_a_reply_by_its_signed_address_hands_the_lead_over, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_an_auto_reply_moves_the_next_touch_past_the_return_date, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_a_report_with_a_forged_tag_changes_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_soft_bounces_suppress_after_the_limit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_a_colleague_reply_follows_the_colleague_setting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_and_unmatched_mail_changes_nothing,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
