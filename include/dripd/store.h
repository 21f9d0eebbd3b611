/* store.h - the SQLite database: schema, migrations, and every query dripd makes. */
#ifndef DRIPD_STORE_H
#define DRIPD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The store is the only module that speaks SQL. It keeps one connection and its prepared
 * statements for the daemon's life, runs on the loop thread only (except WAL checkpoints,
 * see store_checkpoint_in_background), and returns 0 or a
 * negative DRIP_E* code (DRIP_ESTORE for SQLite failures, logged by the store with the
 * statement that failed). Strings handed out in structs are owned by the struct; clear it
 * with the matching *_clear function.
 */
struct store;

struct lead {
	int64_t id;
	char *email;
	char *first_name;
	char *last_name;
	char *company;
	char *title;
	char *tz;
	char *stage;
	char *status;
	char *tags; /* JSON array of strings */
	char *attrs; /* JSON object of string values */
	double score; /* as last set, at score_at: journey_score() gives it decayed */
	int64_t created_at;
	int64_t updated_at;
	int64_t score_at; /* business time the score was last set */
	int64_t fall_at; /* when its decaying score crosses a fall threshold; 0: never */
};

struct touch {
	int64_t id;
	int64_t lead_id;
	int64_t enrolment_id;
	char *sequence;
	char *step;
	int64_t step_index;
	char *state;
	int64_t due_at;
	int64_t sent_at; /* 0 until sent */
	int64_t attempts;
	char *message_id;
	char *last_error;
	int64_t first_attempt_at; /* 0 until first handed to a sender thread */
	char *account; /* the delivery account it was last handed to; "" until then */
};

struct store_event {
	int64_t id;
	int64_t lead_id;
	int64_t touch_id; /* 0 when the event is not about one touch */
	const char *kind;
	int64_t at;
	const char *detail; /* JSON object */
};

struct store_status {
	int64_t leads;
	int64_t active_enrolments;
	int64_t pending;
	int64_t queued;
	int64_t sending;
	int64_t sent;
	int64_t failed;
	int64_t uncertain;
	int64_t next_due; /* 0 when nothing is pending */
	int64_t anonymised; /* leads retention.anonymise erased, ever */
};

/* Opens (creating if absent) and migrates the database; ":memory:" for tests. */
struct store *store_open(const char *path, char *err, size_t errlen);
/* Waits for a background checkpoint in flight (see below), then closes. */
void store_close(struct store *st);
/*
 * From now on the WAL is checkpointed in libuv's thread pool, on a second connection of the
 * store's own, once a commit leaves STORE_CHECKPOINT_PAGES or more in it, instead of inside
 * that commit on the loop thread (where the copy and its fsyncs took half the commit time
 * of a delivery run). A file database only; the loop must outlive the store's use.
 * The WAL stays under about STORE_WAL_MAX_PAGES pages, or STORE_CHECKPOINT_PAGES on a file
 * system with no room for the larger WAL (half its free space, checked as the WAL grows).
 */
struct uv_loop_s;
#define STORE_CHECKPOINT_PAGES 1000
#define STORE_WAL_MAX_PAGES 8000
int store_checkpoint_in_background(struct store *st, struct uv_loop_s *loop);
/* Background checkpoints that completed and that failed (each failure is logged once), and
 * the times the loop copied the rest itself so the WAL could start again (store.c). */
void store_checkpoint_counts(const struct store *st, uint64_t *done, uint64_t *failed,
			     uint64_t *on_loop);
/* The schema version this build migrates to (PRAGMA user_version). */
int store_schema_version(void);

/* Transactions; nested use is a bug. store_rollback is safe to call after a failed step. */
int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);

/*
 * A part of the open transaction that can be undone alone (an SQL savepoint): after
 * store_part_begin, store_part_end(st, false) undoes what the part did and keeps the rest
 * of the transaction; store_part_end(st, true) keeps it.
 */
int store_part_begin(struct store *st);
int store_part_end(struct store *st, bool keep);

int store_setting_get(struct store *st, const char *key, int64_t *value);
int store_setting_set(struct store *st, const char *key, int64_t value);

