/* store.c - the SQLite schema, migrations, prepared statements and transactions. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/statvfs.h>

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <sqlite3.h>
#include <uv.h>

#include "dripd/error.h"
#include "dripd/log.h"
#include "dripd/store.h"
#include "dripd/util.h"

/*
 * DESIGN. One connection, WAL mode with synchronous=NORMAL (a process crash loses nothing
 * committed), foreign keys on. The schema grows only by appending to store_migrations;
 * PRAGMA user_version records how many have run, and each runs in its own transaction.
 * Statements are prepared on first use and kept until store_close. The promises the
 * database itself enforces: one active enrolment per lead (partial unique index) and one
 * touch per lead and step (unique key), so "a step at most once" does not rest on care.
 *
 * The delivery path's UPDATEs of touches and enrolments are OR FAIL, and the counts
 * triggers they fire plain UPDATEs of rows that always exist. Inside a transaction SQLite
 * gives a statement that writes more than one row (a trigger counts) and may abort
 * (ABORT is the default conflict policy, and an upsert's DO UPDATE always aborts) a
 * statement journal: a copy of every page it changes, in 1 KiB pieces with temp_store in
 * memory, so the statement alone can be undone. That was 9% of the loop a message. These
 * statements change one row each, their constraints are checked before that row is
 * written, and the triggers cannot fail a constraint, so FAIL undoes exactly what ABORT
 * would. An I/O error or a full disk inside them then rolls back the whole transaction
 * (SQLite does that for any I/O error already), and the store refuses every statement
 * after it until the caller ends the transaction (store_exec_stmt). (An INSERT into
 * touches keeps its journal: SQLite counts its foreign key checks to the statement's
 * end, and undoing it then needs one.)
 */

static const char *const store_migrations[] = {
	/* 1: the skeleton's schema. */
	"CREATE TABLE settings ("
	"  key TEXT PRIMARY KEY,"
	"  value INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE TABLE leads ("
	"  id INTEGER PRIMARY KEY,"
	"  email TEXT NOT NULL UNIQUE COLLATE NOCASE,"
	"  first_name TEXT NOT NULL DEFAULT '',"
	"  last_name TEXT NOT NULL DEFAULT '',"
	"  company TEXT NOT NULL DEFAULT '',"
	"  title TEXT NOT NULL DEFAULT '',"
	"  tz TEXT NOT NULL DEFAULT '',"
	"  tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),"
	"  attrs TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(attrs)),"
	"  stage TEXT NOT NULL,"
	"  score INTEGER NOT NULL DEFAULT 0,"
	"  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused',"
	"    'replied', 'handoff', 'customer', 'completed', 'unsubscribed', 'bounced',"
	"    'complained', 'forgotten')),"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL"
	");"
	"CREATE TABLE enrolments ("
	"  id INTEGER PRIMARY KEY,"
	"  lead_id INTEGER NOT NULL REFERENCES leads(id) ON DELETE CASCADE,"
	"  sequence TEXT NOT NULL,"
	"  stage TEXT NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'completed',"
	"    'exited')),"
	"  started_at INTEGER NOT NULL,"
	"  ended_at INTEGER"
	");"
	"CREATE UNIQUE INDEX enrolments_one_active ON enrolments(lead_id) WHERE state = 'active';"
	"CREATE TABLE touches ("
	"  id INTEGER PRIMARY KEY,"
	"  lead_id INTEGER NOT NULL REFERENCES leads(id) ON DELETE CASCADE,"
	"  enrolment_id INTEGER NOT NULL REFERENCES enrolments(id) ON DELETE CASCADE,"
	"  sequence TEXT NOT NULL,"
	"  step TEXT NOT NULL,"
	"  step_index INTEGER NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'queued',"
	"    'sending', 'sent', 'deferred', 'bounced', 'failed', 'skipped', 'uncertain')),"
	"  due_at INTEGER NOT NULL,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  message_id TEXT,"
	"  sent_at INTEGER,"
	"  last_error TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL,"
	"  UNIQUE (lead_id, sequence, step)"
	");"
	"CREATE INDEX touches_due ON touches(due_at) WHERE state = 'pending';"
	"CREATE INDEX touches_state ON touches(state) WHERE state IN ('queued', 'sending',"
	"  'uncertain');"
	"CREATE UNIQUE INDEX touches_message_id ON touches(message_id);"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY,"
	"  lead_id INTEGER REFERENCES leads(id) ON DELETE CASCADE,"
	"  touch_id INTEGER REFERENCES touches(id) ON DELETE CASCADE,"
	"  kind TEXT NOT NULL,"
	"  at INTEGER NOT NULL,"
	"  detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),"
	"  confidence REAL"
	");"
	"CREATE INDEX events_lead ON events(lead_id, at);"
	"CREATE INDEX events_at ON events(at);"
	"CREATE TABLE links ("
	"  touch_id INTEGER NOT NULL REFERENCES touches(id) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL,"
	"  url TEXT NOT NULL,"
	"  tag TEXT NOT NULL DEFAULT '',"
	"  PRIMARY KEY (touch_id, idx)"
	") WITHOUT ROWID;"
	"CREATE TABLE suppressions ("
	"  address TEXT PRIMARY KEY COLLATE NOCASE,"
	"  reason TEXT NOT NULL,"
	"  source TEXT NOT NULL DEFAULT '',"
	"  at INTEGER NOT NULL"
	") WITHOUT ROWID;",
	/* 2: what a touch said (prospect follow-ups reply to the first one's subject) and
	 * which variant of its step it used. */
	"ALTER TABLE touches ADD COLUMN subject TEXT;"
	"ALTER TABLE touches ADD COLUMN variant INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX events_touch ON events(touch_id, kind);",
	/* 3: when a touch was first tried, so retries give up after an age, like an MTA. */
	"ALTER TABLE touches ADD COLUMN first_attempt_at INTEGER;",
	/* 4: /metrics counts leads per stage from an index, not a scan of the table. */
	"CREATE INDEX leads_stage ON leads(stage);",
	/* 5: where the inbox left off in each mailbox (IMAP UIDVALIDITY and the last UID
	 * processed), and how many messages it could not match to a lead. */
	"CREATE TABLE inbox_state ("
	"  mailbox TEXT PRIMARY KEY,"
	"  uidvalidity INTEGER NOT NULL,"
	"  last_uid INTEGER NOT NULL,"
	"  unmatched INTEGER NOT NULL DEFAULT 0"
	") WITHOUT ROWID;",
	/* 6: the webhook outbox. A row per (event, webhook) still to be delivered,
	 * with its payload frozen at enqueue time and an idempotency id kept across retries;
	 * a delivered or abandoned row is deleted. No foreign keys: forgetting a lead must
	 * not wait for a CRM. */
	"CREATE TABLE hook_outbox ("
	"  id INTEGER PRIMARY KEY,"
	"  hook TEXT NOT NULL,"
	"  delivery_id TEXT NOT NULL UNIQUE,"
	"  event_id INTEGER NOT NULL,"
	"  lead_id INTEGER NOT NULL DEFAULT 0,"
	"  kind TEXT NOT NULL,"
	"  payload TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  next_at INTEGER NOT NULL,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  last_error TEXT,"
	"  UNIQUE (event_id, hook)"
	");"
	"CREATE INDEX hook_outbox_due ON hook_outbox(hook, next_at);",
	/* 7: which delivery account sent a touch and to which recipient domain,
	 * so the caps of each account and domain count their own sends. */
	("ALTER TABLE touches ADD COLUMN account TEXT;"
	 "ALTER TABLE touches ADD COLUMN rcpt_domain TEXT;"),
	/* 8: website signups waiting for their double opt-in (not leads yet, so no journey
	 * mail can reach them), and the consent record of each confirmed lead. AUTOINCREMENT:
	 * a signup id is signed into its confirm link and must never name a later signup. */
	"CREATE TABLE signups ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  email TEXT NOT NULL,"
	"  first_name TEXT NOT NULL DEFAULT '',"
	"  last_name TEXT NOT NULL DEFAULT '',"
	"  company TEXT NOT NULL DEFAULT '',"
	"  tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),"
	"  form TEXT NOT NULL,"
	"  consent TEXT NOT NULL DEFAULT '',"
	"  address TEXT NOT NULL DEFAULT '',"
	"  at INTEGER NOT NULL,"
	"  expires_at INTEGER NOT NULL,"
	"  mail_state INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX signups_email ON signups(email);"
	"CREATE INDEX signups_expires ON signups(expires_at);"
	"CREATE INDEX signups_mail ON signups(mail_state);"
	"CREATE TABLE consents ("
	"  lead_id INTEGER PRIMARY KEY REFERENCES leads(id) ON DELETE CASCADE,"
	"  form TEXT NOT NULL,"
	"  consent TEXT NOT NULL DEFAULT '',"
	"  address TEXT NOT NULL DEFAULT '',"
	"  signed_up_at INTEGER NOT NULL,"
	"  confirmed_at INTEGER NOT NULL,"
	"  confirm_address TEXT NOT NULL DEFAULT ''"
	");",
	/* 9: retention. Old events are folded into per-step daily counts of touches (a touch
	 * counts once per kind, as in stats) and removed; a folded touch's flags live here. */
	"CREATE TABLE step_counts ("
	"  day INTEGER NOT NULL,"
	"  sequence TEXT NOT NULL,"
	"  step TEXT NOT NULL,"
	"  variant INTEGER NOT NULL,"
	"  step_index INTEGER NOT NULL,"
	"  opened INTEGER NOT NULL DEFAULT 0,"
	"  clicked INTEGER NOT NULL DEFAULT 0,"
	"  replied INTEGER NOT NULL DEFAULT 0,"
	"  bounced INTEGER NOT NULL DEFAULT 0,"
	"  unsubscribed INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (day, sequence, step, variant)"
	") WITHOUT ROWID;"
	"ALTER TABLE touches ADD COLUMN folded INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX touches_fold ON touches(folded, sent_at);",
	/* 10: `status` reads its counts from here, kept by triggers in the same transaction as
	 * the rows they count, instead of scanning a million touches: leads, enrolments by
	 * state, and the touches of the states that grow without bound (pending, sent, failed;
	 * the few queued, sending and uncertain are counted from touches_state). The send
	 * path's pending -> queued -> sending -> sent thus costs two counter writes, not six. */
	"CREATE TABLE counts ("
	"  key TEXT PRIMARY KEY,"
	"  n INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"INSERT INTO counts SELECT 'leads', count(*) FROM leads;"
	"INSERT INTO counts SELECT 'enrolments:' || state, count(*) FROM enrolments"
	"  GROUP BY state;"
	"INSERT INTO counts SELECT 'touches:' || state, count(*) FROM touches"
	"  WHERE state IN ('pending', 'sent', 'failed') GROUP BY state;"
	"CREATE TRIGGER counts_leads_insert AFTER INSERT ON leads BEGIN"
	"  UPDATE counts SET n = n + 1 WHERE key = 'leads';"
	" END;"
	"CREATE TRIGGER counts_leads_delete AFTER DELETE ON leads BEGIN"
	"  UPDATE counts SET n = n - 1 WHERE key = 'leads';"
	" END;"
	"CREATE TRIGGER counts_enrolments_insert AFTER INSERT ON enrolments BEGIN"
	"  INSERT INTO counts VALUES ('enrolments:' || new.state, 1)"
	"    ON CONFLICT (key) DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER counts_enrolments_update AFTER UPDATE OF state ON enrolments"
	"  WHEN old.state IS NOT new.state BEGIN"
	"  UPDATE counts SET n = n - 1 WHERE key = 'enrolments:' || old.state;"
	"  INSERT INTO counts VALUES ('enrolments:' || new.state, 1)"
	"    ON CONFLICT (key) DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER counts_enrolments_delete AFTER DELETE ON enrolments BEGIN"
	"  UPDATE counts SET n = n - 1 WHERE key = 'enrolments:' || old.state;"
	" END;"
	"CREATE TRIGGER counts_touches_insert AFTER INSERT ON touches"
	"  WHEN new.state IN ('pending', 'sent', 'failed') BEGIN"
	"  INSERT INTO counts VALUES ('touches:' || new.state, 1)"
	"    ON CONFLICT (key) DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER counts_touches_leave AFTER UPDATE OF state ON touches"
	"  WHEN old.state IS NOT new.state AND old.state IN ('pending', 'sent', 'failed') BEGIN"
	"  UPDATE counts SET n = n - 1 WHERE key = 'touches:' || old.state;"
	" END;"
	"CREATE TRIGGER counts_touches_enter AFTER UPDATE OF state ON touches"
	"  WHEN old.state IS NOT new.state AND new.state IN ('pending', 'sent', 'failed') BEGIN"
	"  INSERT INTO counts VALUES ('touches:' || new.state, 1)"
	"    ON CONFLICT (key) DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER counts_touches_delete AFTER DELETE ON touches"
	"  WHEN old.state IN ('pending', 'sent', 'failed') BEGIN"
	"  UPDATE counts SET n = n - 1 WHERE key = 'touches:' || old.state;"
	" END;",
	/* 11: a touch has a Message-ID only once it is being sent: the unique index holds only
	 * those, not a NULL entry for every pending touch (one index write less per touch
	 * scheduled; lookups by message_id = ? still use it). */
	"DROP INDEX touches_message_id;"
	"CREATE UNIQUE INDEX touches_message_id ON touches(message_id)"
	"  WHERE message_id IS NOT NULL;",
	/* 12: the caps' and status's "sent in the last hour / day" read the recent sends from
	 * an index instead of scanning every touch (the expression and the state list are
	 * those of STMT_SENDS_SINCE, so SQLite can use it). */
	"CREATE INDEX touches_sent_at ON touches(coalesce(sent_at, updated_at))"
	"  WHERE state IN ('sent', 'sending');",
	/* 13: score decay. A lead's score (REAL once decayed) was last set at business time
	 * score_at; fall_at is the earliest time its decaying score crosses a fall
	 * threshold of journey.json (NULL: none), which the scheduler wakes for. */
	"ALTER TABLE leads ADD COLUMN score_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE leads ADD COLUMN fall_at INTEGER;"
	"UPDATE leads SET score_at = updated_at;"
	"CREATE INDEX leads_fall ON leads(fall_at) WHERE fall_at IS NOT NULL;",
	/* 14: no ephemeral b-trees on the send path. SQLite evaluates a constant IN list of
	 * more than two values by building a temporary b-tree (a pager, a page cache) each
	 * time: every UPDATE of touches.state built five, two for the WHERE of touches_state
	 * (old and new row) and one in each counts trigger. The same conditions as ORs of
	 * equalities are plain comparisons; a query's "state = 'queued'" still implies the
	 * index's WHERE, so STORE_FEW's queries keep using it. */
	"DROP INDEX touches_state;"
	"CREATE INDEX touches_state ON touches(state) WHERE state = 'queued' OR"
	"  state = 'sending' OR state = 'uncertain';"
	"DROP TRIGGER counts_touches_insert;"
	"DROP TRIGGER counts_touches_leave;"
	"DROP TRIGGER counts_touches_enter;"
	"DROP TRIGGER counts_touches_delete;"
	"CREATE TRIGGER counts_touches_insert AFTER INSERT ON touches"
	"  WHEN new.state = 'pending' OR new.state = 'sent' OR new.state = 'failed' BEGIN"
	"  INSERT INTO counts VALUES ('touches:' || new.state, 1)"
	"    ON CONFLICT (key) DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER counts_touches_leave AFTER UPDATE OF state ON touches"
	"  WHEN old.state IS NOT new.state AND (old.state = 'pending' OR old.state = 'sent' OR"
	"  old.state = 'failed') BEGIN"
	"  UPDATE counts SET n = n - 1 WHERE key = 'touches:' || old.state;"
	" END;"
	"CREATE TRIGGER counts_touches_enter AFTER UPDATE OF state ON touches"
	"  WHEN old.state IS NOT new.state AND (new.state = 'pending' OR new.state = 'sent' OR"
	"  new.state = 'failed') BEGIN"
	"  INSERT INTO counts VALUES ('touches:' || new.state, 1)"
	"    ON CONFLICT (key) DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER counts_touches_delete AFTER DELETE ON touches"
	"  WHEN old.state = 'pending' OR old.state = 'sent' OR old.state = 'failed' BEGIN"
	"  UPDATE counts SET n = n - 1 WHERE key = 'touches:' || old.state;"
	" END;",
	/* 15: retention.anonymise. When a lead whose journey ended long ago had its personal
	 * data erased (its row, stage, status and touches stay for the counts), and how many
	 * leads that was, for status. */
	"ALTER TABLE leads ADD COLUMN anonymised_at INTEGER;"
	"INSERT INTO counts VALUES ('anonymised', 0);",
	/* 16: no constant IN lists where rows are written (14 did the touch counts triggers). SQLite evaluates `x IN (a, b, c…)`
	 * (3 values or more) by building a temporary b-tree of the list each time the
	 * statement (or trigger) runs: ~3 µs per row written, for each of the status and
	 * state CHECKs and the counts triggers (5 of them per imported lead). The same tests
	 * written as `x = a OR x = b …` cost nothing noticeable. The CHECKs are rewritten in
	 * place (an equivalent constraint, no row changes, as SQLite's ALTER TABLE
	 * documentation allows through writable_schema; the dummy table bumps the schema
	 * cookie so other connections re-read it, RESET re-reads it here); a replace() that
	 * finds nothing changes nothing. */
	"PRAGMA writable_schema = ON;"
	"UPDATE sqlite_schema SET sql = replace(sql,"
	"  'CHECK (state IN (''pending'', ''queued'',    ''sending'', ''sent'', ''deferred'', "
	"''bounced'', ''failed'', ''skipped'', ''uncertain''))',"
	"  'CHECK (state = ''pending'' OR state = ''queued'' OR state = ''sending'' OR "
	"state = ''sent'' OR state = ''deferred'' OR state = ''bounced'' OR "
	"state = ''failed'' OR state = ''skipped'' OR state = ''uncertain'')')"
	"  WHERE type = 'table' AND name = 'touches';"
	"UPDATE sqlite_schema SET sql = replace(sql,"
	"  'CHECK (status IN (''active'', ''paused'',    ''replied'', ''handoff'', ''customer'', "
	"''completed'', ''unsubscribed'', ''bounced'',    ''complained'', ''forgotten''))',"
	"  'CHECK (status = ''active'' OR status = ''paused'' OR status = ''replied'' OR "
	"status = ''handoff'' OR status = ''customer'' OR status = ''completed'' OR "
	"status = ''unsubscribed'' OR status = ''bounced'' OR status = ''complained'' OR "
	"status = ''forgotten'')')"
	"  WHERE type = 'table' AND name = 'leads';"
	"UPDATE sqlite_schema SET sql = replace(sql,"
	"  'CHECK (state IN (''active'', ''completed'',    ''exited''))',"
	"  'CHECK (state = ''active'' OR state = ''completed'' OR state = ''exited'')')"
	"  WHERE type = 'table' AND name = 'enrolments';"
	"PRAGMA writable_schema = RESET;"
	"CREATE TABLE store_schema_bump (x);"
	"DROP TABLE store_schema_bump;",
	/* 17: retention's index holds only what it walks: touches sent and not folded yet.
	 * Every touch had an entry from the moment it was scheduled, moved when it was sent
	 * and kept after folding: two index writes per touch on the send path where one is
	 * enough (store_retention_step and store_retention_oldest ask for "folded = 0 AND
	 * sent_at IS NOT NULL", so SQLite still uses it). */
	"DROP INDEX touches_fold;"
	"CREATE INDEX touches_fold ON touches(folded, sent_at)"
	"  WHERE folded = 0 AND sent_at IS NOT NULL;",
	/* 18: no statement journal on the delivery path (see DESIGN above). Every key the
	 * counts triggers can touch has a row, so they UPDATE it instead of an upsert, whose
	 * DO UPDATE makes the statement that fires it one that may abort. */
	"INSERT OR IGNORE INTO counts VALUES ('enrolments:active', 0),"
	"  ('enrolments:completed', 0), ('enrolments:exited', 0), ('touches:pending', 0),"
	"  ('touches:sent', 0), ('touches:failed', 0);"
	"DROP TRIGGER counts_enrolments_insert;"
	"DROP TRIGGER counts_enrolments_update;"
	"DROP TRIGGER counts_touches_insert;"
	"DROP TRIGGER counts_touches_enter;"
	"CREATE TRIGGER counts_enrolments_insert AFTER INSERT ON enrolments BEGIN"
	"  UPDATE counts SET n = n + 1 WHERE key = 'enrolments:' || new.state;"
	" END;"
	"CREATE TRIGGER counts_enrolments_update AFTER UPDATE OF state ON enrolments"
	"  WHEN old.state IS NOT new.state BEGIN"
	"  UPDATE counts SET n = n - 1 WHERE key = 'enrolments:' || old.state;"
	"  UPDATE counts SET n = n + 1 WHERE key = 'enrolments:' || new.state;"
	" END;"
	"CREATE TRIGGER counts_touches_insert AFTER INSERT ON touches"
	"  WHEN new.state = 'pending' OR new.state = 'sent' OR new.state = 'failed' BEGIN"
	"  UPDATE counts SET n = n + 1 WHERE key = 'touches:' || new.state;"
	" END;"
	"CREATE TRIGGER counts_touches_enter AFTER UPDATE OF state ON touches"
	"  WHEN old.state IS NOT new.state AND (new.state = 'pending' OR new.state = 'sent' OR"
	"  new.state = 'failed') BEGIN"
	"  UPDATE counts SET n = n + 1 WHERE key = 'touches:' || new.state;"
	" END;",
	/* 19: the recent sends' index holds sent touches only, by the time they went. With the
	 * touches being sent in it too (at their hand-over), every message moved in it twice:
	 * in at its hand-over and again when it went. The few being sent are found through
	 * touches_state (STMT_SENDING_SINCE). */
	"DROP INDEX touches_sent_at;"
	"CREATE INDEX touches_sent_at ON touches(sent_at) WHERE state = 'sent';",
};

