/* content.c - loading and validating content/: journey, sequences and templates. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmark.h>

#include "dripd/clock.h"
#include "dripd/content.h"
#include "dripd/error.h"
#include "dripd/json.h"
#include "dripd/message.h"
#include "dripd/render.h"
#include "dripd/util.h"

/*
 * DESIGN. Templates are read first (every .md under templates/, so a typo in one not yet
 * used is caught too), then journey.json, then each sequence, which points at templates by
 * path. Every check names the file and line. Nothing here touches the database or the loop.
 */

#define CONTENT_MAX_FILE (1 << 20)

static const char *const content_journey_keys[] = { "stages",          "sender",     "scores",
						    "rules",           "attributes", "skip_dates",
						    "score_half_life", NULL };
static const char *const content_rule_keys[] = { "on",       "at_least", "below", "tag",
						 "sequence", "kind",     "from",  "move_to",
						 "action",   NULL };
static const char *const content_cond_keys[] = {
	"tag", "attr", "opened", "clicked", "event", NULL
};
static const char *const content_sender_keys[] = { "company", "postal_address", NULL };
static const char *const content_sequence_keys[] = { "stage", "mode",    "description", "steps",
						     "from",  "opt_out", "when",        "track",
						     "pixel", "window",  "timezone",    "account",
						     NULL };
static const char *const content_step_keys[] = { "id",   "delay",  "template", "variants",
						 "when", "unless", NULL };

int content_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 64 ||
	    !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '_'))
			return 0;
	}
	return 1;
}

static int content_read_file(const char *file, char **out, char *err, size_t errlen)
{
	struct buf b;
	char chunk[8192];
	size_t n;
	FILE *f = fopen(file, "rb");
	if (!f)
		return errf(err, errlen, DRIP_ECONTENT, "%s: cannot read: %s", file,
			    strerror(errno));
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= CONTENT_MAX_FILE)
		buf_add(&b, chunk, n);
	bool failed = ferror(f);
	fclose(f);
	if (failed || b.len > CONTENT_MAX_FILE) {
		buf_free(&b);
		return errf(err, errlen, DRIP_ECONTENT, "%s: %s", file,
			    failed ? "read error" : "larger than 1 MiB");
	}
	*out = buf_steal(&b);
	return 0;
}

static int content_line_at(const char *text, size_t off)
{
	int line = 1;
	for (size_t i = 0; i < off && text[i]; i++)
		line += text[i] == '\n';
	return line;
}

/* Checks merge fields in `text`, which starts on `line` of `file`. */
static int content_check_fields(const char *file, int line, const char *text, char *err,
				size_t errlen)
{
	size_t bad = 0;
	char msg[256];
	if (render_check(text, &bad, msg, sizeof(msg)) == 0)
		return 0;
	return errf(err, errlen, DRIP_ECONTENT, "%s:%d: %s", file,
		    line + content_line_at(text, bad) - 1, msg);
}

/* Records the tags that ride in the titles of the body's links ([text](url "tag")). */
static void content_collect_tags(struct content_template *t)
{
	cmark_node *doc = cmark_parse_document(t->body, strlen(t->body), CMARK_OPT_DEFAULT);
	cmark_iter *it = cmark_iter_new(doc);
	cmark_event_type ev;
	size_t cap = 0;
	while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
		cmark_node *n = cmark_iter_get_node(it);
		const char *title;
		if (ev != CMARK_EVENT_ENTER || cmark_node_get_type(n) != CMARK_NODE_LINK)
			continue;
		title = cmark_node_get_title(n);
		if (!title || !*title)
			continue;
		if (t->nlink_tags == cap) {
			cap = cap ? cap * 2 : 4;
			t->link_tags = xrealloc(t->link_tags, cap * sizeof(char *));
		}
		t->link_tags[t->nlink_tags++] = xstrdup(title);
	}
	cmark_iter_free(it);
	cmark_node_free(doc);
}

/*
 * Front matter: "---", then "key: value" lines (subject required, preheader optional), then
 * "---". Everything after is the Markdown body.
 */
