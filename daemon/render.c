/* render.c - Markdown to HTML and text with cmark, then merge fields, escaped per output. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <cmark.h>

#include "dripd/error.h"
#include "dripd/json.h"
#include "dripd/render.h"
#include "dripd/util.h"

/*
 * DESIGN. A template's merge fields are first replaced by placeholders made only of
 * letters and digits ("DRIPDMF<nonce>7Z"), which cmark passes through untouched in text, code and
 * link targets. The Markdown is then parsed once; link targets get their placeholders
 * replaced by percent-encoded values on the tree, so cmark's own URL escaping and
 * safe-URL rules apply to the result; the HTML renderer runs, and remaining placeholders
 * are replaced by HTML-escaped values. The text alternative is a small recursive walk of
 * the same tree (cmark has no plain-text renderer), with values put in verbatim.
 */

/*
 * The parsed Markdown of a body is kept for the next message: every lead of a step whose
 * sections resolve alike gives cmark the same text (merge fields are placeholders by then,
 * under a nonce that lasts as long as the process), and parsing it was half of rendering a
 * message. An entry is found by that whole text, never by a pointer, so a content reload
 * cannot hand out a stale tree. Each message sets its own link targets on the tree before
 * rendering (every link and image is set, so nothing of the previous message remains);
 * the targets as written are kept in the entry. One cache per thread: render runs on the
 * loop, and the unit tests call it directly.
 */
#define RENDER_CACHE 8

struct render_link {
	cmark_node *node;
	char *url; /* as the template wrote it, placeholders and all */
	char *title;
};

struct render_doc {
	char *key; /* the Markdown given to cmark */
	size_t keylen;
	cmark_node *doc;
	struct render_link *links; /* links and images, in document order */
	size_t nlinks;
	uint64_t used; /* for eviction: the least recently used goes */
};

static _Thread_local struct render_doc render_cache[RENDER_CACHE];
static _Thread_local uint64_t render_clock;

static void render_doc_free(struct render_doc *d)
{
	for (size_t i = 0; i < d->nlinks; i++) {
		free(d->links[i].url);
		free(d->links[i].title);
	}
	free(d->links);
	if (d->doc)
		cmark_node_free(d->doc);
	free(d->key);
	memset(d, 0, sizeof(*d));
}

void render_cache_clear(void)
{
	for (size_t i = 0; i < RENDER_CACHE; i++)
		render_doc_free(&render_cache[i]);
}

/* The parsed tree of `md` (len bytes), from the cache or parsed now. */
static struct render_doc *render_parse(const char *md, size_t len)
{
	struct render_doc *d = &render_cache[0];
	for (size_t i = 0; i < RENDER_CACHE; i++) {
		struct render_doc *e = &render_cache[i];
		if (e->key && e->keylen == len && memcmp(e->key, md, len) == 0) {
			e->used = ++render_clock;
			return e;
		}
		if (e->used < d->used)
			d = e;
	}
	render_doc_free(d);
	d->key = xstrndup(md, len);
	d->keylen = len;
	d->doc = cmark_parse_document(md, len, CMARK_OPT_DEFAULT);
	size_t cap = 0;
	cmark_iter *it = cmark_iter_new(d->doc);
	cmark_event_type ev;
	while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
		cmark_node *n = cmark_iter_get_node(it);
		cmark_node_type t = cmark_node_get_type(n);
		if (ev != CMARK_EVENT_ENTER || (t != CMARK_NODE_LINK && t != CMARK_NODE_IMAGE))
			continue;
		if (d->nlinks == cap) {
			cap = cap ? 2 * cap : 8;
			d->links = xrealloc(d->links, cap * sizeof(*d->links));
		}
		const char *url = cmark_node_get_url(n), *title = cmark_node_get_title(n);
		d->links[d->nlinks++] = (struct render_link){ n, xstrdup(url ? url : ""),
							      xstrdup(title ? title : "") };
	}
	cmark_iter_free(it);
	d->used = ++render_clock;
	return d;
}

#define RENDER_PH "DRIPDMF"
#define RENDER_MAX_FIELDS 512

static const char *const render_lead_fields[] = { "first_name", "last_name", "email", "company",
						  "title",      "stage",     NULL };

struct render_field {
	char *name;
	char *fallback; /* NULL without a '|' */
};

