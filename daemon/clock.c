/* clock.c - business time, the test clock, durations, time zones and send windows. */
/*
 * DESIGN. Business time is UTC seconds (see clock.h for the test clock). Send windows are
 * hours in the lead's zone, and glibc's TZ is process-global and slow to switch per lead,
 * so this module reads the zoneinfo files itself: a TZif file (RFC 8536) is parsed once into
 * an immutable struct clock_zone (sorted transitions, their local time types, and the
 * footer's POSIX TZ rule for all times after the last transition), and kept in a small
 * cache keyed by name until clock_zones_free() at exit. Everything else here is pure: an
 * offset is a binary search (or, past the table, a dozen date computations), and the next
 * opening of a window walks at most a couple of weeks of local dates, a few steps each.
 * The cache is the only state and is used from the loop thread only; no locks, no logging.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "dripd/clock.h"
#include "dripd/error.h"
#include "dripd/util.h"

/* A timer never sleeps longer than this, so a changed clock or rate is noticed in time. */
#define CLOCK_MAX_DELAY_MS (24 * 3600 * 1000ULL)
/* Without the test clock, business time catches up with a moved wall clock at 1/10 speed. */
#define CLOCK_SLEW_DIV 10

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
	c->last_ms = c->anchor_business_ms;
}

/*
 * Without the test clock, business time runs with the monotonic clock from its anchor and
 * slews towards the wall clock by at most CLOCK_SLEW_DIV-th of the time elapsed, so an NTP
 * step of a second is followed within ten, while a wall clock set a day forward or back
 * takes ten days to be caught up with: no burst of sends, no day of silence.
 */
static int64_t clock_business_ms(const struct clock *c, int64_t wall_ms, uint64_t mono_ms)
{
	int64_t elapsed = mono_ms > c->anchor_mono_ms ? (int64_t)(mono_ms - c->anchor_mono_ms) : 0;
	if (c->test)
		return c->anchor_business_ms + (int64_t)((double)elapsed * c->rate);
	int64_t base = c->anchor_business_ms + elapsed;
	int64_t diff = wall_ms - base, max = elapsed / CLOCK_SLEW_DIV;
	return base + (diff > max ? max : diff < -max ? -max : diff);
}

int64_t clock_business_at(const struct clock *c, int64_t wall_ms, uint64_t mono_ms)
{
	return clock_business_ms(c, wall_ms, mono_ms) / 1000;
}

int64_t clock_now(struct clock *c)
{
	int64_t wall = clock_wall_ms();
	uint64_t mono = clock_mono_ms();
	int64_t ms = clock_business_ms(c, wall, mono);
	if (ms < c->last_ms)
		ms = c->last_ms; /* business time never runs backwards */
	c->last_ms = ms;
	/* Re-anchor once a second, so the slew allowance is spent as it accrues. */
	if (!c->test && mono >= c->anchor_mono_ms + 1000) {
		c->anchor_business_ms = ms;
		c->anchor_mono_ms = mono;
	}
	return ms / 1000;
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
	c->last_ms = c->anchor_business_ms;
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
	/* Leap-second zones count TAI-like seconds; business time is POSIX seconds. */
	if (strncmp(zone, "right/", 6) == 0 || strcmp(zone, "leapseconds") == 0)
		return false;
	for (const char *p = zone; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || strchr("/_+-", *p)))
			return false;
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", zone);
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---- time zones ------------------------------------------------------------------------ */

#define CLOCK_ZONEINFO "/usr/share/zoneinfo"
/* Real zoneinfo files are under 10 KiB; anything this big is not one. */
#define CLOCK_TZIF_MAX (1 << 20)
#define CLOCK_TZIF_HEADER 44
/* RFC 8536 wants offsets from -89999 to 93599 s; below 26 h either way is what the window
 * search relies on. */
#define CLOCK_UTOFF_LIMIT (26 * 3600)
#define CLOCK_ABBR_MAX 32
/* Times are clamped here (some 35 million years) so no date computation can overflow. */
#define CLOCK_T_LIMIT (INT64_C(1) << 50)

/* What the clocks show between two changes: the offset, whether it is DST, its name. */
struct clock_ltype {
	int32_t utoff;
	bool isdst;
	const char *abbr; /* into the zone's own memory */
};

