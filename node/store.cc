// SQLite implementation of the node's store.
#include "node/store.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

#include <sys/stat.h>
#include <tuple>

#include <fcntl.h>
#include <unistd.h>

#define SQLITE_ENABLE_PREUPDATE_HOOK  // declares the pre-update hook API, which Debian's libsqlite3 has
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "protocol/messages.h"

namespace kring {

namespace {

// Each entry migrates the schema from version i to i+1, in one transaction.
const char* const kMigrations[] = {
    // 0 -> 1
    R"sql(
    CREATE TABLE partners (
      org TEXT PRIMARY KEY,
      display_name TEXT NOT NULL,
      sign_pk BLOB NOT NULL UNIQUE,
      box_pk BLOB NOT NULL,
      transport_pk BLOB NOT NULL UNIQUE,
      endpoint TEXT NOT NULL,
      added_ms INTEGER NOT NULL);
    CREATE TABLE cases (
      case_id BLOB PRIMARY KEY,
      label TEXT NOT NULL,
      created_ms INTEGER NOT NULL);
    CREATE TABLE records (
      id BLOB PRIMARY KEY,
      type INTEGER NOT NULL,
      case_id BLOB NOT NULL,
      author TEXT NOT NULL,
      kind TEXT NOT NULL,
      domain TEXT NOT NULL,
      hlc INTEGER NOT NULL,
      record BLOB NOT NULL,
      received_from TEXT NOT NULL,
      stored_ms INTEGER NOT NULL);
    CREATE INDEX records_by_case ON records (case_id, hlc);
    CREATE TABLE audience (
      org TEXT NOT NULL,
      hlc INTEGER NOT NULL,
      id BLOB NOT NULL,
      PRIMARY KEY (org, hlc, id)) WITHOUT ROWID;
    CREATE INDEX audience_by_id ON audience (id, org);
    CREATE TABLE tokens (
      client TEXT NOT NULL,
      token_hash BLOB NOT NULL UNIQUE,
      created_ms INTEGER NOT NULL,
      revoked_ms INTEGER);
    CREATE UNIQUE INDEX tokens_active ON tokens (client) WHERE revoked_ms IS NULL;
    )sql",
    // 1 -> 2: the NEN 7513 access log, an append-only hash chain.
    R"sql(
    CREATE TABLE access_log (
      seq INTEGER PRIMARY KEY,
      event_id BLOB NOT NULL UNIQUE,
      time_ms INTEGER NOT NULL,
      action TEXT NOT NULL,
      outcome TEXT NOT NULL,
      actor_id TEXT NOT NULL,
      actor_name TEXT NOT NULL,
      actor_role TEXT NOT NULL,
      on_behalf_of TEXT NOT NULL,
      organisation TEXT NOT NULL,
      client TEXT NOT NULL,
      case_id BLOB,
      items TEXT NOT NULL,
      consent TEXT NOT NULL,
      prev_hash BLOB NOT NULL,
      hash BLOB NOT NULL);
    CREATE INDEX access_log_by_case ON access_log (case_id, time_ms);
    CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
      BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
    CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
      BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
    )sql",
    // 2 -> 3: start-up in O(cases whose consent changed), not O(records).
    // case_schedule: when each case's decisions next change by themselves
    // (0: now, e.g. a control record stored and not yet acted on);
    // counters: the fragment count health checks report and the newest hlc
    // (the clock's floor), kept by triggers; a case's records by type.
    R"sql(
    DROP INDEX records_by_case;
    CREATE INDEX records_by_case_type ON records (case_id, type, hlc);
    CREATE TABLE case_schedule (
      case_id BLOB PRIMARY KEY,
      next_change_ms INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO case_schedule SELECT DISTINCT case_id, 0 FROM records;
    CREATE TABLE node_state (
      key TEXT PRIMARY KEY,
      value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE counters (
      name TEXT PRIMARY KEY,
      n INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters SELECT 'fragments', COUNT(*) FROM records WHERE type = 1;
    INSERT INTO counters SELECT 'max_hlc', COALESCE(MAX(hlc), 0) FROM records;
    CREATE TRIGGER records_count_insert AFTER INSERT ON records WHEN NEW.type = 1
      BEGIN UPDATE counters SET n = n + 1 WHERE name = 'fragments'; END;
    CREATE TRIGGER records_max_hlc AFTER INSERT ON records WHEN NEW.hlc > (SELECT n FROM counters WHERE name = 'max_hlc')
      BEGIN UPDATE counters SET n = NEW.hlc WHERE name = 'max_hlc'; END;
    CREATE TRIGGER records_count_delete AFTER DELETE ON records WHEN OLD.type = 1
      BEGIN UPDATE counters SET n = n - 1 WHERE name = 'fragments'; END;
    )sql",
    // 3 -> 4: signed access-log checkpoints (protocol/checkpoint.h).
    // own_checkpoints: every checkpoint this node signed, append-only like
    // the log; held_checkpoints: the latest checkpoint of an organisation as
    // received from a holder (a partner's own, or ours handed back by it).
    R"sql(
    CREATE TABLE own_checkpoints (
      n INTEGER PRIMARY KEY,
      restores INTEGER NOT NULL,
      entries INTEGER NOT NULL,
      head BLOB NOT NULL,
      time_ms INTEGER NOT NULL,
      hlc INTEGER NOT NULL,
      record BLOB NOT NULL);
    CREATE TRIGGER own_checkpoints_no_update BEFORE UPDATE ON own_checkpoints
      BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
    CREATE TRIGGER own_checkpoints_no_delete BEFORE DELETE ON own_checkpoints
      BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
    CREATE TABLE held_checkpoints (
      org TEXT NOT NULL,
      holder TEXT NOT NULL,
      restores INTEGER NOT NULL,
      entries INTEGER NOT NULL,
      head BLOB NOT NULL,
      time_ms INTEGER NOT NULL,
      hlc INTEGER NOT NULL,
      record BLOB NOT NULL,
      received_ms INTEGER NOT NULL,
      PRIMARY KEY (org, holder)) WITHOUT ROWID;
    )sql",
    // 4 -> 5: the clock's floor at start is the newest record this node
    // wrote itself (MaxOwnHlc), found without a scan.
    R"sql(
    CREATE INDEX records_by_author ON records (author, hlc);
    )sql",
    // 5 -> 6: the network roster and key history (consent/network.h).
    // roster_versions: every version this node adopted, in order (the
    // synced copy is in records, type 11); org_keys: which keys spoke for an
    // organisation when; partners.source: 'peer' (peer add) or 'roster';
    // removed_members: organisations a roster version removed;
    // resealed_keys: content keys this node re-sealed to its own new box key
    // after a rotation.
    R"sql(
    CREATE TABLE roster_versions (
      version INTEGER PRIMARY KEY,
      id BLOB NOT NULL UNIQUE,
      record BLOB NOT NULL,
      adopted_ms INTEGER NOT NULL);
    CREATE TABLE org_keys (
      org TEXT NOT NULL,
      sign_pk BLOB NOT NULL,
      box_pk BLOB NOT NULL,
      transport_pk BLOB NOT NULL,
      from_ms INTEGER NOT NULL,
      until_ms INTEGER NOT NULL,
      PRIMARY KEY (org, sign_pk)) WITHOUT ROWID;
    ALTER TABLE partners ADD COLUMN source TEXT NOT NULL DEFAULT 'peer';
    CREATE TABLE removed_members (
      org TEXT PRIMARY KEY,
      version INTEGER NOT NULL,
      removed_ms INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE resealed_keys (
      id BLOB PRIMARY KEY,
      sealed BLOB NOT NULL) WITHOUT ROWID;
    )sql",
    // 6 -> 7 (issue 14, the API): the change feed and
    // the answers kept for Idempotency-Key retries.
    // changes: what changed on this node, in the order it was stored; `ref`
    // is the record (or a purge's own id), `items` a purge's versions (hex,
    // comma-separated). Who may see an entry is decided when it is read.
    // idempotency: per client system and key (a hash: the key itself is not
    // kept), the request's hash and the answer sealed with a key derived
    // from the Idempotency-Key, so the disk alone does not show it.
    R"sql(
    CREATE TABLE changes (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      time_ms INTEGER NOT NULL,
      case_id BLOB NOT NULL,
      kind TEXT NOT NULL,
      ref BLOB NOT NULL,
      items TEXT NOT NULL DEFAULT '',
      UNIQUE (kind, ref));
    CREATE TABLE idempotency (
      client TEXT NOT NULL,
      key_hash BLOB NOT NULL,
      request_hash BLOB NOT NULL,
      status INTEGER NOT NULL,
      answer BLOB NOT NULL,
      case_id BLOB,
      time_ms INTEGER NOT NULL,
      PRIMARY KEY (client, key_hash)) WITHOUT ROWID;
    CREATE INDEX idempotency_by_time ON idempotency (time_ms);
    )sql",
    // 7 -> 8 (issue 16): retention (docs/retention.md).
    // legal_holds: cases whose sweep this organisation suspended;
    // destroyed: ids (never content) of records and whole cases the sweep
    // destroyed, so a partner's copy is not taken in again;
    // access_log_expiries: each removal of access-log entries past their
    // period, oldest first; the last row's (upto_seq, hash) anchors the chain.
    R"sql(
    CREATE TABLE legal_holds (
      case_id BLOB PRIMARY KEY,
      since_ms INTEGER NOT NULL,
      reason TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE destroyed (
      id BLOB PRIMARY KEY,
      case_id BLOB NOT NULL,
      whole_case INTEGER NOT NULL,
      destroyed_ms INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE access_log_expiries (
      n INTEGER PRIMARY KEY,
      upto_seq INTEGER NOT NULL,
      hash BLOB NOT NULL,
      time_ms INTEGER NOT NULL,
      removed_ms INTEGER NOT NULL);
    CREATE TRIGGER access_log_expiries_no_update BEFORE UPDATE ON access_log_expiries
      BEGIN SELECT RAISE(ABORT, 'access-log expiries are append-only'); END;
    CREATE TRIGGER access_log_expiries_no_delete BEFORE DELETE ON access_log_expiries
      BEGIN SELECT RAISE(ABORT, 'access-log expiries are append-only'); END;
    DROP TRIGGER access_log_no_delete;
    CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
      WHEN OLD.seq > COALESCE((SELECT MAX(upto_seq) FROM access_log_expiries), 0)
      BEGIN SELECT RAISE(ABORT, 'the access log is append-only: only entries past their retention period go, oldest first'); END;
    )sql",
    // 8 -> 9 (issue 15): bodies are checked after they are stored, not on
    // receipt (node/body_check.cc). unreadable_fragments: fragments whose
    // body did not open or validate (ids and a reason code, never content);
    // body_checks: the change-feed position up to which every stored
    // fragment was checked. What was stored before was checked on receipt.
    // audience_by_time replaces audience_by_id: a record's audience is found
    // by (hlc, id), its records row giving the hlc, so the index grows at its
    // end (records arrive roughly in hlc order) instead of at random ids.
    R"sql(
    DROP INDEX audience_by_id;
    CREATE INDEX audience_by_time ON audience (hlc, id);
    CREATE TABLE unreadable_fragments (
      id BLOB PRIMARY KEY,
      case_id BLOB NOT NULL,
      reason TEXT NOT NULL,
      found_ms INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX unreadable_by_case ON unreadable_fragments (case_id);
    CREATE TABLE body_checks (
      one INTEGER PRIMARY KEY CHECK (one = 1),
      upto_seq INTEGER NOT NULL);
    INSERT INTO body_checks SELECT 1, COALESCE(MAX(seq), 0) FROM changes;
    )sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK) st_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(st_); }
  bool ok() const { return st_ != nullptr; }
  Stmt& Bind(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); return *this; }
  Stmt& Bind(int i, const std::string& v) { sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT); return *this; }
  Stmt& Bind(int i, ByteSpan v) { sqlite3_bind_blob(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT); return *this; }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(st_); }
  void Reset() { sqlite3_reset(st_); sqlite3_clear_bindings(st_); }
  int64_t Int(int c) { return sqlite3_column_int64(st_, c); }
  std::string Text(int c) {
    const unsigned char* t = sqlite3_column_text(st_, c);
    return t ? std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(st_, c))) : std::string();
  }
  Bytes Blob(int c) {
    const uint8_t* b = static_cast<const uint8_t*>(sqlite3_column_blob(st_, c));
    return b ? Bytes(b, b + sqlite3_column_bytes(st_, c)) : Bytes();
  }
  template <size_t N>
  bool Array(int c, std::array<uint8_t, N>* out) {
    if (sqlite3_column_bytes(st_, c) != static_cast<int>(N)) return false;
    std::memcpy(out->data(), sqlite3_column_blob(st_, c), N);
    return true;
  }
  sqlite3_stmt* raw() { return st_; }
  Status Error(const char* what) const { return Status::IOError(std::string(what) + ": " + sqlite3_errmsg(db_)); }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

