/* fuzz_token.c - token verification: any input is refused or canonical; a mutated token never passes. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/token.h"
#include "fuzz.h"

static struct token_keys *fuzz_keys;

static void fuzz_token_init(void)
{
	char err[256];
	fuzz_keys = token_keys_new();
	if (token_keys_add(fuzz_keys, "fuzz-secret-newest-0123456789", 29, err, sizeof(err)) ||
	    token_keys_add(fuzz_keys, "fuzz-secret-older-9876543210", 28, err, sizeof(err)))
		abort();
}

static uint64_t fuzz_u64(const uint8_t **p, size_t *n)
{
	uint64_t v = 0;
	for (int i = 0; i < 8 && *n; i++, (*p)++, (*n)--)
		v = v << 8 | **p;
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum token_kind kinds[] = { TOKEN_OPEN,  TOKEN_CLICK,  TOKEN_UNSUBSCRIBE,
						 TOKEN_REPLY, TOKEN_BOUNCE, TOKEN_CONFIRM };
	if (!fuzz_keys)
		fuzz_token_init();

	/* 1. The input as a token, in both encodings: refused, or the one spelling of its claims. */
	for (int e = 0; e < 2; e++) {
		enum token_encoding enc = e ? TOKEN_ADDRESS : TOKEN_URL;
		struct token_claims c;
		if (token_verify(fuzz_keys, (const char *)data, size, enc, &c) == 0) {
			char again[TOKEN_MAX_LEN];
			size_t n = token_sign(fuzz_keys, &c, enc, again, sizeof(again));
			FUZZ_ASSERT(n == size, "accepted a token of %zu bytes, canonical is %zu",
				    size, n);
			for (size_t i = 0; i < n; i++)
				FUZZ_ASSERT(tolower((unsigned char)again[i]) ==
						    tolower((unsigned char)data[i]),
					    "accepted a non-canonical spelling at %zu", i);
		}
	}

	/* 2. Claims from the input, signed, then one byte changed: never accepted. */
	const uint8_t *p = data;
	size_t n = size;
	if (n < 3)
		return 0;
	struct token_claims c = { .kind = kinds[p[0] % 6] };
	enum token_encoding enc = p[1] & 1 ? TOKEN_ADDRESS : TOKEN_URL;
	uint8_t flip = p[2];
	p += 3;
	n -= 3;
	c.touch_id = (int64_t)(fuzz_u64(&p, &n) >> 1);
	if (c.kind == TOKEN_CLICK)
		c.link = (uint32_t)fuzz_u64(&p, &n);
	char tok[TOKEN_MAX_LEN];
	size_t len = token_sign(fuzz_keys, &c, enc, tok, sizeof(tok));
	FUZZ_ASSERT(len > 0, "cannot sign touch %lld", (long long)c.touch_id);
	struct token_claims got;
	FUZZ_ASSERT(token_verify(fuzz_keys, tok, len, enc, &got) == 0, "own token refused: %s",
		    tok);
	FUZZ_ASSERT(got.kind == c.kind && got.touch_id == c.touch_id && got.link == c.link,
		    "claims changed on the way: %s", tok);
	size_t at = n ? fuzz_u64(&p, &n) % len : 0;
	uint8_t x = flip ? flip : 1;
	char orig = tok[at];
	tok[at] = (char)(tok[at] ^ x);
	bool same = tolower((unsigned char)tok[at]) == tolower((unsigned char)orig);
	if (!(enc == TOKEN_ADDRESS && same))
		FUZZ_ASSERT(token_verify(fuzz_keys, tok, len, enc, &got) != 0,
			    "accepted a token with byte %zu changed (^%02x)", at, x);
	/* A token cut short or with a byte added is refused too. */
	tok[at] = orig;
	FUZZ_ASSERT(token_verify(fuzz_keys, tok, len - 1, enc, &got) != 0, "accepted a cut token");
	return 0;
}
