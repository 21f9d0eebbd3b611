/* csv.c - RFC 4180 reading (lead import) and writing (exports, with a formula guard). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/csv.h"
#include "dripd/error.h"

/*
 * DESIGN. csv_next is a small state machine over one record that never reads past the
 * record's terminator, so a caller streaming a file keeps only the unfinished record in
 * memory, and dripctl can forward exactly the bytes of whole records to the daemon, which
 * parses them again and so reports the same line numbers. No allocation survives a call
 * except the record's own fields.
 */

void csv_record_init(struct csv_record *r)
{
	memset(r, 0, sizeof(*r));
}

static void csv_record_reset(struct csv_record *r)
{
	for (size_t i = 0; i < r->nfields; i++)
		free(r->fields[i]);
	r->nfields = 0;
	r->lines = 0;
	r->blank = false;
}

void csv_record_free(struct csv_record *r)
{
	csv_record_reset(r);
	free(r->fields);
	r->fields = NULL;
	r->cap = 0;
}

static void csv_record_push(struct csv_record *r, struct buf *field)
{
	if (r->nfields == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->fields = xrealloc(r->fields, r->cap * sizeof(*r->fields));
	}
	r->fields[r->nfields++] = field->data ? buf_steal(field) : xstrdup("");
}

int csv_next(const char *data, size_t len, bool eof, size_t *used, struct csv_record *rec,
	     char *err, size_t errlen)
{
	enum { FIELD_START, UNQUOTED, QUOTED, QUOTE_IN_QUOTED } state = FIELD_START;
	struct buf field;
	size_t i = 0, lines = 0, quote_line = 0;
	bool any_quoted = false;
	int rc = 0;

	csv_record_reset(rec);
	buf_init(&field);
	*used = 0;
	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		char c = data[i];
		if (state == QUOTED) {
			if (c == '"') {
				state = QUOTE_IN_QUOTED;
				continue;
			}
			if (c == '\n' || (c == '\r' && (i + 1 >= len || data[i + 1] != '\n')))
				lines++;
			buf_addc(&field, c);
		} else if (c == ',' || c == '\n' || c == '\r') {
			if (c == '\r') {
				/* CRLF: wait for the LF before deciding, unless the input ended. */
				if (i + 1 >= len && !eof)
					goto more;
				if (i + 1 < len && data[i + 1] == '\n')
					i++;
			}
			if (rec->nfields >= CSV_MAX_FIELDS) {
				rc = errf(err, errlen, DRIP_EINVALID, "more than %d fields",
					  CSV_MAX_FIELDS);
				goto out;
			}
			csv_record_push(rec, &field);
			state = FIELD_START;
			if (c != ',') {
				lines++;
				i++;
				goto done;
			}
			continue;
		} else if (c == '"' && state == FIELD_START) {
			state = QUOTED;
			any_quoted = true;
			quote_line = lines;
			continue;
		} else if (c == '"' && state == QUOTE_IN_QUOTED) {
			buf_addc(&field, '"'); /* "" inside quotes is one quote */
			state = QUOTED;
			continue;
		} else if (state == FIELD_START && (c == ' ' || c == '\t')) {
			/* Spaces before an opening quote (a, "b, c") are layout, not text. */
			size_t j = i;
			while (j < len && (data[j] == ' ' || data[j] == '\t'))
				j++;
			if (j == len && !eof)
				goto more;
			if (j < len && data[j] == '"') {
				i = j - 1;
				continue;
			}
			state = UNQUOTED;
			buf_addc(&field, c);
		} else {
			/* Text after a closing quote, or a quote inside unquoted text: kept. */
			state = UNQUOTED;
			buf_addc(&field, c);
		}
		if (field.len > CSV_MAX_FIELD) {
			rc = errf(err, errlen, DRIP_EINVALID, "a field is longer than %d bytes",
				  CSV_MAX_FIELD);
			goto out;
		}
	}
	if (!eof)
		goto more;
	if (state == QUOTED) {
		rc = errf(err, errlen, DRIP_EINVALID, "a quoted field opened %s is never closed",
			  quote_line ? "several lines above" : "on this line");
		goto out;
	}
	if (rec->nfields >= CSV_MAX_FIELDS) {
		rc = errf(err, errlen, DRIP_EINVALID, "more than %d fields", CSV_MAX_FIELDS);
		goto out;
	}
	csv_record_push(rec, &field);
done:
	rec->lines = lines;
	rec->blank = rec->nfields == 1 && !any_quoted && rec->fields[0][0] == '\0';
	*used = i;
	buf_free(&field);
	return 1;
