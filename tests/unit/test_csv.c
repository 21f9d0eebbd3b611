/* test_csv.c - RFC 4180 reading with every quirk lead import meets, and guarded writing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dripd/csv.h"
#include "testutil.h"

/* Reads every record of `in` (eof known) into a "|"-joined, ";"-separated string. */
static char *read_all(const char *in, size_t len, size_t *lines, int *rc_out)
{
	struct csv_record r;
	struct buf out;
	char err[128];
	size_t pos = csv_skip_bom(in, len), used;
	int rc;
	csv_record_init(&r);
	buf_init(&out);
	*lines = 0;
	while ((rc = csv_next(in + pos, len - pos, true, &used, &r, err, sizeof(err))) == 1) {
		for (size_t i = 0; i < r.nfields; i++)
			buf_printf(&out, "%s%s", i ? "|" : "", r.fields[i]);
		buf_adds(&out, ";");
		*lines += r.lines;
		pos += used;
	}
	*rc_out = rc;
	csv_record_free(&r);
	return buf_steal(&out);
}

static void expect(const char *in, const char *want, size_t want_lines)
{
	size_t lines;
	int rc;
	char *got = read_all(in, strlen(in), &lines, &rc);
	if (rc != 0 || strcmp(got, want) != 0 || lines != want_lines)
		fail_msg("input \"%s\": expected \"%s\" (%zu lines), got \"%s\" (%zu lines, rc %d)",
			 in, want, want_lines, got, lines, rc);
	free(got);
}

static void test_plain_records_split_on_commas_and_line_ends(void **state)
{
	(void)state;
	expect("a,b,c\n1,2,3\n", "a|b|c;1|2|3;", 2);
	expect("a,b\r\n1,2\r\n", "a|b;1|2;", 2);
	expect("a,b\r1,2\r", "a|b;1|2;", 2);
	expect("a,b\n1,2", "a|b;1|2;", 1); /* a last record without a line end */
	expect("a,,c\n,\n", "a||c;|;", 2);
}

static void test_quoted_fields_keep_commas_quotes_and_line_breaks(void **state)
{
	(void)state;
	expect("\"Ruiz, Ana\",\"say \"\"hi\"\"\"\n", "Ruiz, Ana|say \"hi\";", 1);
	expect("\"two\nlines\",x\r\nnext,y\r\n", "two\nlines|x;next|y;", 3);
	expect("\"crlf\r\ninside\",x\r\n", "crlf\r\ninside|x;", 2);
	expect("\"\",\"\"\n", "|;", 1);
}

static void test_a_byte_order_mark_is_skipped(void **state)
{
	(void)state;
	expect("\xEF\xBB\xBF"
	       "email,name\nx@y.org,X\n",
	       "email|name;x@y.org|X;", 2);
}

static void test_lenient_where_nothing_shifts(void **state)
{
	(void)state;
	/* A quote inside unquoted text, and text after a closing quote, are kept. */
	expect("5\" disk,ok\n", "5\" disk|ok;", 1);
	expect("\"a\"b,c\n", "ab|c;", 1);
	/* Spaces before an opening quote are layout; spaces before text are kept. */
	expect("a, \"b,c\", d\n", "a|b,c| d;", 1);
	expect("a,  \"two\r\nlines\"\r\n", "a|two\r\nlines;", 2);
	/* A blank line is a record of one empty field, marked blank. */
	struct csv_record r;
	size_t used;
	csv_record_init(&r);
	assert_int_equal(csv_next("\nx\n", 3, true, &used, &r, NULL, 0), 1);
	assert_true(r.blank);
	assert_int_equal(used, 1);
	assert_int_equal(csv_next("\"\"\n", 3, true, &used, &r, NULL, 0), 1);
	assert_false(r.blank);
	csv_record_free(&r);
}

static void test_an_unclosed_quote_is_an_error_not_a_shift(void **state)
{
	(void)state;
	struct csv_record r;
	char err[128] = "";
	size_t used = 99;
	csv_record_init(&r);
	assert_rc(csv_next("a,\"open\nmore\n", 13, true, &used, &r, err, sizeof(err)),
		  DRIP_EINVALID);
	assert_contains(err, "never closed");
	assert_int_equal(used, 0);
	/* Without eof it only asks for more. */
	assert_int_equal(csv_next("a,\"open\nmore\n", 13, false, &used, &r, err, sizeof(err)), 0);
	csv_record_free(&r);
}

static void test_streaming_waits_for_whole_records(void **state)
{
	(void)state;
	const char *in = "a,\"b\nc\"\r\nd,e\r\n";
	struct csv_record r;
	size_t used;
	csv_record_init(&r);
	/* Every prefix short of the first record's end needs more input. */
	for (size_t n = 0; n < 9; n++)
		assert_int_equal(csv_next(in, n, false, &used, &r, NULL, 0), 0);
	/* A CR at the very end may be half of a CRLF: wait for the next byte. */
	assert_int_equal(csv_next(in, 8, false, &used, &r, NULL, 0), 0);
	assert_int_equal(csv_next(in, 9, false, &used, &r, NULL, 0), 1);
	assert_int_equal(used, 9);
	assert_int_equal(r.nfields, 2);
	assert_string_equal(r.fields[1], "b\nc");
	assert_int_equal(r.lines, 2);
	csv_record_free(&r);
}

