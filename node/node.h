// A kring node: identity, store, clock and sync engine, and the case, consent and plan operations behind the API.
//
// Every change to a case (a record written here or received from a partner,
// or a consent's validity window opening or closing) recomputes who may hold
// each of the case's records (consent/case_state.h), purges what this
// organisation may no longer hold, re-seals content keys to organisations
// granted access late, and queues what partners newly may hold.
//
// Thread-safety: all public methods may be called from any thread; the
// operations on one case are serialised on that case's lock.
#pragma once

#include <atomic>
#include <functional>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "consent/case_state.h"
#include "consent/network.h"
#include "crypto/identity.h"
#include "node/checkpoint.h"
#include "node/retention.h"
#include "node/store.h"
#include "node/sync.h"
#include "protocol/fragment.h"
#include "protocol/hlc.h"
#include "protocol/records.h"
#include "protocol/roster.h"

namespace kring {

inline constexpr const char* kVersion = "0.1.0";

// The record types consent/case_state.h decides on.
inline bool IsControlType(RecordType t) { return t != RecordType::kFragment && t != RecordType::kAccessRecord; }

// One-time enrolment codes a person types from paper: letters and digits
// without look-alikes (no 0, O, 1, I, L, U), in dash-separated groups.
// 16 of 30 symbols: log2(30^16) = 78.5 bits.
inline constexpr std::string_view kInvitationAlphabet = "23456789ABCDEFGHJKMNPQRSTVWXYZ";
inline constexpr size_t kInvitationGroups = 4;
inline constexpr size_t kInvitationGroupChars = 4;
inline constexpr int64_t kInvitationValidMs = 7LL * 24 * 60 * 60 * 1000;
static_assert(kInvitationAlphabet.size() == 30);
// The code as typed, upper-cased, without spaces and dashes; empty when it
// holds anything else or has the wrong length.
std::string NormaliseInvitationCode(std::string_view typed);

std::string KeyFilePath(const std::string& data_dir);
std::string DatabasePath(const std::string& data_dir);

// Creates a node's data directory (mode 0700), key file (0600) and database.
// AlreadyExists if DIR already holds a node: init never overwrites keys.
Result<PublicIdentity> InitNode(const std::string& data_dir, const std::string& org, const std::string& display_name);

// The person a client system acts for (from the API's X-Kring-* headers).
struct Actor {
  std::string client;  // the client system's token name
  std::string id;
  std::string name;
  std::string role;
  std::string on_behalf_of;
};

struct ConsentInput {
  std::string grantee;
  std::vector<std::string> domains;
  std::string purpose;
  std::string basis;
  int64_t valid_from_ms = 0;
  int64_t valid_until_ms = 0;  // 0: open-ended
  std::string given_by;
  std::string evidence_reference;
};

struct ItemInput {
  std::string kind;
  std::string domain;
  nlohmann::json data;
  std::vector<FragmentId> supersedes;
  // An edit's If-Match: the item's ETag (ItemEtag) the writer saw; empty:
  // none. FailedPrecondition, writing nothing, when the item's heads moved.
  std::string if_match;
};

struct ItemWritten {
  FragmentId item{};
  FragmentId version{};
  bool conflict = false;  // the item has more than one head after this write
  std::string etag;       // the item's ETag after this write (empty for a regisseur item)
};

// The ETag of a plan item: its heads (the versions no readable version
// supersedes), the one version's id, or a hash of them all when in conflict.
std::string ItemEtag(std::vector<FragmentId> heads);

// One plan item as this organisation may see it (GET .../items/{item}).
struct ItemRead {
  nlohmann::json item;  // {"case","item","kind","domain","current","history"}
  std::vector<std::string> versions;  // hex ids of the versions shown, for the access log
  std::vector<std::string> consents;  // hex ids of the consents that allowed reading
  std::string etag;
};

// One entry of the change feed as the API shows it.
struct Change {
  int64_t seq = 0;
  int64_t time_ms = 0;
  CaseId case_id{};
  std::string kind;
  nlohmann::json ids = nlohmann::json::object();  // item, version, item_kind, consent, withdrawal, record, versions
};

struct ChangePage {
  std::vector<Change> changes;
  int64_t next_seq = 0;  // continue after this (past changes hidden from this organisation too)
};

// A plan as this organisation may see it, with what the access log needs.
struct PlanRead {
  nlohmann::json plan;
  std::vector<std::string> versions;  // hex ids of the versions shown or in conflict
  std::vector<std::string> consents;  // hex ids of the consents that allowed reading
};

// JSON shapes the API and the export share (docs/api.md).
nlohmann::json ConsentToJson(const ConsentView& v);
nlohmann::json AccessEntryToJson(const AccessEntry& e);
// {"reason", "since", "by", "record", "retention": {"rule", "period"}}, or null while open.
nlohmann::json ClosureToJson(const std::optional<ClosureView>& c);
// The plan's (and FHIR CarePlan's) status: "active" while open; closed:
// "completed" when the goals were reached, else "revoked".
const char* PlanStatusOf(const std::optional<ClosureView>& c);

class Node : public RecordSink {
 public:
  using WallClock = HybridClock::WallClock;