static int content_parse_template(struct content_template *t, char *text, char *err, size_t errlen)
{
	char *p = text;
	int line = 1;
	if (strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	if (strncmp(p, "---\n", 4) != 0 && strncmp(p, "---\r\n", 5) != 0)
		return errf(err, errlen, DRIP_ECONTENT,
			    "%s:1: a template starts with a \"---\" line, then \"subject: …\"",
			    t->file);
	p = strchr(p, '\n') + 1;
	line++;
	for (;;) {
		char *eol = strchr(p, '\n');
		if (!eol)
			return errf(err, errlen, DRIP_ECONTENT,
				    "%s:%d: front matter is never closed with \"---\"", t->file,
				    line);
		*eol = '\0';
		if (eol > p && eol[-1] == '\r')
			eol[-1] = '\0';
		if (strcmp(p, "---") == 0) {
			p = eol + 1;
			line++;
			break;
		}
		char *colon = strchr(p, ':');
		if (!colon)
			return errf(err, errlen, DRIP_ECONTENT,
				    "%s:%d: expected \"key: value\" in front matter", t->file,
				    line);
		*colon = '\0';
		char *value = colon + 1;
		while (*value == ' ' || *value == '\t')
			value++;
		char **field = NULL;
		if (strcmp(p, "subject") == 0) {
			field = &t->subject;
			t->subject_line = line;
		} else if (strcmp(p, "preheader") == 0) {
			field = &t->preheader;
			t->preheader_line = line;
		} else
			return errf(err, errlen, DRIP_ECONTENT,
				    "%s:%d: unknown front matter key \"%s\" (known: subject, "
				    "preheader)",
				    t->file, line, p);
		if (*field)
			return errf(err, errlen, DRIP_ECONTENT, "%s:%d: \"%s\" given twice",
				    t->file, line, p);
		*field = xstrdup(value);
		if (content_check_fields(t->file, line, value, err, errlen))
			return DRIP_ECONTENT;
		p = eol + 1;
		line++;
	}
	if (!t->subject || !*t->subject)
		return errf(err, errlen, DRIP_ECONTENT, "%s:2: front matter needs a \"subject\"",
			    t->file);
	if (!t->preheader)
		t->preheader = xstrdup("");
	t->body = xstrdup(p);
	t->body_line = line;
	if (content_check_fields(t->file, line, t->body, err, errlen))
		return DRIP_ECONTENT;
	content_collect_tags(t);
	return 0;
}

static int content_add_templates(struct content *c, const char *root, const char *rel, size_t *cap,
				 char *err, size_t errlen)
{
	char *dirpath = *rel ? xasprintf("%s/%s", root, rel) : xstrdup(root);
	DIR *dir = opendir(dirpath);
	struct dirent *e;
	int rc = 0;
	if (!dir) {
		rc = errf(err, errlen, DRIP_ECONTENT, "%s: cannot open: %s", dirpath,
			  strerror(errno));
		free(dirpath);
		return rc;
	}
	while (rc == 0 && (e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		char *sub = *rel ? xasprintf("%s/%s", rel, e->d_name) : xstrdup(e->d_name);
		char *full = xasprintf("%s/%s", root, sub);
		struct stat sb;
		size_t len = strlen(e->d_name);
		if (stat(full, &sb) != 0) {
			rc = errf(err, errlen, DRIP_ECONTENT, "%s: %s", full, strerror(errno));
		} else if (S_ISDIR(sb.st_mode)) {
			rc = content_add_templates(c, root, sub, cap, err, errlen);
		} else if (len > 3 && strcmp(e->d_name + len - 3, ".md") == 0) {
			if (c->ntpls == *cap) {
				*cap = *cap ? *cap * 2 : 16;
				c->tpls = xrealloc(c->tpls, *cap * sizeof(*c->tpls));
			}
			struct content_template *t = &c->tpls[c->ntpls++];
			char *text = NULL;
			memset(t, 0, sizeof(*t));
			t->path = xstrdup(sub);
			t->file = xstrdup(full);
			rc = content_read_file(full, &text, err, errlen);
			if (rc == 0)
				rc = content_parse_template(t, text, err, errlen);
			free(text);
		}
		free(sub);
		free(full);
	}
	closedir(dir);
	free(dirpath);
	return rc;
}

static int content_tpl_cmp(const void *a, const void *b)
{
	return strcmp(((const struct content_template *)a)->path,
		      ((const struct content_template *)b)->path);
}

static int content_seq_cmp(const void *a, const void *b)
{
	return strcmp(((const struct content_sequence *)a)->name,
		      ((const struct content_sequence *)b)->name);
}

static const struct content_template *content_template(const struct content *c, const char *path)
{
	struct content_template key = { .path = (char *)path };
	return bsearch(&key, c->tpls, c->ntpls, sizeof(*c->tpls), content_tpl_cmp);
}

static char **content_string_list(const struct json_doc *d, const cJSON *arr, const char *what,
				  size_t *n, char *err, size_t errlen)
{
	const cJSON *e;
	char **out;
	*n = 0;
	if (!cJSON_IsArray(arr)) {
		json_errf(d, arr, err, errlen, "%s must be a list of names", what);
		return NULL;
	}
	out = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(char *));
	cJSON_ArrayForEach(e, arr)
	{
		if (!cJSON_IsString(e) || !content_name_valid(e->valuestring)) {
			json_errf(d, e, err, errlen,
				  "%s: a name is lower-case letters, digits, '-' or '_'", what);
			for (size_t i = 0; i < *n; i++)
				free(out[i]);
			free(out);
			*n = 0;
			return NULL;
		}
		out[(*n)++] = xstrdup(e->valuestring);
	}
	return out;
}

static int content_stage_ref(const struct content *c, const struct json_doc *d, const cJSON *item,
			     const char *stage, char *err, size_t errlen)
{
	if (content_stage_index(c, stage) >= 0)
		return 0;
	return json_errf(d, item, err, errlen, "rule: stage \"%s\" is not a stage of the journey",
			 stage);
}

static int content_load_rule(struct content *c, struct content_rule *r, const struct json_doc *d,
			     const cJSON *o, char *err, size_t errlen)
{
	static const char *const ons[] = { "score", "click", "reply", "finished", "event", NULL };
	const char *on = NULL, *tag = NULL, *sequence = NULL, *kind = NULL, *move_to = NULL,
		   *action = NULL;
	const cJSON *from;
	r->line = json_doc_line(d, o);
	if (json_check_object(d, o, "rule", content_rule_keys, err, errlen) ||
	    json_get_string(d, o, "on", true, &on, err, errlen) ||
	    json_get_string(d, o, "tag", false, &tag, err, errlen) ||
	    json_get_string(d, o, "sequence", false, &sequence, err, errlen) ||
	    json_get_string(d, o, "kind", false, &kind, err, errlen) ||
	    json_get_string(d, o, "move_to", false, &move_to, err, errlen) ||
	    json_get_string(d, o, "action", false, &action, err, errlen) ||
	    json_get_int(d, o, "at_least", INT32_MIN, INT32_MAX, &r->at_least, err, errlen) ||
	    json_get_int(d, o, "below", 1, INT32_MAX, &r->below, err, errlen))
		return DRIP_ECONTENT;
	size_t i = 0;
	while (ons[i] && strcmp(ons[i], on) != 0)
		i++;
	if (!ons[i])
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "on"), err, errlen,
				 "rule: \"on\" must be score, click, reply, finished or event");
	r->on = (enum content_rule_on)i;
	bool up = cJSON_GetObjectItemCaseSensitive(o, "at_least") != NULL;
	bool down = cJSON_GetObjectItemCaseSensitive(o, "below") != NULL;
	if (r->on == RULE_ON_SCORE && up == down)
		return json_errf(
			d, o, err, errlen,
			"rule: on score needs either \"at_least\" (moving up when the score "
			"reaches it) or \"below\" (falling back when it fades under it)");
	if (r->on != RULE_ON_SCORE && (up || down))
		return json_errf(d, o, err, errlen, "rule: \"%s\" belongs to rules on score only",
				 up ? "at_least" : "below");
	if (down && (!move_to || !cJSON_GetObjectItemCaseSensitive(o, "from")))
		return json_errf(
			d, o, err, errlen,
			"rule: a fall (\"below\") needs \"from\" (the stages it falls from) "
			"and \"move_to\" (an earlier stage)");
	if (r->on == RULE_ON_CLICK && !tag)
		return json_errf(d, o, err, errlen, "rule: on click needs the link \"tag\"");
	if (r->on == RULE_ON_FINISHED && !sequence)
		return json_errf(d, o, err, errlen, "rule: on finished needs a \"sequence\"");
	if (r->on == RULE_ON_EVENT && !kind)
		return json_errf(d, o, err, errlen, "rule: on event needs the event \"kind\"");
	r->tag = tag ? xstrdup(tag) : NULL;
	r->sequence = sequence ? xstrdup(sequence) : NULL;
	r->kind = kind ? xstrdup(kind) : NULL;
	if ((from = cJSON_GetObjectItemCaseSensitive(o, "from"))) {
		if (!(r->from = content_string_list(d, from, "rule: \"from\"", &r->nfrom, err,
						    errlen)))
			return DRIP_ECONTENT;
		for (size_t k = 0; k < r->nfrom; k++)
			if (content_stage_ref(c, d, from, r->from[k], err, errlen))
				return DRIP_ECONTENT;
	}
	if ((move_to != NULL) == (action != NULL))
		return json_errf(d, o, err, errlen,
				 "rule: give either \"move_to\" (a stage) or \"action\" (handoff "
				 "or customer)");
	if (move_to) {
		r->action = RULE_MOVE;
		r->move_to = xstrdup(move_to);
		if (content_stage_ref(c, d, cJSON_GetObjectItemCaseSensitive(o, "move_to"), move_to,
				      err, errlen))
			return DRIP_ECONTENT;
		for (size_t k = 0; down && k < r->nfrom; k++)
			if (content_stage_index(c, r->from[k]) <= content_stage_index(c, move_to))
				return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "move_to"),
						 err, errlen,
						 "rule: a fall moves back: \"%s\" does not come "
						 "before \"%s\"",
						 move_to, r->from[k]);
		return 0;
	}
	if (strcmp(action, "handoff") == 0)
		r->action = RULE_HANDOFF;
	else if (strcmp(action, "customer") == 0)
		r->action = RULE_CUSTOMER;
	else
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "action"), err, errlen,
				 "rule: \"action\" must be handoff or customer");
	return 0;
}