static void test_limits_are_errors(void **state)
{
	(void)state;
	struct csv_record r;
	char err[128];
	size_t used;
	struct buf big;
	buf_init(&big);
	for (int i = 0; i < CSV_MAX_FIELDS + 1; i++)
		buf_adds(&big, "x,");
	buf_adds(&big, "\n");
	csv_record_init(&r);
	assert_rc(csv_next(big.data, big.len, true, &used, &r, err, sizeof(err)), DRIP_EINVALID);
	assert_contains(err, "fields");
	big.len = 0;
	for (int i = 0; i < CSV_MAX_FIELD + 10; i++)
		buf_addc(&big, 'y');
	assert_rc(csv_next(big.data, big.len, true, &used, &r, err, sizeof(err)), DRIP_EINVALID);
	assert_contains(err, "longer than");
	buf_free(&big);
	csv_record_free(&r);
}

static void test_headers_map_by_name_case_insensitively(void **state)
{
	(void)state;
	char attr[64];
	assert_int_equal(csv_column("Email", attr, sizeof(attr)), CSV_COL_EMAIL);
	assert_int_equal(csv_column(" E-mail Address ", attr, sizeof(attr)), CSV_COL_EMAIL);
	assert_int_equal(csv_column("First Name", attr, sizeof(attr)), CSV_COL_FIRST_NAME);
	assert_int_equal(csv_column("first_name", attr, sizeof(attr)), CSV_COL_FIRST_NAME);
	assert_int_equal(csv_column("LAST NAME", attr, sizeof(attr)), CSV_COL_LAST_NAME);
	assert_int_equal(csv_column("Time Zone", attr, sizeof(attr)), CSV_COL_TZ);
	assert_int_equal(csv_column("tz", attr, sizeof(attr)), CSV_COL_TZ);
	assert_int_equal(csv_column("Job Title", attr, sizeof(attr)), CSV_COL_TITLE);
	assert_int_equal(csv_column("Stage", attr, sizeof(attr)), CSV_COL_STAGE);
	assert_int_equal(csv_column("Tags", attr, sizeof(attr)), CSV_COL_TAGS);
	assert_int_equal(csv_column("Lead Source", attr, sizeof(attr)), CSV_COL_ATTR);
	assert_string_equal(attr, "lead_source");
	assert_int_equal(csv_column("  ##  ", attr, sizeof(attr)), CSV_COL_ATTR);
	assert_string_equal(attr, "");
	assert_string_equal(csv_column_name(CSV_COL_FIRST_NAME), "first_name");
}

static void test_writing_quotes_what_needs_it_and_guards_formulas(void **state)
{
	(void)state;
	struct buf out;
	const char *row[] = { "plain", "a,b", "say \"hi\"", "two\nlines", "=1+2",
			      "+33 1", "-x",  "@SUM(A1)",   "\tx",        " pad" };
	buf_init(&out);
	csv_write_row(&out, row, sizeof(row) / sizeof(row[0]), true);
	assert_string_equal(out.data, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",'=1+2,"
				      "'+33 1,'-x,'@SUM(A1),'\tx,\" pad\"\r\n");
	out.len = 0;
	csv_write_row(&out, row + 4, 1, false);
	assert_string_equal(out.data, "=1+2\r\n");
	/* A carriage return first is both quoted and guarded. */
	out.len = 0;
	csv_write_field(&out, "\rcmd", true);
	assert_string_equal(out.data, "\"'\rcmd\"");
	buf_free(&out);
}

static void test_written_rows_read_back_the_same(void **state)
{
	(void)state;
	const char *row[] = { "a,b", "\"q\"", "x\r\ny", "", " s " };
	struct buf out;
	struct csv_record r;
	size_t used;
	buf_init(&out);
	csv_record_init(&r);
	csv_write_row(&out, row, 5, false);
	assert_int_equal(csv_next(out.data, out.len, false, &used, &r, NULL, 0), 1);
	assert_int_equal(used, out.len);
	assert_int_equal(r.nfields, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(r.fields[i], row[i]);
	csv_record_free(&r);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_records_split_on_commas_and_line_ends),
		cmocka_unit_test(test_quoted_fields_keep_commas_quotes_and_line_breaks),
		cmocka_unit_test(test_a_byte_order_mark_is_skipped),
		cmocka_unit_test(test_lenient_where_nothing_shifts),
		cmocka_unit_test(test_an_unclosed_quote_is_an_error_not_a_shift),
		cmocka_unit_test(test_streaming_waits_for_whole_records),
		cmocka_unit_test(test_limits_are_errors),
		cmocka_unit_test(test_headers_map_by_name_case_insensitively),
		cmocka_unit_test(test_writing_quotes_what_needs_it_and_guards_formulas),
		cmocka_unit_test(test_written_rows_read_back_the_same),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
