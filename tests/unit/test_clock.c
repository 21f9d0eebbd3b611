/* test_clock.c - business time, the test clock and its rate, the duration syntax. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dripd/clock.h"
#include "dripd/error.h"

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
	/* Monotonic time passing does not move it; the wall clock does. */
	assert_i64_equal(clock_business_at(&c, WALL_MS, MONO_MS + 50000), WALL_MS / 1000);
	assert_i64_equal(clock_business_at(&c, WALL_MS + 7000, MONO_MS), WALL_MS / 1000 + 7);
	assert_i64_equal(clock_offset_at(&c, WALL_MS + 7000, MONO_MS + 9000), 0);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
