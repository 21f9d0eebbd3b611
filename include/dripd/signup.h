/* signup.h - website signup with double opt-in: POST /subscribe, GET and POST /confirm/TOKEN. */
#ifndef DRIPD_SIGNUP_H
#define DRIPD_SIGNUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/mailer.h"

struct dripd;

/* ---- Pure: reading and checking what a form sent. */

#define SIGNUP_NAME_MAX 100 /* first name, last name: bytes */
#define SIGNUP_COMPANY_MAX 200
#define SIGNUP_TAGS_MAX 10

struct signup_form {
	char email[255];
	char first_name[SIGNUP_NAME_MAX + 1];
	char last_name[SIGNUP_NAME_MAX + 1];
	char company[SIGNUP_COMPANY_MAX + 1];
	char form[65];
	char consent[65];
	char tags[SIGNUP_TAGS_MAX][65];
	size_t ntags;
	bool honeypot; /* the hidden field was filled: a bot */
	bool json; /* sent as JSON (answers are JSON too) */
};

/*
 * Reads a form-urlencoded or JSON body (by content type) into *out. Field names: email,
 * first_name, last_name, company, form, consent, tags (repeated, or comma-separated, or a
 * JSON array) and `honeypot`, the hidden field. Every value is refused (DRIP_EINVALID, with
 * the field's name in err) when too long, when it holds a control character (CR, LF, …) or
 * '<' / '>', or when the email is not an address; nothing of the value is copied into err.
 */
int signup_parse(const char *content_type, const char *body, size_t len, const char *honeypot,
		 struct signup_form *out, char *err, size_t errlen);

/* ---- The stateful part: records, mails and confirms. */

/* Mail job keys at or below this are confirmation mails (send-test counts down from -1). */
#define SIGNUP_JOB_BASE (-((int64_t)1 << 40))

/* What track sends back: a status, an optional Location, a body and its type. */
struct signup_answer {
	int status;
	char *location; /* NULL or a URL on signup.site */
	char *body;
	const char *ctype;
};
void signup_answer_clear(struct signup_answer *a);

struct signup;

/* Starts the signup part (a timer for confirmation mails and expiry) in d->loop. */
struct signup *signup_new(struct dripd *d);
void signup_close(struct signup *s);
/* Re-runs the mail and expiry pass soon (after a reload or a clock advance). */
void signup_kick(struct signup *s);
/*
 * POST /subscribe from client address `addr` (text, as track credits it). Never says whether
 * the address is known: a refusal is about the form or the rate, a success looks the same
 * for a new address, a known one and a bot caught by the honeypot.
 */
void signup_subscribe(struct signup *s, const char *content_type, const char *body, size_t len,
		      const char *addr, struct signup_answer *a);
/* GET (post false: a page with a button, changes nothing) or POST /confirm/TOKEN. */
void signup_confirm(struct signup *s, const char *token, size_t len, bool post, const char *addr,
		    struct signup_answer *a);
/* The outcome of a confirmation mail (job keys <= SIGNUP_JOB_BASE). */
void signup_on_result(struct signup *s, const struct mailer_result *r);

#endif
