/* clock.c - business time, the test clock and its rate, the duration syntax. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "dripd/clock.h"
#include "dripd/error.h"

/* A timer never sleeps longer than this, so a changed clock or rate is noticed in time. */
#define CLOCK_MAX_DELAY_MS (24 * 3600 * 1000ULL)

int64_t clock_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t clock_mono_ms(void)
{
	return uv_hrtime() / 1000000;
}

void clock_init(struct clock *c, bool test, double rate, int64_t offset_s, int64_t wall_ms,
		uint64_t mono_ms)
{
	c->test = test;
	c->rate = test && rate > 0 ? rate : 1.0;
	c->anchor_business_ms = wall_ms + (test ? offset_s * 1000 : 0);
	c->anchor_mono_ms = mono_ms;
}

static int64_t clock_business_ms(const struct clock *c, int64_t wall_ms, uint64_t mono_ms)
{
	if (!c->test)
		return wall_ms;
	double elapsed = (double)(mono_ms - c->anchor_mono_ms) * c->rate;
	return c->anchor_business_ms + (int64_t)elapsed;
}

int64_t clock_business_at(const struct clock *c, int64_t wall_ms, uint64_t mono_ms)
{
	return clock_business_ms(c, wall_ms, mono_ms) / 1000;
}

int64_t clock_now(const struct clock *c)
{
	return clock_business_at(c, clock_wall_ms(), clock_mono_ms());
}

int clock_advance(struct clock *c, int64_t secs, uint64_t mono_ms)
{
	if (!c->test)
		return DRIP_EDISABLED;
	if (secs < 0)
		return DRIP_EINVALID;
	/* Re-anchor first so the rate applies from here on to the new value. */
	c->anchor_business_ms = clock_business_ms(c, 0, mono_ms) + secs * 1000;
	c->anchor_mono_ms = mono_ms;
	return 0;
}

int64_t clock_offset_at(const struct clock *c, int64_t wall_ms, uint64_t mono_ms)
{
	if (!c->test)
		return 0;
	/* Rounded up, not truncated: a restart may move business time a little forward, never
	 * back (a difference of 30d - 1ms must not come back as 30d - 1s). */
	int64_t diff = clock_business_ms(c, wall_ms, mono_ms) - wall_ms;
	return diff >= 0 ? (diff + 999) / 1000 : -(-diff / 1000);
}

uint64_t clock_delay_ms(const struct clock *c, int64_t due, int64_t now)
{
	if (due <= now)
		return 0;
	double ms = (double)(due - now) * 1000.0 / c->rate;
	if (ms > (double)CLOCK_MAX_DELAY_MS)
		return CLOCK_MAX_DELAY_MS;
	/* Round up: waking a little late costs nothing, waking early costs a wasted pass. */
	return (uint64_t)ms + 1;
}

static const struct {
	char unit;
	int64_t secs;
} clock_units[] = { { 'w', 7 * 86400 }, { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 } };

int clock_parse_duration(const char *s, int64_t *secs)
{
	const char *p = s;
	int64_t n = 0;
	if (!s || *p < '0' || *p > '9')
		return DRIP_EINVALID;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (INT64_MAX / 1000) / 10)
			return DRIP_EINVALID;
		n = n * 10 + (*p - '0');
	}
	if (*p == '\0')
		return n == 0 ? (*secs = 0, 0) : DRIP_EINVALID;
	if (p[1] != '\0')
		return DRIP_EINVALID;
	for (size_t i = 0; i < sizeof(clock_units) / sizeof(clock_units[0]); i++) {
		if (clock_units[i].unit == *p) {
			if (n > (INT64_MAX / 1000) / clock_units[i].secs)
				return DRIP_EINVALID;
			*secs = n * clock_units[i].secs;
			return 0;
		}
	}
	return DRIP_EINVALID;
}

void clock_format_duration(int64_t secs, char *out, size_t outlen)
{
	for (size_t i = 0; i < sizeof(clock_units) / sizeof(clock_units[0]); i++) {
		if (secs != 0 && secs % clock_units[i].secs == 0) {
			snprintf(out, outlen, "%" PRId64 "%c", secs / clock_units[i].secs,
				 clock_units[i].unit);
			return;
		}
	}
	snprintf(out, outlen, "%" PRId64 "s", secs);
}

void clock_format_utc(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

bool clock_tz_valid(const char *zone)
{
	struct stat sb;
	char path[512];
	if (!zone || !*zone || zone[0] == '/' || strstr(zone, "..") || strlen(zone) > 128)
		return false;
	for (const char *p = zone; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || strchr("/_+-", *p)))
			return false;
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", zone);
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}
