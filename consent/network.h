// Who belongs to the network and which keys speak for an organisation when: the roster chain rule and the key history.
//
// A roster version may follow the current one when it names it as previous,
// has the next version number, and carries valid signatures of at least k
// (the current threshold) of the current stewards, and no signature of
// anyone else. Version 1, adopted by joining, carries the signatures of all
// its stewards. Nothing here looks at a clock: keys_from_ms and switch_ms
// are the records' own word, the same on every node.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "consent/reject.h"
#include "protocol/roster.h"

namespace kring {

// Keys that spoke for an organisation from from_ms (inclusive) until
// until_ms (exclusive; kForever while they still do).
struct OrgKeys {
  static constexpr int64_t kForever = std::numeric_limits<int64_t>::max();
  std::string org;
  SignPublicKey sign_pk{};
  BoxPublicKey box_pk{};
  BoxPublicKey transport_pk{};
  int64_t from_ms = 0;
  int64_t until_ms = kForever;
  bool operator==(const OrgKeys&) const = default;
};

// The sign keys that may sign for `org` on a roster version (its key in the
// current version, and its current key after a rotation statement).
using StewardKeys = std::function<std::vector<SignPublicKey>(const std::string& org)>;

// A roster adopted on its own (network join, or the first version a node
// sees): version 1 signed by all its stewards; a later version by at least
// k of the stewards it names (the joining organisation trusts the chain
// before it through the people who gave it the file: docs/operations.md).
// `me`, when not empty, must be a member.
std::optional<Refusal> JudgeRosterAlone(const Roster& r, const std::string& me);

// Whether `next` may follow `current`. Reasons: roster_replay (an older or
// the same version number with other content: a fork), roster_skip (a
// version missing in between), roster_fork (previous is not the current
// version), roster_not_steward (a signature by an organisation that is not a
// current steward), roster_threshold (fewer than k valid steward signatures).
std::optional<Refusal> JudgeRosterNext(const Roster& current, const Roster& next, const StewardKeys& keys);

// The key history changes `next` makes: for each member whose keys differ
// from `known` (its current keys on this node), the old keys end and the new
// ones start at the member's keys_from_ms (an emergency rotation when no
// rotation statement said so before). New members start with their keys.
std::vector<OrgKeys> RosterKeyChanges(const RosterBody& next, const std::function<std::optional<OrgKeys>(const std::string&)>& known);

// Whether a rotation statement may change `current` (the org's keys now):
// rotation_invalid (signatures, shape), rotation_stale (its old keys are not
// the org's current keys; the same statement again is not refused but
// reported by returning nullopt with *duplicate set).
std::optional<Refusal> JudgeKeyRotation(const KeyRotation& r, const std::optional<OrgKeys>& current, bool* duplicate);

// Which of an organisation's keys to check a signature dated `ms` against:
// the entry of `history` valid then, or nullptr.
const OrgKeys* KeysAt(const std::vector<OrgKeys>& history, int64_t ms);

// A partner as the holding rule for rotation statements sees it.
struct NetworkPeer {
  std::string org;
  bool roster_member = false;  // a partner because a roster version names it
};

// Who holds a rotation statement of `org` on a node of `me` with these
// partners: `me`; every partner when the keys are `me`'s own; otherwise `org`
// itself and, when `org` is a roster member, the fellow roster members (they
// know it; a bilateral partner does not and would have to refuse it).
std::vector<std::string> RotationHolders(const std::string& me, const std::string& org, const std::vector<NetworkPeer>& partners);

}  // namespace kring