// Rolls back unless committed.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { ok_ = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK; }
  ~Transaction() {
    if (ok_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  bool ok() const { return ok_; }
  Status Commit() {
    done_ = true;
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      // The reason first: the ROLLBACK (often "no transaction is active",
      // SQLite having rolled back itself) would replace it.
      Status st = Status::IOError(std::string("commit failed: ") + sqlite3_errmsg(db_));
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    }
    return Status::Ok();
  }

 private:
  sqlite3* db_;
  bool ok_ = false;
  bool done_ = false;
};

// Deletes a record's audience, found by its (hlc, id) (audience_by_time):
// before the record itself, whose row gives the hlc.
constexpr const char* kDeleteAudience = "DELETE FROM audience WHERE hlc = (SELECT hlc FROM records WHERE id = ?1) AND id = ?1";

// Reads the rows of a statement selecting (id, hlc, record, type).
Result<std::vector<StoredRecord>> ReadRecordRows(Stmt& s) {
  std::vector<StoredRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    StoredRecord r;
    if (!s.Array(0, &r.id)) return Status::Corruption("record with malformed id in the database");
    r.hlc = static_cast<HlcTimestamp>(s.Int(1));
    r.record = s.Blob(2);
    r.type = static_cast<RecordType>(s.Int(3));
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read records");
  return out;
}

// The change-feed kind a newly stored record of this type is (nullptr: none).
const char* ChangeKindOf(RecordType t) {
  switch (t) {
    case RecordType::kFragment: return "item-stored";
    case RecordType::kCaseGenesis: return "case-opened";
    case RecordType::kConsentGrant: return "consent-given";
    case RecordType::kConsentWithdrawal: return "consent-withdrawn";
    case RecordType::kRegieChange: return "regie-changed";
    case RecordType::kCaseClose: return "case-closed";
    case RecordType::kCaseReopen: return "case-reopened";
    default: return nullptr;
  }
}

}  // namespace

Store::Store(sqlite3* db) : db_(db) {}
Store::~Store() {
  sqlite3_close_v2(read_db_);
  sqlite3_close_v2(db_);
}

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Status::IOError("sqlite: " + msg);
  }
  return Status::Ok();
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& path, const std::string& vfs) {
  // SQLite creates the database with mode 0644 less the umask, and gives
  // -wal and -shm the mode of the database: creating it 0600 first keeps all
  // three owner-only. An existing file keeps its mode (`run` refuses a
  // readable one; see data_dir.h).
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::fchmod(fd, 0600);  // a default ACL could have widened it
    ::close(fd);
  } else if (errno != EEXIST) {
    return Status::IOError("cannot create database " + path + ": " + std::strerror(errno));
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           vfs.empty() ? nullptr : vfs.c_str());
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return Status::IOError("cannot open database " + path + ": " + msg);
  }
  std::unique_ptr<Store> store(new Store(db));
  sqlite3_busy_timeout(db, 10000);
  // WAL lets the CLI write while the node reads; FULL makes a commit
  // durable before it returns (NORMAL may lose the last commits on power loss).
  // secure_delete overwrites purged records' pages instead of leaving them free.
  // cache_size: 16 MiB of pages (SQLite's default is 2 MiB) for the
  // connection that writes: fewer index pages read back per insert
  // (measured for issue 15, 4 KB rows in batches of 100, after 100,000:
  // 85 -> 82 us CPU and 515 -> 343 us wall per row on a loaded 2-core box).
  KRING_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
                                    "PRAGMA secure_delete=ON; PRAGMA cache_size=-16384;"));
  KRING_RETURN_IF_ERROR(store->Migrate());
  // The second connection, for reads that must not wait for the first's
  // commits (WAL: readers and the writer do not block each other).
  sqlite3* rdb = nullptr;
  rc = sqlite3_open_v2(path.c_str(), &rdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs.empty() ? nullptr : vfs.c_str());
  if (rc != SQLITE_OK) {
    std::string msg = rdb ? sqlite3_errmsg(rdb) : "out of memory";
    sqlite3_close_v2(rdb);
    return Status::IOError("cannot open database " + path + " for reading: " + msg);
  }
  store->read_db_ = rdb;
  sqlite3_busy_timeout(rdb, 10000);
  if (sqlite3_exec(rdb, "PRAGMA query_only=ON", nullptr, nullptr, nullptr) != SQLITE_OK)
    return Status::IOError(std::string("cannot open database for reading: ") + sqlite3_errmsg(rdb));
  store->ChangedByOthers();
  return store;
}

Status Store::Migrate() {
  std::lock_guard lock(mu_);
  for (;;) {
    Transaction tx(db_);
    if (!tx.ok()) return Status::IOError(std::string("cannot begin migration: ") + sqlite3_errmsg(db_));
    int version = 0;
    {  // finalized before migrating: DROP fails while a statement is open
      Stmt v(db_, "PRAGMA user_version");
      if (v.Step() != SQLITE_ROW) return v.Error("cannot read schema version");
      version = static_cast<int>(v.Int(0));
    }
    if (version == kSchemaVersion) return tx.Commit();
    if (version > kSchemaVersion)
      return Status::Conflict("database schema version " + std::to_string(version) +
                              " is newer than this kring-node understands (" + std::to_string(kSchemaVersion) + ")");
    KRING_RETURN_IF_ERROR(Exec(kMigrations[version]));
    KRING_RETURN_IF_ERROR(Exec(("PRAGMA user_version=" + std::to_string(version + 1)).c_str()));
    KRING_RETURN_IF_ERROR(tx.Commit());
  }
}

bool Store::ChangedByOthers() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "PRAGMA data_version");
  if (s.Step() != SQLITE_ROW) return true;
  int64_t v = s.Int(0);
  bool changed = v != data_version_;
  data_version_ = v;
  if (changed) InvalidatePartners();  // perhaps `peer add` or `peer remove`
  return changed;
}

void Store::InvalidatePartners() {
  std::lock_guard lock(partners_mu_);
  partners_.reset();
  ++partners_version_;
}

Result<std::shared_ptr<const std::vector<Partner>>> Store::Partners() {
  uint64_t version;
  {
    std::lock_guard lock(partners_mu_);
    if (partners_) return partners_;
    version = partners_version_;
  }
  auto list = ListPartners();
  if (!list.ok()) return list.status();
  auto snapshot = std::make_shared<const std::vector<Partner>>(std::move(*list));
  std::lock_guard lock(partners_mu_);
  if (partners_version_ == version) partners_ = snapshot;  // not when a change came in meanwhile
  return snapshot;
}

Status Store::AddPartner(const Partner& p) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "INSERT INTO partners (org, display_name, sign_pk, box_pk, transport_pk, endpoint, added_ms) VALUES (?,?,?,?,?,?,?)");
  s.Bind(1, p.identity.org).Bind(2, p.identity.display_name).Bind(3, ByteSpan(p.identity.sign_pk))
      .Bind(4, ByteSpan(p.identity.box_pk)).Bind(5, ByteSpan(p.identity.transport_pk)).Bind(6, p.endpoint).Bind(7, p.added_ms);
  int rc = s.Step();
  if (rc == SQLITE_DONE) {
    InvalidatePartners();
    return Status::Ok();
  }
  if (rc == SQLITE_CONSTRAINT) {
    Stmt q(db_, "SELECT 1 FROM partners WHERE org = ?");
    q.Bind(1, p.identity.org);
    if (q.Step() == SQLITE_ROW) return Status::AlreadyExists("'" + p.identity.org + "' is already a partner");
    return Status::Conflict("another partner already uses these keys");
  }
  return s.Error("cannot add partner");
}

Status Store::RemovePartner(const std::string& org) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "DELETE FROM partners WHERE org = ?");
  s.Bind(1, org);
  if (s.Step() != SQLITE_DONE) return s.Error("cannot remove partner");
  if (sqlite3_changes(db_) == 0) return Status::NotFound("'" + org + "' is not a partner");
  InvalidatePartners();
  return Status::Ok();
}

Result<std::vector<Partner>> Store::ListPartners() {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT org, display_name, sign_pk, box_pk, transport_pk, endpoint, added_ms, source FROM partners ORDER BY org");
  std::vector<Partner> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    Partner p;
    p.identity.org = s.Text(0);
    p.identity.display_name = s.Text(1);
    if (!s.Array(2, &p.identity.sign_pk) || !s.Array(3, &p.identity.box_pk) || !s.Array(4, &p.identity.transport_pk))
      return Status::Corruption("partner '" + p.identity.org + "' has malformed keys in the database");
    p.endpoint = s.Text(5);
    p.added_ms = s.Int(6);
    p.from_roster = s.Text(7) == "roster";
    out.push_back(std::move(p));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot list partners");
  return out;
}