static int content_int_cmp(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return x < y ? -1 : x > y;
}

bool content_skip_date(const struct content *c, int32_t yyyymmdd)
{
	return c->nskip_dates &&
	       bsearch(&yyyymmdd, c->skip_dates, c->nskip_dates, sizeof(int32_t), content_int_cmp);
}

static int content_load_journey(struct content *c, char *err, size_t errlen)
{
	char *file = xasprintf("%s/journey.json", c->dir);
	struct json_doc *d = json_doc_load(file, err, errlen);
	const cJSON *root, *stages, *sender, *s, *scores, *rules, *attrs;
	const char *company = "", *address = "";
	int rc = DRIP_ECONTENT;
	free(file);
	if (!d)
		return DRIP_ECONTENT;
	root = json_doc_root(d);
	if (json_check_object(d, root, "journey", content_journey_keys, err, errlen))
		goto out;
	stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
	if (!cJSON_IsArray(stages) || cJSON_GetArraySize(stages) < 1) {
		json_errf(d, stages ? stages : root, err, errlen,
			  "journey: \"stages\" must be a list of stage names, first to last");
		goto out;
	}
	c->stages = xcalloc((size_t)cJSON_GetArraySize(stages), sizeof(char *));
	cJSON_ArrayForEach(s, stages)
	{
		if (!cJSON_IsString(s) || !content_name_valid(s->valuestring)) {
			json_errf(
				d, s, err, errlen,
				"journey: a stage name is lower-case letters, digits, '-' or '_'");
			goto out;
		}
		if (content_stage_index(c, s->valuestring) >= 0) {
			json_errf(d, s, err, errlen, "journey: stage \"%s\" is listed twice",
				  s->valuestring);
			goto out;
		}
		c->stages[c->nstages++] = xstrdup(s->valuestring);
	}
	sender = cJSON_GetObjectItemCaseSensitive(root, "sender");
	if (sender &&
	    (json_check_object(d, sender, "journey sender", content_sender_keys, err, errlen) ||
	     json_get_string(d, sender, "company", false, &company, err, errlen) ||
	     json_get_string(d, sender, "postal_address", false, &address, err, errlen)))
		goto out;
	c->company = xstrdup(company);
	c->postal_address = xstrdup(address);
	if ((scores = cJSON_GetObjectItemCaseSensitive(root, "scores"))) {
		if (!cJSON_IsObject(scores)) {
			json_errf(d, scores, err, errlen,
				  "journey: \"scores\" maps event kinds to points, e.g. "
				  "{\"open\": 1, \"click\": 5}");
			goto out;
		}
		c->scores = xcalloc((size_t)cJSON_GetArraySize(scores), sizeof(*c->scores));
		cJSON_ArrayForEach(s, scores)
		{
			struct content_score *sc = &c->scores[c->nscores];
			if (!content_name_valid(s->string)) {
				json_errf(d, s, err, errlen, "journey: \"%s\" is not an event kind",
					  s->string);
				goto out;
			}
			if (json_get_int(d, scores, s->string, -1000, 1000, &sc->points, err,
					 errlen))
				goto out;
			sc->kind = xstrdup(s->string);
			c->nscores++;
		}
	}
	if (json_get_duration(d, root, "score_half_life", &c->score_half_life, err, errlen))
		goto out;
	if (cJSON_GetObjectItemCaseSensitive(root, "score_half_life") && c->score_half_life <= 0) {
		json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "score_half_life"), err, errlen,
			  "journey: \"score_half_life\" must be longer than 0s (leave it out for "
			  "scores that never fade)");
		goto out;
	}
	if ((attrs = cJSON_GetObjectItemCaseSensitive(root, "attributes")) &&
	    !(c->attributes = content_string_list(d, attrs, "journey: \"attributes\"",
						  &c->nattributes, err, errlen)))
		goto out;
	const cJSON *skips = cJSON_GetObjectItemCaseSensitive(root, "skip_dates");
	if (skips) {
		if (!cJSON_IsArray(skips)) {
			json_errf(d, skips, err, errlen,
				  "journey: \"skip_dates\" is a list of dates such as "
				  "\"2026-12-25\"");
			goto out;
		}
		c->skip_dates = xcalloc((size_t)cJSON_GetArraySize(skips) + 1, sizeof(int32_t));
		cJSON_ArrayForEach(s, skips)
		{
			int y, mo, dd, n = 0;
			if (!cJSON_IsString(s) ||
			    sscanf(s->valuestring, "%4d-%2d-%2d%n", &y, &mo, &dd, &n) != 3 ||
			    s->valuestring[n] != '\0' || n != 10 || mo < 1 || mo > 12 || dd < 1 ||
			    dd > 31) {
				json_errf(d, s, err, errlen,
					  "journey: a skip date is written YYYY-MM-DD, e.g. "
					  "\"2026-12-25\"");
				goto out;
			}
			c->skip_dates[c->nskip_dates++] = y * 10000 + mo * 100 + dd;
		}
		qsort(c->skip_dates, c->nskip_dates, sizeof(int32_t), content_int_cmp);
	}
	if ((rules = cJSON_GetObjectItemCaseSensitive(root, "rules"))) {
		if (!cJSON_IsArray(rules)) {
			json_errf(d, rules, err, errlen, "journey: \"rules\" must be a list");
			goto out;
		}
		c->rules = xcalloc((size_t)cJSON_GetArraySize(rules), sizeof(*c->rules));
		cJSON_ArrayForEach(s, rules)
		{
			if (content_load_rule(c, &c->rules[c->nrules++], d, s, err, errlen))
				goto out;
		}
	}
	rc = 0;
