/* fuzz_tzif.c - zoneinfo (TZif) files, send windows and durations: corrupt input is refused,
 * never read past its end; offsets and window openings stay in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dripd/clock.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct clock_zone *z = clock_zone_parse("fuzz", data, size, err, sizeof(err));
	if (z) {
		static const int64_t ts[] = { INT64_MIN,  -86400LL * 365 * 200, 0,
					      1795000000, 4102444800LL,         INT64_MAX };
		for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
			int32_t off = clock_zone_offset(z, ts[i]);
			FUZZ_ASSERT(off > -100000 && off < 100000, "offset %d", (int)off);
			struct tm tm;
			clock_zone_local(z, ts[i], &tm);
		}
		struct clock_window w = { .days = 0x3e, .start_min = 540, .end_min = 1020 };
		int64_t t = clock_window_next(&w, z, 1795000000);
		FUZZ_ASSERT(t >= 1795000000, "a window opening before the time asked");
		clock_zone_free(z);
	}
	/* The same bytes as a window and as a duration. */
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	struct clock_window w;
	if (clock_window_parse(s, &w, err, sizeof(err)) == 0) {
		FUZZ_ASSERT(w.start_min >= 0 && w.start_min < w.end_min && w.end_min <= 1440,
			    "window %d-%d", (int)w.start_min, (int)w.end_min);
		FUZZ_ASSERT(clock_window_next(&w, NULL, 0) >= 0, "window before the epoch");
	}
	int64_t secs;
	if (clock_parse_duration(s, &secs) == 0) {
		char back[64];
		FUZZ_ASSERT(secs >= 0, "negative duration");
		clock_format_duration(secs, back, sizeof(back));
		int64_t again;
		FUZZ_ASSERT(clock_parse_duration(back, &again) == 0 && again == secs,
			    "%s does not read back", back);
	}
	free(s);
	return 0;
}
