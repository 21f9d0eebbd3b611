/* test_classify.c - the inbound classifier: fixtures of real shapes, a return-date corpus,
 * hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dripd/classify.h"
#include "dripd/error.h"
#include "dripd/util.h"
#include "testutil.h"

#define LEAD "maya@example.org"
#define MSGID "<t42.abcdef@example.com>"
#define REPLY "reply+abcdefghijklmnopqrstuvwx@in.example.com"
#define BOUNCE "bounce+zyxwvutsrqponmlkjihgfedc@in.example.com"
#define SENDER "ana@example.com"

/* 2026-11-25 12:00 UTC, a Wednesday: "now" for every test here. */
static const int64_t now_utc = 1795608000;

/* The fixture `name` of tests/fixtures/inbox with its placeholders filled and CRLF lines. */
static char *fixture(const char *name, size_t *len)
{
	const char *src = getenv("DRIPD_SOURCE_DIR");
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/fixtures/inbox/%s", src ? src : ".", name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open fixture %s", path);
	struct buf raw, out;
	buf_init(&raw);
	buf_init(&out);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&raw, chunk, n);
	fclose(f);
	static const char *const ph[][2] = { { "{{LEAD}}", LEAD },
					     { "{{MSGID}}", MSGID },
					     { "{{REPLY}}", REPLY },
					     { "{{BOUNCE}}", BOUNCE },
					     { "{{SENDER}}", SENDER } };
	for (size_t i = 0; i < raw.len;) {
		bool done = false;
		for (size_t k = 0; k < 5 && !done; k++) {
			size_t pl = strlen(ph[k][0]);
			if (raw.len - i >= pl && memcmp(raw.data + i, ph[k][0], pl) == 0) {
				buf_adds(&out, ph[k][1]);
				i += pl;
				done = true;
			}
		}
		if (done)
			continue;
		if (raw.data[i] == '\n')
			buf_addc(&out, '\r');
		buf_addc(&out, raw.data[i++]);
	}
	buf_free(&raw);
	*len = out.len;
	return buf_steal(&out);
}

static void classify_fixture(const char *name, struct classify_result *r)
{
	size_t len;
	char *m = fixture(name, &len);
	classify_message(m, len, now_utc, r);
	free(m);
}

static char *ymd(int64_t t, char out[16])
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 16, "%Y-%m-%d", &tm);
	return out;
}

#define assert_kind(r, k)                                                           \
	do {                                                                        \
		if ((r).kind != (k))                                                \
			fail_msg("expected kind %s, got %s", classify_kind_name(k), \
				 classify_kind_name((r).kind));                     \
	} while (0)

