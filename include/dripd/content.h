/* content.h - the journey, sequences and templates loaded from content/, as one snapshot. */
#ifndef DRIPD_CONTENT_H
#define DRIPD_CONTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/clock.h"

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
	int subject_line, preheader_line; /* the file's lines of the front matter fields */
	int body_line; /* the file's line where the body starts */
	char **link_tags; /* the tags (link titles) of the body's links */
	size_t nlink_tags;
};

/*
 * A condition on a lead: every part that is set must hold. `attr` alone means the attribute
 * is not empty; with `attr_value` it must equal it. `opened` and `clicked` name a step of
 * the same sequence; `event` is any event kind recorded for the lead.
 */
struct content_cond {
	char *tag;
	char *attr;
	char *attr_value;
	char *opened;
	char *clicked;
	char *event;
};

struct content_step {
	char *id;
	int64_t delay; /* seconds after the previous step (after enrolment for the first) */
	const struct content_template *tpl; /* the first variant */
	const struct content_template **variants;
	size_t nvariants; /* at least 1; a lead gets one by a stable hash */
	struct content_cond *when; /* NULL: always */
	struct content_cond *unless; /* NULL: never */
};

struct content_sequence {
	char *name; /* the file's base name */
	char *stage;
	enum content_mode mode;
	char *description;
	char *from; /* "" for its account's from */
	char *account; /* the delivery account that sends it; "" for the default (delivery) */
	int line_of_account; /* for the check against the config's accounts */
	char *opt_out; /* prospect mode: the human opt-out line */
	bool track; /* pixel and click-tracked links (default: nurture yes, prospect no) */
	bool pixel; /* an open-tracking pixel; off by default: it costs deliverability */
	struct content_cond *when; /* which of a stage's sequences a lead gets; NULL: any */
	struct clock_window *window; /* when mail may go, in the lead's zone; NULL: any time */
	char *timezone; /* the zone for leads without one; "": the config's */
	struct content_step *steps;
	size_t nsteps;
	int line_of_stage; /* for errors found after loading */
	char *file;
};

enum content_rule_on {
	RULE_ON_SCORE,
	RULE_ON_CLICK,
	RULE_ON_REPLY,
	RULE_ON_FINISHED,
	RULE_ON_EVENT
};
enum content_rule_action { RULE_MOVE, RULE_HANDOFF, RULE_CUSTOMER };

/* A stage-move rule of journey.json; the first rule that matches an event applies. */
struct content_rule {
	enum content_rule_on on;
	int64_t at_least; /* RULE_ON_SCORE: moves when the score reaches it (below == 0) */
	int64_t below; /* RULE_ON_SCORE: a fall, when the score fades under it; 0: not a fall */
	char *tag; /* RULE_ON_CLICK: the link's tag */
	char *sequence; /* RULE_ON_FINISHED */
	char *kind; /* RULE_ON_EVENT */
	char **from; /* the stages where the rule applies; none: every stage */
	size_t nfrom;
	enum content_rule_action action;
	char *move_to; /* RULE_MOVE */
	int line;
};

struct content_score {
	char *kind;
	int64_t points;
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
	struct content_score *scores;
	size_t nscores;
	int64_t score_half_life; /* seconds in which a score halves; 0: scores never fade */
	struct content_rule *rules;
	size_t nrules;
	int32_t *skip_dates; /* YYYYMMDD, sorted: local dates on which no mail goes */
	size_t nskip_dates;
	char **attributes; /* attrs.KEY a template may use */
	size_t nattributes;
};

/*
 * Loads and validates `dir` (journey.json, every sequences/NAME.json, every .md under
 * templates/). Returns a
 * snapshot with one reference, or NULL with err = "FILE:LINE: what is wrong".
 */
struct content *content_load(const char *dir, char *err, size_t errlen);
struct content *content_ref(struct content *c);
void content_unref(struct content *c);
/* Whether a rule applies to a lead in `stage` (a rule without "from" applies everywhere). */
bool content_rule_applies(const struct content_rule *r, const char *stage);

/* The stage's position in the journey, or -1. */
int content_stage_index(const struct content *c, const char *stage);
const struct content_sequence *content_sequence(const struct content *c, const char *name);
/* The stage's default sequence: the first by name without a `when` (else the first), or NULL. */
const struct content_sequence *content_sequence_for_stage(const struct content *c,
							  const char *stage);
/* Whether the local date (YYYYMMDD) is one of journey.json's skip_dates. */
bool content_skip_date(const struct content *c, int32_t yyyymmdd);
/* The points an event kind adds to a lead's score (0 when journey.json gives none). */
int64_t content_score(const struct content *c, const char *kind);
/* The variant of `step` a lead gets: a stable hash of the address and the step. */
size_t content_variant(const struct content_step *step, const char *email);
/* The step called `id` and its index, or NULL. */
const struct content_step *content_step(const struct content_sequence *seq, const char *id,
					size_t *index);
/* Whether `name` is a valid stage, sequence or step name: [a-z0-9][a-z0-9_-]*, 1-64 bytes. */
int content_name_valid(const char *name);

#endif
