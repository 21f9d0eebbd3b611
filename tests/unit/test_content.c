/* test_content.c - loading and validating content/: the sample, then broken copies of it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "dripd/content.h"
#include "dripd/error.h"

struct fixture {
	char root[128];
	char dir[192]; /* root/content, a copy of the sample */
	char err[1024];
};

static const char *sample_dir(void)
{
	static char path[1024];
	return testutil_source_path(path, sizeof(path), "content");
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char cmd[2048];
	testutil_mkdtemp(f->root, sizeof(f->root), "content");
	snprintf(f->dir, sizeof(f->dir), "%s/content", f->root);
	snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", sample_dir(), f->dir);
	if (system(cmd) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	return testutil_rmtree_free(f->root, f);
}

/* Writes `text` to DIR/rel (replacing it) and returns the full path in `path`. */
static void put(struct fixture *f, const char *rel, const char *text, char *path, size_t pathlen)
{
	char local[512];
	if (!path) {
		path = local;
		pathlen = sizeof(local);
	}
	snprintf(path, pathlen, "%s/%s", f->dir, rel);
	testutil_write_file(path, text);
}

/* Loads the copy, which must be refused with an error starting "FILE:LINE: " and naming what. */
static void expect_error(struct fixture *f, const char *file, int line, const char *what)
{
	char prefix[600];
	f->err[0] = '\0';
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (c) {
		content_unref(c);
		fail_msg("expected the content to be refused (%s)", what);
	}
	snprintf(prefix, sizeof(prefix), "%s:%d: ", file, line);
	if (strncmp(f->err, prefix, strlen(prefix)) != 0)
		fail_msg("expected the error to start with \"%s\", got \"%s\"", prefix, f->err);
	assert_contains(f->err, what);
}

static void test_sample_content_loads_whole(void **state)
{
	char err[1024] = "";
	(void)state;
	struct content *c = content_load(sample_dir(), err, sizeof(err));
	if (!c)
		fail_msg("expected the sample content to load, got \"%s\"", err);
	assert_int_equal(c->refs, 1);
	assert_string_equal(c->dir, sample_dir());
	assert_int_equal(c->nstages, 4);
	assert_string_equal(c->stages[0], "awareness");
	assert_string_equal(c->stages[1], "consideration");
	assert_string_equal(c->stages[2], "decision");
	assert_string_equal(c->stages[3], "customer");
	assert_string_equal(c->company, "Northwind Pipeline Coaching");
	assert_string_equal(c->postal_address, "Northwind Pipeline Coaching, 12 Harbour Street, "
					       "Bristol BS1 4QA, United Kingdom");
	assert_int_equal(c->ntpls, 14);
	/* Sequences are sorted by name; so are templates by path. */
	assert_int_equal(c->nseqs, 4);
	assert_string_equal(c->seqs[0].name, "awareness-basics");
	assert_string_equal(c->seqs[1].name, "consideration-1to1");
	assert_string_equal(c->seqs[2].name, "consideration-playbook");
	assert_string_equal(c->seqs[3].name, "decision-next-step");
	/* The journey's rules, scores and the prospect sequence's settings. */
	assert_int_equal(c->nrules, 8);
	assert_int_equal(c->score_half_life, 45 * 86400);
	assert_int_equal(c->rules[4].below, 3);
	assert_string_equal(c->rules[4].move_to, "awareness");
	assert_int_equal(content_score(c, "click"), 3);
	assert_int_equal(content_score(c, "bounce"), 0);
	assert_int_equal(c->seqs[1].mode, CONTENT_PROSPECT);
	assert_false(c->seqs[1].track);
	assert_true(c->seqs[2].track);
	assert_non_null(c->seqs[1].when);
	assert_string_equal(c->seqs[1].when->tag, "prospect");
	for (size_t i = 1; i < c->ntpls; i++)
		if (strcmp(c->tpls[i - 1].path, c->tpls[i].path) >= 0)
			fail_msg("templates out of order: %s before %s", c->tpls[i - 1].path,
				 c->tpls[i].path);
	content_unref(c);
}

static void test_sample_sequences_have_their_steps(void **state)
{
	char err[1024] = "";
	(void)state;
	struct content *c = content_load(sample_dir(), err, sizeof(err));
	if (!c)
		fail_msg("expected the sample content to load, got \"%s\"", err);
	const struct content_sequence *s = content_sequence(c, "awareness-basics");
	assert_non_null(s);
	assert_string_equal(s->stage, "awareness");
	assert_int_equal(s->mode, CONTENT_NURTURE);
	assert_contains(s->description, "steady pipeline");
	assert_int_equal(s->nsteps, 4);
	static const char *const ids[] = { "welcome", "two-jobs", "healthy-or-thin",
					   "slow-and-steady" };
	static const int64_t delays[] = { 0, 3 * 86400, 4 * 86400, 7 * 86400 };
	for (size_t i = 0; i < 4; i++) {
		assert_string_equal(s->steps[i].id, ids[i]);
		if (s->steps[i].delay != delays[i])
			fail_msg("step %s: expected delay %lld, got %lld", ids[i],
				 (long long)delays[i], (long long)s->steps[i].delay);
		assert_non_null(s->steps[i].tpl);
	}
	const struct content_template *t = s->steps[0].tpl;
	assert_string_equal(t->path, "awareness/welcome.md");
	char want[1200];
	snprintf(want, sizeof(want), "%s/templates/awareness/welcome.md", sample_dir());
	assert_string_equal(t->file, want);
	assert_string_equal(t->subject,
			    "Welcome, {{first_name|there}}. Let's steady your pipeline");
	assert_string_equal(
		t->preheader,
		"What the next few emails will cover, and one question to keep in mind.");
	assert_int_equal(t->body_line, 5);
	if (strncmp(t->body, "Hi {{first_name|there}},\n", 25) != 0)
		fail_msg("expected the body to start at the greeting, got \"%.40s\"", t->body);

	assert_int_equal(content_sequence(c, "consideration-playbook")->nsteps, 3);
	assert_int_equal(content_sequence(c, "decision-next-step")->nsteps, 3);
	assert_null(content_sequence(c, "no-such-sequence"));

	size_t index = 99;
	const struct content_step *step = content_step(s, "healthy-or-thin", &index);
	assert_non_null(step);
	assert_int_equal(index, 2);
	assert_string_equal(step->tpl->path, "awareness/healthy-or-thin.md");
	assert_null(content_step(s, "nope", &index));
	content_unref(c);
}

static void test_sequence_for_stage_and_stage_index(void **state)
{
	char err[1024] = "";
	(void)state;
	struct content *c = content_load(sample_dir(), err, sizeof(err));
	if (!c)
		fail_msg("expected the sample content to load, got \"%s\"", err);
	assert_string_equal(content_sequence_for_stage(c, "awareness")->name, "awareness-basics");
	assert_string_equal(content_sequence_for_stage(c, "consideration")->name,
			    "consideration-playbook");
	assert_string_equal(content_sequence_for_stage(c, "decision")->name, "decision-next-step");
	assert_null(content_sequence_for_stage(c, "customer"));
	assert_null(content_sequence_for_stage(c, "nowhere"));
	assert_int_equal(content_stage_index(c, "awareness"), 0);
	assert_int_equal(content_stage_index(c, "customer"), 3);
	assert_int_equal(content_stage_index(c, "nowhere"), -1);
	content_unref(c);
}

static void test_first_sequence_by_name_wins_a_stage(void **state)
{
	struct fixture *f = *state;
	put(f, "sequences/aaa-early.json",
	    "{\"stage\": \"awareness\", \"mode\": \"prospect\", \"opt_out\": \"Reply no.\",\n"
	    " \"steps\": [{\"id\": \"one\", \"delay\": \"1h\", \"template\": "
	    "\"awareness/welcome.md\"}]}\n",
	    NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	const struct content_sequence *s = content_sequence_for_stage(c, "awareness");
	assert_string_equal(s->name, "aaa-early");
	assert_int_equal(s->mode, CONTENT_PROSPECT);
	assert_string_equal(s->description, "");
	assert_string_equal(s->opt_out, "Reply no.");
	assert_false(s->track);
	assert_int_equal(s->steps[0].delay, 3600);
	content_unref(c);
}

static void test_prospect_sequence_without_an_opt_out_is_refused(void **state)
{
	struct fixture *f = *state;
	put(f, "sequences/cold.json",
	    "{\"stage\": \"awareness\",\n \"mode\": \"prospect\",\n"
	    " \"steps\": [{\"id\": \"one\", \"delay\": \"1h\", \"template\": "
	    "\"awareness/welcome.md\"}]}\n",
	    NULL, 0);
	assert_null(content_load(f->dir, f->err, sizeof(f->err)));
	assert_contains(f->err,
			"sequences/cold.json:1: sequence: prospect mail needs an \"opt_out\"");
}

static void test_ref_and_unref_count_holders(void **state)
{
	char err[1024] = "";
	(void)state;
	struct content *c = content_load(sample_dir(), err, sizeof(err));
	if (!c)
		fail_msg("expected the sample content to load, got \"%s\"", err);
	assert_ptr_equal(content_ref(c), c);
	assert_int_equal(c->refs, 2);
	content_unref(c);
	assert_int_equal(c->refs, 1);
	/* Still whole after one holder let go. */
	assert_string_equal(content_sequence(c, "awareness-basics")->steps[0].id, "welcome");
	content_unref(c); /* freed; the sanitizer build checks nothing leaks */
	content_unref(NULL);
}

static void test_content_name_rules(void **state)
{
	(void)state;
	assert_true(content_name_valid("awareness"));
	assert_true(content_name_valid("step-2_b"));
	assert_true(content_name_valid("9lives"));
	assert_false(content_name_valid(""));
	assert_false(content_name_valid("-lead"));
	assert_false(content_name_valid("_lead"));
	assert_false(content_name_valid("Awareness"));
	assert_false(content_name_valid("two words"));
	assert_false(content_name_valid("a/b"));
	char longname[70];
	memset(longname, 'a', 65);
	longname[65] = '\0';
	assert_false(content_name_valid(longname));
	longname[64] = '\0';
	assert_true(content_name_valid(longname));
}

/* A valid awareness sequence, line by line, for broken variants below. */
#define SEQ_HEAD                                                                                \
	"{\n" /* 1 */                                                                           \
	"  \"stage\": \"awareness\",\n" /* 2 */                                                 \
	"  \"mode\": \"nurture\",\n" /* 3 */                                                    \
	"  \"description\": \"A test sequence\",\n" /* 4 */                                     \
	"  \"steps\": [\n" /* 5 */                                                              \
	"    { \"id\": \"welcome\", \"delay\": \"0d\", \"template\": \"awareness/welcome.md\" " \
	"},\n" /* 6 */

static void test_unknown_key_in_a_sequence_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    "{\n"
	    "  \"stage\": \"awareness\",\n"
	    "  \"mode\": \"nurture\",\n"
	    "  \"colour\": \"blue\",\n"
	    "  \"steps\": []\n"
	    "}\n",
	    path, sizeof(path));
	expect_error(f, path, 4, "sequence: unknown key \"colour\"");
}