/* Inserts lead (email, names, stage, … filled in; id set on return); DRIP_EEXISTS if known. */
int store_lead_insert(struct store *st, struct lead *lead, int64_t now);
int store_lead_by_email(struct store *st, const char *email, struct lead *out);
int store_lead_by_id(struct store *st, int64_t id, struct lead *out);
void store_lead_clear(struct lead *lead);

/* Starts an enrolment; the schema allows one active enrolment per lead (DRIP_EEXISTS). */
int store_enrolment_start(struct store *st, int64_t lead_id, const char *sequence,
			  const char *stage, int64_t now, int64_t *enrolment_id);
/* Ends an active enrolment as "completed" or "exited". */
int store_enrolment_end(struct store *st, int64_t enrolment_id, const char *state, int64_t now);

/* Ends the lead's active enrolment, if any, as "exited"; its pending touches become skipped. */
int store_enrolment_exit_active(struct store *st, int64_t lead_id, const char *reason, int64_t now);
int store_lead_set_stage(struct store *st, int64_t lead_id, const char *stage, int64_t now);

/*
 * Schedules one step for a lead as a pending touch. The unique key (lead, sequence, step)
 * makes "a step at most once per lead" a fact of the database: DRIP_EEXISTS otherwise.
 * DRIP_ENOT_FOUND when `enrolment_id` is not the lead's active enrolment.
 */
int store_touch_schedule(struct store *st, int64_t lead_id, int64_t enrolment_id,
			 const char *sequence, const char *step, int64_t step_index, int64_t due_at,
			 int64_t now, int64_t *touch_id);
/* The earliest due time of a pending touch; DRIP_ENOT_FOUND when none is pending. */
int store_touch_next_due(struct store *st, int64_t *due_at);
/* Claims up to `max` due pending touches as queued, oldest due first; their ids into `ids`. */
int store_touch_claim(struct store *st, int64_t now, size_t max, int64_t *ids, size_t *n);
/*
 * The same, leaving out what may not be sent now: `blocked` is NULL or a JSON array of
 * {"s": [sequence, …], "d": [recipient domain, …]}, each item holding back the touches of
 * those sequences to those domains (without "d": to every domain). Inside an open
 * transaction it claims in a savepoint and the caller's commit makes it stick.
 */
int store_touch_claim_filtered(struct store *st, int64_t now, size_t max, const char *blocked,
			       int64_t *ids, size_t *n);
/*
 * The touches store_touch_claim_filtered would claim, without marking them queued: for the
 * scheduler, which takes them inside the transaction that moves each one on (to sending,
 * skipped, failed, later) and so never commits a touch as queued that waits for nothing.
 * Only inside a transaction; a touch it returns stays pending until the caller moves it.
 */
int store_touch_take(struct store *st, int64_t now, size_t max, const char *blocked, int64_t *ids,
		     size_t *n);
int store_touch_get(struct store *st, int64_t id, struct touch *out);
void store_touch_clear(struct touch *t);
/* queued -> sending with its Message-ID, committed before a sender thread sees the touch. */
int store_touch_sending(struct store *st, int64_t id, const char *message_id, int64_t now);
/*
 * The send path's write before the hand-over, in one UPDATE (one row rewrite, one pass over
 * the touch's indexes and triggers): sending with its Message-ID, the delivery account and
 * the recipient's domain (for their caps), and what it says (subject, variant of its step).
 * From queued, or from pending for a touch taken with store_touch_take in this transaction.
 */
int store_touch_sending_note(struct store *st, int64_t id, const char *message_id,
			     const char *account, const char *rcpt_domain, const char *subject,
			     int64_t variant, int64_t now);
/* sending -> sent. */
int store_touch_sent(struct store *st, int64_t id, int64_t now);
/* Any unfinished state -> a final one: "failed", "skipped" or "bounced", with a reason. */
int store_touch_finish(struct store *st, int64_t id, const char *state, const char *reason,
		       int64_t now);
/* sending -> pending again at `due_at` (a temporary failure), with the reason. */
int store_touch_defer(struct store *st, int64_t id, int64_t due_at, const char *reason,
		      int64_t now);