/* The day and time a POSIX TZ rule switches on, in some year. */
struct clock_rule_date {
	char kind; /* 'J': Jn, day 1-365, Feb 29 never counted; 'D': n, day 0-365; 'M': Mm.w.d */
	int n; /* J and D */
	int month, week, wday; /* M: week 5 is the last such weekday of the month */
	int32_t secs; /* local time of day of the switch, -167 h to 167 h (TZif version 3) */
};

/* A POSIX TZ string: standard time, and maybe DST with the rule of when it starts and ends. */
struct clock_posix {
	bool has_dst;
	struct clock_ltype std, dst;
	struct clock_rule_date start; /* into DST, in standard time */
	struct clock_rule_date end; /* out of DST, in DST */
	char std_abbr[CLOCK_ABBR_MAX], dst_abbr[CLOCK_ABBR_MAX];
};

struct clock_zone {
	char *name;
	size_t ntrans;
	int64_t *trans; /* strictly ascending UTC seconds */
	uint8_t *trans_type; /* what each transition switches to, < ntypes */
	size_t ntypes; /* >= 1; type 0 is also what applies before the first transition */
	struct clock_ltype *types;
	char *chars; /* the abbreviations, NUL-terminated */
	bool has_rule; /* the footer's rule, for times from the last transition on */
	struct clock_posix rule;
	int32_t min_utoff, max_utoff; /* over every type and the rule: bounds the window search */
	struct clock_zone *next; /* in the cache */
};

/* The cache of clock_zone_get, newest first; loop thread only. */
static struct clock_zone *clock_zones;

static struct clock_ltype clock_utc_type = { 0, false, "UTC" };
/* What a NULL zone means. Never written, never freed. */
static struct clock_zone clock_utc_zone = {
	.name = "UTC", .ntypes = 1, .types = &clock_utc_type, .min_utoff = 0, .max_utoff = 0
};