static void test_threaded_reply_is_a_reply_with_its_first_lines(void **state)
{
	(void)state;
	struct classify_result r;
	classify_fixture("reply_threaded.eml", &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_string_equal(r.from, LEAD);
	assert_string_equal(r.subject, "Re: Your pipeline review");
	assert_true(r.nrefs >= 1);
	assert_string_equal(r.refs[0], MSGID);
	/* Quoted-printable decoded, soft line break joined, quote and its intro cut. */
	assert_string_equal(r.excerpt, "Hi Ana,\nThanks \xe2\x80\x94 this is timely. Could we talk "
				       "on Thursday about the forecast review?\nMaya");
}

static void test_reply_with_only_the_plus_address_carries_its_token(void **state)
{
	(void)state;
	struct classify_result r;
	classify_fixture("reply_plus_only.eml", &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_int_equal(r.nrefs, 0);
	assert_int_equal(r.ntokens, 1);
	assert_int_equal(r.tokens[0].kind, 'r');
	assert_string_equal(r.tokens[0].token, "abcdefghijklmnopqrstuvwx");
	assert_string_equal(r.excerpt, "Yes please, send me the checklist.");
}

static void test_outlook_out_of_office_is_an_auto_reply_with_its_us_date(void **state)
{
	(void)state;
	struct classify_result r;
	char d[16];
	classify_fixture("ooo_outlook.eml", &r);
	assert_kind(r, CLASSIFY_AUTO_REPLY);
	assert_string_equal(r.auto_reason, "Auto-Submitted");
	assert_string_equal(ymd(r.return_date, d), "2026-12-07");
}

static void test_gmail_vacation_in_german_is_an_auto_reply_with_its_date(void **state)
{
	(void)state;
	struct classify_result r;
	char d[16];
	classify_fixture("ooo_gmail.eml", &r);
	assert_kind(r, CLASSIFY_AUTO_REPLY);
	assert_string_equal(r.subject, "Abwesenheitsnotiz: Urlaub");
	assert_string_equal(ymd(r.return_date, d), "2026-12-07");
	assert_int_equal(r.tokens[0].kind, 'r');
}

static void test_subject_alone_makes_an_auto_reply(void **state)
{
	(void)state;
	static const char *const subjects[] = {
		"Out of Office: Re: hello",
		"Automatische Antwort: Ihre Anfrage",
		"=?iso-8859-1?Q?R=E9ponse_automatique=A0:_votre_message?=",
		"Respuesta autom=?utf-8?q?=C3=A1?=tica",
		"Afwezig: uw bericht",
		"=?UTF-8?B?UmVzcG9zdGEgYXV0b23DoXRpY2E=?=",
		NULL
	};
	for (size_t i = 0; subjects[i]; i++) {
		char *m =
			xasprintf("From: x@corp.example\r\nSubject: %s\r\n\r\nhi\r\n", subjects[i]);
		struct classify_result r;
		classify_message(m, strlen(m), now_utc, &r);
		if (r.kind != CLASSIFY_AUTO_REPLY)
			fail_msg("subject \"%s\" (decoded \"%s\"): expected auto_reply, got %s",
				 subjects[i], r.subject, classify_kind_name(r.kind));
		free(m);
	}
}

static void test_auto_reply_headers(void **state)
{
	(void)state;
	static const char *const headers[] = { "Auto-Submitted: auto-replied", "X-Autoreply: yes",
					       "Precedence: auto_reply", "X-Autorespond: on",
					       NULL };
	for (size_t i = 0; headers[i]; i++) {
		char *m = xasprintf("From: x@corp.example\r\n%s\r\nSubject: Re: hi\r\n\r\nback on "
				    "the 3rd of December\r\n",
				    headers[i]);
		struct classify_result r;
		char d[16];
		classify_message(m, strlen(m), now_utc, &r);
		assert_kind(r, CLASSIFY_AUTO_REPLY);
		assert_string_equal(ymd(r.return_date, d), "2026-12-03");
		free(m);
	}
	const char *no =
		"From: x@corp.example\r\nAuto-Submitted: no\r\nSubject: Re: hi\r\n\r\nok\r\n";
	struct classify_result r;
	classify_message(no, strlen(no), now_utc, &r);
	assert_kind(r, CLASSIFY_REPLY);
}

static void test_postfix_dsn_5xx_is_a_hard_bounce_for_the_reported_recipient(void **state)
{
	(void)state;
	struct classify_result r;
	classify_fixture("dsn_postfix_hard.eml", &r);
	assert_kind(r, CLASSIFY_BOUNCE);
	assert_string_equal(r.recipient, LEAD);
	assert_string_equal(r.status, "5.1.1");
	assert_string_equal(r.original_id, MSGID);
	assert_contains(r.diagnostic, "User unknown");
	assert_int_equal(r.tokens[0].kind, 'b');
}

static void test_postfix_delay_dsn_is_a_soft_bounce(void **state)
{
	(void)state;
	struct classify_result r;
	classify_fixture("dsn_postfix_soft.eml", &r);
	assert_kind(r, CLASSIFY_SOFT_BOUNCE);
	assert_string_equal(r.recipient, LEAD);
	assert_string_equal(r.status, "4.2.2");
}

static void test_exchange_dsns_hard_and_soft(void **state)
{
	(void)state;
	struct classify_result r;
	classify_fixture("dsn_exchange_hard.eml", &r);
	assert_kind(r, CLASSIFY_BOUNCE);
	assert_string_equal(r.recipient, LEAD);
	assert_string_equal(r.status, "5.1.10");
	assert_string_equal(r.original_id, MSGID);
	classify_fixture("dsn_exchange_soft.eml", &r);
	assert_kind(r, CLASSIFY_SOFT_BOUNCE);
	assert_string_equal(r.status, "4.4.7");
}

static void test_arf_report_is_a_complaint_for_the_original_recipient(void **state)
{
	(void)state;
	struct classify_result r;
	classify_fixture("arf_complaint.eml", &r);
	assert_kind(r, CLASSIFY_COMPLAINT);
	assert_string_equal(r.recipient, LEAD);
	assert_string_equal(r.original_id, MSGID);
}

static void test_stranger_and_unsubscribe(void **state)
{
	(void)state;
	struct classify_result r;
	classify_fixture("stranger.eml", &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_string_equal(r.from, "sam@vendor.example.net");
	assert_false(r.unsubscribe);
	classify_fixture("unsubscribe.eml", &r);
	assert_true(r.unsubscribe);
	assert_string_equal(r.from, LEAD);
}

static void test_a_bounce_that_is_not_rfc3464_is_never_a_reply(void **state)
{
	(void)state;
	const char *m = "From: MAILER-DAEMON@old.example\r\nSubject: failure notice\r\n\r\n"
			"Hi. This is the qmail-send program. <maya@example.org>: no mailbox\r\n";
	struct classify_result r;
	classify_message(m, strlen(m), now_utc, &r);
	assert_kind(r, CLASSIFY_UNKNOWN);
	/* A report that only says "delivered" is no bounce either. */
	const char *ok = "From: postmaster@x.example\r\nContent-Type: multipart/report; "
			 "report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: "
			 "message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
			 "Final-Recipient: rfc822; a@b.example\r\nAction: delivered\r\n"
			 "Status: 2.0.0\r\n--b--\r\n";
	classify_message(ok, strlen(ok), now_utc, &r);
	assert_kind(r, CLASSIFY_UNKNOWN);
}

static void test_hostile_input_is_survived(void **state)
{
	(void)state;
	struct classify_result r;
	/* A 1 MB header, NUL bytes, a boundary that never closes, nesting past the cap. */
	struct buf b;
	buf_init(&b);
	buf_adds(&b, "From: Evil <evil@bad.example>\r\nX-Big: ");
	for (int i = 0; i < 1024 * 1024 / 64; i++)
		buf_adds(&b,
			 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\t");
	buf_adds(&b, "x\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"z\"\r\n\r\n");
	buf_add(&b, "\0\0\0--z\r\n", 9);
	for (int i = 0; i < 40; i++)
		buf_printf(&b, "--z\r\nContent-Type: multipart/mixed; boundary=\"z\"\r\n\r\n");
	buf_add(&b, "text\0with\0nuls", 15);
	classify_message(b.data, b.len, now_utc, &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_string_equal(r.from, "evil@bad.example");
	assert_string_equal(r.subject, "hi");
	/* Every prefix of it too (truncated fetches), and of every fixture. */
	for (size_t n = 0; n < 4096; n += 7)
		classify_message(b.data + b.len - 4096, n, now_utc, &r);
	buf_free(&b);
	static const char *const names[] = { "dsn_postfix_hard.eml", "arf_complaint.eml",
					     "ooo_gmail.eml", "dsn_exchange_hard.eml", NULL };
	for (size_t i = 0; names[i]; i++) {
		size_t len;
		char *m = fixture(names[i], &len);
		for (size_t n = 0; n <= len; n++) {
			char *copy = xmalloc(n ? n : 1);
			memcpy(copy, m, n);
			classify_message(copy, n, now_utc, &r);
			free(copy);
		}
		free(m);
	}
	const char *nothing = "\r\n\r\n";
	classify_message(nothing, 4, now_utc, &r);
	assert_kind(r, CLASSIFY_UNKNOWN);
}

/* True when s is valid UTF-8 with no control characters but tab. */
static bool clean_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80             ? 0
			: (*p & 0xE0) == 0xC0 ? 1
			: (*p & 0xF0) == 0xE0 ? 2
			: (*p & 0xF8) == 0xF0 ? 3
					      : -1;
		if (n < 0 || (*p < 0x20 && *p != '\t') || *p == 0x7F)
			return false;
		for (p++; n > 0; n--, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

/* Issue 9's broken MIME, each from a lead: still a reply from that sender, its fields clean
 * UTF-8 and within their caps, whatever the body does. */
static void test_broken_mime_is_still_a_reply(void **state)
{
	(void)state;
	struct classify_result r;
	struct buf b;
	/* multipart with no boundary: the body is read as the text it most likely is. */
	const char *noboundary = "From: " LEAD "\r\nSubject: Re: hi\r\nMIME-Version: 1.0\r\n"
				 "Content-Type: multipart/mixed\r\n\r\nYes, call me.\r\n";
	classify_message(noboundary, strlen(noboundary), now_utc, &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_string_equal(r.from, LEAD);
	assert_string_equal(r.excerpt, "Yes, call me.");
	/* 10,000 nested multiparts, each with its own boundary. */
	buf_init(&b);
	buf_adds(&b, "From: " LEAD "\r\nSubject: Re: deep\r\nMIME-Version: 1.0\r\n"
		     "Content-Type: multipart/mixed; boundary=\"n0\"\r\n\r\n");
	for (int i = 0; i < 10000; i++)
		buf_printf(&b, "--n%d\r\nContent-Type: multipart/mixed; boundary=\"n%d\"\r\n\r\n",
			   i, i + 1);
	buf_adds(&b, "--n10000\r\nContent-Type: text/plain\r\n\r\nDeep down.\r\n--n10000--\r\n");
	classify_message(b.data, b.len, now_utc, &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_string_equal(r.subject, "Re: deep");
	assert_true(clean_utf8(r.excerpt));
	buf_free(&b);
	/* Bad base64: not a crash, not garbage control bytes in the excerpt. */
	const char *bad64 = "From: " LEAD "\r\nSubject: Re: b64\r\nMIME-Version: 1.0\r\n"
			    "Content-Type: text/plain; charset=utf-8\r\n"
			    "Content-Transfer-Encoding: base64\r\n\r\n"
			    "!!!*** not base64 at all ===\r\nSGVs=bG8=\r\n\x01\x02\xff\xfe\r\n";
	classify_message(bad64, strlen(bad64), now_utc, &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_true(clean_utf8(r.excerpt));
	/* A charset nobody knows, in the subject's encoded word and the body, with 8-bit bytes. */
	const char *bogus = "From: " LEAD "\r\nSubject: =?x-no-such-charset?B?/+7d3A==?= ok\r\n"
			    "MIME-Version: 1.0\r\n"
			    "Content-Type: text/plain; charset=\"x-no-such-charset\"\r\n"
			    "Content-Transfer-Encoding: 8bit\r\n\r\nBitte \xe4\xf6\xfc \xc3\x28 "
			    "r\xfc"
			    "ckruf.\r\n";
	classify_message(bogus, strlen(bogus), now_utc, &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_true(clean_utf8(r.subject));
	assert_true(clean_utf8(r.excerpt));
	assert_non_null(strstr(r.subject, "ok"));
	/* A 50 MB body (the inbox fetches at most 1 MB, but classify takes whatever it gets). */
	size_t big = 50u * 1024 * 1024;
	char *m = xmalloc(big);
	const char *head = "From: " LEAD "\r\nSubject: Re: big\r\n\r\nSee attached.\r\n";
	memcpy(m, head, strlen(head));
	memset(m + strlen(head), 'A', big - strlen(head));
	classify_message(m, big, now_utc, &r);
	assert_kind(r, CLASSIFY_REPLY);
	assert_true(strlen(r.excerpt) < CLASSIFY_EXCERPT_MAX);
	free(m);
}

static void test_free_mail_domains(void **state)
{
	(void)state;
	assert_true(classify_free_mail("gmail.com"));
	assert_true(classify_free_mail("outlook.com"));
	assert_true(classify_free_mail("GMX.de"));
	assert_false(classify_free_mail("example.org"));
}

/* ---- the return-date corpus ------------------------------------------------------------- */

struct corpus_case {
	const char *lang;
	const char *locale; /* as a sender's Content-Language or country would say */
	const char *text;
	const char *want; /* YYYY-MM-DD, or NULL when no date is stated */
};

/* Written against Wednesday 25 November 2026. */
static const struct corpus_case corpus[] = {
	{ "en", NULL,
	  "I am out of the office until Monday, 7 December, with limited access to email.",
	  "2026-12-07" },
	{ "en", NULL, "I'm currently out of office and will return on December 14th.",
	  "2026-12-14" },
	{ "en", "en-GB", "I will be back on Tuesday 1st December.", "2026-12-01" },
	{ "en", NULL,
	  "Thank you for your email. I am on annual leave from 30 November to 4 December 2026 "
	  "inclusive.",
	  "2026-12-04" },
	{ "en", "en-US", "I'm away until 12/07 with no access to email.", "2026-12-07" },
	{ "en", "en-GB", "Out of office until 07/12/2026.", "2026-12-07" },
	{ "en", NULL, "I'll be back in the office on Monday.", "2026-11-30" },
	{ "en", NULL, "I am travelling and will be back Dec. 3rd.", "2026-12-03" },
	{ "en", NULL, "I am on parental leave until January 4, 2027.", "2027-01-04" },
	{ "en", NULL, "I'm out from the 1st to the 12th of December.", "2026-12-12" },
	{ "en", NULL, "Returning Friday, November 27.", "2026-11-27" },
	{ "en", NULL,
	  "I will be out of the office starting 26 November 2026 and returning on 2 December 2026.",
	  "2026-12-02" },
	{ "en", NULL, "Back on 4 January.", "2027-01-04" },
	{ "en", NULL, "I'm back on Dec 7.\n\nOn 20 Nov 2026, Ana Ruiz wrote:\n> hello",
	  "2026-12-07" },
	{ "en", NULL, "Back Monday 30 November at 9.30.", "2026-11-30" },
	{ "en", NULL, "I am out of the office with limited access to email.", NULL },
	{ "de", NULL, "Ich bin bis zum 4. Dezember nicht im Büro.", "2026-12-04" },
	{ "de", NULL,
	  "Vielen Dank für Ihre Nachricht. Ich bin vom 30.11. bis 11.12.2026 im Urlaub.",
	  "2026-12-11" },
	{ "de", NULL, "Ab Montag, dem 7. Dezember bin ich wieder erreichbar.", "2026-12-07" },
	{ "de", NULL, "Ich bin ab dem 14.12. wieder im Büro.", "2026-12-14" },
	{ "de", NULL, "Ich bin am Freitag wieder da.", "2026-11-27" },
	{ "de", NULL, "Ich befinde mich bis einschließlich 3. Januar 2027 im Urlaub.",
	  "2027-01-03" },
	{ "de", NULL, "Ich bin bis 2.12. abwesend.", "2026-12-02" },
	{ "de", NULL, "Abwesend vom 1. bis 8. Dezember.", "2026-12-08" },
	{ "de", NULL, "Ich bin bis zum 1. M\xc3\xa4rz 2027 in Elternzeit.", "2027-03-01" },
	{ "de", NULL, "Ich bin derzeit nicht im Büro. Ihre Nachricht wird nicht weitergeleitet.",
	  NULL },
	{ "fr", NULL, "Je suis absent du bureau jusqu'au lundi 7 décembre inclus.", "2026-12-07" },
	{ "fr", NULL, "Je serai de retour le 1er décembre.", "2026-12-01" },
	{ "fr", NULL, "Je suis en congés du 30/11 au 04/12.", "2026-12-04" },
	{ "fr", NULL,
	  "Absente jusqu'au 10/12/2026, je prendrai connaissance de votre message à mon retour.",
	  "2026-12-10" },
	{ "fr", NULL, "Je serai de retour mercredi.", "2026-12-02" },
	{ "fr", NULL, "En congés du 1er au 15 décembre.", "2026-12-15" },
	{ "fr", NULL, "De retour le 5 janvier 2027.", "2027-01-05" },
	{ "fr", NULL, "Je suis absente jusqu'au 3 f\xe9vrier.", "2027-02-03" }, /* Latin-1 */
	{ "es", NULL, "Estaré fuera de la oficina hasta el 9 de diciembre.", "2026-12-09" },
	{ "es", NULL, "Estoy de vacaciones del 1 al 12 de diciembre.", "2026-12-12" },
	{ "es", NULL, "Volveré el lunes 30 de noviembre.", "2026-11-30" },
	{ "es", NULL, "Me reincorporo el 03/12/2026.", "2026-12-03" },
	{ "es", NULL, "Estaré ausente hasta el jueves.", "2026-11-26" },
	{ "es", NULL, "Regreso el 1º de diciembre.", "2026-12-01" },
	{ "es", NULL, "Estaré fuera hasta el 7 de enero de 2027.", "2027-01-07" },
	{ "nl", NULL, "Ik ben afwezig tot en met 4 december.", "2026-12-04" },
	{ "nl", NULL, "Ik ben met vakantie van 30 november t/m 11 december 2026.", "2026-12-11" },
	{ "nl", NULL, "Vanaf maandag 7 december ben ik weer bereikbaar.", "2026-12-07" },
	{ "nl", NULL, "Ik ben tot 03-12-2026 niet op kantoor.", "2026-12-03" },
	{ "nl", NULL, "Ik ben vrijdag weer terug.", "2026-11-27" },
	{ "nl", NULL, "Ik ben afwezig tot 2 dec.", "2026-12-02" },
	{ "nl", NULL, "Ik ben op 8ste december terug.", "2026-12-08" },
	{ "pt", NULL, "Estou de férias até 4 de dezembro.", "2026-12-04" },
	{ "pt", NULL, "Estarei ausente do escritório de 30 de novembro a 11 de dezembro de 2026.",
	  "2026-12-11" },
	{ "pt", NULL, "Retorno na segunda-feira, dia 7 de dezembro.", "2026-12-07" },
	{ "pt", NULL, "Estou fora até 03/12.", "2026-12-03" },
	{ "pt", NULL, "Volto na sexta-feira.", "2026-11-27" },
	{ "pt", NULL, "Retorno em 2 de janeiro.", "2027-01-02" },
	{ "pt", NULL, "Estarei de licença até 15 de março de 2027.", "2027-03-15" },
	{ "iso", NULL, "Away until 2026-12-09.", "2026-12-09" },
};

static void test_return_date_corpus(void **state)
{
	(void)state;
	size_t n = sizeof(corpus) / sizeof(corpus[0]), bad = 0;
	const char *langs[] = { "en", "de", "fr", "es", "nl", "pt" };
	for (size_t k = 0; k < 6; k++) {
		size_t per = 0;
		for (size_t i = 0; i < n; i++)
			per += strcmp(corpus[i].lang, langs[k]) == 0;
		if (per < 5)
			fail_msg("the corpus has %zu phrasings in %s, expected at least 5", per,
				 langs[k]);
	}
	assert_true(n >= 40);
	for (size_t i = 0; i < n; i++) {
		int64_t when = 0;
		char got[16] = "(none)";
		int rc = classify_return_date(corpus[i].text, strlen(corpus[i].text), now_utc,
					      corpus[i].locale, &when);
		if (rc == 0)
			ymd(when, got);
		const char *want = corpus[i].want ? corpus[i].want : "(none)";
		if (strcmp(got, want) != 0) {
			print_message("[%s] \"%s\": expected %s, got %s\n", corpus[i].lang,
				      corpus[i].text, want, got);
			bad++;
		}
	}
	if (bad)
		fail_msg("%zu of %zu return dates read wrong", bad, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threaded_reply_is_a_reply_with_its_first_lines),
		cmocka_unit_test(test_reply_with_only_the_plus_address_carries_its_token),
		cmocka_unit_test(test_outlook_out_of_office_is_an_auto_reply_with_its_us_date),
		cmocka_unit_test(test_gmail_vacation_in_german_is_an_auto_reply_with_its_date),
		cmocka_unit_test(test_subject_alone_makes_an_auto_reply),
		cmocka_unit_test(test_auto_reply_headers),
		cmocka_unit_test(test_postfix_dsn_5xx_is_a_hard_bounce_for_the_reported_recipient),
		cmocka_unit_test(test_postfix_delay_dsn_is_a_soft_bounce),
		cmocka_unit_test(test_exchange_dsns_hard_and_soft),
		cmocka_unit_test(test_arf_report_is_a_complaint_for_the_original_recipient),
		cmocka_unit_test(test_stranger_and_unsubscribe),
		cmocka_unit_test(test_a_bounce_that_is_not_rfc3464_is_never_a_reply),
		cmocka_unit_test(test_hostile_input_is_survived),
		cmocka_unit_test(test_broken_mime_is_still_a_reply),
		cmocka_unit_test(test_free_mail_domains),
		cmocka_unit_test(test_return_date_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
