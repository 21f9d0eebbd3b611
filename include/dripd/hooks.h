/* hooks.h - webhooks: events POSTed as signed JSON to configured URLs, retried durably. */
#ifndef DRIPD_HOOKS_H
#define DRIPD_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "dripd/clock.h"
#include "dripd/config.h"
#include "dripd/store.h"

/*
 * Every event the store records (store_event_listen) that a configured webhook subscribes
 * to becomes a row of the outbox, in the same transaction that moves the hooks' cursor over
 * the events table, so a crash neither loses nor repeats the queueing. Rows are POSTed
 * through libcurl's multi socket interface on the loop (never blocking it), at most
 * `concurrency` at a time per URL, each with a timeout; a failure is retried with
 * exponential backoff in business time, and one still failing `give_up` after its event
 * is dropped and recorded as an `error` event. Delivery is at least once: a receiver
 * deduplicates by the delivery id, which is the same on every retry.
 */

/* The header that carries the signature, and the longest value it can have. */
#define HOOKS_SIGNATURE_HEADER "Dripd-Signature"
#define HOOKS_SIGNATURE_MAX 96

struct hooks;

/*
 * Reads the webhooks' secret files and starts listening to the event feed. The config,
 * store and clock must outlive the hooks. NULL with a sentence in err when a secret file
 * cannot be used. With no webhook configured it does nothing but keep the cursor at the
 * newest event, so a webhook added later starts from then, not from history.
 */
struct hooks *hooks_new(uv_loop_t *loop, const struct config *cfg, struct store *st,
			struct clock *clk, char *err, size_t errlen);
/* Business time moved (clock advance) or something was queued: look again now. */
void hooks_kick(struct hooks *h);
/* Reads the secret files again (SIGHUP); a bad one keeps its old secrets and is logged. */
void hooks_reload(struct hooks *h);
/* Adds the outbox's state to a status object: waiting, retrying, in flight. */
int hooks_status(struct hooks *h, cJSON *out);
/*
 * Stops: transfers in flight are abandoned (their rows stay queued and go out after the
 * next start) and the memory is freed once libuv has closed every handle. NULL is fine.
 */
void hooks_close(struct hooks *h);

/*
 * Pure. The signature header's value for `body` sent at Unix time `ts`:
 * "t=TS,v1=HEX" where HEX is the lower-case HMAC-SHA256 of "TS.BODY" under `secret`.
 */
void hooks_sign(const void *secret, size_t secretlen, int64_t ts, const char *body, size_t len,
		char out[HOOKS_SIGNATURE_MAX]);
/* Pure. The wait before retry number `attempts` (1 for the first): min doubled, capped. */
int64_t hooks_backoff(int64_t attempts, int64_t min, int64_t max);
/* Pure. Whether webhook `w` subscribes to events of `kind` (no list: every kind). */
bool hooks_wants(const struct config_webhook *w, const char *kind);

#endif