#define STORE_NMIGRATIONS ((int)(sizeof(store_migrations) / sizeof(store_migrations[0])))

enum store_stmt_id {
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_ROLLBACK,
	STMT_SAVEPOINT,
	STMT_SAVEPOINT_UNDO,
	STMT_SAVEPOINT_RELEASE,
	STMT_SETTING_GET,
	STMT_SETTING_SET,
	STMT_LEAD_INSERT,
	STMT_LEAD_BY_EMAIL,
	STMT_LEAD_BY_ID,
	STMT_ENROL_START,
	STMT_ENROL_END,
	STMT_ENROL_EXIT_ACTIVE,
	STMT_TOUCH_SKIP_PENDING,
	STMT_LEAD_SET_STAGE,
	STMT_TOUCH_SCHEDULE,
	STMT_TOUCH_NEXT_DUE,
	STMT_TOUCH_DUE,
	STMT_TOUCH_MARK_QUEUED,
	STMT_TOUCH_GET,
	STMT_TOUCH_SENDING,
	STMT_TOUCH_SENT,
	STMT_TOUCH_FINISH,
	STMT_TOUCH_DEFER,
	STMT_TOUCH_RELEASE,
	STMT_TOUCH_POSTPONE,
	STMT_LEAD_LAST_SENT,
	STMT_LEAD_UPDATE,
	STMT_SENDS_SINCE,
	STMT_SENDING_SINCE,
	STMT_RECOVER_QUEUED,
	STMT_RECOVER_SENDING,
	STMT_EVENT_ADD,
	STMT_EVENTS_FOR_LEAD,
	STMT_TOUCHES_FOR_LEAD,
	STMT_STATUS,
	STMT_LEAD_SET_STATUS,
	STMT_LEAD_ADD_SCORE,
	STMT_LEAD_HAS_EVENT,
	STMT_LEAD_HAS_STEP_EVENT,
	STMT_TOUCH_THREAD_ROOT,
	STMT_TOUCH_FIND,
	STMT_TOUCH_NEXT_FOR_LEAD,
	STMT_LINK_ADD,
	STMT_PENDING_STEPS,
	STMT_STATS_FUNNEL,
	STMT_TOUCHES_IN_STATE,
	STMT_TOUCH_RESOLVE,
	STMT_SUPPRESS,
	STMT_SUPPRESSED,
	STMT_STATS_STEPS,
	STMT_LINK_GET,
	STMT_TOUCH_HIT,
	STMT_TOUCH_HAS_HUMAN,
	STMT_STAGE_COUNTS,
	STMT_QUEUE_DEPTH,

	STMT_LEADS_PAGE,
	STMT_EVENTS_PAGE,
	STMT_UNSUPPRESS,
	STMT_SUPPRESSION_GET,
	STMT_SUPPRESSIONS,
	STMT_SUPPRESSED_HASH,
	STMT_LEAD_FORGET,
	STMT_EVENTS_FORGET,
	STMT_TOUCHES_FORGET,
	STMT_LINKS_FORGET,
	STMT_TOUCHES_DUE,

	STMT_INBOX_STATE_GET,
	STMT_INBOX_STATE_SET,
	STMT_INBOX_UNMATCHED,
	STMT_TOUCH_BY_MESSAGE_ID,
	STMT_TOUCH_SET_DUE,
	STMT_LEAD_COUNT_EVENTS,
	STMT_LEADS_BY_DOMAIN,

	STMT_TOUCH_DUE_COUNT,

	STMT_EVENTS_AFTER,
	STMT_EVENT_MAX_ID,
	STMT_HOOK_ENQUEUE,
	STMT_HOOK_DUE,
	STMT_HOOK_NEXT_DUE,
	STMT_HOOK_DONE,
	STMT_HOOK_RETRY,
	STMT_HOOK_COUNT,
	STMT_LEAD_SET_SCORE,
	STMT_LEAD_NEXT_FALL,
	STMT_LEADS_FALLING,
	STMT_LEAD_ANONYMISE,
	STMT_SUPPRESSED_ANY_HASHED,
	STMT_TOUCH_SCHEDULE_NEW,
	STMT_TOUCH_SENDING_NOTE,
	STMT_ENROL_IS_ACTIVE,
	STMT_COUNT
};

#define STORE_LEAD_COLUMNS                                                                   \
	"id, email, first_name, last_name, company, title, tz, stage, status, tags, attrs, " \
	"score, created_at, updated_at, score_at, coalesce(fall_at, 0)"
#define STORE_TOUCH_COLUMNS                                                                       \
	"id, lead_id, enrolment_id, sequence, step, step_index, state, due_at, "                  \
	"coalesce(sent_at, 0), attempts, message_id, last_error, coalesce(first_attempt_at, 0), " \
	"coalesce(account, '')"

