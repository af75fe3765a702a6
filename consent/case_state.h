// The consent decision of one case: who holds regie, which consents are in force, who may read and hold what.
//
// CaseState is a pure function of the SET of a case's control records
// (protocol/records.h): the same records give the same decisions on every
// node, whatever order they arrived in and however often. No I/O, no clock:
// the time of a decision is a parameter.
//
// Causality. Each control record names as `parents` the heads of the case's
// control records its author had seen. ancestors(r) is the transitive closure
// of `parents` over the records present; r and s are concurrent when neither
// is an ancestor of the other. A record with an ancestor missing from the set
// is *pending*: it has no effect until its causal past arrives (Pending(),
// Missing()). Every other record is valid or invalid, decided from its own
// causal past only, so the verdict never changes once made:
//   - the case genesis: its case id is bound to its author (CaseIdFor) and it
//     has no parents; should two exist, the smallest id is the genesis.
//     Its author, the creator, holds regie first.
//   - every other record has parents and descends from the genesis;
//   - regie_as_of(r): the creator, or the `regie` of the winning valid
//     RegieChange among ancestors(r) (of several concurrent latest ones, the
//     greatest (hlc, id) wins);
//   - ConsentGrant: author == regie_as_of(r) and grantee != author;
//   - ConsentWithdrawal: names a valid ConsentGrant among its ancestors, and
//     its author is regie_as_of(r) or that consent's grantee (declining);
//   - RegieChange: author == regie_as_of(r);
//   - KeyGrant: only the causal rules above; whether its author could hand
//     out the key (regie_as_of(r) or the fragment's author) needs the
//     fragment, see CheckKeyGrant(). KeyGrants are leaves: they decide
//     nothing here and are never Heads(), because only their grantee and
//     author hold them and others could not complete a record naming them.
//
// Consent status at `now_ms`, in this order:
//   withdrawn: a valid withdrawal names it, or a valid withdrawal of another
//              consent of the same grantee with overlapping domains ("*"
//              overlaps all) is concurrent with it (withdrawal wins a tie; a
//              consent recorded after seeing the withdrawal is a re-grant and
//              stays in force);
//   pending:   now_ms < valid_from_ms;
//   expired:   valid_until_ms != 0 and now_ms >= valid_until_ms;
//   active:    otherwise.
//
// Thread-safety: immutable once built; any number of threads may call the
// const methods of one CaseState concurrently. Copies are cheap and share
// the immutable records.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/status.h"
#include "protocol/fragment.h"
#include "protocol/records.h"

namespace kring {

// What the consent decision needs to know of a fragment (its header, in clear).
struct FragmentFacts {
  FragmentId id{};
  std::string author;
  std::string domain;  // empty: a case-wide item (household, note without a domain)
};

enum class ConsentStatus { kActive, kWithdrawn, kExpired, kPending };
// "active", "withdrawn", "expired", "pending": stable, used in the API.
const char* ConsentStatusName(ConsentStatus s);

struct ConsentView {
  RecordId id{};
  // The grant itself; shares ownership of the CaseState's records, so it
  // stays valid after the CaseState is gone.
  std::shared_ptr<const ConsentGrant> grant;
  // False when its author was not allowed to record it: it grants nothing,
  // whatever `status` says (status is then computed as if it were valid).
  bool valid = false;
  ConsentStatus status = ConsentStatus::kPending;
  // The withdrawal that ended it: one naming it, else (tie) a concurrent
  // withdrawal of an overlapping consent of the same grantee.
  std::optional<RecordId> withdrawn_by;
};

struct RegieView {
  std::string org;     // empty only without a genesis
  std::string person;  // empty until a RegieChange names one
  std::optional<RecordId> record;  // the deciding RegieChange; nullopt: the creator by the genesis
  // Several valid RegieChanges none of which saw the others: the one with
  // the greatest (hlc, id) decides, and a person must settle it (the winner
  // writes a new RegieChange after seeing all of them).
  bool conflict = false;
  std::vector<RecordId> contenders;  // when conflict: the concurrent RegieChanges, winner first
};

class CaseState {
 public:
  // Decides the state of case `case_id` from its control records, whose
  // signatures and structure the caller has checked (VerifyControl). Any
  // order; duplicates and records of other cases are ignored. Never fails:
  // a case without its genesis has has_genesis() false and no regie, and
  // everything else pending on it.
  static CaseState Build(CaseId case_id, std::vector<ControlRecord> records);

