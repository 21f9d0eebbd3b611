/* test_token.c - signed tokens: round trips, rotation, tampering, strict decoding, secret files. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dripd/error.h"
#include "dripd/token.h"
#include "dripd/util.h"
#include "testutil.h"

static const char secret_a[] = "alpha-secret-0123456789abcdef";
static const char secret_b[] = "bravo-secret-0123456789abcdef";
static const char secret_c[] = "charlie-secret-0123456789abcdef";

static const enum token_kind all_kinds[] = { TOKEN_OPEN,  TOKEN_CLICK,  TOKEN_UNSUBSCRIBE,
					     TOKEN_REPLY, TOKEN_BOUNCE, TOKEN_CONFIRM };
static const enum token_encoding all_encodings[] = { TOKEN_URL, TOKEN_ADDRESS };

static const char *enc_name(enum token_encoding enc)
{
	return enc == TOKEN_URL ? "URL" : "ADDRESS";
}

/* A key set of the given secrets, newest first; the list ends with NULL. */
static struct token_keys *keys_of(const char *first, ...)
{
	struct token_keys *k = token_keys_new();
	char err[256];
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *))
		assert_rc(token_keys_add(k, s, strlen(s), err, sizeof(err)), 0);
	va_end(ap);
	return k;
}

static size_t sign_ok(const struct token_keys *k, enum token_kind kind, int64_t touch,
		      uint32_t link, enum token_encoding enc, char out[TOKEN_MAX_LEN])
{
	struct token_claims c = { .kind = kind, .touch_id = touch, .link = link };
	size_t n = token_sign(k, &c, enc, out, TOKEN_MAX_LEN);
	if (n == 0 || n != strlen(out))
		fail_msg("expected a token for kind '%c' touch %lld link %u (%s), got length %zu "
			 "\"%s\"",
			 (char)kind, (long long)touch, link, enc_name(enc), n, out);
	return n;
}

/* Verifies the first len bytes of a copy of s placed at the very end of a buffer of exactly
 * len bytes, so AddressSanitizer sees any read past len. */
static int verify_exact(const struct token_keys *k, const char *s, size_t len,
			enum token_encoding enc, struct token_claims *out)
{
	char *copy = xmalloc(len ? len : 1);
	memcpy(copy, s, len);
	int rc = token_verify(k, copy, len, enc, out);
	free(copy);
	return rc;
}

static void expect_refused(const struct token_keys *k, const char *s, size_t len,
			   enum token_encoding enc, const char *why)
{
	struct token_claims c = { .kind = TOKEN_OPEN, .touch_id = -7, .link = 7 };
	int rc = verify_exact(k, s, len, enc, &c);
	if (rc != DRIP_EINVALID)
		fail_msg(
			"expected \"%.*s\" (%s, %s) to be refused with %d, got %d (kind '%c' touch "
			"%lld link %u)",
			(int)len, s, enc_name(enc), why, DRIP_EINVALID, rc, (char)c.kind,
			(long long)c.touch_id, c.link);
	/* A refusal leaves the claims untouched. */
	assert_int_equal(c.touch_id, -7);
	assert_int_equal(c.link, 7);
}

static void expect_claims(const struct token_keys *k, const char *s, size_t len,
			  enum token_encoding enc, enum token_kind kind, int64_t touch,
			  uint32_t link)
{
	struct token_claims c = { 0 };
	int rc = verify_exact(k, s, len, enc, &c);
	if (rc != 0)
		fail_msg("expected \"%.*s\" (%s) to verify, got %d (%s)", (int)len, s,
			 enc_name(enc), rc, drip_strerror(rc));
	if (c.kind != kind || c.touch_id != touch || c.link != link)
		fail_msg("expected kind '%c' touch %lld link %u from \"%.*s\", got '%c' %lld %u",
			 (char)kind, (long long)touch, link, (int)len, s, (char)c.kind,
			 (long long)c.touch_id, c.link);
}

/* ---- an encoder and MAC of the documented format, independent of the code under test ---- */

static size_t ref_encode(const unsigned char *in, size_t n, enum token_encoding enc, char *out)
{
	const char *alpha =
		enc == TOKEN_URL
			? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			: "abcdefghijklmnopqrstuvwxyz234567";
	unsigned bits = enc == TOKEN_URL ? 6 : 5;
	size_t total = n * 8, o = 0;
	for (size_t pos = 0; pos < total; pos += bits) {
		unsigned v = 0;
		for (unsigned b = 0; b < bits; b++) {
			size_t bit = pos + b;
			unsigned one = bit < total ? (in[bit / 8] >> (7 - bit % 8)) & 1 : 0;
			v = (v << 1) | one;
		}
		out[o++] = alpha[v];
	}
	out[o] = '\0';
	return o;
}

