/* dripctl.c - the command-line client of dripd's control socket. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dripd/control.h"
#include "dripd/csv.h"
#include "dripd/error.h"
#include "dripd/proto.h"
#include "dripd/util.h"

/*
 * DESIGN. The command line is parsed against the daemon's own command table (control.h),
 * so every command, its arguments and `dripctl help` come from one place. One request is
 * sent, one answer read. Exit codes: 0 ok, 1 the command failed, 2 usage, 3 the daemon
 * could not be reached.
 */

#define DRIPCTL_DEFAULT_SOCKET "/run/dripd/control.sock"

enum { EXIT_OK = 0, EXIT_CMD = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static void dripctl_help(FILE *f)
{
	fputs("usage: dripctl [-s SOCKET] [--json] COMMAND [ARGS…]\n\n"
	      "  -s, --socket SOCKET  the control socket (default $DRIPD_SOCKET, then\n"
	      "                       " DRIPCTL_DEFAULT_SOCKET ")\n"
	      "  --json               print the result as JSON, for scripts\n"
	      "  COMMAND --help       the usage of one command\n\n"
	      "commands:\n",
	      f);
	for (const struct control_cmd *c = control_cmds; c->name; c++) {
		struct buf u;
		buf_init(&u);
		control_usage(c, &u);
		fprintf(f, "  %s\n      %s\n", u.data, c->summary);
		buf_free(&u);
	}
	fputs("\nexit status: 0 ok, 1 the command failed, 2 usage error, 3 dripd unreachable (no\n"
	      "socket, no answer, or this user is not allowed to drive it)\n",
	      f);
}

static int dripctl_usage_error(const struct control_cmd *c, const char *fmt, const char *arg)
{
	fprintf(stderr, "dripctl: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	if (c) {
		struct buf u;
		buf_init(&u);
		control_usage(c, &u);
		fprintf(stderr, "usage: dripctl %s\n", u.data);
		buf_free(&u);
	} else {
		fputs("try: dripctl help\n", stderr);
	}
	return EXIT_USAGE;
}

/* Matches the longest command whose words begin argv; *used says how many words it took. */
static const struct control_cmd *dripctl_match(int argc, char **argv, int *used)
{
	const struct control_cmd *best = NULL;
	int best_n = 0;
	for (const struct control_cmd *c = control_cmds; c->name; c++) {
		char *words = xstrdup(c->words), *save = NULL;
		int n = 0;
		bool ok = true;
		for (char *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
			if (n >= argc || strcmp(argv[n], w) != 0) {
				ok = false;
				break;
			}
			n++;
		}
		free(words);
		if (ok && n > best_n) {
			best = c;
			best_n = n;
		}
	}
	*used = best_n;
	return best;
}

static int dripctl_parse_args(const struct control_cmd *c, int argc, char **argv, cJSON *args)
{
	size_t positional = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const struct control_arg *spec = NULL;
		if (a[0] == '-' && a[1] == '-' && a[2] != '\0') {
			for (size_t k = 0; k < CONTROL_MAX_ARGS && c->args[k].key && !spec; k++)
				if (c->args[k].flag && strcmp(c->args[k].flag, a) == 0)
					spec = &c->args[k];
			if (!spec || !spec->meta)
				return dripctl_usage_error(c, "unknown option %s", a);
			if (spec->kind == CONTROL_ARG_FLAG) {
				cJSON_DeleteItemFromObjectCaseSensitive(args, spec->key);
				cJSON_AddTrueToObject(args, spec->key);
				continue;
			}
			if (i + 1 >= argc)
				return dripctl_usage_error(c, "%s needs a value", a);
			const char *v = argv[++i];
			if (spec->kind == CONTROL_ARG_STRING) {
				if (cJSON_GetObjectItemCaseSensitive(args, spec->key))
					return dripctl_usage_error(c, "%s given twice", a);
				cJSON_AddStringToObject(args, spec->key, v);
			} else if (spec->kind == CONTROL_ARG_LIST) {
				cJSON *list = cJSON_GetObjectItemCaseSensitive(args, spec->key);
				if (!list)
					list = cJSON_AddArrayToObject(args, spec->key);
				cJSON_AddItemToArray(list, cJSON_CreateString(v));
			} else {
				const char *eq = strchr(v, '=');
				if (!eq || eq == v)
					return dripctl_usage_error(c, "%s takes KEY=VALUE", a);
				cJSON *map = cJSON_GetObjectItemCaseSensitive(args, spec->key);
				if (!map)
					map = cJSON_AddObjectToObject(args, spec->key);
				char *key = xstrndup(v, (size_t)(eq - v));
				cJSON_DeleteItemFromObjectCaseSensitive(map, key);
				cJSON_AddStringToObject(map, key, eq + 1);
				free(key);
			}
			continue;
		}
		size_t seen = 0;
		for (size_t k = 0; k < CONTROL_MAX_ARGS && c->args[k].key && !spec; k++)
			if (!c->args[k].flag && c->args[k].meta && seen++ == positional)
				spec = &c->args[k];
		if (!spec)
			return dripctl_usage_error(c, "unexpected argument \"%s\"", a);
		if (spec->kind == CONTROL_ARG_LIST) {
			/* A positional list takes this word and every one after it. */
			cJSON *list = cJSON_AddArrayToObject(args, spec->key);
			for (; i < argc; i++)
				cJSON_AddItemToArray(list, cJSON_CreateString(argv[i]));
			break;
		}
		cJSON_AddStringToObject(args, spec->key, a);
		positional++;
	}
	for (size_t k = 0; k < CONTROL_MAX_ARGS && c->args[k].key; k++)
		if (c->args[k].required && c->args[k].meta &&
		    !cJSON_GetObjectItemCaseSensitive(args, c->args[k].key))
			return dripctl_usage_error(c, "missing %s", c->args[k].meta);
	return EXIT_OK;
}

struct dripctl_conn {
	int fd;
	const char *path;
	struct proto_reader r;
};

