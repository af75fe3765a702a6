// A node's SQLite database: partners, cases, encrypted records and who may hold them, API tokens.
//
// One file per node, WAL mode, synchronous=FULL: a write that returned ok
// survives kill -9 and power loss. Fragment bodies are stored only as the
// ciphertext the author produced; the content key is stored only sealed
// (inside the fragment, to this organisation's X25519 key).
//
// Thread-safety: every method may be called from any thread. Writes and most
// reads are serialised on one connection; the reads on the ingest path
// (Contains, Destroyed, CaseDestroyed, GetRecord, ListPartners, Resealed)
// and the body checks' reads
// go through a second, read-only connection with its own lock, so they never
// wait for another thread's insert, commit and fsync (WAL: a reader sees the
// last committed state). The partner list is an immutable snapshot, replaced
// when partners change. Other processes (the CLI) may write the same file;
// ChangedByOthers() tells when they did.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "consent/network.h"
#include "crypto/identity.h"
#include "crypto/status.h"
#include "node/access_log.h"
#include "protocol/fragment.h"
#include "protocol/reconcile.h"
#include "protocol/reconcile_index.h"
#include "protocol/records.h"

struct sqlite3;

namespace kring {

// 6: network roster (issue 13); 7: change feed and idempotency (issue 14); 8: retention (issue 16);
// 9: deferred body checks (issue 15).
inline constexpr int kSchemaVersion = 9;

struct Partner {
  PublicIdentity identity;
  std::string endpoint;  // tcp://host:port of its node
  int64_t added_ms = 0;
  bool from_roster = false;  // a member of the network's roster, not added by `peer add`
};

struct CaseSummary {
  CaseId case_id{};
  std::string label;     // empty when the case was created elsewhere
  int64_t fragments = 0; // fragments this node holds for the case
};

struct StoredRecord {
  FragmentId id{};
  RecordType type = RecordType::kFragment;
  HlcTimestamp hlc = 0;
  Bytes record;  // [RecordType][encoding], exactly as received or written
};

// A verified record to store, with the organisations that may hold it.
struct RecordRow {
  RecordId id{};
  RecordType type = RecordType::kFragment;
  CaseId case_id{};
  std::string author;
  std::string kind;    // fragments only
  std::string domain;  // fragments only
  HlcTimestamp hlc = 0;
  ByteSpan record;
  std::vector<std::string> audience;
};

// A stored fragment whose body did not open or validate for this
// organisation (node/body_check.cc): kept, shown as unreadable, never dropped.
struct UnreadableFragment {
  RecordId id{};
  CaseId case_id{};
  std::string reason;  // "content-key", "decrypt" or "invalid" (never body content)
  int64_t found_ms = 0;
};

// A fragment stored after a point of the change feed, for the body checks.
struct StoredFragmentRef {
  int64_t seq = 0;      // its item-stored change
  int64_t time_ms = 0;  // when this node stored it
  RecordId id{};
};

// What adopting a roster version changes, in one transaction.
struct RosterAdoption {
  uint32_t version = 0;
  RecordRow row;                     // the version as a synced record (type 11)
  std::string received_from;
  std::vector<Partner> members;      // every member but this node: partners from now on
  std::vector<std::string> removed;  // members of the previous version that are not in this one: cut off
  std::vector<OrgKeys> keys;         // key history changes (consent/network.h RosterKeyChanges)
};

// An access-log checkpoint as stored: the signed record and the fields the store indexes.
struct CheckpointRow {
  std::string org;       // whose log
  std::string holder;    // held checkpoints: who handed it to us (org itself for a partner's own)
  uint32_t restores = 0;
  int64_t entries = 0;
  Hash head{};
  int64_t time_ms = 0;
  HlcTimestamp hlc = 0;
  Bytes record;          // [RecordType::kCheckpoint][encoding]
};

// The access log's length and its last entry's hash (zeros when empty).
struct AccessHead {
  int64_t entries = 0;
  Hash head{};
  int64_t last_time_ms = 0;  // the last entry's time; 0 when empty
};

// One entry of the change feed as stored (docs/api.md, "Follow what changed").
struct ChangeRow {
  int64_t seq = 0;       // assigned by the store, increasing, never reused
  int64_t time_ms = 0;   // when this node stored the change
  CaseId case_id{};
  std::string kind;      // item-stored, case-opened, consent-given, consent-withdrawn, consent-expired, regie-changed, purge
  RecordId ref{};        // the record; for a purge its own random id
  std::vector<std::string> items;  // a purge: the versions purged (hex)
};

// The first answer to a POST with an Idempotency-Key.
struct IdempotentAnswer {
  Hash request{};   // what was asked: method, path and body
  int status = 0;
  Bytes answer;     // sealed (node/api.cc): status line fields, headers, body
  std::optional<CaseId> case_id;
  int64_t time_ms = 0;
};

// The start of the access log after entries past their period were removed:
// the last removed entry's position and hash (zeros: nothing removed yet).
struct AccessAnchor {
  int64_t upto_seq = 0;
  Hash hash{};
  int64_t time_ms = 0;     // the last removed entry's time
  int64_t removed_ms = 0;  // when they were removed
};

// A case this organisation keeps from its sweep (a dispute, an investigation).
struct LegalHold {
  int64_t since_ms = 0;
  std::string reason;
};

class Store {
 public:
  // Opens or creates the database at `path` and migrates it to kSchemaVersion.
  // `vfs` names a registered SQLite VFS (tests: node/fault_vfs.h); empty: the default.
  static Result<std::unique_ptr<Store>> Open(const std::string& path, const std::string& vfs = "");
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // --- partners ---
  // AlreadyExists if the org is a partner; Conflict if another partner uses the same keys.
  Status AddPartner(const Partner& p);
  Status RemovePartner(const std::string& org);  // NotFound if absent
  Result<std::vector<Partner>> ListPartners();
  // The partners as an immutable snapshot, read afresh only after a change
  // (here, or by another process as ChangedByOthers() notices): no lock of
  // the write connection is taken.
  Result<std::shared_ptr<const std::vector<Partner>>> Partners();

