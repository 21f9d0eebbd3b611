/* token.c - signed tokens: compact payload, truncated HMAC-SHA256, base64url and base32. */

/*
 * DESIGN. This module owns the tracking secrets and the token format, nothing else: track and
 * inbox ask it whether a token from a URL or an address is genuine and what it names, the
 * message builder asks it for tokens to put in links and envelope addresses. The payload is
 * tiny (see token.h) so that an open URL stays around 20 characters. The MAC covers a domain
 * prefix and the whole payload, version and kind included; only the first 12 bytes are kept
 * (96 bits: a forger needs about 2^95 guesses, each one a request to the tracking server).
 * Every token has exactly one accepted spelling — canonical encoding, minimal varints, no
 * trailing bytes — so a changed character never verifies and tokens can serve as keys.
 * Rotation: secrets are kept newest first; the newest signs, verification tries each in turn.
 * Speed: each secret keeps an HMAC context keyed once (libcrypto's one-shot HMAC() looks up
 * the digest and hashes the key for every call: a quarter of composing a message); a MAC
 * re-initialises it under the key set's lock, since the inbox verifies on its own threads.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "dripd/error.h"
#include "dripd/token.h"
#include "dripd/util.h"

#define TOKEN_VERSION 1
#define TOKEN_MAC_LEN 12
/* Version, kind, a 63-bit touch id (9 varint bytes), a 32-bit link (5), the MAC. */
#define TOKEN_PAYLOAD_MAX (1 + 1 + 9 + 5 + TOKEN_MAC_LEN)
#define TOKEN_VARINT_MAX 10

static const char token_domain[] = "dripd-token-v1"; /* the MAC input starts with it and its NUL */
static const char token_b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char token_b32[] = "abcdefghijklmnopqrstuvwxyz234567";

struct token_secret {
	unsigned char *data;
	size_t len;
	EVP_MAC_CTX *mac; /* keyed with data; NULL if libcrypto could not (then HMAC() is used) */
};

struct token_shared {
	pthread_mutex_t lock; /* over every secret's mac */
	EVP_MAC *hmac;
};

struct token_keys {
	struct token_secret *secrets; /* [0] is the newest */
	size_t count;
	struct token_shared *shared; /* a pointer so const key sets can still take the lock */
};

struct token_keys *token_keys_new(void)
{
	struct token_keys *k = xcalloc(1, sizeof(struct token_keys));
	k->shared = xcalloc(1, sizeof(*k->shared));
	pthread_mutex_init(&k->shared->lock, NULL);
	k->shared->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	return k;
}

void token_keys_free(struct token_keys *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->count; i++) {
		OPENSSL_cleanse(k->secrets[i].data, k->secrets[i].len);
		free(k->secrets[i].data);
		EVP_MAC_CTX_free(k->secrets[i].mac);
	}
	free(k->secrets);
	EVP_MAC_free(k->shared->hmac);
	pthread_mutex_destroy(&k->shared->lock);
	free(k->shared);
	free(k);
}

size_t token_keys_count(const struct token_keys *k)
{
	return k ? k->count : 0;
}

/* Checks a secret's length; 0 or DRIP_EINVALID with `where` ("FILE:LINE: " or "") in err. */
static int token_secret_check(size_t len, const char *where, char *err, size_t errlen)
{
	if (len < TOKEN_SECRET_MIN)
		return errf(err, errlen, DRIP_EINVALID,
			    "%stracking secret is %zu bytes, at least %d are needed", where, len,
			    TOKEN_SECRET_MIN);
	if (len > TOKEN_SECRET_MAX)
		return errf(err, errlen, DRIP_EINVALID,
			    "%stracking secret is %zu bytes, at most %d are allowed", where, len,
			    TOKEN_SECRET_MAX);
	return 0;
}

static void token_keys_append(struct token_keys *k, const void *secret, size_t len)
{
	k->secrets = xrealloc(k->secrets, (k->count + 1) * sizeof(*k->secrets));
	struct token_secret *s = &k->secrets[k->count++];
	s->data = xmalloc(len);
	memcpy(s->data, secret, len);
	s->len = len;
	s->mac = k->shared->hmac ? EVP_MAC_CTX_new(k->shared->hmac) : NULL;
	OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
								 (char *)"SHA256", 0),
				OSSL_PARAM_construct_end() };
	if (s->mac && !EVP_MAC_init(s->mac, s->data, s->len, params)) {
		EVP_MAC_CTX_free(s->mac);
		s->mac = NULL;
	}
}

int token_keys_add(struct token_keys *k, const void *secret, size_t len, char *err, size_t errlen)
{
	int rc = token_secret_check(len, "", err, errlen);
	if (rc < 0)
		return rc;
	token_keys_append(k, secret, len);
	return 0;
}