static int dripctl_connect(struct dripctl_conn *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	c->fd = -1;
	c->path = path;
	proto_reader_init(&c->r);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "dripctl: socket path %s is too long\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "dripctl: cannot reach dripd at %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	c->fd = fd;
	return 0;
}

static void dripctl_disconnect(struct dripctl_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	proto_reader_free(&c->r);
}

/* The next line from dripd, parsed; NULL at the end (quiet) or on garbage (reported). */
static cJSON *dripctl_read(struct dripctl_conn *c, bool quiet_eof)
{
	char chunk[65536];
	bool too_long = false;
	for (;;) {
		char *l = c->r.in.data ? proto_reader_next(&c->r, &too_long) : NULL;
		if (l) {
			cJSON *answer = cJSON_Parse(l);
			if (!answer)
				fprintf(stderr, "dripctl: dripd sent an unreadable answer\n");
			return answer;
		}
		if (too_long) {
			fprintf(stderr, "dripctl: dripd's answer is too long\n");
			return NULL;
		}
		ssize_t n = read(c->fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!quiet_eof)
				fprintf(stderr, "dripctl: dripd at %s closed the connection\n",
					c->path);
			return NULL;
		}
		proto_reader_feed(&c->r, chunk, (size_t)n);
	}
}

/* Sends one request line (a failure is left for the answer's read to report). */
static void dripctl_send(struct dripctl_conn *c, cJSON *req)
{
	char *line = proto_line(req);
	size_t len = strlen(line), off = 0;
	while (off < len) {
		ssize_t n = write(c->fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* dripd may have said why before it closed: read that */
		off += (size_t)n;
	}
	free(line);
}

/* Sends one request line and reads one answer line; NULL (reported) if the daemon went away. */
static cJSON *dripctl_call(struct dripctl_conn *c, cJSON *req)
{
	dripctl_send(c, req);
	return dripctl_read(c, false);
}

static const char *dripctl_s(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static double dripctl_n(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* "2026-11-23T10:00:00Z" as "2026-11-23 10:00 UTC"; "-" for null. */
static void dripctl_time(const cJSON *o, const char *key, char *out, size_t outlen)
{
	const char *s = dripctl_s(o, key);
	if (strlen(s) < 16) {
		snprintf(out, outlen, "-");
		return;
	}
	snprintf(out, outlen, "%.10s %.5s UTC", s, s + 11);
}

static void dripctl_print_lead(const cJSON *lead)
{
	char when[40];
	printf("%s", dripctl_s(lead, "email"));
	const char *fn = dripctl_s(lead, "first_name"), *ln = dripctl_s(lead, "last_name");
	if (*fn || *ln)
		printf(" (%s%s%s)", fn, *fn && *ln ? " " : "", ln);
	printf("\n");
	if (*dripctl_s(lead, "company") || *dripctl_s(lead, "title"))
		printf("  %-10s %s%s%s\n", "works as", dripctl_s(lead, "title"),
		       *dripctl_s(lead, "title") && *dripctl_s(lead, "company") ? " at " : "",
		       dripctl_s(lead, "company"));
	printf("  %-10s %s\n", "stage", dripctl_s(lead, "stage"));
	printf("  %-10s %s\n", "status", dripctl_s(lead, "status"));
	printf("  %-10s %.0f\n", "score", dripctl_n(lead, "score"));
	if (*dripctl_s(lead, "tz"))
		printf("  %-10s %s\n", "time zone", dripctl_s(lead, "tz"));
	const cJSON *tags = cJSON_GetObjectItemCaseSensitive(lead, "tags"), *t;
	if (cJSON_GetArraySize(tags) > 0) {
		printf("  %-10s", "tags");
		cJSON_ArrayForEach(t, tags) printf(" %s", t->valuestring);
		printf("\n");
	}
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(lead, "attrs");
	cJSON_ArrayForEach(t, attrs) printf("  %-10s %s = %s\n", "attribute", t->string,
					    cJSON_IsString(t) ? t->valuestring : "");
	dripctl_time(lead, "created_at", when, sizeof(when));
	printf("  %-10s %s\n", "added", when);
}

static void dripctl_print_more(const char *cmd, const cJSON *res);

/* Each delivery account's line (status and limits), and its limited domains. */
static void dripctl_print_accounts(const cJSON *res)
{
	const cJSON *o;
	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "accounts"))
	{
		const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "governor"), *dm;
		printf("account        %s: %.0f/%.0f threads busy, %.0f sent in 1h (cap %.0f), "
		       "%.0f in 24h (cap %.0f), %s",
		       dripctl_s(o, "name"), dripctl_n(o, "busy"), dripctl_n(o, "threads"),
		       dripctl_n(o, "sent_last_hour"), dripctl_n(o, "per_hour"),
		       dripctl_n(o, "sent_last_24h"), dripctl_n(o, "per_day"),
		       dripctl_s(g, "state"));
		if (strcmp(dripctl_s(g, "state"), "normal") != 0)
			printf(" until %s (%s)", dripctl_s(g, "until"), dripctl_s(g, "reason"));
		if (cJSON_GetObjectItemCaseSensitive(o, "warmup_cap_today"))
			printf(", warm-up cap today %.0f", dripctl_n(o, "warmup_cap_today"));
		printf("\n");
		cJSON_ArrayForEach(dm, cJSON_GetObjectItemCaseSensitive(o, "domains"))
			printf("  domain       %s: %.0f sent in 1h, %.0f in flight\n",
			       dripctl_s(dm, "domain"), dripctl_n(dm, "sent_last_hour"),
			       dripctl_n(dm, "in_flight"));
	}
}

