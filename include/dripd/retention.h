/* retention.h - old events folded into per-step daily counts and removed, in small batches. */
#ifndef DRIPD_RETENTION_H
#define DRIPD_RETENTION_H

struct dripd;
struct retention;

/*
 * Starts the retention timer in d->loop (retention.events and batch take effect at a
 * restart). With retention.events at 0 it never runs. Each turn is one small transaction
 * (retention.batch touches and events); the next turn runs at once while more is due, else the
 * timer sleeps until the oldest remaining event comes of age: idle means idle.
 */
struct retention *retention_new(struct dripd *d);
void retention_close(struct retention *r);
/* Looks again now (after a reload or a clock advance). NULL is fine. */
void retention_kick(struct retention *r);

#endif
