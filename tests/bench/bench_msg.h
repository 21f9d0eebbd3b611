/* bench_msg.h - the message the reference senders of the delivery benchmark send. */
#ifndef DRIPD_BENCH_MSG_H
#define DRIPD_BENCH_MSG_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A plain RFC 5322 message of exactly `size` bytes: a few headers, then 76-column lines. */
static inline char *make_message(size_t size, size_t *len)
{
	static const char head[] = "From: Bench <bench@example.com>\r\n"
				   "To: <sink@example.org>\r\n"
				   "Subject: curl_ref benchmark message\r\n"
				   "Message-ID: <curl-ref@example.com>\r\n"
				   "MIME-Version: 1.0\r\n"
				   "Content-Type: text/plain; charset=us-ascii\r\n"
				   "\r\n";
	size_t hl = sizeof(head) - 1;
	if (size < hl + 2)
		size = hl + 2;
	char *m = malloc(size + 1);
	if (!m)
		exit(1);
	memcpy(m, head, hl);
	for (size_t i = hl; i < size; i++) {
		size_t col = (i - hl) % 78;
		m[i] = col == 76 ? '\r' : col == 77 ? '\n' : (char)('a' + (i % 26));
	}
	/* The last line ends with CRLF and no lone CR comes just before it. */
	if (m[size - 3] == '\r')
		m[size - 3] = 'x';
	m[size - 2] = '\r';
	m[size - 1] = '\n';
	m[size] = '\0';
	*len = size;
	return m;
}

#endif