static void test_unknown_key_in_a_step_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\",\n"
		     "      \"templte\": \"awareness/two-jobs.md\" }\n" /* 8 */
		     "  ]\n"
		     "}\n",
	    path, sizeof(path));
	expect_error(f, path, 8, "step 2: unknown key \"templte\"");
}

static void test_duplicate_key_in_a_sequence_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/decision-next-step.json",
	    "{\n"
	    "  \"stage\": \"decision\",\n"
	    "  // the stage again, by mistake\n"
	    "  \"stage\": \"awareness\",\n"
	    "  \"steps\": []\n"
	    "}\n",
	    path, sizeof(path));
	expect_error(f, path, 4, "duplicate key \"stage\"");
}

static void test_missing_template_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD
	    "    { \"id\": \"two\", \"delay\": \"3d\", \"template\": \"awareness/missing.md\" }\n"
	    "  ]\n"
	    "}\n",
	    path, sizeof(path));
	expect_error(f, path, 7, "step 2: no template \"awareness/missing.md\"");
}

static void test_bad_delay_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD "    { \"id\": \"two\",\n"
		     "      \"delay\": \"3 days\",\n" /* 8 */
		     "      \"template\": \"awareness/two-jobs.md\" }\n"
		     "  ]\n"
		     "}\n",
	    path, sizeof(path));
	expect_error(f, path, 8, "\"delay\" must be a duration");
}