/* When the lead's last touch went out (0 when none has). */
int store_lead_last_sent(struct store *st, int64_t lead_id, int64_t *at);
/*
 * The sends the caps count, after `since`: touches sent (at sent_at, oldest first), then
 * those handed over and not yet answered (sending, at the hand-over, in no order), with
 * their account ("default" for touches from before accounts existed) and recipient domain.
 */
typedef void (*store_send_cb)(void *arg, const char *account, const char *rcpt_domain, int64_t at);
int store_sends_each(struct store *st, int64_t since, store_send_cb cb, void *arg);
/* queued (or pending) -> pending, due at `due_at` (outside its send window: waits for the
 * opening). */
int store_touch_postpone(struct store *st, int64_t id, int64_t due_at, int64_t now);
/* queued -> pending (a claimed touch that was not handed over, at drain). */
int store_touch_release(struct store *st, int64_t id);
/*
 * After a crash: queued touches go back to pending; sending ones become uncertain, never
 * re-sent silently. Counts of each are returned.
 */
int store_recover(struct store *st, int64_t *requeued, int64_t *uncertain);

/* Writes a lead's profile (names, company, title, tz, tags, attrs) by its id. */
int store_lead_update(struct store *st, const struct lead *lead, int64_t now);
/* Sets a lead's status ("active", "paused", "handoff", "customer", …). */
int store_lead_set_status(struct store *st, int64_t lead_id, const char *status, int64_t now);
/* Adds `delta` to a lead's score; the new score in *score. */
int store_lead_add_score(struct store *st, int64_t lead_id, int64_t delta, int64_t now,
			 int64_t *score);
/* Sets a lead's score as of business time `at`, and when it next falls (0: never). */
int store_lead_set_score(struct store *st, int64_t lead_id, double score, int64_t at,
			 int64_t fall_at);
/* The earliest fall_at of any lead; DRIP_ENOT_FOUND when none. */
int store_lead_next_fall(struct store *st, int64_t *at);
/* Up to `max` leads whose fall_at is at or before `now`, earliest first. */
int store_leads_falling(struct store *st, int64_t now, int64_t *ids, size_t max, size_t *n);
/*
 * Whether the lead has an event of `kind`; with `sequence` and `step`, one recorded against
 * the touch of that step (an open or a click of step 2, say).
 */
int store_lead_has_event(struct store *st, int64_t lead_id, const char *kind, const char *sequence,
			 const char *step, bool *found);
/* The first touch of an enrolment that went out: its Message-ID and subject (threading). */
int store_touch_thread_root(struct store *st, int64_t enrolment_id, char **message_id,
			    char **subject);
/* The lead's touch for a step, whatever its state. */
int store_touch_find(struct store *st, int64_t lead_id, const char *sequence, const char *step,
		     struct touch *out);
/* The lead's next pending touch (earliest due). */
int store_touch_next_for_lead(struct store *st, int64_t lead_id, struct touch *out);

/* Records link `index` of a touch (the URL a click on it may redirect to, and its tag). */
int store_link_add(struct store *st, int64_t touch_id, int64_t index, const char *url,
		   const char *tag);

int store_event_add(struct store *st, int64_t lead_id, int64_t touch_id, const char *kind,
		    int64_t at, const char *detail_json);

typedef int (*store_event_cb)(void *arg, const struct store_event *ev);
typedef int (*store_touch_cb)(void *arg, const struct touch *t);

/*
 * The event feed: up to STORE_MAX_LISTENERS callbacks, each called on the loop thread right
 * after store_event_add has inserted a row (ev->id set), before the surrounding transaction
 * commits. A listener only takes note (queues work, wakes a handle); it must not call back
 * into the store, and a rolled-back transaction takes its events with it, so a listener that
 * must not see those reads the events table after the commit (by id) instead of trusting ev.
 */
