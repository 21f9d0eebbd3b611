/* json.c - comment stripping, positions and duplicate-key checks around cJSON. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/clock.h"
#include "dripd/error.h"
#include "dripd/json.h"
#include "dripd/util.h"

/*
 * DESIGN. Comments are blanked out in a copy of the text (newlines kept) so offsets stay
 * true; cJSON parses the copy; then json_scan walks the same text in the same pre-order as
 * the cJSON tree and records each value's offset (its key's offset for members). Pairing the
 * two walks gives every cJSON item a line, kept in an array sorted by item address.
 */

struct json_pos {
	const cJSON *item;
	int line;
};

struct json_doc {
	char *file;
	cJSON *root;
	struct json_pos *pos;
	size_t npos;
};

/* The line of byte `off` of `text` (`len` bytes; an offset past the end is the last line). */
static int json_line_of(const char *text, size_t len, size_t off)
{
	int line = 1;
	for (size_t i = 0; i < off && i < len; i++)
		if (text[i] == '\n')
			line++;
	return line;
}

/* Blanks // and block comments outside strings. Returns the offset of an unclosed one, or -1. */
static long json_strip_comments(char *s, size_t len)
{
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		if (in_string) {
			if (s[i] == '\\' && i + 1 < len)
				i++;
			else if (s[i] == '"')
				in_string = false;
			continue;
		}
		if (s[i] == '"') {
			in_string = true;
		} else if (s[i] == '/' && i + 1 < len && s[i + 1] == '/') {
			while (i < len && s[i] != '\n')
				s[i++] = ' ';
		} else if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
			size_t start = i;
			s[i++] = ' ';
			s[i++] = ' ';
			while (i < len && !(s[i] == '*' && i + 1 < len && s[i + 1] == '/')) {
				if (s[i] != '\n')
					s[i] = ' ';
				i++;
			}
			if (i >= len)
				return (long)start;
			s[i++] = ' ';
			s[i] = ' ';
		}
	}
	return -1;
}

struct json_scan {
	const char *s;
	size_t len, i;
	size_t *offs;
	size_t noffs, cap;
};

static void json_scan_ws(struct json_scan *sc)
{
	/* cJSON skips every byte up to 32 as white space (control bytes too), and this walk
	 * must see the same tokens as cJSON did: a \x17 between two tokens put it out of step. */
	while (sc->i < sc->len && (unsigned char)sc->s[sc->i] <= 32 && sc->s[sc->i])
		sc->i++;
}

static void json_scan_record(struct json_scan *sc, size_t off)
{
	if (sc->noffs == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 64;
		sc->offs = xrealloc(sc->offs, sc->cap * sizeof(*sc->offs));
	}
	sc->offs[sc->noffs++] = off;
}

static void json_scan_string(struct json_scan *sc)
{
	sc->i++; /* opening quote */
	while (sc->i < sc->len && sc->s[sc->i] != '"') {
		if (sc->s[sc->i] == '\\')
			sc->i++;
		sc->i++;
	}
	sc->i++;
}

/* The text already parsed with cJSON, so this walk can trust its shape. */
static void json_scan_value(struct json_scan *sc, size_t record_at, int depth)
{
	json_scan_ws(sc);
	json_scan_record(sc, record_at == (size_t)-1 ? sc->i : record_at);
	if (sc->i >= sc->len || depth > 1000)
		return;
	char c = sc->s[sc->i];
	if (c == '{' || c == '[') {
		char close = c == '{' ? '}' : ']';
		sc->i++;
		json_scan_ws(sc);
		if (sc->i < sc->len && sc->s[sc->i] == close) {
			sc->i++;
			return;
		}
		while (sc->i < sc->len) {
			size_t at = (size_t)-1;
			json_scan_ws(sc);
			if (c == '{') {
				at = sc->i;
				json_scan_string(sc);
				json_scan_ws(sc);
				sc->i++; /* ':' */
			}
			json_scan_value(sc, at, depth + 1);
			json_scan_ws(sc);
			if (sc->i < sc->len && sc->s[sc->i] == ',') {
				sc->i++;
				continue;
			}
			sc->i++; /* close */
			return;
		}
	} else if (c == '"') {
		json_scan_string(sc);
	} else {
		while (sc->i < sc->len && (unsigned char)sc->s[sc->i] > 32 &&
		       !strchr(",]}", sc->s[sc->i]))
			sc->i++;
	}
}

