/* fuzz_csv.c - libFuzzer target: csv_next over any bytes, in one piece and streamed. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dripd/csv.h"

/*
 * Every input is read twice: whole (eof known), and as a stream that grows one byte at a
 * time the way dripctl feeds a file. Both must see the same records with the same line
 * counts, consume every byte, and never read past the input; round-tripping a record
 * through csv_write_row must give back the same fields.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct csv_record a, b, c;
	char err[128];
	size_t pos = csv_skip_bom(in, size), spos = pos;
	csv_record_init(&a);
	csv_record_init(&b);
	csv_record_init(&c);
	for (int guard = 0; guard < 10000; guard++) {
		size_t used = 0, sused = 0;
		int rc = csv_next(in + pos, size - pos, true, &used, &a, err, sizeof(err));
		if (rc <= 0)
			break;
		if (used == 0 || used > size - pos)
			__builtin_trap();
		/* The same record, streamed: more input until it is whole. */
		int src = 0;
		for (size_t have = 0; have <= size - spos; have++) {
			src = csv_next(in + spos, have, have == size - spos, &sused, &b, err,
				       sizeof(err));
			if (src != 0)
				break;
		}
		if (src != 1 || sused != used || b.nfields != a.nfields || b.lines != a.lines)
			__builtin_trap();
		for (size_t i = 0; i < a.nfields; i++)
			if (strcmp(a.fields[i], b.fields[i]) != 0)
				__builtin_trap();
		/* Written out and read back, without the guard, the fields are the same. */
		struct buf out;
		size_t wused = 0;
		buf_init(&out);
		csv_write_row(&out, (const char *const *)a.fields, a.nfields, false);
		if (csv_next(out.data, out.len, true, &wused, &c, err, sizeof(err)) == 1 &&
		    !a.blank) {
			if (c.nfields != a.nfields)
				__builtin_trap();
			for (size_t i = 0; i < a.nfields; i++)
				if (strcmp(a.fields[i], c.fields[i]) != 0)
					__builtin_trap();
		}
		buf_free(&out);
		pos += used;
		spos += sused;
	}
	csv_record_free(&a);
	csv_record_free(&b);
	csv_record_free(&c);
	return 0;
}
