/* fuzz_message.c - message building with hostile names, subjects and bodies: no new header, no
 * bare CR or LF, no line over 998 octets, and a body line "." never ends the transfer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/message.h"
#include "dripd/util.h"
#include "fuzz.h"

/* The header names the builder writes; any other header line is an injection. */
static const char *const fuzz_headers[] = { "Date",
					    "From",
					    "To",
					    "Subject",
					    "Message-ID",
					    "Reply-To",
					    "In-Reply-To",
					    "References",
					    "List-Unsubscribe",
					    "List-Unsubscribe-Post",
					    "MIME-Version",
					    "Content-Type",
					    "Content-Transfer-Encoding",
					    NULL };

static void fuzz_check(const struct buf *b)
{
	const char *s = b->data, *end = s + b->len;
	int counts[sizeof(fuzz_headers) / sizeof(fuzz_headers[0])] = { 0 };
	bool in_headers = true;
	while (s < end) {
		const char *eol = memchr(s, '\n', (size_t)(end - s));
		FUZZ_ASSERT(eol != NULL, "the message does not end in CRLF");
		FUZZ_ASSERT(eol > s && eol[-1] == '\r', "bare LF at offset %zu",
			    (size_t)(eol - b->data));
		size_t len = (size_t)(eol - 1 - s);
		FUZZ_ASSERT(memchr(s, '\r', len) == NULL, "bare CR in a line");
		FUZZ_ASSERT(len <= 998, "a line of %zu octets", len);
		FUZZ_ASSERT(!(len == 1 && s[0] == '.'), "a line with a lone dot");
		if (in_headers) {
			if (len == 0) {
				in_headers = false;
			} else if (s[0] != ' ' && s[0] != '\t') {
				const char *colon = memchr(s, ':', len);
				FUZZ_ASSERT(colon != NULL, "a header line without a colon: %.*s",
					    (int)len, s);
				size_t i;
				for (i = 0; fuzz_headers[i]; i++)
					if (strlen(fuzz_headers[i]) == (size_t)(colon - s) &&
					    memcmp(fuzz_headers[i], s, (size_t)(colon - s)) == 0)
						break;
				FUZZ_ASSERT(fuzz_headers[i] != NULL, "an unknown header: %.*s",
					    (int)len, s);
				counts[i]++;
				FUZZ_ASSERT(counts[i] == 1, "header %s twice", fuzz_headers[i]);
			}
		}
		s = eol + 1;
	}
	FUZZ_ASSERT(!in_headers, "no end of the header block");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p[6];
	fuzz_split(data, size, p, 6);
	char err[512];
	struct message_spec m = {
		.from = *p[0] ? p[0] : "Ana Ruiz <ana@example.com>",
		.to_name = p[1],
		.to_addr = *p[2] ? p[2] : "lead@example.org",
		.subject = p[3],
		.message_id = "<t1.0123456789ab@example.com>",
		.reply_to = "reply+abc@example.com",
		.in_reply_to = p[4],
		.references = p[4],
		.unsubscribe_url = "https://t.example.com/u/abc",
		.unsubscribe_mailto = "mailto:unsubscribe@example.com",
		.date = 1795000000,
		.text = p[5],
		.html = size & 1 ? p[5] : NULL,
	};
	struct buf out;
	buf_init(&out);
	if (message_build(&m, &out, err, sizeof(err)) == 0) {
		fuzz_check(&out);
		/* The envelope address is the one the To header names, and no other. */
		char addr[256];
		FUZZ_ASSERT(message_address(m.to_addr, addr, sizeof(addr)) == 0, "To unusable");
		FUZZ_ASSERT(util_email_valid(addr), "an invalid recipient passed: %s", addr);
	}
	buf_free(&out);
	fuzz_free_parts(p, 6);
	return 0;
}
