// The consent state of one case, grown one admitted control record at a time: who holds regie, which consents are in force.
//
// A CaseState is the set of a case's *admitted* decision records (genesis,
// consent, withdrawal, regie change, citizen keys, close and reopen; key grants are judged against it but
// never part of it). A record is admitted only when its causal past is
// complete and it passes every rule below, judged against that causal past
// and against the records already admitted. The same set of admitted
// records gives the same state whatever order they were admitted in (docs/consent.md
// proves it); Build() admits a whole set.
//
// Causality. Each control record names as `parents` the heads of the case's
// control records its author had seen; ancestors(r) is their transitive
// closure. A record with a parent not admitted is *waiting* (Admit answers
// kWaiting): it has no effect and is not part of the state.
//
// The rules (in the order Admit checks them):
//   - the genesis: its case id is bound to its author (CaseIdFor), no parents,
//     one per case. Its author, the creator, holds regie first.
//   - every other record names parents, all admitted, descending from the genesis;
//   - causal time: its hlc is greater than every parent's (an honest clock
//     that has seen the parents cannot write an older time);
//   - the author's chain: every record its author wrote before in this case
//     (already admitted) is among its ancestors. An honest node always
//     extends its own records; a record that does not is a fork, evidence
//     that the author signed two incompatible histories, and is refused
//     (kForkedChain). This is what makes authority impossible to rewind: an
//     organisation cannot choose a causal past from before its own handover
//     or withdrawal.
//   - caps: at most kMaxDecisionRecordsPerCase records in a case and
//     kMaxDecisionRecordsPerAuthor by one author (kCaseFull, kAuthorFull);
//   - authority, judged in the record's causal past, where regie_as_of(r) is
//     the creator or the `regie` named by the latest RegieChange among
//     ancestors(r). With author chains, valid RegieChanges are totally ordered
//     (each is written by the holder the previous one named), so "latest" is
//     unique and no clock value decides a tie:
//       ConsentGrant:      author == regie_as_of(r), grantee != author;
//       ConsentWithdrawal: names a consent among its ancestors; author is
//                          regie_as_of(r) or that consent's grantee;
//       RegieChange:       author == regie_as_of(r).
//       CitizenKey:        author == regie_as_of(r); its invitation named by
//                          no CitizenKey among ancestors(r); its public key
//                          not enrolled (and unrevoked) there already. The
//                          proof of possession is structural (VerifyControl).
//       CitizenKeyRevocation: author == regie_as_of(r); names a CitizenKey
//                          enrolled and unrevoked in ancestors(r).
//       CaseClose:         author == regie_as_of(r); the case is open in
//                          ancestors(r) (else kCaseClosed).
//       CaseReopen:        author == regie_as_of(r); the case is closed in
//                          ancestors(r) (else kCaseClosed).
//       ErasureRequest:    author == regie_as_of(r); the case is closed in
//                          ancestors(r) (else kCaseClosed).
//   ErasureAnswer records (like key grants) are judged against the state but
//   never part of it (CheckErasureAnswer).
//   - closing (docs/retention.md). The case is *closed in* a past when the
//     latest CaseClose or CaseReopen there is a close; like regie changes,
//     valid closures are totally ordered. A ConsentGrant, CitizenKey or
//     RegieChange whose past has the case closed is refused (kCaseClosed);
//     withdrawals and key revocations stay open. Fragments are judged by
//     time: ClosedAt(t) (admission.h refuses a fragment claiming such a time).
//   - the citizen (docs/consent.md, "Citizen-signed consent"). A citizen key
//     is *enrolled in* a past when its CitizenKey is among it and no
//     revocation of it is. A record carrying a citizen signature (a grant
//     of evidence kind 2, a format-2 withdrawal, a revocation of kind 2)
//     must have signed exactly its own parents (CitizenSignature::heads ==
//     HeadsDigest(parents), else kCitizenReplay) with a key enrolled in
//     ancestors(r) over CitizenStatement(r) (else kCitizenSignature). A
//     ConsentGrant whose past has an enrolled key must be citizen-signed
//     (kCitizenRequired). A citizen-signed withdrawal may be written by any
//     organisation involved in ancestors(r) (regie_as_of(r) or a grantee of
//     a consent there): the authority is the citizen's.
//
// Consent status at `now_ms`, in this order:
//   withdrawn: a withdrawal names it, or a withdrawal of another consent of
//              the same grantee with overlapping domains ("*" overlaps all)
//              is concurrent with it (withdrawal wins a tie; a consent written
//              after seeing the withdrawal is a re-grant and stays in force);
//   pending:   now_ms < valid_from_ms;
//   expired:   valid_until_ms != 0 and now_ms >= valid_until_ms;
//   active:    otherwise.
// A consent *covered* time t (for "had it the right to write then") when
// t >= max(valid_from, the grant's own time), t < valid_until (if set), and t
// is before the time of the withdrawal that ended it (if any).
//
// Thread-safety: const methods may be called concurrently. Admit() changes
// the state; copies share their records and are cheap until one of them is
// changed (copy on write), so a reader's copy never sees a later Admit.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "consent/reject.h"
#include "crypto/status.h"
#include "protocol/fragment.h"
#include "protocol/records.h"

