/* test_track.c - the HTTP adapter's edge cases and the human-or-machine rules, no sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "dripd/track.h"
#include "dripd/util.h"
#include "testutil.h"

/* Feeds all of `raw` (in pieces of `step` bytes, 0: at once) and returns the first request
 * that completes or fails, or NULL. *used gets the bytes consumed. */
static struct track_request *feed(struct track_parser *tp, const char *raw, size_t step,
				  size_t *used)
{
	size_t len = strlen(raw), off = 0;
	struct track_request *r = NULL;
	while (off < len) {
		size_t n = step && len - off > step ? step : len - off;
		size_t u = track_parser_feed(tp, raw + off, n, &r);
		off += u;
		if (r)
			break;
		if (u == 0)
			break;
	}
	if (used)
		*used = off;
	return r;
}

static void expect_status(const char *raw, int status)
{
	struct track_parser *tp = track_parser_new();
	struct track_request *r = feed(tp, raw, 0, NULL);
	if (!r)
		fail_msg("expected status %d for %s, got no answer", status, raw);
	if (r->status != status)
		fail_msg("expected status %d, got %d for: %s", status, r->status, raw);
	track_parser_free(tp);
}

static void test_simple_get_parses_path_and_agent(void **state)
{
	(void)state;
	struct track_parser *tp = track_parser_new();
	const char *raw = "GET /o/abc?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: Mozilla/5.0 (X11) "
			  "Firefox/115.0\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n";
	/* Byte by byte: every callback must cope with split fields and values. */
	struct track_request *r = feed(tp, raw, 1, NULL);
	assert_non_null(r);
	assert_int_equal(r->status, 0);
	assert_int_equal(r->method, TRACK_GET);
	assert_string_equal(r->path, "/o/abc?x=1");
	assert_string_equal(r->ua, "Mozilla/5.0 (X11) Firefox/115.0");
	assert_string_equal(r->xff, "192.0.2.7");
	assert_true(r->keep_alive);
	track_parser_free(tp);
}

static void test_pipelined_requests_come_one_at_a_time(void **state)
{
	(void)state;
	struct track_parser *tp = track_parser_new();
	const char *raw = "GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n"
			  "Connection: close\r\n\r\n";
	size_t used;
	struct track_request *r = feed(tp, raw, 0, &used);
	assert_non_null(r);
	assert_string_equal(r->path, "/a");
	assert_true(used < strlen(raw));
	track_parser_next(tp);
	r = feed(tp, raw + used, 0, NULL);
	assert_non_null(r);
	assert_string_equal(r->path, "/b");
	assert_false(r->keep_alive);
	track_parser_free(tp);
}

static void test_post_body_is_kept(void **state)
{
	(void)state;
	struct track_parser *tp = track_parser_new();
	struct track_request *r = feed(
		tp,
		"POST /u/t HTTP/1.1\r\nHost: t\r\nContent-Type: application/"
		"x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\nList-Unsubscribe=One-Click",
		3, NULL);
	assert_non_null(r);
	assert_int_equal(r->status, 0);
	assert_int_equal(r->method, TRACK_POST);
	assert_string_equal(r->body, "List-Unsubscribe=One-Click");
	assert_string_equal(r->content_type, "application/x-www-form-urlencoded");
	track_parser_free(tp);
}

static void test_smuggling_variants_are_refused(void **state)
{
	(void)state;
	/* Content-Length with Transfer-Encoding, two lengths, a space before the colon, a
	 * tab before it, an obsolete line folding of a length. */
	expect_status("POST /u/t HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: "
		      "chunked\r\n\r\n0\r\n\r\n",
		      400);
	expect_status("POST /u/t HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5"
		      "\r\n\r\nabcde",
		      400);
	expect_status("GET /o/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n", 400);
	expect_status("GET /o/x HTTP/1.1\r\nHost: t\r\nContent-Length\t: 3\r\n\r\nabc", 400);
	expect_status("GET /o/x HTTP/1.1\r\nHost : t\r\n\r\n", 400);
	expect_status("GET /o/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n"
		      "Content-Length: 3\r\n\r\n",
		      400);
}