  const CaseId& case_id() const;
  bool has_genesis() const;
  // The genesis author; empty without a genesis.
  const std::string& creator() const;

  RegieView Regie() const;

  // Every ConsentGrant whose causal past is complete (valid or not), sorted
  // by (hlc, id).
  std::vector<ConsentView> Consents(int64_t now_ms) const;

  // The consent that lets `org` read `f` at `now_ms`: an active, valid
  // consent of `org` whose domains hold f.domain or "*" (any, when f.domain
  // is empty); of several, the first by (hlc, id). nullopt: none. The author
  // and the regie organisation read without one; this does not consider them.
  std::optional<RecordId> ConsentFor(std::string_view org, const FragmentFacts& f, int64_t now_ms) const;
  // The author, the regie organisation, and organisations with a consent for it.
  bool MayRead(std::string_view org, const FragmentFacts& f, int64_t now_ms) const;
  // Everyone MayRead allows, sorted, unique.
  std::vector<std::string> Readers(const FragmentFacts& f, int64_t now_ms) const;

  // The "that" information (the case exists, who holds regie, who is
  // involved): the regie organisation and every organisation with an
  // active valid consent, sorted, unique.
  std::vector<std::string> Involved(int64_t now_ms) const;

  // Who may hold control record `r` (in the set or not), sorted, unique:
  //   KeyGrant: its author and grantee only;
  //   others:   Involved(now_ms), the author, and whom the record names:
  //             a consent's grantee, a withdrawn consent's grantee (so an
  //             organisation learns it lost access), a RegieChange's new regie.
  std::vector<std::string> ControlAudience(const ControlRecord& r, int64_t now_ms) const;

  // Whether `r` is valid judged by its parents in this set (the same verdict
  // Build gives if it is added): for the API (403) and for peers (forged
  // records). For a record already in the set, its verdict.
  //   PermissionDenied: its author may not write it (the message names the rule);
  //   InvalidArgument:  another case, no parents, not descending from the
  //                     genesis, withdrawing what is not a valid consent;
  //   Conflict:         a second genesis;
  //   NotFound:         a parent is missing or pending (the record would be pending).
  Status CheckNewRecord(const ControlRecord& r) const;

  // Whether KeyGrant `r` was written by someone who could hand out the key:
  // the regie organisation as of its causal past, or `fragment_author`.
  // First the verdict of CheckNewRecord; InvalidArgument if r is no KeyGrant;
  // PermissionDenied if its author is neither.
  Status CheckKeyGrant(const ControlRecord& r, std::string_view fragment_author) const;

  // Records in the set waiting for missing ancestors, sorted by id.
  std::vector<RecordId> Pending() const;
  // Ids named as parents but absent from the set: what to ask peers for; sorted.
  std::vector<RecordId> Missing() const;
  // Records whose author was not allowed to write them, or that break the
  // causal rules (no parents, not descending from the genesis), sorted by id.
  std::vector<RecordId> Invalid() const;
  // Valid records (KeyGrants excepted) that no other valid record has as an
  // ancestor, sorted by id: the `parents` of the next record a node writes.
  std::vector<RecordId> Heads() const;

  // The earliest time after now_ms at which a decision changes by itself (a
  // valid_from or valid_until of a valid, not withdrawn consent), for the
  // node's timer; nullopt if none.
  std::optional<int64_t> NextChange(int64_t now_ms) const;

 private:
  struct Rep;
  explicit CaseState(std::shared_ptr<const Rep> rep);
  std::shared_ptr<const Rep> rep_;
};

}  // namespace kring
