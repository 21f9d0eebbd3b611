/* maildir.c - delivery into a Maildir (tmp/ then rename into new/), for the demo and for looking. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "dripd/error.h"
#include "dripd/maildir.h"
#include "dripd/util.h"

static atomic_ulong maildir_counter;

static int maildir_mkdir(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return errf(err, errlen, DRIP_EIO, "maildir: cannot create %s: %s", path,
			    strerror(errno));
	return 0;
}

int maildir_prepare(const char *dir, char *err, size_t errlen)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	int rc = maildir_mkdir(dir, err, errlen);
	for (size_t i = 0; rc == 0 && i < 3; i++) {
		char *p = xasprintf("%s/%s", dir, subs[i]);
		rc = maildir_mkdir(p, err, errlen);
		free(p);
	}
	return rc;
}

static int maildir_write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int maildir_deliver(const char *dir, const char *msg, size_t len, char *name_out, size_t name_len,
		    char *err, size_t errlen)
{
	char host[256], name[512];
	struct timeval tv;
	struct buf lf;
	int fd = -1, rc = 0;

	gettimeofday(&tv, NULL);
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	/* '/' and ':' cannot appear in a Maildir name; the convention escapes them. */
	for (char *h = host; *h; h++)
		if (*h == '/' || *h == ':')
			*h = '_';
	snprintf(name, sizeof(name), "%lld.M%06ldP%dQ%lu.%s", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (int)getpid(), atomic_fetch_add(&maildir_counter, 1) + 1, host);
	char *tmp = xasprintf("%s/tmp/%s", dir, name);
	char *dst = xasprintf("%s/new/%s", dir, name);

	buf_init(&lf);
	buf_reserve(&lf, len);
	for (size_t i = 0; i < len; i++)
		if (!(msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n'))
			buf_addc(&lf, msg[i]);

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || maildir_write_all(fd, lf.data ? lf.data : "", lf.len) != 0 ||
	    fsync(fd) != 0) {
		rc = errf(err, errlen, DRIP_EIO, "maildir: cannot write %s: %s", tmp,
			  strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		goto out;
	}
	if (rename(tmp, dst) != 0) {
		rc = errf(err, errlen, DRIP_EIO, "maildir: cannot move %s into new/: %s", tmp,
			  strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (name_out)
		snprintf(name_out, name_len, "%s", name);
out:
	if (fd >= 0)
		close(fd);
	buf_free(&lf);
	free(tmp);
	free(dst);
	return rc;
}