/* payload || HMAC-SHA256(secret, "dripd-token-v1\0" || payload)[0..12), encoded. */
static size_t ref_token(const char *secret, const unsigned char *payload, size_t n,
			enum token_encoding enc, char *out)
{
	unsigned char in[128], md[EVP_MAX_MD_SIZE], full[128];
	unsigned mdlen = 0;
	assert_true(15 + n <= sizeof(in));
	memcpy(in, "dripd-token-v1", 15);
	memcpy(in + 15, payload, n);
	assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), in, 15 + n, md, &mdlen));
	memcpy(full, payload, n);
	memcpy(full + n, md, 12);
	return ref_encode(full, n + 12, enc, out);
}

/* A click payload: version, kind, LEB128 touch and link. */
static size_t click_payload(int64_t touch, uint32_t link, unsigned char *p)
{
	size_t n = 0;
	p[n++] = 1;
	p[n++] = 'c';
	for (uint64_t v = (uint64_t)touch;; v >>= 7) {
		p[n++] = (unsigned char)(v >= 0x80 ? (v & 0x7f) | 0x80 : v);
		if (v < 0x80)
			break;
	}
	for (uint64_t v = link;; v >>= 7) {
		p[n++] = (unsigned char)(v >= 0x80 ? (v & 0x7f) | 0x80 : v);
		if (v < 0x80)
			break;
	}
	return n;
}

static void test_many_signatures_in_a_row_match_a_fresh_hmac_each(void **state)
{
	(void)state;
	/* The key set keeps one HMAC context per secret and starts it over for each MAC: every
	 * token must still be the one a fresh HMAC gives, whichever secret verified last. */
	struct token_keys *k = keys_of(secret_a, secret_b, NULL);
	struct token_keys *old = keys_of(secret_b, NULL);
	for (int64_t i = 0; i < 300; i++) {
		unsigned char payload[32];
		char ref[TOKEN_MAX_LEN * 2], tok[TOKEN_MAX_LEN], by_b[TOKEN_MAX_LEN];
		enum token_encoding enc = all_encodings[i % 2];
		size_t n = click_payload(i * 977, (uint32_t)(i % 7), payload);
		size_t rn = ref_token(secret_a, payload, n, enc, ref);
		size_t tn = sign_ok(k, TOKEN_CLICK, i * 977, (uint32_t)(i % 7), enc, tok);
		assert_int_equal(tn, rn);
		assert_string_equal(tok, ref);
		/* Signed by the older secret: verifying runs both secrets' contexts. */
		size_t bn = sign_ok(old, TOKEN_CLICK, i * 977, (uint32_t)(i % 7), enc, by_b);
		expect_claims(k, by_b, bn, enc, TOKEN_CLICK, i * 977, (uint32_t)(i % 7));
		expect_claims(k, tok, tn, enc, TOKEN_CLICK, i * 977, (uint32_t)(i % 7));
	}
	token_keys_free(old);
	token_keys_free(k);
}

struct sign_thread {
	const struct token_keys *k;
	int64_t base;
	int bad;
};

static void *sign_thread_run(void *arg)
{
	struct sign_thread *t = arg;
	for (int64_t i = 0; i < 2000; i++) {
		struct token_claims c = { .kind = TOKEN_OPEN, .touch_id = t->base + i }, got;
		char tok[TOKEN_MAX_LEN];
		size_t n = token_sign(t->k, &c, TOKEN_ADDRESS, tok, sizeof(tok));
		if (n == 0 || token_verify(t->k, tok, n, TOKEN_ADDRESS, &got) != 0 ||
		    got.touch_id != c.touch_id)
			t->bad++;
	}
	return NULL;
}

static void test_threads_sign_and_verify_with_one_key_set(void **state)
{
	(void)state;
	/* The loop signs while the inbox verifies on its own threads. */
	struct token_keys *k = keys_of(secret_a, secret_b, NULL);
	pthread_t th[4];
	struct sign_thread args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct sign_thread){ .k = k, .base = i * 100000 };
		assert_int_equal(pthread_create(&th[i], NULL, sign_thread_run, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].bad, 0);
	}
	token_keys_free(k);
}

/* ---- round trips ---- */

