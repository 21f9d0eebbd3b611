/* csv.h - RFC 4180 reading (lead import) and writing (exports, with a formula guard). */
#ifndef DRIPD_CSV_H
#define DRIPD_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include "dripd/util.h"

/*
 * A pure module: bytes in, records out, no I/O. Records end with LF, CRLF or a lone CR;
 * fields are separated by ',' and may be quoted ("a ""b"", c" with embedded commas and line
 * breaks). Lenient where RFC 4180 is silent and strict where a mistake would shift columns:
 * a quote inside an unquoted field is kept as text, text after a closing quote is kept, but
 * a quoted field still open at the end of the input is an error. A byte-order mark at the
 * very start is skipped by csv_skip_bom.
 */
#define CSV_MAX_FIELD (64 * 1024) /* bytes in one field */
#define CSV_MAX_FIELDS 256 /* fields in one record */

struct csv_record {
	char **fields; /* NUL-terminated copies, owned by the record */
	size_t nfields;
	size_t cap;
	size_t lines; /* how many line breaks the record's bytes held (its terminator included) */
	bool blank; /* an empty line: one empty, unquoted field */
};

void csv_record_init(struct csv_record *r);
void csv_record_free(struct csv_record *r);

/*
 * Reads one record from the start of data[0..len). Returns 1 and sets *used (the bytes the
 * record took, terminator included) when a whole record is there; 0 when more input is
 * needed (with eof false) or nothing is left (with eof true, *used = 0); DRIP_EINVALID with
 * a reason in err when the record is malformed (a quote never closed, a field over
 * CSV_MAX_FIELD, more than CSV_MAX_FIELDS fields). With eof true a last record without a
 * terminator is returned. Costs O(bytes of the record).
 */
int csv_next(const char *data, size_t len, bool eof, size_t *used, struct csv_record *rec,
	     char *err, size_t errlen);

/* 3 when data starts with the UTF-8 byte-order mark, else 0. */
size_t csv_skip_bom(const char *data, size_t len);

/* The columns lead import knows; anything else is an attribute. */
enum csv_column {
	CSV_COL_ATTR = 0,
	CSV_COL_EMAIL,
	CSV_COL_FIRST_NAME,
	CSV_COL_LAST_NAME,
	CSV_COL_COMPANY,
	CSV_COL_TITLE,
	CSV_COL_TZ,
	CSV_COL_STAGE,
	CSV_COL_TAGS,
	CSV_COL_READONLY, /* what an export adds and an import ignores: id, status, score, … */
};

/*
 * Maps a header cell to a known column, case-insensitively and ignoring surrounding space
 * ("E-mail", "First Name", "time zone", "TZ", …). For CSV_COL_ATTR, `attr` receives the
 * attribute name: lower case, runs of anything but letters and digits as one '_', at most
 * attrlen-1 bytes ("Lead Source" -> "lead_source"); empty when nothing usable is left.
 */
enum csv_column csv_column(const char *header, char *attr, size_t attrlen);
/* The canonical name of a known column ("first_name"); "" for CSV_COL_ATTR. */
const char *csv_column_name(enum csv_column c);

/*
 * Appends one field, quoted when it holds ',', '"', CR or LF or leading/trailing space.
 * With guard, a cell starting with '=', '+', '-', '@', TAB or CR gets a leading "'" so a
 * spreadsheet shows it as text instead of running it as a formula.
 */
void csv_write_field(struct buf *out, const char *s, bool guard);
/* Appends fields separated by ',' and ends the record with CRLF (RFC 4180). */
void csv_write_row(struct buf *out, const char *const *fields, size_t n, bool guard);

#endif