out:
	json_doc_free(d);
	return rc;
}

/* Parses a condition object ({"tag": …, "attr": "K=V", "opened": STEP, …}). */
static struct content_cond *content_load_cond(const struct json_doc *d, const cJSON *o,
					      const char *what, bool steps_allowed, char *err,
					      size_t errlen)
{
	struct content_cond *cond = xcalloc(1, sizeof(*cond));
	const char *tag = NULL, *attr = NULL, *opened = NULL, *clicked = NULL, *event = NULL;
	if (json_check_object(d, o, what, content_cond_keys, err, errlen) ||
	    json_get_string(d, o, "tag", false, &tag, err, errlen) ||
	    json_get_string(d, o, "attr", false, &attr, err, errlen) ||
	    json_get_string(d, o, "opened", false, &opened, err, errlen) ||
	    json_get_string(d, o, "clicked", false, &clicked, err, errlen) ||
	    json_get_string(d, o, "event", false, &event, err, errlen))
		goto fail;
	if (!tag && !attr && !opened && !clicked && !event) {
		json_errf(d, o, err, errlen,
			  "%s: an empty condition (give tag, attr, opened, "
			  "clicked or event)",
			  what);
		goto fail;
	}
	if (!steps_allowed && (opened || clicked)) {
		json_errf(d, o, err, errlen,
			  "%s: a sequence is chosen before any step is sent: use tag, attr or "
			  "event",
			  what);
		goto fail;
	}
	cond->tag = tag ? xstrdup(tag) : NULL;
	if (attr) {
		const char *eq = strchr(attr, '=');
		cond->attr = eq ? xstrndup(attr, (size_t)(eq - attr)) : xstrdup(attr);
		cond->attr_value = eq ? xstrdup(eq + 1) : NULL;
	}
	cond->opened = opened ? xstrdup(opened) : NULL;
	cond->clicked = clicked ? xstrdup(clicked) : NULL;
	cond->event = event ? xstrdup(event) : NULL;
	return cond;
fail:
	free(cond);
	return NULL;
}