static void test_every_kind_round_trips_in_both_encodings_at_edge_ids(void **state)
{
	(void)state;
	static const int64_t touches[] = { 0, 1, 127, 128, 16383, 16384, 2147483648LL, INT64_MAX };
	static const uint32_t links[] = { 0, 1, 127, 128, 4294967295u };
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN];
	for (size_t e = 0; e < 2; e++)
		for (size_t i = 0; i < sizeof(all_kinds) / sizeof(all_kinds[0]); i++)
			for (size_t t = 0; t < sizeof(touches) / sizeof(touches[0]); t++)
				for (size_t l = 0; l < sizeof(links) / sizeof(links[0]); l++) {
					if (all_kinds[i] != TOKEN_CLICK && links[l] != 0)
						continue;
					size_t n = sign_ok(k, all_kinds[i], touches[t], links[l],
							   all_encodings[e], tok);
					expect_claims(k, tok, n, all_encodings[e], all_kinds[i],
						      touches[t], links[l]);
				}
	token_keys_free(k);
}

static void test_the_format_is_the_documented_one(void **state)
{
	(void)state;
	/* Built from the description in token.h alone: version 1, kind, LEB128 ids, MAC. */
	struct token_keys *k = keys_of(secret_a, NULL);
	const unsigned char click[] = { 1, 'c', 0xac, 0x02, 0x05 }; /* touch 300, link 5 */
	char ref[TOKEN_MAX_LEN * 2], tok[TOKEN_MAX_LEN];
	for (size_t e = 0; e < 2; e++) {
		size_t n = ref_token(secret_a, click, sizeof(click), all_encodings[e], ref);
		expect_claims(k, ref, n, all_encodings[e], TOKEN_CLICK, 300, 5);
		sign_ok(k, TOKEN_CLICK, 300, 5, all_encodings[e], tok);
		if (strcmp(tok, ref) != 0)
			fail_msg("expected token_sign to give \"%s\", got \"%s\"", ref, tok);
	}
	token_keys_free(k);
}

static void test_text_after_len_is_not_read(void **state)
{
	(void)state;
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN], longer[TOKEN_MAX_LEN + 16];
	size_t n = sign_ok(k, TOKEN_OPEN, 42, 0, TOKEN_URL, tok);
	snprintf(longer, sizeof(longer), "%s/extra", tok);
	struct token_claims c = { 0 };
	assert_rc(token_verify(k, longer, n, TOKEN_URL, &c), 0);
	assert_int_equal(c.touch_id, 42);
	token_keys_free(k);
}

/* ---- rotation and secrets ---- */

static void test_old_token_verifies_after_rotation_and_fails_once_its_key_is_gone(void **state)
{
	(void)state;
	char old_tok[TOKEN_MAX_LEN], new_tok[TOKEN_MAX_LEN];
	struct token_keys *before = keys_of(secret_a, NULL);
	size_t n_old = sign_ok(before, TOKEN_CLICK, 99, 3, TOKEN_URL, old_tok);

	/* A new secret goes first; the old one stays to accept links already sent. */
	struct token_keys *during = keys_of(secret_b, secret_a, NULL);
	assert_int_equal(token_keys_count(during), 2);
	expect_claims(during, old_tok, n_old, TOKEN_URL, TOKEN_CLICK, 99, 3);
	size_t n_new = sign_ok(during, TOKEN_CLICK, 99, 3, TOKEN_URL, new_tok);
	if (strcmp(old_tok, new_tok) == 0)
		fail_msg("expected the newest secret to sign, got the old token \"%s\"", new_tok);
	expect_refused(before, new_tok, n_new, TOKEN_URL, "signed by a secret added later");

	struct token_keys *after = keys_of(secret_b, NULL);
	expect_claims(after, new_tok, n_new, TOKEN_URL, TOKEN_CLICK, 99, 3);
	expect_refused(after, old_tok, n_old, TOKEN_URL, "its secret was retired");
	token_keys_free(before);
	token_keys_free(during);
	token_keys_free(after);
}

static void test_token_from_another_secret_is_refused(void **state)
{
	(void)state;
	struct token_keys *a = keys_of(secret_a, NULL);
	struct token_keys *other = keys_of(secret_c, secret_b, NULL);
	char tok[TOKEN_MAX_LEN];
	for (size_t e = 0; e < 2; e++) {
		size_t n = sign_ok(a, TOKEN_UNSUBSCRIBE, 1234, 0, all_encodings[e], tok);
		expect_refused(other, tok, n, all_encodings[e], "signed by another secret");
	}
	token_keys_free(a);
	token_keys_free(other);
}