static void dripctl_print(const char *cmd, const cJSON *res)
{
	char when[40];
	const cJSON *o;
	if (strcmp(cmd, "status") == 0) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(res, "touches");
		dripctl_time(res, "now", when, sizeof(when));
		printf("dripd %s, pid %.0f, up %.0fs\n", dripctl_s(res, "version"),
		       dripctl_n(res, "pid"), dripctl_n(res, "uptime_s"));
		printf("business time  %s%s\n", when,
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "test_clock"))
			       ? " (test clock)"
			       : "");
		printf("leads          %.0f (%.0f enrolled", dripctl_n(res, "leads"),
		       dripctl_n(res, "active_enrolments"));
		if (dripctl_n(res, "anonymised") > 0)
			printf(", %.0f anonymised", dripctl_n(res, "anonymised"));
		printf(")\n");
		printf("touches        %.0f pending, %.0f queued, %.0f sending, %.0f sent, "
		       "%.0f failed, %.0f uncertain\n",
		       dripctl_n(t, "pending"), dripctl_n(t, "queued"), dripctl_n(t, "sending"),
		       dripctl_n(t, "sent"), dripctl_n(t, "failed"), dripctl_n(t, "uncertain"));
		dripctl_time(res, "next_due", when, sizeof(when));
		printf("next due       %s\n", when);
		printf("delivery       %s%s\n", dripctl_s(res, "delivery"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "paused")) ? " (PAUSED)"
										     : "");
		dripctl_print_accounts(res);
		const cJSON *wh = cJSON_GetObjectItemCaseSensitive(res, "webhooks");
		if (wh && dripctl_n(wh, "configured") > 0)
			printf("webhooks       %.0f waiting (%.0f retrying), %.0f in flight\n",
			       dripctl_n(wh, "waiting"), dripctl_n(wh, "retrying"),
			       dripctl_n(wh, "in_flight"));
	} else if (strcmp(cmd, "limits") == 0) {
		dripctl_print_accounts(res);
	} else if (strcmp(cmd, "lead.add") == 0) {
		printf("added ");
		dripctl_print_lead(cJSON_GetObjectItemCaseSensitive(res, "lead"));
	} else if (strcmp(cmd, "explain") == 0) {
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "trace"))
		{
			bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ok"));
			printf("  %s %-11s %s\n", ok ? "ok " : "NO ", dripctl_s(o, "check"),
			       dripctl_s(o, "detail"));
		}
		printf("%s", dripctl_s(res, "verdict"));
		if (*dripctl_s(res, "next_send") && strcmp(dripctl_s(res, "verdict"), "waits") == 0)
			printf(" until %s", dripctl_s(res, "next_send"));
		printf("\n");
	} else if (strcmp(cmd, "lead.update") == 0 || strcmp(cmd, "lead.tag") == 0) {
		printf("updated ");
		dripctl_print_lead(cJSON_GetObjectItemCaseSensitive(res, "lead"));
	} else if (strcmp(cmd, "lead.show") == 0) {
		dripctl_print_lead(cJSON_GetObjectItemCaseSensitive(res, "lead"));
		printf("\ntouches\n");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "touches"))
		{
			char due[40], sent[40];
			dripctl_time(o, "due_at", due, sizeof(due));
			dripctl_time(o, "sent_at", sent, sizeof(sent));
			printf("  %-40s %-9s due %s  sent %s\n",
			       dripctl_s(o, "sequence")[0] ? dripctl_s(o, "sequence") : "-",
			       dripctl_s(o, "state"), due, sent);
			printf("    step %s%s%s\n", dripctl_s(o, "step"),
			       *dripctl_s(o, "last_error") ? ": " : "", dripctl_s(o, "last_error"));
		}
		const cJSON *cs = cJSON_GetObjectItemCaseSensitive(res, "consent");
		if (cs) {
			char at[40], conf[40];
			dripctl_time(cs, "signed_up_at", at, sizeof(at));
			dripctl_time(cs, "confirmed_at", conf, sizeof(conf));
			printf("\nconsent\n  form %s, consent text %s\n  signed up %s from %s\n"
			       "  confirmed %s from %s\n",
			       dripctl_s(cs, "form"), dripctl_s(cs, "consent"), at,
			       dripctl_s(cs, "address"), conf, dripctl_s(cs, "confirm_address"));
		}
		printf("\ntimeline\n");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "events"))
		{
			char *detail = cJSON_PrintUnformatted(
				cJSON_GetObjectItemCaseSensitive(o, "detail"));
			dripctl_time(o, "at", when, sizeof(when));
			printf("  %s  %-10s %s\n", when, dripctl_s(o, "kind"), detail);
			cJSON_free(detail);
		}
	} else if (strcmp(cmd, "stats") == 0) {
		double most = 1;
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(
					      res, "funnel")) if (dripctl_n(o, "leads") > most)
			most = dripctl_n(o, "leads");
		printf("funnel\n");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "funnel"))
		{
			char bar[41];
			int len = (int)(dripctl_n(o, "leads") * 40 / most + 0.5);
			memset(bar, '#', (size_t)len);
			bar[len] = '\0';
			printf("  %-16s %6.0f  %s\n", dripctl_s(o, "stage"), dripctl_n(o, "leads"),
			       bar);
		}
		printf("\n  %-40s %3s %6s %14s %14s %14s %14s %14s\n", "sequence/step", "var",
		       "sent", "opened", "clicked", "replied", "bounced", "unsubscribed");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "steps"))
		{
			static const char *const parts[] = { "opened", "clicked", "replied",
							     "bounced", "unsubscribed" };
			const cJSON *rates = cJSON_GetObjectItemCaseSensitive(o, "rates");
			char name[128];
			snprintf(name, sizeof(name), "%s/%s", dripctl_s(o, "sequence"),
				 dripctl_s(o, "step"));
			printf("  %-40.40s %3c %6.0f", name, 'A' + (int)dripctl_n(o, "variant"),
			       dripctl_n(o, "sent"));
			for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
				printf(" %6.0f %6.1f%%", dripctl_n(o, parts[i]),
				       dripctl_n(rates, parts[i]));
			printf("\n");
		}
	} else if (strcmp(cmd, "touch.list") == 0) {
		printf("  %6s  %-28s %-36s %-9s %s\n", "id", "lead", "sequence/step", "state",
		       "last error");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "touches"))
		{
			char name[128];
			snprintf(name, sizeof(name), "%s/%s", dripctl_s(o, "sequence"),
				 dripctl_s(o, "step"));
			printf("  %6.0f  %-28s %-36s %-9s %s\n", dripctl_n(o, "id"),
			       dripctl_s(o, "email"), name, dripctl_s(o, "state"),
			       dripctl_s(o, "last_error"));
		}
	} else if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0) {
		printf("sending is %s\n",
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "paused")) ? "paused"
										     : "on");
	} else if (strcmp(cmd, "lead.pause") == 0 || strcmp(cmd, "lead.resume") == 0) {
		const cJSON *l = cJSON_GetObjectItemCaseSensitive(res, "lead");
		printf("%s is %s\n", dripctl_s(l, "email"), dripctl_s(l, "status"));
	} else if (strcmp(cmd, "touch.resolve") == 0) {
		printf("touch %.0f is %s\n", dripctl_n(res, "id"), dripctl_s(res, "state"));
	} else if (strcmp(cmd, "clock.advance") == 0) {
		dripctl_time(res, "now", when, sizeof(when));
		printf("business time is now %s\n", when);
	} else {
		dripctl_print_more(cmd, res);
	}
}