static void content_cond_free(struct content_cond *cond)
{
	if (!cond)
		return;
	free(cond->tag);
	free(cond->attr);
	free(cond->attr_value);
	free(cond->opened);
	free(cond->clicked);
	free(cond->event);
	free(cond);
}

static int content_load_template_ref(struct content *c, struct content_step *step,
				     const struct json_doc *d, const cJSON *item, const char *what,
				     char *err, size_t errlen)
{
	const struct content_template *t;
	if (!cJSON_IsString(item))
		return json_errf(d, item, err, errlen, "%s: \"template\" must be a string", what);
	t = content_template(c, item->valuestring);
	if (!t)
		return json_errf(d, item, err, errlen, "%s: no template \"%s\" under %s/templates",
				 what, item->valuestring, c->dir);
	step->variants[step->nvariants++] = t;
	return 0;
}

static int content_load_step(struct content *c, struct content_sequence *seq,
			     const struct json_doc *d, const cJSON *o, size_t i, char *err,
			     size_t errlen)
{
	struct content_step *step = &seq->steps[i];
	const cJSON *tpl, *variants, *v, *cond;
	const char *id = NULL;
	char what[32];
	snprintf(what, sizeof(what), "step %zu", i + 1);
	if (json_check_object(d, o, what, content_step_keys, err, errlen) ||
	    json_get_string(d, o, "id", true, &id, err, errlen))
		return DRIP_ECONTENT;
	if (!content_name_valid(id))
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "id"), err, errlen,
				 "%s: id \"%s\" must be lower-case letters, digits, '-' or '_'",
				 what, id);
	if (content_step(seq, id, NULL))
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "id"), err, errlen,
				 "%s: id \"%s\" is used twice in this sequence", what, id);
	if (!cJSON_GetObjectItemCaseSensitive(o, "delay"))
		return json_errf(d, o, err, errlen, "%s: missing \"delay\" (e.g. \"3d\")", what);
	if (json_get_duration(d, o, "delay", &step->delay, err, errlen))
		return DRIP_ECONTENT;
	tpl = cJSON_GetObjectItemCaseSensitive(o, "template");
	variants = cJSON_GetObjectItemCaseSensitive(o, "variants");
	if ((tpl != NULL) == (variants != NULL))
		return json_errf(d, o, err, errlen,
				 "%s: give either \"template\" or \"variants\" (a list of at least "
				 "two templates)",
				 what);
	if (tpl) {
		step->variants = xcalloc(1, sizeof(*step->variants));
		if (content_load_template_ref(c, step, d, tpl, what, err, errlen))
			return DRIP_ECONTENT;
	} else {
		if (!cJSON_IsArray(variants) || cJSON_GetArraySize(variants) < 2)
			return json_errf(d, variants, err, errlen,
					 "%s: \"variants\" is a list of at least two templates",
					 what);
		step->variants =
			xcalloc((size_t)cJSON_GetArraySize(variants), sizeof(*step->variants));
		cJSON_ArrayForEach(v, variants)
		{
			if (content_load_template_ref(c, step, d, v, what, err, errlen))
				return DRIP_ECONTENT;
		}
	}
	step->tpl = step->variants[0];
	if ((cond = cJSON_GetObjectItemCaseSensitive(o, "when")) &&
	    !(step->when = content_load_cond(d, cond, what, true, err, errlen)))
		return DRIP_ECONTENT;
	if ((cond = cJSON_GetObjectItemCaseSensitive(o, "unless")) &&
	    !(step->unless = content_load_cond(d, cond, what, true, err, errlen)))
		return DRIP_ECONTENT;
	step->id = xstrdup(id);
	seq->nsteps = i + 1;
	return 0;
}

/* A step's when/unless may only name steps of its own sequence. */
static int content_check_step_refs(const struct content_sequence *seq, const struct json_doc *d,
				   const cJSON *steps, char *err, size_t errlen)
{
	const cJSON *o;
	size_t i = 0;
	cJSON_ArrayForEach(o, steps)
	{
		const struct content_step *step = &seq->steps[i++];
		const struct content_cond *conds[] = { step->when, step->unless };
		for (size_t k = 0; k < 2; k++) {
			const char *names[] = { conds[k] ? conds[k]->opened : NULL,
						conds[k] ? conds[k]->clicked : NULL };
			for (size_t n = 0; n < 2; n++) {
				if (names[n] && !content_step(seq, names[n], NULL))
					return json_errf(
						d,
						cJSON_GetObjectItemCaseSensitive(o, k ? "unless"
										      : "when"),
						err, errlen,
						"step %zu: \"%s\" names no step of this sequence",
						i, names[n]);
			}
		}
	}
	return 0;
}