static void test_empty_key_set_signs_and_verifies_nothing(void **state)
{
	(void)state;
	struct token_keys *a = keys_of(secret_a, NULL);
	struct token_keys *none = token_keys_new();
	char tok[TOKEN_MAX_LEN];
	assert_int_equal(token_keys_count(none), 0);
	size_t n = sign_ok(a, TOKEN_OPEN, 5, 0, TOKEN_URL, tok);
	expect_refused(none, tok, n, TOKEN_URL, "no secrets");
	struct token_claims c = { .kind = TOKEN_OPEN, .touch_id = 5 };
	assert_int_equal(token_sign(none, &c, TOKEN_URL, tok, sizeof(tok)), 0);
	assert_string_equal(tok, "");
	token_keys_free(a);
	token_keys_free(none);
	token_keys_free(NULL);
}

static void test_short_and_huge_secrets_are_refused(void **state)
{
	(void)state;
	struct token_keys *k = token_keys_new();
	char err[256] = "";
	assert_rc(token_keys_add(k, "fifteen-bytes!!", 15, err, sizeof(err)), DRIP_EINVALID);
	assert_contains(err, "15 bytes");
	assert_contains(err, "at least 16");
	assert_rc(token_keys_add(k, "", 0, err, sizeof(err)), DRIP_EINVALID);
	char *huge = xcalloc(1, TOKEN_SECRET_MAX + 1);
	memset(huge, 'x', TOKEN_SECRET_MAX + 1);
	assert_rc(token_keys_add(k, huge, TOKEN_SECRET_MAX + 1, err, sizeof(err)), DRIP_EINVALID);
	assert_contains(err, "at most");
	assert_int_equal(token_keys_count(k), 0);
	assert_rc(token_keys_add(k, huge, TOKEN_SECRET_MAX, err, sizeof(err)), 0);
	assert_rc(token_keys_add(k, "sixteen-bytes!!!", 16, err, sizeof(err)), 0);
	assert_int_equal(token_keys_count(k), 2);
	free(huge);
	token_keys_free(k);
}

static void test_sign_refuses_negative_touch_unknown_kind_stray_link_and_small_buffer(void **state)
{
	(void)state;
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN];
	struct token_claims neg = { .kind = TOKEN_OPEN, .touch_id = -1 };
	struct token_claims neg_min = { .kind = TOKEN_CLICK, .touch_id = INT64_MIN };
	struct token_claims unknown = { .kind = (enum token_kind)'x', .touch_id = 1 };
	struct token_claims stray = { .kind = TOKEN_OPEN, .touch_id = 1, .link = 2 };
	struct token_claims ok = { .kind = TOKEN_OPEN, .touch_id = 1 };
	for (size_t e = 0; e < 2; e++) {
		assert_int_equal(token_sign(k, &neg, all_encodings[e], tok, sizeof(tok)), 0);
		assert_int_equal(token_sign(k, &neg_min, all_encodings[e], tok, sizeof(tok)), 0);
		assert_int_equal(token_sign(k, &unknown, all_encodings[e], tok, sizeof(tok)), 0);
		assert_int_equal(token_sign(k, &stray, all_encodings[e], tok, sizeof(tok)), 0);
		size_t n = token_sign(k, &ok, all_encodings[e], tok, sizeof(tok));
		assert_true(n > 0);
		/* Exactly n + 1 bytes is enough; n is not. */
		assert_int_equal(token_sign(k, &ok, all_encodings[e], tok, n + 1), n);
		assert_int_equal(token_sign(k, &ok, all_encodings[e], tok, n), 0);
		assert_string_equal(tok, "");
	}
	token_keys_free(k);
}

/* ---- tampering and strict decoding ---- */

/* Every byte value other than the original (and, for an address, its upper case) at every
 * position is refused; this covers every character of both alphabets. */
static void check_every_single_change_fails(const struct token_keys *k, enum token_kind kind,
					    int64_t touch, uint32_t link, enum token_encoding enc)
{
	char tok[TOKEN_MAX_LEN], bad[TOKEN_MAX_LEN];
	size_t n = sign_ok(k, kind, touch, link, enc, tok);
	for (size_t i = 0; i < n; i++)
		for (int ch = 0; ch < 256; ch++) {
			if (ch == (unsigned char)tok[i])
				continue;
			if (enc == TOKEN_ADDRESS && ch == toupper((unsigned char)tok[i]))
				continue;
			memcpy(bad, tok, n);
			bad[i] = (char)ch;
			expect_refused(k, bad, n, enc, "one character changed");
		}
}

static void test_every_single_character_change_is_refused(void **state)
{
	(void)state;
	struct token_keys *k = keys_of(secret_a, NULL);
	for (size_t e = 0; e < 2; e++) {
		check_every_single_change_fails(k, TOKEN_OPEN, 42, 0, all_encodings[e]);
		check_every_single_change_fails(k, TOKEN_CLICK, 123456, 7, all_encodings[e]);
		check_every_single_change_fails(k, TOKEN_REPLY, INT64_MAX, 0, all_encodings[e]);
	}
	token_keys_free(k);
}