  // True when another connection (another process) committed a change
  // since the previous call. Cheap: reads SQLite's data_version.
  bool ChangedByOthers();

  // --- cases ---
  Status CreateCase(const CaseId& id, const std::string& label, int64_t now_ms);
  Result<bool> CaseKnown(const CaseId& id);  // created here or holding records of it
  Result<std::vector<CaseSummary>> ListCases();

  // --- records ---
  // Stores verified records and their audiences in one transaction, skipping
  // ids already stored. Returns the ids newly stored. Durable when it returns.
  // InvalidArgument, storing none, if an hlc exceeds 2^63-1 (SQLite's INTEGER).
  Result<std::vector<RecordId>> PutRecords(const std::vector<RecordRow>& rows, const std::string& received_from,
                                           int64_t now_ms);
  // A fragment whose audience is its recipients. Returns true when newly stored.
  Result<bool> PutFragment(const Fragment& f, const FragmentId& id, ByteSpan record,
                           const std::string& received_from, int64_t now_ms);
  // Replaces the audience of records (ids not in the list keep theirs),
  // writing only those that differ. Returns the ids whose audience gained
  // an organisation (they must be sent to it).
  Result<std::vector<RecordId>> SetAudiences(const std::vector<std::pair<RecordId, std::vector<std::string>>>& audiences);
  // Removes records and their audiences (a purge after withdrawal). Returns how many went.
  Result<size_t> DeleteRecords(const std::vector<RecordId>& ids);
  Result<std::optional<StoredRecord>> GetRecord(const FragmentId& id);
  // Which of `ids` are stored (by index into `ids`).
  Result<std::vector<bool>> Contains(const std::vector<RecordId>& ids);
  // All records of a case, oldest first; optionally only one type.
  Result<std::vector<StoredRecord>> RecordsOfCase(const CaseId& id, std::optional<RecordType> type = std::nullopt);
  // The control records of a case that decide its consent state (genesis,
  // consent, withdrawal, regie change, citizen key and its revocation, close, reopen and erasure request; not key grants or erasure answers), oldest first.
  Result<std::vector<StoredRecord>> DecisionRecordsOfCase(const CaseId& id);
  // The cases this node holds any record of.
  Result<std::vector<CaseId>> CasesWithRecords();
  // The records `org` may hold, as reconciliation keys sorted by (hlc, id);
  // with `also`, only those `also` may hold too. A node reconciles with a
  // partner the records both may hold: both sides compute that same set
  // from the same consent state, so what one holds and the other may not
  // never shows up as a difference.
  Result<std::vector<ItemKey>> ItemsFor(const std::string& org, const std::string& also = "");
  // The reconciliation index of every record this node holds, for all
  // partners (protocol/reconcile_index.h): built from the database now
  // (O(records)), then kept up to date by every commit through this Store:
  // SQLite's pre-update hook collects each audience row added or removed,
  // the WAL hook hands them to the index once their transaction is
  // committed, the rollback hook drops them when it is not. O(log records)
  // per row, under the index's own lock, taken after mu_. Other processes'
  // writes are not seen: RebuildReconcileIndex when ChangedByOthers.
  // Nothing else may install SQLite hooks on this connection, nor set
  // PRAGMA wal_autocheckpoint (it replaces the WAL hook; the hook
  // checkpoints as SQLite's own would, at 1,000 pages).
  Status EnableReconcileIndex(const std::string& self_org);
  Status RebuildReconcileIndex();
  // nullptr until EnableReconcileIndex.
  ReconcileIndex* reconcile_index() const { return index_.get(); }
  Result<bool> InAudience(const FragmentId& id, const std::string& org);
  Result<std::vector<std::string>> AudienceOf(const RecordId& id);
  // Of `ids`, the records `org` may hold, each once, in an order a receiver
  // can accept them in (genesis, consents, withdrawals and regie changes,
  // then fragments, then key grants, then access records, then checkpoints;
  // each by hlc), up to `max_bytes` of records in all.
  // `served`, when given, receives the ids of the records returned, in order.
  // With `also`, only records `also` may hold too (this node: it never
  // passes on what it may not hold itself).
  Result<std::vector<Bytes>> RecordsForPeer(const std::vector<RecordId>& ids, const std::string& org, size_t max_bytes,
                                            std::vector<RecordId>* served = nullptr, const std::string& also = "");
  Result<HlcTimestamp> MaxHlc();
  // The newest hlc of the records `org` wrote (0: none). O(log n).
  Result<HlcTimestamp> MaxOwnHlc(const std::string& org);
  Result<int64_t> CountFragments();  // O(1): a counter kept by triggers
  // When each case's decisions next change by themselves (0: due now).
  // PutRecords marks a case due when it stores a record deciding it; a
  // recompute then records the case's next change (nullopt: none).
  Result<std::vector<std::pair<CaseId, int64_t>>> CaseSchedule();
  Status SetNextChange(const CaseId& case_id, std::optional<int64_t> next_ms);
  // Small facts the node keeps about itself between runs.
  Result<std::optional<Bytes>> GetNodeState(const std::string& key);
  Status SetNodeState(const std::string& key, ByteSpan value);
  // Every (key, value) whose key starts with `prefix`, by key.
  Result<std::vector<std::pair<std::string, Bytes>>> NodeStateWithPrefix(const std::string& prefix);
  // Bumped on every record this process stores; lets callers cache per-peer sets.
  uint64_t generation() const;