static int64_t clock_floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t clock_clamp(int64_t t)
{
	return t < -CLOCK_T_LIMIT ? -CLOCK_T_LIMIT : t > CLOCK_T_LIMIT ? CLOCK_T_LIMIT : t;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t clock_days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = clock_floor_div(y, 400);
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The date of a day count, the inverse of clock_days_from_civil. */
static void clock_civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
	days += 719468;
	int64_t era = clock_floor_div(days, 146097);
	int64_t doe = days - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static bool clock_leap_year(int64_t y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static int clock_month_days(int64_t y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && clock_leap_year(y) ? 29 : days[m - 1];
}

/* 0 = Sunday, as tm_wday; 1970-01-01 was a Thursday. */
static int clock_weekday(int64_t days)
{
	return (int)((days % 7 + 7 + 4) % 7);
}

/* The day (since the epoch) on which rule date r falls in year y. */
static int64_t clock_rule_day(const struct clock_rule_date *r, int64_t y)
{
	int64_t jan1 = clock_days_from_civil(y, 1, 1);
	if (r->kind == 'J')
		return jan1 + r->n - 1 + (clock_leap_year(y) && r->n >= 60);
	if (r->kind == 'D')
		return jan1 + r->n;
	int64_t first = clock_days_from_civil(y, r->month, 1);
	int64_t day = first + (r->wday - clock_weekday(first) + 7) % 7 + 7 * (r->week - 1);
	int64_t last = first + clock_month_days(y, r->month) - 1;
	while (day > last)
		day -= 7;
	return day;
}

/*
 * What the rule says at t, and in *until the next change after t. The switches of five
 * years around t's are sorted and the last one at or before t wins: that copes with
 * southern zones (DST across new year), switch times up to 167 h and rules such as
 * "0/0,J365/25" that mean DST all year (a start at the same instant as an end wins).
 */
static const struct clock_ltype *clock_posix_at(const struct clock_posix *p, int64_t t,
						int64_t *until)
{
	struct {
		int64_t at;
		bool dst;
	} ev[10], tmp;
	size_t n = 0;
	int64_t y;
	int m, d;
	const struct clock_ltype *lt = &p->std;

	*until = INT64_MAX;
	if (!p->has_dst)
		return &p->std;
	clock_civil_from_days(clock_floor_div(t, 86400), &y, &m, &d);
	for (int64_t yy = y - 2; yy <= y + 2; yy++) {
		ev[n].at = clock_rule_day(&p->start, yy) * 86400 + p->start.secs - p->std.utoff;
		ev[n++].dst = true;
		ev[n].at = clock_rule_day(&p->end, yy) * 86400 + p->end.secs - p->dst.utoff;
		ev[n++].dst = false;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i;
		     j > 0 && (ev[j - 1].at > ev[j].at ||
			       (ev[j - 1].at == ev[j].at && ev[j - 1].dst && !ev[j].dst));
		     j--)
			tmp = ev[j], ev[j] = ev[j - 1], ev[j - 1] = tmp;
	for (size_t i = 0; i < n; i++) {
		if (ev[i].at > t) {
			*until = ev[i].at;
			break;
		}
		lt = ev[i].dst ? &p->dst : &p->std;
	}
	return lt;
}

/*
 * What the clocks show in z at t, and in *until the UTC second (> t) of the next change,
 * INT64_MAX if none. Before the first transition type 0 applies (RFC 8536); from the last
 * one on, the footer's rule when there is one (as glibc does), else the last type.
 */
static const struct clock_ltype *clock_zone_at(const struct clock_zone *z, int64_t t,
					       int64_t *until)
{
	if (z->ntrans == 0 || t >= z->trans[z->ntrans - 1]) {
		if (z->has_rule)
			return clock_posix_at(&z->rule, t, until);
		*until = INT64_MAX;
		return &z->types[z->ntrans ? z->trans_type[z->ntrans - 1] : 0];
	}
	if (t < z->trans[0]) {
		*until = z->trans[0];
		return &z->types[0];
	}
	size_t lo = 0, hi = z->ntrans - 1; /* trans[lo] <= t < trans[hi] */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	*until = z->trans[hi];
	return &z->types[z->trans_type[lo]];
}

int32_t clock_zone_offset(const struct clock_zone *z, int64_t t)
{
	int64_t until;
	return clock_zone_at(z ? z : &clock_utc_zone, clock_clamp(t), &until)->utoff;
}

void clock_zone_local(const struct clock_zone *z, int64_t t, struct tm *out)
{
	int64_t until, y;
	int m, d;
	t = clock_clamp(t);
	const struct clock_ltype *lt = clock_zone_at(z ? z : &clock_utc_zone, t, &until);
	int64_t local = t + lt->utoff;
	int64_t days = clock_floor_div(local, 86400);
	int64_t secs = local - days * 86400;
	clock_civil_from_days(days, &y, &m, &d);
	memset(out, 0, sizeof(*out));
	out->tm_year = (int)(y - 1900);
	out->tm_mon = m - 1;
	out->tm_mday = d;
	out->tm_hour = (int)(secs / 3600);
	out->tm_min = (int)(secs / 60 % 60);
	out->tm_sec = (int)(secs % 60);
	out->tm_wday = clock_weekday(days);
	out->tm_yday = (int)(days - clock_days_from_civil(y, 1, 1));
	out->tm_isdst = lt->isdst;
	out->tm_gmtoff = lt->utoff;
	out->tm_zone = lt->abbr;
}

const char *clock_zone_name(const struct clock_zone *z)
{
	return z ? z->name : clock_utc_zone.name;
}

/* ---- POSIX TZ strings (the TZif footer) ------------------------------------------------ */

static bool clock_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool clock_is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A zone abbreviation, "CET" or "<+0330>", into out; the rest of s, or NULL. */
static const char *clock_posix_abbr(const char *s, char *out)
{
	size_t n = 0;
	if (*s == '<') {
		for (s++; *s != '>'; s++) {
			if (!(clock_is_alpha(*s) || clock_is_digit(*s) || *s == '+' || *s == '-') ||
			    n + 1 >= CLOCK_ABBR_MAX)
				return NULL;
			out[n++] = *s;
		}
		s++;
		if (n == 0)
			return NULL;
	} else {
		for (; clock_is_alpha(*s); s++) {
			if (n + 1 >= CLOCK_ABBR_MAX)
				return NULL;
			out[n++] = *s;
		}
		if (n < 3)
			return NULL;
	}
	out[n] = '\0';
	return s;
}

/* A number of 1 to `digits` digits, at most max; the rest of s, or NULL. */
static const char *clock_posix_num(const char *s, int digits, int max, int *v)
{
	int n = 0, i = 0;
	for (; clock_is_digit(*s); s++) {
		if (++i > digits)
			return NULL;
		n = n * 10 + (*s - '0');
	}
	if (i == 0 || n > max)
		return NULL;
	*v = n;
	return s;
}

/* [+-]h[h[h]][:mm[:ss]] with hours up to max_h, in seconds; the rest of s, or NULL. */
static const char *clock_posix_hms(const char *s, int max_h, int32_t *secs)
{
	int sign = 1, h, m = 0, sec = 0;
	if (*s == '+' || *s == '-')
		sign = *s++ == '-' ? -1 : 1;
	if (!(s = clock_posix_num(s, 3, max_h, &h)))
		return NULL;
	if (*s == ':' && !(s = clock_posix_num(s + 1, 2, 59, &m)))
		return NULL;
	if (*s == ':' && !(s = clock_posix_num(s + 1, 2, 59, &sec)))
		return NULL;
	*secs = sign * (h * 3600 + m * 60 + sec);
	return s;
}

/* Jn, n or Mm.w.d, then an optional /time (02:00 by default); the rest of s, or NULL. */
static const char *clock_posix_date(const char *s, struct clock_rule_date *r)
{
	memset(r, 0, sizeof(*r));
	if (*s == 'J') {
		r->kind = 'J';
		if (!(s = clock_posix_num(s + 1, 3, 365, &r->n)) || r->n < 1)
			return NULL;
	} else if (*s == 'M') {
		r->kind = 'M';
		if (!(s = clock_posix_num(s + 1, 2, 12, &r->month)) || r->month < 1 || *s != '.' ||
		    !(s = clock_posix_num(s + 1, 1, 5, &r->week)) || r->week < 1 || *s != '.' ||
		    !(s = clock_posix_num(s + 1, 1, 6, &r->wday)))
			return NULL;
	} else {
		r->kind = 'D';
		if (!(s = clock_posix_num(s, 3, 365, &r->n)))
			return NULL;
	}
	r->secs = 2 * 3600;
	if (*s == '/')
		s = clock_posix_hms(s + 1, 167, &r->secs);
	return s;
}

/* Parses a POSIX TZ string into *p, which must stay where it is (abbr points into it);
 * NULL, or what is wrong. */
static const char *clock_posix_parse(const char *s, struct clock_posix *p)
{
	int32_t secs;
	memset(p, 0, sizeof(*p));
	p->std.abbr = p->std_abbr;
	p->dst.abbr = p->dst_abbr;
	if (!(s = clock_posix_abbr(s, p->std_abbr)))
		return "bad standard time name";
	if (!(s = clock_posix_hms(s, 24, &secs)))
		return "bad standard time offset";
	p->std.utoff = -secs; /* POSIX offsets count west */
	if (*s == '\0')
		return NULL;
	if (!(s = clock_posix_abbr(s, p->dst_abbr)))
		return "bad DST name";
	p->has_dst = true;
	p->dst.isdst = true;
	p->dst.utoff = p->std.utoff + 3600;
	if (*s != ',' && *s != '\0') {
		if (!(s = clock_posix_hms(s, 24, &secs)))
			return "bad DST offset";
		p->dst.utoff = -secs;
	}
	if (*s == '\0') {
		/* No rule: POSIX leaves it to the implementation; glibc uses the US one. */
		clock_posix_date("M3.2.0", &p->start);
		clock_posix_date("M11.1.0", &p->end);
		return NULL;
	}
	if (*s != ',' || !(s = clock_posix_date(s + 1, &p->start)))
		return "bad DST start rule";
	if (*s != ',' || !(s = clock_posix_date(s + 1, &p->end)))
		return "bad DST end rule";
	return *s == '\0' ? NULL : "junk after the DST rule";
}

/* ---- TZif files ------------------------------------------------------------------------ */

struct clock_tzif_header {
	char version;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t clock_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t clock_be64(const uint8_t *p)
{
	uint64_t u = (uint64_t)clock_be32(p) << 32 | clock_be32(p + 4);
	/* Two's complement without relying on an implementation-defined conversion. */
	return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

static bool clock_tzif_header(const uint8_t *p, size_t left, struct clock_tzif_header *h)
{
	if (left < CLOCK_TZIF_HEADER || memcmp(p, "TZif", 4) != 0)
		return false;
	h->version = (char)p[4];
	h->isutcnt = clock_be32(p + 20);
	h->isstdcnt = clock_be32(p + 24);
	h->leapcnt = clock_be32(p + 28);
	h->timecnt = clock_be32(p + 32);
	h->typecnt = clock_be32(p + 36);
	h->charcnt = clock_be32(p + 40);
	return true;
}

/* The size of a data block; counts are 32-bit, so 64-bit arithmetic cannot overflow. */
static uint64_t clock_tzif_block_size(const struct clock_tzif_header *h, unsigned tsize)
{
	return (uint64_t)h->timecnt * (tsize + 1) + (uint64_t)h->typecnt * 6 + h->charcnt +
	       (uint64_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

void clock_zone_free(struct clock_zone *z)
{
	if (!z || z == &clock_utc_zone)
		return;
	free(z->name);
	free(z->trans);
	free(z->trans_type);
	free(z->types);
	free(z->chars);
	free(z);
}

/* Reads the data block at p (its size checked by the caller) into z; NULL or what is wrong,
 * with the index concerned in *at. */
static const char *clock_tzif_block(struct clock_zone *z, const struct clock_tzif_header *h,
				    const uint8_t *p, unsigned tsize, size_t *at)
{
	z->ntrans = h->timecnt;
	z->ntypes = h->typecnt;
	z->trans = xmalloc(z->ntrans * sizeof(*z->trans));
	z->trans_type = xmalloc(z->ntrans);
	z->types = xcalloc(z->ntypes, sizeof(*z->types));
	z->chars = xmalloc((size_t)h->charcnt + 1);
	for (size_t i = 0; i < z->ntrans; i++, p += tsize) {
		z->trans[i] = tsize == 8 ? clock_be64(p) : (int32_t)clock_be32(p);
		if (i > 0 && z->trans[i] <= z->trans[i - 1])
			return *at = i, "transition times not in ascending order at transition";
	}
	for (size_t i = 0; i < z->ntrans; i++) {
		z->trans_type[i] = *p++;
		if (z->trans_type[i] >= z->ntypes)
			return *at = i, "local time type out of range at transition";
	}
	const uint8_t *ttinfo = p;
	p += 6 * z->ntypes;
	memcpy(z->chars, p, h->charcnt);
	z->chars[h->charcnt] = '\0';
	z->min_utoff = INT32_MAX;
	z->max_utoff = INT32_MIN;
	for (size_t i = 0; i < z->ntypes; i++, ttinfo += 6) {
		int32_t utoff = (int32_t)clock_be32(ttinfo);
		uint8_t idx = ttinfo[5];
		*at = i;
		if (utoff <= -CLOCK_UTOFF_LIMIT || utoff >= CLOCK_UTOFF_LIMIT)
			return "UT offset out of range in local time type";
		if (ttinfo[4] > 1)
			return "DST flag not 0 or 1 in local time type";
		if (idx >= h->charcnt || !memchr(z->chars + idx, '\0', h->charcnt - idx))
			return "abbreviation out of range in local time type";
		z->types[i] = (struct clock_ltype){ utoff, ttinfo[4] == 1, z->chars + idx };
		z->min_utoff = utoff < z->min_utoff ? utoff : z->min_utoff;
		z->max_utoff = utoff > z->max_utoff ? utoff : z->max_utoff;
	}
	return NULL;
}

struct clock_zone *clock_zone_parse(const char *name, const void *data, size_t len, char *err,
				    size_t errlen)
{
	const uint8_t *p = data;
	struct clock_tzif_header h;
	struct clock_zone *z = NULL;
	const char *why;
	char footer_why[200];
	size_t off = 0, at = SIZE_MAX;
	unsigned tsize = 4;
	uint64_t size;

	if (!name)
		name = "(unnamed)";
	if (!p || !clock_tzif_header(p, len, &h)) {
		why = p && len >= 4 && memcmp(p, "TZif", 4) == 0 ? "truncated header"
								 : "not a TZif file";
		goto fail;
	}
	off = CLOCK_TZIF_HEADER;
	if (h.version != '\0' && (h.version < '2' || h.version > '4')) {
		why = "unsupported TZif version";
		goto fail;
	}
	if (h.version != '\0') {
		/* Skip the 32-bit block: version 2 and later repeat it with 64-bit times. */
		size = clock_tzif_block_size(&h, 4);
		if (size > len - off) {
			why = "truncated version 1 data block";
			goto fail;
		}
		off += (size_t)size;
		if (!clock_tzif_header(p + off, len - off, &h)) {
			why = "missing or truncated version 2 header";
			goto fail;
		}
		off += CLOCK_TZIF_HEADER;
		tsize = 8;
	}
	if (h.typecnt == 0 || h.typecnt > 256 || h.charcnt == 0) {
		why = "bad count of local time types or abbreviation bytes";
		goto fail;
	}
	if ((h.isutcnt != 0 && h.isutcnt != h.typecnt) ||
	    (h.isstdcnt != 0 && h.isstdcnt != h.typecnt)) {
		why = "bad count of standard/UT indicators";
		goto fail;
	}
	if (h.leapcnt != 0) {
		why = "leap seconds (a right/ zone) are not supported";
		goto fail;
	}
	size = clock_tzif_block_size(&h, tsize);
	if (size > len - off) {
		why = "truncated data block";
		goto fail;
	}
	z = xcalloc(1, sizeof(*z));
	z->name = xstrdup(name);
	if ((why = clock_tzif_block(z, &h, p + off, tsize, &at)))
		goto fail;
	off += (size_t)size;
	at = SIZE_MAX;
	if (tsize == 8) {
		/* The footer: a POSIX TZ string between two newlines, maybe empty. */
		const uint8_t *nl = off + 1 < len ? memchr(p + off + 1, '\n', len - off - 1) : NULL;
		if (off >= len || p[off] != '\n' || !nl) {
			why = "missing or unterminated footer";
			goto fail;
		}
		size_t n = (size_t)(nl - (p + off + 1));
		char tz[128];
		if (n >= sizeof(tz)) {
			why = "footer TZ string too long";
			goto fail;
		}
		memcpy(tz, p + off + 1, n);
		tz[n] = '\0';
		if (n > 0 && (why = clock_posix_parse(tz, &z->rule))) {
			for (char *c = tz; *c; c++)
				if (*c < 0x20 || *c > 0x7e)
					*c = '?';
			snprintf(footer_why, sizeof(footer_why), "footer TZ string \"%s\": %s", tz,
				 why);
			why = footer_why;
			goto fail;
		}
		if (n > 0) {
			z->has_rule = true;
			struct clock_ltype *rt[2] = { &z->rule.std, &z->rule.dst };
			for (int i = 0; i < (z->rule.has_dst ? 2 : 1); i++) {
				if (rt[i]->utoff <= -CLOCK_UTOFF_LIMIT ||
				    rt[i]->utoff >= CLOCK_UTOFF_LIMIT) {
					why = "footer TZ string offset out of range";
					goto fail;
				}
				z->min_utoff =
					rt[i]->utoff < z->min_utoff ? rt[i]->utoff : z->min_utoff;
				z->max_utoff =
					rt[i]->utoff > z->max_utoff ? rt[i]->utoff : z->max_utoff;
			}
		}
	}
	return z;

fail:
	if (at != SIZE_MAX)
		errf(err, errlen, DRIP_EINVALID, "time zone \"%s\": corrupt zoneinfo data: %s %zu",
		     name, why, at);
	else
		errf(err, errlen, DRIP_EINVALID, "time zone \"%s\": corrupt zoneinfo data: %s",
		     name, why);
	clock_zone_free(z);
	return NULL;
}

/* The whole file at path into a malloc'd buffer, up to CLOCK_TZIF_MAX bytes; NULL and err. */
static uint8_t *clock_read_tzif(const char *name, const char *path, size_t *len, char *err,
				size_t errlen)
{
	struct stat sb;
	uint8_t *data = NULL;
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		errf(err, errlen, DRIP_EIO, "time zone \"%s\": cannot open %s", name, path);
		return NULL;
	}
	if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > CLOCK_TZIF_MAX) {
		errf(err, errlen, DRIP_EINVALID, "time zone \"%s\": %s is not a zoneinfo file",
		     name, path);
		goto fail;
	}
	*len = (size_t)sb.st_size;
	data = xmalloc(*len);
	if (fread(data, 1, *len, fp) != *len) {
		errf(err, errlen, DRIP_EIO, "time zone \"%s\": cannot read %s", name, path);
		goto fail;
	}
	fclose(fp);
	return data;

fail:
	free(data);
	fclose(fp);
	return NULL;
}

const struct clock_zone *clock_zone_get(const char *name, char *err, size_t errlen)
{
	char path[512];
	size_t len = 0;
	if (!name) {
		errf(err, errlen, DRIP_EINVALID, "no time zone given");
		return NULL;
	}
	for (struct clock_zone *z = clock_zones; z; z = z->next)
		if (strcmp(z->name, name) == 0)
			return z;
	if (!clock_tz_valid(name)) {
		errf(err, errlen, DRIP_EINVALID,
		     "unknown time zone \"%s\" (an IANA name such as \"Europe/Berlin\" is "
		     "expected)",
		     name);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s", CLOCK_ZONEINFO, name);
	uint8_t *data = clock_read_tzif(name, path, &len, err, errlen);
	if (!data)
		return NULL;
	struct clock_zone *z = clock_zone_parse(name, data, len, err, errlen);
	free(data);
	if (!z)
		return NULL;
	z->next = clock_zones;
	clock_zones = z;
	return z;
}

void clock_zones_free(void)
{
	while (clock_zones) {
		struct clock_zone *z = clock_zones;
		clock_zones = z->next;
		clock_zone_free(z);
	}
}

/* ---- send windows ---------------------------------------------------------------------- */

#define CLOCK_WINDOW_ALL_DAYS 0x7f
/* How far ahead the search for an opening goes: a week, plus room for a day that a zone
 * skipped (Samoa went from 29 to 31 December 2011) or a window lost in a DST gap. */
#define CLOCK_WINDOW_SCAN_DAYS 15

static const char *const clock_day_names[7] = { "sunday",   "monday", "tuesday", "wednesday",
						"thursday", "friday", "saturday" };

static bool clock_is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* The day that s (n bytes) names, 0 = Sunday: three letters or the whole word, any case;
 * -1 if none. */
static int clock_day_of(const char *s, size_t n)
{
	for (int i = 0; i < 7; i++)
		if ((n == 3 || n == strlen(clock_day_names[i])) &&
		    strncasecmp(s, clock_day_names[i], n) == 0)
			return i;
	return -1;
}

/* Trims blanks off both ends of [*b, *e). */
static void clock_trim(const char **b, const char **e)
{
	while (*b < *e && clock_is_space(**b))
		(*b)++;
	while (*e > *b && clock_is_space((*e)[-1]))
		(*e)--;
}

/* H:MM or HH:MM in [b, e) as minutes after midnight, 24:00 included; -1 if malformed. */
static int clock_hhmm(const char *b, const char *e)
{
	size_t n = (size_t)(e - b);
	if ((n != 4 && n != 5) || b[n - 3] != ':')
		return -1;
	for (size_t i = 0; i < n; i++)
		if (i != n - 3 && !clock_is_digit(b[i]))
			return -1;
	int h = n == 5 ? (b[0] - '0') * 10 + (b[1] - '0') : b[0] - '0';
	int m = (b[n - 2] - '0') * 10 + (b[n - 1] - '0');
	if (m > 59 || h > 24 || (h == 24 && m != 0))
		return -1;
	return h * 60 + m;
}

/* The days in [b, e) as a tm_wday bit mask; an error in err about the window s otherwise. */
static int clock_window_days(const char *s, const char *b, const char *e, uint8_t *days, char *err,
			     size_t errlen)
{
	const char *sp = b;
	while (sp < e && !clock_is_space(*sp))
		sp++;
	const char *rest = sp;
	while (rest < e && clock_is_space(*rest))
		rest++;
	if ((e - b == 5 && strncasecmp(b, "daily", 5) == 0) ||
	    (sp - b == 5 && strncasecmp(b, "every", 5) == 0 && e - rest == 3 &&
	     strncasecmp(rest, "day", 3) == 0)) {
		*days = CLOCK_WINDOW_ALL_DAYS;
		return 0;
	}
	*days = 0;
	for (const char *item = b, *comma;; item = comma + 1) {
		comma = memchr(item, ',', (size_t)(e - item));
		const char *ie = comma ? comma : e, *ib = item;
		clock_trim(&ib, &ie);
		if (ib == ie)
			return errf(err, errlen, DRIP_EINVALID,
				    "send window \"%s\": a day is missing in \"%.*s\"", s,
				    (int)(e - b), b);
		const char *dash = memchr(ib, '-', (size_t)(ie - ib));
		const char *fb = ib, *fe = dash ? dash : ie, *lb = dash ? dash + 1 : ib, *le = ie;
		clock_trim(&fb, &fe);
		clock_trim(&lb, &le);
		int first = clock_day_of(fb, (size_t)(fe - fb));
		int last = clock_day_of(lb, (size_t)(le - lb));
		if (first < 0 || last < 0) {
			const char *bb = first < 0 ? fb : lb, *be = first < 0 ? fe : le;
			return errf(err, errlen, DRIP_EINVALID,
				    "send window \"%s\": unknown day \"%.*s\" (days are sun mon "
				    "tue wed thu fri sat, ranges such as mon-fri, or daily)",
				    s, (int)(be - bb), bb);
		}
		/* A range runs forward through the week, wrapping past Saturday. */
		for (int d = first;; d = (d + 1) % 7) {
			*days |= (uint8_t)(1u << d);
			if (d == last)
				break;
		}
		if (!comma)
			return 0;
	}
}

int clock_window_parse(const char *s, struct clock_window *w, char *err, size_t errlen)
{
	static const char example[] = "days and hours such as \"mon-fri 09:00-17:00\"";
	const char *b, *e, *hb;
	int rc;

	if (!s)
		s = "";
	b = s;
	e = s + strlen(s);
	clock_trim(&b, &e);
	if (b == e)
		return errf(err, errlen, DRIP_EINVALID, "empty send window: expected %s", example);
	/* Day names have no digits, so the hours start at the first one. */
	for (hb = b; hb < e && !clock_is_digit(*hb); hb++)
		;
	if (hb == e)
		return errf(err, errlen, DRIP_EINVALID, "send window \"%s\": no hours: expected %s",
			    s, example);
	const char *de = hb;
	clock_trim(&b, &de);
	if (b == de)
		return errf(err, errlen, DRIP_EINVALID, "send window \"%s\": no days: expected %s",
			    s, example);
	const char *dash = memchr(hb, '-', (size_t)(e - hb));
	const char *sb = hb, *se = dash ? dash : e, *eb = dash ? dash + 1 : e, *ee = e;
	clock_trim(&sb, &se);
	clock_trim(&eb, &ee);
	int start = dash ? clock_hhmm(sb, se) : -1, end = dash ? clock_hhmm(eb, ee) : -1;
	if (start < 0 || end < 0)
		return errf(err, errlen, DRIP_EINVALID,
			    "send window \"%s\": bad hours \"%.*s\": expected HH:MM-HH:MM such "
			    "as 09:00-17:00",
			    s, (int)(e - hb), hb);
	if (start >= end)
		return errf(err, errlen, DRIP_EINVALID,
			    "send window \"%s\": it must end after it starts (%.*s to %.*s), on "
			    "the same day: a window cannot cross midnight",
			    s, (int)(se - sb), sb, (int)(ee - eb), eb);
	uint8_t days;
	if ((rc = clock_window_days(s, b, de, &days, err, errlen)) != 0)
		return rc;
	w->days = days;
	w->start_min = start;
	w->end_min = end;
	return 0;
}

/*
 * The earliest UTC second >= t whose local time in z lies in [l0, l1) (local seconds since
 * the epoch, as if local time were UTC), or INT64_MAX. Within a stretch of constant offset
 * o those are the UTC seconds [l0 - o, l1 - o); the stretches that can hold one lie between
 * l0 - max_utoff and l1 - min_utoff, so this visits the transitions there and no more.
 */
static int64_t clock_window_on(const struct clock_zone *z, int64_t l0, int64_t l1, int64_t t)
{
	int64_t u = t > l0 - z->max_utoff ? t : l0 - z->max_utoff;
	while (u < l1 - z->min_utoff) {
		int64_t until;
		const struct clock_ltype *lt = clock_zone_at(z, u, &until);
		int64_t lo = u > l0 - lt->utoff ? u : l0 - lt->utoff;
		int64_t hi = until < l1 - lt->utoff ? until : l1 - lt->utoff;
		if (lo < hi)
			return lo;
		u = until; /* > u, so this ends */
	}
	return INT64_MAX;
}

int64_t clock_window_next(const struct clock_window *w, const struct clock_zone *z, int64_t t)
{
	int64_t best = INT64_MAX;
	if (!w || !(w->days & CLOCK_WINDOW_ALL_DAYS) || w->start_min < 0 ||
	    w->start_min >= w->end_min || w->end_min > 1440 || t != clock_clamp(t))
		return t;
	if (!z)
		z = &clock_utc_zone;
	/* No local time at or after t can fall on a date before t + min_utoff's. */
	int64_t first = clock_floor_div(t + z->min_utoff, 86400);
	int64_t last = clock_floor_div(t + z->max_utoff, 86400) + CLOCK_WINDOW_SCAN_DAYS;
	for (int64_t d = first; d <= last; d++) {
		int64_t l0 = d * 86400 + w->start_min * 60, l1 = d * 86400 + w->end_min * 60;
		/* This date's window, and every later one, opens after the best so far. Dates
		 * are not simply in order: when the clocks go back past midnight, tomorrow's
		 * window can come before the end of today's, hence the min. */
		if (l0 - z->max_utoff >= best)
			break;
		if (!(w->days & (1u << clock_weekday(d))))
			continue;
		int64_t u = clock_window_on(z, l0, l1, t);
		best = u < best ? u : best;
	}
	/* Not found in two weeks: no real zone does that; sending now is the harmless answer. */
	return best != INT64_MAX ? best : t;
}
