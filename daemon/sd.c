/* sd.c - systemd: readiness, status text, the watchdog, socket activation, credentials. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef DRIPD_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "dripd/dripd.h"
#include "dripd/error.h"
#include "dripd/log.h"
#include "dripd/mailer.h"
#include "dripd/sched.h"
#include "dripd/sd.h"
#include "dripd/store.h"
#include "dripd/util.h"

/*
 * DESIGN. One struct sd, made first thing in main_run, holds what systemd passed in the
 * environment: whether it listens (NOTIFY_SOCKET), the watchdog interval and the inherited
 * listening fds with their names, read through libsystemd's sd-daemon when built with it
 * (sd_watchdog_enabled, sd_listen_fds_with_names), else by our own code. Messages go out
 * as single datagrams on our own non-blocking socket in both builds (see sd_send); a lost
 * datagram is not an error worth more than a debug line. The one timer (only under systemd) pings the watchdog
 * and refreshes STATUS= from numbers that cost nothing or one capped index range count: the
 * touches due now (the partial index on pending touches' due_at), the jobs with sender
 * threads (mailer_busy) and the global pause.
 */

struct sd_fd {
	int fd;
	char *name;
};

struct sd {
	bool notify; /* NOTIFY_SOCKET is set */
	int sock; /* our datagram socket to NOTIFY_SOCKET, -1 until first used */
	struct sockaddr_un addr;
	socklen_t addrlen;
	uint64_t watchdog_usec;
	struct sd_fd *fds; /* inherited listening sockets; fd -1 once claimed */
	size_t nfds;
	struct dripd *d;
	uv_timer_t timer;
	bool timer_on;
	bool reload_refused; /* the last reload was refused: said in every status */
	char status[160]; /* the last STATUS= sent */
};

#ifdef DRIPD_HAVE_LIBSYSTEMD

static void sd_env_init(struct sd *sd)
{
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0)
		sd->watchdog_usec = usec;
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		log_warn("sd: LISTEN_FDS: %s", strerror(-n));
		n = 0;
	}
	sd->fds = xcalloc((size_t)n + 1, sizeof(*sd->fds));
	for (int i = 0; i < n; i++) {
		sd->fds[i].fd = SD_LISTEN_FDS_START + i;
		sd->fds[i].name = xstrdup(names && names[i] ? names[i] : "unknown");
	}
	sd->nfds = (size_t)n;
	if (names) {
		for (int i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
}

#else /* !DRIPD_HAVE_LIBSYSTEMD: the same protocol, spoken by hand */

#define SD_LISTEN_FDS_START 3

/* A whole unsigned decimal number, or -1. */
static long long sd_env_number(const char *name)
{
	const char *v = getenv(name);
	char *end;
	if (!v || !*v)
		return -1;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || *end || n > (unsigned long long)INT64_MAX)
		return -1;
	return (long long)n;
}

