/* json.h - JSON documents with comments, line numbers for every value and no duplicate keys. */
#ifndef DRIPD_JSON_H
#define DRIPD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/*
 * cJSON reports no positions and keeps duplicate keys silently; config and content need
 * both. A json_doc is cJSON's tree plus the line of every value (of its key, for object
 * members), found by a second scan over the same text. Pure: no I/O but json_doc_load.
 */
struct json_doc;

/*
 * Parses `text` (// and block comments allowed). `file` names the source in error messages,
 * which read "FILE:LINE: what is wrong". Returns NULL and fills err on any error, including
 * a key that appears twice in one object.
 */
struct json_doc *json_doc_parse(const char *file, const char *text, size_t len, char *err,
				size_t errlen);
/* Reads and parses a file; errors as above, or "FILE: cannot read: reason". */
struct json_doc *json_doc_load(const char *file, char *err, size_t errlen);
void json_doc_free(struct json_doc *d);

const cJSON *json_doc_root(const struct json_doc *d);
const char *json_doc_file(const struct json_doc *d);
/* The 1-based line of an item of this document (its key's line for members); 0 if unknown. */
int json_doc_line(const struct json_doc *d, const cJSON *item);

/*
 * Validation helpers. Each returns 0, or DRIP_EINVALID with err set to
 * "FILE:LINE: what: message". `what` names the place in the product's words ("delivery",
 * "step 2").
 */
/* `obj` must be an object whose keys are all in the NULL-terminated `allowed`. */
int json_check_object(const struct json_doc *d, const cJSON *obj, const char *what,
		      const char *const *allowed, char *err, size_t errlen);
/* A string member; absent leaves *out as it was unless `required`. */
int json_get_string(const struct json_doc *d, const cJSON *obj, const char *key, bool required,
		    const char **out, char *err, size_t errlen);
/* An integer member within [min, max]. */
int json_get_int(const struct json_doc *d, const cJSON *obj, const char *key, int64_t min,
		 int64_t max, int64_t *out, char *err, size_t errlen);
/* A number member within [min, max]. */
int json_get_number(const struct json_doc *d, const cJSON *obj, const char *key, double min,
		    double max, double *out, char *err, size_t errlen);
int json_get_bool(const struct json_doc *d, const cJSON *obj, const char *key, bool *out, char *err,
		  size_t errlen);
/* A duration member in the clock syntax ("30s", "3d"). */
int json_get_duration(const struct json_doc *d, const cJSON *obj, const char *key, int64_t *out,
		      char *err, size_t errlen);
/* The index of the string `s` in a JSON array (a lead's tags), or -1; NULL array: -1. */
int json_string_index(const cJSON *array, const char *s);
/* Formats "FILE:LINE: " + message for `item`, returning DRIP_EINVALID. */
int json_errf(const struct json_doc *d, const cJSON *item, char *err, size_t errlen,
	      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
