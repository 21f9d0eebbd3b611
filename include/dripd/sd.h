/* sd.h - systemd: readiness, status text, the watchdog, socket activation, credentials. */
#ifndef DRIPD_SD_H
#define DRIPD_SD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/*
 * What dripd tells systemd and takes from it. Everything here is a no-op without systemd
 * (no NOTIFY_SOCKET, no LISTEN_FDS), so the daemon runs the same by hand.
 *
 *   READY=1      once the database is open, the content loaded and every listening socket
 *                (control, and tracking once track exists) accepts: sd_ready().
 *   STATUS=      "412 due, 3 sending, paused: no", refreshed with each watchdog ping (or every
 *                SD_STATUS_IDLE_MS without a watchdog); "due" is counted up to SD_DUE_CAP.
 *   RELOADING=1  with MONOTONIC_USEC (as Type=notify-reload in systemd >= 253 wants) on
 *                SIGHUP, then READY=1 when the reload is done or refused.
 *   STOPPING=1   when SIGTERM starts the drain.
 *   WATCHDOG=1   from a timer on the loop every WATCHDOG_USEC / 2, so a stuck loop misses
 *                its pings and systemd restarts the daemon.
 *
 * Socket activation: sd_new() takes the fds of LISTEN_FDS (after checking LISTEN_PID) with
 * their LISTEN_FDNAMES; a listener asks for its own by name: "control" (control.c) and
 * "tracking" (the tracking listener must use exactly this name). Fds nobody claims are
 * reported and closed at sd_ready().
 *
 * Credentials: a secret-file config key written "credential:NAME" means
 * $CREDENTIALS_DIRECTORY/NAME, the file systemd's LoadCredential=NAME puts there.
 *
 * libsystemd's sd-daemon reads the environment when the build has it
 * (DRIPD_HAVE_LIBSYSTEMD), else a small fallback does; notifications always go out on
 * dripd's own non-blocking datagram socket, because sd_notify() blocks when systemd is
 * slow to read and the loop must never wait on it.
 */

#define SD_CREDENTIAL_PREFIX "credential:"
/* "due" in STATUS= counts at most this many touches, so the query stays cheap. */
#define SD_DUE_CAP 100000
/* Without a watchdog, STATUS= is refreshed this often (only under systemd). */
#define SD_STATUS_IDLE_MS 30000

struct sd;
struct dripd;

/*
 * Reads NOTIFY_SOCKET, WATCHDOG_USEC/WATCHDOG_PID and LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES,
 * then unsets the LISTEN_* variables so nothing started later inherits them. Never fails.
 */
struct sd *sd_new(void);
/* Whether systemd listens (NOTIFY_SOCKET is set). */
bool sd_notifying(const struct sd *sd);
/* The watchdog interval systemd asked for, in microseconds; 0 when off. */
uint64_t sd_watchdog_usec(const struct sd *sd);
/*
 * The inherited listening stream socket named `name` in LISTEN_FDNAMES, of address family
 * `family` (AF_UNIX, or 0 for AF_INET or AF_INET6). Returns the fd (now owned by the
 * caller), DRIP_ENOT_FOUND when none was passed (bind as usual), or DRIP_EINVALID with a
 * sentence in err when the fd passed under that name is not such a socket.
 */
int sd_listen_fd(struct sd *sd, const char *name, int family, char *err, size_t errlen);
/*
 * READY=1 with the first STATUS=; starts the watchdog/status timer on d's loop (only under
 * systemd) and closes inherited fds nobody claimed, with a warning each.
 */
void sd_ready(struct sd *sd, struct dripd *d);
/* RELOADING=1 with MONOTONIC_USEC. */
void sd_reloading(struct sd *sd);
/* READY=1 after a reload; `refused` (or NULL) says why the old config and content stay. */
void sd_reloaded(struct sd *sd, const char *refused);
/* STOPPING=1 with a status that says how many messages are still being sent. */
void sd_stopping(struct sd *sd);
/* Stops the timer and frees the sd (in the timer's close callback when it has one). */
void sd_close(struct sd *sd);

/* "412 due, 3 sending, paused: no" ("100000+ due" when the count hit its cap). */
void sd_status_format(char *buf, size_t len, int64_t due, bool capped, size_t sending, bool paused);
/*
 * For a config value "credential:NAME": 0 with *path = "DIR/NAME" (caller frees);
 * DRIP_EINVALID with err when NAME is not a credential name (empty, '/', "." or "..", over
 * 255 bytes); DRIP_ENOT_FOUND when `dir` ($CREDENTIALS_DIRECTORY) is NULL or empty.
 */
int sd_credential_path(const char *value, const char *dir, char **path, char *err, size_t errlen);

#endif
