// NEN 7513 access logging: who did what with which case data, when, in an append-only hash chain.
//
// Every API call that touches case data appends one entry at the node that
// served it before the answer is returned. Each entry's hash covers the
// previous entry's hash and all of its own fields, so changing, removing or
// reordering an entry breaks the chain from there on (`kring-node audit verify`).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "crypto/sodium.h"
#include "protocol/fragment.h"

namespace kring {

// The actions NEN 7513 distinguishes for us.
inline constexpr const char* kAccessActions[] = {"create", "read", "update", "consent-record",
                                                 "consent-withdraw", "purge", "export",
                                                 "restore"};  // restore: a system entry, never about a case
inline constexpr const char* kAccessOutcomes[] = {"success", "denied", "failure"};

struct AccessEntry {
  int64_t seq = 0;             // position in this node's chain, from 1; set on append
  std::array<uint8_t, 16> event_id{};
  int64_t time_ms = 0;
  std::string action;          // one of kAccessActions
  std::string outcome;         // one of kAccessOutcomes
  std::string actor_id;        // the professional, as the client system names them
  std::string actor_name;
  std::string actor_role;
  std::string on_behalf_of;    // empty when acting for themself
  std::string organisation;    // the organisation whose node served the call
  std::string client_system;   // the API token's client name
  std::optional<CaseId> case_id;
  std::vector<std::string> items;  // ids of fragments, consents, ... involved
  std::string consent;         // the consent under which access was allowed, if any
  Hash prev_hash{};            // set on append
  Hash hash{};                 // set on append

  // The entry's fields in a fixed canonical form (JSON, keys sorted), without the hashes.
  std::string Canonical() const;
  // BLAKE2b-256 over prev_hash and Canonical().
  Hash ComputeHash() const;
};

struct AuditReport {
  int64_t entries = 0;           // the chain's length, counting entries removed past their period
  int64_t expired = 0;           // the first `expired` entries were removed past their retention period
  int64_t first_broken_seq = 0;  // 0 when the chain verifies
  std::string reason;
};

}  // namespace kring
