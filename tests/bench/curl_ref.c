/*
 * curl_ref.c - the bare libcurl reference sender of the delivery benchmark.
 *
 * THREADS threads, each with one libcurl easy handle set up once and reused for all its
 * messages (so one SMTP connection per thread for its life, TCP_NODELAY on), send
 * MESSAGES messages of SIZE bytes in total to URL from memory: MAIL FROM, one RCPT, DATA.
 * It does what dripd's sender threads do and nothing else (no database, no rendering), so
 * it is the ceiling for "libcurl in threads" on this machine. Prints one line:
 *
 *   curl_ref: 100000 messages of 5000 bytes over 8 connections in 11.873 s: 8422.5 msg/s
 *
 * Build: cc -O2 -o curl_ref curl_ref.c $(pkg-config --cflags --libs libcurl) -lpthread
 * Run:   curl_ref smtp://127.0.0.1:PORT MESSAGES SIZE THREADS
 * Exit 0 when every message got a 2xx, 1 otherwise (the first error is printed).
 */
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "bench_msg.h"

struct shared {
	const char *url;
	const char *msg;
	size_t len;
	long next; /* messages handed out so far, under lock */
	long total;
	long failed; /* under lock */
	pthread_mutex_t lock;
};

struct upload {
	const char *data;
	size_t len, off;
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct upload *u = arg;
	size_t n = size * nitems, left = u->len - u->off;
	if (n > left)
		n = left;
	memcpy(buf, u->data + u->off, n);
	u->off += n;
	return n;
}

/* The next message number, or -1 when all have been handed out. */
static long take(struct shared *s)
{
	long i = -1;
	pthread_mutex_lock(&s->lock);
	if (s->next < s->total)
		i = s->next++;
	pthread_mutex_unlock(&s->lock);
	return i;
}

static void *sender(void *arg)
{
	struct shared *s = arg;
	CURL *e = curl_easy_init();
	struct curl_slist *rcpt = curl_slist_append(NULL, "<sink@example.org>");
	char errbuf[CURL_ERROR_SIZE];
	if (!e || !rcpt) {
		fprintf(stderr, "curl_ref: cannot make a libcurl handle\n");
		exit(1);
	}
	curl_easy_setopt(e, CURLOPT_URL, s->url);
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_MAXCONNECTS, 1L);
	curl_easy_setopt(e, CURLOPT_MAIL_FROM, "<bench@example.com>");
	curl_easy_setopt(e, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->len);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	while (take(s) >= 0) {
		struct upload u = { .data = s->msg, .len = s->len };
		errbuf[0] = '\0';
		curl_easy_setopt(e, CURLOPT_READDATA, &u);
		CURLcode rc = curl_easy_perform(e);
		if (rc != CURLE_OK) {
			pthread_mutex_lock(&s->lock);
			if (s->failed++ == 0)
				fprintf(stderr, "curl_ref: %s\n",
					*errbuf ? errbuf : curl_easy_strerror(rc));
			pthread_mutex_unlock(&s->lock);
		}
	}
	curl_easy_cleanup(e); /* QUIT */
	curl_slist_free_all(rcpt);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: curl_ref URL MESSAGES SIZE THREADS\n");
		return 2;
	}
	struct shared s = { .url = argv[1], .total = atol(argv[2]) };
	size_t size = (size_t)atol(argv[3]);
	int nthreads = atoi(argv[4]);
	if (s.total < 1 || nthreads < 1 || nthreads > 256) {
		fprintf(stderr, "curl_ref: MESSAGES >= 1 and 1 <= THREADS <= 256\n");
		return 2;
	}
	s.msg = make_message(size, &s.len);
	pthread_mutex_init(&s.lock, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);

	pthread_t th[256];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, sender, &s) != 0) {
			fprintf(stderr, "curl_ref: cannot start thread %d\n", i);
			return 1;
		}
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("curl_ref: %ld messages of %zu bytes over %d connections in %.3f s: %.1f msg/s\n",
	       s.total, s.len, nthreads, secs, (double)(s.total - s.failed) / secs);
	/* What the process cost a message: CPU, and how often a thread went to sleep or was
	 * pushed off its core (each switch is costly in a VM). */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
			     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
		printf("curl_ref: %.0f us of CPU and %.1f context switches a message\n",
		       cpu * 1e6 / (double)s.total,
		       (double)(ru.ru_nvcsw + ru.ru_nivcsw) / (double)s.total);
	}
	curl_global_cleanup();
	free((void *)s.msg);
	if (s.failed) {
		fprintf(stderr, "curl_ref: %ld of %ld messages failed\n", s.failed, s.total);
		return 1;
	}
	return 0;
}