static const char *const store_sql[STMT_STATUS + 1] = {
	[STMT_BEGIN] = "BEGIN IMMEDIATE",
	[STMT_COMMIT] = "COMMIT",
	[STMT_ROLLBACK] = "ROLLBACK",
	[STMT_SAVEPOINT] = "SAVEPOINT part",
	[STMT_SAVEPOINT_UNDO] = "ROLLBACK TO part",
	[STMT_SAVEPOINT_RELEASE] = "RELEASE part",
	[STMT_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
	[STMT_SETTING_SET] = "INSERT INTO settings (key, value) VALUES (?1, ?2) "
			     "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[STMT_LEAD_INSERT] = "INSERT INTO leads (email, first_name, last_name, company, title, "
			     "tz, stage, tags, attrs, created_at, updated_at) "
			     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
	[STMT_LEAD_BY_EMAIL] = "SELECT " STORE_LEAD_COLUMNS " FROM leads WHERE email = ?1",
	[STMT_LEAD_BY_ID] = "SELECT " STORE_LEAD_COLUMNS " FROM leads WHERE id = ?1",
	[STMT_ENROL_START] = "INSERT INTO enrolments (lead_id, sequence, stage, started_at) "
			     "VALUES (?1, ?2, ?3, ?4)",
	[STMT_ENROL_END] = "UPDATE OR FAIL enrolments SET state = ?2, ended_at = ?3 "
			   "WHERE id = ?1 AND state = 'active'",
	[STMT_ENROL_EXIT_ACTIVE] = "UPDATE enrolments SET state = 'exited', ended_at = ?2 "
				   "WHERE lead_id = ?1 AND state = 'active'",
	[STMT_TOUCH_SKIP_PENDING] = "UPDATE touches SET state = 'skipped', updated_at = ?2, "
				    "last_error = ?3 WHERE lead_id = ?1 AND state = 'pending'",
	[STMT_LEAD_SET_STAGE] = "UPDATE leads SET stage = ?2, updated_at = ?3 WHERE id = ?1",
	/* Only into the lead's active enrolment: a step that comes back after its lead moved
	 * on must not schedule more of the old sequence. */
	[STMT_TOUCH_SCHEDULE] = "INSERT INTO touches (lead_id, enrolment_id, sequence, step, "
				"step_index, due_at, created_at, updated_at) "
				"SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7 WHERE EXISTS (SELECT 1 "
				"FROM enrolments WHERE id = ?2 AND lead_id = ?1 AND "
				"state = 'active')",
	/* A paused lead's touches wait where they are: neither due nor claimed. */
	[STMT_TOUCH_NEXT_DUE] = "SELECT min(due_at) FROM touches t WHERE state = 'pending' AND "
				"NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = t.lead_id AND "
				"l.status = 'paused')",
	/* ?3: what may not be sent now, as a JSON array of {"s": [sequences], "d": [recipient
	 * domains]} (no "d": every domain); NULL: no filter. */
	[STMT_TOUCH_DUE] = "SELECT id FROM touches t WHERE state = 'pending' AND due_at <= ?1 "
			   "AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = t.lead_id AND "
			   "l.status = 'paused') "
			   "AND (?3 IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(?3) b WHERE "
			   "t.sequence IN (SELECT value FROM json_each(b.value, '$.s')) AND "
			   "(json_type(b.value, '$.d') IS NULL OR (SELECT lower(substr(l.email, "
			   "instr(l.email, '@') + 1)) FROM leads l WHERE l.id = t.lead_id) IN "
			   "(SELECT value FROM json_each(b.value, '$.d'))))) "
			   "ORDER BY due_at, id LIMIT ?2",
	[STMT_TOUCH_MARK_QUEUED] = "UPDATE OR FAIL touches SET state = 'queued', updated_at = ?2 "
				   "WHERE id = ?1 AND state = 'pending'",
	[STMT_TOUCH_GET] = "SELECT " STORE_TOUCH_COLUMNS " FROM touches WHERE id = ?1",
	[STMT_TOUCH_SENDING] = "UPDATE OR FAIL touches SET state = 'sending', message_id = ?2, "
			       "attempts = attempts + 1, updated_at = ?3, account = ?4, "
			       "rcpt_domain = ?5, "
			       "first_attempt_at = coalesce(first_attempt_at, ?3) "
			       "WHERE id = ?1 AND state = 'queued'",
	[STMT_TOUCH_SENT] =
		"UPDATE OR FAIL touches SET state = 'sent', sent_at = ?2, updated_at = ?2, "
		"last_error = NULL WHERE id = ?1 AND state = 'sending'",
	[STMT_TOUCH_FINISH] =
		"UPDATE OR FAIL touches SET state = ?2, last_error = ?3, updated_at = ?4 "
		"WHERE id = ?1 AND (state = 'pending' OR state = 'queued' OR state = 'sending')",
	[STMT_TOUCH_DEFER] =
		"UPDATE OR FAIL touches SET state = 'pending', due_at = ?2, last_error = ?3, "
		"updated_at = ?4 WHERE id = ?1 AND state = 'sending'",
	[STMT_LEAD_UPDATE] =
		"UPDATE leads SET first_name = ?2, last_name = ?3, company = ?4, "
		"title = ?5, tz = ?6, tags = ?7, attrs = ?8, updated_at = ?9 WHERE id = ?1",
	[STMT_LEAD_LAST_SENT] = "SELECT max(sent_at) FROM touches WHERE lead_id = ?1 AND "
				"state IN ('sent', 'sending') AND sent_at IS NOT NULL",
	/* The sends the caps count (sched's governor windows): sent, at the time they went,
	 * oldest first (touches_sent_at), and handed over and not yet answered, at the
	 * hand-over (touches_state). */
	[STMT_SENDS_SINCE] = "SELECT coalesce(account, 'default'), coalesce(rcpt_domain, ''), "
			     "sent_at FROM touches WHERE state = 'sent' AND sent_at > ?1 "
			     "ORDER BY sent_at",
	[STMT_SENDING_SINCE] = "SELECT coalesce(account, 'default'), "
			       "coalesce(rcpt_domain, ''), updated_at FROM touches "
			       "WHERE state = 'sending' AND updated_at > ?1",
	[STMT_TOUCH_POSTPONE] =
		"UPDATE OR FAIL touches SET state = 'pending', due_at = ?2, updated_at = ?3 "
		"WHERE id = ?1 AND (state = 'queued' OR state = 'pending')",
	[STMT_TOUCH_RELEASE] = "UPDATE touches SET state = 'pending' "
			       "WHERE id = ?1 AND state = 'queued'",
	[STMT_RECOVER_QUEUED] = "UPDATE touches SET state = 'pending' WHERE state = 'queued'",
	[STMT_RECOVER_SENDING] = "UPDATE touches SET state = 'uncertain' WHERE state = 'sending'",
	/* A tracking hit's "confidence" that a person did it (0..1) is kept in its own column
	 * too, so the queries below can leave machine opens and clicks out. */
	[STMT_EVENT_ADD] = "INSERT INTO events (lead_id, touch_id, kind, at, detail, confidence) "
			   "VALUES (?1, nullif(?2, 0), ?3, ?4, ?5, "
			   "CASE WHEN json_valid(?5) THEN json_extract(?5, '$.confidence') END)",
	[STMT_EVENTS_FOR_LEAD] = "SELECT id, lead_id, coalesce(touch_id, 0), kind, at, detail "
				 "FROM events WHERE lead_id = ?1 ORDER BY at, id",
	[STMT_TOUCHES_FOR_LEAD] = "SELECT " STORE_TOUCH_COLUMNS " FROM touches "
				  "WHERE lead_id = ?1 ORDER BY id",
/* The big counts come from the counts table (kept by triggers), the small ones from
	 * the touches_state index (STORE_FEW repeats its WHERE, so SQLite can use it). */
#define STORE_FEW "state IN ('queued', 'sending', 'uncertain')"
	[STMT_STATUS] =
		"SELECT coalesce((SELECT n FROM counts WHERE key = 'leads'), 0),"
		" coalesce((SELECT n FROM counts WHERE key = 'enrolments:active'), 0),"
		" coalesce((SELECT n FROM counts WHERE key = 'touches:pending'), 0),"
		" (SELECT count(*) FROM touches WHERE state = 'queued' AND " STORE_FEW "),"
		" (SELECT count(*) FROM touches WHERE state = 'sending' AND " STORE_FEW "),"
		" coalesce((SELECT n FROM counts WHERE key = 'touches:sent'), 0),"
		" coalesce((SELECT n FROM counts WHERE key = 'touches:failed'), 0),"
		" (SELECT count(*) FROM touches WHERE state = 'uncertain' AND " STORE_FEW "),"
		" (SELECT coalesce(min(due_at), 0) FROM touches WHERE state = 'pending'),"
		" coalesce((SELECT n FROM counts WHERE key = 'anonymised'), 0)",
};

static int store_touch_update(struct store *st, sqlite3_stmt *s);
static sqlite3_stmt *store_prep(struct store *st, const char *sql);
static int store_run(struct store *st, sqlite3_stmt *s);

static const char *const store_sql_more[] = {
	[STMT_LEAD_SET_STATUS] = "UPDATE leads SET status = ?2, updated_at = ?3 WHERE id = ?1",
	[STMT_LEAD_ADD_SCORE] =
		"UPDATE leads SET score = score + ?2, updated_at = ?3 WHERE id = ?1 "
		"RETURNING score",
	[STMT_LEAD_HAS_EVENT] = "SELECT 1 FROM events WHERE lead_id = ?1 AND kind = ?2 "
				"AND coalesce(confidence, 1) >= 0.5 LIMIT 1",
	[STMT_LEAD_HAS_STEP_EVENT] = "SELECT 1 FROM events e JOIN touches t ON t.id = e.touch_id "
				     "WHERE e.lead_id = ?1 AND e.kind = ?2 AND t.sequence = ?3 "
				     "AND t.step = ?4 AND coalesce(e.confidence, 1) >= 0.5 "
				     "LIMIT 1",
	[STMT_TOUCH_THREAD_ROOT] =
		"SELECT message_id, coalesce(subject, '') FROM touches "
		"WHERE enrolment_id = ?1 AND message_id IS NOT NULL AND "
		"state IN ('sending', 'sent', 'uncertain') ORDER BY step_index, id "
		"LIMIT 1",
	[STMT_TOUCH_FIND] = "SELECT " STORE_TOUCH_COLUMNS " FROM touches WHERE lead_id = ?1 AND "
			    "sequence = ?2 AND step = ?3",
	[STMT_SUPPRESS] = "INSERT INTO suppressions (address, reason, source, at) "
			  "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (address) DO NOTHING",
	/* An address is suppressed itself or through its whole domain ("example.com"). */
	[STMT_SUPPRESSED] = "SELECT reason FROM suppressions WHERE address = ?1 OR "
			    "address = substr(?1, instr(?1, '@') + 1) LIMIT 1",
	[STMT_TOUCHES_IN_STATE] = "SELECT " STORE_TOUCH_COLUMNS " FROM touches WHERE state = ?1 "
				  "ORDER BY id LIMIT ?2",
	/* Only an uncertain touch is resolved by a person: sent, or back to pending now. */
	[STMT_TOUCH_RESOLVE] = "UPDATE touches SET state = ?2, updated_at = ?3, "
			       "sent_at = CASE ?2 WHEN 'sent' THEN ?3 ELSE sent_at END, "
			       "due_at = CASE ?2 WHEN 'pending' THEN ?3 ELSE due_at END "
			       "WHERE id = ?1 AND state = 'uncertain'",
	[STMT_STATS_FUNNEL] = "SELECT stage, status, count(*) FROM leads GROUP BY stage, status",
	/* One row per step and variant: a touch counts once per kind, however many events. */
	/* Touches whose events retention folded count from step_counts instead. */
	[STMT_STATS_STEPS] =
		"SELECT sequence, step, variant, min(idx), sum(sent), sum(o), sum(c), sum(r),"
		" sum(b), sum(u) FROM ("
		"SELECT t.sequence, t.step, t.variant, t.step_index AS idx, 1 AS sent,"
		" t.folded = 0 AND EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND"
		"   e.kind IN ('open', 'click') AND coalesce(e.confidence, 1) >= 0.5) AS o,"
		" t.folded = 0 AND EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND"
		"   e.kind = 'click' AND coalesce(e.confidence, 1) >= 0.5) AS c,"
		" t.folded = 0 AND EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND"
		"   e.kind = 'reply') AS r,"
		" t.folded = 0 AND EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND"
		"   e.kind IN ('bounce', 'soft_bounce')) AS b,"
		" t.folded = 0 AND EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND"
		"   e.kind = 'unsubscribe') AS u"
		" FROM touches t WHERE t.state = 'sent'"
		" UNION ALL SELECT sequence, step, variant, step_index, 0, opened, clicked, "
		"replied,"
		" bounced, unsubscribed FROM step_counts)"
		" GROUP BY sequence, step, variant ORDER BY sequence, 4, variant",
	[STMT_PENDING_STEPS] = "SELECT sequence, step, count(*) FROM touches "
			       "WHERE state IN ('pending', 'queued') GROUP BY sequence, step",
	/* A retried touch records its links again: the same index keeps the latest URL. */
	[STMT_LINK_GET] = "SELECT url, tag FROM links WHERE touch_id = ?1 AND idx = ?2",
	[STMT_TOUCH_HIT] = "SELECT lead_id, coalesce(sent_at, 0) FROM touches WHERE id = ?1 AND "
			   "state IN ('sending', 'sent', 'uncertain')",
	[STMT_TOUCH_HAS_HUMAN] = "SELECT 1 FROM events WHERE touch_id = ?1 AND kind = ?2 AND "
				 "coalesce(confidence, 1) >= 0.5 LIMIT 1",
	[STMT_STAGE_COUNTS] = "SELECT stage, count(*) FROM leads GROUP BY stage",
	[STMT_QUEUE_DEPTH] = "SELECT (SELECT count(*) FROM touches WHERE state = 'pending'),"
			     " (SELECT count(*) FROM touches WHERE state = 'queued'),"
			     " (SELECT count(*) FROM touches WHERE state = 'sending'),"
			     " (SELECT count(*) FROM touches WHERE state = 'uncertain')",
	[STMT_LINK_ADD] = "INSERT INTO links (touch_id, idx, url, tag) VALUES (?1, ?2, ?3, ?4) "
			  "ON CONFLICT (touch_id, idx) DO UPDATE SET url = excluded.url, "
			  "tag = excluded.tag",
	[STMT_TOUCH_NEXT_FOR_LEAD] =
		"SELECT " STORE_TOUCH_COLUMNS " FROM touches WHERE lead_id = ?1 "
		"AND state = 'pending' ORDER BY due_at, id LIMIT 1",
	/* Pages by id for lead list and lead export: an empty filter matches every value. */
	[STMT_LEADS_PAGE] = "SELECT " STORE_LEAD_COLUMNS " FROM leads WHERE id > ?1 AND "
			    "(?2 = '' OR stage = ?2) AND (?3 = '' OR status = ?3) "
			    "ORDER BY id LIMIT ?4",
	[STMT_EVENTS_PAGE] =
		"SELECT e.id, coalesce(e.lead_id, 0), coalesce(e.touch_id, 0), e.kind, "
		"e.at, e.detail, coalesce(l.email, ''), coalesce(t.sequence, ''), "
		"coalesce(t.step, '') FROM events e LEFT JOIN leads l ON l.id = "
		"e.lead_id LEFT JOIN touches t ON t.id = e.touch_id "
		"WHERE e.id > ?1 AND e.at >= ?2 ORDER BY e.id LIMIT ?3",
	[STMT_UNSUPPRESS] = "DELETE FROM suppressions WHERE address = ?1",
	[STMT_SUPPRESSION_GET] = "SELECT address, reason, source, at FROM suppressions "
				 "WHERE address = ?1",
	[STMT_SUPPRESSIONS] = "SELECT address, reason, source, at FROM suppressions "
			      "ORDER BY at, address",
	[STMT_SUPPRESSED_HASH] = "SELECT reason FROM suppressions WHERE address = ?1",
	/* A forgotten lead keeps its row (so counts and foreign keys hold) and nothing that
	 * names the person. */
	[STMT_LEAD_FORGET] = "UPDATE leads SET email = 'forgotten:' || id, first_name = '', "
			     "last_name = '', company = '', title = '', tz = '', tags = '[]', "
			     "attrs = '{}', status = 'forgotten', updated_at = ?2 WHERE id = ?1",
	[STMT_EVENTS_FORGET] = "UPDATE events SET detail = '{}' WHERE lead_id = ?1",
	[STMT_TOUCHES_FORGET] = "UPDATE touches SET subject = NULL, last_error = NULL, "
				"state = CASE WHEN state IN ('pending', 'queued') THEN 'skipped' "
				"ELSE state END, updated_at = ?2 WHERE lead_id = ?1",
	[STMT_LINKS_FORGET] = "DELETE FROM links WHERE touch_id IN (SELECT id FROM touches "
			      "WHERE lead_id = ?1)",
	[STMT_TOUCHES_DUE] = "SELECT " STORE_TOUCH_COLUMNS " FROM touches WHERE state = 'pending' "
			     "ORDER BY due_at, id LIMIT ?1",

	[STMT_INBOX_STATE_GET] = "SELECT uidvalidity, last_uid, unmatched FROM inbox_state "
				 "WHERE mailbox = ?1",
	[STMT_INBOX_STATE_SET] =
		"INSERT INTO inbox_state(mailbox, uidvalidity, last_uid) VALUES (?1, ?2, ?3) "
		"ON CONFLICT(mailbox) DO UPDATE SET uidvalidity = ?2, last_uid = ?3",
	[STMT_INBOX_UNMATCHED] = "UPDATE inbox_state SET unmatched = unmatched + 1 "
				 "WHERE mailbox = ?1",
	[STMT_TOUCH_BY_MESSAGE_ID] = "SELECT " STORE_TOUCH_COLUMNS " FROM touches "
				     "WHERE message_id = ?1",
	[STMT_TOUCH_SET_DUE] = "UPDATE touches SET due_at = ?2, updated_at = ?3 "
			       "WHERE id = ?1 AND state = 'pending'",
	[STMT_LEAD_COUNT_EVENTS] = "SELECT count(*) FROM events WHERE lead_id = ?1 AND kind = ?2",
	[STMT_LEADS_BY_DOMAIN] = "SELECT id FROM leads WHERE email LIKE ?1 ESCAPE '\\' "
				 "AND status IN ('active', 'paused') ORDER BY id LIMIT ?2",
	/* Walks the partial index touches_due, at most ?2 entries. */
	[STMT_TOUCH_DUE_COUNT] = "SELECT count(*) FROM (SELECT 1 FROM touches WHERE state = "
				 "'pending' AND due_at <= ?1 LIMIT ?2)",

	[STMT_EVENTS_AFTER] = "SELECT id, coalesce(lead_id, 0), coalesce(touch_id, 0), kind, at, "
			      "detail FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
	[STMT_EVENT_MAX_ID] = "SELECT coalesce(max(id), 0) FROM events",
	[STMT_HOOK_ENQUEUE] = "INSERT INTO hook_outbox (hook, delivery_id, event_id, lead_id, "
			      "kind, payload, created_at, next_at) "
			      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) "
			      "ON CONFLICT (event_id, hook) DO NOTHING",
	[STMT_HOOK_DUE] = "SELECT id, hook, delivery_id, event_id, lead_id, kind, payload, "
			  "created_at, next_at, attempts FROM hook_outbox "
			  "WHERE hook = ?1 AND next_at <= ?2 ORDER BY next_at, id LIMIT ?3",
	[STMT_HOOK_NEXT_DUE] = "SELECT min(next_at) FROM hook_outbox WHERE next_at > ?1",
	[STMT_HOOK_DONE] = "DELETE FROM hook_outbox WHERE id = ?1",
	[STMT_HOOK_RETRY] = "UPDATE hook_outbox SET attempts = attempts + 1, next_at = ?2, "
			    "last_error = ?3 WHERE id = ?1",
	[STMT_HOOK_COUNT] = "SELECT count(*), coalesce(sum(attempts > 0), 0) FROM hook_outbox",
	[STMT_LEAD_SET_SCORE] = "UPDATE leads SET score = ?2, score_at = ?3, fall_at = ?4, "
				"updated_at = ?3 WHERE id = ?1",
	[STMT_LEAD_NEXT_FALL] = "SELECT min(fall_at) FROM leads WHERE fall_at IS NOT NULL",
	[STMT_LEADS_FALLING] = "SELECT id FROM leads WHERE fall_at IS NOT NULL AND fall_at <= ?1 "
			       "ORDER BY fall_at, id LIMIT ?2",
	/* Like STMT_LEAD_FORGET, but the stage, status, score and tags stay (the counts). */
	[STMT_LEAD_ANONYMISE] = "UPDATE leads SET email = 'anonymised:' || id, first_name = '', "
				"last_name = '', company = '', title = '', tz = '', attrs = '{}', "
				"anonymised_at = ?2, updated_at = ?2 WHERE id = ?1",
	[STMT_SUPPRESSED_ANY_HASHED] = "SELECT EXISTS (SELECT 1 FROM suppressions WHERE "
				       "address >= 'hmac:' AND address < 'hmac;')",
	[STMT_TOUCH_SCHEDULE_NEW] = "INSERT INTO touches (lead_id, enrolment_id, sequence, step, "
				    "step_index, due_at, created_at, updated_at) "
				    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
	/* The hand-over's write: sending, and what the touch says, in one UPDATE. */
	[STMT_TOUCH_SENDING_NOTE] =
		"UPDATE OR FAIL touches SET state = 'sending', message_id = ?2, "
		"attempts = attempts + 1, updated_at = ?3, account = ?4, "
		"rcpt_domain = ?5, "
		"first_attempt_at = coalesce(first_attempt_at, ?3), "
		"subject = ?6, variant = ?7 "
		"WHERE id = ?1 AND (state = 'queued' OR state = 'pending')",
	[STMT_ENROL_IS_ACTIVE] = "SELECT 1 FROM enrolments WHERE id = ?2 AND lead_id = ?1 AND "
				 "state = 'active'",
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[STMT_COUNT];
	struct {
		store_listen_fn fn;
		void *arg;
	} listeners[STORE_MAX_LISTENERS];
	int last_rc; /* SQLite's code of the last failure (store_last_error) */
	char last_err[200];
	bool txn; /* store_begin's transaction is open, until store_commit or store_rollback */

	unsigned char hash_key[64]; /* the key of forgotten addresses' HMACs */
	size_t hash_keylen;
	EVP_MAC_CTX *hmac; /* HMAC-SHA256 under hash_key, made at first use (HMAC() per call
			    * looked the algorithm up each time: 7.7 µs against 1.4) */
	struct store_ckpt *ckpt; /* NULL: SQLite's own checkpoints, inside commits */
};

/*
 * The background checkpointer. The loop thread owns every field but `db`, `rc`, `err`,
 * which the pool thread owns while `running` (uv_queue_work orders the two; `finished`
 * tells store_close, which may run after the loop has stopped).
 */
struct store_ckpt {
	uv_work_t req;
	uv_loop_t *loop;
	char *path;
	sqlite3 *db; /* its own connection, opened by the first checkpoint */
	struct store *st;
	bool running;
	atomic_bool finished;
	bool failing; /* the last one failed: logged once until one succeeds */
	bool tight; /* the file system has no room for a WAL of STORE_WAL_MAX_PAGES */
	int64_t frame; /* bytes a WAL frame takes: the page size and its header */
	int rc;
	char err[200];
	int pages; /* frames in the WAL after the last commit */
	int base; /* frames in the WAL when the last checkpoint was queued */
	uint64_t done, failed, on_loop;
};

int store_schema_version(void)
{
	return STORE_NMIGRATIONS;
}

static int store_fail(struct store *st, const char *what)
{
	st->last_rc = sqlite3_extended_errcode(st->db);
	snprintf(st->last_err, sizeof(st->last_err), "%s", sqlite3_errmsg(st->db));
	log_err("store: %s: %s", what, st->last_err);
	return DRIP_ESTORE;
}

/* The prepared statement for `id`, reset and unbound, or NULL (logged) if it cannot prepare. */
static sqlite3_stmt *store_stmt(struct store *st, enum store_stmt_id id)
{
	sqlite3_stmt *s = st->stmt[id];
	if (!s) {
		const char *sql =
			(size_t)id < sizeof(store_sql) / sizeof(store_sql[0]) && store_sql[id]
				? store_sql[id]
				: store_sql_more[id];
		if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[id],
				       NULL) != SQLITE_OK) {
			store_fail(st, sql);
			return NULL;
		}
		return st->stmt[id];
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

/*
 * Steps a statement that returns no rows. A unique key that is already taken is
 * DRIP_EEXISTS; any other constraint (a CHECK such as an unknown state or invalid JSON, a
 * foreign key to nothing) is a value the schema refuses: DRIP_EINVALID.
 */
static int store_exec_stmt(struct store *st, sqlite3_stmt *s)
{
	/* SQLite rolls a transaction back by itself after some failures (an I/O error, a full
	 * disk in a statement without a journal, a trigger's RAISE(ROLLBACK)): a write after
	 * that would run, and commit, alone. Until the caller ends it, the transaction refuses
	 * every statement, as the first failure already made its commit fail. */
	if (st->txn && sqlite3_get_autocommit(st->db)) {
		if (!st->last_rc) {
			st->last_rc = SQLITE_ABORT;
			snprintf(st->last_err, sizeof(st->last_err),
				 "the transaction was rolled back after an earlier failure");
		}
		return DRIP_ESTORE;
	}
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		return DRIP_EEXISTS;
	if ((rc & 0xff) == SQLITE_CONSTRAINT) {
		log_warn("store: refused: %s: %s", sqlite3_errmsg(st->db), sqlite3_sql(s));
		return DRIP_EINVALID;
	}
	return store_fail(st, sqlite3_sql(s));
}

/*
 * Binds the caller's string without a copy (SQLITE_STATIC): every function here steps and
 * resets its statement before it returns, and store_stmt clears the bindings before the
 * next use, so SQLite never reads the string after the caller is done with it. The copies
 * were a malloc and a free for every text value bound (about 15 a message sent).
 */
static void store_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_STATIC);
}