int token_keys_load(struct token_keys *k, const char *path, char *err, size_t errlen)
{
	/* Read into a set of our own first, so a bad file adds nothing. */
	struct token_keys *tmp = token_keys_new();
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	FILE *f = fopen(path, "r");
	if (!f) {
		rc = errf(err, errlen, DRIP_EIO, "%s: cannot read: %s", path, strerror(errno));
		goto fail;
	}
	ssize_t n;
	int lineno = 0;
	errno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		size_t len = (size_t)n;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
				   line[len - 1] == ' ' || line[len - 1] == '\t'))
			len--;
		if (len == 0)
			continue;
		if (len < TOKEN_SECRET_MIN || len > TOKEN_SECRET_MAX) {
			char *where = xasprintf("%s:%d: ", path, lineno);
			rc = token_secret_check(len, where, err, errlen);
			free(where);
			goto fail;
		}
		token_keys_append(tmp, line, len);
		errno = 0;
	}
	if (ferror(f)) {
		rc = errf(err, errlen, DRIP_EIO, "%s: cannot read: %s", path,
			  strerror(errno ? errno : EIO));
		goto fail;
	}
	if (tmp->count == 0) {
		rc = errf(err, errlen, DRIP_EINVALID,
			  "%s: no tracking secret (one per line, newest first)", path);
		goto fail;
	}
	for (size_t i = 0; i < tmp->count; i++)
		token_keys_append(k, tmp->secrets[i].data, tmp->secrets[i].len);
fail:
	if (line) {
		OPENSSL_cleanse(line, cap);
		free(line);
	}
	if (f)
		fclose(f);
	token_keys_free(tmp);
	return rc;
}

/* ---- payload ---- */

static bool token_kind_known(int kind)
{
	switch (kind) {
	case TOKEN_OPEN:
	case TOKEN_CLICK:
	case TOKEN_UNSUBSCRIBE:
	case TOKEN_REPLY:
	case TOKEN_BOUNCE:
	case TOKEN_CONFIRM:
		return true;
	default:
		return false;
	}
}

/* Writes v as an unsigned LEB128 varint at p; returns the bytes written (1 to 10). */
static size_t token_varint_put(unsigned char *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

/*
 * Reads a varint from p[0..len) into *v; returns the bytes read, or 0 when it is cut short,
 * longer than 10 bytes, overflows 64 bits or is not minimal (ends in a 0x00 continuation), so
 * each value has exactly one spelling.
 */
static size_t token_varint_get(const unsigned char *p, size_t len, uint64_t *v)
{
	uint64_t r = 0;
	for (size_t i = 0; i < len && i < TOKEN_VARINT_MAX; i++) {
		uint64_t b = p[i] & 0x7f;
		if (i == TOKEN_VARINT_MAX - 1 && b > 1)
			return 0; /* bits past the 64th */
		r |= b << (7 * i);
		if (!(p[i] & 0x80)) {
			if (i > 0 && p[i] == 0)
				return 0; /* non-minimal */
			*v = r;
			return i + 1;
		}
	}
	return 0;
}

/* The truncated MAC of payload p[0..n) under one secret of k into mac; false if libcrypto
 * fails. */
static bool token_mac(const struct token_keys *k, const struct token_secret *s,
		      const unsigned char *p, size_t n, unsigned char mac[TOKEN_MAC_LEN])
{
	unsigned char in[sizeof(token_domain) + TOKEN_PAYLOAD_MAX];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	memcpy(in, token_domain, sizeof(token_domain)); /* with its NUL: the separator */
	memcpy(in + sizeof(token_domain), p, n);
	if (s->mac) {
		size_t got = 0;
		pthread_mutex_lock(&k->shared->lock);
		/* No key: HMAC starts over with the one it was given. */
		bool ok = EVP_MAC_init(s->mac, NULL, 0, NULL) &&
			  EVP_MAC_update(s->mac, in, sizeof(token_domain) + n) &&
			  EVP_MAC_final(s->mac, md, &got, sizeof(md));
		pthread_mutex_unlock(&k->shared->lock);
		if (!ok)
			return false;
		mdlen = (unsigned int)got;
	} else if (!HMAC(EVP_sha256(), s->data, (int)s->len, in, sizeof(token_domain) + n, md,
			 &mdlen)) {
		return false;
	}
	if (mdlen < TOKEN_MAC_LEN)
		return false;
	memcpy(mac, md, TOKEN_MAC_LEN);
	OPENSSL_cleanse(md, sizeof(md));
	return true;
}

/* ---- encodings ---- */

/* The characters that encode n bytes. */
static size_t token_encoded_len(size_t n, enum token_encoding enc)
{
	return enc == TOKEN_URL ? (n * 8 + 5) / 6 : (n * 8 + 4) / 5;
}

/* Encodes in[0..n) into out (token_encoded_len(n) characters, no NUL). */
static void token_encode(const unsigned char *in, size_t n, enum token_encoding enc, char *out)
{
	const char *alphabet = enc == TOKEN_URL ? token_b64url : token_b32;
	unsigned bits = enc == TOKEN_URL ? 6 : 5;
	uint32_t acc = 0;
	unsigned have = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		have += 8;
		while (have >= bits) {
			have -= bits;
			out[o++] = alphabet[(acc >> have) & ((1u << bits) - 1)];
		}
		acc &= (1u << have) - 1;
	}
	if (have > 0)
		out[o++] = alphabet[(acc << (bits - have)) & ((1u << bits) - 1)];
}