Status Store::CreateCase(const CaseId& id, const std::string& label, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "INSERT INTO cases (case_id, label, created_ms) VALUES (?,?,?)");
  s.Bind(1, ByteSpan(id)).Bind(2, label).Bind(3, now_ms);
  int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) return Status::AlreadyExists("case exists");
  if (rc != SQLITE_DONE) return s.Error("cannot create case");
  return Status::Ok();
}

Result<bool> Store::CaseKnown(const CaseId& id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT EXISTS(SELECT 1 FROM cases WHERE case_id = ?1) OR EXISTS(SELECT 1 FROM records WHERE case_id = ?1)");
  s.Bind(1, ByteSpan(id));
  if (s.Step() != SQLITE_ROW) return s.Error("cannot look up case");
  return s.Int(0) != 0;
}

Result<std::vector<CaseSummary>> Store::ListCases() {
  std::lock_guard lock(mu_);
  Stmt s(db_, R"sql(
    WITH ids AS (SELECT case_id FROM cases UNION SELECT DISTINCT case_id FROM records WHERE type NOT IN (8, 11, 12))
    SELECT ids.case_id, COALESCE(c.label, ''), (SELECT COUNT(*) FROM records r WHERE r.case_id = ids.case_id)
    FROM ids LEFT JOIN cases c ON c.case_id = ids.case_id ORDER BY ids.case_id)sql");
  std::vector<CaseSummary> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    CaseSummary c;
    if (!s.Array(0, &c.case_id)) continue;
    c.label = s.Text(1);
    c.fragments = s.Int(2);
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot list cases");
  return out;
}

Result<std::vector<RecordId>> Store::PutRecords(const std::vector<RecordRow>& rows, const std::string& received_from,
                                                int64_t now_ms) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  std::vector<RecordId> added;
  changes_added_ = false;
  KRING_RETURN_IF_ERROR(InsertRecordsLocked(rows, received_from, now_ms, &added));
  KRING_RETURN_IF_ERROR(tx.Commit());
  if (!added.empty()) generation_.fetch_add(1);
  if (changes_added_) NotifyChangesLocked();
  return added;
}

Status Store::InsertRecordsLocked(const std::vector<RecordRow>& rows, const std::string& received_from, int64_t now_ms,
                                  std::vector<RecordId>* added) {
  Stmt ins(db_, "INSERT OR IGNORE INTO records (id, type, case_id, author, kind, domain, hlc, record, received_from, stored_ms) VALUES (?,?,?,?,?,?,?,?,?,?)");
  Stmt aud(db_, "INSERT OR IGNORE INTO audience (org, hlc, id) VALUES (?,?,?)");
  // A record that decides consent (genesis, consent, withdrawal, regie)
  // changes its case's decisions: the case is due until a recompute records
  // its next change (SetNextChange), even across a crash.
  Stmt due(db_, "INSERT OR REPLACE INTO case_schedule (case_id, next_change_ms) VALUES (?, 0)");
  Stmt change(db_, "INSERT OR IGNORE INTO changes (time_ms, case_id, kind, ref) VALUES (?,?,?,?)");
  for (const RecordRow& r : rows) {
    // SQLite integers are signed: a larger hlc would be stored negative and
    // sort before every real one.
    if (r.hlc > static_cast<HlcTimestamp>(std::numeric_limits<int64_t>::max()))
      return Status::InvalidArgument("record " + ToHex(r.id).substr(0, 16) + " has an hlc beyond 2^63-1");
    ins.Bind(1, ByteSpan(r.id)).Bind(2, int64_t{static_cast<uint8_t>(r.type)}).Bind(3, ByteSpan(r.case_id))
        .Bind(4, r.author).Bind(5, r.kind).Bind(6, r.domain).Bind(7, static_cast<int64_t>(r.hlc)).Bind(8, r.record)
        .Bind(9, received_from).Bind(10, now_ms);
    if (ins.Step() != SQLITE_DONE) return ins.Error("cannot store record");
    ins.Reset();
    if (sqlite3_changes(db_) == 0) continue;
    added->push_back(r.id);
    if (const char* kind = ChangeKindOf(r.type)) {
      change.Bind(1, now_ms).Bind(2, ByteSpan(r.case_id)).Bind(3, std::string(kind)).Bind(4, ByteSpan(r.id));
      if (change.Step() != SQLITE_DONE) return change.Error("cannot record the change");
      change.Reset();
      changes_added_ = true;
    }
    if (r.type != RecordType::kFragment && r.type != RecordType::kAccessRecord && r.type != RecordType::kKeyGrant &&
        r.type != RecordType::kCheckpoint && r.type != RecordType::kRoster && r.type != RecordType::kKeyRotation) {
      due.Bind(1, ByteSpan(r.case_id));
      if (due.Step() != SQLITE_DONE) return due.Error("cannot schedule case");
      due.Reset();
    }
    for (const std::string& org : r.audience) {
      aud.Bind(1, org).Bind(2, static_cast<int64_t>(r.hlc)).Bind(3, ByteSpan(r.id));
      if (aud.Step() != SQLITE_DONE) return aud.Error("cannot store audience");
      aud.Reset();
    }
  }
  return Status::Ok();
}

Result<bool> Store::PutFragment(const Fragment& f, const FragmentId& id, ByteSpan record,
                                const std::string& received_from, int64_t now_ms) {
  RecordRow row{id, RecordType::kFragment, f.header.case_id, f.header.author.v, f.header.kind.v, f.header.domain.v,
                f.header.hlc, record, {}};
  for (const Recipient& r : f.header.recipients.v) row.audience.push_back(r.org.v);
  auto added = PutRecords({row}, received_from, now_ms);
  if (!added.ok()) return added.status();
  return added->size() == 1;
}

Result<std::vector<RecordId>> Store::SetAudiences(
    const std::vector<std::pair<RecordId, std::vector<std::string>>>& audiences) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  Stmt cur(db_, "SELECT a.org, r.hlc FROM records r LEFT JOIN audience a ON a.hlc = r.hlc AND a.id = r.id "
                "WHERE r.id = ? ORDER BY a.org");
  Stmt del(db_, kDeleteAudience);
  Stmt ins(db_, "INSERT OR IGNORE INTO audience (org, hlc, id) VALUES (?,?,?)");
  std::vector<RecordId> grown;
  bool changed = false;
  for (const auto& [id, orgs] : audiences) {
    cur.Bind(1, ByteSpan(id));
    std::vector<std::string> before;
    int64_t t = -1;
    int rc;
    while ((rc = cur.Step()) == SQLITE_ROW) {
      t = cur.Int(1);
      if (sqlite3_column_type(cur.raw(), 0) != SQLITE_NULL) before.push_back(cur.Text(0));
    }
    cur.Reset();
    if (rc != SQLITE_DONE) return cur.Error("cannot read audience");
    if (t < 0) continue;  // purged meanwhile
    std::vector<std::string> after = orgs;
    std::sort(after.begin(), after.end());
    after.erase(std::unique(after.begin(), after.end()), after.end());
    if (after == before) continue;  // the common case: nothing to write
    if (std::any_of(after.begin(), after.end(),
                    [&](const std::string& o) { return !std::binary_search(before.begin(), before.end(), o); }))
      grown.push_back(id);
    changed = true;
    del.Bind(1, ByteSpan(id));
    if (del.Step() != SQLITE_DONE) return del.Error("cannot update audience");
    del.Reset();
    for (const std::string& org : after) {
      ins.Bind(1, org).Bind(2, t).Bind(3, ByteSpan(id));
      if (ins.Step() != SQLITE_DONE) return ins.Error("cannot update audience");
      ins.Reset();
    }
  }
  KRING_RETURN_IF_ERROR(tx.Commit());  // without changes: nothing written, no fsync
  if (changed) generation_.fetch_add(1);
  return grown;
}

Result<size_t> Store::DeleteRecords(const std::vector<RecordId>& ids) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  Stmt del_aud(db_, kDeleteAudience);
  Stmt del(db_, "DELETE FROM records WHERE id = ?");
  Stmt del_unreadable(db_, "DELETE FROM unreadable_fragments WHERE id = ?");
  size_t n = 0;
  for (const RecordId& id : ids) {
    del_aud.Bind(1, ByteSpan(id));
    if (del_aud.Step() != SQLITE_DONE) return del_aud.Error("cannot purge audience");
    del_aud.Reset();
    del_unreadable.Bind(1, ByteSpan(id));
    if (del_unreadable.Step() != SQLITE_DONE) return del_unreadable.Error("cannot purge");
    del_unreadable.Reset();
    del.Bind(1, ByteSpan(id));
    if (del.Step() != SQLITE_DONE) return del.Error("cannot purge record");
    del.Reset();
    n += static_cast<size_t>(sqlite3_changes(db_));
  }
  KRING_RETURN_IF_ERROR(tx.Commit());
  if (n > 0) {
    // Move the zeroed pages into the main file and empty the WAL, so the old
    // ciphertext does not linger in the log either.
    Exec("PRAGMA wal_checkpoint(TRUNCATE)");
    generation_.fetch_add(1);
  }
  return n;
}

Result<std::vector<StoredRecord>> Store::DecisionRecordsOfCase(const CaseId& id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT id, hlc, record, type FROM records WHERE case_id = ? AND (type BETWEEN 2 AND 5 OR type IN (9, 10, 13, 14, 15)) ORDER BY hlc, id");
  s.Bind(1, ByteSpan(id));
  return ReadRecordRows(s);
}

Result<std::vector<CaseId>> Store::CasesWithRecords() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT DISTINCT case_id FROM records WHERE type NOT IN (8, 11, 12)");  // checkpoints, rosters, rotations belong to no case
  std::vector<CaseId> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    CaseId c;
    if (s.Array(0, &c)) out.push_back(c);
  }
  if (rc != SQLITE_DONE) return s.Error("cannot list cases");
  return out;
}

Result<std::optional<StoredRecord>> Store::GetRecord(const FragmentId& id) {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT hlc, record, type FROM records WHERE id = ?");
  s.Bind(1, ByteSpan(id));
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<StoredRecord>();
  if (rc != SQLITE_ROW) return s.Error("cannot read record");
  StoredRecord r{id, static_cast<RecordType>(s.Int(2)), static_cast<HlcTimestamp>(s.Int(0)), s.Blob(1)};
  return std::optional<StoredRecord>(std::move(r));
}

