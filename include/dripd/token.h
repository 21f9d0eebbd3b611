/* token.h - signed tokens for tracking URLs and reply/bounce addresses; secret rotation. */
#ifndef DRIPD_TOKEN_H
#define DRIPD_TOKEN_H

#include <stddef.h>
#include <stdint.h>

/*
 * Pure. A token carries a kind, a touch id and, for a click, a link index, followed by a
 * 12-byte truncated HMAC-SHA256 under the tracking secret. Payload (before encoding):
 *
 *     version (1) | kind (one byte, the enum's letter) | touch id (unsigned LEB128)
 *     | link index (unsigned LEB128, clicks only) | HMAC-SHA256("dripd-token-v1\0" payload)[0..12)
 *
 * so an open token for a small touch id is 15 bytes: 20 characters of base64url, 24 of base32.
 * Verification is strict: one valid spelling per token (canonical encoding, minimal varints,
 * nothing after the MAC), so any altered character is refused. Keys are read-only once loaded,
 * so one struct token_keys may be shared by several threads.
 */

/* The kinds a token can carry; the value is the byte written into the payload. */
enum token_kind {
	TOKEN_OPEN = 'o', /* the open pixel, /o/TOKEN */
	TOKEN_CLICK = 'c', /* a click redirect, /c/TOKEN: the only kind with a link index */
	TOKEN_UNSUBSCRIBE = 'u', /* /u/TOKEN */
	TOKEN_REPLY = 'r', /* reply+TOKEN@ in Reply-To */
	TOKEN_BOUNCE = 'b', /* bounce+TOKEN@, the VERP envelope sender */
	TOKEN_CONFIRM = 'f', /* a confirmation link */
};

enum token_encoding {
	TOKEN_URL, /* base64url without padding: for /o/ /c/ /u/ paths */
	/* lower-case base32 (RFC 4648 alphabet) without padding: for reply+TOKEN@ and
	 * bounce+TOKEN@ local parts, which some mail systems case-fold; upper case is accepted */
	TOKEN_ADDRESS,
};

/* Bytes that always hold a token and its NUL (the longest, a click on touch INT64_MAX with
 * link UINT32_MAX, is 45 characters in base32). */
#define TOKEN_MAX_LEN 48
/* The shortest secret token_keys_add accepts, in bytes. */
#define TOKEN_SECRET_MIN 16
/* The longest secret token_keys_add accepts, in bytes. */
#define TOKEN_SECRET_MAX 4096

struct token_claims {
	enum token_kind kind;
	int64_t touch_id; /* >= 0 */
	uint32_t link; /* index into the touch's links; 0 unless kind is TOKEN_CLICK */
};

/* The tracking secrets, newest first: the newest signs, any of them verifies. */
struct token_keys;

/* An empty key set (it signs nothing and verifies nothing until a secret is added). */
struct token_keys *token_keys_new(void);
/* Wipes the secrets from memory and frees the set; NULL is fine. */
void token_keys_free(struct token_keys *k);

/*
 * Adds a copy of a secret of TOKEN_SECRET_MIN to TOKEN_SECRET_MAX bytes, after those already
 * there: the first one added is the newest and signs. 0, or DRIP_EINVALID with a sentence in
 * err.
 */
int token_keys_add(struct token_keys *k, const void *secret, size_t len, char *err, size_t errlen);

/*
 * Adds the secrets of a file: one per non-empty line, newest first, trailing CR, LF, spaces
 * and tabs trimmed (every other byte counts). At least one secret is needed. On any error
 * nothing is added and err names the file (and line): DRIP_EIO when it cannot be read,
 * DRIP_EINVALID when a secret is too short or too long or there is none.
 */
int token_keys_load(struct token_keys *k, const char *path, char *err, size_t errlen);

/* How many secrets the set holds. */
size_t token_keys_count(const struct token_keys *k);

/*
 * Writes the token for `c` under the newest secret into out, NUL-terminated, and returns its
 * length (TOKEN_MAX_LEN bytes of out are always enough). Returns 0 (and writes "" when
 * outlen > 0) when there is no secret, outlen is too small, the kind is unknown, the touch id is
 * negative, or a link index is given with a kind other than TOKEN_CLICK.
 */
size_t token_sign(const struct token_keys *k, const struct token_claims *c, enum token_encoding enc,
		  char *out, size_t outlen);

/*
 * Checks the `len` bytes at `token` (no NUL needed; nothing past len is read). 0 and the claims
 * in *out when it is a well-formed token in encoding `enc` whose MAC matches any secret
 * (compared in constant time); DRIP_EINVALID for anything else (bad length or alphabet,
 * non-canonical encoding, unknown version or kind, overlong or non-minimal varint, bad MAC,
 * trailing bytes), and *out is then left untouched. Costs one HMAC per secret tried.
 */
int token_verify(const struct token_keys *k, const char *token, size_t len, enum token_encoding enc,
		 struct token_claims *out);

#endif