static char *store_col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return xstrdup(t ? (const char *)t : "");
}

static int store_migrate(struct store *st, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int version = 0;
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return errf(err, errlen, DRIP_ESTORE, "cannot read schema version: %s",
			    sqlite3_errmsg(st->db));
	if (sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (version > STORE_NMIGRATIONS)
		return errf(err, errlen, DRIP_ESTORE,
			    "database schema %d is newer than this dripd knows (%d): "
			    "refusing to touch it",
			    version, STORE_NMIGRATIONS);
	for (int v = version; v < STORE_NMIGRATIONS; v++) {
		char *msg = NULL;
		char *sql = xasprintf("BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;",
				      store_migrations[v], v + 1);
		int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
		free(sql);
		if (rc != SQLITE_OK) {
			errf(err, errlen, DRIP_ESTORE, "migration %d failed: %s", v + 1,
			     msg ? msg : sqlite3_errmsg(st->db));
			sqlite3_free(msg);
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
			return DRIP_ESTORE;
		}
	}
	return 0;
}

/* ---- the WAL's frames of a commit in one write ------------------------------------- */

/*
 * SQLite writes each WAL frame with two pwrite calls (its 24-byte header, then the page):
 * about 16 system calls a message in the delivery benchmark, a third of the loop thread's
 * time on a VM where a system call is dear. The "dripd" VFS sits over the default one and
 * gathers a WAL file's consecutive writes in memory. They go to the file with one pwrite
 * with the commit frame's page (the frame whose 24-byte header has a non-zero database
 * size), so a failure (a full disk) fails that xWrite and the commit, exactly as before;
 * and when anything else touches the file (a read, a sync, its size, a truncation, a
 * close) or the buffer is full. The database file's xShmBarrier, which SQLite calls while
 * it publishes a commit's WAL-index header (after the frames, before any reader can accept
 * the header), writes anything still gathered as a safety net. So every frame a reader can
 * see is in the file, and a commit returns only after its frames were written; a crash
 * before that loses only a transaction that was never acknowledged, as before. The file
 * format, the locks and the syncs are the default VFS's own.
 */
/* The default VFS writes at most 128 KiB - 1 bytes in one call (it masks the length with
 * 0x1ffff and calls a shorter write a full disk): 120 KiB is 29 frames of 4 KiB pages. */
#define STORE_WC_CAP (120u * 1024)

struct store_wc_file {
	sqlite3_file base; /* pMethods: ours */
	sqlite3_file *real; /* the default VFS's file, allocated right after this struct */
	struct store_wc_file *wal; /* a database file: its open WAL file, if any */
	struct store_wc_file *db; /* a WAL file: its database file */
	char *buf; /* a WAL file's gathered writes: `len` bytes for offset `off` */
	size_t len;
	sqlite3_int64 off;
	bool commit; /* the last write was a commit frame's header: its page ends the commit */
};

static sqlite3_vfs store_wc_vfs;
static sqlite3_vfs *store_wc_real;

static int store_wc_flush(struct store_wc_file *f)
{
	if (!f || !f->len)
		return SQLITE_OK;
	int rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
	f->len = 0;
	return rc;
}

static int store_wc_close(sqlite3_file *file)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	int rc = store_wc_flush(f);
	if (f->db)
		f->db->wal = NULL;
	if (f->wal)
		f->wal->db = NULL;
	free(f->buf);
	f->buf = NULL;
	int rc2 = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
	return rc != SQLITE_OK ? rc : rc2;
}

static int store_wc_read(sqlite3_file *file, void *p, int n, sqlite3_int64 off)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	int rc = store_wc_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, p, n, off);
}

static int store_wc_write(sqlite3_file *file, const void *p, int n, sqlite3_int64 off)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	int rc;
	if (!f->db || n <= 0 || (size_t)n > STORE_WC_CAP) { /* not a WAL file, or too big */
		f->commit = false;
		rc = store_wc_flush(f);
		return rc != SQLITE_OK ? rc : f->real->pMethods->xWrite(f->real, p, n, off);
	}
	if (f->len &&
	    (off != f->off + (sqlite3_int64)f->len || f->len + (size_t)n > STORE_WC_CAP) &&
	    (rc = store_wc_flush(f)) != SQLITE_OK)
		return rc;
	if (!f->buf)
		f->buf = xmalloc(STORE_WC_CAP);
	if (!f->len)
		f->off = off;
	memcpy(f->buf + f->len, p, (size_t)n);
	f->len += (size_t)n;
	bool commit_page = f->commit;
	/* A frame header is the only 24-byte write; bytes 4-7 hold the database's size in
	 * pages after a commit, 0 in the other frames. */
	const unsigned char *h = p;
	f->commit = n == 24 && (h[4] | h[5] | h[6] | h[7]) != 0;
	return commit_page ? store_wc_flush(f) : SQLITE_OK;
}

static int store_wc_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	int rc = store_wc_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int store_wc_sync(sqlite3_file *file, int flags)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	int rc = store_wc_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int store_wc_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	int rc = store_wc_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int store_wc_lock(sqlite3_file *file, int lock)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xLock(f->real, lock);
}

static int store_wc_unlock(sqlite3_file *file, int lock)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xUnlock(f->real, lock);
}

static int store_wc_reserved(sqlite3_file *file, int *out)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int store_wc_control(sqlite3_file *file, int op, void *arg)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	int rc = store_wc_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int store_wc_sector(sqlite3_file *file)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xSectorSize(f->real);
}

static int store_wc_caps(sqlite3_file *file)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int store_wc_shm_map(sqlite3_file *file, int pg, int sz, int extend, void volatile **pp)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xShmMap(f->real, pg, sz, extend, pp);
}

static int store_wc_shm_lock(sqlite3_file *file, int off, int n, int flags)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xShmLock(f->real, off, n, flags);
}

/* Before the WAL-index header a commit publishes: the commit's frames go to the file. */
static void store_wc_shm_barrier(sqlite3_file *file)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	if (f->wal && store_wc_flush(f->wal) != SQLITE_OK)
		log_err("store: writing the WAL failed: %s", strerror(errno));
	f->real->pMethods->xShmBarrier(f->real);
}

static int store_wc_shm_unmap(sqlite3_file *file, int del)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xShmUnmap(f->real, del);
}

static int store_wc_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **pp)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xFetch(f->real, off, n, pp);
}

static int store_wc_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	return f->real->pMethods->xUnfetch(f->real, off, p);
}

static const sqlite3_io_methods store_wc_methods = {
	.iVersion = 3,
	.xClose = store_wc_close,
	.xRead = store_wc_read,
	.xWrite = store_wc_write,
	.xTruncate = store_wc_truncate,
	.xSync = store_wc_sync,
	.xFileSize = store_wc_size,
	.xLock = store_wc_lock,
	.xUnlock = store_wc_unlock,
	.xCheckReservedLock = store_wc_reserved,
	.xFileControl = store_wc_control,
	.xSectorSize = store_wc_sector,
	.xDeviceCharacteristics = store_wc_caps,
	.xShmMap = store_wc_shm_map,
	.xShmLock = store_wc_shm_lock,
	.xShmBarrier = store_wc_shm_barrier,
	.xShmUnmap = store_wc_shm_unmap,
	.xFetch = store_wc_fetch,
	.xUnfetch = store_wc_unfetch,
};

static int store_wc_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
			 int *out_flags)
{
	struct store_wc_file *f = (struct store_wc_file *)file;
	(void)vfs;
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	int rc = store_wc_real->xOpen(store_wc_real, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK || !f->real->pMethods) {
		f->base.pMethods = NULL;
		return rc;
	}
	/* Ours forward every v3 method; the unix VFS's files have them all. */
	if (f->real->pMethods->iVersion < 3) {
		f->real->pMethods->xClose(f->real);
		f->base.pMethods = NULL;
		return SQLITE_CANTOPEN;
	}
	f->base.pMethods = &store_wc_methods;
	if ((flags & SQLITE_OPEN_WAL) && name) {
		struct store_wc_file *db =
			(struct store_wc_file *)sqlite3_database_file_object(name);
		if (db && db->base.pMethods == &store_wc_methods) {
			f->db = db;
			db->wal = f;
		}
	}
	return rc;
}

static void store_wc_init(void)
{
	store_wc_real = sqlite3_vfs_find(NULL);
	if (!store_wc_real)
		return;
	store_wc_vfs = *store_wc_real;
	store_wc_vfs.zName = "dripd";
	store_wc_vfs.pNext = NULL;
	store_wc_vfs.szOsFile = (int)sizeof(struct store_wc_file) + store_wc_real->szOsFile;
	store_wc_vfs.xOpen = store_wc_open;
	if (sqlite3_vfs_register(&store_wc_vfs, 0) != SQLITE_OK)
		store_wc_real = NULL;
}

/* The "dripd" VFS, registered once (not as the default). */
static const char *store_wc_name(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, store_wc_init);
	return store_wc_real ? store_wc_vfs.zName : NULL;
}

struct store *store_open(const char *path, char *err, size_t errlen)
{
	struct store *st = xcalloc(1, sizeof(*st));
	sqlite3_stmt *s = NULL;
	/* No allocation statistics: they cost a global mutex around every malloc and free
	 * (~10% of an import's CPU). Only before SQLite initialises; later it is a no-op. */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	int rc = sqlite3_open_v2(path, &st->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 store_wc_name());
	if (rc != SQLITE_OK) {
		errf(err, errlen, DRIP_ESTORE, "%s: cannot open database: %s", path,
		     st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, 5000);
	/* Read before anything is written: a damaged file is refused here with SQLite's
	 * reason, never silently recreated, and a newer schema is left exactly as it was
	 * (switching it to WAL would already change its header). */
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		errf(err, errlen, DRIP_ESTORE, "%s: cannot use database: %s", path,
		     sqlite3_errmsg(st->db));
		goto fail;
	}
	if (sqlite3_column_int(s, 0) > STORE_NMIGRATIONS) {
		errf(err, errlen, DRIP_ESTORE,
		     "%s: database schema %d is newer than this dripd knows (%d): "
		     "refusing to touch it",
		     path, sqlite3_column_int(s, 0), STORE_NMIGRATIONS);
		goto fail;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		errf(err, errlen, DRIP_ESTORE, "%s: cannot use database: %s", path,
		     sqlite3_errmsg(st->db));
		goto fail;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_exec(st->db,
			 "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
			 "PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;"
			 /* 16 MiB of page cache instead of 2: an import into a million
			  * leads re-reads index pages from the OS less often. */
			 "PRAGMA cache_size = -16384;",
			 NULL, NULL, NULL) != SQLITE_OK) {
		errf(err, errlen, DRIP_ESTORE, "%s: %s", path, sqlite3_errmsg(st->db));
		goto fail;
	}
	if (store_migrate(st, err, errlen) != 0)
		goto fail;
	return st;
fail:
	sqlite3_finalize(s);
	store_close(st);
	return NULL;
}

static void store_ckpt_work(uv_work_t *req)
{
	struct store_ckpt *c = req->data;
	c->rc = SQLITE_OK;
	if (!c->db) {
		c->rc = sqlite3_open_v2(c->path, &c->db,
					SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
		if (c->rc == SQLITE_OK)
			c->rc = sqlite3_exec(c->db, "PRAGMA synchronous = NORMAL", NULL, NULL,
					     NULL);
		if (c->rc != SQLITE_OK) {
			snprintf(c->err, sizeof(c->err), "cannot open a second connection: %s",
				 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(c->rc));
			sqlite3_close(c->db);
			c->db = NULL;
			atomic_store(&c->finished, true);
			return;
		}
	}
	/* PASSIVE: copies what no reader still needs and never waits for the loop's writes. */
	c->rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	if (c->rc != SQLITE_OK)
		snprintf(c->err, sizeof(c->err), "%s", sqlite3_errmsg(c->db));
	atomic_store(&c->finished, true);
}

static void store_ckpt_free(struct store_ckpt *c)
{
	sqlite3_close(c->db);
	free(c->path);
	free(c);
}

/*
 * The WAL starts again from its beginning only at a write that finds every frame copied
 * back, and under a steady stream of commits the pool's checkpoint always lags one commit
 * behind. So when the WAL has grown to STORE_WAL_MAX_PAGES all the same, the loop
 * waits for a checkpoint in flight and copies the few frames left itself (the pool has
 * copied the rest), and the next commit reuses the file: the WAL stays under ~32 MB. Each
 * time costs the loop three fsyncs (~5 ms each here, with the next WAL header's), so the
 * bound is 8,000 pages rather than 4,000: 6 times in 10,000 benchmark messages, not 16.
 */
/* Waits for a checkpoint in flight in the pool (its connection holds the checkpoint lock,
 * for which SQLite does not wait). Works without the loop running. */
static void store_ckpt_wait(const struct store_ckpt *c)
{
	while (c->running && !atomic_load(&c->finished))
		uv_sleep(1);
}

/* A TRUNCATE checkpoint: every frame copied back and the WAL file cut to zero bytes. */
static int store_wal_truncate(struct store *st)
{
	if (st->ckpt)
		store_ckpt_wait(st->ckpt);
	int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	if (rc == SQLITE_OK && st->ckpt)
		st->ckpt->pages = st->ckpt->base = 0;
	return rc;
}

/*
 * Whether the WAL may grow to STORE_WAL_MAX_PAGES: not when that growth would take more
 * than half the room left on the database's file system. A 16 MiB one filled up with the
 * WAL of 150 leads' first messages (under ASan, on a busy machine, the pool's checkpoint
 * never caught the stream of commits). Asked every STORE_CHECKPOINT_PAGES frames.
 */
static bool store_ckpt_tight(const struct store_ckpt *c)
{
	struct statvfs vfs;
	if (statvfs(c->path, &vfs) != 0)
		return false; /* the commits themselves report what is wrong */
	int64_t room = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
	return (int64_t)(STORE_WAL_MAX_PAGES - c->pages) * c->frame > room / 2;
}

static void store_ckpt_catch_up(struct store *st)
{
	struct store_ckpt *c = st->ckpt;
	/* While the pool's checkpoints fail (a full disk), or on a file system too small for
	 * the larger WAL, the WAL is kept as small as SQLite's own checkpoints keep it. */
	if (c->pages < (c->failing || c->tight ? STORE_CHECKPOINT_PAGES : STORE_WAL_MAX_PAGES))
		return;
	store_ckpt_wait(c);
	if (sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) ==
	    SQLITE_OK) {
		c->on_loop++;
		c->pages = c->base = 0;
	}
}