/* Parses "{{ name | fallback }}" starting at s (which points at "{{"); returns the end. */
static const char *render_parse_field(const char *s, struct render_field *f, char *msg,
				      size_t msglen)
{
	const char *p = s + 2, *end = strstr(p, "}}");
	const char *nl = strchr(p, '\n');
	if (!end || (nl && nl < end)) {
		errf(msg, msglen, DRIP_EINVALID, "\"{{\" is not closed by \"}}\" on the same line");
		return NULL;
	}
	while (*p == ' ')
		p++;
	const char *n0 = p;
	while (p < end &&
	       (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", *p)))
		p++;
	const char *n1 = p;
	while (*p == ' ' && p < end)
		p++;
	if (n1 == n0 || (p < end && *p != '|')) {
		errf(msg, msglen, DRIP_EINVALID, "malformed merge field \"%.*s\"",
		     (int)(end + 2 - s), s);
		return NULL;
	}
	char *name = xstrndup(n0, (size_t)(n1 - n0));
	bool known = strncmp(name, "attrs.", 6) == 0 && name[6] != '\0';
	for (const char *const *k = render_lead_fields; *k && !known; k++)
		known = strcmp(*k, name) == 0;
	if (!known) {
		errf(msg, msglen, DRIP_EINVALID,
		     "unknown merge field \"%s\" (known: first_name, last_name, email, company, "
		     "title, stage, attrs.KEY)",
		     name);
		free(name);
		return NULL;
	}
	if (f) {
		f->name = name;
		f->fallback = NULL;
		if (p < end) {
			const char *v0 = p + 1, *v1 = end;
			while (v0 < v1 && *v0 == ' ')
				v0++;
			while (v1 > v0 && v1[-1] == ' ')
				v1--;
			f->fallback = xstrndup(v0, (size_t)(v1 - v0));
		}
	} else {
		free(name);
	}
	return end + 2;
}

/*
 * Sections: {{#if FIELD}}…{{/if}} shows its text when the field is not empty, {{#tag TAG}}…
 * {{/tag}} when the lead has the tag; {{^if …}} and {{^tag …}} show it in the opposite case.
 * They nest. A section decides which of the author's text is kept before any Markdown is
 * rendered; lead data never decides what is markup.
 */
#define RENDER_MAX_DEPTH 16

struct render_section {
	bool on_tag; /* "tag", else "if" */
	bool inverted; /* '^' */
	char *arg; /* the field or the tag */
};

/* Parses "{{#if NAME}}", "{{^tag NAME}}" or "{{/if}}" at s; NULL with msg when malformed. */
static const char *render_parse_section(const char *s, struct render_section *sec, bool *close,
					char *msg, size_t msglen)
{
	const char *end = strstr(s, "}}"), *nl = strchr(s, '\n');
	char word[8];
	size_t n;
	memset(sec, 0, sizeof(*sec));
	if (!end || (nl && nl < end)) {
		errf(msg, msglen, DRIP_EINVALID, "\"{{\" is not closed by \"}}\" on the same line");
		return NULL;
	}
	*close = s[2] == '/';
	sec->inverted = s[2] == '^';
	const char *p = s + 3;
	n = strspn(p, "abcdefghijklmnopqrstuvwxyz");
	if (n == 0 || n >= sizeof(word))
		goto bad;
	memcpy(word, p, n);
	word[n] = '\0';
	p += n;
	if (strcmp(word, "if") == 0)
		sec->on_tag = false;
	else if (strcmp(word, "tag") == 0)
		sec->on_tag = true;
	else
		goto bad;
	if (*close)
		return p == end ? end + 2
				: (errf(msg, msglen, DRIP_EINVALID,
					"malformed section end \"%.*s\"", (int)(end + 2 - s), s),
				   NULL);
	if (*p != ' ')
		goto bad;
	while (*p == ' ')
		p++;
	const char *a0 = p;
	while (p < end &&
	       strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", *p))
		p++;
	const char *a1 = p;
	while (p < end && *p == ' ')
		p++;
	if (a1 == a0 || p != end)
		goto bad;
	sec->arg = xstrndup(a0, (size_t)(a1 - a0));
	if (!sec->on_tag) {
		bool known = strncmp(sec->arg, "attrs.", 6) == 0 && sec->arg[6] != '\0';
		for (const char *const *k = render_lead_fields; *k && !known; k++)
			known = strcmp(*k, sec->arg) == 0;
		if (!known) {
			errf(msg, msglen, DRIP_EINVALID, "unknown merge field \"%s\" in a section",
			     sec->arg);
			free(sec->arg);
			sec->arg = NULL;
			return NULL;
		}
	}
	return end + 2;
bad:
	errf(msg, msglen, DRIP_EINVALID,
	     "malformed section \"%.*s\" (sections are {{#if FIELD}}, {{^if FIELD}}, "
	     "{{#tag TAG}}, {{^tag TAG}}, closed by {{/if}} or {{/tag}})",
	     (int)(end + 2 - s), s);
	return NULL;
}

static bool render_is_section(const char *s)
{
	return s[2] == '#' || s[2] == '^' || s[2] == '/';
}

/*
 * Walks every merge field and section of `text`: fields (and the fields sections test) go to
 * `cb` with their offset. Returns 0, cb's first non-zero return, or DRIP_EINVALID with the
 * offset of the problem in *bad and a sentence in msg.
 */
static int render_walk(const char *text, render_field_cb cb, void *arg, size_t *bad, char *msg,
		       size_t msglen)
{
	const char *p = text, *q;
	struct {
		bool on_tag;
		size_t at;
	} stack[RENDER_MAX_DEPTH];
	size_t depth = 0;
	while ((q = strstr(p, "{{"))) {
		const char *next;
		*bad = (size_t)(q - text);
		if (render_is_section(q)) {
			struct render_section sec;
			bool close;
			if (!(next = render_parse_section(q, &sec, &close, msg, msglen)))
				return DRIP_EINVALID;
			if (close) {
				if (depth == 0 || stack[depth - 1].on_tag != sec.on_tag)
					return errf(msg, msglen, DRIP_EINVALID,
						    "{{/%s}} closes no open section",
						    sec.on_tag ? "tag" : "if");
				depth--;
			} else {
				int rc = 0;
				if (depth == RENDER_MAX_DEPTH) {
					free(sec.arg);
					return errf(msg, msglen, DRIP_EINVALID,
						    "sections nest deeper than %d",
						    RENDER_MAX_DEPTH);
				}
				stack[depth].on_tag = sec.on_tag;
				stack[depth++].at = *bad;
				if (!sec.on_tag && cb)
					rc = cb(arg, sec.arg, *bad);
				free(sec.arg);
				if (rc)
					return rc;
			}
		} else {
			struct render_field f;
			if (!(next = render_parse_field(q, &f, msg, msglen)))
				return DRIP_EINVALID;
			int rc = cb ? cb(arg, f.name, *bad) : 0;
			free(f.name);
			free(f.fallback);
			if (rc)
				return rc;
		}
		p = next;
	}
	if (depth > 0) {
		*bad = stack[depth - 1].at;
		return errf(msg, msglen, DRIP_EINVALID, "this section is never closed with {{/%s}}",
			    stack[depth - 1].on_tag ? "tag" : "if");
	}
	return 0;
}

int render_each_field(const char *text, render_field_cb cb, void *arg)
{
	size_t bad;
	char msg[8];
	int rc = render_walk(text, cb, arg, &bad, msg, sizeof(msg));
	return rc == DRIP_EINVALID ? 0 : rc;
}

int render_check(const char *text, size_t *bad, char *msg, size_t msglen)
{
	if (render_walk(text, NULL, NULL, bad, msg, msglen) != 0)
		return DRIP_EINVALID;
	if (strstr(text, RENDER_PH)) {
		*bad = (size_t)(strstr(text, RENDER_PH) - text);
		errf(msg, msglen, DRIP_EINVALID, "the text \"" RENDER_PH "\" is reserved");
		return DRIP_EINVALID;
	}
	return 0;
}

struct render_ctx {
	const struct lead *lead;
	/* RENDER_PH plus a random nonce: a lead's value that spells a placeholder (it could
	 * reach a link target, which is filled before the HTML is) must not be taken for one.
	 * The nonce is drawn once a process (so parsed trees can be reused) and never appears in
	 * a message: every placeholder is filled. */
	char ph[48];
	cJSON *attrs;
	cJSON *tags;
	struct render_field fields[RENDER_MAX_FIELDS];
	size_t nfields;
};

/* The value of a field for this lead, its fallback when empty; never NULL. */
static const char *render_value(const struct render_ctx *rc, const struct render_field *f)
{
	const struct lead *l = rc->lead;
	const char *v = "";
	if (strcmp(f->name, "first_name") == 0)
		v = l->first_name;
	else if (strcmp(f->name, "last_name") == 0)
		v = l->last_name;
	else if (strcmp(f->name, "email") == 0)
		v = l->email;
	else if (strcmp(f->name, "company") == 0)
		v = l->company;
	else if (strcmp(f->name, "title") == 0)
		v = l->title;
	else if (strcmp(f->name, "stage") == 0)
		v = l->stage;
	else if (strncmp(f->name, "attrs.", 6) == 0 && rc->attrs) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(rc->attrs, f->name + 6);
		v = cJSON_IsString(a) ? a->valuestring : "";
	}
	if (!v || !*v)
		v = f->fallback ? f->fallback : "";
	return v;
}

/*
 * Keeps the text of the sections that hold for this lead and replaces its merge fields by
 * placeholders (the fields are appended to rc).
 */
static int render_placeholders(struct render_ctx *rc, const char *text, struct buf *out, char *err,
			       size_t errlen)
{
	const char *p = text, *q;
	bool shown[RENDER_MAX_DEPTH + 1] = { true };
	size_t depth = 0;
	while ((q = strstr(p, "{{"))) {
		const char *next;
		if (shown[depth])
			buf_add(out, p, (size_t)(q - p));
		if (render_is_section(q)) {
			struct render_section sec;
			bool close;
			if (!(next = render_parse_section(q, &sec, &close, err, errlen)))
				return DRIP_ECONTENT;
			if (close) {
				if (depth == 0)
					return errf(err, errlen, DRIP_ECONTENT,
						    "a section end closes nothing");
				depth--;
			} else {
				bool holds;
				if (depth == RENDER_MAX_DEPTH) {
					free(sec.arg);
					return errf(err, errlen, DRIP_ECONTENT,
						    "sections too deep");
				}
				if (sec.on_tag) {
					holds = json_string_index(rc->tags, sec.arg) >= 0;
				} else {
					struct render_field f = { .name = sec.arg };
					holds = *render_value(rc, &f) != '\0';
				}
				free(sec.arg);
				depth++;
				shown[depth] = shown[depth - 1] && holds != sec.inverted;
			}
			p = next;
			continue;
		}
		if (rc->nfields == RENDER_MAX_FIELDS)
			return errf(err, errlen, DRIP_ECONTENT, "more than %d merge fields",
				    RENDER_MAX_FIELDS);
		struct render_field *f = &rc->fields[rc->nfields];
		if (!(next = render_parse_field(q, f, err, errlen)))
			return DRIP_ECONTENT;
		if (shown[depth]) {
			char num[24];
			int n = snprintf(num, sizeof(num), "%zuZ", rc->nfields++);
			buf_adds(out, rc->ph);
			buf_add(out, num, (size_t)n);
		} else {
			free(f->name);
			free(f->fallback);
		}
		p = next;
	}
	if (shown[depth])
		buf_adds(out, p);
	return 0;
}

enum render_escape { RENDER_RAW, RENDER_HTML, RENDER_URL, RENDER_LINE };

static void render_escaped(struct buf *out, const char *v, enum render_escape esc)
{
	if (esc == RENDER_HTML) {
		buf_add_html(out, v);
		return;
	}
	for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
		switch (esc) {
		case RENDER_URL:
			if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
			    (*s >= '0' && *s <= '9') || strchr("-._~", *s))
				buf_addc(out, (char)*s);
			else {
				char pct[3] = { '%', "0123456789ABCDEF"[*s >> 4],
						"0123456789ABCDEF"[*s & 15] };
				buf_add(out, pct, sizeof(pct));
			}
			break;
		case RENDER_LINE:
			buf_addc(out, (*s == '\r' || *s == '\n' || *s == '\t') ? ' ' : (char)*s);
			break;
		default: /* RENDER_RAW (RENDER_HTML is written whole above) */
			buf_addc(out, (char)*s);
			break;
		}
	}
}

