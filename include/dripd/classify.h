/* classify.h - pure: one raw inbound message -> reply, auto-reply, bounce (DSN), complaint. */
#ifndef DRIPD_CLASSIFY_H
#define DRIPD_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Pure. classify_message reads the bytes of one message as fetched from a mailbox (headers
 * alone, or headers and body; CRLF or LF; NUL bytes, 8-bit junk and broken MIME allowed) and
 * says what it is. It never allocates beyond its own stack, never reads past `len`, and caps
 * every field it returns, so it may be handed anything (tests/fuzz/fuzz_classify.c does).
 *
 * Order of the verdicts: an RFC 3464 delivery status report (multipart/report;
 * report-type=delivery-status) is a bounce, hard for a failed 5.x.x recipient and soft for a
 * 4.x.x one; an RFC 5965 ARF report (report-type=feedback-report) is a complaint; then an
 * auto-reply (RFC 3834 Auto-Submitted other than "no", X-Autoreply, X-Autorespond,
 * Precedence: auto_reply, or an out-of-office subject in English, German, French, Spanish,
 * Dutch or Portuguese); a bounce that is not RFC 3464 (from MAILER-DAEMON, "Undelivered Mail")
 * is unknown, because its failing recipient could only be guessed; anything else with a
 * sender is a reply.
 */

enum classify_kind {
	CLASSIFY_UNKNOWN = 0,
	CLASSIFY_REPLY,
	CLASSIFY_AUTO_REPLY,
	CLASSIFY_BOUNCE, /* DSN, failed with a 5.x.x status */
	CLASSIFY_SOFT_BOUNCE, /* DSN, 4.x.x (delayed, or failed temporarily) */
	CLASSIFY_COMPLAINT, /* ARF feedback report */
};

#define CLASSIFY_ADDR_MAX 256
#define CLASSIFY_ID_MAX 256
#define CLASSIFY_REFS_MAX 8
#define CLASSIFY_TOKENS_MAX 4
#define CLASSIFY_TOKEN_LEN 64
#define CLASSIFY_EXCERPT_MAX 512

struct classify_token {
	char kind; /* 'r' for reply+TOKEN@, 'b' for bounce+TOKEN@ */
	char token[CLASSIFY_TOKEN_LEN];
};

struct classify_result {
	enum classify_kind kind;
	bool has_body; /* a body followed the headers */
	bool unsubscribe; /* the subject asks to unsubscribe (the List-Unsubscribe mailto:) */
	char from[CLASSIFY_ADDR_MAX]; /* the sender's address, lower case; "" when none */
	char subject[CLASSIFY_ADDR_MAX]; /* RFC 2047 decoded, UTF-8, controls replaced */
	char message_id[CLASSIFY_ID_MAX]; /* with its angle brackets */
	/* In-Reply-To first, then References newest first; each with angle brackets. */
	char refs[CLASSIFY_REFS_MAX][CLASSIFY_ID_MAX];
	size_t nrefs;
	/* reply+TOKEN@ / bounce+TOKEN@ local parts found in To, Cc, Delivered-To,
	 * X-Original-To, Envelope-To and Return-Path (not verified: that needs the keys). */
	struct classify_token tokens[CLASSIFY_TOKENS_MAX];
	size_t ntokens;
	/* Bounces and complaints: the failing or complaining recipient read from the report
	 * (Original-Recipient, else Final-Recipient; Original-Rcpt-To, else the embedded To),
	 * its status ("5.1.1") and the reason given; and the Message-ID of the returned
	 * message, when the report carries its headers. */
	char recipient[CLASSIFY_ADDR_MAX];
	char status[16];
	char diagnostic[CLASSIFY_ADDR_MAX];
	char original_id[CLASSIFY_ID_MAX];
	/* Auto-replies: why ("Auto-Submitted", "subject", …) and the return date read from the
	 * text, as UTC seconds at midnight of that day; 0 when none was stated. */
	char auto_reason[32];
	int64_t return_date;
	/* Replies: the first lines of the new text (quoted text and signatures cut), UTF-8. */
	char excerpt[CLASSIFY_EXCERPT_MAX];
};

/*
 * Classifies `len` bytes at `data`. `now` (UTC seconds) is the reference for a return date
 * stated without a year when the message has no usable Date header. Always fills *out.
 */
void classify_message(const char *data, size_t len, int64_t now, struct classify_result *out);

/*
 * Reads a return date from the text of an out-of-office message: the latest date stated
 * in it that falls between a week before `ref` and a year after, or, when only weekday names
 * are given, the next such day after `ref`. Understands English, German, French, Spanish,
 * Dutch and Portuguese month and weekday names, ordinals (1st, 1., 1er, 1º, 1e), numeric dates
 * (day first, except month first for `locale` "en-US" or for English text without a locale),
 * ISO dates, ranges ("from 1 to 12 December") and dates without a year (the next one on or
 * after a week before `ref`). `text` is UTF-8 or Latin-1. `locale` may be NULL. 0 and the
 * midnight (UTC) of that day in *out, or DRIP_ENOT_FOUND.
 */
int classify_return_date(const char *text, size_t len, int64_t ref, const char *locale,
			 int64_t *out);

/* The stable name of a kind: "unknown", "reply", "auto_reply", "bounce", "soft_bounce",
 * "complaint" (the event kinds they become). */
const char *classify_kind_name(enum classify_kind kind);

/* Whether `domain` (lower case) is a free-mail provider (gmail.com, outlook.com, …). */
bool classify_free_mail(const char *domain);

#endif
