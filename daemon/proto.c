/* proto.c - line framing of the control protocol, shared by dripd and dripctl. */
#include <string.h>

#include "dripd/proto.h"

void proto_reader_init(struct proto_reader *r)
{
	buf_init(&r->in);
	r->start = 0;
	r->overflow = false;
}

void proto_reader_free(struct proto_reader *r)
{
	buf_free(&r->in);
}

void proto_reader_feed(struct proto_reader *r, const char *data, size_t len)
{
	/* Compact first so the buffer holds at most one partial line plus what arrived. */
	if (r->start > 0) {
		memmove(r->in.data, r->in.data + r->start, r->in.len - r->start);
		r->in.len -= r->start;
		r->in.data[r->in.len] = '\0';
		r->start = 0;
	}
	buf_add(&r->in, data, len);
}

char *proto_reader_next(struct proto_reader *r, bool *too_long)
{
	*too_long = false;
	for (;;) {
		if (r->start >= r->in.len)
			return NULL;
		char *line = r->in.data + r->start;
		char *nl = memchr(line, '\n', r->in.len - r->start);
		if (!nl) {
			if (r->in.len - r->start > PROTO_MAX_LINE) {
				/* Drop what we hold and skip the rest of this line when it ends. */
				r->overflow = true;
				r->start = r->in.len;
			}
			return NULL;
		}
		*nl = '\0';
		r->start = (size_t)(nl - r->in.data) + 1;
		if (r->overflow || (size_t)(nl - line) > PROTO_MAX_LINE) {
			r->overflow = false;
			*too_long = true;
			return NULL;
		}
		if (nl > line && nl[-1] == '\r')
			nl[-1] = '\0';
		return line;
	}
}

char *proto_line(const cJSON *msg)
{
	char *s = cJSON_PrintUnformatted(msg);
	char *line = xasprintf("%s\n", s ? s : "{}");
	cJSON_free(s);
	return line;
}