Result<std::vector<bool>> Store::Contains(const std::vector<RecordId>& ids) {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT 1 FROM records WHERE id = ?");
  std::vector<bool> out;
  out.reserve(ids.size());
  for (const RecordId& id : ids) {
    s.Bind(1, ByteSpan(id));
    int rc = s.Step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return s.Error("cannot look up record");
    out.push_back(rc == SQLITE_ROW);
    s.Reset();
  }
  return out;
}

Result<std::vector<StoredRecord>> Store::RecordsOfCase(const CaseId& id, std::optional<RecordType> type) {
  std::lock_guard lock(mu_);
  if (type) {
    Stmt s(db_, "SELECT id, hlc, record, type FROM records WHERE case_id = ? AND type = ? ORDER BY hlc, id");
    s.Bind(1, ByteSpan(id)).Bind(2, int64_t{static_cast<uint8_t>(*type)});
    return ReadRecordRows(s);
  }
  Stmt s(db_, "SELECT id, hlc, record, type FROM records WHERE case_id = ? ORDER BY hlc, id");
  s.Bind(1, ByteSpan(id));
  return ReadRecordRows(s);
}

Result<std::vector<ItemKey>> Store::ItemsFor(const std::string& org, const std::string& also) {
  std::lock_guard lock(mu_);
  Stmt s(db_, also.empty() ? "SELECT hlc, id FROM audience WHERE org = ? ORDER BY hlc, id"
                           : "SELECT a.hlc, a.id FROM audience a WHERE a.org = ? AND EXISTS "
                             "(SELECT 1 FROM audience b WHERE b.org = ? AND b.hlc = a.hlc AND b.id = a.id) ORDER BY a.hlc, a.id");
  s.Bind(1, org);
  if (!also.empty()) s.Bind(2, also);
  std::vector<ItemKey> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    ItemKey k;
    k.hlc = static_cast<uint64_t>(s.Int(0));
    if (!s.Array(1, &k.id)) return Status::Corruption("audience entry with malformed id");
    out.push_back(k);
  }
  if (rc != SQLITE_DONE) return s.Error("cannot list items");
  return out;
}

Status Store::EnableReconcileIndex(const std::string& self_org) {
  std::lock_guard lock(mu_);
  if (index_) return Status::Ok();
  index_ = std::make_unique<ReconcileIndex>(self_org);
  KRING_RETURN_IF_ERROR(RebuildReconcileIndexLocked());
  index_pending_.clear();
  sqlite3_preupdate_hook(db_, &Store::PreUpdateHook, this);
  sqlite3_rollback_hook(db_, &Store::RollbackHook, this);
  sqlite3_wal_hook(db_, &Store::WalHook, this);
  return Status::Ok();
}

Status Store::RebuildReconcileIndex() {
  std::lock_guard lock(mu_);
  if (!index_) return Status::Ok();
  return RebuildReconcileIndexLocked();
}

Status Store::RebuildReconcileIndexLocked() {
  // audience_by_time (hlc, id, and the key's org) covers it: one pass in key
  // order, a record's rows together.
  Stmt s(db_, "SELECT id, hlc, org FROM audience ORDER BY hlc, id, org");
  int rc = s.Step();
  Status bad = Status::Ok();
  index_->Reset([&](ReconcileIndex::Entry* e) {
    if (rc != SQLITE_ROW) return false;
    e->audience.clear();
    if (!s.Array(0, &e->key.id)) {
      bad = Status::Corruption("audience entry with malformed id");
      return false;
    }
    e->key.hlc = static_cast<uint64_t>(s.Int(1));
    do {
      e->audience.push_back(s.Text(2));
      rc = s.Step();
    } while (rc == SQLITE_ROW && sqlite3_column_bytes(s.raw(), 0) == static_cast<int>(kHashBytes) &&
             std::memcmp(sqlite3_column_blob(s.raw(), 0), e->key.id.data(), kHashBytes) == 0);
    return true;
  });
  if (!bad.ok()) return bad;
  if (rc != SQLITE_DONE) return s.Error("cannot read the audience for the reconciliation index");
  return Status::Ok();
}

void Store::PreUpdateHook(void* ctx, sqlite3* db, int op, const char* db_name, const char* table, long long,
                          long long) {
  if (std::strcmp(db_name, "main") != 0 || std::strcmp(table, "audience") != 0) return;
  auto* store = static_cast<Store*>(ctx);
  // Columns: org, hlc, id.
  auto row = [&](bool added) {
    sqlite3_value *org = nullptr, *hlc = nullptr, *id = nullptr;
    auto get = added ? sqlite3_preupdate_new : sqlite3_preupdate_old;
    if (get(db, 0, &org) != SQLITE_OK || get(db, 1, &hlc) != SQLITE_OK || get(db, 2, &id) != SQLITE_OK) return;
    if (sqlite3_value_bytes(id) != static_cast<int>(kHashBytes)) return;  // never stored: see InsertRecordsLocked
    ReconcileIndex::RowChange c;
    c.added = added;
    c.key.hlc = static_cast<uint64_t>(sqlite3_value_int64(hlc));
    std::memcpy(c.key.id.data(), sqlite3_value_blob(id), kHashBytes);
    const unsigned char* text = sqlite3_value_text(org);
    c.org.assign(text ? reinterpret_cast<const char*>(text) : "", static_cast<size_t>(sqlite3_value_bytes(org)));
    store->index_pending_.push_back(std::move(c));
  };
  if (op == SQLITE_DELETE || op == SQLITE_UPDATE) row(false);
  if (op == SQLITE_INSERT || op == SQLITE_UPDATE) row(true);
}

int Store::WalHook(void* ctx, sqlite3* db, const char* db_name, int pages) {
  auto* store = static_cast<Store*>(ctx);
  if (!store->index_pending_.empty()) {
    store->index_->Apply(store->index_pending_);
    store->index_pending_.clear();
  }
  // What SQLite's default WAL hook (wal_autocheckpoint=1000) does, which ours replaces.
  if (pages >= 1000) sqlite3_wal_checkpoint(db, db_name);
  return SQLITE_OK;
}

void Store::RollbackHook(void* ctx) { static_cast<Store*>(ctx)->index_pending_.clear(); }

Result<bool> Store::InAudience(const FragmentId& id, const std::string& org) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT 1 FROM records r JOIN audience a ON a.org = ?2 AND a.hlc = r.hlc AND a.id = r.id WHERE r.id = ?1");
  s.Bind(1, ByteSpan(id)).Bind(2, org);
  int rc = s.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return s.Error("cannot check audience");
}

Result<std::vector<std::string>> Store::AudienceOf(const RecordId& id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT a.org FROM records r JOIN audience a ON a.hlc = r.hlc AND a.id = r.id WHERE r.id = ? ORDER BY a.org");
  s.Bind(1, ByteSpan(id));
  std::vector<std::string> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(s.Text(0));
  if (rc != SQLITE_DONE) return s.Error("cannot read audience");
  return out;
}

Result<HlcTimestamp> Store::MaxHlc() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT n FROM counters WHERE name = 'max_hlc'");  // kept by a trigger: no scan
  if (s.Step() != SQLITE_ROW) return s.Error("cannot read max hlc");
  return static_cast<HlcTimestamp>(s.Int(0));
}

Result<HlcTimestamp> Store::MaxOwnHlc(const std::string& org) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT COALESCE(MAX(hlc), 0) FROM records WHERE author = ?");  // records_by_author: no scan
  s.Bind(1, org);
  if (s.Step() != SQLITE_ROW) return s.Error("cannot read the newest own hlc");
  return static_cast<HlcTimestamp>(s.Int(0));
}

Result<int64_t> Store::CountFragments() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT n FROM counters WHERE name = 'fragments'");  // kept by triggers: no scan
  if (s.Step() != SQLITE_ROW) return s.Error("cannot count fragments");
  return s.Int(0);
}

uint64_t Store::generation() const { return generation_.load(); }

Result<std::vector<Bytes>> Store::RecordsForPeer(const std::vector<RecordId>& ids, const std::string& org,
                                                 size_t max_bytes, std::vector<RecordId>* served,
                                                 const std::string& also) {
  std::lock_guard lock(mu_);
  // The order a receiver can accept them in: the records that decide a
  // case's consent state (causal order follows hlc), then fragments (an
  // edit after its predecessor), then key grants (accepted only for a
  // fragment held), then access records, then checkpoints.
  Stmt meta(db_, "SELECT r.type, r.hlc, length(r.record) FROM records r JOIN audience a "
                 "ON a.org = ?2 AND a.hlc = r.hlc AND a.id = r.id WHERE r.id = ?1 AND (?3 = '' OR EXISTS "
                 "(SELECT 1 FROM audience b WHERE b.org = ?3 AND b.hlc = r.hlc AND b.id = r.id))");
  struct Entry {
    int rank;
    int64_t hlc;
    RecordId id;
    size_t bytes;
    bool operator<(const Entry& o) const { return std::tie(rank, hlc, id) < std::tie(o.rank, o.hlc, o.id); }
  };
  std::vector<Entry> entries;
  for (const RecordId& id : ids) {
    meta.Bind(1, ByteSpan(id)).Bind(2, org).Bind(3, also);
    int rc = meta.Step();
    if (rc == SQLITE_ROW) {
      auto type = static_cast<RecordType>(meta.Int(0));
      int rank = type == RecordType::kRoster ? -2 : type == RecordType::kKeyRotation ? -1
               : type == RecordType::kFragment ? 1 : type == RecordType::kKeyGrant ? 2
               : type == RecordType::kAccessRecord ? 3 : type == RecordType::kCheckpoint ? 4 : 0;
      entries.push_back(Entry{rank, meta.Int(1), id, static_cast<size_t>(meta.Int(2))});
    } else if (rc != SQLITE_DONE) {
      return meta.Error("cannot look up records");
    }
    meta.Reset();
  }
  std::sort(entries.begin(), entries.end());
  entries.erase(std::unique(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.id == b.id; }),
                entries.end());
  Stmt get(db_, "SELECT record FROM records WHERE id = ?");
  std::vector<Bytes> out;
  size_t total = 0;
  for (const Entry& e : entries) {
    if (total + e.bytes > max_bytes) break;
    get.Bind(1, ByteSpan(e.id));
    int rc = get.Step();
    if (rc == SQLITE_ROW) {
      out.push_back(get.Blob(0));
      total += out.back().size();
      if (served) served->push_back(e.id);
    } else if (rc != SQLITE_DONE) {
      return get.Error("cannot read record");
    }
    get.Reset();
  }
  return out;
}

