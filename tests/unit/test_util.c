/* test_util.c - the growable buffer and the random bytes (per-thread pool, fork). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dripd/util.h"
#include "testutil.h"

static void test_printf_appends_short_and_long_text(void **state)
{
	(void)state;
	struct buf b;
	char big[5000];
	buf_init(&b);
	buf_printf(&b, "%s-%d", "a", 7);
	assert_string_equal(b.data, "a-7");
	assert_int_equal(b.len, 3);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	/* Longer than the room there is: formatted again after growing. */
	buf_printf(&b, "[%s]", big);
	assert_int_equal(b.len, 3 + 2 + sizeof(big) - 1);
	assert_int_equal(strlen(b.data), b.len);
	assert_true(b.data[3] == '[' && b.data[b.len - 1] == ']' && b.data[b.len - 2] == 'x');
	/* Exactly filling the room, then one more byte. */
	for (int i = 0; i < 300; i++)
		buf_printf(&b, "%c", 'a' + i % 26);
	assert_int_equal(strlen(b.data), b.len);
	assert_int_equal(b.data[b.len - 1], 'a' + 299 % 26);
	char *s = xasprintf("%d", 42);
	assert_string_equal(s, "42");
	free(s);
	buf_free(&b);
}

static void test_addc_and_html_escape(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	for (int i = 0; i < 1000; i++)
		buf_addc(&b, (char)('a' + i % 26));
	assert_int_equal(b.len, 1000);
	assert_int_equal(strlen(b.data), 1000);
	buf_free(&b);
	buf_add_html(&b, "");
	assert_null(b.data);
	buf_add_html(&b, "<a href=\"x\">Tom & Jerry's</a>");
	assert_string_equal(b.data, "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;");
	buf_free(&b);
	buf_add_html(&b, "plain");
	assert_string_equal(b.data, "plain");
	buf_add_html(&b, "&&");
	assert_string_equal(b.data, "plain&amp;&amp;");
	buf_free(&b);
}

static void test_a_page_escapes_its_title_and_paragraph(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_add_page_start(&b, "Tom & <Jerry>", "Say \"hi\"");
	buf_adds(&b, " and more</p>");
	buf_add_page_end(&b);
	assert_true(strncmp(b.data, "<!doctype html>\n", 16) == 0);
	assert_non_null(strstr(b.data, "<title>Tom &amp; &lt;Jerry&gt;</title>"));
	assert_non_null(strstr(b.data, "<main><h1>Tom &amp; &lt;Jerry&gt;</h1>"
				       "<p>Say &quot;hi&quot; and more</p>"
				       "</main></body></html>\n"));
	assert_null(strstr(b.data, "<Jerry>"));
	buf_free(&b);
}

static void test_random_bytes_do_not_repeat(void **state)
{
	(void)state;
	/* More than one pool's worth, in the sizes dripd asks for. */
	char seen[200][25];
	for (int i = 0; i < 200; i++) {
		util_random_hex(seen[i], 12);
		assert_int_equal(strlen(seen[i]), 24);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(seen[i], seen[j]);
	}
	unsigned char big[4096], zero[4096] = { 0 };
	util_random(big, sizeof(big));
	assert_memory_not_equal(big, zero, sizeof(big));
}

static void test_a_forked_child_does_not_repeat_its_parents_bytes(void **state)
{
	(void)state;
	char first[17], parent[17], child[17] = "";
	int fds[2];
	util_random_hex(first, 8); /* the pool is filled: what follows comes from it */
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char mine[17];
		util_random_hex(mine, 8);
		ssize_t w = write(fds[1], mine, 16);
		_exit(w == 16 ? 0 : 1);
	}
	close(fds[1]);
	util_random_hex(parent, 8);
	assert_int_equal(read(fds[0], child, 16), 16);
	close(fds[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_string_not_equal(parent, child);
}

static void *random_thread(void *arg)
{
	util_random_hex(arg, 8);
	return NULL;
}

static void test_threads_get_their_own_bytes(void **state)
{
	(void)state;
	char mine[17], theirs[4][17];
	pthread_t th[4];
	util_random_hex(mine, 8);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, random_thread, theirs[i]), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++) {
		assert_string_not_equal(mine, theirs[i]);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(theirs[i], theirs[j]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_printf_appends_short_and_long_text),
		cmocka_unit_test(test_addc_and_html_escape),
		cmocka_unit_test(test_a_page_escapes_its_title_and_paragraph),
		cmocka_unit_test(test_random_bytes_do_not_repeat),
		cmocka_unit_test(test_a_forked_child_does_not_repeat_its_parents_bytes),
		cmocka_unit_test(test_threads_get_their_own_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
