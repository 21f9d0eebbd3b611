/* error.c - names and messages of the error table in error.h. */
#include "dripd/error.h"

static const char *const error_names[] = {
#define DRIP_X(name, code, msg) code,
	DRIP_ERROR_TABLE(DRIP_X)
#undef DRIP_X
};

static const char *const error_messages[] = {
#define DRIP_X(name, code, msg) msg,
	DRIP_ERROR_TABLE(DRIP_X)
#undef DRIP_X
};

static int error_index(int err)
{
	int i = -err - 1;
	return (i >= 0 && i < DRIP_ERROR_COUNT) ? i : -1;
}

const char *drip_strerror(int err)
{
	int i = error_index(err);
	return i < 0 ? "unknown error" : error_messages[i];
}

const char *drip_errname(int err)
{
	int i = error_index(err);
	return i < 0 ? "internal" : error_names[i];
}
