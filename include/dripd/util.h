/* util.h - allocation that aborts on exhaustion, a growable byte buffer, small string helpers. */
#ifndef DRIPD_UTIL_H
#define DRIPD_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Out of memory aborts: a daemon that cannot allocate a few hundred bytes cannot keep its
 * promises either, and systemd restarts it; callers never check these for NULL.
 */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable buffer, always NUL-terminated after `len` bytes once anything was added. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
/* Appends s with < > & " ' written as HTML entities (safe in text and quoted attributes). */
void buf_add_html(struct buf *b, const char *s);
/* A small page of dripd's own (signup confirmation, unsubscribe): the head with its style,
 * then "<main><h1>title</h1><p>para", title and para escaped, the paragraph left open for
 * the caller to add to and close; buf_add_page_end closes the page. */
void buf_add_page_start(struct buf *b, const char *title, const char *para);
void buf_add_page_end(struct buf *b);
/* The value of a hexadecimal digit (either case), or -1. */
int util_hex_value(int c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Hands the contents to the caller (never NULL) and leaves `b` empty. */
char *buf_steal(struct buf *b);

/* Formats into err (if not NULL) and returns `code`; the usual way to fill an error buffer. */
int errf(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Fills `out` with `n` random bytes from the kernel (small requests through a per-thread
 * pool, emptied in a forked child); aborts if the kernel cannot supply them. */
void util_random(void *out, size_t n);
/* Lower-case hex of `n` random bytes into out (2n+1 bytes). */
void util_random_hex(char *out, size_t n);

/*
 * FNV-1a, 64 bits: a stable, cheap hash for choices that must not change across restarts
 * (a lead's variant, its jitter). Start from UTIL_FNV1A_SEED; feed pieces in turn.
 */
#define UTIL_FNV1A_SEED 1469598103934665603ULL
uint64_t util_fnv1a(uint64_t h, const void *data, size_t len);

/* Whether `s` is a plausible mailbox address (local@domain, no spaces, controls or brackets). */
bool util_email_valid(const char *s);

/* An IPv4 or IPv6 network: an address and how many leading bits count. */
struct util_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	int prefix;
};
/*
 * Parses "192.0.2.1", "10.0.0.0/8", "::1" or "2001:db8::/32" into *out (which may be NULL to
 * only check). False for anything else, a prefix longer than the family allows included.
 */
bool util_cidr_parse(const char *s, struct util_cidr *out);
/* Whether the address `addr` (4 or 16 bytes of `family`) lies in the network. */
bool util_cidr_contains(const struct util_cidr *c, int family, const uint8_t *addr);

#endif
