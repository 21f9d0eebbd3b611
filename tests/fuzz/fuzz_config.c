/* fuzz_config.c - the JSON reader (comments, line numbers, duplicate keys) and the config loader. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/json.h"
#include "fuzz.h"

static char fuzz_path[64];

static void fuzz_config_cleanup(void)
{
	unlink(fuzz_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	if (!fuzz_path[0]) {
		snprintf(fuzz_path, sizeof(fuzz_path), "/tmp/dripd-fuzz-config.%d.json",
			 (int)getpid());
		atexit(fuzz_config_cleanup);
	}
	struct json_doc *d = json_doc_parse("in.json", (const char *)data, size, err, sizeof(err));
	if (d) {
		FUZZ_ASSERT(json_doc_root(d) != NULL, "a parsed document has a root");
		json_doc_free(d);
	} else {
		FUZZ_ASSERT(strncmp(err, "in.json", 7) == 0, "the error names the file: %s", err);
	}
	fuzz_write(fuzz_path, (const char *)data, size);
	struct config *cfg = config_load(fuzz_path, err, sizeof(err));
	if (cfg) {
		char *w = config_warnings(cfg);
		free(w);
		config_free(cfg);
	} else {
		FUZZ_ASSERT(strstr(err, fuzz_path) != NULL, "the error names the file: %s", err);
	}
	return 0;
}