more:
	csv_record_reset(rec);
	buf_free(&field);
	return 0;
out:
	csv_record_reset(rec);
	buf_free(&field);
	*used = 0;
	return rc;
}

size_t csv_skip_bom(const char *data, size_t len)
{
	return len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

static const struct {
	const char *name; /* normalised: lower case, '_' for every run of other characters */
	enum csv_column col;
} csv_aliases[] = {
	{ "email", CSV_COL_EMAIL },
	{ "e_mail", CSV_COL_EMAIL },
	{ "email_address", CSV_COL_EMAIL },
	{ "e_mail_address", CSV_COL_EMAIL },
	{ "first_name", CSV_COL_FIRST_NAME },
	{ "firstname", CSV_COL_FIRST_NAME },
	{ "given_name", CSV_COL_FIRST_NAME },
	{ "last_name", CSV_COL_LAST_NAME },
	{ "lastname", CSV_COL_LAST_NAME },
	{ "surname", CSV_COL_LAST_NAME },
	{ "family_name", CSV_COL_LAST_NAME },
	{ "company", CSV_COL_COMPANY },
	{ "organization", CSV_COL_COMPANY },
	{ "organisation", CSV_COL_COMPANY },
	{ "title", CSV_COL_TITLE },
	{ "job_title", CSV_COL_TITLE },
	{ "tz", CSV_COL_TZ },
	{ "time_zone", CSV_COL_TZ },
	{ "timezone", CSV_COL_TZ },
	{ "stage", CSV_COL_STAGE },
	{ "tags", CSV_COL_TAGS },
	{ "tag", CSV_COL_TAGS },
	{ "id", CSV_COL_READONLY },
	{ "status", CSV_COL_READONLY },
	{ "score", CSV_COL_READONLY },
	{ "created_at", CSV_COL_READONLY },
	{ "updated_at", CSV_COL_READONLY },
};

static const char *const csv_column_names[] = {
	[CSV_COL_ATTR] = "",
	[CSV_COL_EMAIL] = "email",
	[CSV_COL_FIRST_NAME] = "first_name",
	[CSV_COL_LAST_NAME] = "last_name",
	[CSV_COL_COMPANY] = "company",
	[CSV_COL_TITLE] = "title",
	[CSV_COL_TZ] = "tz",
	[CSV_COL_STAGE] = "stage",
	[CSV_COL_TAGS] = "tags",
	[CSV_COL_READONLY] = "",
};

const char *csv_column_name(enum csv_column c)
{
	return (size_t)c < sizeof(csv_column_names) / sizeof(csv_column_names[0])
		       ? csv_column_names[c]
		       : "";
}

enum csv_column csv_column(const char *header, char *attr, size_t attrlen)
{
	char norm[128];
	size_t n = 0;
	bool sep = false;
	for (const unsigned char *p = (const unsigned char *)header; *p && n + 2 < sizeof(norm);
	     p++) {
		if (isalnum(*p) && *p < 0x80) {
			if (sep && n > 0)
				norm[n++] = '_';
			norm[n++] = (char)tolower(*p);
			sep = false;
		} else {
			sep = true;
		}
	}
	norm[n] = '\0';
	for (size_t i = 0; i < sizeof(csv_aliases) / sizeof(csv_aliases[0]); i++)
		if (strcmp(csv_aliases[i].name, norm) == 0) {
			if (attrlen)
				attr[0] = '\0';
			return csv_aliases[i].col;
		}
	if (attrlen)
		snprintf(attr, attrlen, "%s", norm);
	return CSV_COL_ATTR;
}

void csv_write_field(struct buf *out, const char *s, bool guard)
{
	size_t len = strlen(s);
	bool quote =
		strpbrk(s, ",\"\r\n") != NULL || (len > 0 && (s[0] == ' ' || s[len - 1] == ' '));
	bool neutralise = guard && len > 0 && strchr("=+-@\t\r", s[0]) != NULL;
	if (!quote && !neutralise) {
		buf_add(out, s, len);
		return;
	}
	if (quote)
		buf_addc(out, '"');
	if (neutralise)
		buf_addc(out, '\'');
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			buf_addc(out, '"');
		buf_addc(out, *p);
	}
	if (quote)
		buf_addc(out, '"');
}

void csv_write_row(struct buf *out, const char *const *fields, size_t n, bool guard)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_addc(out, ',');
		csv_write_field(out, fields[i] ? fields[i] : "", guard);
	}
	buf_add(out, "\r\n", 2);
}
