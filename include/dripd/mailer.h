/* mailer.h - the sender threads: one job each at a time, outcomes back to the loop. */
#ifndef DRIPD_MAILER_H
#define DRIPD_MAILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dripd/config.h"

/*
 * A fixed pool of sender threads, one per allowed connection (delivery.max_connections).
 * The loop hands a thread one job at a time (mailer_submit only while mailer_idle() > 0), so
 * a job never waits in a queue after its touch was committed as "sending". A thread does
 * the delivery and nothing else: it never touches the database or the content. Outcomes
 * come back on the loop thread through a uv_async, in the callback given to mailer_new.
 */

/*
 * OK: accepted (2xx). TEMPFAIL: try later (4xx, no connection, a timeout before the message
 * was handed over, a full disk). BOUNCE: the address was refused (5xx at RCPT). PERMFAIL:
 * the sender, the transaction or the message was refused (5xx at MAIL, at DATA or after
 * the data), or the server lacks what the message needs (SMTPUTF8). UNCERTAIN: the
 * connection was lost after the whole message went out and before the server answered:
 * it may have been accepted, so it is never re-sent without a person.
 */
enum mailer_outcome {
	MAILER_OK,
	MAILER_TEMPFAIL,
	MAILER_PERMFAIL,
	MAILER_BOUNCE,
	MAILER_UNCERTAIN
};

struct mailer_job {
	int64_t touch_id;
	char *envelope_from;
	char *rcpt;
	char *data; /* the complete message */
	size_t len;
};

struct mailer_result {
	int64_t touch_id;
	enum mailer_outcome outcome;
	int code; /* the server's last reply code, 0 when none */
	char detail[256];
};

typedef void (*mailer_result_cb)(void *arg, const struct mailer_result *r);

struct mailer;

/* Starts the threads for cfg's delivery path. NULL with err if the path cannot be used. */
struct mailer *mailer_new(uv_loop_t *loop, const struct config *cfg, mailer_result_cb cb, void *arg,
			  char *err, size_t errlen);
/* The same for one delivery account (its url, credentials and max_connections; the
 * timeouts are the delivery section's). */
struct mailer *mailer_new_account(uv_loop_t *loop, const struct config *cfg,
				  const struct config_account *acct, mailer_result_cb cb, void *arg,
				  char *err, size_t errlen);
/* How many sender threads it has. */
size_t mailer_threads(const struct mailer *m);
/* Called with true before and false after each batch of outcomes the loop drains at once. */
typedef void (*mailer_batch_cb)(void *arg, bool begin);
void mailer_set_batch_cb(struct mailer *m, mailer_batch_cb cb);
/* Threads without a job. */
size_t mailer_idle(const struct mailer *m);
/* Jobs handed over whose outcome has not come back yet. */
size_t mailer_busy(const struct mailer *m);
/*
 * Where the sender threads' time went since start: `jobs` outcomes came back, after
 * `sending_s` seconds of delivery in all (connect, SMTP dialogue, or Maildir write), and
 * `between_s` seconds in all from a thread's outcome to the next job it was handed. While
 * touches are due, that second figure is the hand-over's wait (the loop recording the
 * outcome and committing the next touch); with nothing due, it is idle time.
 */
struct mailer_times {
	uint64_t jobs;
	double sending_s, between_s;
};
void mailer_times(const struct mailer *m, struct mailer_times *out);
/*
 * The message as SMTP's DATA carries it, into *buf (grown as needed, *cap its size): every
 * line that begins with a dot gets a second one (RFC 5321 4.5.2), a last line without its
 * CRLF gets one, and the final ".\r\n" follows. Returns the length.
 */
size_t mailer_dot_stuff(const char *data, size_t len, char **buf, size_t *cap);
/* Frees a job that was never handed over. */
void mailer_job_free(struct mailer_job *job);
/* Hands `job` (heap-allocated; the mailer frees it) to an idle thread. */
void mailer_submit(struct mailer *m, struct mailer_job *job);
/* Stops and joins the threads (call when mailer_busy() is 0) and frees the mailer. */
void mailer_close(struct mailer *m);

#endif
