/* retention.h - old events folded into per-step counts, long-finished leads anonymised. */
#ifndef DRIPD_RETENTION_H
#define DRIPD_RETENTION_H

struct dripd;
struct retention;

/*
 * Starts the retention timer in d->loop (retention.events, anonymise and batch take effect at
 * a restart). With retention.events and anonymise at 0 it never runs. Each turn is one small
 * transaction (retention.batch touches and events, and as many leads looked at); the next turn
 * runs at once while more is due, else the timer sleeps until the oldest remaining event or
 * done lead comes of age (a sweep of the leads at most once per `anonymise`): idle means idle.
 */
struct retention *retention_new(struct dripd *d);
void retention_close(struct retention *r);
/* Looks again now (after a reload or a clock advance). NULL is fine. */
void retention_kick(struct retention *r);

#endif
