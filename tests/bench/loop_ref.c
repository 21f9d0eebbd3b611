/*
 * loop_ref.c - the one-thread reference sender of the delivery benchmark.
 *
 * What dripd could do instead of its sender threads: one thread waits for all its
 * connections in one poll(), as smtp-source does. libcurl opens each connection and says
 * EHLO (CURLOPT_CONNECT_ONLY; it would do STARTTLS and AUTH too); the envelope and the data
 * then go with curl_easy_send and the replies come with curl_easy_recv, never blocking, so
 * no wait for the final dot's answer holds up the other connections (libcurl's own SMTP
 * blocks there, curl issue #8555). With PIPELINING (the default; RFC 2920) MAIL, RCPT and
 * DATA go in one write and the message and its dot in another: two round trips a message.
 * `-n` sends each command alone, as libcurl does: four round trips. Prints two lines:
 *
 *   loop_ref: 100000 messages of 4433 bytes over 8 connections in 8.021 s: 12467.2 msg/s
 *   loop_ref: 61 us of CPU and 1.2 context switches a message
 *
 * Build: cc -O2 -o loop_ref loop_ref.c $(pkg-config --cflags --libs libcurl)
 * Run:   loop_ref [-n] smtp://127.0.0.1:PORT MESSAGES SIZE CONNECTIONS
 * Exit 0 when every message got a 2xx, 1 otherwise (the first error is printed).
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bench_msg.h"

#define MAX_CONNS 256

enum step { MAIL, RCPT, DATA, BODY, DONE };

static const char *const commands[] = { "MAIL FROM:<bench@example.com>\r\n",
					"RCPT TO:<sink@example.org>\r\n", "DATA\r\n" };
static const int expected[] = { 250, 250, 354, 250 };

struct conn {
	CURL *e;
	curl_socket_t fd;
	enum step step; /* the reply awaited next */
	int sent_upto; /* the last step whose text is written (or being written) */
	char out[8192]; /* what is to be written */
	size_t outlen, outoff;
	char in[4096]; /* a partial reply line */
	size_t inlen;
};

static const char *msg;
static size_t msglen;
static long total, started, done, failed;
static bool pipelining = true;

static void fail(const char *what)
{
	if (failed++ == 0)
		fprintf(stderr, "loop_ref: %s\n", what);
}

/* Queues the text of step `s` (and, pipelining, of the envelope's later steps too). */
static void queue(struct conn *c, enum step s)
{
	c->outlen = c->outoff = 0;
	if (s == BODY) {
		memcpy(c->out, msg, msglen);
		memcpy(c->out + msglen, ".\r\n", 3); /* the message ends with CRLF */
		c->outlen = msglen + 3;
		c->sent_upto = BODY;
		return;
	}
	enum step last = pipelining ? DATA : s;
	for (enum step i = s; i <= last; i++) {
		size_t n = strlen(commands[i]);
		memcpy(c->out + c->outlen, commands[i], n);
		c->outlen += n;
	}
	c->sent_upto = (int)last;
}

/* The next message on `c`, or DONE when all are started. */
static void next_message(struct conn *c)
{
	if (started >= total) {
		c->step = DONE;
		c->outlen = c->outoff = 0;
		return;
	}
	started++;
	c->step = MAIL;
	queue(c, MAIL);
}

/* One complete reply line: a final one (code and space) moves the connection on. */
static void on_line(struct conn *c, const char *line, size_t len)
{
	if (len < 4 || line[3] == '-')
		return;
	int code = atoi(line);
	if (c->step == DONE)
		return;
	if (code != expected[c->step]) {
		char what[160];
		snprintf(what, sizeof(what), "step %d: %.*s", (int)c->step,
			 (int)(len > 100 ? 100 : len), line);
		fail(what);
		if (c->step != BODY) { /* give the message up: RSET would follow in life */
			c->step = DONE;
			return;
		}
	}
	if (c->step == BODY) {
		done++;
		next_message(c);
		return;
	}
	c->step++;
	if ((int)c->step > c->sent_upto)
		queue(c, c->step);
}

static int flush(struct conn *c)
{
	while (c->outoff < c->outlen) {
		size_t n = 0;
		CURLcode rc = curl_easy_send(c->e, c->out + c->outoff, c->outlen - c->outoff, &n);
		if (rc == CURLE_AGAIN)
			return 0;
		if (rc != CURLE_OK) {
			fail(curl_easy_strerror(rc));
			return -1;
		}
		c->outoff += n;
	}
	return 0;
}

