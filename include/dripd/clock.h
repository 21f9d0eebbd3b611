/* clock.h - business time (what delays and windows are measured in) and duration syntax. */
#ifndef DRIPD_CLOCK_H
#define DRIPD_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tm;

/*
 * Business time is UTC seconds. Without the test clock it is the wall clock at start-up,
 * then runs with libuv's monotonic clock and slews towards the wall clock by at most a
 * tenth of the time elapsed: a small NTP correction is followed within seconds, a wall
 * clock jumping a day forward or back is caught up with over ten days, so neither bursts
 * nor loses the schedule. It never runs backwards. With the test clock (config
 * "test_clock": true) it is the wall clock at start-up plus a persisted offset, then runs
 * `rate` times faster than the monotonic clock, so `clock_advance` and a fast demo rate
 * move it, and a jump of the wall clock does not.
 */
struct clock {
	bool test;
	double rate;
	int64_t anchor_business_ms; /* business time at anchor_mono_ms */
	uint64_t anchor_mono_ms;
	int64_t last_ms; /* the latest business time clock_now answered */
};

/* Sets up `c`; with `test`, business time starts at wall + offset_s and runs at `rate`. */
void clock_init(struct clock *c, bool test, double rate, int64_t offset_s, int64_t wall_ms,
		uint64_t mono_ms);
/*
 * Business time in seconds at the machine instants given, from the last anchor (pure; for
 * tests and the others).
 */
int64_t clock_business_at(const struct clock *c, int64_t wall_ms, uint64_t mono_ms);
/* Business time now, in seconds; never less than the last answer. Re-anchors the slew. */
int64_t clock_now(struct clock *c);
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

/*
 * Time zones, read from the zoneinfo files (TZif, RFC 8536, versions 1 to 4) rather than
 * through glibc, whose TZ is process-global: the transitions the file lists, then the rule
 * of its footer (a POSIX TZ string such as "CET-1CEST,M3.5.0,M10.5.0/3") for every time
 * after the last one. Zones with leap seconds (the right/ tree) are refused: business time
 * is POSIX seconds, which do not count them.
 */
struct clock_zone;

/*
 * The zone `name` (checked as clock_tz_valid does), loaded from /usr/share/zoneinfo the
 * first time and cached: the same name gives the same object, which stays valid and
 * unchanged until clock_zones_free(). NULL on failure, with the zone's name and what is
 * wrong in err. A hit costs a string compare per cached zone; a miss, reading the file.
 * The cache is not locked: call it from the loop thread only.
 */
const struct clock_zone *clock_zone_get(const char *name, char *err, size_t errlen);
/* Frees every cached zone (at exit, so valgrind sees a clean heap); pointers die with it. */
void clock_zones_free(void);

/*
 * Parses TZif data (the contents of a zoneinfo file) into a zone that the caller owns and
 * frees with clock_zone_free; `name` is for the error messages and clock_zone_name. Every
 * count, index and length is checked against `len`: corrupt data gives NULL and a reason
 * in err, never a read outside it. For tests and fuzzing; the daemon uses clock_zone_get.
 */
struct clock_zone *clock_zone_parse(const char *name, const void *data, size_t len, char *err,
				    size_t errlen);
void clock_zone_free(struct clock_zone *z);
/* The name the zone was loaded under ("Europe/Berlin"). */
const char *clock_zone_name(const struct clock_zone *z);

/*
 * The UTC offset in seconds (east positive: +3600 for CET) at UTC second t. A binary search
 * over the file's transitions, or a few date computations after the last one. NULL is UTC.
 */
int32_t clock_zone_offset(const struct clock_zone *z, int64_t t);
/*
 * The local calendar time of UTC second t in z, as gmtime_r(t + offset) gives it, with
 * tm_isdst, tm_gmtoff and tm_zone (the abbreviation, "CEST", owned by the zone) set as
 * localtime_r sets them. NULL is UTC. t is clamped to +-2^50 s (some 35 million years).
 */
void clock_zone_local(const struct clock_zone *z, int64_t t, struct tm *out);

/* A send window: some days of the week, the same hours each day, in the lead's zone. */
struct clock_window {
	uint8_t days; /* bit 0 = Sunday ... bit 6 = Saturday, as tm_wday; 0x7f: every day */
	int32_t start_min; /* minutes after local midnight, inclusive, 0 to 1439 */
	int32_t end_min; /* exclusive, start_min < end_min <= 1440: no window crosses midnight */
};

/*
 * Parses a send window: days, then hours, "mon-fri 09:00-17:00", "sat,sun 10:00-12:00",
 * "mon,wed-fri 9:00-17:30", "daily 08:30-18:00" ("every day" too). Days are sun mon tue
 * wed thu fri sat (or spelt out, any case) and ranges of them, joined by commas; a range
 * runs forward through the week and may wrap past Saturday ("fri-mon" is Friday to Monday,
 * "sat-sun" the weekend). Hours are H:MM or HH:MM; the end may be 24:00, and must come after
 * the start. Returns 0, or DRIP_EINVALID with what is wrong in err.
 */
int clock_window_parse(const char *s, struct clock_window *w, char *err, size_t errlen);

/*
 * The earliest UTC second >= t whose local time in z lies inside w: t itself when it is
 * inside, else the window's next opening. Local time is what the clocks on the wall show:
 * a window that opens in a DST gap (02:30 on a day the clocks jump from 02:00 to 03:00)
 * opens when the clocks show a time inside it (03:00), and a window that lies wholly in
 * the gap does not open that day; in a fall-back overlap the clocks show the window's hours
 * twice, and either counts. Costs a few offset look-ups per local date up to the opening
 * and one past it (a week and a day at most for a real window; the search stops after two
 * weeks, as when a zone skipped a day, and then answers t). Returns t when w is NULL or not
 * a valid window (no days, hours out of order); NULL z is UTC.
 */
int64_t clock_window_next(const struct clock_window *w, const struct clock_zone *z, int64_t t);

#endif