static void sd_env_init(struct sd *sd)
{
	long long wpid = sd_env_number("WATCHDOG_PID");
	long long wusec = sd_env_number("WATCHDOG_USEC");
	if (wusec > 0 && (wpid < 0 || wpid == (long long)getpid()))
		sd->watchdog_usec = (uint64_t)wusec;

	long long lpid = sd_env_number("LISTEN_PID");
	long long n = sd_env_number("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	if (lpid != (long long)getpid() || n < 0 || n > 64)
		n = 0;
	sd->fds = xcalloc((size_t)n + 1, sizeof(*sd->fds));
	for (long long i = 0; i < n; i++) {
		const char *colon = names ? strchr(names, ':') : NULL;
		size_t len = names ? (colon ? (size_t)(colon - names) : strlen(names)) : 0;
		sd->fds[i].fd = SD_LISTEN_FDS_START + (int)i;
		sd->fds[i].name = len ? xstrndup(names, len) : xstrdup("unknown");
		names = colon ? colon + 1 : NULL;
		fcntl(sd->fds[i].fd, F_SETFD, FD_CLOEXEC);
	}
	sd->nfds = (size_t)n;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

#endif

/*
 * NOTIFY_SOCKET: a path, or "@name" for an abstract socket. Read once: the variable stays
 * set (a reload notifies too), but nothing here looks at it again.
 */
static void sd_notify_init(struct sd *sd)
{
	const char *ns = getenv("NOTIFY_SOCKET");
	sd->sock = -1;
	if (!ns || (ns[0] != '/' && ns[0] != '@') || strlen(ns) >= sizeof(sd->addr.sun_path))
		return;
	sd->notify = true;
	sd->addr.sun_family = AF_UNIX;
	memcpy(sd->addr.sun_path, ns, strlen(ns));
	if (ns[0] == '@')
		sd->addr.sun_path[0] = '\0'; /* an abstract socket */
	sd->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(ns));
}

/*
 * One datagram to systemd, never blocking: libsystemd's sd_notify() blocks while the
 * receiver's queue is full (a test that read nothing hung in sendmsg after ~10 pings), and
 * the loop must not wait on systemd. A datagram that does not fit is dropped: the next
 * ping or status follows within WATCHDOG_USEC / 2.
 */
static void sd_send(struct sd *sd, const char *msg)
{
	if (!sd->notify)
		return;
	if (sd->sock < 0 &&
	    (sd->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		log_debug("sd: notify socket: %s", strerror(errno));
		return;
	}
	if (sendto(sd->sock, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sd->addr,
		   sd->addrlen) < 0)
		log_debug("sd: notify: %s", strerror(errno));
}

struct sd *sd_new(void)
{
	struct sd *sd = xcalloc(1, sizeof(*sd));
	sd_notify_init(sd);
	sd_env_init(sd);
	for (size_t i = 0; i < sd->nfds; i++)
		log_debug("sd: inherited fd %d named \"%s\"", sd->fds[i].fd, sd->fds[i].name);
	return sd;
}

bool sd_notifying(const struct sd *sd)
{
	return sd->notify;
}

uint64_t sd_watchdog_usec(const struct sd *sd)
{
	return sd->watchdog_usec;
}

/* Whether fd is a listening stream socket of `family` (0: AF_INET or AF_INET6). */
static int sd_check_socket(int fd, int family, const char *name, char *err, size_t errlen)
{
	struct stat sb;
	int type = 0, domain = 0, listening = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(domain), l3 = sizeof(listening);
	if (fstat(fd, &sb) != 0 || !S_ISSOCK(sb.st_mode) ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l3) != 0)
		return errf(err, errlen, DRIP_EINVALID,
			    "sd: the fd systemd passed as \"%s\" is not a socket", name);
	bool family_ok = family ? domain == family : (domain == AF_INET || domain == AF_INET6);
	if (type != SOCK_STREAM || !family_ok || !listening)
		return errf(err, errlen, DRIP_EINVALID,
			    "sd: the socket systemd passed as \"%s\" is not a listening %s stream "
			    "socket (check ListenStream= and FileDescriptorName= in the .socket "
			    "unit)",
			    name, family == AF_UNIX ? "AF_UNIX" : "TCP");
	return 0;
}

int sd_listen_fd(struct sd *sd, const char *name, int family, char *err, size_t errlen)
{
	for (size_t i = 0; i < sd->nfds; i++) {
		if (sd->fds[i].fd < 0 || strcmp(sd->fds[i].name, name) != 0)
			continue;
		int fd = sd->fds[i].fd, rc;
		sd->fds[i].fd = -1;
		if ((rc = sd_check_socket(fd, family, name, err, errlen)) != 0) {
			close(fd);
			return rc;
		}
		log_info("sd: using the \"%s\" socket systemd passed (fd %d)", name, fd);
		return fd;
	}
	return DRIP_ENOT_FOUND;
}

void sd_status_format(char *buf, size_t len, int64_t due, bool capped, size_t sending, bool paused)
{
	snprintf(buf, len, "%" PRId64 "%s due, %zu sending, paused: %s", due, capped ? "+" : "",
		 sending, paused ? "yes" : "no");
}

/* The current STATUS= text into buf. */
static void sd_status_now(struct sd *sd, char *buf, size_t len)
{
	struct dripd *d = sd->d;
	int64_t due = 0;
	size_t n;
	if (store_touch_due_count(d->store, clock_now(&d->clock), SD_DUE_CAP, &due) != 0) {
		snprintf(buf, len, "cannot read the database (see the journal)");
		return;
	}
	sd_status_format(buf, len, due, due >= SD_DUE_CAP, d->mailer ? mailer_busy(d->mailer) : 0,
			 d->sched && sched_paused(d->sched));
	n = strlen(buf);
	if (d->stopping)
		snprintf(buf + n, len - n, "; stopping");
	else if (sd->reload_refused)
		snprintf(buf + n, len - n, "; last reload refused (see the journal)");
}

/* Sends `head` (or nothing), plus STATUS= when it changed since the last one sent. */
static void sd_send_status(struct sd *sd, const char *head, bool force)
{
	char status[sizeof(sd->status)], msg[sizeof(sd->status) + 64];
	if (!sd->notify)
		return;
	sd_status_now(sd, status, sizeof(status));
	bool changed = force || strcmp(status, sd->status) != 0;
	if (!changed && !*head)
		return;
	snprintf(msg, sizeof(msg), "%s%s%s%s", head, *head && changed ? "\n" : "",
		 changed ? "STATUS=" : "", changed ? status : "");
	sd_send(sd, msg);
	if (changed)
		memcpy(sd->status, status, sizeof(status));
}

static void sd_timer_cb(uv_timer_t *t)
{
	struct sd *sd = t->data;
	sd_send_status(sd, sd->watchdog_usec ? "WATCHDOG=1" : "", false);
}

void sd_ready(struct sd *sd, struct dripd *d)
{
	sd->d = d;
	for (size_t i = 0; i < sd->nfds; i++) {
		if (sd->fds[i].fd < 0)
			continue;
		log_warn("sd: systemd passed a socket named \"%s\" that dripd does not use: closed "
			 "(FileDescriptorName= must be \"control\" or \"tracking\")",
			 sd->fds[i].name);
		close(sd->fds[i].fd);
		sd->fds[i].fd = -1;
	}
	if (!sd->notify)
		return;
	sd_send_status(sd, sd->watchdog_usec ? "READY=1\nWATCHDOG=1" : "READY=1", true);
	uint64_t every = sd->watchdog_usec ? sd->watchdog_usec / 2000 : SD_STATUS_IDLE_MS;
	if (every < 1)
		every = 1;
	uv_timer_init(d->loop, &sd->timer);
	sd->timer.data = sd;
	sd->timer_on = true;
	uv_timer_start(&sd->timer, sd_timer_cb, every, every);
	if (sd->watchdog_usec)
		log_info("sd: watchdog pings every %" PRIu64 " ms", every);
}

void sd_reloading(struct sd *sd)
{
	char msg[96];
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading",
		 usec);
	sd_send(sd, msg);
	snprintf(sd->status, sizeof(sd->status), "reloading");
}