/* ---- human output helpers ------------------------------------------------------------- */

static bool dripctl_colour_on;

/* An ANSI colour for a terminal, "" otherwise (NO_COLOR or not a tty). */
static const char *dripctl_c(const char *code)
{
	return dripctl_colour_on ? code : "";
}

#define DRIPCTL_RED "\033[31m"
#define DRIPCTL_GREEN "\033[32m"
#define DRIPCTL_YELLOW "\033[33m"
#define DRIPCTL_DIM "\033[2m"
#define DRIPCTL_OFF "\033[0m"

static const char *dripctl_status_colour(const char *status)
{
	if (strcmp(status, "active") == 0 || strcmp(status, "customer") == 0)
		return dripctl_c(DRIPCTL_GREEN);
	if (strcmp(status, "paused") == 0 || strcmp(status, "handoff") == 0 ||
	    strcmp(status, "replied") == 0)
		return dripctl_c(DRIPCTL_YELLOW);
	if (strcmp(status, "unsubscribed") == 0 || strcmp(status, "bounced") == 0 ||
	    strcmp(status, "complained") == 0 || strcmp(status, "forgotten") == 0)
		return dripctl_c(DRIPCTL_RED);
	return "";
}

static int64_t dripctl_parse_iso(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

/* "in 3h 20m", "2d 4h ago", "now": t against now, the two biggest units. */
static void dripctl_relative(int64_t t, int64_t now, char *out, size_t outlen)
{
	int64_t d = t - now, a = d < 0 ? -d : d;
	static const struct {
		int64_t secs;
		const char *unit;
	} units[] = { { 86400, "d" }, { 3600, "h" }, { 60, "m" }, { 1, "s" } };
	char span[32] = "";
	size_t used = 0;
	int parts = 0;
	if (t <= 0) {
		snprintf(out, outlen, "-");
		return;
	}
	if (a < 1) {
		snprintf(out, outlen, "now");
		return;
	}
	for (size_t i = 0; i < 4 && parts < 2; i++) {
		if (a >= units[i].secs || parts > 0) {
			int64_t n = a / units[i].secs;
			a %= units[i].secs;
			if (n == 0 && parts > 0)
				break;
			used += (size_t)snprintf(span + used, sizeof(span) - used, "%s%lld%s",
						 parts ? " " : "", (long long)n, units[i].unit);
			parts++;
		}
	}
	snprintf(out, outlen, d > 0 ? "in %s" : "%s ago", span);
}

static int64_t dripctl_now(const cJSON *res)
{
	int64_t now = dripctl_parse_iso(dripctl_s(res, "now"));
	return now ? now : (int64_t)time(NULL);
}

static void dripctl_print_more(const char *cmd, const cJSON *res)
{
	const cJSON *o;
	char when[48];
	int64_t now = dripctl_now(res);
	if (strcmp(cmd, "lead.list") == 0) {
		int w = 5;
		cJSON_ArrayForEach(
			o, cJSON_GetObjectItemCaseSensitive(
				   res, "leads")) if ((int)strlen(dripctl_s(o, "email")) > w) w =
			(int)strlen(dripctl_s(o, "email"));
		if (w > 48)
			w = 48;
		printf("%-*s  %-24s %-14s %-12s %5s  %s\n", w, "EMAIL", "NAME", "STAGE", "STATUS",
		       "SCORE", "UPDATED");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "leads"))
		{
			char name[128];
			snprintf(name, sizeof(name), "%s %s", dripctl_s(o, "first_name"),
				 dripctl_s(o, "last_name"));
			dripctl_relative(dripctl_parse_iso(dripctl_s(o, "updated_at")), now, when,
					 sizeof(when));
			printf("%-*.*s  %-24.24s %-14.14s %s%-12.12s%s %5.0f  %s\n", w, w,
			       dripctl_s(o, "email"), name, dripctl_s(o, "stage"),
			       dripctl_status_colour(dripctl_s(o, "status")),
			       dripctl_s(o, "status"), dripctl_c(DRIPCTL_OFF),
			       dripctl_n(o, "score"), when);
		}
		printf("%d lead(s)\n",
		       cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(res, "leads")));
	} else if (strcmp(cmd, "queue") == 0) {
		printf("%.0f pending, %.0f being sent%s\n", dripctl_n(res, "pending"),
		       dripctl_n(res, "in_flight"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "paused"))
			       ? " — sending is PAUSED"
			       : "");
		printf("  %-16s %-21s %-32s %s\n", "DUE", "AT (UTC)", "LEAD", "SEQUENCE/STEP");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "touches"))
		{
			char at[40];
			dripctl_relative(dripctl_parse_iso(dripctl_s(o, "due_at")), now, when,
					 sizeof(when));
			dripctl_time(o, "due_at", at, sizeof(at));
			printf("  %-16s %-21s %-32.32s %s/%s\n", when, at, dripctl_s(o, "email"),
			       dripctl_s(o, "sequence"), dripctl_s(o, "step"));
		}
	} else if (strcmp(cmd, "suppress.list") == 0) {
		printf("%-40s %-9s %-14s %-9s %s\n", "ADDRESS", "KIND", "REASON", "SOURCE",
		       "SINCE");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "entries"))
		{
			bool forgotten = strcmp(dripctl_s(o, "kind"), "forgotten") == 0;
			dripctl_relative(dripctl_parse_iso(dripctl_s(o, "at")), now, when,
					 sizeof(when));
			printf("%-40.40s %-9s %-14.14s %-9s %s\n",
			       forgotten ? "(a forgotten address, kept as a hash)"
					 : dripctl_s(o, "address"),
			       dripctl_s(o, "kind"), dripctl_s(o, "reason"), dripctl_s(o, "source"),
			       when);
		}
	} else if (strcmp(cmd, "suppress.add") == 0) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(res, "entry");
		printf("%s is suppressed (%s)\n", dripctl_s(e, "address"), dripctl_s(e, "reason"));
	} else if (strcmp(cmd, "suppress.remove") == 0) {
		printf("%s is off the suppression list (it was: %s)%s\n", dripctl_s(res, "address"),
		       dripctl_s(res, "was"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "forced"))
			       ? "; the override is recorded as an event"
			       : "");
	} else if (strcmp(cmd, "lead.forget") == 0) {
		printf("lead %.0f forgotten: its personal data is erased; a keyed hash of the "
		       "address stays on the suppression list\n",
		       dripctl_n(res, "id"));
	} else if (strcmp(cmd, "reload") == 0) {
		printf("reloaded: %.0f sequences, %.0f templates from %s\n",
		       dripctl_n(res, "sequences"), dripctl_n(res, "templates"),
		       dripctl_s(res, "content_dir"));
	} else if (strcmp(cmd, "simulate") == 0) {
		printf("what would happen from %s to %s (nothing was sent or changed)\n",
		       dripctl_s(res, "from"), dripctl_s(res, "until"));
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "leads"))
		{
			const cJSON *e;
			printf("\n%s", dripctl_s(o, "email"));
			if (*dripctl_s(o, "error")) {
				printf(": %s\n", dripctl_s(o, "error"));
				continue;
			}
			printf(" (%s → %s, %s)\n", dripctl_s(o, "stage"),
			       dripctl_s(o, "stage_after"), dripctl_s(o, "status_after"));
			cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "timeline"))
			{
				char at[40], step[160] = "";
				dripctl_time(e, "at", at, sizeof(at));
				if (*dripctl_s(e, "sequence"))
					snprintf(step, sizeof(step), "%s/%s",
						 dripctl_s(e, "sequence"), dripctl_s(e, "step"));
				printf("  %s  %-6s %-40s %s\n", at, dripctl_s(e, "action"), step,
				       dripctl_s(e, "detail"));
			}
		}
	} else if (strcmp(cmd, "send-test") == 0) {
		printf("test message accepted for %s (%.0f %s); nothing was recorded for the "
		       "lead\n",
		       dripctl_s(res, "to"), dripctl_n(res, "code"), dripctl_s(res, "detail"));
	} else if (strcmp(cmd, "backup") == 0) {
		printf("backup written to %s (%.0f pages in %.0f ms)\n", dripctl_s(res, "file"),
		       dripctl_n(res, "pages"), dripctl_n(res, "ms"));
	} else {
		char *s = cJSON_Print(res);
		printf("%s\n", s);
		cJSON_free(s);
	}
}

