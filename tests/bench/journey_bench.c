/* journey_bench.c - events per second through journey_on_event with many leads enrolled.
 *
 * Usage: journey_bench CONTENT_DIR DB_PATH LEADS EVENTS BATCH
 * Creates LEADS leads in the first stage (each enrolled, its first step scheduled) in a fresh
 * database, then feeds EVENTS events to random leads (70% opens, 25% clicks, a third of those
 * tagged as in the sample journey, 5% replies) through journey_on_event, BATCH events per
 * transaction as the tracking listener's group commit does, and prints what it measured. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dripd/content.h"
#include "dripd/journey.h"
#include "dripd/log.h"
#include "dripd/store.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char err[1024];
	if (argc != 6) {
		fprintf(stderr, "usage: journey_bench CONTENT_DIR DB LEADS EVENTS BATCH\n");
		return 2;
	}
	log_set_level(LOG_LEVEL_WARN); /* a line per rule match would measure stderr */
	long leads = atol(argv[3]), events = atol(argv[4]), batch = atol(argv[5]);
	struct content *c = content_load(argv[1], err, sizeof(err));
	if (!c) {
		fprintf(stderr, "journey_bench: %s\n", err);
		return 1;
	}
	struct store *st = store_open(argv[2], err, sizeof(err));
	if (!st) {
		fprintf(stderr, "journey_bench: %s\n", err);
		return 1;
	}
	int64_t now = 1700000000;
	double t0 = now_s();
	store_begin(st);
	for (long i = 0; i < leads; i++) {
		char email[64];
		struct lead l = { 0 };
		snprintf(email, sizeof(email), "lead%ld@example.org", i);
		l.email = email;
		l.first_name = l.last_name = l.company = l.title = l.tz = "";
		l.stage = c->stages[0];
		l.tags = "[]";
		l.attrs = "{}";
		l.status = "active";
		if (store_lead_insert(st, &l, now) != 0 ||
		    journey_enter_stage(st, c, &l, c->stages[0], NULL, now, err, sizeof(err)) != 0) {
			fprintf(stderr, "journey_bench: lead %ld: %s\n", i, err);
			return 1;
		}
		if (i % 10000 == 9999) {
			store_commit(st);
			store_begin(st);
		}
	}
	store_commit(st);
	double t1 = now_s();
	srand(42);
	static const char *const tags[] = { "guide", "checklist", "case-study" };
	long done = 0;
	store_begin(st);
	for (long i = 0; i < events; i++) {
		struct lead l;
		int64_t id = 1 + rand() % leads;
		int r = rand() % 100;
		char detail[96];
		const char *kind = r < 70 ? "open" : r < 95 ? "click" : "reply";
		if (strcmp(kind, "click") == 0)
			snprintf(detail, sizeof(detail), "{\"confidence\":0.9,\"tag\":\"%s\"}",
				 tags[rand() % 3]);
		else
			snprintf(detail, sizeof(detail), "{\"confidence\":0.9}");
		if (store_lead_by_id(st, id, &l) != 0)
			return 1;
		if (journey_on_event(st, c, &l, 0, kind, detail, now + i / 100, err, sizeof(err)) !=
		    0) {
			fprintf(stderr, "journey_bench: event %ld: %s\n", i, err);
			return 1;
		}
		store_lead_clear(&l);
		done++;
		if (done % batch == 0) {
			store_commit(st);
			store_begin(st);
		}
	}
	store_commit(st);
	double t2 = now_s();
	printf("leads %ld created and enrolled in %.2f s (%.0f leads/s)\n", leads, t1 - t0,
	       (double)leads / (t1 - t0));
	printf("events %ld through journey_on_event in %.2f s: %.0f events/s (batch %ld)\n",
	       events, t2 - t1, (double)events / (t2 - t1), batch);
	store_close(st);
	content_unref(c);
	return 0;
}
