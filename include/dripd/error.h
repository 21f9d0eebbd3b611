/* error.h - one table of dripd's error codes, their stable names and messages. */
#ifndef DRIPD_ERROR_H
#define DRIPD_ERROR_H

/*
 * Functions return 0 or one of these negative codes, in the manner of libuv's UV_E*.
 * The second column is the stable name the control protocol sends ("code"); it never
 * changes once released. Add new codes at the end.
 */
#define DRIP_ERROR_TABLE(X)                                      \
	X(INVALID, "invalid", "invalid argument")                \
	X(NOT_FOUND, "not_found", "not found")                   \
	X(EXISTS, "exists", "already exists")                    \
	X(IO, "io", "input/output error")                        \
	X(STORE, "store", "database error")                      \
	X(CONFIG, "config", "bad configuration")                 \
	X(CONTENT, "content", "bad content")                     \
	X(PROTOCOL, "protocol", "malformed request")             \
	X(UNKNOWN_COMMAND, "unknown_command", "unknown command") \
	X(DISABLED, "disabled", "not enabled")                   \
	X(TOO_BIG, "too_big", "too large")                       \
	X(TEMPFAIL, "tempfail", "temporary failure")             \
	X(PERMFAIL, "permfail", "permanent failure")             \
	X(UNSUPPORTED, "unsupported", "not supported")           \
	X(BUSY, "busy", "busy")                                  \
	X(DENIED, "denied", "permission denied")

enum drip_error_index {
#define DRIP_X(name, code, msg) DRIP_ERROR_INDEX_##name,
	DRIP_ERROR_TABLE(DRIP_X)
#undef DRIP_X
		DRIP_ERROR_COUNT
};

enum drip_error {
#define DRIP_X(name, code, msg) DRIP_E##name = -(DRIP_ERROR_INDEX_##name + 1),
	DRIP_ERROR_TABLE(DRIP_X)
#undef DRIP_X
};

/* The readable message of an error code ("not found"); "unknown error" for anything else. */
const char *drip_strerror(int err);
/* The stable name of an error code ("not_found"), as the control protocol sends it. */
const char *drip_errname(int err);

#endif
