// An organisation's retention rules as the node keeps them: parsed from the command line, stored in the database, read by the sweep.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "consent/retention.h"
#include "crypto/status.h"

namespace kring {

class Store;

// The node_state key the rules are stored under (JSON, see RetentionToJson).
inline constexpr const char* kRetentionStateKey = "retention";

// "TEXT=PERIOD" from --basis (legal_duty false) or --duty (true).
// InvalidArgument naming what is wrong: no '=', an empty or over-long name,
// a bad period.
Result<RetentionRule> ParseRetentionRule(const std::string& arg, bool legal_duty);

// {"default": "P15Y", "access_log": "P5Y", "rules": [{"name": ..., "period": ..., "legal_duty": bool}]}
nlohmann::json RetentionToJson(const RetentionRules& r);
Result<RetentionRules> RetentionFromJson(const nlohmann::json& j);

// The node's rules; the built-in ones (fallback P15Y, access log P5Y, no
// named rules) until `kring-node retention` set them.
Result<RetentionRules> LoadRetention(Store& store);
Status SaveRetention(Store& store, const RetentionRules& rules);

}  // namespace kring