namespace kring {

// Bounds per case (docs/consent.md): a case that needs more control records
// than this is far outside what a household's consent history looks like;
// the bound keeps every decision cheap whatever a partner sends.
inline constexpr size_t kMaxDecisionRecordsPerCase = 1024;
inline constexpr size_t kMaxDecisionRecordsPerAuthor = 256;

// What the consent decision needs to know of a fragment (its header, in clear).
struct FragmentFacts {
  FragmentId id{};
  std::string author;
  std::string domain;  // empty: a case-wide item (household, note without a domain)
  int64_t time_ms = 0; // the author's hlc, in Unix milliseconds
};

enum class ConsentStatus { kActive, kWithdrawn, kExpired, kPending };
// "active", "withdrawn", "expired", "pending": stable, used in the API.
const char* ConsentStatusName(ConsentStatus s);

struct ConsentView {
  RecordId id{};
  // The grant itself; shares ownership of the state's records, so it stays
  // valid after the CaseState is gone.
  std::shared_ptr<const ConsentGrant> grant;
  bool valid = true;  // always true: only valid grants are admitted (kept for the API's shape)
  ConsentStatus status = ConsentStatus::kPending;
  // The withdrawal that ended it: one naming it, else (tie) a concurrent
  // withdrawal of an overlapping consent of the same grantee.
  std::optional<RecordId> withdrawn_by;
};

struct RegieView {
  std::string org;     // empty only without a genesis
  std::string person;  // empty until a RegieChange names one
  std::optional<RecordId> record;  // the deciding RegieChange; nullopt: the creator by the genesis
  // Always false since author chains make regie changes totally ordered;
  // kept so that readers (the plan view) need not change.
  bool conflict = false;
};

// A citizen's key bound to the case (CitizenKey), and whether it was revoked.
struct CitizenKeyView {
  RecordId id{};  // the CitizenKey record: the key id citizen signatures name
  SignPublicKey key{};
  std::string given_by;
  Hash invitation{};
  int64_t enrolled_ms = 0;
  std::optional<RecordId> revoked_by;
};

// The close in force, when the case is closed.
struct ClosureView {
  RecordId id{};          // the CaseClose record
  std::string by;         // the regie organisation that closed it
  std::string reason;     // one of kCloseReasons
  std::string rule;       // the closing organisation's retention rule for what it wrote
  std::string retention;  // its period (ISO 8601)
  int64_t time_ms = 0;    // the close record's time: retention runs from here
};

// A citizen's erasure request (AVG art. 17) as the regie organisation recorded it.
struct ErasureRequestView {
  RecordId id{};
  std::string by;
  std::string reference;
  int64_t time_ms = 0;
};

// The outcome of offering a record to a state.
struct Admission {
  enum class Kind { kAdmitted, kDuplicate, kWaiting, kRefused };
  Kind kind = Kind::kRefused;
  Reject reason = Reject::kForgedRecord;  // when kRefused
  std::string detail;                     // when kWaiting or kRefused
  bool ok() const { return kind == Kind::kAdmitted || kind == Kind::kDuplicate; }
};

class CaseState {
 public:
  // An empty state of `case_id`: no genesis, no regie.
  explicit CaseState(CaseId case_id);

  // The state a node reaches admitting `records` (signatures and structure
  // checked by the caller, VerifyControl) in any order: admits repeatedly
  // until nothing more can be. Records that wait or are refused stay out
  // (Waiting(), Refused()). Duplicates, key grants and records of other cases
  // are ignored.
  static CaseState Build(CaseId case_id, std::vector<ControlRecord> records);