#define STORE_MAX_LISTENERS 4
typedef void (*store_listen_fn)(void *arg, const struct store_event *ev);
/* DRIP_EBUSY when all slots are taken. */
int store_event_listen(struct store *st, store_listen_fn fn, void *arg);
void store_event_unlisten(struct store *st, store_listen_fn fn, void *arg);
/* Calls cb for each event of a lead, oldest first; a non-zero return from cb stops the walk. */
int store_events_for_lead(struct store *st, int64_t lead_id, store_event_cb cb, void *arg);
/* Calls cb for each touch of a lead, in the order they were scheduled. */
int store_touches_for_lead(struct store *st, int64_t lead_id, store_touch_cb cb, void *arg);

int store_status(struct store *st, struct store_status *out);
/* Pending touches due at or before `now`, counted up to `cap` (a bounded index walk). */
int store_touch_due_count(struct store *st, int64_t now, int64_t cap, int64_t *count);

/* Calls cb for up to `max` touches in `state`, oldest first. */
int store_touches_in_state(struct store *st, const char *state, size_t max, store_touch_cb cb,
			   void *arg);
/* A person settles an uncertain touch: "sent", or "pending" (due now, to be sent again).
 * DRIP_ENOT_FOUND unless the touch is uncertain. */
int store_touch_resolve(struct store *st, int64_t id, const char *state, int64_t now);

/* Puts an address (or a whole domain) on the suppression list; a second entry keeps the
 * first reason. */
int store_suppress(struct store *st, const char *address, const char *reason, const char *source,
		   int64_t now);
/* 0 (and the reason) when the address or its domain is suppressed, else DRIP_ENOT_FOUND. */
int store_suppressed(struct store *st, const char *address, char *reason, size_t reasonlen);

struct store_step_stats {
	const char *sequence;
	const char *step;
	int64_t variant;
	int64_t sent, opened, clicked, replied, bounced, unsubscribed; /* touches, not events */
};
typedef void (*store_funnel_cb)(void *arg, const char *stage, const char *status, int64_t n);
typedef void (*store_step_stats_cb)(void *arg, const struct store_step_stats *row);
/* Leads by stage and status. */
int store_stats_funnel(struct store *st, store_funnel_cb cb, void *arg);
/* Per sequence, step and variant, in step order: how many sent touches were opened (a click
 * counts as an open), clicked, replied to, bounced or unsubscribed from. */
int store_stats_steps(struct store *st, store_step_stats_cb cb, void *arg);

typedef int (*store_step_cb)(void *arg, const char *sequence, const char *step, int64_t touches);
/* Calls cb for each step that pending or queued touches wait for, with how many wait. */
int store_pending_steps(struct store *st, store_step_cb cb, void *arg);

/* The URL and tag of link `index` of a touch; DRIP_ENOT_FOUND when the touch has no such
 * link. *url and *tag are the caller's to free. */
int store_link_get(struct store *st, int64_t touch_id, int64_t index, char **url, char **tag);
/* The lead and send time (0 when unknown) of a touch that went out (sending, sent or
 * uncertain); DRIP_ENOT_FOUND for any other touch. One primary-key lookup. */
int store_touch_hit(struct store *st, int64_t touch_id, int64_t *lead_id, int64_t *sent_at);
/* Whether the touch already has an event of `kind` that a person did (confidence >= 0.5
 * or none given). Uses the events_touch index. */
int store_touch_has_human(struct store *st, int64_t touch_id, const char *kind, bool *found);
typedef void (*store_stage_count_cb)(void *arg, const char *stage, int64_t leads);
/* How many leads each stage holds (from the leads_stage index). */
int store_stage_counts(struct store *st, store_stage_count_cb cb, void *arg);
/* Touches pending, queued, sending and uncertain, in that order (from partial indexes). */
int store_queue_depth(struct store *st, int64_t out[4]);

/* What the database's last failure was, for a person and for holding sending back. */
enum store_fail_kind {
	STORE_FAIL_NONE,
	STORE_FAIL_FULL, /* SQLITE_FULL: the disk (or the database's size limit) is full */
	STORE_FAIL_BUSY, /* another process held the lock past the busy timeout */
	STORE_FAIL_IO, /* an I/O error, or the file became unwritable */
	STORE_FAIL_OTHER,
};
/* The kind of the last failed statement since store_error_clear, with SQLite's message. */
int store_last_error(struct store *st, char *msg, size_t msglen);
void store_error_clear(struct store *st);
/*
 * Whether the database takes writes again: one small write, and touches a failed claim left
 * `queued` go back to `pending` (count in *requeued; only call it with no claim under way).
 * 0, or DRIP_ESTORE with the reason in store_last_error.
 */
