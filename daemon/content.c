/* content.c - loading and validating content/: journey, sequences and templates. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dripd/clock.h"
#include "dripd/content.h"
#include "dripd/error.h"
#include "dripd/json.h"
#include "dripd/render.h"
#include "dripd/util.h"

/*
 * DESIGN. Templates are read first (every .md under templates/, so a typo in one not yet
 * used is caught too), then journey.json, then each sequence, which points at templates by
 * path. Every check names the file and line. Nothing here touches the database or the loop.
 */

#define CONTENT_MAX_FILE (1 << 20)

static const char *const content_journey_keys[] = { "stages", "sender", NULL };
static const char *const content_sender_keys[] = { "company", "postal_address", NULL };
static const char *const content_sequence_keys[] = { "stage", "mode", "description", "steps",
						     NULL };
static const char *const content_step_keys[] = { "id", "delay", "template", NULL };

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
		if (strcmp(p, "subject") == 0)
			field = &t->subject;
		else if (strcmp(p, "preheader") == 0)
			field = &t->preheader;
		else
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
	return content_check_fields(t->file, line, t->body, err, errlen);
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

static int content_load_journey(struct content *c, char *err, size_t errlen)
{
	char *file = xasprintf("%s/journey.json", c->dir);
	struct json_doc *d = json_doc_load(file, err, errlen);
	const cJSON *root, *stages, *sender, *s;
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
	rc = 0;
out:
	json_doc_free(d);
	return rc;
}

static int content_load_step(struct content *c, struct content_sequence *seq,
			     const struct json_doc *d, const cJSON *o, size_t i, char *err,
			     size_t errlen)
{
	struct content_step *step = &seq->steps[i];
	const char *id = NULL, *tpl = NULL;
	char what[32];
	snprintf(what, sizeof(what), "step %zu", i + 1);
	if (json_check_object(d, o, what, content_step_keys, err, errlen) ||
	    json_get_string(d, o, "id", true, &id, err, errlen) ||
	    json_get_string(d, o, "template", true, &tpl, err, errlen))
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
	step->tpl = content_template(c, tpl);
	if (!step->tpl)
		return json_errf(d, cJSON_GetObjectItemCaseSensitive(o, "template"), err, errlen,
				 "%s: no template \"%s\" under %s/templates", what, tpl, c->dir);
	step->id = xstrdup(id);
	seq->nsteps = i + 1;
	return 0;
}

static int content_load_sequence(struct content *c, struct content_sequence *seq, const char *file,
				 char *err, size_t errlen)
{
	struct json_doc *d = json_doc_load(file, err, errlen);
	const cJSON *root, *steps, *o;
	const char *stage = NULL, *mode = "nurture", *description = "";
	int rc = DRIP_ECONTENT;
	size_t i = 0;
	if (!d)
		return DRIP_ECONTENT;
	root = json_doc_root(d);
	if (json_check_object(d, root, "sequence", content_sequence_keys, err, errlen) ||
	    json_get_string(d, root, "stage", true, &stage, err, errlen) ||
	    json_get_string(d, root, "mode", false, &mode, err, errlen) ||
	    json_get_string(d, root, "description", false, &description, err, errlen))
		goto out;
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
	seq->stage = xstrdup(stage);
	seq->description = xstrdup(description);
	steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
	if (!cJSON_IsArray(steps) || cJSON_GetArraySize(steps) < 1) {
		json_errf(d, steps ? steps : root, err, errlen,
			  "sequence: \"steps\" must be a non-empty list");
		goto out;
	}
	seq->steps = xcalloc((size_t)cJSON_GetArraySize(steps), sizeof(*seq->steps));
	cJSON_ArrayForEach(o, steps)
	{
		if (content_load_step(c, seq, d, o, i++, err, errlen))
			goto out;
	}
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
	if (content_load_journey(c, err, errlen) || content_load_sequences(c, err, errlen))
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
		for (size_t j = 0; j < s->nsteps; j++)
			free(s->steps[j].id);
		free(s->steps);
		free(s->name);
		free(s->stage);
		free(s->description);
	}
	free(c->seqs);
	for (size_t i = 0; i < c->ntpls; i++) {
		struct content_template *t = &c->tpls[i];
		free(t->path);
		free(t->file);
		free(t->subject);
		free(t->preheader);
		free(t->body);
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
	for (size_t i = 0; i < c->nseqs; i++)
		if (strcmp(c->seqs[i].stage, stage) == 0)
			return &c->seqs[i];
	return NULL;
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