static int json_pos_cmp(const void *a, const void *b)
{
	const struct json_pos *x = a, *y = b;
	return x->item < y->item ? -1 : x->item > y->item;
}

/* Pairs the pre-order walk of the tree with the scanned offsets; checks duplicate keys. */
static int json_pair(struct json_doc *d, const cJSON *item, const char *text,
		     const struct json_scan *sc, size_t *k, char *err, size_t errlen)
{
	if (*k >= sc->noffs)
		return errf(err, errlen, DRIP_EINVALID, "%s: internal error pairing JSON", d->file);
	d->pos[d->npos].item = item;
	d->pos[d->npos].line = json_line_of(text, sc->len, sc->offs[*k]);
	d->npos++;
	(*k)++;
	for (const cJSON *child = item->child; child; child = child->next) {
		if (cJSON_IsObject(item)) {
			for (const cJSON *prev = item->child; prev != child; prev = prev->next) {
				if (strcmp(prev->string, child->string) == 0)
					return errf(err, errlen, DRIP_EINVALID,
						    "%s:%d: duplicate key \"%s\"", d->file,
						    json_line_of(text, sc->len,
								 *k < sc->noffs ? sc->offs[*k]
										: sc->len),
						    child->string);
			}
		}
		int rc = json_pair(d, child, text, sc, k, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

static size_t json_count(const cJSON *item)
{
	size_t n = 1;
	for (const cJSON *c = item->child; c; c = c->next)
		n += json_count(c);
	return n;
}

struct json_doc *json_doc_parse(const char *file, const char *text, size_t len, char *err,
				size_t errlen)
{
	struct json_doc *d = xcalloc(1, sizeof(*d));
	struct json_scan sc = { 0 };
	char *copy = xstrndup(text, len);
	const char *end = NULL;
	size_t k = 0;
	long open;

	d->file = xstrdup(file);
	if (memchr(text, '\0', len)) {
		errf(err, errlen, DRIP_EINVALID, "%s:%d: NUL byte in JSON", file,
		     json_line_of(text, len,
				  (size_t)((const char *)memchr(text, '\0', len) - text)));
		goto fail;
	}
	if ((open = json_strip_comments(copy, len)) >= 0) {
		errf(err, errlen, DRIP_EINVALID, "%s:%d: comment is never closed", file,
		     json_line_of(text, len, (size_t)open));
		goto fail;
	}
	d->root = cJSON_ParseWithLengthOpts(copy, len, &end, false);
	if (!d->root) {
		size_t off = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : len;
		errf(err, errlen, DRIP_EINVALID, "%s:%d: invalid JSON near \"%.20s\"", file,
		     json_line_of(text, len, off), off < len ? copy + off : "end of file");
		goto fail;
	}
	sc.s = copy;
	sc.len = len;
	json_scan_value(&sc, (size_t)-1, 0);
	json_scan_ws(&sc);
	if (sc.i < len) {
		errf(err, errlen, DRIP_EINVALID, "%s:%d: unexpected text after the JSON value",
		     file, json_line_of(text, len, sc.i));
		goto fail;
	}
	d->pos = xcalloc(json_count(d->root), sizeof(*d->pos));
	if (json_pair(d, d->root, text, &sc, &k, err, errlen))
		goto fail;
	qsort(d->pos, d->npos, sizeof(*d->pos), json_pos_cmp);
	free(sc.offs);
	free(copy);
	return d;
fail:
	free(sc.offs);
	free(copy);
	json_doc_free(d);
	return NULL;
}

struct json_doc *json_doc_load(const char *file, char *err, size_t errlen)
{
	struct buf b;
	char chunk[8192];
	size_t n;
	FILE *f = fopen(file, "rb");
	if (!f) {
		errf(err, errlen, DRIP_EIO, "%s: cannot read: %s", file, strerror(errno));
		return NULL;
	}
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	if (ferror(f)) {
		errf(err, errlen, DRIP_EIO, "%s: cannot read: %s", file, strerror(errno));
		fclose(f);
		buf_free(&b);
		return NULL;
	}
	fclose(f);
	struct json_doc *d = json_doc_parse(file, b.data ? b.data : "", b.len, err, errlen);
	buf_free(&b);
	return d;
}

void json_doc_free(struct json_doc *d)
{
	if (!d)
		return;
	cJSON_Delete(d->root);
	free(d->pos);
	free(d->file);
	free(d);
}

const cJSON *json_doc_root(const struct json_doc *d)
{
	return d->root;
}

const char *json_doc_file(const struct json_doc *d)
{
	return d->file;
}

int json_doc_line(const struct json_doc *d, const cJSON *item)
{
	struct json_pos key = { .item = item };
	const struct json_pos *p = bsearch(&key, d->pos, d->npos, sizeof(*d->pos), json_pos_cmp);
	return p ? p->line : 0;
}

int json_string_index(const cJSON *array, const char *s)
{
	const cJSON *e;
	int i = 0;
	cJSON_ArrayForEach(e, array)
	{
		if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0)
			return i;
		i++;
	}
	return -1;
}

int json_errf(const struct json_doc *d, const cJSON *item, char *err, size_t errlen,
	      const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return errf(err, errlen, DRIP_EINVALID, "%s:%d: %s", d->file, json_doc_line(d, item), msg);
}

int json_check_object(const struct json_doc *d, const cJSON *obj, const char *what,
		      const char *const *allowed, char *err, size_t errlen)
{
	if (!cJSON_IsObject(obj))
		return json_errf(d, obj, err, errlen, "%s must be an object", what);
	for (const cJSON *c = obj->child; c; c = c->next) {
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = strcmp(*a, c->string) == 0;
		if (!known)
			return json_errf(d, c, err, errlen, "%s: unknown key \"%s\"", what,
					 c->string);
	}
	return 0;
}

int json_get_string(const struct json_doc *d, const cJSON *obj, const char *key, bool required,
		    const char **out, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v) {
		if (required)
			return json_errf(d, obj, err, errlen, "missing \"%s\"", key);
		return 0;
	}
	if (!cJSON_IsString(v))
		return json_errf(d, v, err, errlen, "\"%s\" must be a string", key);
	*out = v->valuestring;
	return 0;
}

int json_get_number(const struct json_doc *d, const cJSON *obj, const char *key, double min,
		    double max, double *out, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max)
		return json_errf(d, v, err, errlen, "\"%s\" must be a number from %g to %g", key,
				 min, max);
	*out = v->valuedouble;
	return 0;
}