/* ---- commands that take more than one exchange ---------------------------------------- */

static cJSON *dripctl_request(const struct control_cmd *c, const cJSON *args, int id)
{
	cJSON *req = cJSON_CreateObject();
	cJSON_AddNumberToObject(req, "v", PROTO_VERSION);
	cJSON_AddNumberToObject(req, "id", id);
	cJSON_AddStringToObject(req, "cmd", c->name);
	cJSON_AddItemToObject(req, "args", cJSON_Duplicate(args, 1));
	return req;
}

/* An error answer printed; the exit code it means. */
static int dripctl_error(const cJSON *answer)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(answer, "error");
	fprintf(stderr, "dripctl: %s (%s)\n", dripctl_s(e, "message"), dripctl_s(e, "code"));
	return strcmp(dripctl_s(e, "code"), "denied") == 0 &&
			       !cJSON_GetObjectItemCaseSensitive(answer, "id")
		       ? EXIT_UNREACHABLE
		       : EXIT_CMD;
}

#define DRIPCTL_CHUNK_ROWS 1000
#define DRIPCTL_CHUNK_BYTES (256 * 1024)
#define DRIPCTL_CHUNKS_IN_FLIGHT 2 /* sent and not yet answered, at most */

struct dripctl_import {
	const char *file;
	FILE *in;
	struct buf buf; /* bytes read and not yet sent */
	size_t start; /* where the unsent records begin in buf */
	bool eof;
	long long total_bytes, read_bytes;
	double added, updated, unchanged, suppressed, bad;
};

static int dripctl_import_fill(struct dripctl_import *im)
{
	char chunk[65536];
	if (im->start > 0) {
		memmove(im->buf.data, im->buf.data + im->start, im->buf.len - im->start);
		im->buf.len -= im->start;
		im->start = 0;
	}
	size_t n = fread(chunk, 1, sizeof(chunk), im->in);
	if (n > 0) {
		buf_add(&im->buf, chunk, n);
		im->read_bytes += (long long)n;
	}
	if (n < sizeof(chunk)) {
		if (ferror(im->in)) {
			fprintf(stderr, "dripctl: reading %s: %s\n", im->file, strerror(errno));
			return -1;
		}
		im->eof = true;
	}
	buf_adds(&im->buf, "");
	return 0;
}

