// Running a network from a roster: founding, signing, joining, proposing and adopting versions, and rotating this node's keys.
//
// The rule for which version may follow which is consent/network.h; the
// formats are protocol/roster.h; this file applies them to a node's store
// and data directory, for the CLI (kring-node network, keys) and for the
// running node (node/node.h IngestRoster, IngestRotation, SwitchDueKeys).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "consent/network.h"
#include "node/store.h"
#include "protocol/roster.h"

namespace kring {

// Where a rotated-away key file is kept (owner-only): to open what partners
// sealed to it before they learnt the new key.
std::string RetiredKeysDir(const std::string& data_dir);
// The new key file a rotation switches to at its switch time.
std::string NextKeyFilePath(const std::string& data_dir);

// The node's current roster; NotFound when it has joined no network.
Result<Roster> CurrentRosterOf(Store& store);

// Version 1: `members` (cards with endpoints), `stewards` among them, threshold k.
Result<Roster> FoundRoster(const std::string& network, std::vector<RosterMember> members,
                           const std::vector<std::string>& stewards, int threshold, int64_t now_ms);

// A change proposed for the next version.
struct RosterChange {
  std::optional<RosterMember> add;                 // a new member (card and endpoint)
  std::optional<std::string> remove;               // an organisation to remove
  std::optional<std::pair<std::string, std::string>> set_endpoint;  // org, endpoint
  std::optional<PublicIdentity> replace_keys;      // an emergency rotation: these keys from now on
  std::optional<std::vector<std::string>> stewards;
  std::optional<int> threshold;
};
// The next version after `current` with `change` applied (unsigned). Members'
// keys are brought up to date with the rotations this node knows (`history`),
// keys_from_ms set to when each rotation switched.
Result<Roster> ProposeRoster(const Roster& current, const RosterChange& change, const std::vector<OrgKeys>& history,
                             int64_t now_ms);

// Judges `r` against the node's current roster (or on its own when there is
// none, for `join`) and adopts it: partners, removed members, key history,
// the synced record, in one transaction. `*why` says why it was refused;
// `*adopted` is false for a version already held.
struct RosterOutcome {
  bool adopted = false;
  std::optional<Refusal> refusal;
  std::vector<std::string> added;    // new partners
  std::vector<std::string> removed;  // partners cut off
  std::vector<std::string> rekeyed;  // members whose keys changed by the roster
};
Result<RosterOutcome> AdoptRoster(Store& store, const std::string& me, const Roster& r, const std::string& from,
                                  int64_t now_ms);

// `keys rotate`: new keys for this organisation, switching `switch_after_ms`
// from now. Writes the new key file beside the current one (NextKeyFilePath),
// keeps a copy of the old one (RetiredKeysDir), stores the signed statement
// for partners and the key history. The running node (or the next start)
// switches at the switch time. Conflict if a rotation is pending.
Result<KeyRotation> RotateKeys(const std::string& data_dir, int64_t switch_after_ms, int64_t now_ms);
// `keys rotate --emergency`: the keys are stolen; replaces them at once (the
// node must be stopped). Partners learn the new keys only from a roster
// version signed by k stewards (network propose --replace-keys).
Result<PublicIdentity> ReplaceKeysNow(const std::string& data_dir, int64_t now_ms);

}  // namespace kring