  // Loads DIR's key file and opens its database. `wall` is the clock consent
  // windows are judged by (tests pass a fake one).
  static Result<std::unique_ptr<Node>> Open(const std::string& data_dir, WallClock wall = &HybridClock::SystemMillis);
  ~Node() override;

  // Starts syncing with partners (binds `sync.listen`) and the timer that
  // ends consents at valid_until.
  Status StartSync(SyncOptions sync);
  void Stop();

  // This organisation's public keys now (they change at a key rotation).
  PublicIdentity identity() const { return Keys()->pub; }
  const std::string& org() const { return org_; }
  Store& store() { return *store_; }
  SyncEngine* sync() { return sync_.get(); }
  const std::string& data_dir() const { return data_dir_; }
  uint64_t withdrawals_processed() const { return withdrawals_processed_.load(); }
  // Fragments whose body did not open or validate for this organisation
  // (kept, shown as unreadable), for kring_unreadable_fragments_total.
  uint64_t unreadable_fragments() const { return unreadable_fragments_.load(); }
  // The background lane checks a received fragment's body no sooner than
  // this long after it was stored (default 0; tests of crash recovery).
  void SetBodyCheckDelay(int64_t delay_ms) { body_check_delay_ms_.store(delay_ms); }
  // Refusals of the citizen's input at the portal (bad codes, signatures), by reason, for /metrics.
  void CountCitizenRejection(const std::string& reason);
  std::map<std::string, uint64_t> CitizenRejections();

  // --- cases ---
  Result<CaseId> CreateCase(const std::string& label);
  // The case's consent state as this node knows it. NotFound if this node
  // takes no part in the case.
  Result<CaseState> State(const CaseId& case_id);

  // --- consent (only the regie organisation records; a grantee may decline) ---
  Result<RecordId> RecordConsent(const CaseId& case_id, const ConsentInput& in);
  Result<RecordId> WithdrawConsent(const CaseId& case_id, const RecordId& consent);

  // --- the citizen (docs/citizen.md; node/citizen.cc) ---
  // A one-time enrolment code, shown once; the node keeps only its hash.
  struct CitizenInvitation {
    std::string code;  // kInvitationGroups groups of kInvitationGroupChars from kInvitationAlphabet, dash-separated
    Hash hash{};
    int64_t expires_ms = 0;
  };
  // By the regie organisation only (PermissionDenied otherwise). `given_by`
  // is "burger" or a representative's pseudonymous reference.
  Result<CitizenInvitation> InviteCitizen(const CaseId& case_id, const std::string& given_by);
  // What a device must sign to enrol with `code`. NotFound: no such code;
  // PermissionDenied: expired; AlreadyExists: used. Uses nothing up.
  struct EnrolmentOffer {
    CaseId case_id{};
    Hash invitation{};
    std::string statement;  // EnrolmentStatement, once the key is known: see EnrolCitizen
  };
  Result<EnrolmentOffer> CheckInvitation(const std::string& code);
  // Uses `code` once: binds `key` to its case with a CitizenKey record, when
  // `possession` is the key's signature over EnrolmentStatement. Errors as
  // CheckInvitation; Unauthenticated for a bad proof of possession.
  Result<RecordId> EnrolCitizen(const std::string& code, const SignPublicKey& key, const Signature& possession,
                                CaseId* case_id_out);
  // A record the citizen is to sign, with the case's heads as parents, the
  // citizen key `key` and a fresh nonce filled in; the statement is
  // CitizenStatement(draft). The draft stays with the caller (the portal session).
  Result<ControlRecord> DraftCitizenGrant(const CaseId& case_id, const RecordId& key, const ConsentInput& in);
  Result<ControlRecord> DraftCitizenWithdrawal(const CaseId& case_id, const RecordId& key, const RecordId& consent);
  Result<ControlRecord> DraftCitizenKeyRevocation(const CaseId& case_id, const RecordId& key, const RecordId& revoked);
  // Completes a draft with the citizen's signature, signs it as this
  // organisation and stores it, through the admission rule (PermissionDenied
  // names the refusal: a bad signature, a revoked key, a changed case).
  Result<RecordId> CommitCitizenRecord(const CaseId& case_id, ControlRecord draft, const Signature& signature);
  // The regie organisation revokes a citizen key (a lost phone) on the
  // citizen's word, `reference` naming what it acted on.
  Result<RecordId> RevokeCitizenKey(const CaseId& case_id, const RecordId& key, const std::string& reference);

