/* test_clock.c - business time, the test clock, durations, time zones and send windows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dripd/clock.h"
#include "dripd/error.h"
#include "testutil.h"

#define assert_i64_equal(actual, expected)                                        \
	do {                                                                      \
		long long a_ = (long long)(actual), e_ = (long long)(expected);   \
		if (a_ != e_)                                                     \
			fail_msg("%s: expected %lld, got %lld", #actual, e_, a_); \
	} while (0)

#define assert_u64_equal(actual, expected)                                        \
	do {                                                                      \
		unsigned long long a_ = (unsigned long long)(actual);             \
		unsigned long long e_ = (unsigned long long)(expected);           \
		if (a_ != e_)                                                     \
			fail_msg("%s: expected %llu, got %llu", #actual, e_, a_); \
	} while (0)

/* A fixed machine instant, so every expectation is exact. */
#define WALL_MS 1795428000000LL /* 2026-11-23T10:00:00Z */
#define MONO_MS 5000000ULL
#define DAY_MS (24ULL * 3600 * 1000)

static void expect_duration(const char *text, int64_t secs)
{
	int64_t got = -12345;
	int rc = clock_parse_duration(text, &got);
	if (rc != 0)
		fail_msg("\"%s\": expected to parse as %lld s, got error %d", text, (long long)secs,
			 rc);
	if (got != secs)
		fail_msg("\"%s\": expected %lld s, got %lld s", text, (long long)secs,
			 (long long)got);
}

static void expect_bad_duration(const char *text)
{
	int64_t got = -12345;
	int rc = clock_parse_duration(text, &got);
	if (rc != DRIP_EINVALID)
		fail_msg("\"%s\": expected DRIP_EINVALID (%d), got %d (secs %lld)", text,
			 DRIP_EINVALID, rc, (long long)got);
}

static void test_every_duration_unit_parses_to_seconds(void **state)
{
	(void)state;
	expect_duration("30s", 30);
	expect_duration("15m", 15 * 60);
	expect_duration("12h", 12 * 3600);
	expect_duration("3d", 3 * 86400);
	expect_duration("2w", 2 * 7 * 86400);
	expect_duration("1s", 1);
	expect_duration("0d", 0);
	expect_duration("007m", 7 * 60);
}

static void test_bare_zero_is_the_only_unitless_duration(void **state)
{
	(void)state;
	expect_duration("0", 0);
	expect_duration("000", 0);
	expect_bad_duration("3");
	expect_bad_duration("10");
}

static void test_malformed_durations_are_refused(void **state)
{
	(void)state;
	expect_bad_duration("3x");
	expect_bad_duration("-1d");
	expect_bad_duration("+1d");
	expect_bad_duration("1d2h");
	expect_bad_duration("");
	expect_bad_duration("d");
	expect_bad_duration(" 3d");
	expect_bad_duration("3d ");
	expect_bad_duration("3 d");
	expect_bad_duration("3 days");
	expect_bad_duration("3D");
	expect_bad_duration("1.5h");
	expect_bad_duration(NULL);
}

static void test_overflowing_durations_are_refused(void **state)
{
	(void)state;
	expect_bad_duration("99999999999999999w");
	expect_bad_duration("99999999999999999999999999s");
	/* The limit keeps seconds * 1000 inside int64: INT64_MAX / 1000 s is the largest. */
	expect_duration("9223372036854775s", INT64_MAX / 1000);
	expect_bad_duration("9223372036854776s");
	expect_duration("15250284452w", 15250284452LL * 604800);
	expect_bad_duration("15250284453w"); /* fits in seconds, not in milliseconds */
}

static void expect_format(int64_t secs, const char *text)
{
	char out[64];
	clock_format_duration(secs, out, sizeof(out));
	if (strcmp(out, text) != 0)
		fail_msg("%lld s: expected \"%s\", got \"%s\"", (long long)secs, text, out);
}

static void test_durations_format_in_the_largest_exact_unit(void **state)
{
	(void)state;
	expect_format(0, "0s");
	expect_format(1, "1s");
	expect_format(90, "90s");
	expect_format(60, "1m");
	expect_format(5400, "90m");
	expect_format(3600, "1h");
	expect_format(3 * 86400, "3d");
	expect_format(10 * 86400, "10d");
	expect_format(14 * 86400, "2w");
	expect_format(86400 + 1, "86401s");
}

static void test_formatted_durations_parse_back_to_the_same_seconds(void **state)
{
	static const int64_t values[] = { 0,
					  1,
					  59,
					  60,
					  61,
					  90,
					  3599,
					  3600,
					  5400,
					  86399,
					  86400,
					  90061,
					  604800,
					  1209600,
					  777600,
					  31536000,
					  86400LL * 365 * 100 };
	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char text[64];
		int64_t back = -1;
		clock_format_duration(values[i], text, sizeof(text));
		int rc = clock_parse_duration(text, &back);
		if (rc != 0 || back != values[i])
			fail_msg("%lld s formatted as \"%s\" parsed back as %lld (rc %d)",
				 (long long)values[i], text, (long long)back, rc);
	}
}

static void test_without_test_clock_business_time_is_the_wall_clock(void **state)
{
	struct clock c;
	(void)state;
	/* Offset and rate are ignored without the test clock. */
	clock_init(&c, false, 1000.0, 3600, WALL_MS, MONO_MS);
	assert_false(c.test);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS), WALL_MS / 1000);
	/* Both clocks running together: business time is the wall clock. */
	assert_i64_equal(clock_business_at(&c, WALL_MS + 50000, MONO_MS + 50000),
			 WALL_MS / 1000 + 50);
	assert_i64_equal(clock_offset_at(&c, WALL_MS + 7000, MONO_MS + 9000), 0);
}

static void test_without_test_clock_a_wall_clock_jump_is_slewed_not_followed(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, false, 1.0, 0, WALL_MS, MONO_MS);
	/* The wall clock set a day forward: after 10 s, business time moved 10 s plus a
	 * tenth, not a day. */
	assert_i64_equal(clock_business_at(&c, WALL_MS + 86400000 + 10000, MONO_MS + 10000),
			 WALL_MS / 1000 + 11);
	/* A day back: business time still moves forward, at nine tenths of the pace. */
	assert_i64_equal(clock_business_at(&c, WALL_MS - 86400000 + 10000, MONO_MS + 10000),
			 WALL_MS / 1000 + 9);
	/* A small step (an NTP correction of 2 s) is caught up with within 20 s. */
	assert_i64_equal(clock_business_at(&c, WALL_MS + 2000 + 20000, MONO_MS + 20000),
			 WALL_MS / 1000 + 22);
	/* The monotonic clock alone (a wall clock stopped) moves it at nine tenths. */
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 50000), WALL_MS / 1000 + 45);
}

static void test_test_clock_starts_at_wall_time_plus_offset(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, true, 1.0, 3600, WALL_MS, MONO_MS);
	assert_true(c.test);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS), WALL_MS / 1000 + 3600);
	/* A negative offset (a clock persisted behind the wall clock) works the same way. */
	clock_init(&c, true, 1.0, -86400, WALL_MS, MONO_MS);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS), WALL_MS / 1000 - 86400);
}

static void test_test_clock_follows_monotonic_time_not_the_wall_clock(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, true, 1.0, 0, WALL_MS, MONO_MS);
	/* The wall clock jumping an hour back changes nothing. */
	assert_i64_equal(clock_business_at(&c, WALL_MS - 3600000, MONO_MS + 2000),
			 WALL_MS / 1000 + 2);
	/* Part seconds are not rounded up. */
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 1999), WALL_MS / 1000 + 1);
}

static void test_test_clock_runs_at_its_rate(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, true, 1000.0, 0, WALL_MS, MONO_MS);
	assert_true(c.rate == 1000.0);
	/* 1 s of monotonic time is 1000 s of business time. */
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 1000), WALL_MS / 1000 + 1000);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 1), WALL_MS / 1000 + 1);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 86400), WALL_MS / 1000 + 86400);
}

static void test_a_nonpositive_rate_falls_back_to_real_time(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, true, 0.0, 0, WALL_MS, MONO_MS);
	assert_true(c.rate == 1.0);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 5000), WALL_MS / 1000 + 5);
}

static void test_advance_moves_the_test_clock_and_keeps_the_rate(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, true, 1000.0, 0, WALL_MS, MONO_MS);
	/* 2 s of monotonic time (2000 business s) pass, then an advance of 3 days. */
	assert_int_equal(clock_advance(&c, 3 * 86400, MONO_MS + 2000), 0);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 2000),
			 WALL_MS / 1000 + 2000 + 3 * 86400);
	/* The rate still applies after the advance. */
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 3000),
			 WALL_MS / 1000 + 3000 + 3 * 86400);
	/* An advance of zero changes nothing. */
	assert_int_equal(clock_advance(&c, 0, MONO_MS + 3000), 0);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 3000),
			 WALL_MS / 1000 + 3000 + 3 * 86400);
}

static void test_advance_refuses_to_go_backwards(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, true, 1.0, 0, WALL_MS, MONO_MS);
	assert_int_equal(clock_advance(&c, -1, MONO_MS), DRIP_EINVALID);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS), WALL_MS / 1000);
}

static void test_advance_without_test_clock_is_disabled(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, false, 1.0, 0, WALL_MS, MONO_MS);
	assert_int_equal(clock_advance(&c, 86400, MONO_MS), DRIP_EDISABLED);
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS), WALL_MS / 1000);
}