static void store_ckpt_after(uv_work_t *req, int status)
{
	struct store_ckpt *c = req->data;
	c->running = false;
	store_ckpt_catch_up(c->st);
	if (status == 0 && c->rc == SQLITE_OK) {
		c->done++;
		if (c->failing)
			log_info("store: background WAL checkpoints work again");
		c->failing = false;
		return;
	}
	c->failed++;
	/* SQLITE_BUSY: another connection (dripctl backup, a forget's TRUNCATE) is
	 * checkpointing; the next commit over the threshold tries again. */
	if (!c->failing && c->rc != SQLITE_BUSY)
		log_warn("store: background WAL checkpoint failed (%s); the next commit tries "
			 "again",
			 status ? uv_strerror(status) : c->err);
	c->failing = c->rc != SQLITE_BUSY;
}

/* After each commit, on the loop thread: `pages` frames are in the WAL. */
static int store_ckpt_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct store_ckpt *c = arg;
	(void)db;
	(void)name;
	if (pages < c->pages)
		c->base = 0; /* the WAL started again from its beginning */
	c->pages = pages;
	/* Every STORE_CHECKPOINT_PAGES new frames, not after every commit once the WAL
	 * holds that many (431 checkpoints instead of ~50 for 10,000 messages). */
	bool due = c->pages - c->base >= STORE_CHECKPOINT_PAGES;
	if (due)
		c->tight = store_ckpt_tight(c);
	store_ckpt_catch_up(c->st); /* SQLite allows a checkpoint here, as its own does */
	if (!due || c->pages - c->base < STORE_CHECKPOINT_PAGES || c->running)
		return SQLITE_OK;
	c->base = c->pages;
	c->running = true;
	atomic_store(&c->finished, false);
	if (uv_queue_work(c->loop, &c->req, store_ckpt_work, store_ckpt_after) != 0)
		c->running = false;
	return SQLITE_OK;
}

int store_checkpoint_in_background(struct store *st, uv_loop_t *loop)
{
	const char *path = sqlite3_db_filename(st->db, "main");
	if (st->ckpt)
		return 0;
	if (!path || !*path)
		return DRIP_EINVALID; /* :memory: has no WAL */
	struct store_ckpt *c = xcalloc(1, sizeof(*c));
	c->req.data = c;
	c->st = st;
	c->loop = loop;
	c->path = xstrdup(path);
	c->frame = 4096 + 24;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(st->db, "PRAGMA page_size", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		c->frame = sqlite3_column_int64(s, 0) + 24;
	sqlite3_finalize(s);
	st->ckpt = c;
	/* Replaces SQLite's automatic checkpoint, which is a WAL hook of its own. */
	sqlite3_wal_hook(st->db, store_ckpt_hook, c);
	return 0;
}

void store_checkpoint_counts(const struct store *st, uint64_t *done, uint64_t *failed,
			     uint64_t *on_loop)
{
	*done = st->ckpt ? st->ckpt->done : 0;
	*failed = st->ckpt ? st->ckpt->failed : 0;
	*on_loop = st->ckpt ? st->ckpt->on_loop : 0;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	if (st->ckpt) {
		/* A checkpoint in flight finishes on its own connection first. (The daemon
		 * closes the store after its loop has stopped, when none can be in flight.) */
		store_ckpt_wait(st->ckpt);
		store_ckpt_free(st->ckpt);
	}
	for (int i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	EVP_MAC_CTX_free(st->hmac);
	free(st);
}

int store_begin(struct store *st)
{
	sqlite3_stmt *s = store_stmt(st, STMT_BEGIN);
	int rc = s ? store_exec_stmt(st, s) : DRIP_ESTORE;
	st->txn = rc == 0;
	return rc;
}

int store_commit(struct store *st)
{
	sqlite3_stmt *s = store_stmt(st, STMT_COMMIT);
	int rc = s ? store_exec_stmt(st, s) : DRIP_ESTORE;
	if (rc)
		store_rollback(st);
	st->txn = false;
	return rc;
}

void store_rollback(struct store *st)
{
	st->txn = false;
	if (sqlite3_get_autocommit(st->db))
		return;
	sqlite3_stmt *s = store_stmt(st, STMT_ROLLBACK);
	if (s)
		store_exec_stmt(st, s);
}

int store_part_begin(struct store *st)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SAVEPOINT);
	return s ? store_exec_stmt(st, s) : DRIP_ESTORE;
}

int store_part_end(struct store *st, bool keep)
{
	sqlite3_stmt *s;
	int rc;
	if (!keep) {
		if (!(s = store_stmt(st, STMT_SAVEPOINT_UNDO)) || (rc = store_exec_stmt(st, s)))
			return DRIP_ESTORE;
	}
	s = store_stmt(st, STMT_SAVEPOINT_RELEASE);
	return s ? store_exec_stmt(st, s) : DRIP_ESTORE;
}

int store_setting_get(struct store *st, const char *key, int64_t *value)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SETTING_GET);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, key);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*value = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "setting");
}

int store_setting_set(struct store *st, const char *key, int64_t value)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SETTING_SET);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, key);
	sqlite3_bind_int64(s, 2, value);
	return store_exec_stmt(st, s);
}

int store_lead_insert(struct store *st, struct lead *lead, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_INSERT);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, lead->email);
	store_bind_text(s, 2, lead->first_name);
	store_bind_text(s, 3, lead->last_name);
	store_bind_text(s, 4, lead->company);
	store_bind_text(s, 5, lead->title);
	store_bind_text(s, 6, lead->tz);
	store_bind_text(s, 7, lead->stage);
	store_bind_text(s, 8, lead->tags && *lead->tags ? lead->tags : "[]");
	store_bind_text(s, 9, lead->attrs && *lead->attrs ? lead->attrs : "{}");
	sqlite3_bind_int64(s, 10, now);
	int rc = store_exec_stmt(st, s);
	if (rc == 0) {
		lead->id = sqlite3_last_insert_rowid(st->db);
		lead->created_at = lead->updated_at = now;
	}
	return rc;
}

static void store_lead_fill(sqlite3_stmt *s, struct lead *out);

static int store_lead_row(struct store *st, sqlite3_stmt *s, struct lead *out)
{
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "lead");
	}
	store_lead_fill(s, out);
	sqlite3_reset(s);
	return 0;
}

static void store_lead_fill(sqlite3_stmt *s, struct lead *out)
{
	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	out->email = store_col_text(s, 1);
	out->first_name = store_col_text(s, 2);
	out->last_name = store_col_text(s, 3);
	out->company = store_col_text(s, 4);
	out->title = store_col_text(s, 5);
	out->tz = store_col_text(s, 6);
	out->stage = store_col_text(s, 7);
	out->status = store_col_text(s, 8);
	out->tags = store_col_text(s, 9);
	out->attrs = store_col_text(s, 10);
	out->score = sqlite3_column_double(s, 11);
	out->created_at = sqlite3_column_int64(s, 12);
	out->updated_at = sqlite3_column_int64(s, 13);
	out->score_at = sqlite3_column_int64(s, 14);
	out->fall_at = sqlite3_column_int64(s, 15);
}

int store_lead_by_email(struct store *st, const char *email, struct lead *out)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_BY_EMAIL);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, email);
	return store_lead_row(st, s, out);
}

int store_lead_by_id(struct store *st, int64_t id, struct lead *out)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_BY_ID);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	return store_lead_row(st, s, out);
}

void store_lead_clear(struct lead *lead)
{
	free(lead->email);
	free(lead->first_name);
	free(lead->last_name);
	free(lead->company);
	free(lead->title);
	free(lead->tz);
	free(lead->stage);
	free(lead->status);
	free(lead->tags);
	free(lead->attrs);
	memset(lead, 0, sizeof(*lead));
}

int store_enrolment_start(struct store *st, int64_t lead_id, const char *sequence,
			  const char *stage, int64_t now, int64_t *enrolment_id)
{
	sqlite3_stmt *s = store_stmt(st, STMT_ENROL_START);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	store_bind_text(s, 2, sequence);
	store_bind_text(s, 3, stage);
	sqlite3_bind_int64(s, 4, now);
	int rc = store_exec_stmt(st, s);
	if (rc == 0)
		*enrolment_id = sqlite3_last_insert_rowid(st->db);
	return rc;
}

int store_enrolment_end(struct store *st, int64_t enrolment_id, const char *state, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_ENROL_END);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, enrolment_id);
	store_bind_text(s, 2, state);
	sqlite3_bind_int64(s, 3, now);
	int rc = store_exec_stmt(st, s);
	if (rc == 0 && sqlite3_changes(st->db) == 0)
		return DRIP_ENOT_FOUND;
	return rc;
}

int store_enrolment_exit_active(struct store *st, int64_t lead_id, const char *reason, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_SKIP_PENDING);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	sqlite3_bind_int64(s, 2, now);
	store_bind_text(s, 3, reason);
	if ((rc = store_exec_stmt(st, s)))
		return rc;
	if (!(s = store_stmt(st, STMT_ENROL_EXIT_ACTIVE)))
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	sqlite3_bind_int64(s, 2, now);
	return store_exec_stmt(st, s);
}

int store_lead_set_stage(struct store *st, int64_t lead_id, const char *stage, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_SET_STAGE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	store_bind_text(s, 2, stage);
	sqlite3_bind_int64(s, 3, now);
	return store_touch_update(st, s);
}

int store_touch_schedule(struct store *st, int64_t lead_id, int64_t enrolment_id,
			 const char *sequence, const char *step, int64_t step_index, int64_t due_at,
			 int64_t now, int64_t *touch_id)
{
	sqlite3_stmt *s;
	/* Inside a transaction, the enrolment check and a plain INSERT … VALUES: the same
	 * answer as STMT_TOUCH_SCHEDULE's INSERT … SELECT … WHERE EXISTS, which stages the row
	 * in a temporary b-tree and keeps a statement journal (the table has triggers) — a
	 * third of a sent step's scheduling of the next one. */
	if (!sqlite3_get_autocommit(st->db)) {
		if (!(s = store_stmt(st, STMT_ENROL_IS_ACTIVE)))
			return DRIP_ESTORE;
		sqlite3_bind_int64(s, 1, lead_id);
		sqlite3_bind_int64(s, 2, enrolment_id);
		int found = sqlite3_step(s);
		sqlite3_reset(s);
		if (found == SQLITE_DONE)
			return DRIP_ENOT_FOUND;
		if (found != SQLITE_ROW)
			return store_fail(st, "enrolment");
		int rc = store_touch_schedule_new(st, lead_id, enrolment_id, sequence, step,
						  step_index, due_at, now);
		if (rc == 0 && touch_id)
			*touch_id = sqlite3_last_insert_rowid(st->db);
		return rc;
	}
	if (!(s = store_stmt(st, STMT_TOUCH_SCHEDULE)))
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	sqlite3_bind_int64(s, 2, enrolment_id);
	store_bind_text(s, 3, sequence);
	store_bind_text(s, 4, step);
	sqlite3_bind_int64(s, 5, step_index);
	sqlite3_bind_int64(s, 6, due_at);
	sqlite3_bind_int64(s, 7, now);
	int rc = store_exec_stmt(st, s);
	if (rc == 0 && sqlite3_changes(st->db) == 0)
		return DRIP_ENOT_FOUND;
	if (rc == 0 && touch_id)
		*touch_id = sqlite3_last_insert_rowid(st->db);
	return rc;
}

int store_touch_next_due(struct store *st, int64_t *due_at)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_NEXT_DUE);
	if (!s)
		return DRIP_ESTORE;
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return store_fail(st, "next due");
	}
	bool none = sqlite3_column_type(s, 0) == SQLITE_NULL;
	*due_at = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return none ? DRIP_ENOT_FOUND : 0;
}

int store_touch_claim(struct store *st, int64_t now, size_t max, int64_t *ids, size_t *n)
{
	return store_touch_claim_filtered(st, now, max, NULL, ids, n);
}

int store_touch_take(struct store *st, int64_t now, size_t max, const char *blocked, int64_t *ids,
		     size_t *n)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_DUE);
	int rc;
	*n = 0;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, (int64_t)max);
	if (blocked)
		store_bind_text(s, 3, blocked);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < max)
		ids[(*n)++] = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		*n = 0;
		return store_fail(st, "claim");
	}
	return 0;
}

int store_touch_claim_filtered(struct store *st, int64_t now, size_t max, const char *blocked,
			       int64_t *ids, size_t *n)
{
	sqlite3_stmt *s;
	int rc;
	/* Inside the caller's transaction: a savepoint, committed with it. */
	bool outer = !sqlite3_get_autocommit(st->db);
	*n = 0;
	if ((rc = outer ? store_part_begin(st) : store_begin(st)))
		return rc;
	if (store_touch_take(st, now, max, blocked, ids, n))
		goto fail;
	for (size_t i = 0; i < *n; i++) {
		if (!(s = store_stmt(st, STMT_TOUCH_MARK_QUEUED)))
			goto fail;
		sqlite3_bind_int64(s, 1, ids[i]);
		sqlite3_bind_int64(s, 2, now);
		if (store_exec_stmt(st, s))
			goto fail;
	}
	if (outer)
		return store_part_end(st, true);
	return store_commit(st);
fail:
	if (outer)
		store_part_end(st, false);
	else
		store_rollback(st);
	*n = 0;
	return DRIP_ESTORE;
}

static void store_touch_row(sqlite3_stmt *s, struct touch *out)
{
	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	out->lead_id = sqlite3_column_int64(s, 1);
	out->enrolment_id = sqlite3_column_int64(s, 2);
	out->sequence = store_col_text(s, 3);
	out->step = store_col_text(s, 4);
	out->step_index = sqlite3_column_int64(s, 5);
	out->state = store_col_text(s, 6);
	out->due_at = sqlite3_column_int64(s, 7);
	out->sent_at = sqlite3_column_int64(s, 8);
	out->attempts = sqlite3_column_int64(s, 9);
	out->message_id = store_col_text(s, 10);
	out->last_error = store_col_text(s, 11);
	out->first_attempt_at = sqlite3_column_int64(s, 12);
	out->account = store_col_text(s, 13);
}

/* Steps a statement that returns at most one touch. */
static int store_touch_one(struct store *st, sqlite3_stmt *s, struct touch *out)
{
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		store_touch_row(s, out);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "touch");
}

int store_touch_get(struct store *st, int64_t id, struct touch *out)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_GET);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	return store_touch_one(st, s, out);
}

void store_touch_clear(struct touch *t)
{
	free(t->sequence);
	free(t->step);
	free(t->state);
	free(t->message_id);
	free(t->last_error);
	free(t->account);
	memset(t, 0, sizeof(*t));
}