static int drain(struct conn *c)
{
	for (;;) {
		char buf[4096];
		size_t n = 0;
		CURLcode rc = curl_easy_recv(c->e, buf, sizeof(buf), &n);
		if (rc == CURLE_AGAIN)
			return 0;
		if (rc != CURLE_OK || n == 0) {
			fail(rc ? curl_easy_strerror(rc) : "the server closed the connection");
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			if (c->inlen < sizeof(c->in))
				c->in[c->inlen++] = buf[i];
			if (buf[i] == '\n') {
				on_line(c, c->in, c->inlen);
				c->inlen = 0;
			}
		}
	}
}

int main(int argc, char **argv)
{
	int a = 1;
	if (a < argc && strcmp(argv[a], "-n") == 0) {
		pipelining = false;
		a++;
	}
	if (argc - a != 4) {
		fprintf(stderr, "usage: loop_ref [-n] URL MESSAGES SIZE CONNECTIONS\n");
		return 2;
	}
	const char *url = argv[a];
	total = atol(argv[a + 1]);
	size_t size = (size_t)atol(argv[a + 2]);
	int nconns = atoi(argv[a + 3]);
	if (total < 1 || nconns < 1 || nconns > MAX_CONNS || size > 8000) {
		fprintf(stderr, "loop_ref: MESSAGES >= 1, SIZE <= 8000, 1 <= CONNECTIONS <= %d\n",
			MAX_CONNS);
		return 2;
	}
	msg = make_message(size, &msglen);
	curl_global_init(CURL_GLOBAL_DEFAULT);

	static struct conn conns[MAX_CONNS];
	struct pollfd pfd[MAX_CONNS];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		c->e = curl_easy_init();
		curl_easy_setopt(c->e, CURLOPT_URL, url);
		curl_easy_setopt(c->e, CURLOPT_CONNECT_ONLY, 1L);
		curl_easy_setopt(c->e, CURLOPT_TCP_NODELAY, 1L);
		curl_easy_setopt(c->e, CURLOPT_NOSIGNAL, 1L);
		CURLcode rc = curl_easy_perform(c->e); /* connects, reads the greeting, says EHLO */
		if (rc == CURLE_OK)
			rc = curl_easy_getinfo(c->e, CURLINFO_ACTIVESOCKET, &c->fd);
		if (rc != CURLE_OK) {
			fprintf(stderr, "loop_ref: connection %d: %s\n", i, curl_easy_strerror(rc));
			return 1;
		}
		next_message(c);
	}
	for (;;) {
		int n = 0;
		for (int i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			if (c->step == DONE && c->outoff == c->outlen)
				continue;
			pfd[n].fd = c->fd;
			pfd[n].events = (short)(POLLIN | (c->outoff < c->outlen ? POLLOUT : 0));
			pfd[n].revents = 0;
			n++;
		}
		if (n == 0)
			break;
		if (poll(pfd, (nfds_t)n, 10000) <= 0) {
			fail(errno ? strerror(errno) : "no answer in 10 s");
			break;
		}
		for (int i = 0, j = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			if (c->step == DONE && c->outoff == c->outlen)
				continue;
			short ev = pfd[j++].revents;
			if (((ev & POLLOUT) && flush(c) != 0) ||
			    ((ev & (POLLIN | POLLHUP | POLLERR)) && drain(c) != 0)) {
				c->step = DONE;
				c->outoff = c->outlen = 0;
				continue;
			}
			if (c->outoff < c->outlen && flush(c) != 0) {
				c->step = DONE;
				c->outoff = c->outlen = 0;
			}
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("loop_ref: %ld messages of %zu bytes over %d connections in %.3f s: %.1f msg/s\n",
	       total, msglen, nconns, secs, (double)done / secs);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
			     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
		printf("loop_ref: %.0f us of CPU and %.1f context switches a message\n",
		       cpu * 1e6 / (double)total,
		       (double)(ru.ru_nvcsw + ru.ru_nivcsw) / (double)total);
	}
	for (int i = 0; i < nconns; i++)
		curl_easy_cleanup(conns[i].e);
	curl_global_cleanup();
	free((void *)msg);
	if (done != total) {
		fprintf(stderr, "loop_ref: %ld of %ld messages went\n", done, total);
		return 1;
	}
	return 0;
}
