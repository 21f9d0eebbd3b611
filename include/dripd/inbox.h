/* inbox.h - IMAP polling: replies, auto-replies, bounces and complaints matched to touches. */
#ifndef DRIPD_INBOX_H
#define DRIPD_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/classify.h"
#include "dripd/dripd.h"

/*
 * One worker thread of its own polls the mailbox of the config's inbox.url (imap:// or
 * imaps://) every inbox.poll seconds of machine time. It opens the mailbox with EXAMINE
 * (read-only) and fetches with BODY.PEEK, so no message is ever marked \Seen, moved or
 * deleted (unless inbox.move_to asks to move the handled ones). It fetches the headers of the messages after the last UID processed, hands them
 * to the loop thread (uv_async), fetches the bodies of those the loop asks for (messages that
 * match a lead, and reports), and hands those over too. The loop thread alone classifies,
 * matches, applies the effects and records the new last UID, in one transaction per batch,
 * so a restart neither misses nor repeats a message. A server that goes away is retried with
 * backoff (1 s doubling to 5 min), logged once when it goes and once when it comes back.
 */
struct inbox;

/*
 * Starts polling when the config names an inbox; NULL (and nothing started) when it does
 * not. Exits through log_fatal when the password file cannot be read or the URL is unusable.
 */
struct inbox *inbox_new(struct dripd *d);
/* Stops the worker (interrupting any network wait), joins it and frees the inbox once its
 * handle is closed. NULL is fine. */
void inbox_close(struct inbox *ib);

/* How a message was tied to a lead. */
enum inbox_match {
	INBOX_MATCH_NONE,
	INBOX_MATCH_TOKEN, /* a valid reply+TOKEN@ / bounce+TOKEN@ address */
	INBOX_MATCH_THREAD, /* In-Reply-To / References / the returned message's Message-ID */
	INBOX_MATCH_RECIPIENT, /* the failing or complaining recipient of a report */
	INBOX_MATCH_SENDER, /* the sender is a lead */
	INBOX_MATCH_COMPANY, /* the sender works at a lead's company (inbox.colleague) */
};

/*
 * Applies one message (its raw bytes) on the loop thread, inside the caller's transaction:
 * classifies it, matches it to a lead and records the effects (reply, auto_reply with the
 * next touch moved, bounce, soft_bounce, complaint, unsubscribe). Returns 0 and sets *matched
 * (NULL allowed) when the message was handled or left alone as unmatched; a negative
 * DRIP_E* when the store failed. Exposed for tests/unit/test_inbox.c.
 */
int inbox_apply(struct dripd *d, const char *data, size_t len, int64_t now,
		enum inbox_match *matched);

#endif
