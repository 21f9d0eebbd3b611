/* fuzz.h - small helpers the libFuzzer targets share: splitting an input, writing a file. */
#ifndef DRIPD_FUZZ_H
#define DRIPD_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parts of a fuzz input are separated by this line, so seeds stay readable text. */
#define FUZZ_SEP "\n====\n"

/*
 * Splits data into at most max NUL-terminated parts at FUZZ_SEP; missing parts are "".
 * The caller frees each part. Returns how many separators were found.
 */
static inline size_t fuzz_split(const uint8_t *data, size_t size, char **parts, size_t max)
{
	size_t n = 0, seplen = strlen(FUZZ_SEP);
	const char *p = (const char *)data, *end = p + size;
	while (n < max) {
		const char *q = n + 1 < max ? memmem(p, (size_t)(end - p), FUZZ_SEP, seplen) : NULL;
		size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
		parts[n] = malloc(len + 1);
		memcpy(parts[n], p, len);
		parts[n][len] = '\0';
		n++;
		if (!q) {
			p = end;
			break;
		}
		p = q + seplen;
	}
	size_t found = n ? n - 1 : 0;
	for (; n < max; n++)
		parts[n] = calloc(1, 1);
	return found;
}

static inline void fuzz_free_parts(char **parts, size_t max)
{
	for (size_t i = 0; i < max; i++)
		free(parts[i]);
}

/* Writes len bytes to path (replacing it); aborts on failure, which is the harness's fault. */
static inline void fuzz_write(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		abort();
	}
}

/* Stops the run with a message when a promise is broken (libFuzzer reports the input). */
#define FUZZ_ASSERT(cond, ...)                                                           \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "fuzz: %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                    \
			fputc('\n', stderr);                                             \
			abort();                                                         \
		}                                                                        \
	} while (0)

#endif