int store_write_probe(struct store *st, int64_t now, int64_t *requeued);

/* ---- what the control socket needs: pages, the suppression list, forgetting, backups ---- */

typedef int (*store_lead_cb)(void *arg, const struct lead *lead);
/* Calls cb for up to `max` leads with an id above after_id, by id; "" stage or status
 * matches any. A non-zero return from cb stops the walk. */
int store_leads_page(struct store *st, int64_t after_id, const char *stage, const char *status,
		     size_t max, store_lead_cb cb, void *arg);
/* An event with its lead's address and its touch's step ("" when none). */
typedef int (*store_event_row_cb)(void *arg, const struct store_event *ev, const char *email,
				  const char *sequence, const char *step);
/* Calls cb for up to `max` events with an id above after_id and a time at or after since. */
int store_events_page(struct store *st, int64_t after_id, int64_t since, size_t max,
		      store_event_row_cb cb, void *arg);
/* The pending touches that are due first, earliest first. */
int store_touches_due(struct store *st, size_t max, store_touch_cb cb, void *arg);

struct store_suppression {
	const char *address; /* an address, a domain, or "hmac:…" for a forgotten address */
	const char *reason;
	const char *source; /* who put it there: "journey" (the person's own act), "dripctl", … */
	int64_t at;
};
typedef int (*store_suppression_cb)(void *arg, const struct store_suppression *s);
/* The entry for exactly this address or domain (to cb, which may be NULL); DRIP_ENOT_FOUND
 * when there is none. */
int store_suppression_get(struct store *st, const char *address, store_suppression_cb cb,
			  void *arg);
int store_suppressions(struct store *st, store_suppression_cb cb, void *arg);
/* Takes an address or domain off the list; DRIP_ENOT_FOUND when it was not on it. */
int store_unsuppress(struct store *st, const char *address);

/*
 * Forgotten addresses are kept only as "hmac:" + hex HMAC-SHA256 of the lower-cased address
 * under a server key, so store_suppressed still finds them. The key is set once at start
 * (up to 64 bytes); without one, forgetting is refused (DRIP_EINVALID).
 */
#define STORE_HASH_LEN 70
int store_set_hash_key(struct store *st, const void *key, size_t len);
int store_address_hash(struct store *st, const char *address, char out[STORE_HASH_LEN]);
/* Erases a lead's personal data (profile, event details, subjects, links), ends its
 * enrolment, skips its pending touches, marks it forgotten and suppresses its address's
 * hash with `reason`. Call inside a transaction. */
int store_lead_forget(struct store *st, const struct lead *lead, const char *reason, int64_t now);

/*
 * SQLite's online backup into a new file at `path`, a few pages per step so the loop keeps
 * running between steps; the copy is consistent as of its last step. store_backup_step
 * returns 1 when done, 0 when more is left, or DRIP_EIO (with err). store_backup_end frees
 * it and removes the file unless `done`.
 */
struct store_backup;
struct store_backup *store_backup_begin(struct store *st, const char *path, char *err,
					size_t errlen);
int store_backup_step(struct store_backup *bk, int pages, char *err, size_t errlen);
void store_backup_progress(const struct store_backup *bk, int *remaining, int *total);
int store_backup_end(struct store_backup *bk, bool done);
/* A private in-memory copy of the whole database (dripctl simulate); close it with
 * store_close. Costs a read of every page. */
struct store *store_copy(struct store *src, char *err, size_t errlen);
/* pending -> queued for one touch (what store_touch_claim does for a batch). */
int store_touch_queue(struct store *st, int64_t id, int64_t now);

/*
 * Where the inbox left off in `mailbox` (its URL): the IMAP UIDVALIDITY, the last UID
 * processed and how many messages matched no lead; DRIP_ENOT_FOUND before the first poll.
 * `unmatched` may be NULL.
 */
int store_inbox_state(struct store *st, const char *mailbox, int64_t *uidvalidity,
		      int64_t *last_uid, int64_t *unmatched);