static void test_every_truncation_is_refused(void **state)
{
	(void)state;
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN];
	for (size_t e = 0; e < 2; e++) {
		size_t n = sign_ok(k, TOKEN_CLICK, 987654321, 12, all_encodings[e], tok);
		for (size_t len = 0; len < n; len++) {
			expect_refused(k, tok, len, all_encodings[e], "cut at the end");
			expect_refused(k, tok + (n - len), len, all_encodings[e],
				       "cut at the start");
		}
	}
	token_keys_free(k);
}

static void test_trailing_garbage_is_refused(void **state)
{
	(void)state;
	static const char *const tails[] = { "A", "a",  "2",  "AA", "aa",   "-",    "_",
					     "=", "==", "\n", " ",  "aaaa", "AAAA", "aaaaaaaa" };
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN], longer[TOKEN_MAX_LEN + 16];
	for (size_t e = 0; e < 2; e++) {
		sign_ok(k, TOKEN_BOUNCE, 77, 0, all_encodings[e], tok);
		for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
			int n = snprintf(longer, sizeof(longer), "%s%s", tok, tails[t]);
			expect_refused(k, longer, (size_t)n, all_encodings[e], "trailing text");
		}
		/* A NUL inside the length is not an end either. */
		size_t n = strlen(tok);
		memcpy(longer, tok, n + 1);
		expect_refused(k, longer, n + 1, all_encodings[e], "trailing NUL");
	}
	token_keys_free(k);
}

static void test_url_token_is_refused_as_address_and_vice_versa(void **state)
{
	(void)state;
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN];
	for (size_t i = 0; i < sizeof(all_kinds) / sizeof(all_kinds[0]); i++)
		for (int64_t touch = 0; touch < 2000; touch += 37) {
			size_t n = sign_ok(k, all_kinds[i], touch, 0, TOKEN_URL, tok);
			expect_refused(k, tok, n, TOKEN_ADDRESS, "a URL token");
			n = sign_ok(k, all_kinds[i], touch, 0, TOKEN_ADDRESS, tok);
			expect_refused(k, tok, n, TOKEN_URL, "an address token");
		}
	token_keys_free(k);
}

static void test_upper_cased_address_token_verifies_but_upper_cased_url_token_does_not(void **state)
{
	(void)state;
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN];
	size_t n = sign_ok(k, TOKEN_REPLY, 31337, 0, TOKEN_ADDRESS, tok);
	for (size_t i = 0; i < n; i++)
		tok[i] = (char)toupper((unsigned char)tok[i]);
	expect_claims(k, tok, n, TOKEN_ADDRESS, TOKEN_REPLY, 31337, 0);
	/* Mixed case too, as a mail system might leave it. */
	for (size_t i = 0; i < n; i += 2)
		tok[i] = (char)tolower((unsigned char)tok[i]);
	expect_claims(k, tok, n, TOKEN_ADDRESS, TOKEN_REPLY, 31337, 0);

	n = sign_ok(k, TOKEN_OPEN, 31337, 0, TOKEN_URL, tok);
	bool changed = false;
	for (size_t i = 0; i < n; i++) {
		char up = (char)toupper((unsigned char)tok[i]);
		changed |= up != tok[i];
		tok[i] = up;
	}
	assert_true(changed);
	expect_refused(k, tok, n, TOKEN_URL, "upper-cased URL token");
	token_keys_free(k);
}

