/* util.c - allocation wrappers, the growable buffer and small helpers shared by every module. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "dripd/util.h"

static void util_oom(void)
{
	/* Deliberately no logging machinery here: it might allocate. */
	fputs("<2>dripd: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		util_oom();
	return p;
}

void *xcalloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (!p)
		util_oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		util_oom();
	return p;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	struct buf b;
	va_list ap;
	buf_init(&b);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return buf_steal(&b);
}

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_add(struct buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_addc(struct buf *b, char c)
{
	if (b->len + 1 < b->cap) {
		b->data[b->len++] = c;
		b->data[b->len] = '\0';
		return;
	}
	buf_add(b, &c, 1);
}

int util_hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void buf_add_html(struct buf *b, const char *s)
{
	for (; *s; s++) {
		/* The text between two characters that need an entity, in one piece. */
		size_t n = strcspn(s, "<>&\"'");
		if (n) {
			buf_add(b, s, n);
			s += n;
			if (!*s)
				break;
		}
		switch (*s) {
		case '<':
			buf_adds(b, "&lt;");
			break;
		case '>':
			buf_adds(b, "&gt;");
			break;
		case '&':
			buf_adds(b, "&amp;");
			break;
		case '"':
			buf_adds(b, "&quot;");
			break;
		case '\'':
			buf_adds(b, "&#39;");
			break;
		default:
			buf_addc(b, *s);
		}
	}
}

void buf_add_page_start(struct buf *b, const char *title, const char *para)
{
	buf_adds(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
		    "<meta name=\"robots\" content=\"noindex\"><title>");
	buf_add_html(b, title);
	buf_adds(b, "</title><style>body{font:16px/1.5 system-ui,sans-serif;color:#222;"
		    "background:#f6f6f4;margin:0}main{max-width:32em;margin:12vh auto;"
		    "background:#fff;padding:2em 2.5em;border-radius:8px;"
		    "box-shadow:0 1px 4px rgba(0,0,0,.08)}h1{font-size:1.4em;margin-top:0}"
		    "button{font:inherit;padding:.6em 1.4em;border:0;border-radius:6px;"
		    "background:#1f5f8b;color:#fff;cursor:pointer}button:hover{background:#174a6d}"
		    "</style></head><body><main><h1>");
	buf_add_html(b, title);
	buf_adds(b, "</h1><p>");
	buf_add_html(b, para);
}

void buf_add_page_end(struct buf *b)
{
	buf_adds(b, "</main></body></html>\n");
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	/* Formatted once into the room there is (some is made first), a second time only when
	 * it did not fit. */
	va_list ap2;
	buf_reserve(b, 63); /* room for a short string */
	va_copy(ap2, ap);
	int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
	va_end(ap2);
	if (n < 0) {
		b->data[b->len] = '\0';
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		buf_reserve(b, (size_t)n);
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	}
	b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

char *buf_steal(struct buf *b)
{
	char *p = b->data ? b->data : xstrdup("");
	buf_init(b);
	return p;
}

int errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

static void util_getrandom(void *out, size_t n)
{
	unsigned char *p = out;
	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			fputs("<2>dripd: getrandom failed\n", stderr);
			abort();
		}
		p += got;
		n -= (size_t)got;
	}
}

/*
 * Small requests are served from a per-thread pool refilled 256 bytes at a time: composing a
 * message asks three times (Message-ID, MIME boundary, placeholder nonce) and each system
 * call was a measurable cost on the loop thread. Bytes handed out are wiped from the pool. A
 * forked child starts with an empty pool, so it never repeats its parent's bytes.
 */
#define UTIL_POOL 256
static _Thread_local unsigned char util_pool[UTIL_POOL];
static _Thread_local size_t util_pool_left; /* unused bytes at the end of util_pool */
static pthread_once_t util_pool_once = PTHREAD_ONCE_INIT;

static void util_pool_after_fork(void)
{
	memset(util_pool, 0, sizeof(util_pool));
	util_pool_left = 0;
}

static void util_pool_init(void)
{
	pthread_atfork(NULL, NULL, util_pool_after_fork);
}

void util_random(void *out, size_t n)
{
	if (n > UTIL_POOL / 4) {
		util_getrandom(out, n);
		return;
	}
	pthread_once(&util_pool_once, util_pool_init);
	if (util_pool_left < n) {
		util_getrandom(util_pool, UTIL_POOL);
		util_pool_left = UTIL_POOL;
	}
	unsigned char *from = util_pool + UTIL_POOL - util_pool_left;
	memcpy(out, from, n);
	memset(from, 0, n);
	util_pool_left -= n;
}

void util_random_hex(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[64];
	while (n > 0) {
		size_t chunk = n < sizeof(raw) ? n : sizeof(raw);
		util_random(raw, chunk);
		for (size_t i = 0; i < chunk; i++) {
			*out++ = hex[raw[i] >> 4];
			*out++ = hex[raw[i] & 15];
		}
		n -= chunk;
	}
	*out = '\0';
}

uint64_t util_fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

bool util_email_valid(const char *s)
{
	const char *at = strrchr(s, '@');
	size_t len = strlen(s);
	if (!at || at == s || at[1] == '\0' || len > 254 || (size_t)(at - s) > 64)
		return false;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c == 0x7f || strchr("<>()[]\\,;:\"", c))
			return false;
		if (c == '@' && p != at)
			return false;
	}
	const char *dot = strchr(at + 1, '.');
	if (!dot || dot == at + 1 || dot[1] == '\0' || s[len - 1] == '.')
		return false;
	return true;
}

bool util_cidr_parse(const char *s, struct util_cidr *out)
{
	struct util_cidr c = { 0 };
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, c.addr) == 1)
		c.family = AF_INET;
	else if (inet_pton(AF_INET6, host, c.addr) == 1)
		c.family = AF_INET6;
	else
		return false;
	int max = c.family == AF_INET ? 32 : 128;
	c.prefix = max;
	if (slash) {
		const char *p = slash + 1;
		int v = 0;
		if (!*p || strlen(p) > 3)
			return false;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return false;
			v = v * 10 + (*p - '0');
		}
		if (v > max)
			return false;
		c.prefix = v;
	}
	if (out)
		*out = c;
	return true;
}

bool util_cidr_contains(const struct util_cidr *c, int family, const uint8_t *addr)
{
	if (family != c->family)
		return false;
	int full = c->prefix / 8, rest = c->prefix % 8;
	if (memcmp(c->addr, addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (c->addr[full] & mask) == (addr[full] & mask);
}