int store_inbox_state_set(struct store *st, const char *mailbox, int64_t uidvalidity,
			  int64_t last_uid);
/* Counts one more unmatched message for the mailbox (after store_inbox_state_set). */
int store_inbox_unmatched(struct store *st, const char *mailbox);
/* The touch sent with this Message-ID (angle brackets included); DRIP_ENOT_FOUND if none. */
int store_touch_by_message_id(struct store *st, const char *message_id, struct touch *out);
/* Moves a pending touch to `due_at`; DRIP_ENOT_FOUND unless it is pending. */
int store_touch_set_due(struct store *st, int64_t id, int64_t due_at, int64_t now);
/* How many events of `kind` the lead has. */
int store_lead_count_events(struct store *st, int64_t lead_id, const char *kind, int64_t *n);
/* Up to `max` ids of the active or paused leads whose address is at `domain`, oldest first. */
int store_leads_by_domain(struct store *st, const char *domain, int64_t *ids, size_t max,
			  size_t *n);

/*
 * Events with an id above `after`, oldest first, up to `max` (a reader that must not miss
 * one, such as the webhook outbox, keeps the last id it saw). A non-zero cb return stops.
 */
int store_events_after(struct store *st, int64_t after, size_t max, store_event_cb cb, void *arg);
/* The id of the newest event, 0 when there is none. */
int store_event_max_id(struct store *st, int64_t *id);

/* The webhook outbox (hooks): one row per event and webhook still to be delivered. */
struct store_hook_delivery {
	int64_t id;
	const char *hook; /* the webhook's URL */
	const char *delivery_id; /* the idempotency id, the same on every retry */
	int64_t event_id;
	int64_t lead_id; /* 0 when the event has no lead */
	const char *kind;
	const char *payload; /* the JSON body, frozen when it was queued */
	int64_t created_at;
	int64_t next_at;
	int64_t attempts; /* failed attempts so far */
};
typedef int (*store_hook_cb)(void *arg, const struct store_hook_delivery *dl);
/* Queues a delivery; a second one for the same event and hook is ignored (0). */
int store_hook_enqueue(struct store *st, const char *hook, const char *delivery_id,
		       int64_t event_id, int64_t lead_id, const char *kind, const char *payload,
		       int64_t now);
/* Calls cb for up to `max` deliveries of `hook` due at `now`, oldest first. */
int store_hook_due(struct store *st, const char *hook, int64_t now, size_t max, store_hook_cb cb,
		   void *arg);
/* The earliest next_at after `after` of any delivery; DRIP_ENOT_FOUND when there is none. */
int store_hook_next_due(struct store *st, int64_t after, int64_t *at);
/* Removes a delivery (delivered, or given up). */
int store_hook_done(struct store *st, int64_t id);
/* Counts a failed attempt and sets the next one. */
int store_hook_retry(struct store *st, int64_t id, int64_t next_at, const char *error);
/* Deliveries waiting, and how many of them have failed at least once. */
int store_hook_count(struct store *st, int64_t *outstanding, int64_t *retrying);

/* ---- Signups waiting for their double opt-in, and consent records ---- */

struct store_signup {
	int64_t id;
	char *email, *first_name, *last_name, *company;
	char *tags; /* JSON array */
	char *form; /* the form's id in the config */
	char *consent; /* the consent text's version the person saw */
	char *address; /* the client address that signed up */
	int64_t at, expires_at;
	int64_t mail_state; /* 0 to send, 1 with a sender thread, 2 sent */
};

struct store_consent {
	char *form, *consent, *address, *confirm_address;
	int64_t signed_up_at, confirmed_at;
};

typedef void (*store_signup_cb)(void *arg, const struct store_signup *s);