/* Copies `text`, replacing placeholders by escaped values. */
static char *render_fill(const struct render_ctx *rc, const char *text, enum render_escape esc)
{
	struct buf out;
	const char *p = text, *q;
	buf_init(&out);
	size_t phlen = strlen(rc->ph);
	while ((q = strstr(p, rc->ph))) {
		char *end;
		unsigned long i = strtoul(q + phlen, &end, 10);
		buf_add(&out, p, (size_t)(q - p));
		if (*end == 'Z' && i < rc->nfields) {
			render_escaped(&out, render_value(rc, &rc->fields[i]), esc);
			p = end + 1;
		} else {
			buf_add(&out, q, phlen);
			p = q + phlen;
		}
	}
	buf_adds(&out, p);
	return buf_steal(&out);
}

static bool render_is_web(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* Sets this message's link targets on the tree: merge fields filled, then web links handed
 * to the click tracker; returns how many it handed over. */
static size_t render_fix_links(const struct render_ctx *rc, const struct render_doc *d,
			       const struct render_tracking *trk)
{
	size_t index = 0;
	for (size_t i = 0; i < d->nlinks; i++) {
		const struct render_link *l = &d->links[i];
		char *url = strstr(l->url, rc->ph) ? render_fill(rc, l->url, RENDER_URL) : NULL;
		const char *target = url ? url : l->url;
		if (cmark_node_get_type(l->node) == CMARK_NODE_LINK && trk && trk->click_url &&
		    render_is_web(target)) {
			char *tracked = trk->click_url(trk->arg, index++, target, l->title);
			cmark_node_set_url(l->node, tracked);
			/* The tag was for us; the reader's tooltip should not show it. */
			cmark_node_set_title(l->node, "");
			free(tracked);
		} else {
			cmark_node_set_url(l->node, target);
			cmark_node_set_title(l->node, l->title);
		}
		free(url);
	}
	return index;
}

/* Prefixes every line of `in` with `first` (the first line) or `rest`. */
static void render_indent(struct buf *out, const char *in, const char *first, const char *rest)
{
	bool at_start = true, is_first = true;
	for (const char *p = in; *p; p++) {
		if (at_start) {
			if (*p != '\n' || is_first)
				buf_adds(out, is_first ? first : rest);
			at_start = false;
			is_first = false;
		}
		buf_addc(out, *p);
		if (*p == '\n')
			at_start = true;
	}
}

static void render_text_node(const struct render_ctx *rc, cmark_node *n, struct buf *out);

static void render_text_children(const struct render_ctx *rc, cmark_node *n, struct buf *out)
{
	for (cmark_node *c = cmark_node_first_child(n); c; c = cmark_node_next(c))
		render_text_node(rc, c, out);
}

static void render_text_node(const struct render_ctx *rc, cmark_node *n, struct buf *out)
{
	const char *lit;
	struct buf sub;
	switch (cmark_node_get_type(n)) {
	case CMARK_NODE_DOCUMENT:
		render_text_children(rc, n, out);
		break;
	case CMARK_NODE_PARAGRAPH: {
		cmark_node *parent = cmark_node_parent(n);
		bool tight = parent && cmark_node_get_type(parent) == CMARK_NODE_ITEM &&
			     cmark_node_get_list_tight(cmark_node_parent(parent));
		render_text_children(rc, n, out);
		buf_adds(out, tight ? "\n" : "\n\n");
		break;
	}
	case CMARK_NODE_HEADING:
		render_text_children(rc, n, out);
		buf_adds(out, "\n\n");
		break;
	case CMARK_NODE_BLOCK_QUOTE:
		buf_init(&sub);
		render_text_children(rc, n, &sub);
		if (sub.data)
			render_indent(out, sub.data, "> ", "> ");
		buf_free(&sub);
		break;
	case CMARK_NODE_LIST: {
		int i = cmark_node_get_list_start(n);
		bool ordered = cmark_node_get_list_type(n) == CMARK_ORDERED_LIST;
		for (cmark_node *item = cmark_node_first_child(n); item;
		     item = cmark_node_next(item), i++) {
			char bullet[16];
			snprintf(bullet, sizeof(bullet), ordered ? "%d. " : "- ", i);
			buf_init(&sub);
			render_text_children(rc, item, &sub);
			if (sub.data)
				render_indent(out, sub.data, bullet, ordered ? "   " : "  ");
			buf_free(&sub);
		}
		if (cmark_node_get_list_tight(n))
			buf_adds(out, "\n");
		break;
	}
	case CMARK_NODE_CODE_BLOCK:
		lit = cmark_node_get_literal(n);
		if (lit)
			render_indent(out, lit, "    ", "    ");
		buf_adds(out, "\n");
		break;
	case CMARK_NODE_THEMATIC_BREAK:
		buf_adds(out, "----\n\n");
		break;
	case CMARK_NODE_TEXT:
	case CMARK_NODE_CODE:
		lit = cmark_node_get_literal(n);
		if (lit)
			buf_adds(out, lit);
		break;
	case CMARK_NODE_SOFTBREAK:
	case CMARK_NODE_LINEBREAK:
		buf_adds(out, "\n");
		break;
	case CMARK_NODE_LINK:
	case CMARK_NODE_IMAGE: {
		const char *url = cmark_node_get_url(n);
		size_t before = out->len;
		render_text_children(rc, n, out);
		/* An autolink's text is its URL already: do not print it twice. */
		if (url && *url && strcmp(out->data ? out->data + before : "", url) != 0) {
			buf_adds(out, " <");
			buf_adds(out, url);
			buf_adds(out, ">");
		}
		break;
	}
	case CMARK_NODE_EMPH:
	case CMARK_NODE_STRONG:
		render_text_children(rc, n, out);
		break;
	default: /* raw HTML and custom nodes never reach the text: the text is for people */
		break;
	}
}

static void render_trim_end(struct buf *b)
{
	while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == ' '))
		b->data[--b->len] = '\0';
}

