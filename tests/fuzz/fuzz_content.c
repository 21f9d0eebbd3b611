/* fuzz_content.c - content loading: journey.json, a sequence and two templates (front matter
 * and merge fields) from the input; a clear error naming a file, or a snapshot, never a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/content.h"
#include "fuzz.h"

static char fuzz_dir[64];

static void fuzz_content_cleanup(void)
{
	static const char *const files[] = { "journey.json",
					     "sequences/s.json",
					     "templates/a.md",
					     "templates/b.md",
					     "sequences",
					     "templates",
					     "" };
	char path[256];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", fuzz_dir, files[i]);
		remove(path);
	}
}

static void fuzz_put(const char *rel, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", fuzz_dir, rel);
	fuzz_write(path, text, strlen(text));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p[4];
	char err[1024], path[256];
	if (!fuzz_dir[0]) {
		snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/dripd-fuzz-content.%d", (int)getpid());
		mkdir(fuzz_dir, 0700);
		snprintf(path, sizeof(path), "%s/sequences", fuzz_dir);
		mkdir(path, 0700);
		snprintf(path, sizeof(path), "%s/templates", fuzz_dir);
		mkdir(path, 0700);
		atexit(fuzz_content_cleanup);
	}
	fuzz_split(data, size, p, 4);
	fuzz_put("journey.json", p[0]);
	fuzz_put("sequences/s.json", p[1]);
	fuzz_put("templates/a.md", p[2]);
	fuzz_put("templates/b.md", p[3]);
	struct content *c = content_load(fuzz_dir, err, sizeof(err));
	if (c) {
		for (size_t i = 0; i < c->nseqs; i++)
			FUZZ_ASSERT(c->seqs[i].nsteps > 0 || 1, "-");
		content_unref(c);
	} else {
		FUZZ_ASSERT(strstr(err, fuzz_dir) != NULL || strstr(err, "content") != NULL,
			    "the error names no file: %s", err);
	}
	fuzz_free_parts(p, 4);
	return 0;
}