int json_get_int(const struct json_doc *d, const cJSON *obj, const char *key, int64_t min,
		 int64_t max, int64_t *out, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return 0;
	/* Range first: casting a double outside int64 (1e300, 2^63) to int64_t is undefined. */
	if (!cJSON_IsNumber(v) || v->valuedouble < (double)min || v->valuedouble > (double)max ||
	    v->valuedouble >= 0x1p63 || v->valuedouble != (double)(int64_t)v->valuedouble)
		return json_errf(d, v, err, errlen,
				 "\"%s\" must be a whole number from %lld to %lld", key,
				 (long long)min, (long long)max);
	*out = (int64_t)v->valuedouble;
	return 0;
}

int json_get_bool(const struct json_doc *d, const cJSON *obj, const char *key, bool *out, char *err,
		  size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return json_errf(d, v, err, errlen, "\"%s\" must be true or false", key);
	*out = cJSON_IsTrue(v);
	return 0;
}

int json_get_duration(const struct json_doc *d, const cJSON *obj, const char *key, int64_t *out,
		      char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return 0;
	if (!cJSON_IsString(v) || clock_parse_duration(v->valuestring, out) != 0)
		return json_errf(d, v, err, errlen,
				 "\"%s\" must be a duration such as \"30s\", \"15m\", \"12h\", "
				 "\"3d\" or \"2w\"",
				 key);
	return 0;
}