static int content_load_sequence(struct content *c, struct content_sequence *seq, const char *file,
				 char *err, size_t errlen)
{
	struct json_doc *d = json_doc_load(file, err, errlen);
	const cJSON *root, *steps, *o, *cond;
	const char *stage = NULL, *mode = "nurture", *description = "", *from = "", *opt_out = "";
	const char *account = "";
	int rc = DRIP_ECONTENT;
	size_t i = 0;
	seq->file = xstrdup(file);
	if (!d)
		return DRIP_ECONTENT;
	root = json_doc_root(d);
	if (json_check_object(d, root, "sequence", content_sequence_keys, err, errlen) ||
	    json_get_string(d, root, "stage", true, &stage, err, errlen) ||
	    json_get_string(d, root, "mode", false, &mode, err, errlen) ||
	    json_get_string(d, root, "description", false, &description, err, errlen) ||
	    json_get_string(d, root, "from", false, &from, err, errlen) ||
	    json_get_string(d, root, "opt_out", false, &opt_out, err, errlen) ||
	    json_get_string(d, root, "account", false, &account, err, errlen))
		goto out;
	/* Which accounts exist is the config's to say: checked by sched_check_accounts. */
	seq->account = xstrdup(account);
	seq->line_of_account = json_doc_line(d, cJSON_GetObjectItemCaseSensitive(root, "account"));
	seq->line_of_stage = json_doc_line(d, cJSON_GetObjectItemCaseSensitive(root, "stage"));
	if (content_stage_index(c, stage) < 0) {
		json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "stage"), err, errlen,
			  "sequence: stage \"%s\" is not a stage of journey.json", stage);
		goto out;
	}
	if (strcmp(mode, "nurture") == 0) {
		seq->mode = CONTENT_NURTURE;
	} else if (strcmp(mode, "prospect") == 0) {
		seq->mode = CONTENT_PROSPECT;
	} else {
		json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "mode"), err, errlen,
			  "sequence: mode must be \"nurture\" or \"prospect\"");
		goto out;
	}
	if (*from) {
		char addr[256];
		if (message_address(from, addr, sizeof(addr)) != 0 || strpbrk(from, "\r\n")) {
			json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "from"), err, errlen,
				  "sequence: \"from\" must be an address such as \"Ana Ruiz "
				  "<ana@example.com>\"");
			goto out;
		}
	}
	if (seq->mode == CONTENT_PROSPECT && !*opt_out) {
		json_errf(d, root, err, errlen,
			  "sequence: prospect mail needs an \"opt_out\" line (e.g. \"Not the right "
			  "time? Reply 'no thanks' and I won't write again.\")");
		goto out;
	}
	if (strpbrk(opt_out, "\r\n")) {
		json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "opt_out"), err, errlen,
			  "sequence: \"opt_out\" is one line");
		goto out;
	}
	const char *window = NULL, *tz = "";
	if (json_get_string(d, root, "window", false, &window, err, errlen) ||
	    json_get_string(d, root, "timezone", false, &tz, err, errlen))
		goto out;
	if (window) {
		char why[256];
		seq->window = xcalloc(1, sizeof(*seq->window));
		if (clock_window_parse(window, seq->window, why, sizeof(why)) != 0) {
			json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "window"), err, errlen,
				  "sequence: \"window\": %s", why);
			goto out;
		}
	}
	if (*tz && !clock_tz_valid(tz)) {
		json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "timezone"), err, errlen,
			  "sequence: unknown time zone \"%s\" (an IANA name such as "
			  "\"Europe/Berlin\")",
			  tz);
		goto out;
	}
	seq->timezone = xstrdup(tz);
	seq->track = seq->mode == CONTENT_NURTURE;
	if (json_get_bool(d, root, "track", &seq->track, err, errlen) ||
	    json_get_bool(d, root, "pixel", &seq->pixel, err, errlen))
		goto out;
	if (seq->pixel && !seq->track) {
		json_errf(d, cJSON_GetObjectItemCaseSensitive(root, "pixel"), err, errlen,
			  "sequence: \"pixel\" needs tracking (\"track\": true)");
		goto out;
	}
	seq->stage = xstrdup(stage);
	seq->description = xstrdup(description);
	seq->from = xstrdup(from);
	seq->opt_out = xstrdup(opt_out);
	if ((cond = cJSON_GetObjectItemCaseSensitive(root, "when")) &&
	    !(seq->when = content_load_cond(d, cond, "sequence", false, err, errlen)))
		goto out;
	steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
	if (!cJSON_IsArray(steps) || cJSON_GetArraySize(steps) < 1) {
		json_errf(d, steps ? steps : root, err, errlen,
			  "sequence: \"steps\" must be a non-empty list");
		goto out;
	}
	seq->steps = xcalloc((size_t)cJSON_GetArraySize(steps), sizeof(*seq->steps));
	cJSON_ArrayForEach(o, steps)
	{
		if (content_load_step(c, seq, d, o, i++, err, errlen)) {
			seq->nsteps = i; /* so the failed step's parts are freed too */
			goto out;
		}
	}
	if (content_check_step_refs(seq, d, steps, err, errlen))
		goto out;
	rc = 0;
out:
	json_doc_free(d);
	return rc;
}