Result<std::vector<std::pair<CaseId, int64_t>>> Store::CaseSchedule() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT case_id, next_change_ms FROM case_schedule");
  std::vector<std::pair<CaseId, int64_t>> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    CaseId c;
    if (!s.Array(0, &c)) return Status::Corruption("case_schedule entry with malformed case id");
    out.emplace_back(c, s.Int(1));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read the case schedule");
  return out;
}

Status Store::SetNextChange(const CaseId& case_id, std::optional<int64_t> next_ms) {
  std::lock_guard lock(mu_);
  Stmt cur(db_, "SELECT next_change_ms FROM case_schedule WHERE case_id = ?");
  cur.Bind(1, ByteSpan(case_id));
  int rc = cur.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return cur.Error("cannot read the case schedule");
  std::optional<int64_t> stored;
  if (rc == SQLITE_ROW) stored = cur.Int(0);
  if (stored == next_ms) return Status::Ok();  // unchanged: no write
  if (next_ms) {
    Stmt s(db_, "INSERT OR REPLACE INTO case_schedule (case_id, next_change_ms) VALUES (?, ?)");
    s.Bind(1, ByteSpan(case_id)).Bind(2, *next_ms);
    if (s.Step() != SQLITE_DONE) return s.Error("cannot write the case schedule");
  } else {
    Stmt s(db_, "DELETE FROM case_schedule WHERE case_id = ?");
    s.Bind(1, ByteSpan(case_id));
    if (s.Step() != SQLITE_DONE) return s.Error("cannot write the case schedule");
  }
  return Status::Ok();
}

Result<std::optional<Bytes>> Store::GetNodeState(const std::string& key) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT value FROM node_state WHERE key = ?");
  s.Bind(1, key);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<Bytes>();
  if (rc != SQLITE_ROW) return s.Error("cannot read node state");
  return std::optional<Bytes>(s.Blob(0));
}

Result<std::vector<std::pair<std::string, Bytes>>> Store::NodeStateWithPrefix(const std::string& prefix) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT key, value FROM node_state WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key");
  s.Bind(1, prefix);
  std::vector<std::pair<std::string, Bytes>> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.emplace_back(s.Text(0), s.Blob(1));
  if (rc != SQLITE_DONE) return s.Error("cannot read node state");
  return out;
}

Status Store::SetNodeState(const std::string& key, ByteSpan value) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "INSERT OR REPLACE INTO node_state (key, value) VALUES (?, ?)");
  s.Bind(1, key).Bind(2, value);
  if (s.Step() != SQLITE_DONE) return s.Error("cannot write node state");
  return Status::Ok();
}

Status Store::AddToken(const std::string& client, const Hash& token_hash, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "INSERT INTO tokens (client, token_hash, created_ms) VALUES (?,?,?)");
  s.Bind(1, client).Bind(2, ByteSpan(token_hash)).Bind(3, now_ms);
  int rc = s.Step();
  if (rc == SQLITE_CONSTRAINT) return Status::AlreadyExists("client '" + client + "' already has an active token; revoke it first");
  if (rc != SQLITE_DONE) return s.Error("cannot store token");
  return Status::Ok();
}

Status Store::RevokeToken(const std::string& client, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE tokens SET revoked_ms = ? WHERE client = ? AND revoked_ms IS NULL");
  s.Bind(1, now_ms).Bind(2, client);
  if (s.Step() != SQLITE_DONE) return s.Error("cannot revoke token");
  if (sqlite3_changes(db_) == 0) return Status::NotFound("client '" + client + "' has no active token");
  return Status::Ok();
}

Result<int64_t> Store::RevokeAllTokens(int64_t now_ms) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE tokens SET revoked_ms = ? WHERE revoked_ms IS NULL");
  s.Bind(1, now_ms);
  if (s.Step() != SQLITE_DONE) return s.Error("cannot revoke tokens");
  return static_cast<int64_t>(sqlite3_changes(db_));
}

Result<std::optional<std::string>> Store::ClientForToken(const Hash& token_hash) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT client FROM tokens WHERE token_hash = ? AND revoked_ms IS NULL");
  s.Bind(1, ByteSpan(token_hash));
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return s.Error("cannot check token");
  return std::optional<std::string>(s.Text(0));
}

namespace {

constexpr const char* kAccessColumns =
    "seq, event_id, time_ms, action, outcome, actor_id, actor_name, actor_role, on_behalf_of, organisation, client, "
    "case_id, items, consent, prev_hash, hash";

// Reads one access_log row selected with kAccessColumns; false if malformed.
bool ReadAccessRow(Stmt& s, AccessEntry* e) {
  e->seq = s.Int(0);
  if (!s.Array(1, &e->event_id)) return false;
  e->time_ms = s.Int(2);
  e->action = s.Text(3);
  e->outcome = s.Text(4);
  e->actor_id = s.Text(5);
  e->actor_name = s.Text(6);
  e->actor_role = s.Text(7);
  e->on_behalf_of = s.Text(8);
  e->organisation = s.Text(9);
  e->client_system = s.Text(10);
  Bytes case_blob = s.Blob(11);
  if (case_blob.size() == kCaseIdBytes) {
    CaseId c;
    std::copy(case_blob.begin(), case_blob.end(), c.begin());
    e->case_id = c;
  } else if (!case_blob.empty()) {
    return false;
  }
  nlohmann::json items = nlohmann::json::parse(s.Text(12), nullptr, false);
  if (!items.is_array()) return false;
  e->items.clear();
  for (auto& i : items) {
    if (!i.is_string()) return false;
    e->items.push_back(i.get<std::string>());
  }
  e->consent = s.Text(13);
  return s.Array(14, &e->prev_hash) && s.Array(15, &e->hash);
}

}  // namespace

Status Store::AppendAccess(AccessEntry* e, const std::vector<RecordRow>& copies) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  Stmt last(db_, "SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1");
  int rc = last.Step();
  e->seq = 1;
  e->prev_hash.fill(0);
  if (rc == SQLITE_ROW) {
    e->seq = last.Int(0) + 1;
    if (!last.Array(1, &e->prev_hash)) return Status::Corruption("access log tail has a malformed hash");
  } else if (rc != SQLITE_DONE) {
    return last.Error("cannot read the access log");
  } else {  // every entry expired: the chain goes on from the anchor
    AccessAnchor a;
    KRING_RETURN_IF_ERROR(AccessAnchorLocked(&a));
    e->seq = a.upto_seq + 1;
    e->prev_hash = a.hash;
  }
  e->hash = e->ComputeHash();
  Stmt ins(db_, "INSERT INTO access_log (seq, event_id, time_ms, action, outcome, actor_id, actor_name, actor_role, "
                "on_behalf_of, organisation, client, case_id, items, consent, prev_hash, hash) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  ins.Bind(1, e->seq).Bind(2, ByteSpan(e->event_id)).Bind(3, e->time_ms).Bind(4, e->action).Bind(5, e->outcome)
      .Bind(6, e->actor_id).Bind(7, e->actor_name).Bind(8, e->actor_role).Bind(9, e->on_behalf_of)
      .Bind(10, e->organisation).Bind(11, e->client_system);
  if (e->case_id) ins.Bind(12, ByteSpan(*e->case_id));
  ins.Bind(13, nlohmann::json(e->items).dump()).Bind(14, e->consent).Bind(15, ByteSpan(e->prev_hash))
      .Bind(16, ByteSpan(e->hash));
  if (ins.Step() != SQLITE_DONE) return ins.Error("cannot append to the access log");
  std::vector<RecordId> added;
  KRING_RETURN_IF_ERROR(InsertRecordsLocked(copies, e->organisation, e->time_ms, &added));
  KRING_RETURN_IF_ERROR(tx.Commit());
  if (!added.empty()) generation_.fetch_add(1);
  return Status::Ok();
}

Result<std::vector<AccessEntry>> Store::AccessOfCase(const CaseId& case_id, int64_t from_ms, int64_t to_ms) {
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kAccessColumns +
                    " FROM access_log WHERE case_id = ? AND time_ms >= ? AND time_ms < ? ORDER BY seq";
  Stmt s(db_, sql.c_str());
  s.Bind(1, ByteSpan(case_id)).Bind(2, from_ms).Bind(3, to_ms);
  std::vector<AccessEntry> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    AccessEntry e;
    if (!ReadAccessRow(s, &e)) return Status::Corruption("malformed access log entry " + std::to_string(e.seq));
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read the access log");
  return out;
}

Result<AuditReport> Store::VerifyAccessLog() {
  std::lock_guard lock(mu_);
  std::string sql = std::string("SELECT ") + kAccessColumns + " FROM access_log ORDER BY seq";
  Stmt s(db_, sql.c_str());
  AuditReport report;
  AccessAnchor anchor;
  KRING_RETURN_IF_ERROR(AccessAnchorLocked(&anchor));
  // Entries removed past their retention period: the chain starts after the
  // last of them, from the hash kept for it.
  Hash prev = anchor.hash;
  int64_t expected_seq = anchor.upto_seq + 1;
  report.entries = anchor.upto_seq;
  report.expired = anchor.upto_seq;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    AccessEntry e;
    ++report.entries;
    auto broken = [&](int64_t seq, const std::string& why) {
      report.first_broken_seq = seq;
      report.reason = why;
      return report;
    };
    if (!ReadAccessRow(s, &e)) return broken(expected_seq, "entry is malformed");
    if (e.seq != expected_seq) return broken(expected_seq, "entry is missing (the next one is " + std::to_string(e.seq) + ")");
    if (e.prev_hash != prev) return broken(e.seq, "does not link to the entry before it");
    if (e.ComputeHash() != e.hash) return broken(e.seq, "its contents do not match its hash (altered)");
    prev = e.hash;
    ++expected_seq;
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read the access log");
  return report;
}

Result<AccessHead> Store::AccessLogHead() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT seq, hash, time_ms FROM access_log ORDER BY seq DESC LIMIT 1");
  AccessHead h;
  int rc = s.Step();
  if (rc == SQLITE_DONE) {
    AccessAnchor a;
    KRING_RETURN_IF_ERROR(AccessAnchorLocked(&a));
    h.entries = a.upto_seq;
    h.head = a.hash;
    h.last_time_ms = a.time_ms;
    return h;
  }
  if (rc != SQLITE_ROW) return s.Error("cannot read the access log");
  h.entries = s.Int(0);
  h.last_time_ms = s.Int(2);
  if (!s.Array(1, &h.head)) return Status::Corruption("access log tail has a malformed hash");
  return h;
}

