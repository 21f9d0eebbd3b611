/* maildir.h - the maildir: delivery path: each message a file in a Maildir's new/. */
#ifndef DRIPD_MAILDIR_H
#define DRIPD_MAILDIR_H

#include <stddef.h>

/* Creates DIR and its tmp/, new/ and cur/ when missing. 0, or DRIP_EIO with err. */
int maildir_prepare(const char *dir, char *err, size_t errlen);

/*
 * Delivers one message the Maildir way: written and fsynced under tmp/ with a unique name
 * (time, microseconds, pid, a counter, host), then renamed into new/, so a reader never sees
 * half a message. CRLF line ends become LF, as local mail files have them. Safe to call from
 * several threads. Writes the new file's name into name_out. 0, or DRIP_EIO with err.
 */
int maildir_deliver(const char *dir, const char *msg, size_t len, char *name_out, size_t name_len,
		    char *err, size_t errlen);

#endif
