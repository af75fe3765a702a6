// Canonical form and hashing of access-log entries.
#include "node/access_log.h"

#include <nlohmann/json.hpp>

#include "crypto/primitives.h"

namespace kring {

std::string AccessEntry::Canonical() const {
  nlohmann::json j;  // std::map underneath: keys come out sorted
  j["seq"] = seq;
  j["event"] = ToHex(event_id);
  j["time_ms"] = time_ms;
  j["action"] = action;
  j["outcome"] = outcome;
  j["actor_id"] = actor_id;
  j["actor_name"] = actor_name;
  j["actor_role"] = actor_role;
  j["on_behalf_of"] = on_behalf_of;
  j["organisation"] = organisation;
  j["client"] = client_system;
  j["case"] = case_id ? CaseIdToHex(*case_id) : std::string();
  j["items"] = items;
  j["consent"] = consent;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Hash AccessEntry::ComputeHash() const {
  std::string c = Canonical();
  return HashParts("kring/access-log/v1", {prev_hash, ByteSpan(reinterpret_cast<const uint8_t*>(c.data()), c.size())});
}

}  // namespace kring
