/* test_signup.c - what a signup form may send: parsing, limits, hostile values, the honeypot. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/error.h"
#include "dripd/signup.h"
#include "testutil.h"

#define FORM "application/x-www-form-urlencoded"

static int parse(const char *ctype, const char *body, struct signup_form *f, char *err)
{
	return signup_parse(ctype, body, strlen(body), "website", f, err, 128);
}

static void test_a_plain_form_is_read(void **state)
{
	(void)state;
	struct signup_form f;
	char err[128] = "";
	int rc = parse(FORM,
		       "email=maya%40example.org&first_name=Ma+ya&company=Acme%20%26%20Co"
		       "&form=news&consent=2026-01&tags=a,b&tags=c&website=&extra=1",
		       &f, err);
	if (rc)
		fail_msg("expected the form to be read, got \"%s\"", err);
	assert_string_equal(f.email, "maya@example.org");
	assert_string_equal(f.first_name, "Ma ya");
	assert_string_equal(f.company, "Acme & Co");
	assert_string_equal(f.form, "news");
	assert_string_equal(f.consent, "2026-01");
	assert_int_equal(f.ntags, 3);
	assert_string_equal(f.tags[2], "c");
	assert_false(f.honeypot);
	assert_false(f.json);
}

static void test_json_is_read(void **state)
{
	(void)state;
	struct signup_form f;
	char err[128] = "";
	assert_int_equal(parse("application/json; charset=utf-8",
			       "{\"email\":\"a@example.org\",\"form\":\"news\",\"tags\":[\"x\"]}",
			       &f, err),
			 0);
	assert_true(f.json);
	assert_int_equal(f.ntags, 1);
	assert_int_equal(parse("application/json", "{\"email\":1,\"form\":\"news\"}", &f, err),
			 DRIP_EINVALID);
	assert_int_equal(parse("application/json", "[1]", &f, err), DRIP_EINVALID);
}

static void test_the_honeypot_marks_a_bot(void **state)
{
	(void)state;
	struct signup_form f;
	char err[128] = "";
	assert_int_equal(
		parse(FORM, "email=a%40example.org&form=news&website=http%3A%2F%2Fx", &f, err), 0);
	assert_true(f.honeypot);
}

static void test_hostile_values_are_refused_without_echo(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"email=a%40example.org%0D%0ABcc%3A+x%40example.org&form=news",
		"email=a%40example.org&form=news&first_name=A%0AB",
		"email=a%40example.org&form=news&company=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
		"email=a%40example.org&form=news&company=%00x",
		"email=a%40example.org&form=news&tags=Not+Ok",
		"email=not-an-address&form=news",
		"email=a%40example.org",
		"email=a%40example.org&form=news&first_name=%ZZ",
		"email=a%40example.org&form=news&first_name=%4",
		"email=a%40example.org&form=news&noequals",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct signup_form f;
		char err[128] = "";
		if (parse(FORM, bad[i], &f, err) != DRIP_EINVALID)
			fail_msg("expected \"%s\" to be refused", bad[i]);
		assert_null(strstr(err, "script"));
		assert_null(strstr(err, "Bcc"));
	}
	char big[400];
	memset(big, 'a', sizeof(big));
	memcpy(big, "email=a%40example.org&form=news&first_name=", 43);
	big[sizeof(big) - 1] = '\0';
	struct signup_form f;
	char err[128] = "";
	assert_int_equal(parse(FORM, big, &f, err), DRIP_EINVALID);
	assert_non_null(strstr(err, "too long"));
	assert_int_equal(parse("text/plain", "email=a%40example.org&form=news", &f, err),
			 DRIP_EINVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_plain_form_is_read),
		cmocka_unit_test(test_json_is_read),
		cmocka_unit_test(test_the_honeypot_marks_a_bot),
		cmocka_unit_test(test_hostile_values_are_refused_without_echo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