static void test_missing_delay_names_the_step(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD "    { \"id\": \"two\", \"template\": \"awareness/two-jobs.md\" }\n"
		     "  ]\n"
		     "}\n",
	    path, sizeof(path));
	expect_error(f, path, 7, "step 2: missing \"delay\"");
}

static void test_unknown_stage_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/consideration-playbook.json",
	    "{\n"
	    "\n"
	    "  \"stage\": \"interest\",\n"
	    "  \"steps\": [ { \"id\": \"a\", \"delay\": \"0d\", \"template\": "
	    "\"awareness/welcome.md\" } ]\n"
	    "}\n",
	    path, sizeof(path));
	expect_error(f, path, 3, "sequence: stage \"interest\" is not a stage of journey.json");
}

static void test_bad_mode_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    "{\n  \"stage\": \"awareness\",\n  \"mode\": \"blast\",\n  \"steps\": []\n}\n", path,
	    sizeof(path));
	expect_error(f, path, 3, "mode must be \"nurture\" or \"prospect\"");
}

static void test_empty_steps_are_refused(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    "{\n  \"stage\": \"awareness\",\n\n  \"steps\": []\n}\n", path, sizeof(path));
	expect_error(f, path, 4, "\"steps\" must be a non-empty list");
}

static void test_duplicate_step_id_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD "    { \"delay\": \"3d\", \"template\": \"awareness/two-jobs.md\",\n"
		     "      \"id\": \"welcome\" }\n" /* 8 */
		     "  ]\n"
		     "}\n",
	    path, sizeof(path));
	expect_error(f, path, 8, "step 2: id \"welcome\" is used twice in this sequence");
}

static void test_bad_step_id_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD "    { \"id\": \"Step Two\", \"delay\": \"3d\", \"template\": "
		     "\"awareness/two-jobs.md\" }\n"
		     "  ]\n"
		     "}\n",
	    path, sizeof(path));
	expect_error(f, path, 7, "step 2: id \"Step Two\" must be lower-case");
}

static void test_template_without_front_matter_names_file(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/decision/last-note.md", "Hi {{first_name|there}},\n\nNo front matter.\n",
	    path, sizeof(path));
	expect_error(f, path, 1, "a template starts with a \"---\" line");
}

static void test_unclosed_front_matter_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/decision/last-note.md", "---\nsubject: Hi\npreheader: x\n", path,
	    sizeof(path));
	expect_error(f, path, 4, "front matter is never closed");
}

static void test_unknown_front_matter_key_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/awareness/welcome.md",
	    "---\n"
	    "subject: Welcome\n"
	    "title: Not a key\n"
	    "---\n"
	    "Body\n",
	    path, sizeof(path));
	expect_error(f, path, 3, "unknown front matter key \"title\"");
}

static void test_front_matter_needs_a_subject(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/awareness/welcome.md", "---\npreheader: only this\n---\nBody\n", path,
	    sizeof(path));
	expect_error(f, path, 2, "front matter needs a \"subject\"");
}

static void test_unknown_merge_field_in_the_body_names_its_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/consideration/six-moments.md",
	    "---\n" /* 1 */
	    "subject: Six moments\n" /* 2 */
	    "preheader: Timing matters.\n" /* 3 */
	    "---\n" /* 4 */
	    "Hi {{first_name|there}},\n" /* 5 */
	    "\n" /* 6 */
	    "A paragraph.\n" /* 7 */
	    "\n" /* 8 */
	    "Thanks, {{frist_name}}, for reading.\n" /* 9 */
	    "\n"
	    "Ana\n",
	    path, sizeof(path));
	expect_error(f, path, 9, "unknown merge field \"frist_name\"");
}

static void test_unknown_merge_field_in_the_subject_names_its_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/consideration/six-moments.md",
	    "---\n"
	    "preheader: Timing matters.\n"
	    "subject: Hi {{firstname}}\n"
	    "---\n"
	    "Body\n",
	    path, sizeof(path));
	expect_error(f, path, 3, "unknown merge field \"firstname\"");
}

static void test_crlf_template_keeps_its_lines(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/consideration/six-moments.md",
	    "---\r\nsubject: Hi\r\n---\r\nLine 4\r\nLine 5 {{nope}}\r\n", path, sizeof(path));
	expect_error(f, path, 5, "unknown merge field \"nope\"");
}

static void test_journey_with_a_duplicate_stage_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "journey.json",
	    "{\n"
	    "  \"stages\": [\n"
	    "    \"awareness\",\n"
	    "    \"consideration\",\n"
	    "    \"decision\",\n"
	    "    \"consideration\"\n" /* 6 */
	    "  ]\n"
	    "}\n",
	    path, sizeof(path));
	expect_error(f, path, 6, "journey: stage \"consideration\" is listed twice");
}

static void test_journey_errors_name_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "journey.json", "{\n  \"stages\": [\"awareness\", \"Decision\"]\n}\n", path,
	    sizeof(path));
	expect_error(f, path, 2, "journey: a stage name is lower-case");
	put(f, "journey.json",
	    "{\n  \"stages\": [\"awareness\"],\n  \"sender\": {\n    \"company\": \"X\",\n"
	    "    \"phone\": \"1\"\n  }\n}\n",
	    path, sizeof(path));
	expect_error(f, path, 5, "journey sender: unknown key \"phone\"");
	put(f, "journey.json", "{\n  \"stages\": []\n}\n", path, sizeof(path));
	expect_error(f, path, 2, "\"stages\" must be a list");
}