static int content_load_sequences(struct content *c, char *err, size_t errlen)
{
	char *dirpath = xasprintf("%s/sequences", c->dir);
	DIR *dir = opendir(dirpath);
	struct dirent *e;
	size_t cap = 0;
	int rc = 0;
	if (!dir) {
		rc = errf(err, errlen, DRIP_ECONTENT, "%s: cannot open: %s", dirpath,
			  strerror(errno));
		free(dirpath);
		return rc;
	}
	while (rc == 0 && (e = readdir(dir))) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		char *name = xstrndup(e->d_name, len - 5);
		char *file = xasprintf("%s/%s", dirpath, e->d_name);
		if (!content_name_valid(name)) {
			rc = errf(err, errlen, DRIP_ECONTENT,
				  "%s: a sequence file is named in lower-case letters, digits, "
				  "'-' or '_', then .json",
				  file);
		} else {
			if (c->nseqs == cap) {
				cap = cap ? cap * 2 : 8;
				c->seqs = xrealloc(c->seqs, cap * sizeof(*c->seqs));
			}
			struct content_sequence *seq = &c->seqs[c->nseqs++];
			memset(seq, 0, sizeof(*seq));
			seq->name = xstrdup(name);
			rc = content_load_sequence(c, seq, file, err, errlen);
		}
		free(name);
		free(file);
	}
	closedir(dir);
	free(dirpath);
	if (rc == 0)
		qsort(c->seqs, c->nseqs, sizeof(*c->seqs), content_seq_cmp);
	return rc;
}

struct content_attr_check {
	const struct content *c;
	char bad[128]; /* the walk frees names after the callback: keep a copy */
	size_t offset;
};

static int content_attr_cb(void *arg, const char *name, size_t offset)
{
	struct content_attr_check *chk = arg;
	if (strncmp(name, "attrs.", 6) != 0)
		return 0;
	for (size_t i = 0; i < chk->c->nattributes; i++)
		if (strcmp(chk->c->attributes[i], name + 6) == 0)
			return 0;
	snprintf(chk->bad, sizeof(chk->bad), "%s", name);
	chk->offset = offset;
	return 1;
}

/* Every {{attrs.KEY}} a template uses must be an attribute journey.json declares. */
static int content_check_attributes(const struct content *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->ntpls; i++) {
		const struct content_template *t = &c->tpls[i];
		const char *parts[] = { t->subject, t->preheader, t->body };
		int lines[] = { t->subject_line, t->preheader_line, t->body_line };
		for (size_t k = 0; k < 3; k++) {
			struct content_attr_check chk = { .c = c };
			render_each_field(parts[k], content_attr_cb, &chk);
			if (chk.bad[0])
				return errf(err, errlen, DRIP_ECONTENT,
					    "%s:%d: merge field \"%s\" is not a lead field nor an "
					    "attribute journey.json declares (\"attributes\")",
					    t->file,
					    lines[k] + content_line_at(parts[k], chk.offset) - 1,
					    chk.bad);
		}
	}
	return 0;
}

static bool content_tag_used(const struct content *c, const char *tag)
{
	for (size_t i = 0; i < c->ntpls; i++)
		for (size_t k = 0; k < c->tpls[i].nlink_tags; k++)
			if (strcmp(c->tpls[i].link_tags[k], tag) == 0)
				return true;
	return false;
}

bool content_rule_applies(const struct content_rule *r, const char *stage)
{
	if (r->nfrom == 0)
		return true;
	for (size_t i = 0; i < r->nfrom; i++)
		if (strcmp(r->from[i], stage) == 0)
			return true;
	return false;
}

/* Rules must name real sequences and tags, and with rules every stage must be reachable; a
 * fall must sit under the threshold that moves a lead up (hysteresis). */
static int content_check_rules(const struct content *c, char *err, size_t errlen)
{
	bool *reachable;
	int rc = 0;
	if (c->nrules == 0)
		return 0;
	reachable = xcalloc(c->nstages, sizeof(bool));
	reachable[0] = true;
	for (size_t i = 0; i < c->nrules && rc == 0; i++) {
		const struct content_rule *r = &c->rules[i];
		if (r->on == RULE_ON_CLICK && !content_tag_used(c, r->tag))
			rc = errf(err, errlen, DRIP_ECONTENT,
				  "%s/journey.json:%d: rule: no link in any template carries the "
				  "tag \"%s\" ([text](url \"%s\"))",
				  c->dir, r->line, r->tag, r->tag);
		else if (r->on == RULE_ON_FINISHED && !content_sequence(c, r->sequence))
			rc = errf(err, errlen, DRIP_ECONTENT,
				  "%s/journey.json:%d: rule: no sequence \"%s\"", c->dir, r->line,
				  r->sequence);
		for (size_t k = 0; r->below > 0 && k < c->nrules && rc == 0; k++) {
			const struct content_rule *u = &c->rules[k];
			if (u->on != RULE_ON_SCORE || u->below > 0 || u->action != RULE_MOVE ||
			    !content_rule_applies(r, u->move_to) ||
			    (u->nfrom && !content_rule_applies(u, r->move_to)) ||
			    r->below < u->at_least)
				continue;
			rc = errf(
				err, errlen, DRIP_ECONTENT,
				"%s/journey.json:%d: rule: \"below\": %lld must be under the "
				"\"at_least\": %lld of the rule on line %d that moves %s to %s, or "
				"a lead would bounce between them",
				c->dir, r->line, (long long)r->below, (long long)u->at_least,
				u->line, r->move_to, u->move_to);
		}
		if (rc)
			break;
		if (r->action == RULE_MOVE)
			reachable[content_stage_index(c, r->move_to)] = true;
		else if (r->action == RULE_CUSTOMER)
			reachable[c->nstages - 1] = true;
	}
	for (size_t i = 0; i < c->nstages && rc == 0; i++)
		if (!reachable[i])
			rc = errf(err, errlen, DRIP_ECONTENT,
				  "%s/journey.json: stage \"%s\" is reached by no rule (add a rule "
				  "with \"move_to\": \"%s\")",
				  c->dir, c->stages[i], c->stages[i]);
	free(reachable);
	return rc;
}