  // --- plan ---
  // Validates and writes a plan item (a new one, or an edit superseding
  // versions). A `regisseur` item becomes a RegieChange. PermissionDenied when
  // this organisation may not write in that domain or edit that item.
  Result<ItemWritten> WriteItem(const CaseId& case_id, const ItemInput& in);
  Result<PlanRead> ReadPlan(const CaseId& case_id);
  // One item with its history. NotFound when this organisation may read no version of it.
  Result<ItemRead> ReadItem(const CaseId& case_id, const FragmentId& item);

  // --- the change feed (node/changes.cc) ---
  // Up to `limit` changes after `after_seq` this organisation may see now
  // (consent/admission.h decides), looking at no more than kMaxChangesScanned
  // stored ones per call.
  static constexpr size_t kMaxChangesScanned = 5000;
  Result<ChangePage> Changes(int64_t after_seq, size_t limit);

  // --- closing, retention, legal hold and export (node/lifecycle.cc; docs/retention.md) ---
  // By the regie organisation: ends the case (read-only from now on) with
  // one of kCloseReasons; the close record carries this organisation's
  // retention rule for the case (RuleForCase, `basis` naming the legal basis
  // it works under here, may be empty). Conflict: closed already;
  // PermissionDenied: not the regie organisation; InvalidArgument: reason.
  Result<RecordId> CloseCase(const CaseId& case_id, const std::string& reason, const std::string& basis);
  // Conflict: the case is not closed.
  Result<RecordId> ReopenCase(const CaseId& case_id, const std::string& reason);
  // This node's own hold on a case: suspends its sweep of the case (and of
  // the access log from the case's first entry on). NotFound for a case this
  // node takes no part in; AlreadyExists / NotFound for a hold that is / is not there.
  Status PutHold(const CaseId& case_id, const std::string& reason);
  Status LiftHold(const CaseId& case_id);
  Result<std::optional<LegalHold>> HoldOf(const CaseId& case_id);
  // By the regie organisation, for a closed case: the citizen's erasure
  // request (AVG art. 17), `reference` naming what it acted on. Every node
  // that takes part erases what its organisation is not obliged by law to
  // keep and answers (EraseOnRequestLocked). Conflict: the case is open.
  Result<RecordId> RequestErasure(const CaseId& case_id, const std::string& reference);
  // The requests and the answers this node holds (the regie organisation:
  // every organisation's; others: their own), and who has not answered yet.
  Result<nlohmann::json> ErasureStatus(const CaseId& case_id);

  // What the sweep destroyed (ids and counts, never content).
  struct SweepReport {
    size_t cases_destroyed = 0;     // whole cases: records, key grants, label, audiences
    size_t records_destroyed = 0;   // records of cases, in all
    size_t fragments_destroyed = 0;
    size_t cases_held = 0;          // closed cases a legal hold kept
    int64_t access_entries_expired = 0;
  };
  // Destroys what the retention rules (the store's, read afresh) say is due
  // now. The running node calls it every sweep interval.
  Result<SweepReport> SweepRetention();
  // How often the running node sweeps (0: never); takes effect at the next tick.
  void SetSweepInterval(int64_t interval_ms);
  // What this organisation may read of a case, as one JSON document: the
  // plan, the consents, the regie, closing and hold, and the access log as
  // ReadPlan and AccessLogOf give them. The caller logs it (action "export").
  Result<nlohmann::json> ExportCase(const CaseId& case_id);