/* Runs an UPDATE of one touch; DRIP_ENOT_FOUND when the touch was not in the expected state. */
static int store_touch_update(struct store *st, sqlite3_stmt *s)
{
	int rc = store_exec_stmt(st, s);
	if (rc == 0 && sqlite3_changes(st->db) == 0)
		return DRIP_ENOT_FOUND;
	return rc;
}

int store_touch_sending(struct store *st, int64_t id, const char *message_id, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_SENDING);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	store_bind_text(s, 2, message_id);
	sqlite3_bind_int64(s, 3, now);
	return store_touch_update(st, s);
}

int store_touch_sent(struct store *st, int64_t id, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_SENT);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, now);
	return store_touch_update(st, s);
}

int store_touch_finish(struct store *st, int64_t id, const char *state, const char *reason,
		       int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_FINISH);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	store_bind_text(s, 2, state);
	store_bind_text(s, 3, reason);
	sqlite3_bind_int64(s, 4, now);
	return store_touch_update(st, s);
}

int store_touch_defer(struct store *st, int64_t id, int64_t due_at, const char *reason, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_DEFER);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, due_at);
	store_bind_text(s, 3, reason);
	sqlite3_bind_int64(s, 4, now);
	return store_touch_update(st, s);
}

int store_touch_release(struct store *st, int64_t id)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_RELEASE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	return store_touch_update(st, s);
}

int store_recover(struct store *st, int64_t *requeued, int64_t *uncertain)
{
	sqlite3_stmt *s;
	int rc;
	if ((rc = store_begin(st)))
		return rc;
	if (!(s = store_stmt(st, STMT_RECOVER_QUEUED)) || store_exec_stmt(st, s))
		goto fail;
	*requeued = sqlite3_changes(st->db);
	if (!(s = store_stmt(st, STMT_RECOVER_SENDING)) || store_exec_stmt(st, s))
		goto fail;
	*uncertain = sqlite3_changes(st->db);
	return store_commit(st);
fail:
	store_rollback(st);
	return DRIP_ESTORE;
}

int store_event_add(struct store *st, int64_t lead_id, int64_t touch_id, const char *kind,
		    int64_t at, const char *detail_json)
{
	sqlite3_stmt *s = store_stmt(st, STMT_EVENT_ADD);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	sqlite3_bind_int64(s, 2, touch_id);
	store_bind_text(s, 3, kind);
	sqlite3_bind_int64(s, 4, at);
	store_bind_text(s, 5, detail_json && *detail_json ? detail_json : "{}");
	int rc = store_exec_stmt(st, s);
	if (rc)
		return rc;
	struct store_event ev = {
		.id = sqlite3_last_insert_rowid(st->db),
		.lead_id = lead_id,
		.touch_id = touch_id,
		.kind = kind,
		.at = at,
		.detail = detail_json && *detail_json ? detail_json : "{}",
	};
	for (size_t i = 0; i < STORE_MAX_LISTENERS; i++)
		if (st->listeners[i].fn)
			st->listeners[i].fn(st->listeners[i].arg, &ev);
	return 0;
}

int store_event_listen(struct store *st, store_listen_fn fn, void *arg)
{
	for (size_t i = 0; i < STORE_MAX_LISTENERS; i++) {
		if (!st->listeners[i].fn) {
			st->listeners[i].fn = fn;
			st->listeners[i].arg = arg;
			return 0;
		}
	}
	return DRIP_EBUSY;
}

void store_event_unlisten(struct store *st, store_listen_fn fn, void *arg)
{
	for (size_t i = 0; i < STORE_MAX_LISTENERS; i++) {
		if (st->listeners[i].fn == fn && st->listeners[i].arg == arg) {
			st->listeners[i].fn = NULL;
			st->listeners[i].arg = NULL;
		}
	}
}

int store_events_for_lead(struct store *st, int64_t lead_id, store_event_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_EVENTS_FOR_LEAD);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_event ev = {
			.id = sqlite3_column_int64(s, 0),
			.lead_id = sqlite3_column_int64(s, 1),
			.touch_id = sqlite3_column_int64(s, 2),
			.kind = (const char *)sqlite3_column_text(s, 3),
			.at = sqlite3_column_int64(s, 4),
			.detail = (const char *)sqlite3_column_text(s, 5),
		};
		if (cb(arg, &ev)) {
			sqlite3_reset(s);
			return 0;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "events");
}

/* Calls cb for each touch the bound statement returns; a non-zero return stops the walk. */
static int store_touch_walk(struct store *st, sqlite3_stmt *s, store_touch_cb cb, void *arg)
{
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct touch t;
		store_touch_row(s, &t);
		int stop = cb(arg, &t);
		store_touch_clear(&t);
		if (stop)
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_fail(st, sqlite3_sql(s));
}

int store_touches_for_lead(struct store *st, int64_t lead_id, store_touch_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCHES_FOR_LEAD);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	return store_touch_walk(st, s, cb, arg);
}

int store_status(struct store *st, struct store_status *out)
{
	sqlite3_stmt *s = store_stmt(st, STMT_STATUS);
	if (!s)
		return DRIP_ESTORE;
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_reset(s);
		return store_fail(st, "status");
	}
	out->leads = sqlite3_column_int64(s, 0);
	out->active_enrolments = sqlite3_column_int64(s, 1);
	out->pending = sqlite3_column_int64(s, 2);
	out->queued = sqlite3_column_int64(s, 3);
	out->sending = sqlite3_column_int64(s, 4);
	out->sent = sqlite3_column_int64(s, 5);
	out->failed = sqlite3_column_int64(s, 6);
	out->uncertain = sqlite3_column_int64(s, 7);
	out->next_due = sqlite3_column_int64(s, 8);
	out->anonymised = sqlite3_column_int64(s, 9);
	sqlite3_reset(s);
	return 0;
}

int store_lead_set_status(struct store *st, int64_t lead_id, const char *status, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_SET_STATUS);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	store_bind_text(s, 2, status);
	sqlite3_bind_int64(s, 3, now);
	return store_touch_update(st, s);
}

int store_lead_add_score(struct store *st, int64_t lead_id, int64_t delta, int64_t now,
			 int64_t *score)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_ADD_SCORE);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	sqlite3_bind_int64(s, 2, delta);
	sqlite3_bind_int64(s, 3, now);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*score = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "score");
}

int store_lead_set_score(struct store *st, int64_t lead_id, double score, int64_t at,
			 int64_t fall_at)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_SET_SCORE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	sqlite3_bind_double(s, 2, score);
	sqlite3_bind_int64(s, 3, at);
	if (fall_at > 0)
		sqlite3_bind_int64(s, 4, fall_at);
	else
		sqlite3_bind_null(s, 4);
	return store_touch_update(st, s);
}

int store_lead_next_fall(struct store *st, int64_t *at)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_NEXT_FALL);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	rc = sqlite3_step(s);
	bool none = rc != SQLITE_ROW || sqlite3_column_type(s, 0) == SQLITE_NULL;
	if (!none)
		*at = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_ROW)
		return store_fail(st, "next fall");
	return none ? DRIP_ENOT_FOUND : 0;
}

int store_leads_falling(struct store *st, int64_t now, int64_t *ids, size_t max, size_t *n)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEADS_FALLING);
	int rc;
	*n = 0;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, (int64_t)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		ids[(*n)++] = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "falling leads");
}

int store_lead_has_event(struct store *st, int64_t lead_id, const char *kind, const char *sequence,
			 const char *step, bool *found)
{
	sqlite3_stmt *s = store_stmt(st, sequence ? STMT_LEAD_HAS_STEP_EVENT : STMT_LEAD_HAS_EVENT);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	store_bind_text(s, 2, kind);
	if (sequence) {
		store_bind_text(s, 3, sequence);
		store_bind_text(s, 4, step);
	}
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	*found = rc == SQLITE_ROW;
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_fail(st, "has event");
}

int store_touch_thread_root(struct store *st, int64_t enrolment_id, char **message_id,
			    char **subject)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_THREAD_ROOT);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, enrolment_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*message_id = store_col_text(s, 0);
		*subject = store_col_text(s, 1);
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "thread root");
}

int store_touch_find(struct store *st, int64_t lead_id, const char *sequence, const char *step,
		     struct touch *out)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_FIND);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	store_bind_text(s, 2, sequence);
	store_bind_text(s, 3, step);
	return store_touch_one(st, s, out);
}

int store_touch_next_for_lead(struct store *st, int64_t lead_id, struct touch *out)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_NEXT_FOR_LEAD);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	return store_touch_one(st, s, out);
}

int store_link_add(struct store *st, int64_t touch_id, int64_t index, const char *url,
		   const char *tag)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LINK_ADD);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, touch_id);
	sqlite3_bind_int64(s, 2, index);
	store_bind_text(s, 3, url);
	store_bind_text(s, 4, tag);
	return store_exec_stmt(st, s);
}

int store_pending_steps(struct store *st, store_step_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_PENDING_STEPS);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (cb(arg, (const char *)sqlite3_column_text(s, 0),
		       (const char *)sqlite3_column_text(s, 1), sqlite3_column_int64(s, 2)))
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_fail(st, "pending steps");
}

int store_stats_funnel(struct store *st, store_funnel_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_STATS_FUNNEL);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(s, 0),
		   (const char *)sqlite3_column_text(s, 1), sqlite3_column_int64(s, 2));
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "funnel");
}

int store_stats_steps(struct store *st, store_step_stats_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_STATS_STEPS);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_step_stats row = {
			.sequence = (const char *)sqlite3_column_text(s, 0),
			.step = (const char *)sqlite3_column_text(s, 1),
			.variant = sqlite3_column_int64(s, 2),
			.sent = sqlite3_column_int64(s, 4),
			.opened = sqlite3_column_int64(s, 5),
			.clicked = sqlite3_column_int64(s, 6),
			.replied = sqlite3_column_int64(s, 7),
			.bounced = sqlite3_column_int64(s, 8),
			.unsubscribed = sqlite3_column_int64(s, 9),
		};
		cb(arg, &row);
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "step stats");
}

int store_suppress(struct store *st, const char *address, const char *reason, const char *source,
		   int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SUPPRESS);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, address);
	store_bind_text(s, 2, reason);
	store_bind_text(s, 3, source);
	sqlite3_bind_int64(s, 4, now);
	return store_exec_stmt(st, s);
}

int store_suppressed(struct store *st, const char *address, char *reason, size_t reasonlen)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SUPPRESSED);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, address);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && reason)
		snprintf(reason, reasonlen, "%s", (const char *)sqlite3_column_text(s, 0));
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc != SQLITE_DONE)
		return store_fail(st, "suppressed");
	/* A forgotten address is kept only as its keyed hash. */
	char hashed[STORE_HASH_LEN];
	if (!st->hash_keylen || store_address_hash(st, address, hashed) != 0 ||
	    !(s = store_stmt(st, STMT_SUPPRESSED_HASH)))
		return DRIP_ENOT_FOUND;
	store_bind_text(s, 1, hashed);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && reason)
		snprintf(reason, reasonlen, "%s", (const char *)sqlite3_column_text(s, 0));
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "suppressed");
}

int store_touches_in_state(struct store *st, const char *state, size_t max, store_touch_cb cb,
			   void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCHES_IN_STATE);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, state);
	sqlite3_bind_int64(s, 2, (int64_t)max);
	return store_touch_walk(st, s, cb, arg);
}

int store_touch_resolve(struct store *st, int64_t id, const char *state, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_RESOLVE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	store_bind_text(s, 2, state);
	sqlite3_bind_int64(s, 3, now);
	return store_touch_update(st, s);
}

int store_touch_postpone(struct store *st, int64_t id, int64_t due_at, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_POSTPONE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, due_at);
	sqlite3_bind_int64(s, 3, now);
	return store_touch_update(st, s);
}

int store_lead_last_sent(struct store *st, int64_t lead_id, int64_t *at)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_LAST_SENT);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	rc = sqlite3_step(s);
	*at = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : store_fail(st, "last sent");
}

int store_sends_each(struct store *st, int64_t since, store_send_cb cb, void *arg)
{
	static const enum store_stmt_id ids[] = { STMT_SENDS_SINCE, STMT_SENDING_SINCE };
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		sqlite3_stmt *s = store_stmt(st, ids[i]);
		int rc;
		if (!s)
			return DRIP_ESTORE;
		sqlite3_bind_int64(s, 1, since);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW)
			cb(arg, (const char *)sqlite3_column_text(s, 0),
			   (const char *)sqlite3_column_text(s, 1), sqlite3_column_int64(s, 2));
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			return store_fail(st, "recent sends");
	}
	return 0;
}

int store_lead_update(struct store *st, const struct lead *lead, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_UPDATE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead->id);
	store_bind_text(s, 2, lead->first_name);
	store_bind_text(s, 3, lead->last_name);
	store_bind_text(s, 4, lead->company);
	store_bind_text(s, 5, lead->title);
	store_bind_text(s, 6, lead->tz);
	store_bind_text(s, 7, lead->tags);
	store_bind_text(s, 8, lead->attrs);
	sqlite3_bind_int64(s, 9, now);
	return store_touch_update(st, s);
}

int store_link_get(struct store *st, int64_t touch_id, int64_t index, char **url, char **tag)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LINK_GET);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, touch_id);
	sqlite3_bind_int64(s, 2, index);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*url = xstrdup((const char *)sqlite3_column_text(s, 0));
		*tag = xstrdup((const char *)sqlite3_column_text(s, 1));
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "link get");
}

int store_touch_hit(struct store *st, int64_t touch_id, int64_t *lead_id, int64_t *sent_at)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_HIT);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, touch_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*lead_id = sqlite3_column_int64(s, 0);
		*sent_at = sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "touch hit");
}

int store_touch_has_human(struct store *st, int64_t touch_id, const char *kind, bool *found)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_HAS_HUMAN);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, touch_id);
	store_bind_text(s, 2, kind);
	rc = sqlite3_step(s);
	*found = rc == SQLITE_ROW;
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_fail(st, "touch has human");
}

int store_stage_counts(struct store *st, store_stage_count_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_STAGE_COUNTS);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1));
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "stage counts");
}

int store_queue_depth(struct store *st, int64_t out[4])
{
	sqlite3_stmt *s = store_stmt(st, STMT_QUEUE_DEPTH);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	rc = sqlite3_step(s);
	for (int i = 0; i < 4; i++)
		out[i] = rc == SQLITE_ROW ? sqlite3_column_int64(s, i) : 0;
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : store_fail(st, "queue depth");
}

int store_last_error(struct store *st, char *msg, size_t msglen)
{
	int rc = st->last_rc & 0xff;
	if (msglen)
		snprintf(msg, msglen, "%s", st->last_err[0] ? st->last_err : "no error");
	if (rc == SQLITE_FULL)
		return STORE_FAIL_FULL;
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return STORE_FAIL_BUSY;
	if (rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN || rc == SQLITE_READONLY)
		return STORE_FAIL_IO;
	return rc ? STORE_FAIL_OTHER : STORE_FAIL_NONE;
}

int store_write_probe(struct store *st, int64_t now, int64_t *requeued)
{
	sqlite3_stmt *s;
	int rc;
	*requeued = 0;
	/* With checkpoints in the pool the WAL may hold up to STORE_WAL_MAX_PAGES: on a full
	 * disk that space is given back here, once the database file can grow again, or the
	 * probe's small write fits while every real commit fails. */
	if (st->ckpt)
		store_wal_truncate(st);
	store_error_clear(st);
	if ((rc = store_begin(st)))
		return rc;
	if ((rc = store_setting_set(st, "write_probe", now)))
		goto fail;
	if (!(s = store_stmt(st, STMT_RECOVER_QUEUED)) || (rc = store_exec_stmt(st, s)))
		goto fail;
	*requeued = sqlite3_changes(st->db);
	return store_commit(st);
fail:
	store_rollback(st);
	return rc ? rc : DRIP_ESTORE;
}

void store_error_clear(struct store *st)
{
	st->last_rc = 0;
	st->last_err[0] = '\0';
}

/* ---- control: pages, suppression list, forgetting, backups --------------------------- */

int store_set_hash_key(struct store *st, const void *key, size_t len)
{
	if (len == 0 || len > sizeof(st->hash_key))
		return DRIP_EINVALID;
	memcpy(st->hash_key, key, len);
	st->hash_keylen = len;
	EVP_MAC_CTX_free(st->hmac);
	st->hmac = NULL;
	return 0;
}