static void test_journey_without_sender_has_an_empty_footer(void **state)
{
	struct fixture *f = *state;
	put(f, "journey.json",
	    "{\"stages\": [\"awareness\", \"consideration\", \"decision\", \"customer\"]}\n", NULL,
	    0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	assert_string_equal(c->company, "");
	assert_string_equal(c->postal_address, "");
	content_unref(c);
}

static void test_missing_journey_is_reported(void **state)
{
	struct fixture *f = *state;
	char path[512], want[600];
	snprintf(path, sizeof(path), "%s/journey.json", f->dir);
	assert_int_equal(unlink(path), 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	assert_null(c);
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
	assert_string_equal(f->err, want);
}

static void test_badly_named_sequence_file_is_refused(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "sequences/Bad Name.json",
	    "{\"stage\": \"awareness\", \"steps\": [{\"id\": \"a\", \"delay\": \"0d\", "
	    "\"template\": \"awareness/welcome.md\"}]}",
	    path, sizeof(path));
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	assert_null(c);
	assert_contains(f->err, path);
	assert_contains(f->err, "a sequence file is named in lower-case letters");
}

static void test_files_that_are_not_sequences_are_ignored(void **state)
{
	struct fixture *f = *state;
	put(f, "sequences/README.txt", "not json", NULL, 0);
	put(f, "sequences/.hidden.json", "{", NULL, 0);
	put(f, "templates/notes.txt", "{{nonsense", NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	assert_int_equal(c->nseqs, 4);
	assert_int_equal(c->ntpls, 14);
	content_unref(c);
}

/* ---- journey.json: rules, scores, attributes ------------------------------------------ */

/* A valid journey.json with `rule` on line 6 and `scores` on line 4; the rules after it
 * keep every stage reachable. */
static void put_journey(struct fixture *f, const char *scores, const char *rule, char *path,
			size_t pathlen)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 "{\n" /* 1 */
		 "  \"stages\": [\"awareness\", \"consideration\", \"decision\", \"customer\"],\n"
		 "  \"sender\": {\"company\": \"Test Co\", \"postal_address\": \"1 Street\"},\n"
		 "  \"scores\": %s,\n" /* 4 */
		 "  \"rules\": [\n" /* 5 */
		 "%s" /* 6 */
		 "    { \"on\": \"score\", \"at_least\": 8, \"move_to\": \"consideration\" },\n"
		 "    { \"on\": \"click\", \"tag\": \"case-study\", \"move_to\": \"decision\" },\n"
		 "    { \"on\": \"event\", \"kind\": \"purchase\", \"action\": \"customer\" }\n"
		 "  ]\n"
		 "}\n",
		 scores, rule);
	put(f, "journey.json", text, path, pathlen);
}

/* The copy with `rule` on line 6 of journey.json must be refused at that line. */
static void expect_rule_error(struct fixture *f, const char *rule, int line, const char *what)
{
	char path[512];
	put_journey(f, "{\"open\": 1}", rule, path, sizeof(path));
	expect_error(f, path, line, what);
}

