/* dripd.c - what the modules share through struct dripd: saving the test clock. */
#include "dripd/dripd.h"
#include "dripd/log.h"

void dripd_save_clock(struct dripd *d)
{
	if (!d->clock.test)
		return;
	int64_t off = clock_offset_at(&d->clock, clock_wall_ms(), clock_mono_ms());
	if (store_setting_set(d->store, DRIPD_CLOCK_SETTING, off) != 0)
		log_err("dripd: cannot save the test clock offset");
}