int store_address_hash(struct store *st, const char *address, char out[STORE_HASH_LEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;
	size_t len = strlen(address);
	if (!st->hash_keylen || len > 254)
		return DRIP_EINVALID;
	char lower[256];
	for (size_t i = 0; i <= len; i++)
		lower[i] = (char)tolower((unsigned char)address[i]);
	if (!st->hmac) {
		OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
									 (char *)"SHA256", 0),
					OSSL_PARAM_construct_end() };
		EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
		st->hmac = alg ? EVP_MAC_CTX_new(alg) : NULL;
		EVP_MAC_free(alg);
		if (!st->hmac || !EVP_MAC_init(st->hmac, st->hash_key, st->hash_keylen, params)) {
			EVP_MAC_CTX_free(st->hmac);
			st->hmac = NULL;
			return DRIP_EINVALID;
		}
	} else if (!EVP_MAC_init(st->hmac, NULL, 0, NULL)) { /* again, under the same key */
		return DRIP_EINVALID;
	}
	if (!EVP_MAC_update(st->hmac, (const unsigned char *)lower, len) ||
	    !EVP_MAC_final(st->hmac, mac, &maclen, sizeof(mac)) || maclen != 32)
		return DRIP_EINVALID;
	memcpy(out, "hmac:", 5);
	for (unsigned i = 0; i < maclen; i++) {
		out[5 + 2 * i] = hex[mac[i] >> 4];
		out[6 + 2 * i] = hex[mac[i] & 15];
	}
	out[5 + 2 * maclen] = '\0';
	return 0;
}

int store_leads_page(struct store *st, int64_t after_id, const char *stage, const char *status,
		     size_t max, store_lead_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEADS_PAGE);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, after_id);
	store_bind_text(s, 2, stage);
	store_bind_text(s, 3, status);
	sqlite3_bind_int64(s, 4, (int64_t)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct lead l;
		store_lead_fill(s, &l);
		int stop = cb(arg, &l);
		store_lead_clear(&l);
		if (stop)
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_fail(st, "leads page");
}

int store_events_page(struct store *st, int64_t after_id, int64_t since, size_t max,
		      store_event_row_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_EVENTS_PAGE);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, after_id);
	sqlite3_bind_int64(s, 2, since);
	sqlite3_bind_int64(s, 3, (int64_t)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_event ev = {
			.id = sqlite3_column_int64(s, 0),
			.lead_id = sqlite3_column_int64(s, 1),
			.touch_id = sqlite3_column_int64(s, 2),
			.kind = (const char *)sqlite3_column_text(s, 3),
			.at = sqlite3_column_int64(s, 4),
			.detail = (const char *)sqlite3_column_text(s, 5),
		};
		if (cb(arg, &ev, (const char *)sqlite3_column_text(s, 6),
		       (const char *)sqlite3_column_text(s, 7),
		       (const char *)sqlite3_column_text(s, 8)))
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_fail(st, "events page");
}

int store_unsuppress(struct store *st, const char *address)
{
	sqlite3_stmt *s = store_stmt(st, STMT_UNSUPPRESS);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, address);
	if ((rc = store_exec_stmt(st, s)))
		return rc;
	return sqlite3_changes(st->db) > 0 ? 0 : DRIP_ENOT_FOUND;
}

static void store_suppression_fill(sqlite3_stmt *s, struct store_suppression *out)
{
	out->address = (const char *)sqlite3_column_text(s, 0);
	out->reason = (const char *)sqlite3_column_text(s, 1);
	out->source = (const char *)sqlite3_column_text(s, 2);
	out->at = sqlite3_column_int64(s, 3);
}

int store_suppression_get(struct store *st, const char *address, store_suppression_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SUPPRESSION_GET);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, address);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && cb) {
		struct store_suppression e;
		store_suppression_fill(s, &e);
		cb(arg, &e);
	}
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "suppression");
}

int store_suppressions(struct store *st, store_suppression_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SUPPRESSIONS);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_suppression e;
		store_suppression_fill(s, &e);
		if (cb(arg, &e))
			break;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_fail(st, "suppressions");
}

static int store_erase_reason_cb(void *arg, const struct store_suppression *e)
{
	snprintf(arg, 64, "%s", e->reason);
	return 0;
}

/*
 * The one eraser of a lead's personal data, for `lead forget` and for retention.anonymise.
 * Both erase the profile, event details, message subjects and errors, and links (a stored
 * URL may carry a merge field). They differ in what must stay:
 * - forget ends the enrolment, skips pending touches, marks the lead `forgotten`, deletes its
 *   consent record and pending signups, and suppresses the address's hash as "forgotten"
 *   (the person asked to be erased: never mail them again);
 * - anonymise (a lead with nothing left to send) keeps the stage, status, score and tags, so
 *   stats and the funnel keep their totals, and the consent record minus its IP addresses; an
 *   address that was on the suppression list moves there as its hash with its reason, so the
 *   opt-out still wins when the address comes back; an address that was not stays free to
 *   sign up or be imported again as a new lead.
 */
static int store_lead_erase(struct store *st, const struct lead *lead, bool forget,
			    const char *reason, int64_t now)
{
	char hashed[STORE_HASH_LEN];
	sqlite3_stmt *s;
	int rc;
	if ((rc = store_address_hash(st, lead->email, hashed)))
		return rc;
	if (forget && (rc = store_enrolment_exit_active(st, lead->id, "forgotten", now)))
		return rc;
	const enum store_stmt_id steps[] = { STMT_LINKS_FORGET, STMT_TOUCHES_FORGET,
					     STMT_EVENTS_FORGET,
					     forget ? STMT_LEAD_FORGET : STMT_LEAD_ANONYMISE };
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (!(s = store_stmt(st, steps[i])))
			return DRIP_ESTORE;
		sqlite3_bind_int64(s, 1, lead->id);
		if (steps[i] != STMT_LINKS_FORGET && steps[i] != STMT_EVENTS_FORGET)
			sqlite3_bind_int64(s, 2, now);
		if ((rc = store_exec_stmt(st, s)))
			return rc;
	}
	if (!forget) {
		char was[64] = "";
		rc = store_suppression_get(st, lead->email, store_erase_reason_cb, was);
		if (rc && rc != DRIP_ENOT_FOUND)
			return rc;
		if (rc == 0 && ((rc = store_unsuppress(st, lead->email)) ||
				(rc = store_suppress(st, hashed, was, "anonymise", now))))
			return rc;
		s = store_prep(st, "UPDATE consents SET address = '', confirm_address = '' "
				   "WHERE lead_id = ?1");
		if (s)
			sqlite3_bind_int64(s, 1, lead->id);
		return store_run(st, s);
	}
	/* The plain address leaves the suppression list; its hash keeps the lead unmailable. */
	if ((rc = store_unsuppress(st, lead->email)) && rc != DRIP_ENOT_FOUND)
		return rc;
	if ((rc = store_unsuppress(st, hashed)) && rc != DRIP_ENOT_FOUND)
		return rc;
	if ((rc = store_signup_forget(st, lead->id, lead->email)))
		return rc;
	return store_suppress(st, hashed, reason, "forget", now);
}

int store_lead_forget(struct store *st, const struct lead *lead, const char *reason, int64_t now)
{
	return store_lead_erase(st, lead, true, reason, now);
}

int store_touches_due(struct store *st, size_t max, store_touch_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCHES_DUE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, (int64_t)max);
	return store_touch_walk(st, s, cb, arg);
}

struct store_backup {
	struct store *st;
	sqlite3 *dest;
	sqlite3_backup *b;
	char *path;
};

struct store_backup *store_backup_begin(struct store *st, const char *path, char *err,
					size_t errlen)
{
	struct store_backup *bk = xcalloc(1, sizeof(*bk));
	bk->st = st;
	bk->path = xstrdup(path);
	if (sqlite3_open_v2(path, &bk->dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		errf(err, errlen, DRIP_EIO, "cannot create %s: %s", path,
		     bk->dest ? sqlite3_errmsg(bk->dest) : "out of memory");
		goto fail;
	}
	if (!(bk->b = sqlite3_backup_init(bk->dest, "main", st->db, "main"))) {
		errf(err, errlen, DRIP_EIO, "cannot back up into %s: %s", path,
		     sqlite3_errmsg(bk->dest));
		goto fail;
	}
	return bk;
fail:
	sqlite3_close(bk->dest);
	unlink(bk->path);
	free(bk->path);
	free(bk);
	return NULL;
}

int store_backup_step(struct store_backup *bk, int pages, char *err, size_t errlen)
{
	int rc = sqlite3_backup_step(bk->b, pages);
	if (rc == SQLITE_DONE)
		return 1;
	if (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return 0;
	return errf(err, errlen, DRIP_EIO, "backup into %s failed: %s", bk->path,
		    sqlite3_errstr(rc));
}

void store_backup_progress(const struct store_backup *bk, int *remaining, int *total)
{
	*remaining = sqlite3_backup_remaining(bk->b);
	*total = sqlite3_backup_pagecount(bk->b);
}

int store_backup_end(struct store_backup *bk, bool done)
{
	int rc = sqlite3_backup_finish(bk->b) == SQLITE_OK ? 0 : DRIP_EIO;
	if (sqlite3_close(bk->dest) != SQLITE_OK)
		rc = DRIP_EIO;
	if (!done || rc)
		unlink(bk->path);
	free(bk->path);
	free(bk);
	return done ? rc : 0;
}

int store_inbox_state(struct store *st, const char *mailbox, int64_t *uidvalidity,
		      int64_t *last_uid, int64_t *unmatched)
{
	sqlite3_stmt *s = store_stmt(st, STMT_INBOX_STATE_GET);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, mailbox);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*uidvalidity = sqlite3_column_int64(s, 0);
		*last_uid = sqlite3_column_int64(s, 1);
		if (unmatched)
			*unmatched = sqlite3_column_int64(s, 2);
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "inbox state");
}

int store_inbox_state_set(struct store *st, const char *mailbox, int64_t uidvalidity,
			  int64_t last_uid)
{
	sqlite3_stmt *s = store_stmt(st, STMT_INBOX_STATE_SET);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, mailbox);
	sqlite3_bind_int64(s, 2, uidvalidity);
	sqlite3_bind_int64(s, 3, last_uid);
	return store_exec_stmt(st, s);
}

int store_inbox_unmatched(struct store *st, const char *mailbox)
{
	sqlite3_stmt *s = store_stmt(st, STMT_INBOX_UNMATCHED);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, mailbox);
	return store_exec_stmt(st, s);
}

int store_touch_by_message_id(struct store *st, const char *message_id, struct touch *out)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_BY_MESSAGE_ID);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, message_id);
	return store_touch_one(st, s, out);
}

int store_touch_set_due(struct store *st, int64_t id, int64_t due_at, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_SET_DUE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, due_at);
	sqlite3_bind_int64(s, 3, now);
	return store_touch_update(st, s);
}

int store_lead_count_events(struct store *st, int64_t lead_id, const char *kind, int64_t *n)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEAD_COUNT_EVENTS);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	store_bind_text(s, 2, kind);
	int rc = sqlite3_step(s);
	*n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : store_fail(st, "count events");
}

int store_leads_by_domain(struct store *st, const char *domain, int64_t *ids, size_t max, size_t *n)
{
	sqlite3_stmt *s = store_stmt(st, STMT_LEADS_BY_DOMAIN);
	struct buf pat;
	int rc;
	*n = 0;
	if (!s)
		return DRIP_ESTORE;
	buf_init(&pat);
	buf_adds(&pat, "%@");
	for (const char *p = domain; *p; p++) {
		if (*p == '%' || *p == '_' || *p == '\\')
			buf_addc(&pat, '\\');
		buf_addc(&pat, *p);
	}
	store_bind_text(s, 1, pat.data);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < max)
		ids[(*n)++] = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	buf_free(&pat);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_fail(st, "leads by domain");
}

int store_touch_due_count(struct store *st, int64_t now, int64_t cap, int64_t *count)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_DUE_COUNT);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, cap);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*count = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : store_fail(st, "due count");
}

struct store *store_copy(struct store *src, char *err, size_t errlen)
{
	struct store *copy = store_open(":memory:", err, errlen);
	sqlite3_backup *b;
	if (!copy)
		return NULL;
	if (!(b = sqlite3_backup_init(copy->db, "main", src->db, "main")) ||
	    sqlite3_backup_step(b, -1) != SQLITE_DONE) {
		errf(err, errlen, DRIP_ESTORE, "cannot copy the database: %s",
		     sqlite3_errmsg(copy->db));
		sqlite3_backup_finish(b);
		store_close(copy);
		return NULL;
	}
	sqlite3_backup_finish(b);
	memcpy(copy->hash_key, src->hash_key, sizeof(copy->hash_key));
	copy->hash_keylen = src->hash_keylen;
	return copy;
}

int store_touch_queue(struct store *st, int64_t id, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_MARK_QUEUED);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, now);
	return store_touch_update(st, s);
}

int store_events_after(struct store *st, int64_t after, size_t max, store_event_cb cb, void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_EVENTS_AFTER);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, after);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_event ev = {
			.id = sqlite3_column_int64(s, 0),
			.lead_id = sqlite3_column_int64(s, 1),
			.touch_id = sqlite3_column_int64(s, 2),
			.kind = (const char *)sqlite3_column_text(s, 3),
			.at = sqlite3_column_int64(s, 4),
			.detail = (const char *)sqlite3_column_text(s, 5),
		};
		if (cb(arg, &ev)) {
			sqlite3_reset(s);
			return 0;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "events after");
}

int store_event_max_id(struct store *st, int64_t *id)
{
	sqlite3_stmt *s = store_stmt(st, STMT_EVENT_MAX_ID);
	if (!s)
		return DRIP_ESTORE;
	int rc = sqlite3_step(s);
	*id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : store_fail(st, "event max id");
}

int store_hook_enqueue(struct store *st, const char *hook, const char *delivery_id,
		       int64_t event_id, int64_t lead_id, const char *kind, const char *payload,
		       int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HOOK_ENQUEUE);
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, hook);
	store_bind_text(s, 2, delivery_id);
	sqlite3_bind_int64(s, 3, event_id);
	sqlite3_bind_int64(s, 4, lead_id);
	store_bind_text(s, 5, kind);
	store_bind_text(s, 6, payload);
	sqlite3_bind_int64(s, 7, now);
	return store_exec_stmt(st, s);
}

int store_hook_due(struct store *st, const char *hook, int64_t now, size_t max, store_hook_cb cb,
		   void *arg)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HOOK_DUE);
	int rc;
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, hook);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_hook_delivery dl = {
			.id = sqlite3_column_int64(s, 0),
			.hook = (const char *)sqlite3_column_text(s, 1),
			.delivery_id = (const char *)sqlite3_column_text(s, 2),
			.event_id = sqlite3_column_int64(s, 3),
			.lead_id = sqlite3_column_int64(s, 4),
			.kind = (const char *)sqlite3_column_text(s, 5),
			.payload = (const char *)sqlite3_column_text(s, 6),
			.created_at = sqlite3_column_int64(s, 7),
			.next_at = sqlite3_column_int64(s, 8),
			.attempts = sqlite3_column_int64(s, 9),
		};
		if (cb(arg, &dl)) {
			sqlite3_reset(s);
			return 0;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "hook due");
}

int store_hook_next_due(struct store *st, int64_t after, int64_t *at)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HOOK_NEXT_DUE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, after);
	int rc = sqlite3_step(s);
	bool found = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL;
	*at = found ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW)
		return store_fail(st, "hook next due");
	return found ? 0 : DRIP_ENOT_FOUND;
}

int store_hook_done(struct store *st, int64_t id)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HOOK_DONE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	return store_exec_stmt(st, s);
}

int store_hook_retry(struct store *st, int64_t id, int64_t next_at, const char *error)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HOOK_RETRY);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, next_at);
	store_bind_text(s, 3, error);
	return store_exec_stmt(st, s);
}

int store_hook_count(struct store *st, int64_t *outstanding, int64_t *retrying)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HOOK_COUNT);
	if (!s)
		return DRIP_ESTORE;
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*outstanding = sqlite3_column_int64(s, 0);
		*retrying = sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : store_fail(st, "hook count");
}

/* ---- signups and consent records (double opt-in) ------------------------------------ */

/* These run a few times per signup, far from any hot path: prepared per call. */
static sqlite3_stmt *store_prep(struct store *st, const char *sql)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		store_fail(st, sql);
		return NULL;
	}
	return s;
}

static int store_run(struct store *st, sqlite3_stmt *s)
{
	if (!s)
		return DRIP_ESTORE;
	int rc = store_exec_stmt(st, s);
	sqlite3_finalize(s);
	return rc;
}