/* The value of character c in an encoding, or -1 when it is not in the alphabet. */
static int token_char_value(unsigned char c, enum token_encoding enc)
{
	if (enc == TOKEN_URL) {
		if (c >= 'A' && c <= 'Z')
			return c - 'A';
		if (c >= 'a' && c <= 'z')
			return c - 'a' + 26;
		if (c >= '0' && c <= '9')
			return c - '0' + 52;
		if (c == '-')
			return 62;
		if (c == '_')
			return 63;
		return -1;
	}
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= 'A' && c <= 'Z')
		return c - 'A'; /* case-folded on the way through a mail system */
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

/*
 * Decodes s[0..len) into out (at most `cap` bytes); returns the bytes, or 0 when the length is
 * impossible for the encoding, a character is outside the alphabet, the result would not fit,
 * or the unused bits of the last character are not zero (so each byte string has one spelling).
 */
static size_t token_decode(const char *s, size_t len, enum token_encoding enc, unsigned char *out,
			   size_t cap)
{
	unsigned bits = enc == TOKEN_URL ? 6 : 5;
	size_t n = len * bits / 8;
	if (len == 0 || n > cap || token_encoded_len(n, enc) != len)
		return 0;
	uint32_t acc = 0;
	unsigned have = 0;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int v = token_char_value((unsigned char)s[i], enc);
		if (v < 0)
			return 0;
		acc = (acc << bits) | (uint32_t)v;
		have += bits;
		if (have >= 8) {
			have -= 8;
			out[o++] = (unsigned char)(acc >> have);
		}
		acc &= (1u << have) - 1;
	}
	if (acc != 0)
		return 0;
	return o;
}

/* ---- sign and verify ---- */

size_t token_sign(const struct token_keys *k, const struct token_claims *c, enum token_encoding enc,
		  char *out, size_t outlen)
{
	if (outlen > 0)
		out[0] = '\0';
	if (!k || k->count == 0 || !token_kind_known((int)c->kind) || c->touch_id < 0 ||
	    (c->kind != TOKEN_CLICK && c->link != 0) || (enc != TOKEN_URL && enc != TOKEN_ADDRESS))
		return 0;
	unsigned char p[TOKEN_PAYLOAD_MAX];
	size_t n = 0;
	p[n++] = TOKEN_VERSION;
	p[n++] = (unsigned char)c->kind;
	n += token_varint_put(p + n, (uint64_t)c->touch_id);
	if (c->kind == TOKEN_CLICK)
		n += token_varint_put(p + n, c->link);
	if (!token_mac(k, &k->secrets[0], p, n, p + n))
		return 0;
	n += TOKEN_MAC_LEN;
	size_t len = token_encoded_len(n, enc);
	if (len + 1 > outlen)
		return 0;
	token_encode(p, n, enc, out);
	out[len] = '\0';
	return len;
}

int token_verify(const struct token_keys *k, const char *token, size_t len, enum token_encoding enc,
		 struct token_claims *out)
{
	if (!k || !token || (enc != TOKEN_URL && enc != TOKEN_ADDRESS))
		return DRIP_EINVALID;
	unsigned char p[TOKEN_PAYLOAD_MAX];
	size_t n = token_decode(token, len, enc, p, sizeof(p));
	if (n < 2 + 1 + TOKEN_MAC_LEN || p[0] != TOKEN_VERSION || !token_kind_known(p[1]))
		return DRIP_EINVALID;
	size_t body = n - TOKEN_MAC_LEN, at = 2, used;
	uint64_t touch, link = 0;
	if (!(used = token_varint_get(p + at, body - at, &touch)) || touch > INT64_MAX)
		return DRIP_EINVALID;
	at += used;
	if (p[1] == TOKEN_CLICK) {
		if (!(used = token_varint_get(p + at, body - at, &link)) || link > UINT32_MAX)
			return DRIP_EINVALID;
		at += used;
	}
	if (at != body)
		return DRIP_EINVALID; /* bytes between the ids and the MAC */
	for (size_t i = 0; i < k->count; i++) {
		unsigned char mac[TOKEN_MAC_LEN];
		if (!token_mac(k, &k->secrets[i], p, body, mac))
			continue;
		if (CRYPTO_memcmp(mac, p + body, TOKEN_MAC_LEN) == 0) {
			out->kind = (enum token_kind)p[1];
			out->touch_id = (int64_t)touch;
			out->link = (uint32_t)link;
			return 0;
		}
	}
	return DRIP_EINVALID;
}