static void test_bad_version_kind_varints_and_trailing_bytes_are_refused_even_when_signed(
	void **state)
{
	(void)state;
	/* Payloads with a correct MAC that the format forbids: the parser must refuse them
	 * itself, not rely on the MAC. */
	static const struct {
		const char *why;
		unsigned char p[20];
		size_t n;
	} cases[] = {
		{ "version 0", { 0, 'o', 5 }, 3 },
		{ "version 2", { 2, 'o', 5 }, 3 },
		{ "unknown kind", { 1, 'x', 5 }, 3 },
		{ "kind in upper case", { 1, 'O', 5 }, 3 },
		{ "non-minimal touch (0x85 0x00)", { 1, 'o', 0x85, 0x00 }, 4 },
		{ "non-minimal zero (0x80 0x00)", { 1, 'o', 0x80, 0x00 }, 4 },
		{ "non-minimal link", { 1, 'c', 5, 0x83, 0x80, 0x00 }, 6 },
		{ "touch past INT64_MAX",
		  { 1, 'o', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 },
		  12 },
		{ "10th varint byte past 64 bits",
		  { 1, 'o', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 },
		  12 },
		{ "11-byte varint",
		  { 1, 'o', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 },
		  13 },
		{ "link past UINT32_MAX", { 1, 'c', 5, 0x80, 0x80, 0x80, 0x80, 0x10 }, 8 },
		{ "link on an open", { 1, 'o', 5, 0 }, 4 },
		{ "click without a link", { 1, 'c', 5 }, 3 },
		{ "touch cut short", { 1, 'o', 0x85 }, 3 },
		{ "no touch", { 1, 'o' }, 2 },
		{ "trailing byte", { 1, 'c', 5, 6, 0 }, 5 },
	};
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t e = 0; e < 2; e++) {
			size_t n =
				ref_token(secret_a, cases[i].p, cases[i].n, all_encodings[e], tok);
			expect_refused(k, tok, n, all_encodings[e], cases[i].why);
		}
	/* The same builder gives accepted tokens when the payload is right. */
	const unsigned char good[] = {
		1, 'o', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
	}; /* INT64_MAX */
	size_t n = ref_token(secret_a, good, sizeof(good), TOKEN_URL, tok);
	expect_claims(k, tok, n, TOKEN_URL, TOKEN_OPEN, INT64_MAX, 0);
	token_keys_free(k);
}

/* ---- shape ---- */

static void test_tokens_use_only_their_alphabet(void **state)
{
	(void)state;
	static const char url_alpha[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	static const char addr_alpha[] = "abcdefghijklmnopqrstuvwxyz234567";
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN];
	bool seen_url[256] = { false };
	for (size_t e = 0; e < 2; e++)
		for (int64_t touch = 0; touch < 5000; touch++) {
			size_t n = sign_ok(k, TOKEN_CLICK, touch * 7919, (uint32_t)touch,
					   all_encodings[e], tok);
			const char *alpha = all_encodings[e] == TOKEN_URL ? url_alpha : addr_alpha;
			for (size_t i = 0; i < n; i++) {
				if (!strchr(alpha, tok[i]))
					fail_msg("expected only [%s] in a %s token, got '%c' in "
						 "\"%s\"",
						 alpha, enc_name(all_encodings[e]), tok[i], tok);
				if (all_encodings[e] == TOKEN_URL)
					seen_url[(unsigned char)tok[i]] = true;
			}
		}
	/* And the whole base64url alphabet is in use, '-' and '_' included. */
	assert_true(seen_url['-']);
	assert_true(seen_url['_']);
	token_keys_free(k);
}

static void test_tokens_for_small_touch_ids_are_short(void **state)
{
	(void)state;
	/*
	 * Measured lengths, URL / ADDRESS (open, unsubscribe, reply, bounce, confirm alike;
	 * a click adds its link, one byte below 128):
	 *   touch 0..127            open 20 / 24   click 22 / 26
	 *   touch 128..16383        open 22 / 26   click 23 / 28
	 *   touch 16384..2097151    open 23 / 28   click 24 / 29
	 *   touch 2^21..2^28-1      open 24 / 29   click 26 / 31
	 *   touch 2^31              open 26 / 31   click 27 / 32
	 *   touch INT64_MAX         open 31 / 37   click on link UINT32_MAX 38 / 45 (the longest)
	 */
	struct token_keys *k = keys_of(secret_a, NULL);
	char tok[TOKEN_MAX_LEN];
	assert_int_equal(sign_ok(k, TOKEN_OPEN, 42, 0, TOKEN_URL, tok), 20);
	assert_int_equal(sign_ok(k, TOKEN_OPEN, 42, 0, TOKEN_ADDRESS, tok), 24);
	assert_int_equal(sign_ok(k, TOKEN_CLICK, 42, 3, TOKEN_URL, tok), 22);
	assert_int_equal(sign_ok(k, TOKEN_CLICK, 42, 3, TOKEN_ADDRESS, tok), 26);
	/* Up to two million touches, every URL token fits in 24 characters. */
	for (size_t i = 0; i < sizeof(all_kinds) / sizeof(all_kinds[0]); i++) {
		uint32_t link = all_kinds[i] == TOKEN_CLICK ? 127 : 0;
		size_t n = sign_ok(k, all_kinds[i], 2097151, link, TOKEN_URL, tok);
		if (n > 24)
			fail_msg("expected at most 24 characters for touch 2097151, got %zu \"%s\"",
				 n, tok);
	}
	assert_int_equal(sign_ok(k, TOKEN_CLICK, INT64_MAX, UINT32_MAX, TOKEN_URL, tok), 38);
	size_t longest = sign_ok(k, TOKEN_CLICK, INT64_MAX, UINT32_MAX, TOKEN_ADDRESS, tok);
	assert_int_equal(longest, 45);
	assert_true(longest + 1 <= TOKEN_MAX_LEN);
	token_keys_free(k);
}

