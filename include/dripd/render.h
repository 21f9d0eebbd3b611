/* render.h - a template and a lead into subject, preheader, HTML and plain text. */
#ifndef DRIPD_RENDER_H
#define DRIPD_RENDER_H

#include <stddef.h>

#include "dripd/content.h"
#include "dripd/store.h"

/*
 * Pure. Markdown is rendered first (cmark), merge fields are filled in afterwards, escaped
 * for each output: HTML-escaped in the HTML, percent-encoded inside link targets, verbatim
 * in the text, and with line breaks folded to spaces in the subject and preheader. Lead data
 * therefore never becomes Markdown, markup or a header.
 *
 * Merge fields: {{first_name}} {{last_name}} {{email}} {{company}} {{title}} {{stage}}
 * {{attrs.KEY}}, each with an optional fallback used when the value is empty:
 * {{first_name|there}}. Sections keep or drop the author's text: {{#if FIELD}}…{{/if}},
 * {{#tag TAG}}…{{/tag}}, and {{^if …}} / {{^tag …}} for the opposite; they nest.
 */

struct render_out {
	char *subject;
	char *preheader;
	char *html; /* a complete HTML document */
	char *text;
};

/*
 * Checks the merge fields of `text`: 0, or DRIP_EINVALID with the byte offset of the bad
 * field in *bad and a sentence in msg.
 */
int render_check(const char *text, size_t *bad, char *msg, size_t msglen);

/*
 * Calls cb(arg, name, offset) for every merge field of `text` and every field a section
 * tests ({{#if FIELD}}); stops at cb's first non-zero return and returns it. A malformed
 * text is walked up to its first problem (render_check reports that).
 */
typedef int (*render_field_cb)(void *arg, const char *name, size_t offset);
int render_each_field(const char *text, render_field_cb cb, void *arg);

/* Renders `tpl` for `lead`, with the journey's sender footer. 0, or an error in err. */
int render_message(const struct content *c, const struct content_template *tpl,
		   const struct lead *lead, struct render_out *out, char *err, size_t errlen);
/*
 * Tracking for one message, supplied by the caller (render itself knows no tokens). Each
 * http(s) link of the body is passed to click_url with its 0-based index, its URL (merge
 * fields filled) and its tag (the link title); the URL returned (malloc'd) replaces it, in
 * the HTML and in the text. open_url adds a 1x1 image; unsubscribe_url a footer link.
 */
struct render_tracking {
	char *(*click_url)(void *arg, size_t index, const char *url, const char *tag);
	void *arg;
	const char *open_url; /* NULL: no pixel */
	const char *unsubscribe_url; /* NULL: no unsubscribe link in the footer */
	/* non-NULL (with click_url): a hidden link in the HTML, after the body's links, passed
	 * to click_url with the tag "honeypot" and this target; only machines follow it */
	const char *honeypot_target;
};

/*
 * Renders `tpl` as step of `seq` would send it: nurture mail ends with the sender's footer;
 * prospect mail is a personal note that ends with the sequence's opt-out line instead.
 */
int render_touch(const struct content *c, const struct content_sequence *seq,
		 const struct content_template *tpl, const struct lead *lead,
		 const struct render_tracking *trk, struct render_out *out, char *err,
		 size_t errlen);
void render_out_clear(struct render_out *out);
/*
 * Frees the calling thread's parsed bodies, kept between messages (a body whose sections
 * resolve alike parses to the same tree for every lead). For a clean exit; the cache is
 * keyed by the text itself, so a content reload needs no call.
 */
void render_cache_clear(void);

#endif
