// Parses, stores and loads an organisation's retention rules (docs/retention.md).
#include "node/retention.h"

#include <set>

#include "crypto/identity.h"
#include "node/store.h"

namespace kring {

Result<RetentionRule> ParseRetentionRule(const std::string& arg, bool legal_duty) {
  const char* flag = legal_duty ? "--duty" : "--basis";
  auto eq = arg.rfind('=');
  if (eq == std::string::npos) return Status::InvalidArgument(std::string(flag) + " '" + arg + "' must be TEXT=PERIOD, e.g. \"Wmo 2015=P15Y\"");
  RetentionRule r;
  r.name = arg.substr(0, eq);
  r.legal_duty = legal_duty;
  if (r.name.empty() || r.name.size() > kMaxRetentionRuleBytes || !IsPrintableText(r.name))
    return Status::InvalidArgument(std::string(flag) + ": the rule's name must be 1 to 200 printable characters");
  auto p = ParsePeriod(arg.substr(eq + 1));
  if (!p.ok()) return Status::InvalidArgument(std::string(flag) + " '" + r.name + "': " + p.status().message());
  r.period = *p;
  return r;
}

nlohmann::json RetentionToJson(const RetentionRules& r) {
  nlohmann::json rules = nlohmann::json::array();
  for (const RetentionRule& x : r.rules)
    rules.push_back({{"name", x.name}, {"period", FormatPeriod(x.period)}, {"legal_duty", x.legal_duty}});
  return {{"default", FormatPeriod(r.fallback.period)},
          {"default_legal_duty", r.fallback.legal_duty},
          {"access_log", FormatPeriod(r.access_log)},
          {"rules", rules}};
}

Result<RetentionRules> RetentionFromJson(const nlohmann::json& j) {
  auto period = [&](const char* key, Period* out) -> Status {
    if (!j.contains(key) || !j[key].is_string()) return Status::Corruption(std::string("retention rules lack '") + key + "'");
    auto p = ParsePeriod(j[key].get<std::string>());
    if (!p.ok()) return Status::Corruption(std::string("retention rule '") + key + "': " + p.status().message());
    *out = *p;
    return Status::Ok();
  };
  if (!j.is_object()) return Status::Corruption("stored retention rules are not a JSON object");
  RetentionRules r;
  KRING_RETURN_IF_ERROR(period("default", &r.fallback.period));
  KRING_RETURN_IF_ERROR(period("access_log", &r.access_log));
  r.fallback.legal_duty = j.value("default_legal_duty", false);
  if (!j.contains("rules") || !j["rules"].is_array() || j["rules"].size() > kMaxRetentionRules)
    return Status::Corruption("stored retention rules lack a list of at most 64 rules");
  std::set<std::string> names;
  for (const auto& x : j["rules"]) {
    if (!x.is_object() || !x.contains("name") || !x["name"].is_string() || !x.contains("period") || !x["period"].is_string())
      return Status::Corruption("a stored retention rule lacks its name or period");
    auto rule = ParseRetentionRule(x["name"].get<std::string>() + "=" + x["period"].get<std::string>(),
                                   x.value("legal_duty", false));
    if (!rule.ok()) return Status::Corruption(rule.status().message());
    if (!names.insert(rule->name).second) return Status::Corruption("retention rule '" + rule->name + "' is named twice");
    r.rules.push_back(std::move(*rule));
  }
  return r;
}

Result<RetentionRules> LoadRetention(Store& store) {
  auto v = store.GetNodeState(kRetentionStateKey);
  if (!v.ok()) return v.status();
  if (!v->has_value()) return RetentionRules{};
  auto j = nlohmann::json::parse((*v)->begin(), (*v)->end(), nullptr, false);
  if (j.is_discarded()) return Status::Corruption("stored retention rules are not JSON");
  return RetentionFromJson(j);
}

Status SaveRetention(Store& store, const RetentionRules& rules) {
  if (rules.rules.size() > kMaxRetentionRules) return Status::InvalidArgument("at most 64 retention rules");
  std::set<std::string> names;
  for (const RetentionRule& r : rules.rules)
    if (!names.insert(r.name).second) return Status::InvalidArgument("retention rule '" + r.name + "' is given twice");
  std::string text = RetentionToJson(rules).dump();
  return store.SetNodeState(kRetentionStateKey, ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

}  // namespace kring