static void test_offset_is_business_minus_wall_time(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, true, 1000.0, 3600, WALL_MS, MONO_MS);
	assert_i64_equal(clock_offset_at(&c, WALL_MS, MONO_MS), 3600);
	/* One second later by both clocks: business moved 1000 s, the wall 1 s. */
	assert_i64_equal(clock_offset_at(&c, WALL_MS + 1000, MONO_MS + 1000), 3600 + 999);
	assert_int_equal(clock_advance(&c, 86400, MONO_MS + 1000), 0);
	assert_i64_equal(clock_offset_at(&c, WALL_MS + 1000, MONO_MS + 1000), 3600 + 999 + 86400);
}

static void test_persisted_offset_resumes_the_same_business_time(void **state)
{
	struct clock before, after;
	(void)state;
	clock_init(&before, true, 1000.0, 0, WALL_MS, MONO_MS);
	assert_int_equal(clock_advance(&before, 5 * 86400, MONO_MS + 500), 0);
	int64_t wall_stop = WALL_MS + 2000,
		business = clock_business_at(&before, wall_stop, MONO_MS + 2000);
	int64_t offset = clock_offset_at(&before, wall_stop, MONO_MS + 2000);
	/* A restart: new monotonic epoch, same wall clock. */
	clock_init(&after, true, 1000.0, offset, wall_stop, 42);
	assert_i64_equal(clock_business_at(&after, wall_stop, 42), business);
}

static void test_restart_never_moves_business_time_back(void **state)
{
	struct clock before, after;
	(void)state;
	/* Business time ends up 1 ms behind wall + 30d: the wall clock was read a moment
	 * after the monotonic one, as happens at start-up. */
	clock_init(&before, true, 1.0, 0, WALL_MS, MONO_MS);
	assert_int_equal(clock_advance(&before, 30 * 86400, MONO_MS), 0);
	int64_t wall_stop = WALL_MS + 1001;
	uint64_t mono_stop = MONO_MS + 1000;
	int64_t business_ms = WALL_MS + 1000 + 30 * 86400 * 1000LL;
	int64_t offset = clock_offset_at(&before, wall_stop, mono_stop);
	clock_init(&after, true, 1.0, offset, wall_stop, 7);
	int64_t resumed = clock_business_at(&after, wall_stop, 7);
	if (resumed < business_ms / 1000)
		fail_msg("offset %lld: business time went back from %lld to %lld",
			 (long long)offset, (long long)(business_ms / 1000), (long long)resumed);
	assert_i64_equal(offset, 30 * 86400);
	/* A business clock behind the wall clock rounds towards the wall clock too. */
	clock_init(&before, true, 1.0, -10, WALL_MS, MONO_MS);
	assert_i64_equal(clock_offset_at(&before, WALL_MS + 1, MONO_MS), -10);
	assert_i64_equal(clock_offset_at(&before, WALL_MS - 500, MONO_MS), -9);
}

static void test_delay_converts_business_seconds_to_machine_ms(void **state)
{
	struct clock c;
	uint64_t ms;
	(void)state;
	clock_init(&c, false, 1.0, 0, WALL_MS, MONO_MS);
	ms = clock_delay_ms(&c, 1010, 1000);
	if (ms < 10000 || ms > 10001)
		fail_msg("10 business s at rate 1: expected 10000..10001 ms, got %llu",
			 (unsigned long long)ms);

	clock_init(&c, true, 1000.0, 0, WALL_MS, MONO_MS);
	ms = clock_delay_ms(&c, 1000 + 10, 1000);
	if (ms < 10 || ms > 11)
		fail_msg("10 business s at rate 1000: expected 10..11 ms, got %llu",
			 (unsigned long long)ms);
	ms = clock_delay_ms(&c, 86400, 0);
	if (ms < 86400 || ms > 86401)
		fail_msg("1 business day at rate 1000: expected 86400..86401 ms, got %llu",
			 (unsigned long long)ms);

	clock_init(&c, true, 0.5, 0, WALL_MS, MONO_MS);
	ms = clock_delay_ms(&c, 10, 0);
	if (ms < 20000 || ms > 20001)
		fail_msg("10 business s at rate 0.5: expected 20000..20001 ms, got %llu",
			 (unsigned long long)ms);
}

static void test_delay_is_zero_when_due(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, true, 1000.0, 0, WALL_MS, MONO_MS);
	assert_u64_equal(clock_delay_ms(&c, 1000, 1000), 0);
	assert_u64_equal(clock_delay_ms(&c, 999, 1000), 0);
	assert_u64_equal(clock_delay_ms(&c, INT64_MIN, 1000), 0);
}

static void test_delay_is_capped_at_a_day(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, false, 1.0, 0, WALL_MS, MONO_MS);
	assert_u64_equal(clock_delay_ms(&c, 2 * 86400, 0), DAY_MS);
	assert_u64_equal(clock_delay_ms(&c, INT64_MAX, 0), DAY_MS);
	clock_init(&c, true, 1000.0, 0, WALL_MS, MONO_MS);
	/* Three business years at rate 1000 are about 26 machine hours. */
	assert_u64_equal(clock_delay_ms(&c, 3 * 365 * 86400LL, 0), DAY_MS);
}

static void test_known_time_zones_are_valid(void **state)
{
	(void)state;
	assert_true(clock_tz_valid("Europe/Berlin"));
	assert_true(clock_tz_valid("America/Chicago"));
	assert_true(clock_tz_valid("UTC"));
}

static void test_unknown_or_unsafe_time_zones_are_refused(void **state)
{
	(void)state;
	assert_false(clock_tz_valid("Mars/Olympus"));
	assert_false(clock_tz_valid("../etc/passwd"));
	/* Leap-second zones: the zone reader refuses them, so validation must too. */
	assert_false(clock_tz_valid("right/UTC"));
	assert_false(clock_tz_valid("leapseconds"));
	assert_false(clock_tz_valid("Europe/../../../etc/passwd"));
	assert_false(clock_tz_valid("/etc/passwd"));
	assert_false(clock_tz_valid(""));
	assert_false(clock_tz_valid(NULL));
	assert_false(clock_tz_valid("Europe")); /* a folder, not a zone */
	assert_false(clock_tz_valid("Europe/Berlin "));
	assert_false(clock_tz_valid("Europe/Berlin\n"));
}

static void expect_utc(int64_t t, const char *text)
{
	char out[64];
	clock_format_utc(t, out, sizeof(out));
	if (strcmp(out, text) != 0)
		fail_msg("%lld: expected \"%s\", got \"%s\"", (long long)t, text, out);
}

static void test_utc_format_is_iso_8601(void **state)
{
	(void)state;
	expect_utc(0, "1970-01-01T00:00:00Z");
	expect_utc(1795428000, "2026-11-23T10:00:00Z");
	expect_utc(951868799, "2000-02-29T23:59:59Z");
}

static void test_now_without_test_clock_is_the_system_time(void **state)
{
	struct clock c;
	(void)state;
	clock_init(&c, false, 1.0, 0, clock_wall_ms(), clock_mono_ms());
	int64_t before = (int64_t)time(NULL);
	int64_t now = clock_now(&c);
	int64_t after = (int64_t)time(NULL);
	if (now < before - 1 || now > after + 1)
		fail_msg("clock_now: expected %lld..%lld, got %lld", (long long)before,
			 (long long)after, (long long)now);
}

/* ---- time zones: compared with glibc ---------------------------------------------------- */

/*
 * glibc is the reference here, and only here: setenv("TZ") + tzset() is process-global and
 * slow, which is why the daemon reads the zoneinfo files itself. The comparison covers the
 * whole struct tm that localtime_r fills in, tm_gmtoff and tm_zone included.
 */

static const char *const compared_zones[] = { "Europe/Berlin",    "America/New_York",
					      "Australia/Sydney", "Asia/Kolkata",
					      "America/St_Johns", "Pacific/Chatham",
					      "Europe/London",    "UTC",
					      "Asia/Tehran",      "America/Sao_Paulo" };

/* Negative DST (Dublin), a 30-minute DST (Lord Howe), version 3 footers with switch times
 * past 24:00 or below 0 (Jerusalem, Nuuk, Santiago), a skipped day (Apia), a zone with
 * transitions listed far ahead (Casablanca), a 45-minute offset (Kathmandu). */
static const char *const odd_zones[] = { "Europe/Dublin",     "Australia/Lord_Howe",
					 "Asia/Jerusalem",    "America/Nuuk",
					 "America/Santiago",  "Pacific/Apia",
					 "Africa/Casablanca", "Asia/Kathmandu" };

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900,
			 .tm_mon = mo - 1,
			 .tm_mday = d,
			 .tm_hour = h,
			 .tm_min = mi,
			 .tm_sec = s };
	return (int64_t)timegm(&tm);
}