struct content *content_load(const char *dir, char *err, size_t errlen)
{
	struct content *c = xcalloc(1, sizeof(*c));
	size_t cap = 0;
	c->refs = 1;
	c->dir = xstrdup(dir);
	char *tdir = xasprintf("%s/templates", dir);
	int rc = content_add_templates(c, tdir, "", &cap, err, errlen);
	free(tdir);
	if (rc)
		goto fail;
	qsort(c->tpls, c->ntpls, sizeof(*c->tpls), content_tpl_cmp);
	if (content_load_journey(c, err, errlen) || content_load_sequences(c, err, errlen) ||
	    content_check_attributes(c, err, errlen) || content_check_rules(c, err, errlen))
		goto fail;
	return c;
fail:
	content_unref(c);
	return NULL;
}

struct content *content_ref(struct content *c)
{
	c->refs++;
	return c;
}

void content_unref(struct content *c)
{
	if (!c || --c->refs > 0)
		return;
	for (size_t i = 0; i < c->nstages; i++)
		free(c->stages[i]);
	free(c->stages);
	for (size_t i = 0; i < c->nseqs; i++) {
		struct content_sequence *s = &c->seqs[i];
		for (size_t j = 0; s->steps && j < s->nsteps; j++) {
			free(s->steps[j].id);
			free(s->steps[j].variants);
			content_cond_free(s->steps[j].when);
			content_cond_free(s->steps[j].unless);
		}
		free(s->steps);
		free(s->name);
		free(s->stage);
		free(s->description);
		free(s->from);
		free(s->account);
		free(s->opt_out);
		free(s->file);
		free(s->window);
		free(s->timezone);
		content_cond_free(s->when);
	}
	for (size_t i = 0; i < c->nrules; i++) {
		struct content_rule *r = &c->rules[i];
		free(r->tag);
		free(r->sequence);
		free(r->kind);
		free(r->move_to);
		for (size_t k = 0; k < r->nfrom; k++)
			free(r->from[k]);
		free(r->from);
	}
	free(c->rules);
	free(c->skip_dates);
	for (size_t i = 0; i < c->nscores; i++)
		free(c->scores[i].kind);
	free(c->scores);
	for (size_t i = 0; i < c->nattributes; i++)
		free(c->attributes[i]);
	free(c->attributes);
	free(c->seqs);
	for (size_t i = 0; i < c->ntpls; i++) {
		struct content_template *t = &c->tpls[i];
		free(t->path);
		free(t->file);
		free(t->subject);
		free(t->preheader);
		free(t->body);
		for (size_t k = 0; k < t->nlink_tags; k++)
			free(t->link_tags[k]);
		free(t->link_tags);
	}
	free(c->tpls);
	free(c->company);
	free(c->postal_address);
	free(c->dir);
	free(c);
}

int content_stage_index(const struct content *c, const char *stage)
{
	for (size_t i = 0; i < c->nstages; i++)
		if (strcmp(c->stages[i], stage) == 0)
			return (int)i;
	return -1;
}

const struct content_sequence *content_sequence(const struct content *c, const char *name)
{
	struct content_sequence key = { .name = (char *)name };
	return bsearch(&key, c->seqs, c->nseqs, sizeof(*c->seqs), content_seq_cmp);
}

const struct content_sequence *content_sequence_for_stage(const struct content *c,
							  const char *stage)
{
	const struct content_sequence *first = NULL;
	for (size_t i = 0; i < c->nseqs; i++) {
		if (strcmp(c->seqs[i].stage, stage) != 0)
			continue;
		if (!c->seqs[i].when)
			return &c->seqs[i];
		if (!first)
			first = &c->seqs[i];
	}
	return first;
}

const struct content_step *content_step(const struct content_sequence *seq, const char *id,
					size_t *index)
{
	for (size_t i = 0; i < seq->nsteps; i++) {
		if (strcmp(seq->steps[i].id, id) == 0) {
			if (index)
				*index = i;
			return &seq->steps[i];
		}
	}
	return NULL;
}

int64_t content_score(const struct content *c, const char *kind)
{
	for (size_t i = 0; i < c->nscores; i++)
		if (strcmp(c->scores[i].kind, kind) == 0)
			return c->scores[i].points;
	return 0;
}

size_t content_variant(const struct content_step *step, const char *email)
{
	/* FNV-1a over the lower-cased address and the step id: stable across restarts and
	 * reloads, independent of the order leads arrive in. */
	uint64_t h = UTIL_FNV1A_SEED;
	for (const char *p = email; *p; p++) {
		char lower = *p >= 'A' && *p <= 'Z' ? (char)(*p + 32) : *p;
		h = util_fnv1a(h, &lower, 1);
	}
	h = util_fnv1a(h, "/", 1);
	h = util_fnv1a(h, step->id, strlen(step->id));
	return step->nvariants ? (size_t)(h % step->nvariants) : 0;
}