  // --- network roster and key history (consent/network.h decides; this stores) ---
  // The newest adopted roster version ([RecordType::kRoster][encoding]); nullopt: none.
  Result<std::optional<Bytes>> CurrentRoster();
  Status AdoptRoster(const RosterAdoption& a, int64_t now_ms);
  // Every organisation's key history, by org, then from_ms.
  Result<std::vector<OrgKeys>> KeyHistory();
  // Adds or narrows key history entries (until_ms only ever shrinks) and
  // stores the rotation statement that says so, in one transaction.
  Status PutKeyHistory(const std::vector<OrgKeys>& keys, const std::optional<RecordRow>& statement,
                       const std::string& received_from, int64_t now_ms);
  // The keys a partner's node is pinned to (at a rotation's switch time).
  Status SetPartnerKeys(const PublicIdentity& id);
  // Organisations a roster version removed, with that version.
  Result<std::vector<std::pair<std::string, int64_t>>> RemovedMembers();
  // Content keys re-sealed to this node's own new box key after a rotation.
  Status PutResealed(const std::vector<std::pair<RecordId, SealedKey>>& keys);
  Result<std::optional<SealedKey>> Resealed(const RecordId& id);
  Result<std::vector<RecordId>> IdsOfType(RecordType type);

  // --- API client tokens (only a hash is stored) ---
  Status AddToken(const std::string& client, const Hash& token_hash, int64_t now_ms);  // AlreadyExists if active
  Status RevokeToken(const std::string& client, int64_t now_ms);                       // NotFound if none active
  Result<std::optional<std::string>> ClientForToken(const Hash& token_hash);          // active tokens only
  // Revokes every active token (after a restore); returns how many.
  Result<int64_t> RevokeAllTokens(int64_t now_ms);

