/* fuzz_proto.c - libFuzzer target: the control protocol's line reader and request parsing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dripd/proto.h"

/*
 * The first byte picks how the rest is cut into reads (as a socket would deliver it); every
 * complete line must come out NUL-terminated without its newline, no line may exceed the
 * limit, and each is parsed as a request would be. The same bytes fed whole must give the
 * same lines.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] % 17 + 1;
	const char *in = (const char *)data + 1;
	size_t len = size - 1, whole_lines = 0, cut_lines = 0;
	struct proto_reader whole, cut;
	bool too_long;
	char *line;

	proto_reader_init(&whole);
	proto_reader_feed(&whole, in, len);
	while ((line = proto_reader_next(&whole, &too_long)) || too_long) {
		if (!line)
			continue;
		if (strlen(line) > PROTO_MAX_LINE || strchr(line, '\n'))
			__builtin_trap();
		cJSON *req = cJSON_Parse(line);
		if (req) {
			const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
			if (cJSON_IsString(cmd) && !cmd->valuestring)
				__builtin_trap();
			char *again = proto_line(req);
			if (!again || again[strlen(again) - 1] != '\n')
				__builtin_trap();
			free(again);
		}
		cJSON_Delete(req);
		whole_lines++;
	}
	proto_reader_init(&cut);
	for (size_t off = 0; off < len; off += step) {
		proto_reader_feed(&cut, in + off, off + step <= len ? step : len - off);
		while ((line = proto_reader_next(&cut, &too_long)) || too_long)
			if (line)
				cut_lines++;
	}
	if (cut_lines != whole_lines)
		__builtin_trap();
	proto_reader_free(&whole);
	proto_reader_free(&cut);
	return 0;
}