Result<std::optional<Hash>> Store::AccessHashAt(int64_t seq) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT hash FROM access_log WHERE seq = ?");
  s.Bind(1, seq);
  int rc = s.Step();
  if (rc == SQLITE_DONE) {
    AccessAnchor a;
    KRING_RETURN_IF_ERROR(AccessAnchorLocked(&a));
    if (a.upto_seq != 0 && seq == a.upto_seq) return std::optional<Hash>(a.hash);
    return std::optional<Hash>();
  }
  if (rc != SQLITE_ROW) return s.Error("cannot read the access log");
  Hash h;
  if (!s.Array(0, &h)) return Status::Corruption("access log entry " + std::to_string(seq) + " has a malformed hash");
  return std::optional<Hash>(h);
}

Status Store::DropCheckpointRecordsLocked(const std::string& author) {
  Stmt aud(db_, "DELETE FROM audience WHERE (hlc, id) IN (SELECT hlc, id FROM records WHERE type = 8 AND author = ?)");
  aud.Bind(1, author);
  if (aud.Step() != SQLITE_DONE) return aud.Error("cannot replace checkpoint");
  Stmt rec(db_, "DELETE FROM records WHERE type = 8 AND author = ?");
  rec.Bind(1, author);
  if (rec.Step() != SQLITE_DONE) return rec.Error("cannot replace checkpoint");
  return Status::Ok();
}

Status Store::AddOwnCheckpoint(const CheckpointRow& c, const RecordRow& transport) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  Stmt ins(db_, "INSERT INTO own_checkpoints (restores, entries, head, time_ms, hlc, record) VALUES (?,?,?,?,?,?)");
  ins.Bind(1, int64_t{c.restores}).Bind(2, c.entries).Bind(3, ByteSpan(c.head)).Bind(4, c.time_ms)
      .Bind(5, static_cast<int64_t>(c.hlc)).Bind(6, ByteSpan(c.record));
  if (ins.Step() != SQLITE_DONE) return ins.Error("cannot store checkpoint");
  KRING_RETURN_IF_ERROR(DropCheckpointRecordsLocked(transport.author));
  std::vector<RecordId> added;
  KRING_RETURN_IF_ERROR(InsertRecordsLocked({transport}, transport.author, c.time_ms, &added));
  KRING_RETURN_IF_ERROR(tx.Commit());
  generation_.fetch_add(1);  // the synced set changed (one record out, one in)
  return Status::Ok();
}

namespace {
// Reads a row selected as (org, holder, restores, entries, head, time_ms, hlc, record).
bool ReadCheckpointRow(Stmt& s, CheckpointRow* c) {
  c->org = s.Text(0);
  c->holder = s.Text(1);
  c->restores = static_cast<uint32_t>(s.Int(2));
  c->entries = s.Int(3);
  c->time_ms = s.Int(5);
  c->hlc = static_cast<HlcTimestamp>(s.Int(6));
  c->record = s.Blob(7);
  return s.Array(4, &c->head);
}
}  // namespace

Result<std::vector<CheckpointRow>> Store::OwnCheckpoints() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT '', '', restores, entries, head, time_ms, hlc, record FROM own_checkpoints ORDER BY n");
  std::vector<CheckpointRow> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    CheckpointRow c;
    if (!ReadCheckpointRow(s, &c)) return Status::Corruption("malformed own checkpoint in the database");
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read checkpoints");
  return out;
}

Result<int64_t> Store::ImportOwnCheckpoints(const std::vector<CheckpointRow>& rows) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  std::set<Bytes> held;  // one scan, not one per row: a year of checkpoints is ~500,000
  {
    Stmt all(db_, "SELECT record FROM own_checkpoints");
    int rc;
    while ((rc = all.Step()) == SQLITE_ROW) held.insert(all.Blob(0));
    if (rc != SQLITE_DONE) return all.Error("cannot read checkpoints");
  }
  Stmt ins(db_, "INSERT INTO own_checkpoints (restores, entries, head, time_ms, hlc, record) VALUES (?,?,?,?,?,?)");
  int64_t added = 0;
  for (const CheckpointRow& c : rows) {
    if (!held.insert(c.record).second) continue;
    ins.Bind(1, int64_t{c.restores}).Bind(2, c.entries).Bind(3, ByteSpan(c.head)).Bind(4, c.time_ms)
        .Bind(5, static_cast<int64_t>(c.hlc)).Bind(6, ByteSpan(c.record));
    if (ins.Step() != SQLITE_DONE) return ins.Error("cannot store checkpoint");
    ins.Reset();
    ++added;
  }
  KRING_RETURN_IF_ERROR(tx.Commit());
  return added;
}

Status Store::HoldCheckpoint(const CheckpointRow& c, const std::optional<RecordRow>& transport, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  Stmt ins(db_, "INSERT OR REPLACE INTO held_checkpoints (org, holder, restores, entries, head, time_ms, hlc, record, "
                "received_ms) VALUES (?,?,?,?,?,?,?,?,?)");
  ins.Bind(1, c.org).Bind(2, c.holder).Bind(3, int64_t{c.restores}).Bind(4, c.entries).Bind(5, ByteSpan(c.head))
      .Bind(6, c.time_ms).Bind(7, static_cast<int64_t>(c.hlc)).Bind(8, ByteSpan(c.record)).Bind(9, now_ms);
  if (ins.Step() != SQLITE_DONE) return ins.Error("cannot store checkpoint");
  if (transport) {
    KRING_RETURN_IF_ERROR(DropCheckpointRecordsLocked(transport->author));
    std::vector<RecordId> added;
    KRING_RETURN_IF_ERROR(InsertRecordsLocked({*transport}, c.holder, now_ms, &added));
  }
  KRING_RETURN_IF_ERROR(tx.Commit());
  if (transport) generation_.fetch_add(1);
  return Status::Ok();
}

Result<std::vector<CheckpointRow>> Store::HeldCheckpoints(const std::string& org) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT org, holder, restores, entries, head, time_ms, hlc, record FROM held_checkpoints "
              "WHERE ?1 = '' OR org = ?1 ORDER BY org, holder");
  s.Bind(1, org);
  std::vector<CheckpointRow> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    CheckpointRow c;
    if (!ReadCheckpointRow(s, &c)) return Status::Corruption("malformed held checkpoint in the database");
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read checkpoints");
  return out;
}

Status Store::BackupTo(const std::string& dest) {
  // O_EXCL: never overwrite; 0600 before a byte is written (the umask cannot widen it).
  int fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot create " + dest + ": " + std::strerror(errno));
  ::close(fd);
  sqlite3* out = nullptr;
  auto fail = [&](const std::string& what) {
    std::string msg = what + ": " + (out ? sqlite3_errmsg(out) : "out of memory");
    sqlite3_close_v2(out);
    ::unlink(dest.c_str());
    return Status::IOError(msg);
  };
  if (sqlite3_open_v2(dest.c_str(), &out, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) return fail("cannot open " + dest);
  {
    std::lock_guard lock(mu_);
    sqlite3_backup* b = sqlite3_backup_init(out, "main", db_, "main");
    if (b == nullptr) return fail("cannot start the backup");
    // All pages in one step: one read transaction, so one consistent snapshot
    // (WAL: writers carry on meanwhile; they wait only for mu_ of this connection).
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) return fail("backup failed");
  }
  // A backup is one self-contained file: no -wal beside it.
  if (sqlite3_exec(out, "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return fail("cannot finish the backup");
  if (sqlite3_close(out) != SQLITE_OK) return fail("cannot close the backup");
  return Status::Ok();
}

// --- the change feed (issue 14) ---

void Store::NotifyChangesLocked() {
  Stmt s(db_, "SELECT COALESCE(MAX(seq), 0) FROM changes");
  int64_t last = s.Step() == SQLITE_ROW ? s.Int(0) : 0;
  {
    std::lock_guard wl(wait_mu_);
    last_change_seq_ = std::max(last_change_seq_, last);
  }
  wait_cv_.notify_all();
}

Status Store::AddChange(const ChangeRow& c) {
  std::lock_guard lock(mu_);
  Stmt ins(db_, "INSERT OR IGNORE INTO changes (time_ms, case_id, kind, ref, items) VALUES (?,?,?,?,?)");
  std::string items;
  for (const std::string& i : c.items) items += (items.empty() ? "" : ",") + i;
  ins.Bind(1, c.time_ms).Bind(2, ByteSpan(c.case_id)).Bind(3, c.kind).Bind(4, ByteSpan(c.ref)).Bind(5, items);
  if (ins.Step() != SQLITE_DONE) return ins.Error("cannot record the change");
  if (sqlite3_changes(db_) > 0) NotifyChangesLocked();
  return Status::Ok();
}

Result<bool> Store::HasChange(const std::string& kind, const RecordId& ref) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT 1 FROM changes WHERE kind = ? AND ref = ?");
  s.Bind(1, kind).Bind(2, ByteSpan(ref));
  int rc = s.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return s.Error("cannot read the change feed");
  return rc == SQLITE_ROW;
}

Result<std::vector<ChangeRow>> Store::ChangesAfter(int64_t seq, size_t max) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT seq, time_ms, case_id, kind, ref, items FROM changes WHERE seq > ? ORDER BY seq LIMIT ?");
  s.Bind(1, seq).Bind(2, static_cast<int64_t>(max));
  std::vector<ChangeRow> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    ChangeRow c;
    c.seq = s.Int(0);
    c.time_ms = s.Int(1);
    if (!s.Array(2, &c.case_id) || !s.Array(4, &c.ref)) return Status::Corruption("malformed change " + std::to_string(c.seq));
    c.kind = s.Text(3);
    std::string items = s.Text(5);
    for (size_t at = 0; at < items.size();) {
      size_t end = items.find(',', at);
      if (end == std::string::npos) end = items.size();
      c.items.push_back(items.substr(at, end - at));
      at = end + 1;
    }
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read the change feed");
  return out;
}

Result<int64_t> Store::LastChangeSeq() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT COALESCE(MAX(seq), 0) FROM changes");
  if (s.Step() != SQLITE_ROW) return s.Error("cannot read the change feed");
  int64_t last = s.Int(0);
  std::lock_guard wl(wait_mu_);
  last_change_seq_ = std::max(last_change_seq_, last);
  return last;
}

bool Store::WaitForChange(int64_t after_seq, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock wl(wait_mu_);
  return wait_cv_.wait_until(wl, deadline, [&] { return waits_cancelled_ || last_change_seq_ > after_seq; }) &&
         !waits_cancelled_;
}

void Store::CancelWaits() {
  {
    std::lock_guard wl(wait_mu_);
    waits_cancelled_ = true;
  }
  wait_cv_.notify_all();
}

// --- Idempotency-Key answers (issue 14) ---