  // --- access log (NEN 7513) ---
  // Appends `e` to the chain: sets seq, prev_hash and hash; stores `copies`
  // (the signed record of it for the regie organisation) in the same
  // transaction. Durable when it returns.
  Status AppendAccess(AccessEntry* e, const std::vector<RecordRow>& copies = {});
  // Entries about `case_id` with from_ms <= time < to_ms, oldest first.
  Result<std::vector<AccessEntry>> AccessOfCase(const CaseId& case_id, int64_t from_ms, int64_t to_ms);
  // Recomputes the whole chain and names the first entry that does not match.
  Result<AuditReport> VerifyAccessLog();
  Result<AccessHead> AccessLogHead();
  // The hash stored for entry `seq`; nullopt when there is none.
  Result<std::optional<Hash>> AccessHashAt(int64_t seq);

  // --- access-log checkpoints (node/checkpoint.h decides; this only stores) ---
  // Appends a checkpoint this node signed, and makes `transport` (its record,
  // audience: this node and its partners) the one own checkpoint in the
  // synced set, replacing the previous one. One transaction.
  Status AddOwnCheckpoint(const CheckpointRow& c, const RecordRow& transport);
  Result<std::vector<CheckpointRow>> OwnCheckpoints();  // oldest first
  // Appends those of `rows` (own checkpoints from the database a restore
  // replaces) not yet stored, in their order; the synced one is unchanged.
  // Returns how many were added.
  Result<int64_t> ImportOwnCheckpoints(const std::vector<CheckpointRow>& rows);
  // Keeps `c` as the checkpoint of c.org held from c.holder, replacing the
  // one held before. `transport`, when given (a partner's own checkpoint),
  // replaces c.org's checkpoint record in the synced set. One transaction.
  Status HoldCheckpoint(const CheckpointRow& c, const std::optional<RecordRow>& transport, int64_t now_ms);
  // Held checkpoints, of `org` only unless it is empty; by org, then holder.
  Result<std::vector<CheckpointRow>> HeldCheckpoints(const std::string& org = "");

  // --- the change feed ---
  // PutRecords records a change for every new fragment, genesis, consent,
  // withdrawal and regie change in the same transaction. AddChange records
  // the others (a consent that expired, a purge); a second change with the
  // same (kind, ref) is ignored.
  Status AddChange(const ChangeRow& c);
  Result<bool> HasChange(const std::string& kind, const RecordId& ref);
  // Up to `max` changes with seq > `seq`, in order.
  Result<std::vector<ChangeRow>> ChangesAfter(int64_t seq, size_t max);
  Result<int64_t> LastChangeSeq();
  // Blocks until this process stored a change with seq > `after_seq` (true),
  // the deadline passes or CancelWaits() was called (false). Woken by the
  // commit itself (a condition variable), not by polling.
  bool WaitForChange(int64_t after_seq, std::chrono::steady_clock::time_point deadline);
  // Wakes every WaitForChange for good (the node is stopping).
  void CancelWaits();

  // --- Idempotency-Key answers, per client system ---
  // The answer kept for (client, key_hash) since `not_before_ms`, if any.
  Result<std::optional<IdempotentAnswer>> GetIdempotent(const std::string& client, const Hash& key_hash,
                                                        int64_t not_before_ms);
  // Keeps `a`, dropping every answer older than `expire_before_ms`.
  Status PutIdempotent(const std::string& client, const Hash& key_hash, const IdempotentAnswer& a,
                       int64_t expire_before_ms);