static void test_journey_with_rules_loads(void **state)
{
	struct fixture *f = *state;
	put_journey(
		f, "{\"open\": 1, \"click\": 3, \"webinar\": -2}",
		"    { \"on\": \"reply\", \"from\": [\"decision\"], \"action\": \"handoff\" },\n",
		NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	assert_int_equal(c->nrules, 4);
	assert_int_equal(c->rules[0].on, RULE_ON_REPLY);
	assert_int_equal(c->rules[0].action, RULE_HANDOFF);
	assert_int_equal(c->rules[0].nfrom, 1);
	assert_string_equal(c->rules[0].from[0], "decision");
	assert_int_equal(c->rules[0].line, 6);
	assert_int_equal(c->rules[1].on, RULE_ON_SCORE);
	assert_int_equal(c->rules[1].at_least, 8);
	assert_string_equal(c->rules[1].move_to, "consideration");
	assert_int_equal(c->rules[3].action, RULE_CUSTOMER);
	assert_int_equal(content_score(c, "webinar"), -2);
	assert_int_equal(content_score(c, "reply"), 0);
	content_unref(c);
}

static void test_rule_with_an_unknown_on_names_its_line(void **state)
{
	expect_rule_error(*state, "    { \"on\": \"visit\", \"move_to\": \"decision\" },\n", 6,
			  "rule: \"on\" must be score, click, reply, finished or event");
}

static void test_score_rule_without_at_least_names_its_line(void **state)
{
	expect_rule_error(*state, "    { \"on\": \"score\", \"move_to\": \"decision\" },\n", 6,
			  "rule: on score needs either \"at_least\"");
	expect_rule_error(*state,
			  "    { \"on\": \"score\", \"at_least\": 5, \"below\": 2,\n"
			  "      \"move_to\": \"decision\" },\n",
			  6, "rule: on score needs either \"at_least\"");
}

static void test_thresholds_belong_to_score_rules(void **state)
{
	expect_rule_error(*state,
			  "    { \"on\": \"reply\", \"below\": 2, \"action\": \"handoff\" },\n", 6,
			  "rule: \"below\" belongs to rules on score only");
}

static void test_a_fall_needs_from_and_move_to(void **state)
{
	expect_rule_error(*state,
			  "    { \"on\": \"score\", \"below\": 2, \"move_to\": \"awareness\" },\n",
			  6, "rule: a fall (\"below\") needs \"from\"");
	expect_rule_error(*state,
			  "    { \"on\": \"score\", \"below\": 2, \"from\": [\"decision\"],\n"
			  "      \"action\": \"handoff\" },\n",
			  6, "rule: a fall (\"below\") needs \"from\"");
	expect_rule_error(*state,
			  "    { \"on\": \"score\", \"below\": 0, \"from\": [\"decision\"],\n"
			  "      \"move_to\": \"awareness\" },\n",
			  6, "\"below\" must be a whole number from 1");
}

static void test_a_fall_moves_back(void **state)
{
	/* The error names the line of "move_to", the rule's second line. */
	expect_rule_error(
		*state,
		"    { \"on\": \"score\", \"below\": 2, \"from\": [\"awareness\"],\n"
		"      \"move_to\": \"decision\" },\n",
		7, "rule: a fall moves back: \"decision\" does not come before \"awareness\"");
	expect_rule_error(*state,
			  "    { \"on\": \"score\", \"below\": 2, \"from\": [\"decision\"],\n"
			  "      \"move_to\": \"decision\" },\n",
			  7, "rule: a fall moves back");
}

static void test_a_fall_must_sit_under_the_rise_hysteresis(void **state)
{
	/* The template's line 8 (here line 7) moves any lead to consideration at 8 points: a
	 * fall from there at 8 or more would send a lead back and forth. */
	expect_rule_error(
		*state,
		"    { \"on\": \"score\", \"below\": 8, \"from\": [\"consideration\"], "
		"\"move_to\": \"awareness\" },\n",
		6,
		"rule: \"below\": 8 must be under the \"at_least\": 8 of the rule on line 7 "
		"that moves awareness to consideration");
	struct fixture *f = *state;
	put_journey(f, "{\"open\": 1}",
		    "    { \"on\": \"score\", \"below\": 7, \"from\": [\"consideration\"], "
		    "\"move_to\": \"awareness\" },\n",
		    NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	assert_int_equal(c->rules[0].on, RULE_ON_SCORE);
	assert_int_equal(c->rules[0].below, 7);
	assert_int_equal(c->rules[0].line, 6);
	assert_int_equal(c->score_half_life, 0);
	content_unref(c);
}

static void test_score_half_life_is_a_positive_duration(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put_journey(f, "{\"open\": 1},\n  \"score_half_life\": \"0s\"", "", path, sizeof(path));
	expect_error(f, path, 5, "\"score_half_life\" must be longer than 0s");
	put_journey(f, "{\"open\": 1},\n  \"score_half_life\": \"soon\"", "", path, sizeof(path));
	expect_error(f, path, 5, "\"score_half_life\" must be a duration");
	put_journey(f, "{\"open\": 1},\n  \"score_half_life\": \"2w\"", "", NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	assert_int_equal(c->score_half_life, 14 * 86400);
	content_unref(c);
}

static void test_click_rule_without_a_tag_names_its_line(void **state)
{
	expect_rule_error(*state, "    { \"on\": \"click\", \"move_to\": \"decision\" },\n", 6,
			  "rule: on click needs the link \"tag\"");
}

static void test_click_rule_on_a_tag_no_link_carries_names_its_line(void **state)
{
	expect_rule_error(
		*state,
		"    { \"on\": \"click\", \"tag\": \"pricing\", \"move_to\": \"decision\" "
		"},\n",
		6, "rule: no link in any template carries the tag \"pricing\"");
}

static void test_move_to_an_unknown_stage_names_its_line(void **state)
{
	expect_rule_error(*state,
			  "    { \"on\": \"click\",\n" /* 6 */
			  "      \"tag\": \"guide\",\n" /* 7 */
			  "      \"move_to\": \"limbo\" },\n", /* 8 */
			  8, "rule: stage \"limbo\" is not a stage of the journey");
}

static void test_rule_with_both_move_to_and_action_names_its_line(void **state)
{
	expect_rule_error(
		*state,
		"    { \"on\": \"reply\", \"move_to\": \"decision\", \"action\": \"handoff\" },\n",
		6, "rule: give either \"move_to\" (a stage) or \"action\"");
}

static void test_rule_with_neither_move_to_nor_action_names_its_line(void **state)
{
	expect_rule_error(*state, "    { \"on\": \"reply\" },\n", 6,
			  "rule: give either \"move_to\" (a stage) or \"action\"");
}

static void test_rule_with_a_bad_action_names_its_line(void **state)
{
	expect_rule_error(*state, "    { \"on\": \"reply\",\n      \"action\": \"celebrate\" },\n",
			  7, "rule: \"action\" must be handoff or customer");
}

static void test_rule_from_an_unknown_stage_names_its_line(void **state)
{
	expect_rule_error(
		*state,
		"    { \"on\": \"reply\", \"from\": [\"awareness\", \"limbo\"], \"action\": "
		"\"handoff\" },\n",
		6, "rule: stage \"limbo\" is not a stage of the journey");
	expect_rule_error(*state,
			  "    { \"on\": \"reply\", \"from\": \"awareness\", \"action\": "
			  "\"handoff\" },\n",
			  6, "\"from\" must be a list of names");
}

static void test_finished_rule_naming_no_sequence_names_its_line(void **state)
{
	expect_rule_error(*state,
			  "    { \"on\": \"finished\", \"sequence\": \"nope\", \"move_to\": "
			  "\"decision\" },\n",
			  6, "rule: no sequence \"nope\"");
	expect_rule_error(*state, "    { \"on\": \"finished\", \"move_to\": \"decision\" },\n", 6,
			  "rule: on finished needs a \"sequence\"");
}

static void test_event_rule_without_a_kind_names_its_line(void **state)
{
	expect_rule_error(*state, "    { \"on\": \"event\", \"action\": \"customer\" },\n", 6,
			  "rule: on event needs the event \"kind\"");
}

static void test_stage_no_rule_reaches_is_named(void **state)
{
	struct fixture *f = *state;
	char want[600];
	put(f, "journey.json",
	    "{\n"
	    "  \"stages\": [\"awareness\", \"consideration\", \"decision\", \"customer\"],\n"
	    "  \"rules\": [\n"
	    "    { \"on\": \"score\", \"at_least\": 8, \"move_to\": \"consideration\" },\n"
	    "    { \"on\": \"reply\", \"action\": \"handoff\" },\n"
	    "    { \"on\": \"event\", \"kind\": \"purchase\", \"action\": \"customer\" }\n"
	    "  ]\n"
	    "}\n",
	    NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (c) {
		content_unref(c);
		fail_msg("expected a journey that never reaches decision to be refused");
	}
	snprintf(want, sizeof(want), "%s/journey.json: stage \"decision\" is reached by no rule",
		 f->dir);
	assert_contains(f->err, want);
}

static void test_score_points_must_be_whole_numbers(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put_journey(f, "{\"open\": 1, \"click\": 1.5}", "", path, sizeof(path));
	expect_error(f, path, 4, "\"click\" must be a whole number");
	put_journey(f, "{\"open\": \"1\"}", "", path, sizeof(path));
	expect_error(f, path, 4, "\"open\" must be a whole number");
	put_journey(f, "{\"open\": 1001}", "", path, sizeof(path));
	expect_error(f, path, 4, "\"open\" must be a whole number from -1000 to 1000");
}

static void test_score_of_an_unknown_kind_syntax_names_its_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put_journey(f, "{\"open\": 1, \"Open Rate\": 2}", "", path, sizeof(path));
	expect_error(f, path, 4, "journey: \"Open Rate\" is not an event kind");
	put_journey(f, "[1, 2]", "", path, sizeof(path));
	expect_error(f, path, 4, "journey: \"scores\" maps event kinds to points");
}

static const char attr_template[] = "---\n" /* 1 */
				    "subject: Welcome\n" /* 2 */
				    "---\n" /* 3 */
				    "Hi {{first_name|there}},\n" /* 4 */
				    "\n" /* 5 */
				    "A line.\n" /* 6 */
				    "On the {{attrs.plan|free}} plan.\n"; /* 7 */

static void test_undeclared_attribute_in_a_body_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/awareness/welcome.md", attr_template, path, sizeof(path));
	expect_error(f, path, 7, "merge field \"attrs.plan\" is not a lead field nor an attribute");
}

static void test_undeclared_attribute_a_section_tests_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/awareness/welcome.md",
	    "---\nsubject: Welcome\n---\nHi,\n\n{{#if attrs.plan}}Plan.{{/if}}\n", path,
	    sizeof(path));
	expect_error(f, path, 6, "merge field \"attrs.plan\" is not a lead field");
}

