/* content.h - the journey, sequences and templates loaded from content/, as one snapshot. */
#ifndef DRIPD_CONTENT_H
#define DRIPD_CONTENT_H

#include <stddef.h>
#include <stdint.h>

/*
 * A content snapshot is loaded and validated whole, then never changes: a reload builds a
 * new one and swaps the pointer, so a bad edit is refused while the old snapshot runs on.
 * Snapshots are reference-counted for anything that holds one across a reload.
 */

enum content_mode { CONTENT_NURTURE, CONTENT_PROSPECT };

struct content_template {
	char *path; /* relative to templates/, e.g. "awareness/welcome.md" */
	char *file; /* the full path, for error messages */
	char *subject;
	char *preheader; /* "" when absent */
	char *body; /* Markdown with merge fields */
	int body_line; /* the file's line where the body starts */
};

struct content_step {
	char *id;
	int64_t delay; /* seconds after the previous step (after enrolment for the first) */
	const struct content_template *tpl;
};

struct content_sequence {
	char *name; /* the file's base name */
	char *stage;
	enum content_mode mode;
	char *description;
	struct content_step *steps;
	size_t nsteps;
};

struct content {
	int refs;
	char *dir;
	char **stages;
	size_t nstages;
	char *company;
	char *postal_address;
	struct content_sequence *seqs; /* sorted by name */
	size_t nseqs;
	struct content_template *tpls; /* sorted by path */
	size_t ntpls;
};

/*
 * Loads and validates `dir` (journey.json, every sequences/NAME.json, every .md under
 * templates/). Returns a
 * snapshot with one reference, or NULL with err = "FILE:LINE: what is wrong".
 */
struct content *content_load(const char *dir, char *err, size_t errlen);
struct content *content_ref(struct content *c);
void content_unref(struct content *c);

/* The stage's position in the journey, or -1. */
int content_stage_index(const struct content *c, const char *stage);
const struct content_sequence *content_sequence(const struct content *c, const char *name);
/* The sequence a lead entering `stage` is enrolled in (the first by name), or NULL. */
const struct content_sequence *content_sequence_for_stage(const struct content *c,
							  const char *stage);
/* The step called `id` and its index, or NULL. */
const struct content_step *content_step(const struct content_sequence *seq, const char *id,
					size_t *index);
/* Whether `name` is a valid stage, sequence or step name: [a-z0-9][a-z0-9_-]*, 1-64 bytes. */
int content_name_valid(const char *name);

#endif
