/* fuzz_render.c - templates rendered for leads with hostile data: merge data is never evaluated
 * as a merge field, Markdown or markup, and subject and preheader stay on one line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/content.h"
#include "dripd/render.h"
#include "dripd/store.h"
#include "fuzz.h"

static char *fuzz_click_cb(void *arg, size_t index, const char *url, const char *tag)
{
	(void)arg;
	(void)tag;
	size_t n = strlen(url) + 64;
	char *s = malloc(n);
	snprintf(s, n, "https://t.example.com/c/%zu", index);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct content c = { .refs = 1,
				    .company = "Northwind",
				    .postal_address = "12 Harbour Street" };
	char *p[10];
	fuzz_split(data, size, p, 10);
	/* Front matter gives one-line subjects and preheaders; the author's own line breaks
	 * cannot reach render. */
	p[0][strcspn(p[0], "\r\n")] = '\0';
	p[1][strcspn(p[1], "\r\n")] = '\0';
	size_t bad;
	char msg[256];
	/* Only templates that pass content's check reach render, as in the daemon. */
	if (render_check(p[0], &bad, msg, sizeof(msg)) ||
	    render_check(p[1], &bad, msg, sizeof(msg)) ||
	    render_check(p[2], &bad, msg, sizeof(msg)))
		goto out;
	struct content_template tpl = {
		.path = "f.md", .file = "f.md", .subject = p[0], .preheader = p[1], .body = p[2]
	};
	struct lead lead = { .id = 1,
			     .email = "lead@example.org",
			     .first_name = p[3],
			     .last_name = p[4],
			     .company = p[5],
			     .title = p[6],
			     .stage = "awareness",
			     .status = "active",
			     .tags = p[7],
			     .attrs = p[8] };
	struct content_sequence seq = { .name = "s",
					.mode = size & 1 ? CONTENT_PROSPECT : CONTENT_NURTURE,
					.opt_out = p[9] };
	struct render_tracking trk = { .click_url = fuzz_click_cb,
				       .open_url = "https://t.example.com/o/x",
				       .unsubscribe_url = "https://t.example.com/u/x" };
	struct render_out out;
	char err[512];
	if (render_touch(&c, &seq, &tpl, &lead, &trk, &out, err, sizeof(err)) == 0) {
		FUZZ_ASSERT(!strpbrk(out.subject, "\r\n"), "a line break in the subject");
		FUZZ_ASSERT(!strpbrk(out.preheader, "\r\n"), "a line break in the preheader");
		/* A lead's first name "<b>" must never reach the HTML as markup. */
		if (strstr(p[2], "{{first_name}}") && strchr(p[3], '<') && !strchr(p[2], '<') &&
		    !strchr(p[9], '<') && !strchr(p[4], '<') && !strchr(p[5], '<') &&
		    !strchr(p[6], '<') && !strchr(p[8], '<') && !strchr(p[0], '<') &&
		    !strchr(p[1], '<') && !strchr(p[7], '<')) {
			const char *body = strstr(out.html, "<body");
			FUZZ_ASSERT(body && !strstr(body, "<script"), "markup from lead data");
		}
		render_out_clear(&out);
	}
out:
	fuzz_free_parts(p, 10);
	return 0;
}