/* Reads the answer to the oldest chunk in flight: its counts and bad lines, the progress
 * line (pos: how far the file has been sent). EXIT_OK, or the exit code of a failure. */
static int dripctl_import_answer(struct dripctl_conn *conn, struct dripctl_import *im,
				 bool progress, size_t pos)
{
	cJSON *answer = dripctl_read(conn, false);
	if (!answer)
		return EXIT_UNREACHABLE;
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "ok"))) {
		int rc = dripctl_error(answer);
		cJSON_Delete(answer);
		return rc;
	}
	const cJSON *res = cJSON_GetObjectItemCaseSensitive(answer, "result"), *e;
	im->added += dripctl_n(res, "added");
	im->updated += dripctl_n(res, "updated");
	im->unchanged += dripctl_n(res, "unchanged");
	im->suppressed += dripctl_n(res, "suppressed");
	im->bad += dripctl_n(res, "bad");
	if (progress && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(res, "errors")) > 0)
		fputs("\r\033[K", stderr);
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(res, "errors")) fprintf(
		stderr, "%s:%.0f: %s\n", im->file, dripctl_n(e, "line"), dripctl_s(e, "message"));
	cJSON_Delete(answer);
	if (progress) {
		fprintf(stderr, "\r\033[K%s: %.0f rows", im->file,
			im->added + im->updated + im->unchanged + im->suppressed + im->bad);
		if (im->total_bytes > 0)
			fprintf(stderr, " (%lld%%)",
				(im->read_bytes - (long long)(im->buf.len - pos)) * 100 /
					im->total_bytes);
	}
	return EXIT_OK;
}

/*
 * lead import: the header is read here, then whole records go to dripd in chunks of at most
 * DRIPCTL_CHUNK_ROWS rows and DRIPCTL_CHUNK_BYTES bytes, each with the line it starts on, so
 * dripd reports the file's own line numbers and memory stays bounded on both sides.
 */
static int dripctl_lead_import(struct dripctl_conn *conn, const struct control_cmd *c, cJSON *args,
			       bool json)
{
	struct dripctl_import im = { .file = dripctl_s(args, "file") };
	struct csv_record rec;
	char why[256];
	size_t used, pos;
	long long line = 1;
	bool progress = isatty(2) && !json;
	int rc = EXIT_OK, id = 1, in_flight = 0; /* chunks sent, not yet answered */
	struct stat sb;

	im.in = strcmp(im.file, "-") == 0 ? stdin : fopen(im.file, "rb");
	if (!im.in) {
		fprintf(stderr, "dripctl: cannot open %s: %s\n", im.file, strerror(errno));
		return EXIT_CMD;
	}
	if (fstat(fileno(im.in), &sb) == 0 && S_ISREG(sb.st_mode))
		im.total_bytes = (long long)sb.st_size;
	buf_init(&im.buf);
	csv_record_init(&rec);
	/* The header row, after a byte-order mark. */
	for (;;) {
		if (dripctl_import_fill(&im)) {
			rc = EXIT_CMD;
			goto out;
		}
		if (im.start == 0 && im.buf.len >= 3)
			im.start = csv_skip_bom(im.buf.data, im.buf.len);
		int r = csv_next(im.buf.data + im.start, im.buf.len - im.start, im.eof, &used, &rec,
				 why, sizeof(why));
		if (r < 0 || (r == 0 && im.eof)) {
			fprintf(stderr, "dripctl: %s:1: %s\n", im.file,
				r < 0 ? why : "no header row (the file is empty)");
			rc = EXIT_CMD;
			goto out;
		}
		if (r == 1)
			break;
	}
	cJSON *header = cJSON_AddArrayToObject(args, "header");
	for (size_t i = 0; i < rec.nfields; i++)
		cJSON_AddItemToArray(header, cJSON_CreateString(rec.fields[i]));
	line += (long long)rec.lines;
	im.start += used;
	for (;;) {
		/* Whole records from start, up to the chunk's limits. */
		size_t rows = 0;
		long long chunk_line = line;
		char *cut_error = NULL;
		pos = im.start;
		for (;;) {
			int r = csv_next(im.buf.data + pos, im.buf.len - pos, im.eof, &used, &rec,
					 why, sizeof(why));
			if (r == 1) {
				pos += used;
				line += (long long)rec.lines;
				if (++rows >= DRIPCTL_CHUNK_ROWS ||
				    pos - im.start >= DRIPCTL_CHUNK_BYTES)
					break;
				continue;
			}
			if (r < 0) {
				cut_error = xasprintf("%s:%lld: %s", im.file, line, why);
				break;
			}
			if (im.eof)
				break;
			size_t off = pos - im.start;
			if (dripctl_import_fill(&im)) {
				rc = EXIT_CMD;
				goto out;
			}
			pos = im.start + off;
		}
		if (pos > im.start) {
			if (memchr(im.buf.data + im.start, '\0', pos - im.start)) {
				fprintf(stderr, "dripctl: %s:%lld: a NUL byte: not a text file\n",
					im.file, chunk_line);
				free(cut_error);
				rc = EXIT_CMD;
				goto out;
			}
			char *text = xstrndup(im.buf.data + im.start, pos - im.start);
			char line_s[32];
			snprintf(line_s, sizeof(line_s), "%lld", chunk_line);
			cJSON_DeleteItemFromObjectCaseSensitive(args, "csv");
			cJSON_DeleteItemFromObjectCaseSensitive(args, "line");
			cJSON_AddStringToObject(args, "csv", text);
			cJSON_AddStringToObject(args, "line", line_s);
			free(text);
			cJSON *req = dripctl_request(c, args, id++);
			dripctl_send(conn, req);
			cJSON_Delete(req);
			im.start = pos;
			/* Two chunks in flight: dripd works on one while the next is cut and
			 * sent, so it never waits for dripctl; then the older one's answer. */
			if (++in_flight >= DRIPCTL_CHUNKS_IN_FLIGHT) {
				in_flight--;
				if ((rc = dripctl_import_answer(conn, &im, progress, pos)) !=
				    EXIT_OK) {
					free(cut_error);
					goto out;
				}
			}
		}
		if (cut_error) {
			for (; in_flight > 0; in_flight--)
				if ((rc = dripctl_import_answer(conn, &im, progress, pos)) !=
				    EXIT_OK) {
					free(cut_error);
					goto out;
				}
			if (progress)
				fputs("\r\033[K", stderr);
			fprintf(stderr, "%s (the rest of the file is not imported)\n", cut_error);
			free(cut_error);
			im.bad++;
			break;
		}
		if (im.eof && pos >= im.buf.len)
			break;
		if (rows == 0 && im.eof)
			break;
	}
	for (; in_flight > 0; in_flight--)
		if ((rc = dripctl_import_answer(conn, &im, progress, pos)) != EXIT_OK)
			goto out;
	if (progress)
		fputs("\r\033[K", stderr);
	if (json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "file", im.file);
		cJSON_AddNumberToObject(o, "added", im.added);
		cJSON_AddNumberToObject(o, "updated", im.updated);
		cJSON_AddNumberToObject(o, "unchanged", im.unchanged);
		cJSON_AddNumberToObject(o, "suppressed", im.suppressed);
		cJSON_AddNumberToObject(o, "bad", im.bad);
		char *out = cJSON_Print(o);
		printf("%s\n", out);
		cJSON_free(out);
		cJSON_Delete(o);
	} else {
		printf("%s: %.0f added, %.0f updated, %.0f unchanged, %.0f suppressed (not "
		       "re-activated), %.0f bad row(s)\n",
		       im.file, im.added, im.updated, im.unchanged, im.suppressed, im.bad);
	}
	if (im.bad > 0)
		rc = EXIT_CMD;