  // Evidence of misbehaviour this node saw in a case: an organisation that
  // signed a record not following its own earlier record (a fork).
  struct Fork {
    std::string org;
    RecordId record{};     // the refused record
    RecordId follows_not{};  // the author's own record it should have followed
    int64_t seen_ms = 0;
  };
  Result<std::vector<Fork>> ForksOf(const CaseId& case_id);

  // Appends an entry to this node's access log and, when another
  // organisation holds regie of the case, sends it a signed copy.
  Status AppendAccess(AccessEntry* e);
  // Records a purge or other system event in the access log.
  void LogSystemAccess(const char* action, const CaseId& case_id, std::vector<std::string> items);
  // The access log of a case as this node may show it: its own entries, and
  // when it holds regie, every partner's entries about the case too. Oldest first.
  Result<std::vector<AccessEntry>> AccessLogOf(const CaseId& case_id, int64_t from_ms, int64_t to_ms);

  // --- access-log checkpoints (node/checkpoint.cc) ---
  // When the running node signs checkpoints; takes effect at the next tick.
  void SetCheckpointPolicy(CheckpointPolicy policy);
  // Signs a checkpoint when the policy says one is due (or, with `stopping`,
  // whenever the log grew since the last), and queues it for partners.
  Status CheckpointIfDue(bool stopping);
  // A checkpoint record (RecordType::kCheckpoint) pushed by partner `from`:
  // its own (kept as the latest of `from`, and synced back to it alone), or
  // ours handed back (kept for audit verify). Conflict when `from`'s log went
  // back without a declared restore (the earlier checkpoint is kept);
  // Corruption, PermissionDenied, Unauthenticated for records to reject.
  Status IngestCheckpoint(const std::string& from, ByteSpan bytes);

  // --- the network roster and key rotation (node/network.cc) ---
  // Keys that spoke for each organisation when, as this node knows them.
  std::vector<OrgKeys> KeyHistoryOf(const std::string& org);
  // Organisations a roster version removed from the network.
  std::set<std::string> RemovedMembers();
  // Whether this node still shares with each organisation, read once for a
  // whole answer: Status(org) is "partner" (or this organisation itself),
  // "removed" (by a roster version) or "not-a-partner".
  struct GranteeDirectory {
    std::string me;
    std::set<std::string> partners, removed;
    std::string Status(const std::string& org) const;
  };
  GranteeDirectory Grantees();
  // A roster version or rotation statement received from partner `from`
  // (or stored by the CLI): judged by consent/network.h, adopted, spread.
  void IngestRoster(const std::string& from, const Roster& r, ByteSpan bytes, const RejectFn& reject);
  void IngestRotation(const std::string& from, const KeyRotation& r, ByteSpan bytes, const RejectFn& reject);
  // Applies rotations whose switch time has come: a partner's new keys are
  // pinned; this node's own new keys take over (key file, signing, transport)
  // and the content keys it holds are re-sealed to its new box key.
  void SwitchDueKeys();

  // RecordSink: records from partner `from`.
  std::unique_ptr<Batch> Prepare(const std::string& from, std::vector<Bytes> records, const RejectFn& reject) override;
  size_t Commit(std::unique_ptr<Batch> batch, const RejectFn& reject) override;

 private:
  Node(NodeIdentity identity, std::unique_ptr<Store> store, WallClock wall);

  int64_t NowMs() const { return static_cast<int64_t>(wall_()); }
  // Case operations hold their case's lock (one of kCaseStripes), never a
  // node-wide one: a flood into one case does not hold up reads of another.
  std::unique_lock<std::mutex> LockCase(const CaseId& case_id);
  // REQUIRES: the case's lock held (the *Locked methods all do).
  Result<CaseState> StateLocked(const CaseId& case_id);
  void CacheState(const CaseState& state);
  void ForgetState(const CaseId& case_id);
  // When the case's decisions next change by themselves (0: due now; nullopt: never).
  void SetDue(const CaseId& case_id, std::optional<int64_t> at);
  // Recomputes audiences, purges, late key grants for one case (asking
  // consent/Recompute); queues pushes; records when the case next changes.
  Status RecomputeLocked(const CaseId& case_id);
  // Seals the content keys of `fragments` to the readers named in `wanted`
  // and stores the key grants.
  Status SealGrantsLocked(const CaseState& state, const std::vector<std::pair<RecordId, std::string>>& wanted,
                          const std::map<RecordId, Fragment>& fragments);
  // The parents of a record written now: the state's heads, keeping our own chain.
  std::vector<RecordId> ParentsFor(const CaseState& state) const;
  static FragmentFacts FactsOf(const FragmentId& id, const Fragment& f);
  // The stored audience: the organisations consent allows that are this node
  // or its partners (nothing is ever sent to anyone else). Bounded by the
  // partner count, however many organisations a case names; a partner added
  // later triggers a recompute of every case.
  std::vector<std::string> Sendable(std::vector<std::string> audience, const std::set<std::string>& partners) const;
  struct FragmentCheck;
  // Whether any of these new fragments has a reader, among our partners, the
  // author did not seal to while we hold regie or wrote it: only then are the
  // case's key grants read.
  bool NeedsResealing(const CaseState& state, const std::map<FragmentId, const FragmentCheck*>& fragments,
                      const std::set<std::string>& partners, int64_t now) const;
  struct IngestBatch;
  void CheckFragmentAlone(FragmentCheck& c, const std::vector<Partner>& partners) const;