Result<std::optional<IdempotentAnswer>> Store::GetIdempotent(const std::string& client, const Hash& key_hash,
                                                             int64_t not_before_ms) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT request_hash, status, answer, case_id, time_ms FROM idempotency "
              "WHERE client = ? AND key_hash = ? AND time_ms >= ?");
  s.Bind(1, client).Bind(2, ByteSpan(key_hash)).Bind(3, not_before_ms);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<IdempotentAnswer>();
  if (rc != SQLITE_ROW) return s.Error("cannot read idempotency keys");
  IdempotentAnswer a;
  if (!s.Array(0, &a.request)) return Status::Corruption("malformed idempotency entry");
  a.status = static_cast<int>(s.Int(1));
  a.answer = s.Blob(2);
  if (sqlite3_column_type(s.raw(), 3) != SQLITE_NULL) {
    CaseId c;
    if (s.Array(3, &c)) a.case_id = c;
  }
  a.time_ms = s.Int(4);
  return std::optional<IdempotentAnswer>(std::move(a));
}

Status Store::PutIdempotent(const std::string& client, const Hash& key_hash, const IdempotentAnswer& a,
                            int64_t expire_before_ms) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  Stmt del(db_, "DELETE FROM idempotency WHERE time_ms < ?");
  del.Bind(1, expire_before_ms);
  if (del.Step() != SQLITE_DONE) return del.Error("cannot expire idempotency keys");
  Stmt ins(db_, "INSERT OR REPLACE INTO idempotency (client, key_hash, request_hash, status, answer, case_id, time_ms) "
                "VALUES (?,?,?,?,?,?,?)");
  ins.Bind(1, client).Bind(2, ByteSpan(key_hash)).Bind(3, ByteSpan(a.request)).Bind(4, int64_t{a.status})
      .Bind(5, ByteSpan(a.answer));
  if (a.case_id) ins.Bind(6, ByteSpan(*a.case_id));
  ins.Bind(7, a.time_ms);
  if (ins.Step() != SQLITE_DONE) return ins.Error("cannot keep the answer for the idempotency key");
  return tx.Commit();
}

}  // namespace kring

namespace kring {

// ---------------------------------------------------------------- network roster and key history

namespace {
Status PutKeysLocked(sqlite3* db, const std::vector<OrgKeys>& keys) {
  Stmt s(db, "INSERT INTO org_keys (org, sign_pk, box_pk, transport_pk, from_ms, until_ms) VALUES (?,?,?,?,?,?) "
             "ON CONFLICT (org, sign_pk) DO UPDATE SET from_ms = MIN(from_ms, excluded.from_ms), until_ms = MIN(until_ms, excluded.until_ms)");
  for (const OrgKeys& k : keys) {
    s.Bind(1, k.org).Bind(2, ByteSpan(k.sign_pk)).Bind(3, ByteSpan(k.box_pk)).Bind(4, ByteSpan(k.transport_pk))
        .Bind(5, k.from_ms).Bind(6, k.until_ms);
    if (s.Step() != SQLITE_DONE) return s.Error("cannot store key history");
    s.Reset();
  }
  return Status::Ok();
}
}  // namespace

Result<std::optional<Bytes>> Store::CurrentRoster() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT record FROM roster_versions ORDER BY version DESC LIMIT 1");
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<Bytes>();
  if (rc != SQLITE_ROW) return s.Error("cannot read the roster");
  return std::optional<Bytes>(s.Blob(0));
}

Status Store::AdoptRoster(const RosterAdoption& a, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError("cannot begin transaction");
  {
    Stmt s(db_, "INSERT INTO roster_versions (version, id, record, adopted_ms) VALUES (?,?,?,?)");
    s.Bind(1, int64_t{a.version}).Bind(2, ByteSpan(a.row.id)).Bind(3, a.row.record).Bind(4, now_ms);
    if (s.Step() != SQLITE_DONE) return s.Error("cannot store roster version");
  }
  std::vector<RecordId> added;
  KRING_RETURN_IF_ERROR(InsertRecordsLocked({a.row}, a.received_from, now_ms, &added));
  {
    Stmt del(db_, "DELETE FROM partners WHERE org = ?");
    Stmt rem(db_, "INSERT OR REPLACE INTO removed_members (org, version, removed_ms) VALUES (?,?,?)");
    for (const std::string& org : a.removed) {
      del.Bind(1, org);
      if (del.Step() != SQLITE_DONE) return del.Error("cannot remove partner");
      del.Reset();
      rem.Bind(1, org).Bind(2, int64_t{a.version}).Bind(3, now_ms);
      if (rem.Step() != SQLITE_DONE) return rem.Error("cannot record removed member");
      rem.Reset();
    }
    Stmt back(db_, "DELETE FROM removed_members WHERE org = ?");
    Stmt clash(db_, "DELETE FROM partners WHERE org != ?1 AND (sign_pk = ?2 OR transport_pk = ?3)");
    Stmt up(db_, "INSERT INTO partners (org, display_name, sign_pk, box_pk, transport_pk, endpoint, added_ms, source) "
                 "VALUES (?,?,?,?,?,?,?,'roster') ON CONFLICT (org) DO UPDATE SET display_name = excluded.display_name, "
                 "sign_pk = excluded.sign_pk, box_pk = excluded.box_pk, transport_pk = excluded.transport_pk, "
                 "endpoint = excluded.endpoint, source = 'roster'");
    for (const Partner& p : a.members) {
      back.Bind(1, p.identity.org);
      if (back.Step() != SQLITE_DONE) return back.Error("cannot update removed members");
      back.Reset();
      clash.Bind(1, p.identity.org).Bind(2, ByteSpan(p.identity.sign_pk)).Bind(3, ByteSpan(p.identity.transport_pk));
      if (clash.Step() != SQLITE_DONE) return clash.Error("cannot update partners");
      clash.Reset();
      up.Bind(1, p.identity.org).Bind(2, p.identity.display_name).Bind(3, ByteSpan(p.identity.sign_pk))
          .Bind(4, ByteSpan(p.identity.box_pk)).Bind(5, ByteSpan(p.identity.transport_pk)).Bind(6, p.endpoint).Bind(7, now_ms);
      if (up.Step() != SQLITE_DONE) return up.Error("cannot update partner");
      up.Reset();
    }
  }
  KRING_RETURN_IF_ERROR(PutKeysLocked(db_, a.keys));
  KRING_RETURN_IF_ERROR(tx.Commit());
  InvalidatePartners();
  generation_.fetch_add(1);
  return Status::Ok();
}

Result<std::vector<OrgKeys>> Store::KeyHistory() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT org, sign_pk, box_pk, transport_pk, from_ms, until_ms FROM org_keys ORDER BY org, from_ms");
  std::vector<OrgKeys> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    OrgKeys k;
    k.org = s.Text(0);
    if (!s.Array(1, &k.sign_pk) || !s.Array(2, &k.box_pk) || !s.Array(3, &k.transport_pk))
      return Status::Corruption("key history of '" + k.org + "' has malformed keys");
    k.from_ms = s.Int(4);
    k.until_ms = s.Int(5);
    out.push_back(std::move(k));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read key history");
  return out;
}

Status Store::PutKeyHistory(const std::vector<OrgKeys>& keys, const std::optional<RecordRow>& statement,
                            const std::string& received_from, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError("cannot begin transaction");
  KRING_RETURN_IF_ERROR(PutKeysLocked(db_, keys));
  std::vector<RecordId> added;
  if (statement) KRING_RETURN_IF_ERROR(InsertRecordsLocked({*statement}, received_from, now_ms, &added));
  KRING_RETURN_IF_ERROR(tx.Commit());
  generation_.fetch_add(1);
  return Status::Ok();
}

Status Store::SetPartnerKeys(const PublicIdentity& id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE partners SET sign_pk = ?, box_pk = ?, transport_pk = ? WHERE org = ?");
  s.Bind(1, ByteSpan(id.sign_pk)).Bind(2, ByteSpan(id.box_pk)).Bind(3, ByteSpan(id.transport_pk)).Bind(4, id.org);
  if (s.Step() != SQLITE_DONE) return s.Error("cannot update partner keys");
  InvalidatePartners();
  generation_.fetch_add(1);
  return Status::Ok();
}

Result<std::vector<std::pair<std::string, int64_t>>> Store::RemovedMembers() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT org, version FROM removed_members ORDER BY org");
  std::vector<std::pair<std::string, int64_t>> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.emplace_back(s.Text(0), s.Int(1));
  if (rc != SQLITE_DONE) return s.Error("cannot read removed members");
  return out;
}

Status Store::PutResealed(const std::vector<std::pair<RecordId, SealedKey>>& keys) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError("cannot begin transaction");
  Stmt s(db_, "INSERT OR REPLACE INTO resealed_keys (id, sealed) VALUES (?,?)");
  for (const auto& [id, sealed] : keys) {
    s.Bind(1, ByteSpan(id)).Bind(2, ByteSpan(sealed));
    if (s.Step() != SQLITE_DONE) return s.Error("cannot store re-sealed key");
    s.Reset();
  }
  return tx.Commit();
}

Result<std::optional<SealedKey>> Store::Resealed(const RecordId& id) {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT sealed FROM resealed_keys WHERE id = ?");
  s.Bind(1, ByteSpan(id));
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<SealedKey>();
  if (rc != SQLITE_ROW) return s.Error("cannot read re-sealed key");
  SealedKey k{};
  if (!s.Array(0, &k)) return Status::Corruption("malformed re-sealed key");
  return std::optional<SealedKey>(k);
}

Result<std::vector<RecordId>> Store::IdsOfType(RecordType type) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT id FROM records WHERE type = ?");
  s.Bind(1, int64_t{static_cast<uint8_t>(type)});
  std::vector<RecordId> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    RecordId id{};
    if (!s.Array(0, &id)) return Status::Corruption("record with malformed id in the database");
    out.push_back(id);
  }
  if (rc != SQLITE_DONE) return s.Error("cannot list records");
  return out;
}

// --- retention (issue 16; docs/retention.md) ---

Status Store::AccessAnchorLocked(AccessAnchor* out) {
  Stmt s(db_, "SELECT upto_seq, hash, time_ms, removed_ms FROM access_log_expiries ORDER BY n DESC LIMIT 1");
  int rc = s.Step();
  *out = AccessAnchor{};
  if (rc == SQLITE_DONE) return Status::Ok();
  if (rc != SQLITE_ROW) return s.Error("cannot read the access log's anchor");
  out->upto_seq = s.Int(0);
  if (!s.Array(1, &out->hash)) return Status::Corruption("the access log's anchor has a malformed hash");
  out->time_ms = s.Int(2);
  out->removed_ms = s.Int(3);
  return Status::Ok();
}