int store_signup_add(struct store *st, const struct store_signup *in, int64_t *id)
{
	sqlite3_stmt *s = store_prep(st, "INSERT INTO signups (email, first_name, last_name, "
					 "company, tags, form, consent, address, at, expires_at) "
					 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, in->email);
	store_bind_text(s, 2, in->first_name);
	store_bind_text(s, 3, in->last_name);
	store_bind_text(s, 4, in->company);
	store_bind_text(s, 5, in->tags && *in->tags ? in->tags : "[]");
	store_bind_text(s, 6, in->form);
	store_bind_text(s, 7, in->consent);
	store_bind_text(s, 8, in->address);
	sqlite3_bind_int64(s, 9, in->at);
	sqlite3_bind_int64(s, 10, in->expires_at);
	int rc = store_run(st, s);
	if (rc == 0 && id)
		*id = sqlite3_last_insert_rowid(st->db);
	return rc;
}

static void store_signup_row(sqlite3_stmt *s, struct store_signup *out)
{
	out->id = sqlite3_column_int64(s, 0);
	out->email = store_col_text(s, 1);
	out->first_name = store_col_text(s, 2);
	out->last_name = store_col_text(s, 3);
	out->company = store_col_text(s, 4);
	out->tags = store_col_text(s, 5);
	out->form = store_col_text(s, 6);
	out->consent = store_col_text(s, 7);
	out->address = store_col_text(s, 8);
	out->at = sqlite3_column_int64(s, 9);
	out->expires_at = sqlite3_column_int64(s, 10);
	out->mail_state = sqlite3_column_int64(s, 11);
}

#define STORE_SIGNUP_COLS                                                               \
	"id, email, first_name, last_name, company, tags, form, consent, address, at, " \
	"expires_at, mail_state"

int store_signup_get(struct store *st, int64_t id, struct store_signup *out)
{
	sqlite3_stmt *s = store_prep(st, "SELECT " STORE_SIGNUP_COLS " FROM signups WHERE id = ?1");
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		store_signup_row(s, out);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "signup get");
}

int store_signup_pending(struct store *st, const char *email, int64_t now, bool *found)
{
	sqlite3_stmt *s = store_prep(st, "SELECT 1 FROM signups WHERE email = ?1 AND "
					 "expires_at > ?2 LIMIT 1");
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, email);
	sqlite3_bind_int64(s, 2, now);
	int rc = sqlite3_step(s);
	*found = rc == SQLITE_ROW;
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_fail(st, "signup pending");
}

int store_signup_mail_due(struct store *st, size_t max, store_signup_cb cb, void *arg)
{
	sqlite3_stmt *s = store_prep(st, "SELECT " STORE_SIGNUP_COLS " FROM signups WHERE "
					 "mail_state = 0 ORDER BY id LIMIT ?1");
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, (int64_t)max);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_signup row;
		store_signup_row(s, &row);
		cb(arg, &row);
		store_signup_clear(&row);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : store_fail(st, "signup mail due");
}

int store_signup_mail_state(struct store *st, int64_t id, int64_t state)
{
	sqlite3_stmt *s = store_prep(st, "UPDATE signups SET mail_state = ?2 WHERE id = ?1");
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, state);
	return store_run(st, s);
}

int store_signup_remove(struct store *st, const char *email)
{
	sqlite3_stmt *s = store_prep(st, "DELETE FROM signups WHERE email = ?1");
	if (!s)
		return DRIP_ESTORE;
	store_bind_text(s, 1, email);
	return store_run(st, s);
}

int store_signup_delete(struct store *st, int64_t id)
{
	sqlite3_stmt *s = store_prep(st, "DELETE FROM signups WHERE id = ?1");
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	return store_run(st, s);
}

int store_signup_expire(struct store *st, int64_t now, size_t max, int64_t *removed,
			int64_t *next_at)
{
	sqlite3_stmt *s = store_prep(st, "DELETE FROM signups WHERE id IN (SELECT id FROM signups "
					 "WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)");
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, (int64_t)max);
	int rc = store_run(st, s);
	if (rc)
		return rc;
	*removed = sqlite3_changes(st->db);
	if (!(s = store_prep(st, "SELECT min(expires_at) FROM signups")))
		return DRIP_ESTORE;
	rc = sqlite3_step(s);
	*next_at = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : store_fail(st, "signup next expiry");
}

void store_signup_clear(struct store_signup *s)
{
	free(s->email);
	free(s->first_name);
	free(s->last_name);
	free(s->company);
	free(s->tags);
	free(s->form);
	free(s->consent);
	free(s->address);
	memset(s, 0, sizeof(*s));
}

int store_consent_set(struct store *st, int64_t lead_id, const struct store_signup *su,
		      const char *confirm_address, int64_t now)
{
	sqlite3_stmt *s = store_prep(st, "INSERT OR REPLACE INTO consents (lead_id, form, consent, "
					 "address, signed_up_at, confirmed_at, confirm_address) "
					 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	store_bind_text(s, 2, su->form);
	store_bind_text(s, 3, su->consent);
	store_bind_text(s, 4, su->address);
	sqlite3_bind_int64(s, 5, su->at);
	sqlite3_bind_int64(s, 6, now);
	store_bind_text(s, 7, confirm_address);
	return store_run(st, s);
}

int store_consent_get(struct store *st, int64_t lead_id, struct store_consent *out)
{
	sqlite3_stmt *s = store_prep(st, "SELECT form, consent, address, signed_up_at, "
					 "confirmed_at, confirm_address FROM consents WHERE "
					 "lead_id = ?1");
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		out->form = store_col_text(s, 0);
		out->consent = store_col_text(s, 1);
		out->address = store_col_text(s, 2);
		out->signed_up_at = sqlite3_column_int64(s, 3);
		out->confirmed_at = sqlite3_column_int64(s, 4);
		out->confirm_address = store_col_text(s, 5);
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "consent get");
}

void store_consent_clear(struct store_consent *c)
{
	free(c->form);
	free(c->consent);
	free(c->address);
	free(c->confirm_address);
	memset(c, 0, sizeof(*c));
}

int store_signup_forget(struct store *st, int64_t lead_id, const char *email)
{
	sqlite3_stmt *s = store_prep(st, "DELETE FROM consents WHERE lead_id = ?1");
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	int rc = store_run(st, s);
	return rc ? rc : store_signup_remove(st, email);
}

int store_checkpoint(struct store *st)
{
	/* The WAL's frames may hold erased rows. Outside a transaction only. */
	if (store_wal_truncate(st) != SQLITE_OK)
		return store_fail(st, "wal_checkpoint(TRUNCATE)");
	return 0;
}

/* ---- retention: fold old events into per-step daily counts ------------------------- */

int store_retention_step(struct store *st, int64_t cutoff, size_t max, int64_t *folded,
			 int64_t *removed)
{
	static const char *const sql[] = {
		/* 1. the flags of up to max touches sent before the cutoff, per day and step */
		"CREATE TEMP TABLE IF NOT EXISTS fold_batch (id INTEGER PRIMARY KEY);"
		"DELETE FROM fold_batch;",
		"INSERT INTO fold_batch SELECT id FROM touches WHERE folded = 0 AND sent_at IS NOT "
		"NULL AND sent_at < ?1 ORDER BY folded, sent_at LIMIT ?2",
		"INSERT INTO step_counts (day, sequence, step, variant, step_index, opened, "
		"clicked,"
		" replied, bounced, unsubscribed) SELECT t.sent_at / 86400, t.sequence, t.step, "
		"t.variant, t.step_index,"
		" EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND e.kind IN ('open', "
		"'click') AND coalesce(e.confidence, 1) >= 0.5),"
		" EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND e.kind = 'click' AND "
		"coalesce(e.confidence, 1) >= 0.5),"
		" EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND e.kind = 'reply'),"
		" EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND e.kind IN ('bounce', "
		"'soft_bounce')),"
		" EXISTS (SELECT 1 FROM events e WHERE e.touch_id = t.id AND e.kind = "
		"'unsubscribe')"
		" FROM touches t WHERE t.id IN (SELECT id FROM fold_batch) AND t.state = 'sent' "
		"ORDER BY 1, 2, 3, 4"
		" ON CONFLICT (day, sequence, step, variant) DO UPDATE SET"
		" opened = opened + excluded.opened, clicked = clicked + excluded.clicked,"
		" replied = replied + excluded.replied, bounced = bounced + excluded.bounced,"
		" unsubscribed = unsubscribed + excluded.unsubscribed",
		"UPDATE touches SET folded = 1 WHERE id IN (SELECT id FROM fold_batch)",
		/* 2. up to max old events whose touch is folded (or that have none) */
		"DELETE FROM events WHERE id IN (SELECT e.id FROM events e LEFT JOIN touches t ON "
		"t.id = e.touch_id WHERE e.at < ?1 AND (t.id IS NULL OR t.folded = 1) ORDER BY "
		"e.at LIMIT ?2)",
	};
	int rc;
	*folded = *removed = 0;
	if ((rc = store_begin(st)))
		return rc;
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		if (i == 0) {
			if (sqlite3_exec(st->db, sql[0], NULL, NULL, NULL) != SQLITE_OK) {
				rc = store_fail(st, sql[0]);
				break;
			}
			continue;
		}
		sqlite3_stmt *s = store_prep(st, sql[i]);
		if (!s) {
			rc = DRIP_ESTORE;
			break;
		}
		if (sqlite3_bind_parameter_count(s) >= 1)
			sqlite3_bind_int64(s, 1, cutoff);
		if (sqlite3_bind_parameter_count(s) >= 2)
			sqlite3_bind_int64(s, 2, (int64_t)max);
		if ((rc = store_run(st, s)))
			break;
		if (i == 3)
			*folded = sqlite3_changes(st->db);
		if (i == 4)
			*removed = sqlite3_changes(st->db);
	}
	if (rc) {
		store_rollback(st);
		return rc;
	}
	return store_commit(st);
}

int store_retention_oldest(struct store *st, int64_t *at)
{
	sqlite3_stmt *s = store_prep(st, "SELECT min(coalesce((SELECT min(sent_at) FROM touches "
					 "WHERE folded = 0 AND sent_at IS NOT NULL), 1e18), "
					 "coalesce((SELECT min(at) FROM events), 1e18))");
	if (!s)
		return DRIP_ESTORE;
	int rc = sqlite3_step(s);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_finalize(s);
	*at = v >= (int64_t)1e18 ? 0 : v;
	return rc == SQLITE_ROW ? 0 : store_fail(st, "retention oldest");
}

/* ---- retention: anonymising leads whose journey ended long ago ---------------------- */

int store_anonymise_step(struct store *st, int64_t after, int64_t cutoff, size_t max, int64_t now,
			 struct store_anonymise_turn *out)
{
	/* A lead is done when nothing is left to send it and nothing waits on it: not paused or
	 * forgotten, no active enrolment, no touch on its way, no score fall to come. Its last
	 * activity is the latest of its own change, a touch's and an event's. */
	sqlite3_stmt *s = store_prep(
		st,
		"SELECT l.id, l.email, l.anonymised_at IS NULL AND l.status NOT IN ('paused', "
		"'forgotten') AND l.fall_at IS NULL AND NOT EXISTS (SELECT 1 FROM enrolments e "
		"WHERE e.lead_id = l.id AND e.state = 'active') AND NOT EXISTS (SELECT 1 FROM "
		"touches t WHERE t.lead_id = l.id AND t.state IN ('pending', 'queued', "
		"'sending', 'deferred', 'uncertain')), max(l.updated_at, coalesce((SELECT "
		"max(t.updated_at) FROM touches t WHERE t.lead_id = l.id), 0), coalesce((SELECT "
		"max(v.at) FROM events v WHERE v.lead_id = l.id), 0)) FROM leads l WHERE l.id > "
		"?1 ORDER BY l.id LIMIT ?2");
	struct lead *due = NULL;
	size_t ndue = 0;
	int rc;
	memset(out, 0, sizeof(*out));
	if (!s)
		return DRIP_ESTORE;
	if ((rc = store_begin(st))) {
		sqlite3_finalize(s);
		return rc;
	}
	sqlite3_bind_int64(s, 1, after);
	sqlite3_bind_int64(s, 2, (int64_t)max);
	due = xcalloc(max ? max : 1, sizeof(*due));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(s, 0), last = sqlite3_column_int64(s, 3);
		out->seen++;
		out->last_id = id;
		if (!sqlite3_column_int(s, 2))
			continue;
		if (last >= cutoff) {
			if (!out->next_at || last < out->next_at)
				out->next_at = last;
			continue;
		}
		due[ndue].id = id;
		due[ndue++].email = xstrdup((const char *)sqlite3_column_text(s, 1));
	}
	sqlite3_finalize(s);
	rc = rc == SQLITE_DONE ? 0 : store_fail(st, "anonymise: leads");
	for (size_t i = 0; rc == 0 && i < ndue; i++) {
		if ((rc = store_lead_erase(st, &due[i], false, NULL, now)) == 0)
			rc = store_event_add(st, due[i].id, 0, "anonymised", now, "{}");
	}
	if (rc == 0 && ndue) {
		s = store_prep(st, "UPDATE counts SET n = n + ?1 WHERE key = 'anonymised'");
		if (s)
			sqlite3_bind_int64(s, 1, (int64_t)ndue);
		rc = store_run(st, s);
	}
	for (size_t i = 0; i < ndue; i++)
		free(due[i].email);
	free(due);
	if (rc) {
		store_rollback(st);
		out->anonymised = 0;
		return rc;
	}
	out->anonymised = (int64_t)ndue;
	return store_commit(st);
}

/* ---- bulk import ------------------------------------------------------------------------ */

int store_suppressed_any_hashed(struct store *st, bool *any)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SUPPRESSED_ANY_HASHED);
	if (!s)
		return DRIP_ESTORE;
	int rc = sqlite3_step(s);
	*any = rc != SQLITE_ROW || sqlite3_column_int(s, 0) != 0;
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : store_fail(st, "suppressed hashes");
}

/* 0 when `key` is on the suppression list, DRIP_ENOT_FOUND when not. */
static int store_suppressed_key(struct store *st, const char *key, size_t len)
{
	sqlite3_stmt *s = store_stmt(st, STMT_SUPPRESSED_HASH);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_text(s, 1, key, (int)len, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? DRIP_ENOT_FOUND : store_fail(st, "suppressed");
}

int store_suppressed_quick(struct store *st, const char *address, bool hashed)
{
	const char *at = strchr(address, '@');
	int rc = store_suppressed_key(st, address, strlen(address));
	if (rc != DRIP_ENOT_FOUND)
		return rc;
	/* The domain: what STMT_SUPPRESSED's substr(?1, instr(?1, '@') + 1) takes, which is
	 * the whole address when it has no '@'. */
	const char *domain = at ? at + 1 : address;
	if ((rc = store_suppressed_key(st, domain, strlen(domain))) != DRIP_ENOT_FOUND)
		return rc;
	char h[STORE_HASH_LEN];
	if (!hashed || !st->hash_keylen || store_address_hash(st, address, h) != 0)
		return DRIP_ENOT_FOUND;
	return store_suppressed_key(st, h, strlen(h));
}

int store_touch_schedule_new(struct store *st, int64_t lead_id, int64_t enrolment_id,
			     const char *sequence, const char *step, int64_t step_index,
			     int64_t due_at, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_SCHEDULE_NEW);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, lead_id);
	sqlite3_bind_int64(s, 2, enrolment_id);
	store_bind_text(s, 3, sequence);
	store_bind_text(s, 4, step);
	sqlite3_bind_int64(s, 5, step_index);
	sqlite3_bind_int64(s, 6, due_at);
	sqlite3_bind_int64(s, 7, now);
	return store_exec_stmt(st, s);
}

int store_touch_sending_note(struct store *st, int64_t id, const char *message_id,
			     const char *account, const char *rcpt_domain, const char *subject,
			     int64_t variant, int64_t now)
{
	sqlite3_stmt *s = store_stmt(st, STMT_TOUCH_SENDING_NOTE);
	if (!s)
		return DRIP_ESTORE;
	sqlite3_bind_int64(s, 1, id);
	store_bind_text(s, 2, message_id);
	sqlite3_bind_int64(s, 3, now);
	if (account)
		store_bind_text(s, 4, account);
	if (rcpt_domain)
		store_bind_text(s, 5, rcpt_domain);
	store_bind_text(s, 6, subject);
	sqlite3_bind_int64(s, 7, variant);
	return store_touch_update(st, s);
}
