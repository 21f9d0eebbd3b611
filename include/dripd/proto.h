/* proto.h - the control protocol shared by dripd and dripctl: versioned JSON lines. */
#ifndef DRIPD_PROTO_H
#define DRIPD_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "dripd/util.h"

/*
 * One JSON object per line each way over a Unix stream socket.
 *   request: {"v":1,"id":7,"cmd":"lead.add","args":{…}}
 *   answer:  {"v":1,"id":7,"ok":true,"result":{…}}
 *            {"v":1,"id":7,"ok":false,"error":{"code":"not_found","message":"…"}}
 * Error codes are the stable names of error.h. A streaming command answers ok, then sends
 * {"v":1,"event":{…}} lines until the client closes.
 */
#define PROTO_VERSION 1
#define PROTO_MAX_LINE (1024 * 1024)

/* Splits a byte stream into lines; feed what arrives, take complete lines out. */
struct proto_reader {
	struct buf in;
	size_t start;
	bool overflow; /* a line longer than PROTO_MAX_LINE was seen and is being skipped */
};

void proto_reader_init(struct proto_reader *r);
void proto_reader_free(struct proto_reader *r);
void proto_reader_feed(struct proto_reader *r, const char *data, size_t len);
/*
 * The next complete line (NUL-terminated, without its newline, valid until the next call)
 * or NULL. *too_long is set when a line over the limit was dropped instead.
 */
char *proto_reader_next(struct proto_reader *r, bool *too_long);

/* Serialises `msg` as one line with its newline; the caller frees. */
char *proto_line(const cJSON *msg);

#endif