Result<AccessAnchor> Store::AccessLogAnchor() {
  std::lock_guard lock(mu_);
  AccessAnchor a;
  KRING_RETURN_IF_ERROR(AccessAnchorLocked(&a));
  return a;
}

Status Store::TruncateWalLocked() {
  int log = 0, done = 0;
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
  if (rc != SQLITE_OK) return Status::IOError(std::string("WAL checkpoint (TRUNCATE) did not complete: ") + sqlite3_errmsg(db_));
  return Status::Ok();
}

Result<int64_t> Store::ExpireAccessLog(const std::function<bool(int64_t, const std::optional<CaseId>&)>& expired,
                                       int64_t now_ms) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  // The oldest entries, in chain order, up to the first one still within its
  // period: the chain is cut only at its start, never in the middle.
  int64_t upto = 0, time_ms = 0;
  Hash hash{};
  {  // finalized before the checkpoint below, which an open statement would block
    Stmt scan(db_, "SELECT seq, hash, time_ms, case_id FROM access_log ORDER BY seq");
    int rc;
    while ((rc = scan.Step()) == SQLITE_ROW) {
      std::optional<CaseId> case_id;
      if (CaseId c; scan.Array(3, &c)) case_id = c;
      if (!expired(scan.Int(2), case_id)) break;
      upto = scan.Int(0);
      time_ms = scan.Int(2);
      if (!scan.Array(1, &hash)) return Status::Corruption("access log entry " + std::to_string(upto) + " has a malformed hash");
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return scan.Error("cannot read the access log");
  }
  if (upto == 0) return int64_t{0};
  Stmt anchor(db_, "INSERT INTO access_log_expiries (upto_seq, hash, time_ms, removed_ms) VALUES (?,?,?,?)");
  anchor.Bind(1, upto).Bind(2, ByteSpan(hash)).Bind(3, time_ms).Bind(4, now_ms);
  if (anchor.Step() != SQLITE_DONE) return anchor.Error("cannot record the access log's new anchor");
  Stmt del(db_, "DELETE FROM access_log WHERE seq <= ?");
  del.Bind(1, upto);
  if (del.Step() != SQLITE_DONE) return del.Error("cannot remove expired access-log entries");
  const int64_t n = sqlite3_changes(db_);
  KRING_RETURN_IF_ERROR(tx.Commit());
  (void)TruncateWalLocked();  // a reader in another process may hold it up: TruncateWal() retries
  return n;
}

Status Store::SetHold(const CaseId& case_id, const std::optional<LegalHold>& hold) {
  std::lock_guard lock(mu_);
  if (!hold) {
    Stmt del(db_, "DELETE FROM legal_holds WHERE case_id = ?");
    del.Bind(1, ByteSpan(case_id));
    if (del.Step() != SQLITE_DONE) return del.Error("cannot lift the legal hold");
    if (sqlite3_changes(db_) == 0) return Status::NotFound("no legal hold on case " + CaseIdToHex(case_id));
    return Status::Ok();
  }
  Stmt ins(db_, "INSERT INTO legal_holds (case_id, since_ms, reason) VALUES (?,?,?)");
  ins.Bind(1, ByteSpan(case_id)).Bind(2, hold->since_ms).Bind(3, hold->reason);
  int rc = ins.Step();
  if (rc == SQLITE_CONSTRAINT) return Status::AlreadyExists("case " + CaseIdToHex(case_id) + " is on legal hold already");
  if (rc != SQLITE_DONE) return ins.Error("cannot put the case on legal hold");
  return Status::Ok();
}

Result<std::optional<LegalHold>> Store::HoldOf(const CaseId& case_id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT since_ms, reason FROM legal_holds WHERE case_id = ?");
  s.Bind(1, ByteSpan(case_id));
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<LegalHold>();
  if (rc != SQLITE_ROW) return s.Error("cannot read legal holds");
  return std::optional<LegalHold>(LegalHold{s.Int(0), s.Text(1)});
}

Result<size_t> Store::DestroyRecords(const CaseId& case_id, const std::vector<RecordId>& ids, bool whole_case,
                                     int64_t now_ms) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  if (!tx.ok()) return Status::IOError(std::string("cannot begin transaction: ") + sqlite3_errmsg(db_));
  Stmt del_aud(db_, kDeleteAudience);
  Stmt del(db_, "DELETE FROM records WHERE id = ?");
  Stmt del_unreadable(db_, "DELETE FROM unreadable_fragments WHERE id = ?");
  Stmt mark(db_, "INSERT OR IGNORE INTO destroyed (id, case_id, whole_case, destroyed_ms) VALUES (?,?,?,?)");
  size_t n = 0;
  for (const RecordId& id : ids) {
    del_aud.Bind(1, ByteSpan(id));
    if (del_aud.Step() != SQLITE_DONE) return del_aud.Error("cannot destroy audience");
    del_aud.Reset();
    del_unreadable.Bind(1, ByteSpan(id));
    if (del_unreadable.Step() != SQLITE_DONE) return del_unreadable.Error("cannot destroy");
    del_unreadable.Reset();
    del.Bind(1, ByteSpan(id));
    if (del.Step() != SQLITE_DONE) return del.Error("cannot destroy record");
    del.Reset();
    n += static_cast<size_t>(sqlite3_changes(db_));
    mark.Bind(1, ByteSpan(id)).Bind(2, ByteSpan(case_id)).Bind(3, int64_t{0}).Bind(4, now_ms);
    if (mark.Step() != SQLITE_DONE) return mark.Error("cannot remember a destroyed record");
    mark.Reset();
  }
  if (whole_case) {
    // The label, schedule and hold go with the case; only its id stays, so
    // that a partner's copy of it is refused instead of taken in again.
    for (const char* sql : {"DELETE FROM cases WHERE case_id = ?", "DELETE FROM case_schedule WHERE case_id = ?",
                            "DELETE FROM legal_holds WHERE case_id = ?", "DELETE FROM unreadable_fragments WHERE case_id = ?"}) {
      Stmt s(db_, sql);
      s.Bind(1, ByteSpan(case_id));
      if (s.Step() != SQLITE_DONE) return s.Error("cannot destroy the case");
    }
    mark.Bind(1, ByteSpan(case_id)).Bind(2, ByteSpan(case_id)).Bind(3, int64_t{1}).Bind(4, now_ms);
    if (mark.Step() != SQLITE_DONE) return mark.Error("cannot remember a destroyed case");
  }
  KRING_RETURN_IF_ERROR(tx.Commit());
  generation_.fetch_add(1);
  // secure_delete zeroed the pages in the WAL's copies; checkpointing moves
  // them into the main file and TRUNCATE empties the WAL, so neither keeps
  // the destroyed ciphertext. A reader in another process may hold it up:
  // TruncateWal() retries (the sweep ends with it).
  (void)TruncateWalLocked();
  return n;
}

Status Store::TruncateWal() {
  std::lock_guard lock(mu_);
  return TruncateWalLocked();
}

Result<bool> Store::CaseDestroyed(const CaseId& case_id) {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT 1 FROM destroyed WHERE id = ? AND whole_case = 1");
  s.Bind(1, ByteSpan(case_id));
  int rc = s.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return s.Error("cannot read destroyed cases");
  return rc == SQLITE_ROW;
}

Result<std::vector<bool>> Store::Destroyed(const std::vector<RecordId>& ids) {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT 1 FROM destroyed WHERE id = ?");
  std::vector<bool> out;
  for (const RecordId& id : ids) {
    s.Bind(1, ByteSpan(id));
    int rc = s.Step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return s.Error("cannot read destroyed records");
    out.push_back(rc == SQLITE_ROW);
    s.Reset();
  }
  return out;
}

Status Store::ForgetCaseLabel(const CaseId& case_id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE cases SET label = '' WHERE case_id = ?");
  s.Bind(1, ByteSpan(case_id));
  if (s.Step() != SQLITE_DONE) return s.Error("cannot erase the case label");
  return Status::Ok();
}

Result<bool> Store::MarkUnreadable(const UnreadableFragment& u) {
  std::lock_guard lock(mu_);
  // Only for a fragment still held: a purge may have come in between.
  Stmt s(db_, "INSERT OR IGNORE INTO unreadable_fragments (id, case_id, reason, found_ms) "
              "SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM records WHERE id = ?1)");
  s.Bind(1, ByteSpan(u.id)).Bind(2, ByteSpan(u.case_id)).Bind(3, u.reason).Bind(4, u.found_ms);
  if (s.Step() != SQLITE_DONE) return s.Error("cannot record an unreadable fragment");
  return sqlite3_changes(db_) > 0;
}

Result<std::vector<UnreadableFragment>> Store::UnreadableOfCase(const CaseId& case_id) {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT id, reason, found_ms FROM unreadable_fragments WHERE case_id = ? ORDER BY id");
  s.Bind(1, ByteSpan(case_id));
  std::vector<UnreadableFragment> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    UnreadableFragment u;
    if (!s.Array(0, &u.id)) continue;
    u.case_id = case_id;
    u.reason = s.Text(1);
    u.found_ms = s.Int(2);
    out.push_back(std::move(u));
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read unreadable fragments");
  return out;
}

Result<int64_t> Store::CountUnreadable() {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT COUNT(*) FROM unreadable_fragments");
  if (s.Step() != SQLITE_ROW) return s.Error("cannot count unreadable fragments");
  return s.Int(0);
}

Result<std::vector<StoredFragmentRef>> Store::FragmentsStoredAfter(int64_t seq, size_t max) {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT seq, time_ms, ref FROM changes WHERE seq > ? AND kind = 'item-stored' ORDER BY seq LIMIT ?");
  s.Bind(1, seq).Bind(2, static_cast<int64_t>(max));
  std::vector<StoredFragmentRef> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    StoredFragmentRef f;
    f.seq = s.Int(0);
    f.time_ms = s.Int(1);
    if (!s.Array(2, &f.id)) continue;
    out.push_back(f);
  }
  if (rc != SQLITE_DONE) return s.Error("cannot read stored fragments");
  return out;
}

Result<int64_t> Store::BodyCheckCursor() {
  std::lock_guard lock(read_mu_);
  Stmt s(read_db_, "SELECT upto_seq FROM body_checks WHERE one = 1");
  int rc = s.Step();
  if (rc == SQLITE_DONE) return int64_t{0};
  if (rc != SQLITE_ROW) return s.Error("cannot read the body-check position");
  return s.Int(0);
}

Status Store::SetBodyCheckCursor(int64_t seq) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "INSERT OR REPLACE INTO body_checks (one, upto_seq) VALUES (1, ?)");
  s.Bind(1, seq);
  if (s.Step() != SQLITE_DONE) return s.Error("cannot record the body-check position");
  return Status::Ok();
}

}  // namespace kring
