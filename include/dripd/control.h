/* control.h - the control socket and its one table of commands. */
#ifndef DRIPD_CONTROL_H
#define DRIPD_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "dripd/dripd.h"
#include "dripd/util.h"

/*
 * Every command is one entry of control_cmds: its protocol name, the words a person types
 * after `dripctl`, a summary, flags, the arguments (positional first, then --options) and
 * the handler. The daemon dispatches on it, dripctl parses its command line and prints
 * `dripctl help` from it, so the table is the documentation. A handler fills `result` and
 * returns 0, or returns a DRIP_E* code with a sentence in err. A handler that changes state
 * answers only after its change is committed.
 */

enum control_arg_kind {
	CONTROL_ARG_STRING, /* "--first-name NAME" or a positional word */
	CONTROL_ARG_LIST, /* repeatable: "--tag T" -> ["T", …] */
	CONTROL_ARG_MAP, /* repeatable: "--attr K=V" -> {"K": "V", …} */
	CONTROL_ARG_FLAG, /* "--force" -> true */
};

struct control_arg {
	const char *flag; /* NULL for a positional argument */
	const char *key; /* the name in the request's "args" */
	enum control_arg_kind kind;
	bool required;
	const char *meta; /* what the value is, for usage: "EMAIL", "STAGE"; NULL for an
			   * argument dripctl fills in itself (an import's chunk, a page cursor) */
};

#define CONTROL_MAX_ARGS 12
#define CONTROL_CHANGES_STATE 0x1u
#define CONTROL_TEST_CLOCK 0x2u /* only when the config enables the test clock */
/* dripctl reads the positional FILE and sends it as "header", "csv" and "line" chunks. */
#define CONTROL_CLIENT_FILE 0x4u
/* The result comes in pages: dripctl asks again with "after" = the result's "next". */
#define CONTROL_PAGED 0x8u
/* After the ok answer, {"v":1,"event":{…}} lines follow until the client closes. */
#define CONTROL_STREAM 0x10u

struct control_cmd {
	const char *name; /* "lead.add" */
	const char *words; /* "lead add" */
	const char *summary;
	unsigned flags;
	struct control_arg args[CONTROL_MAX_ARGS];
	int (*handler)(struct dripd *d, const cJSON *args, cJSON *result, char *err, size_t errlen);
};

extern const struct control_cmd control_cmds[];

const struct control_cmd *control_cmd_find(const char *name);
/* "lead add EMAIL [--first-name NAME] …" */
void control_usage(const struct control_cmd *c, struct buf *out);

/* Answers one request line with one answer line (with its newline); the caller frees it. */
char *control_handle_line(struct dripd *d, const char *line);

struct control;
/*
 * Listens on the socket systemd passed as "control" (sd_listen_fd) when there is one, else
 * on cfg->control_socket (mode 0660), replacing a stale socket, never a live one.
 */
struct control *control_new(struct dripd *d, char *err, size_t errlen);
struct mailer_result;
/* The outcome of a send-test job (the mailer hands those back with a negative touch id). */
void control_on_test_result(struct control *c, const struct mailer_result *r);
/* Stops listening, closes every client and frees the control (in close callbacks). */
void control_close(struct control *c);

#endif
