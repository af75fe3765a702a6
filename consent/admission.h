// The admission rule: for a record and its case's consent state, accept (with who may hold it) or a typed refusal; and what a change makes a node hold, purge and re-seal.
//
// One rule, used for both directions: the organisations a node sends a record
// to are exactly those whose node would accept it from it, because both ask
// the functions below with the same state. Everything here is pure: no I/O,
// and the time is a parameter (docs/consent.md, "Admission").
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "consent/case_state.h"
#include "consent/reject.h"
#include "protocol/access_record.h"
#include "protocol/records.h"

namespace kring {

// A write is judged at the time its author claims. An author that has lost
// the right to write (withdrawal, expiry, regie handed over) can be held to
// that time only this long: a fragment it sends itself later than this after
// the time it claims is refused (kLateWrite), and after this its own node no
// longer syncs what it wrote then. Other nodes that accepted it in time still
// pass it on.
inline constexpr int64_t kLateWriteWindowMs = 15 * 60 * 1000;
// A node accepts at most this many key grants per (fragment, grantee, author):
// a fragment's author and the regie organisation each hand a key out once,
// and junk from one of them cannot crowd out the other's.
inline constexpr size_t kMaxKeyGrantsPerAuthor = 1;

// The receiving side of a decision: who we are, who sent it, and when.
struct Receipt {
  std::string me;
  std::string from;  // the partner whose connection carried it
  int64_t now_ms = 0;
};

// --- time -----------------------------------------------------------------
// Refuses a time further ahead of now than the allowed skew (kClockSkew).
std::optional<Refusal> CheckTime(HlcTimestamp hlc, int64_t now_ms);

// --- decision records (genesis, consent, withdrawal, regie change) ---------
// Whether `r` from a partner may be admitted into `s` (which it does not
// change): its time and the rules of CaseState::Check. The caller admits it
// with s.Admit(r) when ok(), and then asks AddressedTo with the state that
// holds everything the push brought (a genesis is for us only together with
// the grant that names us).
Admission JudgeDecision(const CaseState& s, const ControlRecord& r, const Receipt& at);
// Whether this organisation may hold decision record `r`, judged by the
// state `after` that admitted it: kNotAddressed when not.
std::optional<Refusal> AddressedTo(const CaseState& after, const ControlRecord& r, const Receipt& at);

// --- fragments -------------------------------------------------------------
// Who may hold (send and receive) fragment `f` now: its readers, when its
// author had the right to write it at the time it claims; nobody otherwise.
// An author that lost the right is left out once kLateWriteWindowMs has
// passed since that time (see above). Sorted, unique.
std::vector<std::string> FragmentAudience(const CaseState& s, const FragmentFacts& f, int64_t now_ms);
// A fragment from a partner: time, the author's right at the time it claims,
// the late-write window when the author sends it itself, and this
// organisation being in FragmentAudience.
std::optional<Refusal> JudgeFragment(const CaseState& s, const FragmentFacts& f, const Receipt& at);

// --- key grants ------------------------------------------------------------
// Who may hold a key grant for `fragment`: its author, and its grantee while
// the grantee may read the fragment.
std::vector<std::string> KeyGrantAudience(const CaseState& s, const KeyGrant& g, const ControlHeader& h,
                                          const FragmentFacts& fragment, int64_t now_ms);
// A key grant from a partner. `fragment` is the fragment it opens as this
// node holds it (nullptr: not held); `held` is how many key grants for the
// same (fragment, grantee) by the same author this node holds already.
Admission JudgeKeyGrant(const CaseState& s, const ControlRecord& r, const FragmentFacts* fragment, size_t held,
                        const Receipt& at);

// --- access records --------------------------------------------------------
// An access-log record from a partner: only the regie organisation keeps
// them, and only from organisations that take or took part in the case.
std::optional<Refusal> JudgeAccessRecord(const CaseState& s, const AccessRecordBody& b, const Receipt& at);

// --- the change feed (docs/api.md, "Follow what changed") -----------------
// What an organisation may learn from its own node's change feed, asked when
// the feed is read (so a withdrawal hides what it may no longer read):
// that decision record `r` changed the case, when it may hold `r`
// (ControlAudience: the involved, the author, whom `r` names, such as the
// grantee of a withdrawn consent);
bool MaySeeDecision(const CaseState& s, const ControlRecord& r, std::string_view me, int64_t now_ms);
// that a version of a plan item was stored, when it may read it (MayRead).
bool MaySeeVersion(const CaseState& s, const FragmentFacts& f, std::string_view me, int64_t now_ms);

// --- after a change ----------------------------------------------------------
// A record a node holds, as the recompute needs it.
struct HeldRecord {
  RecordId id{};
  RecordType type = RecordType::kFragment;
  FragmentFacts fragment;               // fragments
  std::vector<std::string> recipients;  // fragments: whom the author sealed the key to
  const ControlRecord* control = nullptr;  // control records (decision or key grant)
};

// What a node must do to a case after its state or the time changed.
struct CaseChanges {
  // Who may hold each record now (stored, and used for sending).
  std::vector<std::pair<RecordId, std::vector<std::string>>> audiences;
  std::vector<RecordId> purge;             // records this organisation may no longer hold
  std::vector<RecordId> purged_fragments;  // the fragments among them (logged)
  // Content keys to re-seal: (fragment, reader) for readers the author did
  // not seal to, when this organisation holds regie or wrote the fragment,
  // and the reader is one of `partners` without a key grant held.
  std::vector<std::pair<RecordId, std::string>> key_grants;
  // When the audiences change by themselves next (a consent window, an
  // author's late-write window closing); nullopt: never.
  std::optional<int64_t> next_change;
};

CaseChanges Recompute(const CaseState& s, const std::string& me, const std::vector<HeldRecord>& held,
                      const std::set<std::string>& partners, int64_t now_ms);

}  // namespace kring