int store_signup_add(struct store *st, const struct store_signup *in, int64_t *id);
/* DRIP_ENOT_FOUND when there is no such signup (confirmed, expired or never made). */
int store_signup_get(struct store *st, int64_t id, struct store_signup *out);
/* Whether the address has a signup that has not expired. */
int store_signup_pending(struct store *st, const char *email, int64_t now, bool *found);
/* Up to max signups whose confirmation mail is still to be handed over (mail_state 0). */
int store_signup_mail_due(struct store *st, size_t max, store_signup_cb cb, void *arg);
int store_signup_mail_state(struct store *st, int64_t id, int64_t state);
int store_signup_delete(struct store *st, int64_t id);
/* Every signup of the address. */
int store_signup_remove(struct store *st, const char *email);
/* Removes up to max expired signups; *next_at is the next expiry (0: none left). */
int store_signup_expire(struct store *st, int64_t now, size_t max, int64_t *removed,
			int64_t *next_at);
void store_signup_clear(struct store_signup *s);
/* Records (or replaces) the lead's consent from its signup, confirmed now from an address. */
int store_consent_set(struct store *st, int64_t lead_id, const struct store_signup *su,
		      const char *confirm_address, int64_t now);
int store_consent_get(struct store *st, int64_t lead_id, struct store_consent *out);
void store_consent_clear(struct store_consent *c);
/* Erases the lead's consent record and any signup of the address (part of lead forget). */
int store_signup_forget(struct store *st, int64_t lead_id, const char *email);
/* A WAL checkpoint that truncates the WAL file, so erased rows leave the files. */
int store_checkpoint(struct store *st);

/*
 * Retention, one small batch in one transaction: folds up to max touches sent before cutoff
 * into step_counts (their flags per kind, as stats counts them) and removes up to max events
 * older than cutoff whose touch is folded or that belong to no touch. *folded and *removed
 * say how many; fewer than max of both means nothing more is due.
 */
int store_retention_step(struct store *st, int64_t cutoff, size_t max, int64_t *folded,
			 int64_t *removed);
/* The oldest unfolded send or event time (0: none), to sleep until retention is due. */
int store_retention_oldest(struct store *st, int64_t *at);

/*
 * retention.anonymise, one small batch in one transaction: looks at up to max leads with an id
 * above `after` (in id order, so a sweep of the table is a series of short turns) and erases
 * the personal data of each that is done (not paused or forgotten, no active enrolment, no
 * touch pending, queued, sending, deferred or uncertain, no score fall to come) and whose
 * last activity (its own change, a touch's, an event's) is before `cutoff`: the same eraser
 * as store_lead_forget, but the lead keeps its stage, status, score, tags and touches (see
 * store.c), its email becomes "anonymised:ID", a suppressed address moves to the suppression
 * list as its keyed hash with its reason, and an "anonymised" event (detail {}) is recorded.
 * Needs the hash key. The caller checkpoints the WAL afterwards.
 */
struct store_anonymise_turn {
	int64_t seen; /* leads looked at: fewer than max ends the sweep */
	int64_t last_id; /* the last one: `after` of the next turn */
	int64_t anonymised; /* leads erased in this turn */
	int64_t next_at; /* the earliest last activity of a done lead not yet old enough (0: none) */
};
int store_anonymise_step(struct store *st, int64_t after, int64_t cutoff, size_t max, int64_t now,
			 struct store_anonymise_turn *out);

/*
 * Bulk import. store_suppressed_any_hashed says whether any forgotten address (kept only
 * as its keyed hash) is on the suppression list; store_suppressed_quick is store_suppressed
 * without the reason, as two key lookups (the address, then its domain) instead of one
 * OR query (which builds a temporary b-tree per call), and with the keyed hash looked up
 * only when `hashed` (an import asks store_suppressed_any_hashed once per transaction).
 */
/*
 * store_touch_schedule for an enrolment started in this transaction (so certainly the
 * lead's active one) as a plain INSERT … VALUES: the INSERT … SELECT … WHERE EXISTS that
 * checks the enrolment makes SQLite stage the row in a temporary b-tree (the table has
 * triggers) and keep a statement journal, ~40% of an imported lead's work.
 */
int store_touch_schedule_new(struct store *st, int64_t lead_id, int64_t enrolment_id,
			     const char *sequence, const char *step, int64_t step_index,
			     int64_t due_at, int64_t now);
int store_suppressed_any_hashed(struct store *st, bool *any);
int store_suppressed_quick(struct store *st, const char *address, bool hashed);

#endif