  // --- deferred body checks (node/body_check.cc) ---
  // A fragment's body as this organisation reads it.
  struct BodyRead {
    enum class Outcome { kOk, kNoKey, kUnreadable } outcome = Outcome::kNoKey;
    nlohmann::json data;  // kOk: the validated item
    std::string reason;   // kUnreadable: "content-key", "decrypt" or "invalid"
  };
  // kNoKey: not sealed to this organisation and no key grant for it (yet);
  // kUnreadable: sealed to it (or granted) but the key does not open, the
  // body does not decrypt, or it is not a valid item of its kind.
  BodyRead ReadBody(const Fragment& f, const FragmentId& id);
  // Keeps that a fragment is unreadable; counts and logs it (once, at WARN,
  // without content) when it is new.
  void NoteUnreadable(const FragmentId& id, const Fragment& f, const std::string& reason);
  // The background lane: checks the body of each fragment stored from a
  // partner after the stored position, at low CPU priority, off the ingest path.
  void BodyCheckLoop();
  // Checks one stored fragment's body (the lane's step).
  void CheckStoredBody(const FragmentId& id);
  void WakeBodyChecks();
  struct CaseWork;
  size_t CommitCaseLocked(const CaseId& case_id, CaseWork& work, const std::string& from,
                          const std::set<std::string>& partners,
                          const std::function<bool(const std::string&)>& still_trusted, const RejectFn& reject);
  // Records from a partner whose causal past has not arrived: kept in memory
  // per partner (never stored, never passed on), retried with its next push,
  // dropped after kWaitingMs.
  void Wait(const std::string& from, ControlRecord c, Bytes bytes, const RejectFn& reject);
  void TakeWaiting(const std::string& from, IngestBatch* batch, const RejectFn& reject);
  // A digest of the partners' organisations and keys, to notice changes made while stopped.
  Result<Bytes> PartnersDigest();
  Result<RecordId> StoreOwnControl(ControlBody body);
  // Signs, checks with the admission rule, stores and recomputes.
  // REQUIRES: the case's lock held.
  Result<RecordId> WriteControlLocked(const CaseState& state, ControlBody body);
  // Keeps the first fork this node saw per (case, author), for ForksOf.
  void RememberFork(const CaseState& state, const ControlRecord& r);
  Status AppendAccessLocked(AccessEntry* e);
  // The sign key of `org` (this node or a partner) for a record dated
  // `at_ms` (Unix ms; -1: its current key). nullopt when `org` is neither,
  // or no key of it was valid then.
  std::optional<SignPublicKey> AuthorKey(const std::string& org, int64_t at_ms, const std::vector<Partner>& partners) const;
  // For a record by `org` dated `at_ms` whose signature did not verify:
  // kRetiredKey when a key of `org` that had retired by then verifies it, else `otherwise`.
  Reject SignatureRefusal(const std::string& org, int64_t at_ms, const std::function<bool(const SignPublicKey&)>& verifies,
                          Reject otherwise) const;
  std::shared_ptr<const NodeIdentity> Keys() const {
    std::lock_guard lock(keys_mu_);
    return keys_;
  }
  void ReloadKeyHistory();
  // Key rotation statements go to every partner, also one that came later:
  // it needs them to check records signed with keys that have since retired.
  void ShareRotationsWithPartners();
  void OnRosterAdopted(const Roster& r, const struct RosterOutcome& o);
  Status SwitchOwnKeys(const KeyRotation& r);
  std::mutex network_mu_;  // one roster adoption or key switch at a time
  // When SwitchDueKeys next has something to do (0: look now, e.g. after
  // another process stored a rotation); lowered by ScheduleSwitch.
  std::atomic<int64_t> next_switch_ms_{0};
  void ScheduleSwitch(int64_t at_ms);
  // Keys this node used before its last rotations (DATA/retired-keys), to open what was sealed to them.
  void LoadRetiredKeys();
  // The heads of `item` among the versions this organisation may read, sorted.
  Result<std::vector<FragmentId>> ItemHeadsLocked(const CaseState& state, const CaseId& case_id, const FragmentId& item);
  // Records in the change feed the consents of `state` that have expired (once each).
  Status RecordExpiriesLocked(const CaseState& state, int64_t now);
  // Opens a fragment's content key for this organisation: as a recipient or through a key grant.
  // `id`: the fragment's id when the caller knows it (saves hashing it again).
  Status ContentKeyFor(const Fragment& f, ContentKey* key, const FragmentId* id = nullptr);
  void TimerLoop();
  bool Stopping();
  // Recomputes the cases whose decisions changed by themselves, or whose
  // last recompute failed.
  void RecomputeDueCases();
  // Rechecks every case for the current partners (re-sealing for new ones),
  // one case at a time. False when the node is stopping.
  bool SweepAllCases();

