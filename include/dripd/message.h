/* message.h - one complete RFC 5322 / MIME message, built from rendered parts. */
#ifndef DRIPD_MESSAGE_H
#define DRIPD_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "dripd/util.h"

/*
 * Pure. Lines end in CRLF, no line is longer than 998 octets (bodies are quoted-printable,
 * lines under 76), headers that are not plain ASCII are RFC 2047 encoded, and CR or LF in
 * any header input is folded to a space, so no value can add a header.
 */
struct message_spec {
	const char *from; /* "Ana Ruiz <ana@example.com>" or a bare address */
	const char *to_name; /* may be "" */
	const char *to_addr;
	const char *subject;
	const char *message_id; /* "<…@…>" */
	const char *reply_to; /* NULL or "" for none */
	const char *in_reply_to; /* a Message-ID this one answers (threading), or NULL */
	const char *references; /* the thread's Message-IDs, or NULL */
	const char *unsubscribe_url; /* List-Unsubscribe https target (with RFC 8058 one-click) */
	const char *unsubscribe_mailto; /* List-Unsubscribe mailto target, or NULL */
	int64_t date; /* UTC seconds */
	const char *text;
	const char *html; /* NULL for text/plain alone */
};

/* Appends the message to `out`. 0, or DRIP_EINVALID with err when an address is unusable. */
int message_build(const struct message_spec *m, struct buf *out, char *err, size_t errlen);

/* The addr-spec of a From-style value ("Name <a@b>" -> "a@b") into out; 0 or DRIP_EINVALID. */
int message_address(const char *value, char *out, size_t outlen);

/* A new Message-ID "<t<touch, 10 digits or more>.<random>@<domain of from>>"; the caller
 * frees it. */
char *message_make_id(const char *from, int64_t touch_id);

/* Quoted-printable encoding of `in` (LF or CRLF line ends) with CRLF line ends. */
void message_qp_encode(struct buf *out, const char *in);
/* A header value as RFC 2047 encoded-words when it is not printable ASCII, else as is. */
void message_encode_header(struct buf *out, const char *value, size_t used);

#endif