  // Offers a decision record (not a KeyGrant) and, when it is admissible,
  // adds it. kDuplicate: already admitted (nothing changes).
  Admission Admit(const ControlRecord& r);
  // What Admit would answer, changing nothing.
  Admission Check(const ControlRecord& r) const;
  // Check() as a Status for the API: PermissionDenied (authority, the
  // citizen's signature), NotFound (waiting), Conflict (a second genesis, an
  // invitation used, a closed case), InvalidArgument (else).
  Status CheckNewRecord(const ControlRecord& r) const;

  // Whether KeyGrant `r` may be accepted: its causal past admitted (else
  // kWaiting), and written by the fragment's author or the regie
  // organisation as of its causal past.
  Admission CheckKeyGrant(const ControlRecord& r, std::string_view fragment_author) const;

  const CaseId& case_id() const;
  bool has_genesis() const;
  const std::string& creator() const;  // empty without a genesis
  size_t size() const;                 // admitted decision records
  bool Contains(const RecordId& id) const;

  RegieView Regie() const;
  // Who held regie at time t_ms (by the times of the genesis and the regie
  // changes); empty before the genesis.
  std::string RegieAt(int64_t t_ms) const;

  // Every admitted ConsentGrant, sorted by (hlc, id).
  std::vector<ConsentView> Consents(int64_t now_ms) const;

  // The consent that lets `org` read `f` at `now_ms`: an active consent of
  // `org` whose domains hold f.domain or "*" (any, when f.domain is empty);
  // of several, the first by (hlc, id). The author and the regie
  // organisation read without one; this does not consider them.
  std::optional<RecordId> ConsentFor(std::string_view org, const FragmentFacts& f, int64_t now_ms) const;
  bool MayRead(std::string_view org, const FragmentFacts& f, int64_t now_ms) const;
  // Everyone MayRead allows, sorted, unique.
  std::vector<std::string> Readers(const FragmentFacts& f, int64_t now_ms) const;
  // Whether `org` had the right to write in f.domain at time t_ms: it held
  // regie then, or a consent covering the domain covered t_ms (see above).
  bool MayWriteAt(std::string_view org, std::string_view domain, int64_t t_ms) const;

  // The "that" information: the regie organisation and every organisation
  // with an active consent, sorted, unique.
  std::vector<std::string> Involved(int64_t now_ms) const;
  // Organisations that ever held regie or a consent in this case.
  bool EverInvolved(std::string_view org) const;

  // Who may hold control record `r` (in the state or not), sorted, unique:
  //   KeyGrant: its author and grantee only (the node narrows it further:
  //             the grantee only while it may read the fragment);
  //   others:   Involved(now_ms), the author, and whom the record names:
  //             a consent's grantee, a withdrawn consent's grantee (so an
  //             organisation learns it lost access), a RegieChange's new regie.
  std::vector<std::string> ControlAudience(const ControlRecord& r, int64_t now_ms) const;

  // The close in force (the latest close or reopen is a close); nullopt while open.
  std::optional<ClosureView> Closure() const;
  // Whether the case was closed at time t_ms (by the times of the closes and reopens).
  bool ClosedAt(int64_t t_ms) const;

  // Every admitted ErasureRequest, in admission order.
  std::vector<ErasureRequestView> ErasureRequests() const;
  // Whether ErasureAnswer `r` can be kept: its request admitted (else
  // kWaiting), its author an organisation ever involved. nullopt: it can.
  std::optional<Admission> CheckErasureAnswer(const ControlRecord& r) const;

  // Every admitted CitizenKey, in admission order.
  std::vector<CitizenKeyView> CitizenKeys() const;
  // Whether a citizen key is enrolled and not revoked: a consent grant
  // written now must then be citizen-signed.
  bool HasCitizenKey() const;
  // Whether an admitted CitizenKey names this invitation.
  bool InvitationUsed(const Hash& invitation) const;

  // Admitted records that no other admitted record names as a parent, sorted
  // by id: the `parents` of the next record a node writes.
  std::vector<RecordId> Heads() const;
  // The record `org` wrote last in this case (the end of its chain).
  std::optional<RecordId> LastOf(std::string_view org) const;

  // Only from Build: records left out because they wait for a parent, the
  // parents they wait for, and records refused; each sorted by id.
  std::vector<RecordId> Waiting() const;
  std::vector<RecordId> Missing() const;
  std::vector<RecordId> Refused() const;

  // The earliest time after now_ms at which a decision changes by itself (a
  // valid_from or valid_until of a consent not withdrawn), for the node's
  // timer; nullopt if none.
  std::optional<int64_t> NextChange(int64_t now_ms) const;

 private:
  struct Rep;
  std::shared_ptr<Rep> rep_;
  Rep& Mutable();
};

}  // namespace kring