/* Renders a message; with `opt_out` (prospect mail) the text ends with that line instead of
 * the sender's footer. */
static int render_impl(const struct content *c, const struct content_template *tpl,
		       const struct lead *lead, const char *opt_out,
		       const struct render_tracking *trk, struct render_out *out, char *err,
		       size_t errlen)
{
	/* Not zeroed whole: fields[] is 8 KiB, and only the first nfields are ever read. */
	struct render_ctx *rc = xmalloc(sizeof(*rc));
	struct buf body, html, text;
	char *s = NULL;
	int ret = DRIP_ECONTENT;

	memset(out, 0, sizeof(*out));
	buf_init(&body);
	buf_init(&html);
	buf_init(&text);
	static _Thread_local char nonce[33];
	if (!nonce[0])
		util_random_hex(nonce, 16);
	rc->lead = lead;
	rc->nfields = 0;
	snprintf(rc->ph, sizeof(rc->ph), "%s%s", RENDER_PH, nonce);
	rc->attrs = cJSON_Parse(lead->attrs && *lead->attrs ? lead->attrs : "{}");
	rc->tags = cJSON_Parse(lead->tags && *lead->tags ? lead->tags : "[]");

	/* Subject and preheader: merge fields on one line each, no Markdown. */
	if (render_placeholders(rc, tpl->subject, &body, err, errlen))
		goto out;
	out->subject = render_fill(rc, body.data ? body.data : "", RENDER_LINE);
	buf_free(&body);
	if (render_placeholders(rc, tpl->preheader, &body, err, errlen))
		goto out;
	out->preheader = render_fill(rc, body.data ? body.data : "", RENDER_LINE);
	buf_free(&body);

	if (render_placeholders(rc, tpl->body, &body, err, errlen))
		goto out;
	struct render_doc *parsed = render_parse(body.data ? body.data : "", body.len);
	cmark_node *doc = parsed->doc;
	size_t nlinks = render_fix_links(rc, parsed, trk);

	/* Room for the usual message at once rather than grown from 64 bytes. */
	buf_reserve(&html, 2 * body.len + 1024);
	buf_reserve(&text, body.len + 512);
	buf_adds(&html, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
			"<meta name=\"viewport\" content=\"width=device-width\">\n<title>");
	render_escaped(&html, out->subject, RENDER_HTML);
	buf_adds(&html, "</title>\n</head>\n<body style=\"font-family: sans-serif; "
			"line-height: 1.5; max-width: 36em;\">\n");
	if (*out->preheader) {
		/* The preheader shows in inbox lists and nowhere in the opened message. */
		buf_adds(&html, "<div style=\"display:none;max-height:0;overflow:hidden;\">");
		render_escaped(&html, out->preheader, RENDER_HTML);
		buf_adds(&html, "</div>\n");
	}
	s = cmark_render_html(doc, CMARK_OPT_DEFAULT);
	char *filled = render_fill(rc, s, RENDER_HTML);
	buf_adds(&html, filled);
	free(filled);
	render_text_node(rc, doc, &text);
	render_trim_end(&text);
	if (opt_out) {
		buf_printf(&text, "\n\n%s\n", opt_out);
	} else if ((c->company && *c->company) || (c->postal_address && *c->postal_address)) {
		buf_adds(&html, "<hr>\n<p style=\"font-size: smaller; color: #666;\">");
		render_escaped(&html, c->company, RENDER_HTML);
		if (*c->company && *c->postal_address)
			buf_adds(&html, "<br>\n");
		render_escaped(&html, c->postal_address, RENDER_HTML);
		buf_adds(&html, "</p>\n");
		buf_adds(&text, "\n\n-- \n");
		if (*c->company) {
			buf_adds(&text, c->company);
			buf_adds(&text, "\n");
		}
		if (*c->postal_address) {
			buf_adds(&text, c->postal_address);
			buf_adds(&text, "\n");
		}
	} else {
		buf_adds(&text, "\n");
	}
	if (!opt_out && trk && trk->unsubscribe_url) {
		buf_adds(&html,
			 "<p style=\"font-size: smaller; color: #666;\">Not useful any more? "
			 "<a href=\"");
		render_escaped(&html, trk->unsubscribe_url, RENDER_HTML);
		buf_adds(&html, "\">Unsubscribe</a> and we will not write again.</p>\n");
		buf_adds(&text, "Unsubscribe: ");
		buf_adds(&text, trk->unsubscribe_url);
		buf_adds(&text, "\n");
	}
	if (trk && trk->click_url && trk->honeypot_target) {
		/* A link no person sees or can reach: only a machine follows it. */
		char *hp = trk->click_url(trk->arg, nlinks, trk->honeypot_target, "honeypot");
		buf_adds(&html, "<a href=\"");
		render_escaped(&html, hp, RENDER_HTML);
		buf_adds(&html,
			 "\" style=\"display:none\" aria-hidden=\"true\" tabindex=\"-1\"></a>\n");
		free(hp);
	}
	if (trk && trk->open_url) {
		buf_adds(&html, "<img src=\"");
		render_escaped(&html, trk->open_url, RENDER_HTML);
		buf_adds(
			&html,
			"\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">\n");
	}
	buf_adds(&html, "</body>\n</html>\n");
	char *raw_text = buf_steal(&text);
	out->text = render_fill(rc, raw_text, RENDER_RAW);
	free(raw_text);
	out->html = buf_steal(&html);
	ret = 0;
out:
	free(s); /* cmark's default allocator: malloc */
	for (size_t i = 0; i < rc->nfields; i++) {
		free(rc->fields[i].name);
		free(rc->fields[i].fallback);
	}
	cJSON_Delete(rc->attrs);
	cJSON_Delete(rc->tags);
	free(rc);
	buf_free(&body);
	buf_free(&html);
	buf_free(&text);
	if (ret)
		render_out_clear(out);
	return ret;
}

int render_message(const struct content *c, const struct content_template *tpl,
		   const struct lead *lead, struct render_out *out, char *err, size_t errlen)
{
	return render_impl(c, tpl, lead, NULL, NULL, out, err, errlen);
}

int render_touch(const struct content *c, const struct content_sequence *seq,
		 const struct content_template *tpl, const struct lead *lead,
		 const struct render_tracking *trk, struct render_out *out, char *err,
		 size_t errlen)
{
	return render_impl(c, tpl, lead, seq->mode == CONTENT_PROSPECT ? seq->opt_out : NULL, trk,
			   out, err, errlen);
}

void render_out_clear(struct render_out *out)
{
	free(out->subject);
	free(out->preheader);
	free(out->html);
	free(out->text);
	memset(out, 0, sizeof(*out));
}
