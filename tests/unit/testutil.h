/* testutil.h - what the unit tests share: assertions, temp folders, files, a dripd fixture.
 *
 * Include it after <cmocka.h> (and so after <stdarg.h> <stddef.h> <stdint.h> <setjmp.h>).
 * Everything here is a macro or a static inline function, so a test program compiles only
 * what it uses and CMakeLists.txt needs no extra source. Helpers that can go wrong fail the
 * running test (fail_msg) rather than return an error; that works in setup and teardown
 * functions too.
 */
#ifndef DRIPD_TESTUTIL_H
#define DRIPD_TESTUTIL_H

#ifndef CMOCKA_H_
#error "include <cmocka.h> before testutil.h"
#endif

#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "dripd/clock.h"
#include "dripd/config.h"
#include "dripd/content.h"
#include "dripd/dripd.h"
#include "dripd/error.h"
#include "dripd/store.h"
#include "dripd/util.h"

/* ---- assertions ----------------------------------------------------------------------- */

#define assert_contains(hay, needle)                                                           \
	do {                                                                                   \
		const char *h_ = (hay), *n_ = (needle);                                        \
		if (!h_ || !strstr(h_, n_))                                                    \
			fail_msg("expected \"%s\" to contain \"%s\"", h_ ? h_ : "(null)", n_); \
	} while (0)

#define assert_not_contains(hay, needle)                                            \
	do {                                                                        \
		const char *h_ = (hay), *n_ = (needle);                             \
		if (!h_)                                                            \
			fail_msg("expected a string without \"%s\", got NULL", n_); \
		if (strstr(h_, n_))                                                 \
			fail_msg("expected \"%s\" not to contain \"%s\"", h_, n_);  \
	} while (0)

/* "0 (ok)", "-3 (exists)": a return code as a failure message should show it. */
static inline const char *testutil_rc_name(int rc, char *out, size_t outlen)
{
	snprintf(out, outlen, "%d (%s)", rc, rc == 0 ? "ok" : drip_errname(rc));
	return out;
}

/* Checks a 0 / DRIP_E* return code; a failure shows both as testutil_rc_name does. */
#define assert_rc(expr, want)                                                        \
	do {                                                                         \
		char got_[48], want_[48];                                            \
		assert_string_equal(testutil_rc_name((expr), got_, sizeof(got_)),    \
				    testutil_rc_name((want), want_, sizeof(want_))); \
	} while (0)

/* ---- temp folders and files ----------------------------------------------------------- */

/* Makes a fresh folder "$TMPDIR/dripd-test-TAG-XXXXXX" (/tmp when TMPDIR is unset or
 * empty) and puts its path in buf; fails the test if the path does not fit or mkdtemp
 * fails. Returns buf. Remove it with testutil_rmtree. */
static inline char *testutil_mkdtemp(char *buf, size_t n, const char *tag)
{
	const char *base = getenv("TMPDIR");
	int len = snprintf(buf, n, "%s/dripd-test-%s-XXXXXX", base && *base ? base : "/tmp", tag);
	if (len < 0 || (size_t)len >= n)
		fail_msg("the temp folder for \"%s\" under \"%s\" needs more than %zu bytes", tag,
			 base && *base ? base : "/tmp", n);
	if (!mkdtemp(buf))
		fail_msg("mkdtemp %s failed: %s", buf, strerror(errno));
	return buf;
}