/* Front matter lines are not all line 2: the preheader is usually on line 3, and either may
 * come first. */
static void test_undeclared_attribute_in_front_matter_names_its_real_line(void **state)
{
	struct fixture *f = *state;
	char path[512];
	put(f, "templates/awareness/welcome.md",
	    "---\nsubject: Hi\npreheader: For {{attrs.plan}}\n---\nBody\n", path, sizeof(path));
	expect_error(f, path, 3, "merge field \"attrs.plan\" is not a lead field");
	put(f, "templates/awareness/welcome.md",
	    "---\npreheader: First\nsubject: Hi {{attrs.plan}}\n---\nBody\n", path, sizeof(path));
	expect_error(f, path, 3, "merge field \"attrs.plan\" is not a lead field");
}

static void test_declared_attribute_loads(void **state)
{
	struct fixture *f = *state;
	put(f, "templates/awareness/welcome.md", attr_template, NULL, 0);
	put(f, "journey.json",
	    "{\"stages\": [\"awareness\", \"consideration\", \"decision\", \"customer\"],\n"
	    " \"attributes\": [\"plan\", \"region\"]}\n",
	    NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	assert_int_equal(c->nattributes, 2);
	assert_string_equal(c->attributes[0], "plan");
	assert_string_equal(c->attributes[1], "region");
	content_unref(c);
}

/* ---- sequences: from, opt_out, conditions, variants, track ---------------------------- */

/* SEQ_HEAD with a sequence-level key on line 5 (the steps start on line 6). */
#define SEQ_HEAD_WITH(line5)                                                                    \
	"{\n" /* 1 */                                                                           \
	"  \"stage\": \"awareness\",\n" /* 2 */                                                 \
	"  \"mode\": \"nurture\",\n" /* 3 */                                                    \
	"  \"description\": \"A test sequence\",\n" /* 4 */                                     \
		line5 /* 5 */                                                                   \
	"  \"steps\": [\n" /* 6 */                                                              \
	"    { \"id\": \"welcome\", \"delay\": \"0d\", \"template\": \"awareness/welcome.md\" " \
	"}\n" /* 7 */                                                                           \
	"  ]\n"                                                                                 \
	"}\n"

static void expect_seq_error(struct fixture *f, const char *text, int line, const char *what)
{
	char path[512];
	put(f, "sequences/awareness-basics.json", text, path, sizeof(path));
	expect_error(f, path, line, what);
}

static void test_bad_from_address_names_file_and_line(void **state)
{
	expect_seq_error(*state, SEQ_HEAD_WITH("  \"from\": \"Ana Ruiz\",\n"), 5,
			 "sequence: \"from\" must be an address");
	expect_seq_error(*state, SEQ_HEAD_WITH("  \"from\": \"Ana <ana@example.com\",\n"), 5,
			 "sequence: \"from\" must be an address");
}

static void test_good_from_address_loads(void **state)
{
	struct fixture *f = *state;
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD_WITH("  \"from\": \"Ana Ruiz <ana@example.com>\",\n"), NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	assert_string_equal(content_sequence(c, "awareness-basics")->from,
			    "Ana Ruiz <ana@example.com>");
	content_unref(c);
}

static void test_opt_out_with_a_line_break_names_file_and_line(void **state)
{
	expect_seq_error(*state, SEQ_HEAD_WITH("  \"opt_out\": \"Reply no.\\nBcc: x@evil\",\n"), 5,
			 "sequence: \"opt_out\" is one line");
	expect_seq_error(*state, SEQ_HEAD_WITH("  \"opt_out\": \"Reply no.\\r\",\n"), 5,
			 "sequence: \"opt_out\" is one line");
}

static void test_sequence_when_on_opened_or_clicked_is_refused(void **state)
{
	expect_seq_error(*state, SEQ_HEAD_WITH("  \"when\": {\"opened\": \"welcome\"},\n"), 5,
			 "a sequence is chosen before any step is sent");
	expect_seq_error(
		*state,
		SEQ_HEAD_WITH("  \"when\": {\"tag\": \"vip\", \"clicked\": \"welcome\"},\n"), 5,
		"a sequence is chosen before any step is sent");
}

static void test_sequence_when_on_tag_attr_or_event_loads(void **state)
{
	struct fixture *f = *state;
	put(f, "sequences/awareness-vip.json",
	    SEQ_HEAD_WITH("  \"when\": {\"tag\": \"vip\", \"attr\": \"plan=pro\", \"event\": "
			  "\"webinar\"},\n"),
	    NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	const struct content_sequence *s = content_sequence(c, "awareness-vip");
	assert_non_null(s);
	assert_non_null(s->when);
	assert_string_equal(s->when->tag, "vip");
	assert_string_equal(s->when->attr, "plan");
	assert_string_equal(s->when->attr_value, "pro");
	assert_string_equal(s->when->event, "webinar");
	assert_null(s->when->opened);
	/* A sequence with `when` is never the stage's default. */
	assert_string_equal(content_sequence_for_stage(c, "awareness")->name, "awareness-basics");
	content_unref(c);
}

static void test_empty_condition_is_refused(void **state)
{
	expect_seq_error(*state, SEQ_HEAD_WITH("  \"when\": {},\n"), 5,
			 "sequence: an empty condition");
	expect_seq_error(*state,
			 SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\", \"template\": "
				  "\"awareness/two-jobs.md\",\n"
				  "      \"when\": {} }\n" /* 8 */
				  "  ]\n"
				  "}\n",
			 8, "step 2: an empty condition");
	expect_seq_error(*state,
			 SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\", \"template\": "
				  "\"awareness/two-jobs.md\",\n"
				  "      \"when\": {\"colour\": \"blue\"} }\n" /* 8 */
				  "  ]\n"
				  "}\n",
			 8, "step 2: unknown key \"colour\"");
}

static void test_unless_naming_a_missing_step_names_file_and_line(void **state)
{
	expect_seq_error(*state,
			 SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\", \"template\": "
				  "\"awareness/two-jobs.md\",\n"
				  "      \"unless\": {\"clicked\": \"nope\"} }\n" /* 8 */
				  "  ]\n"
				  "}\n",
			 8, "step 2: \"nope\" names no step of this sequence");
	expect_seq_error(*state,
			 SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\", \"template\": "
				  "\"awareness/two-jobs.md\",\n"
				  "      \"when\": {\"opened\": \"Welcome\"} }\n" /* 8 */
				  "  ]\n"
				  "}\n",
			 8, "step 2: \"Welcome\" names no step of this sequence");
}

static void test_step_conditions_on_earlier_steps_load(void **state)
{
	struct fixture *f = *state;
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\", \"template\": "
		     "\"awareness/two-jobs.md\",\n"
		     "      \"when\": {\"opened\": \"welcome\"}, \"unless\": {\"clicked\": "
		     "\"welcome\"} }\n"
		     "  ]\n"
		     "}\n",
	    NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	const struct content_step *st = &content_sequence(c, "awareness-basics")->steps[1];
	assert_string_equal(st->when->opened, "welcome");
	assert_string_equal(st->unless->clicked, "welcome");
	assert_null(content_sequence(c, "awareness-basics")->steps[0].when);
	content_unref(c);
}

static void test_variants_with_one_entry_are_refused(void **state)
{
	expect_seq_error(*state,
			 SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\",\n"
				  "      \"variants\": [\"awareness/two-jobs.md\"] }\n" /* 8 */
				  "  ]\n"
				  "}\n",
			 8, "step 2: \"variants\" is a list of at least two templates");
}

static void test_template_and_variants_together_are_refused(void **state)
{
	expect_seq_error(*state,
			 SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\",\n" /* 7 */
				  "      \"template\": \"awareness/two-jobs.md\",\n"
				  "      \"variants\": [\"awareness/two-jobs.md\", "
				  "\"awareness/welcome.md\"] }\n"
				  "  ]\n"
				  "}\n",
			 7, "step 2: give either \"template\" or \"variants\"");
}

static void test_variants_load_in_order(void **state)
{
	struct fixture *f = *state;
	put(f, "sequences/awareness-basics.json",
	    SEQ_HEAD "    { \"id\": \"two\", \"delay\": \"3d\",\n"
		     "      \"variants\": [\"awareness/two-jobs.md\", \"awareness/welcome.md\"] }\n"
		     "  ]\n"
		     "}\n",
	    NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	const struct content_step *st = &content_sequence(c, "awareness-basics")->steps[1];
	assert_int_equal(st->nvariants, 2);
	assert_string_equal(st->variants[0]->path, "awareness/two-jobs.md");
	assert_string_equal(st->variants[1]->path, "awareness/welcome.md");
	assert_ptr_equal(st->tpl, st->variants[0]);
	assert_int_equal(content_sequence(c, "awareness-basics")->steps[0].nvariants, 1);
	content_unref(c);
}

static void test_track_must_be_a_bool(void **state)
{
	struct fixture *f = *state;
	expect_seq_error(f, SEQ_HEAD_WITH("  \"track\": \"yes\",\n"), 5,
			 "\"track\" must be true or false");
	put(f, "sequences/awareness-basics.json", SEQ_HEAD_WITH("  \"track\": false,\n"), NULL, 0);
	struct content *c = content_load(f->dir, f->err, sizeof(f->err));
	if (!c)
		fail_msg("expected the content to load, got \"%s\"", f->err);
	assert_false(content_sequence(c, "awareness-basics")->track);
	content_unref(c);
}

/* ---- content_variant ------------------------------------------------------------------ */

static void test_variant_is_stable_for_an_address_in_any_case(void **state)
{
	const struct content_template *tpls[2] = { NULL, NULL };
	struct content_step step = { .id = "two", .variants = tpls, .nvariants = 2 };
	(void)state;
	for (int i = 0; i < 50; i++) {
		char lower[64], upper[64];
		snprintf(lower, sizeof(lower), "lead%d@example.com", i);
		snprintf(upper, sizeof(upper), "LEAD%d@Example.COM", i);
		size_t a = content_variant(&step, lower), b = content_variant(&step, upper);
		if (a != b)
			fail_msg("expected %s and %s to get the same variant, got %zu and %zu",
				 lower, upper, a, b);
		if (content_variant(&step, lower) != a)
			fail_msg("expected %s to get variant %zu again", lower, a);
		if (a >= 2)
			fail_msg("expected a variant below 2, got %zu", a);
	}
	step.nvariants = 1;
	assert_int_equal(content_variant(&step, "maya@example.org"), 0);
}

static void test_variants_spread_evenly_over_many_addresses(void **state)
{
	const struct content_template *tpls[2] = { NULL, NULL };
	struct content_step step = { .id = "two", .variants = tpls, .nvariants = 2 };
	size_t count[2] = { 0, 0 };
	(void)state;
	for (int i = 0; i < 1000; i++) {
		char email[64];
		snprintf(email, sizeof(email), "person.%d@company%d.example", i, i % 7);
		count[content_variant(&step, email)]++;
	}
	if (count[0] < 400 || count[0] > 600 || count[1] < 400 || count[1] > 600)
		fail_msg("expected each variant to get 400 to 600 of 1000 addresses, got %zu and "
			 "%zu",
			 count[0], count[1]);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sample_content_loads_whole),
		cmocka_unit_test(test_sample_sequences_have_their_steps),
		cmocka_unit_test(test_sequence_for_stage_and_stage_index),
		cmocka_unit_test(test_ref_and_unref_count_holders),
		cmocka_unit_test(test_content_name_rules),
		T(test_first_sequence_by_name_wins_a_stage),
		T(test_prospect_sequence_without_an_opt_out_is_refused),
		T(test_unknown_key_in_a_sequence_names_file_and_line),
		T(test_unknown_key_in_a_step_names_file_and_line),
		T(test_duplicate_key_in_a_sequence_names_file_and_line),
		T(test_missing_template_names_file_and_line),
		T(test_bad_delay_names_file_and_line),
		T(test_missing_delay_names_the_step),
		T(test_unknown_stage_names_file_and_line),
		T(test_bad_mode_names_file_and_line),
		T(test_empty_steps_are_refused),
		T(test_duplicate_step_id_names_file_and_line),
		T(test_bad_step_id_names_file_and_line),
		T(test_template_without_front_matter_names_file),
		T(test_unclosed_front_matter_names_file_and_line),
		T(test_unknown_front_matter_key_names_file_and_line),
		T(test_front_matter_needs_a_subject),
		T(test_unknown_merge_field_in_the_body_names_its_line),
		T(test_unknown_merge_field_in_the_subject_names_its_line),
		T(test_crlf_template_keeps_its_lines),
		T(test_journey_with_a_duplicate_stage_names_file_and_line),
		T(test_journey_errors_name_file_and_line),
		T(test_journey_without_sender_has_an_empty_footer),
		T(test_missing_journey_is_reported),
		T(test_badly_named_sequence_file_is_refused),
		T(test_files_that_are_not_sequences_are_ignored),
		T(test_journey_with_rules_loads),
		T(test_rule_with_an_unknown_on_names_its_line),
		T(test_score_rule_without_at_least_names_its_line),
		T(test_thresholds_belong_to_score_rules),
		T(test_a_fall_needs_from_and_move_to),
		T(test_a_fall_moves_back),
		T(test_a_fall_must_sit_under_the_rise_hysteresis),
		T(test_score_half_life_is_a_positive_duration),
		T(test_click_rule_without_a_tag_names_its_line),
		T(test_click_rule_on_a_tag_no_link_carries_names_its_line),
		T(test_move_to_an_unknown_stage_names_its_line),
		T(test_rule_with_both_move_to_and_action_names_its_line),
		T(test_rule_with_neither_move_to_nor_action_names_its_line),
		T(test_rule_with_a_bad_action_names_its_line),
		T(test_rule_from_an_unknown_stage_names_its_line),
		T(test_finished_rule_naming_no_sequence_names_its_line),
		T(test_event_rule_without_a_kind_names_its_line),
		T(test_stage_no_rule_reaches_is_named),
		T(test_score_points_must_be_whole_numbers),
		T(test_score_of_an_unknown_kind_syntax_names_its_line),
		T(test_undeclared_attribute_in_a_body_names_file_and_line),
		T(test_undeclared_attribute_a_section_tests_names_file_and_line),
		T(test_undeclared_attribute_in_front_matter_names_its_real_line),
		T(test_declared_attribute_loads),
		T(test_bad_from_address_names_file_and_line),
		T(test_good_from_address_loads),
		T(test_opt_out_with_a_line_break_names_file_and_line),
		T(test_sequence_when_on_opened_or_clicked_is_refused),
		T(test_sequence_when_on_tag_attr_or_event_loads),
		T(test_empty_condition_is_refused),
		T(test_unless_naming_a_missing_step_names_file_and_line),
		T(test_step_conditions_on_earlier_steps_load),
		T(test_variants_with_one_entry_are_refused),
		T(test_template_and_variants_together_are_refused),
		T(test_variants_load_in_order),
		T(test_track_must_be_a_bool),
		cmocka_unit_test(test_variant_is_stable_for_an_address_in_any_case),
		cmocka_unit_test(test_variants_spread_evenly_over_many_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