  const std::string org_;
  std::string data_dir_;
  mutable std::mutex keys_mu_;  // guards keys_, retired_keys_, key_history_
  std::shared_ptr<const NodeIdentity> keys_;
  std::vector<std::shared_ptr<const NodeIdentity>> retired_keys_;
  std::shared_ptr<const std::map<std::string, std::vector<OrgKeys>>> key_history_;
  std::unique_ptr<Store> store_;
  WallClock wall_;
  HybridClock clock_;
  std::unique_ptr<SyncEngine> sync_;

  static constexpr size_t kCaseStripes = 64;
  std::mutex case_mu_[kCaseStripes];
  std::mutex meta_mu_;  // guards the three maps below; held only briefly
  std::map<CaseId, int64_t> next_change_;  // when a case's decisions change by themselves
  // Consent states by case, grown as records are admitted.
  static constexpr size_t kStateCacheCases = 4096;
  std::map<CaseId, CaseState> state_cache_;
  struct WaitingRecord {
    ControlRecord record;
    Bytes bytes;
    int64_t since_ms = 0;
  };
  struct Waiting {
    std::vector<WaitingRecord> records;
    size_t bytes = 0;
  };
  static constexpr size_t kMaxWaitingRecords = 256;          // per partner
  static constexpr size_t kMaxWaitingBytes = 1024 * 1024;    // per partner
  static constexpr int64_t kWaitingMs = 60 * 1000;
  std::map<std::string, Waiting> waiting_;  // by partner
  std::atomic<uint64_t> withdrawals_processed_{0};
  std::map<std::string, uint64_t> citizen_rejections_;  // guarded by meta_mu_
  std::atomic<bool> recompute_all_{false};

  std::mutex checkpoint_mu_;  // guards the checkpoint state below
  CheckpointPolicy checkpoint_policy_;
  bool checkpoint_loaded_ = false;
  int64_t last_checkpoint_entries_ = 0;
  int64_t last_checkpoint_ms_ = 0;
  size_t last_checkpoint_restores_ = 0;
  int64_t last_checkpoint_check_ms_ = 0;
  static constexpr int64_t kCheckpointCheckMs = 1000;  // how often the timer looks whether one is due

  std::mutex sweep_mu_;  // one sweep at a time; guards the two below
  int64_t sweep_interval_ms_ = 0;
  int64_t last_sweep_ms_ = 0;
  std::atomic<bool> wal_pending_{false};  // destroyed bytes may still be in the WAL
  void SweepIfDue();
  // Erases what an admitted erasure request asks and this organisation's
  // rules do not oblige it to keep, and answers it; once per request.
  // REQUIRES: the case's lock held.
  Status EraseOnRequestLocked(const CaseState& state);

  std::thread timer_;
  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  bool stopping_ = false;

  std::thread body_checks_;
  std::mutex body_mu_;  // guards the two below
  std::condition_variable body_cv_;
  bool body_stopping_ = false;
  bool body_pending_ = false;  // fragments were stored since the lane last looked
  std::atomic<int64_t> body_check_delay_ms_{0};
  std::atomic<uint64_t> unreadable_fragments_{0};
};

}  // namespace kring