/* ---- hostile input ---- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: reproducible from the seed printed on failure. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static void test_random_bytes_never_verify_and_never_crash(void **state)
{
	(void)state;
	static const char alpha[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint64_t seed;
	util_random(&seed, sizeof(seed));
	seed |= 1;
	uint64_t s = seed;
	struct token_keys *k = keys_of(secret_a, secret_b, NULL);
	unsigned char buf[80];
	for (int i = 0; i < 10000; i++) {
		size_t len = rng_next(&s) % sizeof(buf);
		int mode = (int)(rng_next(&s) % 3);
		for (size_t j = 0; j < len; j++) {
			uint64_t r = rng_next(&s);
			/* Raw bytes, or characters of the alphabets so decoding gets further. */
			buf[j] = mode == 0   ? (unsigned char)r
				 : mode == 1 ? (unsigned char)alpha[r % 64]
					     : (unsigned char)alpha[26 + r % 26];
		}
		if (len >= 2 && mode != 0) /* a plausible version and kind now and then */
			buf[0] = (rng_next(&s) & 1) ? 'A' : 'a';
		for (size_t e = 0; e < 2; e++) {
			struct token_claims c = { .kind = TOKEN_OPEN, .touch_id = -7, .link = 7 };
			int rc = verify_exact(k, (const char *)buf, len, all_encodings[e], &c);
			if (rc != DRIP_EINVALID)
				fail_msg("seed %llu, round %d: expected %d for %zu random bytes "
					 "(%s), got %d",
					 (unsigned long long)seed, i, DRIP_EINVALID, len,
					 enc_name(all_encodings[e]), rc);
		}
	}
	token_keys_free(k);
}

/* ---- secret files ---- */