static void glibc_use(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

static void glibc_local(int64_t t, struct tm *out)
{
	time_t tt = (time_t)t;
	if (!localtime_r(&tt, out))
		fail_msg("glibc localtime_r(%lld) failed", (long long)t);
}

static void describe_tm(const struct tm *tm, char *out, size_t n)
{
	snprintf(out, n, "%04d-%02d-%02d %02d:%02d:%02d %s (utoff %ld, dst %d, wday %d, yday %d)",
		 tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min,
		 tm->tm_sec, tm->tm_zone ? tm->tm_zone : "(null)", (long)tm->tm_gmtoff,
		 tm->tm_isdst, tm->tm_wday, tm->tm_yday);
}

static bool same_tm(const struct tm *a, const struct tm *b)
{
	return a->tm_year == b->tm_year && a->tm_mon == b->tm_mon && a->tm_mday == b->tm_mday &&
	       a->tm_hour == b->tm_hour && a->tm_min == b->tm_min && a->tm_sec == b->tm_sec &&
	       a->tm_wday == b->tm_wday && a->tm_yday == b->tm_yday && a->tm_isdst == b->tm_isdst &&
	       a->tm_gmtoff == b->tm_gmtoff && a->tm_zone && b->tm_zone &&
	       strcmp(a->tm_zone, b->tm_zone) == 0;
}

/* One zone being compared: what was looked at. */
struct compare_run {
	const struct clock_zone *z;
	const char *name;
	long instants;
	long transitions;
};

/* Compares clock_zone_local and clock_zone_offset with glibc at t; glibc's answer in *want. */
static void compare_at(struct compare_run *r, int64_t t, struct tm *want)
{
	struct tm got;
	char a[160], b[160], when[32];
	glibc_local(t, want);
	clock_zone_local(r->z, t, &got);
	int32_t off = clock_zone_offset(r->z, t);
	r->instants++;
	if (!same_tm(want, &got) || off != want->tm_gmtoff) {
		describe_tm(want, a, sizeof(a));
		describe_tm(&got, b, sizeof(b));
		clock_format_utc(t, when, sizeof(when));
		fail_msg("%s at %lld (%s): expected %s, got %s, offset %ld", r->name, (long long)t,
			 when, a, b, (long)off);
	}
}

/* Whether glibc shows the same offset, DST flag and abbreviation in a and b. */
static bool same_state(const struct tm *a, const char *a_zone, const struct tm *b)
{
	return a->tm_gmtoff == b->tm_gmtoff && a->tm_isdst == b->tm_isdst &&
	       strcmp(a_zone, b->tm_zone) == 0;
}

/*
 * Compares every `step` seconds of [from, to]; where glibc's state changed between two
 * samples, finds the exact second by bisection and compares one second either side too.
 */
static void sweep(struct compare_run *r, int64_t from, int64_t to, int64_t step)
{
	struct tm prev = { 0 }, cur = { 0 }, probe = { 0 };
	char prev_zone[16] = "";
	for (int64_t t = from; t <= to; t += step) {
		compare_at(r, t, &cur);
		if (t > from && !same_state(&prev, prev_zone, &cur)) {
			int64_t lo = t - step, hi = t;
			while (hi - lo > 1) {
				int64_t mid = lo + (hi - lo) / 2;
				glibc_local(mid, &probe);
				if (same_state(&prev, prev_zone, &probe))
					lo = mid;
				else
					hi = mid;
			}
			compare_at(r, hi - 1, &probe);
			compare_at(r, hi, &probe);
			compare_at(r, hi + 1, &probe);
			r->transitions++;
		}
		prev = cur;
		snprintf(prev_zone, sizeof(prev_zone), "%s", cur.tm_zone);
	}
}

static const struct clock_zone *zone(const char *name)
{
	char err[256] = "";
	const struct clock_zone *z = clock_zone_get(name, err, sizeof(err));
	if (!z)
		fail_msg("clock_zone_get(\"%s\"): expected a zone, got NULL: %s", name, err);
	return z;
}

/* Sweeps zone `name` from 1700 to 2110 and around 2500 and 9999, hourly from 2020 to
 * hourly_until (exclusive), every 6 hours to 2041 after that; returns the instants. */
static long compare_zone_with_glibc(const char *name, int hourly_until, long *transitions)
{
	struct compare_run r = { zone(name), name, 0, 0 };
	glibc_use(name);
	sweep(&r, utc(1700, 1, 1, 0, 0, 0), utc(1900, 1, 1, 0, 0, 0), 86400 + 3607);
	sweep(&r, utc(1900, 1, 1, 0, 0, 0), utc(2020, 1, 1, 0, 0, 0), 25 * 3600 + 7);
	sweep(&r, utc(2020, 1, 1, 0, 0, 0), utc(hourly_until, 1, 1, 0, 0, 0), 3600);
	if (hourly_until < 2041)
		sweep(&r, utc(hourly_until, 1, 1, 0, 0, 0), utc(2041, 1, 1, 0, 0, 0), 6 * 3600);
	sweep(&r, utc(2090, 1, 1, 0, 0, 0), utc(2111, 1, 1, 0, 0, 0), 6 * 3600);
	sweep(&r, utc(2499, 6, 1, 0, 0, 0), utc(2501, 6, 1, 0, 0, 0), 6 * 3600);
	sweep(&r, utc(9998, 6, 1, 0, 0, 0), utc(9999, 12, 31, 0, 0, 0), 6 * 3600);
	*transitions += r.transitions;
	return r.instants;
}

static void test_zone_offsets_and_local_times_match_glibc(void **state)
{
	long instants = 0, transitions = 0;
	(void)state;
	for (size_t i = 0; i < N_OF(compared_zones); i++)
		instants += compare_zone_with_glibc(compared_zones[i], 2041, &transitions);
	print_message("compared %ld instants (%ld transitions, each at -1 s, 0, +1 s) in %zu "
		      "zones\n",
		      instants, transitions, N_OF(compared_zones));
	unsetenv("TZ");
	tzset();
}

static void test_odd_zones_match_glibc(void **state)
{
	long instants = 0, transitions = 0;
	(void)state;
	for (size_t i = 0; i < N_OF(odd_zones); i++)
		instants += compare_zone_with_glibc(odd_zones[i], 2027, &transitions);
	print_message("compared %ld instants (%ld transitions) in %zu zones\n", instants,
		      transitions, N_OF(odd_zones));
	unsetenv("TZ");
	tzset();
}

static void expect_offset(const char *name, int64_t t, int32_t want)
{
	char when[32];
	int32_t got = clock_zone_offset(zone(name), t);
	if (got != want) {
		clock_format_utc(t, when, sizeof(when));
		fail_msg("%s at %s: expected offset %ld, got %ld", name, when, (long)want,
			 (long)got);
	}
}

static void test_far_future_follows_the_footer_rule(void **state)
{
	(void)state;
	/* 2100: last Sundays are 28 March and 31 October, switches at 01:00 UTC. */
	expect_offset("Europe/Berlin", utc(2100, 3, 28, 0, 59, 59), 3600);
	expect_offset("Europe/Berlin", utc(2100, 3, 28, 1, 0, 0), 7200);
	expect_offset("Europe/Berlin", utc(2100, 10, 31, 0, 59, 59), 7200);
	expect_offset("Europe/Berlin", utc(2100, 10, 31, 1, 0, 0), 3600);
	/* Sydney in 2100: DST from 3 October (02:00 AEST), to 4 April (03:00 AEDT). */
	expect_offset("Australia/Sydney", utc(2100, 1, 15, 0, 0, 0), 11 * 3600);
	expect_offset("Australia/Sydney", utc(2100, 4, 3, 15, 59, 59), 11 * 3600);
	expect_offset("Australia/Sydney", utc(2100, 4, 3, 16, 0, 0), 10 * 3600);
	expect_offset("Australia/Sydney", utc(2100, 10, 2, 15, 59, 59), 10 * 3600);
	expect_offset("Australia/Sydney", utc(2100, 10, 2, 16, 0, 0), 11 * 3600);
	expect_offset("Asia/Kolkata", utc(2100, 6, 1, 0, 0, 0), 5 * 3600 + 1800);
	expect_offset("America/Sao_Paulo", utc(2100, 1, 1, 0, 0, 0), -3 * 3600);
	/* Far beyond anything a file lists. */
	expect_offset("America/New_York", utc(9999, 7, 4, 12, 0, 0), -4 * 3600);
	expect_offset("America/New_York", utc(9999, 12, 25, 12, 0, 0), -5 * 3600);
}

/* ---- TZif data written by the tests --------------------------------------------------- */

struct tzif_type {
	int32_t utoff;
	uint8_t isdst;
	uint8_t desig;
};

struct tzif_spec {
	char version; /* '\0' for version 1, or '2', '3' */
	size_t ntrans;
	const int64_t *trans;
	const uint8_t *idx;
	size_t ntypes;
	const struct tzif_type *types;
	const char *chars; /* charcnt bytes, NULs included */
	size_t charcnt;
	const char *footer; /* without its newlines; version 2 and later */
};

static void put32(uint8_t **p, uint32_t v)
{
	(*p)[0] = (uint8_t)(v >> 24), (*p)[1] = (uint8_t)(v >> 16), (*p)[2] = (uint8_t)(v >> 8);
	(*p)[3] = (uint8_t)v;
	*p += 4;
}

static void tzif_put_block(const struct tzif_spec *s, uint8_t **p, unsigned tsize)
{
	memcpy(*p, "TZif", 4);
	(*p)[4] = (uint8_t)s->version;
	memset(*p + 5, 0, 15);
	*p += 20;
	put32(p, 0); /* isutcnt */
	put32(p, 0); /* isstdcnt */
	put32(p, 0); /* leapcnt */
	put32(p, (uint32_t)s->ntrans);
	put32(p, (uint32_t)s->ntypes);
	put32(p, (uint32_t)s->charcnt);
	for (size_t i = 0; i < s->ntrans; i++) {
		if (tsize == 8)
			put32(p, (uint32_t)((uint64_t)s->trans[i] >> 32));
		put32(p, (uint32_t)s->trans[i]);
	}
	for (size_t i = 0; i < s->ntrans; i++)
		*(*p)++ = s->idx[i];
	for (size_t i = 0; i < s->ntypes; i++) {
		put32(p, (uint32_t)s->types[i].utoff);
		*(*p)++ = s->types[i].isdst;
		*(*p)++ = s->types[i].desig;
	}
	memcpy(*p, s->chars, s->charcnt);
	*p += s->charcnt;
}

/* Writes spec as a TZif file into out (at least 4 KiB); returns its length and where the
 * version 2 header starts (0 for a version 1 file). */
static size_t tzif_build(const struct tzif_spec *s, uint8_t *out, size_t *v2_header)
{
	uint8_t *p = out;
	assert_true(s->ntrans <= 64 && s->ntypes <= 16 && s->charcnt <= 256);
	tzif_put_block(s, &p, 4);
	*v2_header = 0;
	if (s->version != '\0') {
		*v2_header = (size_t)(p - out);
		tzif_put_block(s, &p, 8);
		size_t n = strlen(s->footer);
		assert_true(n < 200);
		*p++ = '\n';
		memcpy(p, s->footer, n);
		p += n;
		*p++ = '\n';
	}
	return (size_t)(p - out);
}

/* A small Berlin-like zone: LMT, then CET from 1906, one winter of CEST, then the rule (times
 * that fit in 32 bits, so the version 1 block holds them too). */
static const int64_t sample_trans[] = { -2000000000LL, 1700000000LL, 1710000000LL };
static const uint8_t sample_idx[] = { 2, 1, 2 };
static const struct tzif_type sample_types[] = { { 3208, 0, 0 }, { 7200, 1, 4 }, { 3600, 0, 9 } };
static const char sample_chars[] = "LMT\0CEST\0CET"; /* 13 bytes with the last NUL */

static struct tzif_spec sample_spec(void)
{
	struct tzif_spec s = { '2',          N_OF(sample_trans),   sample_trans,
			       sample_idx,   N_OF(sample_types),   sample_types,
			       sample_chars, sizeof(sample_chars), "CET-1CEST,M3.5.0,M10.5.0/3" };
	return s;
}

static struct clock_zone *parse_ok(const char *name, const uint8_t *data, size_t len)
{
	char err[256] = "";
	struct clock_zone *z = clock_zone_parse(name, data, len, err, sizeof(err));
	if (!z)
		fail_msg("%s: expected the TZif data to parse, got: %s", name, err);
	return z;
}

/* Parses data that must be refused; the error must name the zone and contain `why`. */
static void expect_corrupt(const char *what, const uint8_t *data, size_t len, const char *why)
{
	char err[256] = "";
	struct clock_zone *z = clock_zone_parse("test/bad", data, len, err, sizeof(err));
	if (z) {
		clock_zone_free(z);
		fail_msg("%s: expected an error about \"%s\", got a zone", what, why);
	}
	if (!strstr(err, "\"test/bad\"") || !strstr(err, why))
		fail_msg("%s: expected an error naming \"test/bad\" and saying \"%s\", got \"%s\"",
			 what, why, err);
}

static void test_built_tzif_data_parses_and_uses_transitions_then_the_rule(void **state)
{
	uint8_t buf[4096];
	size_t v2, len;
	struct tzif_spec s = sample_spec();
	(void)state;
	len = tzif_build(&s, buf, &v2);
	struct clock_zone *z = parse_ok("test/sample", buf, len);
	assert_string_equal(clock_zone_name(z), "test/sample");
	assert_i64_equal(clock_zone_offset(z, -2000000001LL), 3208); /* type 0 before the first */
	assert_i64_equal(clock_zone_offset(z, -2000000000LL), 3600);
	assert_i64_equal(clock_zone_offset(z, 1700000000LL - 1), 3600);
	assert_i64_equal(clock_zone_offset(z, 1700000000LL), 7200); /* November 2023, CEST */
	assert_i64_equal(clock_zone_offset(z, 1709999999LL), 7200);
	/* From the last transition on, the footer rule: summer 2026 is CEST, winter CET. */
	assert_i64_equal(clock_zone_offset(z, utc(2026, 7, 1, 0, 0, 0)), 7200);
	assert_i64_equal(clock_zone_offset(z, utc(2026, 12, 1, 0, 0, 0)), 3600);
	struct tm tm;
	clock_zone_local(z, utc(2026, 7, 1, 0, 0, 0), &tm);
	assert_string_equal(tm.tm_zone, "CEST");
	clock_zone_free(z);
}

static void test_a_version_1_file_uses_its_last_type_after_the_last_transition(void **state)
{
	uint8_t buf[4096];
	size_t v2, len;
	struct tzif_spec s = sample_spec();
	(void)state;
	s.version = '\0';
	len = tzif_build(&s, buf, &v2);
	assert_i64_equal(v2, 0);
	struct clock_zone *z = parse_ok("test/v1", buf, len);
	assert_i64_equal(clock_zone_offset(z, -2000000001LL), 3208);
	assert_i64_equal(clock_zone_offset(z, 1700000000LL), 7200);
	assert_i64_equal(clock_zone_offset(z, utc(2026, 7, 1, 0, 0, 0)), 3600);
	assert_i64_equal(clock_zone_offset(z, utc(2300, 7, 1, 0, 0, 0)), 3600);
	clock_zone_free(z);
}

static void test_an_empty_footer_keeps_the_last_type(void **state)
{
	uint8_t buf[4096];
	size_t v2, len;
	struct tzif_spec s = sample_spec();
	(void)state;
	s.footer = "";
	len = tzif_build(&s, buf, &v2);
	struct clock_zone *z = parse_ok("test/nofooter", buf, len);
	assert_i64_equal(clock_zone_offset(z, utc(2026, 7, 1, 0, 0, 0)), 3600);
	clock_zone_free(z);
}

/* A zone of one type and no transitions, all of it in the footer, compared with glibc
 * reading the same string from TZ. */
static void compare_footer_with_glibc(const char *tz, int64_t from, int64_t to, long *instants)
{
	uint8_t buf[4096];
	size_t v2, len;
	static const struct tzif_type t0 = { 0, 0, 0 };
	struct tzif_spec s = { '3', 0, NULL, NULL, 1, &t0, "XXX", 4, tz };
	len = tzif_build(&s, buf, &v2);
	struct clock_zone *z = parse_ok(tz, buf, len);
	struct compare_run r = { z, tz, 0, 0 };
	glibc_use(tz);
	sweep(&r, from, to, 3 * 3600);
	if (r.transitions == 0 && strchr(tz, ','))
		fail_msg("%s: expected DST switches between %lld and %lld, glibc shows none", tz,
			 (long long)from, (long long)to);
	*instants += r.instants;
	clock_zone_free(z);
}

static void test_footer_tz_strings_match_glibc(void **state)
{
	static const char *const rules[] = {
		"XST5XDT,J60/2,J300/2", /* Jn: 1 March and 27 October, Feb 29 never counted */
		"XST5XDT,59/2,299/2", /* n: counted from 0, Feb 29 counted */
		"XST-3XDT,M3.5.0/1:30:15,M10.5.0/0:45", /* times with minutes and seconds */
		"IST-2IDT,M3.4.4/26,M10.5.0", /* version 3: a switch time past 24:00 */
		"<-02>2<-01>,M3.5.0/-1,M10.5.0/0", /* version 3: a negative switch time */
		"<-04>4<-03>,M9.1.6/24,M4.1.6/24", /* southern, at midnight */
		"AEST-10AEDT,M10.1.0,M4.1.0/3", /* southern */
		"NZST-12NZDT-13,M9.5.0,M4.1.0/3", /* an explicit DST offset */
		"<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", /* a 30-minute DST */
		"IST-1GMT0,M10.5.0,M3.5.0/1", /* negative DST, as Europe/Dublin */
		"XST-5:45", /* no DST */
		"<+0530>-5:30",
	};
	long instants = 0;
	(void)state;
	for (size_t i = 0; i < N_OF(rules); i++)
		compare_footer_with_glibc(rules[i], utc(2020, 1, 1, 0, 0, 0),
					  utc(2031, 1, 1, 0, 0, 0), &instants);
	print_message("compared %ld instants over %zu TZ strings\n", instants, N_OF(rules));
	unsetenv("TZ");
	tzset();
}

/*
 * RFC 8536 3.3.1: DST all year is written as starting on 1 January at 00:00 and ending on
 * 31 December at 24:00 plus the DST shift. glibc gets the first hours of each UTC year
 * wrong here (it works a year at a time, by UTC), so this is checked on its own.
 */
static void test_a_rule_of_dst_all_year_is_dst_all_year(void **state)
{
	static const char *const tz = "EST5EDT,0/0,J365/25";
	static const struct tzif_type t0 = { 0, 0, 0 };
	struct tzif_spec s = { '3', 0, NULL, NULL, 1, &t0, "XXX", 4, tz };
	uint8_t buf[4096];
	size_t v2, len = tzif_build(&s, buf, &v2);
	struct clock_zone *z = parse_ok(tz, buf, len);
	(void)state;
	for (int64_t t = utc(2025, 12, 30, 0, 0, 0); t < utc(2028, 1, 3, 0, 0, 0); t += 1800)
		if (clock_zone_offset(z, t) != -4 * 3600)
			fail_msg("%s at %lld: expected -14400 all year, got %ld", tz, (long long)t,
				 (long)clock_zone_offset(z, t));
	clock_zone_free(z);
}

/* DST without a rule: POSIX leaves it to the implementation; this one (like tzcode's) uses
 * the US rule. glibc reinterprets its posixrules file instead, so it is not the reference. */
static void test_dst_without_a_rule_follows_the_us_rule(void **state)
{
	static const struct tzif_type t0 = { 0, 0, 0 };
	struct tzif_spec bare = { '3', 0, NULL, NULL, 1, &t0, "XXX", 4, "XST3XDT" };
	struct tzif_spec us = { '3', 0, NULL, NULL, 1, &t0, "XXX", 4, "XST3XDT,M3.2.0,M11.1.0" };
	uint8_t buf[4096];
	size_t v2, len = tzif_build(&bare, buf, &v2);
	struct clock_zone *a = parse_ok("bare", buf, len);
	len = tzif_build(&us, buf, &v2);
	struct clock_zone *b = parse_ok("us", buf, len);
	(void)state;
	assert_i64_equal(clock_zone_offset(a, utc(2026, 3, 8, 4, 59, 59)), -3 * 3600);
	assert_i64_equal(clock_zone_offset(a, utc(2026, 3, 8, 5, 0, 0)), -2 * 3600);
	for (int64_t t = utc(2020, 1, 1, 0, 0, 0); t < utc(2031, 1, 1, 0, 0, 0); t += 3600)
		if (clock_zone_offset(a, t) != clock_zone_offset(b, t))
			fail_msg("at %lld: expected %ld as with the US rule, got %ld", (long long)t,
				 (long)clock_zone_offset(b, t), (long)clock_zone_offset(a, t));
	clock_zone_free(a);
	clock_zone_free(b);
}

static void test_every_truncation_of_a_zoneinfo_file_is_an_error(void **state)
{
	static const char *const names[] = { "Europe/Berlin", "America/New_York", "UTC" };
	char path[256];
	(void)state;
	for (size_t i = 0; i < N_OF(names); i++) {
		size_t len;
		snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", names[i]);
		char *data = testutil_read_file_len(path, &len);
		struct clock_zone *whole = parse_ok(names[i], (uint8_t *)data, len);
		clock_zone_free(whole);
		for (size_t n = 0; n < len; n++) {
			/* A copy of exactly n bytes, so ASan sees any read past it. */
			uint8_t *cut = xmalloc(n);
			memcpy(cut, data, n);
			char what[320];
			snprintf(what, sizeof(what), "%s cut to %zu of %zu bytes", names[i], n,
				 len);
			expect_corrupt(what, cut, n, "corrupt zoneinfo data");
			free(cut);
		}
		free(data);
	}
}

/* The built sample, changed at `at` by the bytes of v (big-endian, n of them). */
static void expect_patch_corrupt(const char *what, size_t at, uint32_t v, int n, const char *why)
{
	uint8_t buf[4096];
	size_t v2;
	struct tzif_spec s = sample_spec();
	size_t len = tzif_build(&s, buf, &v2);
	assert_true(at + (size_t)n <= len);
	for (int i = 0; i < n; i++)
		buf[at + (size_t)i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	/* Exactly len bytes on the heap, so ASan sees any read past the end. */
	uint8_t *copy = xmalloc(len);
	memcpy(copy, buf, len);
	expect_corrupt(what, copy, len, why);
	free(copy);
}

static void test_corrupt_counts_and_indexes_are_errors(void **state)
{
	uint8_t buf[4096];
	size_t v2;
	struct tzif_spec s = sample_spec();
	size_t len = tzif_build(&s, buf, &v2);
	const size_t nt = N_OF(sample_trans), ny = N_OF(sample_types);
	/* The version 2 data block: times, type indexes, types (6 bytes), abbreviations. */
	const size_t data = v2 + 44, idx = data + 8 * nt, types = idx + nt, chars = types + 6 * ny;
	(void)state;
	(void)len;

	expect_patch_corrupt("bad magic", 0, 'X', 1, "not a TZif file");
	expect_patch_corrupt("version 9", 4, '9', 1, "unsupported TZif version");
	expect_patch_corrupt("huge v1 timecnt", 32, 0xffffffffu, 4, "truncated version 1 data");
	expect_patch_corrupt("huge v1 charcnt", 40, 0x7fffffffu, 4, "truncated version 1 data");
	expect_patch_corrupt("no second magic", v2, 'X', 1, "version 2 header");
	expect_patch_corrupt("huge timecnt", v2 + 32, 0xffffffffu, 4, "truncated data block");
	expect_patch_corrupt("timecnt one too many", v2 + 32, (uint32_t)nt + 1, 4,
			     "corrupt zoneinfo data"); /* the footer is read as data */
	expect_patch_corrupt("no types", v2 + 36, 0, 4, "bad count of local time types");
	expect_patch_corrupt("300 types", v2 + 36, 300, 4, "bad count of local time types");
	expect_patch_corrupt("huge typecnt", v2 + 36, 0xffffffffu, 4, "bad count");
	expect_patch_corrupt("no abbreviations", v2 + 40, 0, 4, "abbreviation bytes");
	expect_patch_corrupt("huge charcnt", v2 + 40, 0xfffffff0u, 4, "truncated data block");
	expect_patch_corrupt("one UT indicator for three types", v2 + 20, 1, 4,
			     "standard/UT indicators");
	expect_patch_corrupt("two standard indicators", v2 + 24, 2, 4, "standard/UT indicators");
	expect_patch_corrupt("leap seconds", v2 + 28, 1, 4, "leap seconds");
	expect_patch_corrupt("type index out of range", idx + 1, 200, 1,
			     "local time type out of range at transition 1");
	expect_patch_corrupt("type index just out of range", idx + 2, (uint32_t)ny, 1,
			     "local time type out of range at transition 2");
	/* The second transition moved before the first. */
	expect_patch_corrupt("times out of order", data + 8, 0x80000000u, 4,
			     "not in ascending order at transition 1");
	expect_patch_corrupt("offset of 30 hours", types + 6, 30 * 3600, 4,
			     "UT offset out of range in local time type 1");
	expect_patch_corrupt("INT32_MIN offset", types, 0x80000000u, 4, "UT offset out of range");
	expect_patch_corrupt("DST flag 2", types + 6 + 4, 2, 1, "DST flag");
	expect_patch_corrupt("abbreviation past the end", types + 12 + 5, 13, 1,
			     "abbreviation out of range in local time type 2");
	expect_patch_corrupt("abbreviation not terminated", chars + 12, 'X', 1,
			     "abbreviation out of range in local time type 2");
	expect_patch_corrupt("footer without its newline", chars + 13, 'X', 1, "footer");

	expect_corrupt("no data", NULL, 0, "not a TZif file");
	expect_corrupt("empty", (const uint8_t *)"", 0, "not a TZif file");
	expect_corrupt("magic only", (const uint8_t *)"TZif2", 5, "truncated header");
	expect_corrupt("a text file", (const uint8_t *)"hello, world\n", 13, "not a TZif file");
}

static void test_bad_footers_are_errors(void **state)
{
	static const char *const footers[] = {
		"CET-1CEST,M13.5.0,M10.5.0/3",
		"CET-1CEST,M0.5.0,M10.5.0/3",
		"CET-1CEST,M3.6.0,M10.5.0/3",
		"CET-1CEST,M3.5.7,M10.5.0/3",
		"CET-1CEST,M3.5.0",
		"CET-1CEST,M3.5.0,",
		"CET-1CEST,M3.5.0,M10.5.0/3x",
		"CET-1CEST,M3.5.0,M10.5.0/168",
		"CET-1CEST,J0,J300",
		"CET-1CEST,J366,J300",
		"CET-1CEST,366,300",
		"CET",
		"CE-1",
		"CET-25",
		"CET-1:60",
		"CET-1CEST-25,M3.5.0,M10.5.0",
		"<CET-1",
		"<>-1",
		"<C?T>-1",
		"CET-1 ",
		"1CET",
		"CETCETCETCETCETCETCETCETCETCETCETCET-1",
		"CET-1CEST,M3.5.0,M10.5.0,M11.1.0",
		"CET\x01-1",
	};
	uint8_t buf[4096];
	size_t v2;
	(void)state;
	for (size_t i = 0; i < N_OF(footers); i++) {
		struct tzif_spec s = sample_spec();
		s.footer = footers[i];
		size_t len = tzif_build(&s, buf, &v2);
		char what[128];
		snprintf(what, sizeof(what), "footer \"%s\"", footers[i]);
		expect_corrupt(what, buf, len, "footer TZ string");
	}
}

static void test_zone_cache_returns_the_same_object(void **state)
{
	char err[256] = "";
	(void)state;
	const struct clock_zone *a = clock_zone_get("Europe/Berlin", err, sizeof(err));
	const struct clock_zone *b = clock_zone_get("America/New_York", err, sizeof(err));
	const struct clock_zone *c = clock_zone_get("Europe/Berlin", err, sizeof(err));
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_equal(a, c);
	assert_ptr_not_equal(a, b);
	assert_string_equal(clock_zone_name(a), "Europe/Berlin");
	/* Freed and loaded again, still right. */
	clock_zones_free();
	const struct clock_zone *d = clock_zone_get("Europe/Berlin", err, sizeof(err));
	assert_non_null(d);
	assert_i64_equal(clock_zone_offset(d, utc(2026, 7, 1, 0, 0, 0)), 7200);
}

static void expect_zone_error(const char *name, const char *why)
{
	char err[256] = "";
	const struct clock_zone *z = clock_zone_get(name, err, sizeof(err));
	if (z)
		fail_msg("clock_zone_get(\"%s\"): expected an error about \"%s\", got a zone",
			 name ? name : "(null)", why);
	if (!strstr(err, why))
		fail_msg("clock_zone_get(\"%s\"): expected an error saying \"%s\", got \"%s\"",
			 name ? name : "(null)", why, err);
}

static void test_unknown_zones_are_errors_that_name_them(void **state)
{
	(void)state;
	expect_zone_error("Mars/Olympus", "unknown time zone \"Mars/Olympus\"");
	expect_zone_error("../etc/passwd", "unknown time zone \"../etc/passwd\"");
	expect_zone_error("Europe", "unknown time zone \"Europe\"");
	expect_zone_error("", "unknown time zone \"\"");
	expect_zone_error(NULL, "no time zone");
	/* A file under zoneinfo that is not a zone is refused by name, before it is read
	 * (corrupt TZif data is refused by the parser: see the clock_zone_parse tests). */
	if (access("/usr/share/zoneinfo/leapseconds", R_OK) == 0)
		expect_zone_error("leapseconds", "unknown time zone \"leapseconds\"");
}

static void test_leap_second_zones_are_refused(void **state)
{
	(void)state;
	if (access("/usr/share/zoneinfo/right/UTC", R_OK) != 0)
		skip();
	expect_zone_error("right/UTC", "unknown time zone \"right/UTC\"");
}

static void test_a_null_zone_is_utc(void **state)
{
	struct tm tm;
	(void)state;
	assert_i64_equal(clock_zone_offset(NULL, utc(2026, 7, 1, 0, 0, 0)), 0);
	clock_zone_local(NULL, utc(2026, 7, 1, 12, 34, 56), &tm);
	assert_int_equal(tm.tm_hour, 12);
	assert_int_equal(tm.tm_min, 34);
	assert_int_equal(tm.tm_wday, 3);
	assert_string_equal(tm.tm_zone, "UTC");
	assert_string_equal(clock_zone_name(NULL), "UTC");
}

static void test_extreme_times_are_clamped_not_overflowed(void **state)
{
	struct tm tm;
	const struct clock_zone *z = zone("Europe/Berlin");
	(void)state;
	clock_zone_local(z, INT64_MAX, &tm);
	clock_zone_local(z, INT64_MIN, &tm);
	(void)clock_zone_offset(z, INT64_MAX);
	(void)clock_zone_offset(z, INT64_MIN);
	struct clock_window w = { 0x7f, 9 * 60, 17 * 60 };
	assert_i64_equal(clock_window_next(&w, z, INT64_MAX), INT64_MAX);
	assert_i64_equal(clock_window_next(&w, z, INT64_MIN), INT64_MIN);
}

/* ---- send windows ---------------------------------------------------------------------- */

#define SUN (1 << 0)
#define MON (1 << 1)
#define TUE (1 << 2)
#define WED (1 << 3)
#define THU (1 << 4)
#define FRI (1 << 5)
#define SAT (1 << 6)

static void expect_window(const char *text, unsigned days, int start, int end)
{
	struct clock_window w = { 0, -1, -1 };
	char err[256] = "";
	int rc = clock_window_parse(text, &w, err, sizeof(err));
	if (rc != 0)
		fail_msg("\"%s\": expected to parse, got %d: %s", text, rc, err);
	if (w.days != days || w.start_min != start || w.end_min != end)
		fail_msg("\"%s\": expected days 0x%02x %d-%d min, got days 0x%02x %d-%d min", text,
			 days, start, end, w.days, (int)w.start_min, (int)w.end_min);
}

static void expect_bad_window(const char *text, const char *why)
{
	struct clock_window w = { 0, 0, 0 };
	char err[256] = "";
	int rc = clock_window_parse(text, &w, err, sizeof(err));
	if (rc != DRIP_EINVALID)
		fail_msg("\"%s\": expected DRIP_EINVALID about \"%s\", got %d (days 0x%02x %d-%d)",
			 text ? text : "(null)", why, rc, w.days, (int)w.start_min, (int)w.end_min);
	if (!strstr(err, why))
		fail_msg("\"%s\": expected an error saying \"%s\", got \"%s\"",
			 text ? text : "(null)", why, err);
}

static void test_send_windows_parse(void **state)
{
	(void)state;
	expect_window("mon-fri 09:00-17:00", MON | TUE | WED | THU | FRI, 540, 1020);
	expect_window("sat,sun 10:00-12:00", SAT | SUN, 600, 720);
	expect_window("daily 08:30-18:00", 0x7f, 510, 1080);
	expect_window("every day 08:30-18:00", 0x7f, 510, 1080);
	expect_window("mon,wed-fri 09:00-17:30", MON | WED | THU | FRI, 540, 1050);
	expect_window("sun 00:00-24:00", SUN, 0, 1440);
	expect_window("tue 9:05-9:06", TUE, 545, 546);
	expect_window("  Mon-Fri  09:00 - 17:00 ", MON | TUE | WED | THU | FRI, 540, 1020);
	expect_window("monday, wednesday - friday 09:00-17:00", MON | WED | THU | FRI, 540, 1020);
	expect_window("EVERY   DAY 00:00-00:01", 0x7f, 0, 1);
	expect_window("mon,mon,mon 23:59-24:00", MON, 1439, 1440);
	expect_window("sun-sat 09:00-17:00", 0x7f, 540, 1020);
	expect_window("wed-wed 09:00-17:00", WED, 540, 1020);
}

static void test_day_ranges_wrap_forward_through_the_week(void **state)
{
	(void)state;
	/* A range runs forward from its first day to its last, past Saturday if need be. */
	expect_window("fri-mon 09:00-17:00", FRI | SAT | SUN | MON, 540, 1020);
	expect_window("sat-sun 10:00-12:00", SAT | SUN, 600, 720);
	expect_window("sat-fri 10:00-12:00", 0x7f, 600, 720);
	expect_window("thu-tue 10:00-12:00", THU | FRI | SAT | SUN | MON | TUE, 600, 720);
}

static void test_malformed_send_windows_are_refused_with_a_reason(void **state)
{
	(void)state;
	expect_bad_window("mon-fri 9-17", "bad hours \"9-17\"");
	expect_bad_window("mon 17:00-09:00", "must end after it starts (17:00 to 09:00)");
	expect_bad_window("mon 09:00-09:00", "must end after it starts");
	expect_bad_window("mon 24:00-24:00", "must end after it starts");
	expect_bad_window("", "empty send window");
	expect_bad_window("   ", "empty send window");
	expect_bad_window(NULL, "empty send window");
	expect_bad_window("xyz 09:00-10:00", "unknown day \"xyz\"");
	expect_bad_window("mon-xyz 09:00-10:00", "unknown day \"xyz\"");
	expect_bad_window("weekdays 09:00-17:00", "unknown day \"weekdays\"");
	expect_bad_window("daily,mon 09:00-17:00", "unknown day \"daily\"");
	expect_bad_window("every 09:00-17:00", "unknown day \"every\"");
	expect_bad_window("mon- 09:00-10:00", "unknown day \"\"");
	expect_bad_window("mon-tue-wed 09:00-10:00", "unknown day \"tue-wed\"");
	expect_bad_window("mo 09:00-10:00", "unknown day \"mo\"");
	expect_bad_window("mon, 09:00-10:00", "a day is missing");
	expect_bad_window(",mon 09:00-10:00", "a day is missing");
	expect_bad_window("mon-fri", "no hours");
	expect_bad_window("09:00-17:00", "no days");
	expect_bad_window("mon 09:00", "bad hours");
	expect_bad_window("mon 09:00-", "bad hours");
	expect_bad_window("mon 09:60-10:00", "bad hours");
	expect_bad_window("mon 09:00-24:01", "bad hours");
	expect_bad_window("mon 25:00-26:00", "bad hours");
	expect_bad_window("mon 009:00-10:00", "bad hours");
	expect_bad_window("mon 09:0-10:00", "bad hours");
	expect_bad_window("mon 09:00-17:00 utc", "bad hours");
	expect_bad_window("mon 09:00-12:00,14:00-17:00", "bad hours");
}

/* clock_window_next of `text` in zone `name` from from_utc must be want_utc (ISO strings
 * without the Z, "2026-01-16T17:00:00"). */
static void expect_next(const char *text, const char *name, const char *from_utc,
			const char *want_utc)
{
	struct clock_window w;
	struct tm tm;
	char err[256] = "", got_s[32], local[160];
	assert_int_equal(clock_window_parse(text, &w, err, sizeof(err)), 0);
	const struct clock_zone *z = name ? zone(name) : NULL;
	memset(&tm, 0, sizeof(tm));
	assert_non_null(strptime(from_utc, "%Y-%m-%dT%H:%M:%S", &tm));
	int64_t from = (int64_t)timegm(&tm);
	memset(&tm, 0, sizeof(tm));
	assert_non_null(strptime(want_utc, "%Y-%m-%dT%H:%M:%S", &tm));
	int64_t want = (int64_t)timegm(&tm);
	int64_t got = clock_window_next(&w, z, from);
	if (got != want) {
		clock_format_utc(got, got_s, sizeof(got_s));
		clock_zone_local(z, got, &tm);
		describe_tm(&tm, local, sizeof(local));
		fail_msg("\"%s\" in %s from %sZ: expected %sZ, got %s (%s local)", text,
			 name ? name : "UTC", from_utc, want_utc, got_s, local);
	}
}

static void test_window_next_waits_from_friday_evening_to_monday_morning(void **state)
{
	(void)state;
	/* Friday 16 January 2026, 18:00 CET -> Monday 19 January, 09:00 CET. */
	expect_next("mon-fri 09:00-17:00", "Europe/Berlin", "2026-01-16T17:00:00",
		    "2026-01-19T08:00:00");
	/* The end is exclusive: 17:00:00 is out, 16:59:59 in. */
	expect_next("mon-fri 09:00-17:00", "Europe/Berlin", "2026-01-16T16:00:00",
		    "2026-01-19T08:00:00");
	expect_next("mon-fri 09:00-17:00", "Europe/Berlin", "2026-01-16T15:59:59",
		    "2026-01-16T15:59:59");
	/* Before the opening the same day. */
	expect_next("mon-fri 09:00-17:00", "Europe/Berlin", "2026-01-19T05:12:13",
		    "2026-01-19T08:00:00");
}

static void test_window_next_inside_the_window_is_unchanged(void **state)
{
	(void)state;
	expect_next("mon-fri 09:00-17:00", "Europe/Berlin", "2026-07-15T08:00:00",
		    "2026-07-15T08:00:00");
	expect_next("mon-fri 09:00-17:00", "Europe/Berlin", "2026-07-15T07:00:00",
		    "2026-07-15T07:00:00"); /* the first second */
	expect_next("daily 00:00-24:00", "Pacific/Chatham", "2026-07-15T07:00:01",
		    "2026-07-15T07:00:01");
	expect_next("mon-fri 09:00-17:00", NULL, "2026-07-15T09:00:00", "2026-07-15T09:00:00");
	/* No window: no wait. */
	int64_t t = utc(2026, 7, 18, 3, 0, 0);
	assert_i64_equal(clock_window_next(NULL, zone("Europe/Berlin"), t), t);
}

static void test_window_next_finds_a_sunday_window_a_week_on(void **state)
{
	(void)state;
	/* Monday 6 July -> Sunday 12 July, 10:00 CEST. */
	expect_next("sun 10:00-12:00", "Europe/Berlin", "2026-07-06T10:00:00",
		    "2026-07-12T08:00:00");
	/* Just after it closes -> the next Sunday. */
	expect_next("sun 10:00-12:00", "Europe/Berlin", "2026-07-12T10:00:00",
		    "2026-07-19T08:00:00");
	/* UTC, a wrapping range. */
	expect_next("fri-mon 09:00-17:00", NULL, "2026-07-14T12:00:00", "2026-07-17T09:00:00");
}

static void test_window_opening_in_the_spring_forward_gap_opens_when_the_clocks_jump(void **state)
{
	(void)state;
	/* Berlin, Sunday 29 March 2026: 02:00 CET is 03:00 CEST (01:00 UTC). A window from
	 * 02:30 opens at the first instant the clocks show a time inside it: 03:00 CEST. */
	expect_next("daily 02:30-03:30", "Europe/Berlin", "2026-03-29T00:00:00",
		    "2026-03-29T01:00:00");
	/* A window wholly inside the gap does not open that day. */
	expect_next("daily 02:00-03:00", "Europe/Berlin", "2026-03-29T00:00:00",
		    "2026-03-30T00:00:00");
	/* New York, Sunday 8 March 2026: 02:00-03:00 EST does not exist; a Sundays-only
	 * window inside it waits a week. */
	expect_next("sun 02:00-02:30", "America/New_York", "2026-03-08T00:00:00",
		    "2026-03-15T06:00:00");
	/* Chatham, Sunday 27 September 2026: 02:45 +1245 is 03:45 +1345 (14:00 UTC). */
	expect_next("daily 03:00-04:00", "Pacific/Chatham", "2026-09-26T12:00:00",
		    "2026-09-26T14:00:00");
}

static void test_window_in_the_fall_back_overlap_opens_at_either_pass(void **state)
{
	(void)state;
	/* Berlin, Sunday 25 October 2026: 03:00 CEST is 02:00 CET (01:00 UTC), so 02:00-03:00
	 * happens twice. The first pass opens the window... */
	expect_next("daily 02:15-02:45", "Europe/Berlin", "2026-10-24T23:00:00",
		    "2026-10-25T00:15:00");
	/* ...and after it closed, the second pass opens it again. */
	expect_next("daily 02:15-02:45", "Europe/Berlin", "2026-10-25T00:50:00",
		    "2026-10-25T01:15:00");
	expect_next("daily 02:15-02:45", "Europe/Berlin", "2026-10-25T01:50:00",
		    "2026-10-26T01:15:00");
	/* New York, Sunday 1 November 2026: 01:00-02:00 happens twice. */
	expect_next("sun 01:15-01:45", "America/New_York", "2026-11-01T05:30:00",
		    "2026-11-01T05:30:00");
	expect_next("sun 01:15-01:45", "America/New_York", "2026-11-01T05:50:00",
		    "2026-11-01T06:15:00");
	/* Sydney, Sunday 5 April 2026: 03:00 AEDT is 02:00 AEST. */
	expect_next("sun 02:15-02:45", "Australia/Sydney", "2026-04-04T15:00:00",
		    "2026-04-04T15:15:00");
	expect_next("sun 02:15-02:45", "Australia/Sydney", "2026-04-04T15:46:00",
		    "2026-04-04T16:15:00");
	/* Santiago, 5 April 2026: midnight -03 is 23:00 -04 on Saturday again, and Sunday
	 * 00:00 -03 never comes: Sunday starts at 00:00 -04. */
	expect_next("sat 23:30-24:00", "America/Santiago", "2026-04-05T03:00:00",
		    "2026-04-05T03:30:00");
	expect_next("sun 00:00-01:00", "America/Santiago", "2026-04-05T02:30:00",
		    "2026-04-05T04:00:00");
}

static void test_window_next_in_new_york_sydney_kolkata_and_chatham(void **state)
{
	(void)state;
	/* Friday 6 March, 18:00 EST -> Monday 9 March, 09:00 EDT (DST began on the 8th). */
	expect_next("mon-fri 09:00-17:00", "America/New_York", "2026-03-06T23:00:00",
		    "2026-03-09T13:00:00");
	/* Friday 3 April, 17:30 AEDT -> Monday 6 April, 09:00 AEST (DST ended on the 5th). */
	expect_next("mon-fri 09:00-17:00", "Australia/Sydney", "2026-04-03T06:30:00",
		    "2026-04-05T23:00:00");
	/* Kolkata, +05:30: Saturday -> Monday 09:00 IST; 17:00 IST is 11:30 UTC. */
	expect_next("mon-fri 09:00-17:00", "Asia/Kolkata", "2026-07-04T00:00:00",
		    "2026-07-06T03:30:00");
	expect_next("mon-fri 09:00-17:00", "Asia/Kolkata", "2026-07-15T11:29:59",
		    "2026-07-15T11:29:59");
	expect_next("mon-fri 09:00-17:00", "Asia/Kolkata", "2026-07-15T11:30:00",
		    "2026-07-16T03:30:00");
	/* Chatham, +12:45 in July: Monday 09:00 is Sunday 20:15 UTC. */
	expect_next("mon-fri 09:00-17:00", "Pacific/Chatham", "2026-07-04T12:00:00",
		    "2026-07-05T20:15:00");
	/* St John's, -03:30 then -02:30 from 8 March. */
	expect_next("mon-fri 09:00-17:00", "America/St_Johns", "2026-03-07T00:30:00",
		    "2026-03-09T11:30:00");
}

static void test_window_next_skips_a_day_the_zone_skipped(void **state)
{
	(void)state;
	/* Samoa went from Thursday 29 December 2011 (-10) to Saturday 31 December (+14):
	 * there was no Friday, so a Fridays-only window waits for 6 January 2012. */
	expect_next("fri 09:00-17:00", "Pacific/Apia", "2011-12-29T20:00:00",
		    "2012-01-05T19:00:00");
}

/* Whether glibc's local time (TZ already set) at u lies in w. */
static bool glibc_in_window(const struct clock_window *w, int64_t u)
{
	struct tm tm;
	glibc_local(u, &tm);
	int min = tm.tm_hour * 60 + tm.tm_min;
	return (w->days >> tm.tm_wday & 1) && min >= w->start_min && min < w->end_min;
}

/*
 * Checks clock_window_next(w, z, t) against a search with glibc: the answer lies in the
 * window, and no earlier instant from t on does. Windows and offsets here are multiples of
 * 15 minutes, so whether an instant is inside changes only on UTC quarter hours.
 */
static void check_next_by_search(const char *wtext, const struct clock_window *w,
				 const struct clock_zone *z, const char *name, int64_t t)
{
	char a[32], b[32];
	int64_t got = clock_window_next(w, z, t);
	clock_format_utc(t, a, sizeof(a));
	clock_format_utc(got, b, sizeof(b));
	if (got < t || got - t > 16 * 86400)
		fail_msg("\"%s\" in %s from %s: got %s, before t or too far", wtext, name, a, b);
	if (!glibc_in_window(w, got))
		fail_msg("\"%s\" in %s from %s: got %s, which glibc says is outside", wtext, name,
			 a, b);
	if (got == t)
		return;
	if (glibc_in_window(w, t))
		fail_msg("\"%s\" in %s from %s: got %s, but t itself is inside", wtext, name, a, b);
	for (int64_t u = (t / 900 + 1) * 900; u < got; u += 900) {
		if (glibc_in_window(w, u)) {
			char c[32];
			clock_format_utc(u, c, sizeof(c));
			fail_msg("\"%s\" in %s from %s: got %s, but %s is inside already", wtext,
				 name, a, b, c);
		}
	}
}

static void test_window_next_agrees_with_a_quarter_hour_search(void **state)
{
	static const char *const windows[] = { "mon-fri 09:00-17:00", "sun 10:00-12:00",
					       "daily 02:30-03:30",   "sat,sun 00:45-02:15",
					       "fri-mon 23:00-24:00", "daily 00:00-00:15",
					       "wed 01:00-03:00" };
	static const char *const zones[] = {
		"Europe/Berlin",    "America/New_York",  "Australia/Sydney", "Asia/Kolkata",
		"America/St_Johns", "Pacific/Chatham",   "Europe/London",    "UTC",
		"Asia/Tehran",      "America/Sao_Paulo", "Europe/Dublin",    "Australia/Lord_Howe",
		"America/Santiago", "Asia/Jerusalem",    "America/Nuuk",     "Asia/Kathmandu",
	};
	long checks = 0;
	(void)state;
	for (size_t zi = 0; zi < N_OF(zones); zi++) {
		const struct clock_zone *z = zone(zones[zi]);
		glibc_use(zones[zi]);
		/* Where glibc's offset changes in 2026, to start searches near them. */
		int64_t near[64];
		size_t nnear = 0;
		for (int64_t t = utc(2026, 1, 1, 0, 0, 0); t < utc(2027, 1, 1, 0, 0, 0); t += 900) {
			struct tm x, y;
			glibc_local(t, &x);
			glibc_local(t + 900, &y);
			if (x.tm_gmtoff != y.tm_gmtoff && nnear < N_OF(near))
				near[nnear++] = t + 900;
		}
		for (size_t wi = 0; wi < N_OF(windows); wi++) {
			struct clock_window w;
			char err[256];
			assert_int_equal(clock_window_parse(windows[wi], &w, err, sizeof(err)), 0);
			for (int64_t t = utc(2026, 1, 1, 0, 0, 0); t < utc(2027, 1, 1, 0, 0, 0);
			     t += 2 * 86400 + 7 * 3600 + 13 * 60 + 17, checks++)
				check_next_by_search(windows[wi], &w, z, zones[zi], t);
			for (size_t i = 0; i < nnear; i++)
				for (int64_t d = -26 * 3600; d <= 26 * 3600;
				     d += 1800 + 17, checks++)
					check_next_by_search(windows[wi], &w, z, zones[zi],
							     near[i] + d);
		}
	}
	print_message("checked %ld searches\n", checks);
	unsetenv("TZ");
	tzset();
}

/* A footer rule whose DST ends at 00:30 on Sunday, going back to 23:30 on Saturday: the
 * local date goes back a day, and Saturday's window comes after Sunday's first minutes. */
static void test_window_next_looks_back_a_day_when_the_clocks_cross_midnight_back(void **state)
{
	static const char *const tz = "XST3XDT,M9.1.6/24,M4.1.0/0:30";
	static const struct tzif_type t0 = { 0, 0, 0 };
	struct tzif_spec s = { '3', 0, NULL, NULL, 1, &t0, "XXX", 4, tz };
	uint8_t buf[4096];
	size_t v2, len = tzif_build(&s, buf, &v2);
	struct clock_zone *z = parse_ok(tz, buf, len);
	struct clock_window w;
	char err[256];
	(void)state;
	/* Sunday 5 April 2026, 00:30 XDT (-2) = 02:30 UTC becomes Saturday 23:30 XST (-3). */
	assert_int_equal(clock_window_parse("sat 23:40-23:50", &w, err, sizeof(err)), 0);
	int64_t t = utc(2026, 4, 5, 2, 10, 0); /* Sunday 00:10 XDT */
	assert_i64_equal(clock_window_next(&w, z, t), utc(2026, 4, 5, 2, 40, 0));
	glibc_use(tz);
	for (int64_t u = t - 6 * 3600; u < t + 6 * 3600; u += 60)
		check_next_by_search("sat 23:40-23:50", &w, z, tz, u);
	unsetenv("TZ");
	tzset();
	clock_zone_free(z);
}

static void test_invalid_windows_do_not_hold_a_touch_back(void **state)
{
	const struct clock_zone *z = zone("Europe/Berlin");
	int64_t t = utc(2026, 7, 18, 3, 0, 0);
	struct clock_window none = { 0, 540, 1020 }, backwards = { 0x7f, 1020, 540 },
			    late = { 0x7f, 540, 1441 };
	(void)state;
	assert_i64_equal(clock_window_next(&none, z, t), t);
	assert_i64_equal(clock_window_next(&backwards, z, t), t);
	assert_i64_equal(clock_window_next(&late, z, t), t);
}

static int teardown_zones(void **state)
{
	(void)state;
	clock_zones_free();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_duration_unit_parses_to_seconds),
		cmocka_unit_test(test_bare_zero_is_the_only_unitless_duration),
		cmocka_unit_test(test_malformed_durations_are_refused),
		cmocka_unit_test(test_overflowing_durations_are_refused),
		cmocka_unit_test(test_durations_format_in_the_largest_exact_unit),
		cmocka_unit_test(test_formatted_durations_parse_back_to_the_same_seconds),
		cmocka_unit_test(test_without_test_clock_business_time_is_the_wall_clock),
		cmocka_unit_test(test_without_test_clock_a_wall_clock_jump_is_slewed_not_followed),
		cmocka_unit_test(test_test_clock_starts_at_wall_time_plus_offset),
		cmocka_unit_test(test_test_clock_follows_monotonic_time_not_the_wall_clock),
		cmocka_unit_test(test_test_clock_runs_at_its_rate),
		cmocka_unit_test(test_a_nonpositive_rate_falls_back_to_real_time),
		cmocka_unit_test(test_advance_moves_the_test_clock_and_keeps_the_rate),
		cmocka_unit_test(test_advance_refuses_to_go_backwards),
		cmocka_unit_test(test_advance_without_test_clock_is_disabled),
		cmocka_unit_test(test_offset_is_business_minus_wall_time),
		cmocka_unit_test(test_persisted_offset_resumes_the_same_business_time),
		cmocka_unit_test(test_restart_never_moves_business_time_back),
		cmocka_unit_test(test_delay_converts_business_seconds_to_machine_ms),
		cmocka_unit_test(test_delay_is_zero_when_due),
		cmocka_unit_test(test_delay_is_capped_at_a_day),
		cmocka_unit_test(test_known_time_zones_are_valid),
		cmocka_unit_test(test_unknown_or_unsafe_time_zones_are_refused),
		cmocka_unit_test(test_utc_format_is_iso_8601),
		cmocka_unit_test(test_now_without_test_clock_is_the_system_time),
		cmocka_unit_test(test_zone_offsets_and_local_times_match_glibc),
		cmocka_unit_test(test_odd_zones_match_glibc),
		cmocka_unit_test(test_far_future_follows_the_footer_rule),
		cmocka_unit_test(test_built_tzif_data_parses_and_uses_transitions_then_the_rule),
		cmocka_unit_test(
			test_a_version_1_file_uses_its_last_type_after_the_last_transition),
		cmocka_unit_test(test_an_empty_footer_keeps_the_last_type),
		cmocka_unit_test(test_footer_tz_strings_match_glibc),
		cmocka_unit_test(test_a_rule_of_dst_all_year_is_dst_all_year),
		cmocka_unit_test(test_dst_without_a_rule_follows_the_us_rule),
		cmocka_unit_test(test_every_truncation_of_a_zoneinfo_file_is_an_error),
		cmocka_unit_test(test_corrupt_counts_and_indexes_are_errors),
		cmocka_unit_test(test_bad_footers_are_errors),
		cmocka_unit_test(test_zone_cache_returns_the_same_object),
		cmocka_unit_test(test_unknown_zones_are_errors_that_name_them),
		cmocka_unit_test(test_leap_second_zones_are_refused),
		cmocka_unit_test(test_a_null_zone_is_utc),
		cmocka_unit_test(test_extreme_times_are_clamped_not_overflowed),
		cmocka_unit_test(test_send_windows_parse),
		cmocka_unit_test(test_day_ranges_wrap_forward_through_the_week),
		cmocka_unit_test(test_malformed_send_windows_are_refused_with_a_reason),
		cmocka_unit_test(test_window_next_waits_from_friday_evening_to_monday_morning),
		cmocka_unit_test(test_window_next_inside_the_window_is_unchanged),
		cmocka_unit_test(test_window_next_finds_a_sunday_window_a_week_on),
		cmocka_unit_test(
			test_window_opening_in_the_spring_forward_gap_opens_when_the_clocks_jump),
		cmocka_unit_test(test_window_in_the_fall_back_overlap_opens_at_either_pass),
		cmocka_unit_test(test_window_next_in_new_york_sydney_kolkata_and_chatham),
		cmocka_unit_test(test_window_next_skips_a_day_the_zone_skipped),
		cmocka_unit_test(test_window_next_agrees_with_a_quarter_hour_search),
		cmocka_unit_test(
			test_window_next_looks_back_a_day_when_the_clocks_cross_midnight_back),
		cmocka_unit_test(test_invalid_windows_do_not_hold_a_touch_back),
	};
	return cmocka_run_group_tests(tests, NULL, teardown_zones);
}