  // --- retention (docs/retention.md) ---
  // Removes the oldest access-log entries for which expired(time_ms, case)
  // holds, up to the first one for which it does not (the chain is cut at
  // its start only), and keeps the last removed entry's (seq, hash) as the
  // chain's new anchor; the WAL is truncated after. Returns how many went.
  Result<int64_t> ExpireAccessLog(const std::function<bool(int64_t, const std::optional<CaseId>&)>& expired,
                                  int64_t now_ms);
  Result<AccessAnchor> AccessLogAnchor();
  // Puts a case on legal hold (AlreadyExists if it is) or, with nullopt,
  // lifts it (NotFound if there was none).
  Status SetHold(const CaseId& case_id, const std::optional<LegalHold>& hold);
  Result<std::optional<LegalHold>> HoldOf(const CaseId& case_id);
  // Destroys records of a case with their audiences and remembers their ids
  // (never content); with `whole_case`, also the case's label, schedule and
  // hold, and remembers the case. secure_delete is on; the WAL is
  // checkpointed and truncated after, so no copy of the destroyed bytes
  // stays in the database, its free pages or the WAL. Returns how many records went.
  Result<size_t> DestroyRecords(const CaseId& case_id, const std::vector<RecordId>& ids, bool whole_case, int64_t now_ms);
  Result<bool> CaseDestroyed(const CaseId& case_id);
  // Empties the label of a case (an erasure request): secure_delete zeroes the old text.
  Status ForgetCaseLabel(const CaseId& case_id);
  // Checkpoints the WAL into the main file and truncates it to zero bytes.
  // IOError when a reader (another process) keeps it from completing.
  Status TruncateWal();
  // Which of `ids` this node destroyed (by index into `ids`).
  Result<std::vector<bool>> Destroyed(const std::vector<RecordId>& ids);

  // --- deferred body checks (node/body_check.cc) ---
  // Keeps that a fragment's body is unreadable; true when newly kept.
  Result<bool> MarkUnreadable(const UnreadableFragment& u);
  Result<std::vector<UnreadableFragment>> UnreadableOfCase(const CaseId& case_id);
  Result<int64_t> CountUnreadable();
  // Fragments stored after change `seq` (their item-stored changes), oldest first, up to `max`.
  Result<std::vector<StoredFragmentRef>> FragmentsStoredAfter(int64_t seq, size_t max);
  // The change up to which every stored fragment's body was checked (kept across restarts).
  Result<int64_t> BodyCheckCursor();
  Status SetBodyCheckCursor(int64_t seq);

  // Copies the database to `dest` with SQLite's online backup API: one
  // consistent snapshot, while other connections keep writing. `dest` must
  // not exist; it is created mode 0600.
  Status BackupTo(const std::string& dest);

 private:
  explicit Store(sqlite3* db);
  Status Migrate();
  Status Exec(const char* sql);
  Status AccessAnchorLocked(AccessAnchor* out);
  Status TruncateWalLocked();
  // Deletes `author`'s checkpoint records from the synced set (inside a transaction, with mu_).
  Status DropCheckpointRecordsLocked(const std::string& author);
  // PutRecords' inserts, inside a transaction the caller holds (with mu_).
  Status InsertRecordsLocked(const std::vector<RecordRow>& rows, const std::string& received_from, int64_t now_ms,
                             std::vector<RecordId>* added);

  // After a commit that added changes: wakes WaitForChange. REQUIRES: mu_ held.
  void NotifyChangesLocked();
  Status RebuildReconcileIndexLocked();
  // SQLite hooks feeding index_ (see EnableReconcileIndex); ctx is the Store.
  static void PreUpdateHook(void* ctx, sqlite3* db, int op, const char* db_name, const char* table, long long key1,
                            long long key2);
  static int WalHook(void* ctx, sqlite3* db, const char* db_name, int pages);
  static void RollbackHook(void* ctx);

  // Drops the partner snapshot (after a change to the partners).
  void InvalidatePartners();

  std::mutex mu_;
  sqlite3* db_;
  std::mutex read_mu_;  // guards read_db_; never held while waiting for mu_
  sqlite3* read_db_ = nullptr;  // query_only: the reads named at the top of this file
  std::mutex partners_mu_;  // guards the two below
  std::shared_ptr<const std::vector<Partner>> partners_;
  uint64_t partners_version_ = 0;  // bumped by InvalidatePartners: a read begun before is not kept
  bool changes_added_ = false;  // guarded by mu_: set by InsertRecordsLocked
  std::mutex wait_mu_;          // guards the two below; never held while waiting for mu_
  std::condition_variable wait_cv_;
  int64_t last_change_seq_ = 0;
  bool waits_cancelled_ = false;
  int64_t data_version_ = -1;
  std::atomic<uint64_t> generation_{0};
  std::unique_ptr<ReconcileIndex> index_;
  std::vector<ReconcileIndex::RowChange> index_pending_;  // guarded by mu_: this transaction's audience rows
};

}  // namespace kring