/* Each test gets a fresh folder for its secret file. */
struct fixture {
	char dir[256];
	char path[300];
	char err[1024];
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	testutil_mkdtemp(f->dir, sizeof(f->dir), "token");
	snprintf(f->path, sizeof(f->path), "%s/secret", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	testutil_rmtree(f->dir);
	free(f);
	return 0;
}

static struct token_keys *load_ok(struct fixture *f, const char *text)
{
	testutil_write_file(f->path, text);
	struct token_keys *k = token_keys_new();
	f->err[0] = '\0';
	int rc = token_keys_load(k, f->path, f->err, sizeof(f->err));
	if (rc != 0)
		fail_msg("expected the secret file to load, got %d \"%s\"", rc, f->err);
	return k;
}

static void load_bad(struct fixture *f, const char *text, size_t len, int want_rc,
		     const char *want_in_err)
{
	if (text)
		testutil_write_bytes(f->path, text, len);
	struct token_keys *k = keys_of(secret_c, NULL);
	f->err[0] = '\0';
	assert_rc(token_keys_load(k, f->path, f->err, sizeof(f->err)), want_rc);
	assert_contains(f->err, want_in_err);
	/* Nothing was added. */
	assert_int_equal(token_keys_count(k), 1);
	token_keys_free(k);
}

static void test_load_reads_two_secrets_newest_first_and_the_first_signs(void **state)
{
	struct fixture *f = *state;
	char text[256], tok[TOKEN_MAX_LEN];
	snprintf(text, sizeof(text), "%s\n%s\n", secret_b, secret_a);
	struct token_keys *k = load_ok(f, text);
	assert_int_equal(token_keys_count(k), 2);
	struct token_keys *only_a = keys_of(secret_a, NULL), *only_b = keys_of(secret_b, NULL);

	size_t n = sign_ok(k, TOKEN_OPEN, 8, 0, TOKEN_URL, tok);
	expect_claims(only_b, tok, n, TOKEN_URL, TOKEN_OPEN, 8, 0);
	expect_refused(only_a, tok, n, TOKEN_URL, "signed by the newest, line 1");
	n = sign_ok(only_a, TOKEN_OPEN, 8, 0, TOKEN_URL, tok);
	expect_claims(k, tok, n, TOKEN_URL, TOKEN_OPEN, 8, 0);

	token_keys_free(k);
	token_keys_free(only_a);
	token_keys_free(only_b);
}

static void test_load_tolerates_blank_lines_crlf_and_trailing_spaces(void **state)
{
	struct fixture *f = *state;
	char text[256], tok[TOKEN_MAX_LEN];
	snprintf(text, sizeof(text), "\r\n\n%s \t\r\n\r\n   \n%s", secret_b, secret_a);
	struct token_keys *k = load_ok(f, text);
	assert_int_equal(token_keys_count(k), 2);
	struct token_keys *exact = keys_of(secret_b, secret_a, NULL);
	size_t n = sign_ok(k, TOKEN_OPEN, 8, 0, TOKEN_URL, tok);
	char tok2[TOKEN_MAX_LEN];
	sign_ok(exact, TOKEN_OPEN, 8, 0, TOKEN_URL, tok2);
	if (strcmp(tok, tok2) != 0)
		fail_msg("expected the trimmed secret to sign \"%s\", got \"%s\"", tok2, tok);
	struct token_keys *only_a = keys_of(secret_a, NULL);
	n = sign_ok(only_a, TOKEN_OPEN, 8, 0, TOKEN_URL, tok);
	expect_claims(k, tok, n, TOKEN_URL, TOKEN_OPEN, 8, 0);
	token_keys_free(k);
	token_keys_free(exact);
	token_keys_free(only_a);
}

static void test_load_names_the_line_of_a_short_secret(void **state)
{
	struct fixture *f = *state;
	char text[256], want[512];
	snprintf(text, sizeof(text), "%s\nshort\n%s\n", secret_b, secret_a);
	snprintf(want, sizeof(want), "%s:2: ", f->path);
	load_bad(f, text, strlen(text), DRIP_EINVALID, want);
	assert_contains(f->err, "5 bytes");
	/* The secret itself never reaches the message. */
	if (strstr(f->err, "short") || strstr(f->err, secret_b))
		fail_msg("expected no secret in the error, got \"%s\"", f->err);
}

static void test_load_refuses_an_empty_file(void **state)
{
	struct fixture *f = *state;
	char want[512];
	snprintf(want, sizeof(want), "%s: no tracking secret", f->path);
	load_bad(f, "", 0, DRIP_EINVALID, want);
	load_bad(f, "\n\r\n  \n", 6, DRIP_EINVALID, want);
}

static void test_load_refuses_a_missing_file_naming_it(void **state)
{
	struct fixture *f = *state;
	char want[512];
	snprintf(want, sizeof(want), "%s: cannot read", f->path);
	unlink(f->path);
	load_bad(f, NULL, 0, DRIP_EIO, want);
	/* A directory is no secret file either. */
	snprintf(want, sizeof(want), "%s: cannot read", f->dir);
	struct token_keys *k = token_keys_new();
	assert_rc(token_keys_load(k, f->dir, f->err, sizeof(f->err)), DRIP_EIO);
	assert_contains(f->err, want);
	token_keys_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_kind_round_trips_in_both_encodings_at_edge_ids),
		cmocka_unit_test(test_the_format_is_the_documented_one),
		cmocka_unit_test(test_many_signatures_in_a_row_match_a_fresh_hmac_each),
		cmocka_unit_test(test_threads_sign_and_verify_with_one_key_set),
		cmocka_unit_test(test_text_after_len_is_not_read),
		cmocka_unit_test(
			test_old_token_verifies_after_rotation_and_fails_once_its_key_is_gone),
		cmocka_unit_test(test_token_from_another_secret_is_refused),
		cmocka_unit_test(test_empty_key_set_signs_and_verifies_nothing),
		cmocka_unit_test(test_short_and_huge_secrets_are_refused),
		cmocka_unit_test(
			test_sign_refuses_negative_touch_unknown_kind_stray_link_and_small_buffer),
		cmocka_unit_test(test_every_single_character_change_is_refused),
		cmocka_unit_test(test_every_truncation_is_refused),
		cmocka_unit_test(test_trailing_garbage_is_refused),
		cmocka_unit_test(test_url_token_is_refused_as_address_and_vice_versa),
		cmocka_unit_test(
			test_upper_cased_address_token_verifies_but_upper_cased_url_token_does_not),
		cmocka_unit_test(
			test_bad_version_kind_varints_and_trailing_bytes_are_refused_even_when_signed),
		cmocka_unit_test(test_tokens_use_only_their_alphabet),
		cmocka_unit_test(test_tokens_for_small_touch_ids_are_short),
		cmocka_unit_test(test_random_bytes_never_verify_and_never_crash),
		cmocka_unit_test_setup_teardown(
			test_load_reads_two_secrets_newest_first_and_the_first_signs, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_load_tolerates_blank_lines_crlf_and_trailing_spaces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_names_the_line_of_a_short_secret, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_load_refuses_an_empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_refuses_a_missing_file_naming_it, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