out:
	csv_record_free(&rec);
	buf_free(&im.buf);
	if (im.in != stdin)
		fclose(im.in);
	return rc;
}

/* A paged command: ask again with "after" until "next" is null; CSV goes straight out. */
static int dripctl_paged(struct dripctl_conn *conn, const struct control_cmd *c, cJSON *args,
			 bool json)
{
	cJSON *all = NULL;
	int id = 1, rc = EXIT_OK;
	for (;;) {
		cJSON *req = dripctl_request(c, args, id++);
		cJSON *answer = dripctl_call(conn, req);
		cJSON_Delete(req);
		if (!answer) {
			rc = EXIT_UNREACHABLE;
			break;
		}
		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "ok"))) {
			rc = dripctl_error(answer);
			cJSON_Delete(answer);
			break;
		}
		cJSON *res = cJSON_GetObjectItemCaseSensitive(answer, "result");
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(res, "next");
		const cJSON *csv = cJSON_GetObjectItemCaseSensitive(res, "csv");
		if (cJSON_IsString(csv)) {
			fputs(csv->valuestring, stdout);
		} else if (!all) {
			all = cJSON_DetachItemFromObjectCaseSensitive(answer, "result");
			cJSON_DeleteItemFromObjectCaseSensitive(all, "next");
		} else {
			/* Append this page's lists to the first page's. */
			for (cJSON *item = res->child; item; item = item->next) {
				cJSON *to = cJSON_GetObjectItemCaseSensitive(all, item->string);
				if (cJSON_IsArray(item) && cJSON_IsArray(to))
					while (item->child)
						cJSON_AddItemToArray(to,
								     cJSON_DetachItemViaPointer(
									     item, item->child));
			}
		}
		bool more = cJSON_IsString(next);
		if (more) {
			cJSON_DeleteItemFromObjectCaseSensitive(args, "after");
			cJSON_AddStringToObject(args, "after", next->valuestring);
		}
		cJSON_Delete(answer);
		if (!more)
			break;
	}
	if (all && rc == EXIT_OK) {
		if (json) {
			char *s = cJSON_Print(all);
			printf("%s\n", s);
			cJSON_free(s);
		} else {
			dripctl_print_more(c->name, all);
		}
	}
	cJSON_Delete(all);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "dripctl: writing the output: %s\n", strerror(errno));
		rc = EXIT_CMD;
	}
	return rc;
}

/* watch: the ok answer, then one event per line until dripd or the person ends it. */
static int dripctl_watch(struct dripctl_conn *conn, const struct control_cmd *c, cJSON *args,
			 bool json)
{
	cJSON *req = dripctl_request(c, args, 1);
	cJSON *answer = dripctl_call(conn, req);
	cJSON_Delete(req);
	if (!answer)
		return EXIT_UNREACHABLE;
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "ok"))) {
		int rc = dripctl_error(answer);
		cJSON_Delete(answer);
		return rc;
	}
	cJSON_Delete(answer);
	if (isatty(2) && !json)
		fprintf(stderr, "watching %s (Ctrl-C stops)\n", conn->path);
	setvbuf(stdout, NULL, _IOLBF, 0);
	cJSON *msg;
	while ((msg = dripctl_read(conn, true))) {
		const cJSON *ev = cJSON_GetObjectItemCaseSensitive(msg, "event");
		if (json) {
			char *s = cJSON_PrintUnformatted(ev);
			printf("%s\n", s);
			cJSON_free(s);
		} else if (ev) {
			char when[40], *detail = cJSON_PrintUnformatted(
					       cJSON_GetObjectItemCaseSensitive(ev, "detail"));
			dripctl_time(ev, "at", when, sizeof(when));
			printf("%s%s%s  %-12s %-32s %s%s%s %s\n", dripctl_c(DRIPCTL_DIM), when,
			       dripctl_c(DRIPCTL_OFF), dripctl_s(ev, "kind"),
			       dripctl_s(ev, "email"), dripctl_s(ev, "sequence"),
			       *dripctl_s(ev, "step") ? "/" : "", dripctl_s(ev, "step"), detail);
			cJSON_free(detail);
		}
		cJSON_Delete(msg);
	}
	return EXIT_OK;
}