static void test_oversized_headers_get_431(void **state)
{
	(void)state;
	char raw[TRACK_HEADER_MAX + 200];
	int n = snprintf(raw, sizeof(raw), "GET /o/x HTTP/1.1\r\nHost: t\r\nX-Big: ");
	memset(raw + n, 'a', TRACK_HEADER_MAX);
	strcpy(raw + n + TRACK_HEADER_MAX, "\r\n\r\n");
	expect_status(raw, 431);
	/* Many small headers add up just the same. */
	struct buf b;
	buf_init(&b);
	buf_adds(&b, "GET /o/x HTTP/1.1\r\n");
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "X-%d: v\r\n", i);
	buf_adds(&b, "\r\n");
	expect_status(b.data, 431);
	buf_free(&b);
}

static void test_long_url_gets_414(void **state)
{
	(void)state;
	char raw[TRACK_PATH_MAX + 100];
	int n = snprintf(raw, sizeof(raw), "GET /o/");
	memset(raw + n, 'a', TRACK_PATH_MAX);
	strcpy(raw + n + TRACK_PATH_MAX, " HTTP/1.1\r\n\r\n");
	expect_status(raw, 414);
}

static void test_body_caps_apply_to_length_and_chunks(void **state)
{
	(void)state;
	char raw[256];
	snprintf(raw, sizeof(raw), "POST /u/t HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n",
		 TRACK_BODY_MAX + 1);
	expect_status(raw, 413);
	struct buf b;
	buf_init(&b);
	buf_adds(&b, "POST /u/t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 40; i++) {
		buf_printf(&b, "40\r\n");
		for (int j = 0; j < 64; j++)
			buf_addc(&b, 'x');
		buf_adds(&b, "\r\n");
	}
	buf_adds(&b, "0\r\n\r\n");
	expect_status(b.data, 413);
	buf_free(&b);
}