void sd_reloaded(struct sd *sd, const char *refused)
{
	sd->reload_refused = refused != NULL;
	if (refused)
		log_debug("sd: reload refused: %s", refused);
	if (sd->d)
		sd_send_status(sd, "READY=1", true);
	else
		sd_send(sd, "READY=1");
}

void sd_stopping(struct sd *sd)
{
	if (sd->d)
		sd_send_status(sd, "STOPPING=1", true);
	else
		sd_send(sd, "STOPPING=1");
}

static void sd_free(struct sd *sd)
{
	for (size_t i = 0; i < sd->nfds; i++) {
		if (sd->fds[i].fd >= 0)
			close(sd->fds[i].fd);
		free(sd->fds[i].name);
	}
	free(sd->fds);
	if (sd->sock >= 0)
		close(sd->sock);
	free(sd);
}

static void sd_timer_closed_cb(uv_handle_t *h)
{
	sd_free(h->data);
}

void sd_close(struct sd *sd)
{
	if (!sd)
		return;
	if (sd->timer_on)
		uv_close((uv_handle_t *)&sd->timer, sd_timer_closed_cb);
	else
		sd_free(sd);
}

int sd_credential_path(const char *value, const char *dir, char **path, char *err, size_t errlen)
{
	const char *name = value;
	*path = NULL;
	if (strncmp(name, SD_CREDENTIAL_PREFIX, strlen(SD_CREDENTIAL_PREFIX)) == 0)
		name += strlen(SD_CREDENTIAL_PREFIX);
	if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	    strlen(name) > 255)
		return errf(err, errlen, DRIP_EINVALID,
			    "\"%s\": a credential name is 1-255 bytes without '/' (the NAME of "
			    "LoadCredential=NAME)",
			    value);
	if (!dir || !*dir)
		return errf(err, errlen, DRIP_ENOT_FOUND,
			    "\"%s\" needs $CREDENTIALS_DIRECTORY, which systemd sets for a "
			    "service with LoadCredential=%s",
			    value, name);
	*path = xasprintf("%s/%s", dir, name);
	return 0;
}