/* simulate --leads FILE.csv: the file's email column goes to dripd as "emails". */
static int dripctl_sim_leads(cJSON *args)
{
	const char *file = dripctl_s(args, "leads");
	struct csv_record rec;
	struct buf in;
	char chunk[65536], why[256];
	size_t n, pos, used;
	long col = -1, line = 1;
	int rc = EXIT_OK;
	FILE *f = fopen(file, "rb");
	if (!f) {
		fprintf(stderr, "dripctl: cannot open %s: %s\n", file, strerror(errno));
		return EXIT_CMD;
	}
	buf_init(&in);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && in.len < 64 * 1024 * 1024)
		buf_add(&in, chunk, n);
	fclose(f);
	buf_adds(&in, "");
	csv_record_init(&rec);
	cJSON *emails = cJSON_CreateArray();
	pos = csv_skip_bom(in.data, in.len);
	int r;
	while ((r = csv_next(in.data + pos, in.len - pos, true, &used, &rec, why, sizeof(why))) ==
	       1) {
		pos += used;
		if (col < 0) {
			for (size_t i = 0; i < rec.nfields && col < 0; i++)
				if (csv_column(rec.fields[i], why, sizeof(why)) == CSV_COL_EMAIL)
					col = (long)i;
			if (col < 0) {
				fprintf(stderr, "dripctl: %s:1: the header has no email column\n",
					file);
				rc = EXIT_CMD;
				break;
			}
		} else if (!rec.blank && (size_t)col < rec.nfields) {
			cJSON_AddItemToArray(emails, cJSON_CreateString(rec.fields[col]));
		}
		line += (long)rec.lines;
	}
	if (r < 0) {
		fprintf(stderr, "dripctl: %s:%ld: %s\n", file, line, why);
		rc = EXIT_CMD;
	}
	csv_record_free(&rec);
	buf_free(&in);
	cJSON_DeleteItemFromObjectCaseSensitive(args, "leads");
	cJSON_AddItemToObject(args, "emails", emails);
	return rc;
}

int main(int argc, char **argv)
{
	const char *socket_path = getenv("DRIPD_SOCKET");
	bool json = false;
	int i = 1, used = 0, rc;

	signal(SIGPIPE, SIG_IGN); /* a daemon that hangs up is an error to report, not a death */
	if (!socket_path || !*socket_path)
		socket_path = DRIPCTL_DEFAULT_SOCKET;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0) &&
		    i + 1 < argc) {
			socket_path = argv[++i];
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			dripctl_help(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("dripctl %s\n", DRIPD_VERSION);
			return EXIT_OK;
		} else {
			return dripctl_usage_error(NULL, "unknown option %s", argv[i]);
		}
	}
	dripctl_colour_on = isatty(1) && !getenv("NO_COLOR");
	if (i >= argc)
		return dripctl_usage_error(NULL, "%s", "no command given");
	const struct control_cmd *c = dripctl_match(argc - i, argv + i, &used);
	if (!c)
		return dripctl_usage_error(NULL, "unknown command \"%s\"", argv[i]);
	for (int k = i + used; k < argc; k++) {
		if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
			struct buf u;
			buf_init(&u);
			control_usage(c, &u);
			printf("usage: dripctl %s\n  %s\n", u.data, c->summary);
			buf_free(&u);
			return EXIT_OK;
		}
	}
	if (strcmp(c->name, "help") == 0 && !json) {
		dripctl_help(stdout);
		return EXIT_OK;
	}
	cJSON *args = cJSON_CreateObject();
	if ((rc = dripctl_parse_args(c, argc - i - used, argv + i + used, args)) != EXIT_OK) {
		cJSON_Delete(args);
		return rc;
	}
	if (strcmp(c->name, "backup") == 0) {
		/* dripd writes the file: give it a path that means the same from its folder. */
		const char *f = dripctl_s(args, "file");
		if (f[0] != '/') {
			char cwd[4096];
			if (!getcwd(cwd, sizeof(cwd))) {
				fprintf(stderr, "dripctl: cannot tell the current folder: %s\n",
					strerror(errno));
				cJSON_Delete(args);
				return EXIT_CMD;
			}
			char *abs = xasprintf("%s/%s", cwd, f);
			cJSON_DeleteItemFromObjectCaseSensitive(args, "file");
			cJSON_AddStringToObject(args, "file", abs);
			free(abs);
		}
	}
	if (strcmp(c->name, "simulate") == 0 && cJSON_GetObjectItemCaseSensitive(args, "leads") &&
	    (rc = dripctl_sim_leads(args)) != EXIT_OK) {
		cJSON_Delete(args);
		return rc;
	}
	struct dripctl_conn conn;
	if (dripctl_connect(&conn, socket_path) != 0) {
		dripctl_disconnect(&conn);
		cJSON_Delete(args);
		return EXIT_UNREACHABLE;
	}
	if (c->flags & CONTROL_CLIENT_FILE) {
		rc = dripctl_lead_import(&conn, c, args, json);
	} else if (c->flags & CONTROL_PAGED) {
		rc = dripctl_paged(&conn, c, args, json);
	} else if (c->flags & CONTROL_STREAM) {
		rc = dripctl_watch(&conn, c, args, json);
	} else {
		cJSON *req = dripctl_request(c, args, 1);
		cJSON *answer = dripctl_call(&conn, req);
		cJSON_Delete(req);
		if (!answer) {
			rc = EXIT_UNREACHABLE;
		} else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "ok"))) {
			const cJSON *result = cJSON_GetObjectItemCaseSensitive(answer, "result");
			if (json) {
				char *s = cJSON_Print(result);
				printf("%s\n", s);
				cJSON_free(s);
			} else {
				dripctl_print(c->name, result);
			}
			rc = EXIT_OK;
		} else {
			rc = dripctl_error(answer);
		}
		cJSON_Delete(answer);
	}
	dripctl_disconnect(&conn);
	cJSON_Delete(args);
	return rc;
}