static void test_garbage_and_http2_are_refused(void **state)
{
	(void)state;
	expect_status("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400);
	expect_status("GET /o/x HTTP/2.0\r\nHost: t\r\n\r\n", 505);
	expect_status("GET /o/\x01x HTTP/1.1\r\n\r\n", 400);
}

static void test_started_tracks_a_partial_request(void **state)
{
	(void)state;
	struct track_parser *tp = track_parser_new();
	struct track_request *r;
	assert_false(track_parser_started(tp));
	track_parser_feed(tp, "GET /o/x HT", 11, &r);
	assert_null(r);
	assert_true(track_parser_started(tp));
	track_parser_free(tp);
}

static double conf(char kind, int64_t since, const char *ua, const char *ip, int burst,
		   const char **why)
{
	uint8_t a[16] = { 0 };
	int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
	inet_pton(family, ip, a);
	struct track_evidence e = { .kind = kind,
				    .since_delivery = since,
				    .ua = ua,
				    .family = family,
				    .addr = a,
				    .burst = burst };
	return track_confidence(&e, why);
}

static const char firefox[] =
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";

static void test_people_and_machines_are_told_apart(void **state)
{
	(void)state;
	const char *why;
	/* A person in a browser an hour after delivery. */
	assert_true(conf('o', 3600, firefox, "198.51.100.4", 0, &why) >= TRACK_HUMAN);
	assert_null(why);
	assert_true(conf('c', 3600, firefox, "2001:db8::1", 1, &why) >= TRACK_HUMAN);
	/* Gmail's image proxy (its real user agent). */
	assert_true(conf('o', 3600,
			 "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com "
			 "GoogleImageProxy)",
			 "66.249.84.1", 0, &why) < TRACK_HUMAN);
	assert_string_equal(why, "google image proxy");
	/* Apple Mail Privacy Protection: bare agent, or Apple's network. */
	assert_true(conf('o', 3600, "Mozilla/5.0", "104.28.1.1", 0, &why) < TRACK_HUMAN);
	assert_string_equal(why, "apple mail privacy protection");
	assert_true(conf('o', 3600, firefox, "17.58.1.2", 0, &why) < TRACK_HUMAN);
	/* Apple's network clicking a link is a person on a Mac, not the prefetch. */
	assert_true(conf('c', 3600, firefox, "17.58.1.2", 1, &why) >= TRACK_HUMAN);
	/* Security gateways and scripts. */
	assert_true(conf('c', 3600, "Mozilla/5.0 (compatible; Barracuda Sentinel)", "192.0.2.1", 1,
			 &why) < TRACK_HUMAN);
	assert_true(conf('c', 3600, "Mimecast-Link-Scanner/1.0", "192.0.2.1", 1, &why) <
		    TRACK_HUMAN);
	assert_true(conf('o', 3600, "curl/7.88.1", "192.0.2.1", 0, &why) < TRACK_HUMAN);
	assert_true(conf('o', 3600,
			 "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
			 "HeadlessChrome/120.0.0.0 Safari/537.36",
			 "192.0.2.1", 0, &why) < TRACK_HUMAN);
	assert_true(conf('o', 3600, "", "192.0.2.1", 0, &why) < TRACK_HUMAN);
	assert_string_equal(why, "no user agent");
	/* Every link clicked within a second, or a click seconds after delivery. */
	assert_true(conf('c', 3600, firefox, "192.0.2.1", 3, &why) < TRACK_HUMAN);
	assert_true(conf('c', 3, firefox, "192.0.2.1", 1, &why) < TRACK_HUMAN);
	assert_string_equal(why, "right after delivery");
	/* The hidden honeypot link: nobody can see it, whatever the agent. */
	struct track_evidence hp = { .kind = 'c',
				     .since_delivery = 3600,
				     .ua = firefox,
				     .family = AF_INET,
				     .addr = (const uint8_t *)"\xc0\x00\x02\x01",
				     .burst = 1,
				     .honeypot = true };
	assert_true(track_confidence(&hp, &why) < TRACK_HUMAN);
	assert_string_equal(why, "hidden honeypot link");
	/* Unknown delivery time judges by the rest. */
	assert_true(conf('c', -1, firefox, "192.0.2.1", 1, &why) >= TRACK_HUMAN);
}

static void test_cidr_parse_and_match(void **state)
{
	(void)state;
	struct util_cidr c;
	uint8_t a[16];
	assert_true(util_cidr_parse("10.0.0.0/8", &c));
	inet_pton(AF_INET, "10.1.2.3", a);
	assert_true(util_cidr_contains(&c, AF_INET, a));
	inet_pton(AF_INET, "11.1.2.3", a);
	assert_false(util_cidr_contains(&c, AF_INET, a));
	assert_true(util_cidr_parse("::1", &c));
	inet_pton(AF_INET6, "::1", a);
	assert_true(util_cidr_contains(&c, AF_INET6, a));
	assert_false(util_cidr_contains(&c, AF_INET, a));
	assert_true(util_cidr_parse("192.168.0.0/17", &c));
	inet_pton(AF_INET, "192.168.127.1", a);
	assert_true(util_cidr_contains(&c, AF_INET, a));
	inet_pton(AF_INET, "192.168.128.1", a);
	assert_false(util_cidr_contains(&c, AF_INET, a));
	assert_false(util_cidr_parse("10.0.0.0/33", NULL));
	assert_false(util_cidr_parse("10.0.0.0/", NULL));
	assert_false(util_cidr_parse("example.com", NULL));
	assert_false(util_cidr_parse("", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get_parses_path_and_agent),
		cmocka_unit_test(test_pipelined_requests_come_one_at_a_time),
		cmocka_unit_test(test_post_body_is_kept),
		cmocka_unit_test(test_smuggling_variants_are_refused),
		cmocka_unit_test(test_oversized_headers_get_431),
		cmocka_unit_test(test_long_url_gets_414),
		cmocka_unit_test(test_body_caps_apply_to_length_and_chunks),
		cmocka_unit_test(test_garbage_and_http2_are_refused),
		cmocka_unit_test(test_started_tracks_a_partial_request),
		cmocka_unit_test(test_people_and_machines_are_told_apart),
		cmocka_unit_test(test_cidr_parse_and_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
