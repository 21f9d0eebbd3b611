/* test_mailer.c - the message as SMTP's DATA carries it (mailer_dot_stuff). The SMTP
 * dialogue itself is tested against real servers (tests/integration/test_smtp.py). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dripd/mailer.h"
#include "dripd/util.h"

/* Stuffs `in` into a fresh buffer and compares the result with `want`. */
static void expect_stuffed(const char *in, const char *want)
{
	char *buf = NULL;
	size_t cap = 0;
	size_t len = mailer_dot_stuff(in, strlen(in), &buf, &cap);
	if (len != strlen(want) || memcmp(buf, want, len) != 0)
		fail_msg("stuffing \"%s\": expected \"%s\", got \"%.*s\"", in, want, (int)len, buf);
	assert_true(len <= cap);
	free(buf);
}

static void test_a_message_without_leading_dots_only_gets_the_final_dot(void **state)
{
	(void)state;
	expect_stuffed("Subject: x\r\n\r\nHello.\r\nA dot. In the middle.\r\n",
		       "Subject: x\r\n\r\nHello.\r\nA dot. In the middle.\r\n.\r\n");
}

static void test_lines_that_begin_with_a_dot_get_a_second_one(void **state)
{
	(void)state;
	/* The first line, a line after a CRLF, a line that is only a dot, and two dots. */
	expect_stuffed(".first\r\nx\r\n.\r\n..two\r\n", "..first\r\nx\r\n..\r\n...two\r\n.\r\n");
}

static void test_a_last_line_without_its_crlf_gets_one_before_the_dot(void **state)
{
	(void)state;
	expect_stuffed("a\r\nno end", "a\r\nno end\r\n.\r\n");
	expect_stuffed(".", "..\r\n.\r\n");
	expect_stuffed("", "\r\n.\r\n");
}

static void test_many_dots_grow_the_buffer(void **state)
{
	(void)state;
	/* 3,000 lines of "." more than fill the first buffer (len + len / 40 + 8). */
	size_t lines = 3000;
	char *in = xmalloc(lines * 3 + 1), *want = xmalloc(lines * 4 + 4);
	for (size_t i = 0; i < lines; i++) {
		memcpy(in + i * 3, ".\r\n", 3);
		memcpy(want + i * 4, "..\r\n", 4);
	}
	in[lines * 3] = '\0';
	memcpy(want + lines * 4, ".\r\n", 4);
	expect_stuffed(in, want);
	free(in);
	free(want);
}

static void test_the_buffer_is_reused_for_the_next_message(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t cap = 0;
	size_t len = mailer_dot_stuff("a long first message\r\n", 22, &buf, &cap);
	assert_int_equal(len, 25);
	char *first = buf;
	size_t first_cap = cap;
	len = mailer_dot_stuff(".b\r\n", 4, &buf, &cap);
	assert_int_equal(len, 8);
	assert_memory_equal(buf, "..b\r\n.\r\n", 8);
	assert_ptr_equal(buf, first);
	assert_int_equal(cap, first_cap);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_message_without_leading_dots_only_gets_the_final_dot),
		cmocka_unit_test(test_lines_that_begin_with_a_dot_get_a_second_one),
		cmocka_unit_test(test_a_last_line_without_its_crlf_gets_one_before_the_dot),
		cmocka_unit_test(test_many_dots_grow_the_buffer),
		cmocka_unit_test(test_the_buffer_is_reused_for_the_next_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
