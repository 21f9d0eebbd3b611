/* clock.h - business time (what delays and windows are measured in) and duration syntax. */
#ifndef DRIPD_CLOCK_H
#define DRIPD_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Business time is UTC seconds. Without the test clock it is the wall clock. With it
 * (config "test_clock": true) it is the wall clock at start-up plus a persisted offset,
 * then runs `rate` times faster than libuv's monotonic clock, so `clock_advance` and a
 * fast demo rate move it, and a jump of the wall clock does not.
 */
struct clock {
	bool test;
	double rate;
	int64_t anchor_business_ms; /* business time at anchor_mono_ms */
	uint64_t anchor_mono_ms;
};

/* Sets up `c`; with `test`, business time starts at wall + offset_s and runs at `rate`. */
void clock_init(struct clock *c, bool test, double rate, int64_t offset_s, int64_t wall_ms,
		uint64_t mono_ms);
/* Business time in seconds at the machine instants given (pure; for tests and the others). */
int64_t clock_business_at(const struct clock *c, int64_t wall_ms, uint64_t mono_ms);
/* Business time now, in seconds. */
int64_t clock_now(const struct clock *c);
/* Moves a test clock forward by `secs`; returns DRIP_EDISABLED without the test clock. */
int clock_advance(struct clock *c, int64_t secs, uint64_t mono_ms);
/* What to persist so a restart resumes the same business time: business minus wall. */
int64_t clock_offset_at(const struct clock *c, int64_t wall_ms, uint64_t mono_ms);
/* Machine milliseconds until business second `due` (0 if due already), capped at a day. */
uint64_t clock_delay_ms(const struct clock *c, int64_t due, int64_t now);

/* Wall clock in milliseconds and libuv's monotonic clock in milliseconds. */
int64_t clock_wall_ms(void);
uint64_t clock_mono_ms(void);

/*
 * Parses the one duration syntax: a whole number and a unit, s m h d w ("30s", "3d");
 * "0" alone is accepted too. Returns 0 and the seconds, or DRIP_EINVALID.
 */
int clock_parse_duration(const char *s, int64_t *secs);
/* Writes the shortest exact duration for `secs` ("3d", "90m", "0s"). */
void clock_format_duration(int64_t secs, char *out, size_t outlen);
/* Writes `t` as ISO 8601 UTC ("2026-11-23T10:00:00Z"). */
void clock_format_utc(int64_t t, char *out, size_t outlen);

/* Whether `zone` names an IANA time zone installed under /usr/share/zoneinfo. */
bool clock_tz_valid(const char *zone);

#endif
