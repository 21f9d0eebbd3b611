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
 * {{first_name|there}}.
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

/* Renders `tpl` for `lead`, with the journey's sender footer. 0, or an error in err. */
int render_message(const struct content *c, const struct content_template *tpl,
		   const struct lead *lead, struct render_out *out, char *err, size_t errlen);
void render_out_clear(struct render_out *out);

#endif
