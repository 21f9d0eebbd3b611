/* test_maildir.c - delivery into a Maildir: tmp/ then new/, unique names, clean failures. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "dripd/error.h"
#include "dripd/maildir.h"
#include "dripd/util.h"

struct fixture {
	char root[128]; /* a fresh folder per test */
	char md[192]; /* root/Maildir */
	char err[1024];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	testutil_mkdtemp(f->root, sizeof(f->root), "maildir");
	snprintf(f->md, sizeof(f->md), "%s/Maildir", f->root);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	return testutil_rmtree_free(f->root, f);
}

static bool is_dir(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The number of entries (not . or ..) in dir/sub. */
static int count_entries(const char *dir, const char *sub)
{
	char path[256];
	int n = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	DIR *d = opendir(path);
	if (!d)
		fail_msg("cannot open %s", path);
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void test_prepare_creates_tmp_new_and_cur(void **state)
{
	struct fixture *f = *state;
	char path[256];
	assert_int_equal(maildir_prepare(f->md, f->err, sizeof(f->err)), 0);
	static const char *const subs[] = { "tmp", "new", "cur" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", f->md, subs[i]);
		if (!is_dir(path))
			fail_msg("expected the folder %s", path);
	}
	/* Preparing an existing Maildir is fine and keeps what is there. */
	snprintf(path, sizeof(path), "%s/cur/keep", f->md);
	testutil_write_file(path, "");
	assert_int_equal(maildir_prepare(f->md, f->err, sizeof(f->err)), 0);
	assert_int_equal(count_entries(f->md, "cur"), 1);
}

static void test_prepare_reports_a_folder_it_cannot_create(void **state)
{
	struct fixture *f = *state;
	char path[256];
	snprintf(path, sizeof(path), "%s/missing/parent/Maildir", f->root);
	assert_int_equal(maildir_prepare(path, f->err, sizeof(f->err)), DRIP_EIO);
	assert_contains(f->err, "maildir: cannot create ");
	assert_contains(f->err, path);

	/* A regular file where the Maildir should be. */
	snprintf(path, sizeof(path), "%s/plainfile", f->root);
	testutil_write_file(path, "");
	assert_int_equal(maildir_prepare(path, f->err, sizeof(f->err)), DRIP_EIO);
	assert_contains(f->err, path);
}

static void test_deliver_puts_an_lf_file_in_new_and_nothing_in_tmp(void **state)
{
	struct fixture *f = *state;
	static const char msg[] = "From: a@example.com\r\nSubject: hi\r\n\r\nline one\r\n"
				  "a lone\rcarriage return stays\r\n";
	static const char want[] = "From: a@example.com\nSubject: hi\n\nline one\n"
				   "a lone\rcarriage return stays\n";
	char name[256] = "", path[512];
	size_t len;
	assert_int_equal(maildir_prepare(f->md, f->err, sizeof(f->err)), 0);
	int rc = maildir_deliver(f->md, msg, sizeof(msg) - 1, name, sizeof(name), f->err,
				 sizeof(f->err));
	if (rc != 0)
		fail_msg("expected delivery, got %d: %s", rc, f->err);
	assert_true(strlen(name) > 0);
	assert_null(strchr(name, '/'));
	assert_null(strchr(name, ':'));
	assert_int_equal(count_entries(f->md, "new"), 1);
	assert_int_equal(count_entries(f->md, "tmp"), 0);
	assert_int_equal(count_entries(f->md, "cur"), 0);
	snprintf(path, sizeof(path), "%s/new/%s", f->md, name);
	char *got = testutil_read_file_len(path, &len);
	assert_int_equal(len, sizeof(want) - 1);
	assert_string_equal(got, want);
	free(got);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
}

static void test_deliver_writes_only_len_bytes(void **state)
{
	struct fixture *f = *state;
	char name[256] = "", path[512];
	size_t len;
	assert_int_equal(maildir_prepare(f->md, f->err, sizeof(f->err)), 0);
	assert_int_equal(
		maildir_deliver(f->md, "abc\r\ndef", 4, name, sizeof(name), f->err, sizeof(f->err)),
		0);
	snprintf(path, sizeof(path), "%s/new/%s", f->md, name);
	char *got = testutil_read_file_len(path, &len);
	/* A CR whose LF lies beyond len is kept. */
	assert_int_equal(len, 4);
	assert_memory_equal(got, "abc\r", 4);
	free(got);
}

struct worker {
	const char *dir;
	int id;
	char names[50][256];
	int failures;
	char err[512];
};

static void *deliver_many(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 50; i++) {
		char *msg = xasprintf("Subject: %d/%d\r\n\r\nbody\r\n", w->id, i);
		if (maildir_deliver(w->dir, msg, strlen(msg), w->names[i], sizeof(w->names[i]),
				    w->err, sizeof(w->err)) != 0)
			w->failures++;
		free(msg);
	}
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_concurrent_deliveries_get_unique_files(void **state)
{
	struct fixture *f = *state;
	struct worker *w = calloc(4, sizeof(*w));
	pthread_t th[4];
	const char *all[200];
	assert_int_equal(maildir_prepare(f->md, f->err, sizeof(f->err)), 0);
	for (int i = 0; i < 4; i++) {
		w[i].dir = f->md;
		w[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, deliver_many, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 4; i++)
		if (w[i].failures)
			fail_msg("thread %d: %d deliveries failed: %s", i, w[i].failures, w[i].err);
	for (int i = 0; i < 200; i++)
		all[i] = w[i / 50].names[i % 50];
	qsort(all, 200, sizeof(all[0]), cmp_str);
	for (int i = 1; i < 200; i++)
		if (strcmp(all[i - 1], all[i]) == 0)
			fail_msg("two deliveries got the same name %s", all[i]);
	assert_int_equal(count_entries(f->md, "new"), 200);
	assert_int_equal(count_entries(f->md, "tmp"), 0);
	free(w);
}

static void test_delivery_into_an_unusable_new_fails_cleanly(void **state)
{
	struct fixture *f = *state;
	char path[256], name[256] = "untouched";
	assert_int_equal(maildir_prepare(f->md, f->err, sizeof(f->err)), 0);
	/* new/ as a regular file: refuses even for root, unlike a chmod. */
	snprintf(path, sizeof(path), "%s/new", f->md);
	assert_int_equal(rmdir(path), 0);
	testutil_write_file(path, "");
	int rc = maildir_deliver(f->md, "Subject: x\r\n\r\nbody\r\n", 20, name, sizeof(name),
				 f->err, sizeof(f->err));
	assert_int_equal(rc, DRIP_EIO);
	assert_contains(f->err, f->md);
	assert_contains(f->err, "into new/");
	assert_string_equal(name, "untouched");
	assert_int_equal(count_entries(f->md, "tmp"), 0);
}

static void test_delivery_without_tmp_fails_with_the_path(void **state)
{
	struct fixture *f = *state;
	char path[256];
	assert_int_equal(maildir_prepare(f->md, f->err, sizeof(f->err)), 0);
	snprintf(path, sizeof(path), "%s/tmp", f->md);
	assert_int_equal(rmdir(path), 0);
	int rc = maildir_deliver(f->md, "x\r\n", 3, NULL, 0, f->err, sizeof(f->err));
	assert_int_equal(rc, DRIP_EIO);
	assert_contains(f->err, "maildir: cannot write ");
	assert_contains(f->err, path);
	assert_int_equal(count_entries(f->md, "new"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prepare_creates_tmp_new_and_cur, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_prepare_reports_a_folder_it_cannot_create,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_deliver_puts_an_lf_file_in_new_and_nothing_in_tmp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_writes_only_len_bytes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_deliveries_get_unique_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_delivery_into_an_unusable_new_fails_cleanly,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_delivery_without_tmp_fails_with_the_path,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
