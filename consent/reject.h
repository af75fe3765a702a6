// Why a node refuses a record: one enum for every refusal, whose names are the labels of kring_messages_rejected_total.
#pragma once

#include <cstdint>
#include <string>

namespace kring {

enum class Reject : uint8_t {
  kUndecodable,     // "undecodable_record": the bytes are no record of a known type
  kUnknownAuthor,   // "unknown_author": signed by an organisation that is not a partner
  kBadRecord,       // "bad_record": a control or access record whose structure or signature fails
  kBadFragment,     // "bad_fragment": a fragment whose signature, id or ciphertext fails
  kClockSkew,       // "clock_skew": a time too far ahead of ours, or not after its causal past
  kUnknownCase,     // "unknown_case": a record of a case this node takes no part in
  kNotAddressed,    // "not_addressed": a record this organisation may not hold
  kForgedRecord,    // "forged_record": its author was not allowed to write it
  kForkedChain,     // "forked_chain": it does not extend its author's own chain in the case (misbehaviour)
  kLateWrite,       // "late_write": written for a time its author can no longer be held to
  kInvalidItem,     // "invalid_item": not a valid plan item (kind, domain, body, edit)
  kCaseFull,        // "case_cap": the case holds the most control records allowed
  kAuthorFull,      // "author_cap": the author wrote the most control records allowed in the case
  kKeyGrantFull,    // "key_grant_cap": enough keys for this fragment and organisation are held
  kWaitingFull,     // "waiting_cap": the partner's buffer of records waiting for parents is full
  kWaitingExpired,  // "waiting_expired": its parents did not arrive in time
  kRewoundLog,        // "rewound_log": a checkpoint whose access log went back without a declared restore
  kStoreError,        // "store_error": this node could not store or compare it (its own fault, not the sender's)
  kCitizenRequired,   // "citizen_required": a consent grant without the citizen's signature in a case with an enrolled citizen key
  kCitizenSignature,  // "citizen_signature": a citizen signature by no enrolled key (unknown, revoked, another case) or that does not verify
  kCitizenReplay,     // "citizen_replay": a citizen statement signed for another moment of the case (an old statement sent again)
  kInvitationUsed,    // "invitation_used": a second citizen key enrolled with the same one-time invitation
  kRosterReplay,      // "roster_replay": a roster version at or before the current one, with other content
  kRosterSkip,        // "roster_skip": a roster version with one missing in between (it is tried again once that arrives)
  kRosterFork,        // "roster_fork": a roster version that does not follow the current one (or another network's)
  kRosterNotSteward,  // "roster_not_steward": a roster version signed by an organisation that is not a steward
  kRosterThreshold,   // "roster_threshold": fewer valid steward signatures than the threshold
  kRotationInvalid,   // "rotation_invalid": a key rotation whose shape or signatures fail
  kRotationStale,     // "rotation_stale": a key rotation from keys that are not the organisation's current ones
  kRetiredKey,        // "retired_key": signed with a key that no longer spoke for its organisation at the record's time
  kCaseClosed,        // "case_closed": a write, consent or regie change in a case closed at its time (or a close of a closed case, a reopen of an open one)
  kDestroyed,         // "destroyed": a record of a case, or a record, this node destroyed under its retention rules
};
inline constexpr int kRejectCount = static_cast<int>(Reject::kDestroyed) + 1;

// The stable label of a reason (metrics, logs, tests).
const char* RejectName(Reject r);

// A refusal with a short message for the log.
struct Refusal {
  Reject reason;
  std::string detail;
};

}  // namespace kring
