/* fuzz_classify.c - libFuzzer target: any bytes through the inbound classifier and the
 * return-date reader; neither may crash, hang or read past the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/classify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly `size` bytes, so ASan sees any read past the end. */
	char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	struct classify_result r;
	classify_message(copy, size, 1795608000, &r);
	int64_t when;
	classify_return_date(copy, size, 1795608000, size & 1 ? "en-US" : NULL, &when);
	free(copy);
	return 0;
}
