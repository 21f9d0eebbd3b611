/* dripctl.c - the command-line client of dripd's control socket. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dripd/control.h"
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
	fputs("\nexit status: 0 ok, 1 the command failed, 2 usage error, 3 dripd unreachable\n", f);
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
			if (!spec)
				return dripctl_usage_error(c, "unknown option %s", a);
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
			if (!c->args[k].flag && seen++ == positional)
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
		if (c->args[k].required && !cJSON_GetObjectItemCaseSensitive(args, c->args[k].key))
			return dripctl_usage_error(c, "missing %s", c->args[k].meta);
	return EXIT_OK;
}

static int dripctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
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
	return fd;
}

/* Sends one request line and reads one answer line; NULL (reported) if the daemon went away. */
static cJSON *dripctl_call(int fd, const char *path, cJSON *req)
{
	char *line = proto_line(req);
	size_t len = strlen(line), off = 0;
	while (off < len) {
		ssize_t n = write(fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "dripctl: writing to %s: %s\n", path, strerror(errno));
			free(line);
			return NULL;
		}
		off += (size_t)n;
	}
	free(line);
	struct proto_reader r;
	char chunk[65536];
	bool too_long = false;
	cJSON *answer = NULL;
	proto_reader_init(&r);
	for (;;) {
		char *l = proto_reader_next(&r, &too_long);
		if (l) {
			answer = cJSON_Parse(l);
			if (!answer)
				fprintf(stderr, "dripctl: dripd sent an unreadable answer\n");
			break;
		}
		if (too_long) {
			fprintf(stderr, "dripctl: dripd's answer is too long\n");
			break;
		}
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "dripctl: dripd at %s closed the connection\n", path);
			break;
		}
		proto_reader_feed(&r, chunk, (size_t)n);
	}
	proto_reader_free(&r);
	return answer;
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
		printf("leads          %.0f (%.0f enrolled)\n", dripctl_n(res, "leads"),
		       dripctl_n(res, "active_enrolments"));
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
		printf("\n  %-48s %3s %6s %7s %8s %8s %8s\n", "sequence/step", "var", "sent",
		       "opened", "clicked", "replied", "bounced");
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(res, "steps"))
		{
			char name[128];
			double sent = dripctl_n(o, "sent");
			snprintf(name, sizeof(name), "%s/%s", dripctl_s(o, "sequence"),
				 dripctl_s(o, "step"));
			printf("  %-48.48s %3c %6.0f %6.0f%% %7.0f%% %7.0f%% %7.0f%%\n", name,
			       'A' + (int)dripctl_n(o, "variant"), sent,
			       100 * dripctl_n(o, "opened") / sent,
			       100 * dripctl_n(o, "clicked") / sent,
			       100 * dripctl_n(o, "replied") / sent,
			       100 * dripctl_n(o, "bounced") / sent);
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
		char *s = cJSON_Print(res);
		printf("%s\n", s);
		cJSON_free(s);
	}
}

int main(int argc, char **argv)
{
	const char *socket_path = getenv("DRIPD_SOCKET");
	bool json = false;
	int i = 1, used = 0, rc;

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
	cJSON *req = cJSON_CreateObject();
	cJSON_AddNumberToObject(req, "v", PROTO_VERSION);
	cJSON_AddNumberToObject(req, "id", 1);
	cJSON_AddStringToObject(req, "cmd", c->name);
	cJSON *args = cJSON_AddObjectToObject(req, "args");
	if ((rc = dripctl_parse_args(c, argc - i - used, argv + i + used, args)) != EXIT_OK) {
		cJSON_Delete(req);
		return rc;
	}
	int fd = dripctl_connect(socket_path);
	if (fd < 0) {
		cJSON_Delete(req);
		return EXIT_UNREACHABLE;
	}
	cJSON *answer = dripctl_call(fd, socket_path, req);
	close(fd);
	cJSON_Delete(req);
	if (!answer)
		return EXIT_UNREACHABLE;
	const cJSON *result = cJSON_GetObjectItemCaseSensitive(answer, "result");
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "ok"))) {
		if (json) {
			char *s = cJSON_Print(result);
			printf("%s\n", s);
			cJSON_free(s);
		} else {
			dripctl_print(c->name, result);
		}
		rc = EXIT_OK;
	} else {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(answer, "error");
		fprintf(stderr, "dripctl: %s (%s)\n", dripctl_s(e, "message"),
			dripctl_s(e, "code"));
		rc = EXIT_CMD;
	}
	cJSON_Delete(answer);
	return rc;
}