static inline int testutil_rmtree_cb_(const char *path, const struct stat *sb, int flag,
				      struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

/* Removes path and everything below it, without following links (rm -rf); 0 or -1. */
static inline int testutil_rmtree(const char *path)
{
	return nftw(path, testutil_rmtree_cb_, 16, FTW_DEPTH | FTW_PHYS);
}

/* The end of a teardown whose fixture holds a testutil_mkdtemp folder: removes dir with
 * everything in it, frees fixture, and returns what cmocka wants (0, or -1 if dir could
 * not be removed). */
static inline int testutil_rmtree_free(const char *dir, void *fixture)
{
	int rc = testutil_rmtree(dir);
	free(fixture);
	return rc == 0 ? 0 : -1;
}

/* Creates or replaces the file path with len bytes of data; fails the test if it cannot. */
static inline void testutil_write_bytes(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");
	if (!fp)
		fail_msg("cannot write %s: %s", path, strerror(errno));
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Creates or replaces the file path with text ("" for an empty file). */
static inline void testutil_write_file(const char *path, const char *text)
{
	testutil_write_bytes(path, text, strlen(text));
}

/* The whole file, malloc'd and NUL-terminated (free it); its size in *len unless len is
 * NULL. Fails the test if the file cannot be read. */
static inline char *testutil_read_file_len(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	size_t cap = 4096, n = 0, got;
	char *data = xmalloc(cap);
	while ((got = fread(data + n, 1, cap - 1 - n, fp)) > 0) {
		n += got;
		if (n == cap - 1) {
			cap *= 2;
			data = xrealloc(data, cap);
		}
	}
	bool failed = ferror(fp) != 0;
	fclose(fp);
	if (failed)
		fail_msg("cannot read %s", path);
	data[n] = '\0';
	if (len)
		*len = n;
	return data;
}

static inline char *testutil_read_file(const char *path)
{
	return testutil_read_file_len(path, NULL);
}

/* SRC/rel in buf, SRC being the source tree: $DRIPD_SOURCE_DIR (ctest sets it) or, for a
 * test run by hand, the folder that holds tests/unit/. Returns buf. */
static inline const char *testutil_source_path(char *buf, size_t n, const char *rel)
{
	const char *src = getenv("DRIPD_SOURCE_DIR");
	int len;
	if (src && *src) {
		len = snprintf(buf, n, "%s/%s", src, rel);
	} else {
		const char *file = __FILE__;
		const char *end = strstr(file, "/tests/unit/");
		if (!end)
			fail_msg("set DRIPD_SOURCE_DIR to the source tree");
		len = snprintf(buf, n, "%.*s/%s", (int)(end - file), file, rel);
	}
	if (len < 0 || (size_t)len >= n)
		fail_msg("the path of %s in the source tree needs more than %zu bytes", rel, n);
	return buf;
}

/* ---- store, content and a struct dripd ------------------------------------------------ */

/* store_open, failing the test with the store's error; ":memory:" for a private database. */
/* Runs one statement on the database file at `path` through a connection of the test's
 * own and returns the first column of its first row as text (fails the test without one). */
static inline char *testutil_sql_text(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char *out = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	out = xstrdup(sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
	sqlite3_finalize(s);
	sqlite3_close(db);
	return out;
}

/* Runs SQL statements on the database file at `path` (creating it) through a connection of
 * the test's own. */
static inline void testutil_sql_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	assert_int_equal(
		sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
		SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static inline struct store *testutil_store_open(const char *path)
{
	char err[512] = "";
	struct store *st = store_open(path, err, sizeof(err));
	if (!st)
		fail_msg("store_open(%s) failed: %s", path, err);
	return st;
}

/* The sample content of the source tree (content/), loaded; fails the test if it does not
 * load. */
static inline struct content *testutil_sample_content(void)
{
	char dir[1024], err[512] = "";
	testutil_source_path(dir, sizeof(dir), "content");
	struct content *c = content_load(dir, err, sizeof(err));
	if (!c)
		fail_msg("content_load %s: %s", dir, err);
	return c;
}

/* Fills in the parts of a struct dripd every daemon-level test needs: cfg (which d now
 * owns), a store at db (":memory:" or a file), the sample content and a test clock at
 * rate 1 that starts at the real time. The rest of *d is the caller's. */
static inline void testutil_dripd_init(struct dripd *d, struct config *cfg, const char *db)
{
	d->cfg = cfg;
	d->store = testutil_store_open(db);
	d->content = testutil_sample_content();
	clock_init(&d->clock, true, 1.0, 0, clock_wall_ms(), clock_mono_ms());
}

/* Frees what testutil_dripd_init set up (not d itself). */
static inline void testutil_dripd_fini(struct dripd *d)
{
	store_close(d->store);
	content_unref(d->content);
	config_free(d->cfg);
}

/* ---- a lead's touches ----------------------------------------------------------------- */

#define TESTUTIL_TOUCHES_MAX 8

/* A lead's touches as store_touches_for_lead walks them: n counts them all, t keeps
 * copies of the first TESTUTIL_TOUCHES_MAX. */
struct testutil_touches {
	int n;
	struct touch t[TESTUTIL_TOUCHES_MAX];
};

static inline int testutil_collect_touch(void *arg, const struct touch *t)
{
	struct testutil_touches *w = arg;
	if (w->n < TESTUTIL_TOUCHES_MAX) {
		w->t[w->n] = *t;
		w->t[w->n].sequence = xstrdup(t->sequence);
		w->t[w->n].step = xstrdup(t->step);
		w->t[w->n].state = xstrdup(t->state);
		w->t[w->n].message_id = xstrdup(t->message_id);
		w->t[w->n].last_error = xstrdup(t->last_error);
		w->t[w->n].account = xstrdup(t->account);
	}
	w->n++;
	return 0;
}

/* Collects the touches of lead into *w; free them with testutil_touches_clear. */
static inline void testutil_touches_of(struct store *st, int64_t lead, struct testutil_touches *w)
{
	memset(w, 0, sizeof(*w));
	assert_rc(store_touches_for_lead(st, lead, testutil_collect_touch, w), 0);
}

static inline void testutil_touches_clear(struct testutil_touches *w)
{
	for (int i = 0; i < w->n && i < TESTUTIL_TOUCHES_MAX; i++)
		store_touch_clear(&w->t[i]);
	w->n = 0;
}

/* ---- a lead's events ------------------------------------------------------------------ */

#define TESTUTIL_EVENTS_MAX 8

/* A lead's events as store_events_for_lead walks them: n counts them all (up to
 * stop_after when that is not 0, where the walk is told to stop), the arrays keep the first
 * TESTUTIL_EVENTS_MAX. */
struct testutil_events {
	int n;
	int stop_after; /* 0: never */
	char kind[TESTUTIL_EVENTS_MAX][16];
	char detail[TESTUTIL_EVENTS_MAX][512];
	int64_t at[TESTUTIL_EVENTS_MAX];
	int64_t touch[TESTUTIL_EVENTS_MAX];
};

static inline int testutil_collect_event(void *arg, const struct store_event *ev)
{
	struct testutil_events *w = arg;
	if (w->n < TESTUTIL_EVENTS_MAX) {
		snprintf(w->kind[w->n], sizeof(w->kind[0]), "%s", ev->kind);
		snprintf(w->detail[w->n], sizeof(w->detail[0]), "%s", ev->detail);
		w->at[w->n] = ev->at;
		w->touch[w->n] = ev->touch_id;
	}
	w->n++;
	return w->stop_after && w->n >= w->stop_after;
}

/* Collects all the events of lead into *w. */
static inline void testutil_events_of(struct store *st, int64_t lead, struct testutil_events *w)
{
	memset(w, 0, sizeof(*w));
	assert_rc(store_events_for_lead(st, lead, testutil_collect_event, w), 0);
}

#endif
