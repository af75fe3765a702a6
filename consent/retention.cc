// Decides which rule applies to a case and when each held record of a closed case is due for destruction.
#include "consent/retention.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace kring {

namespace {

bool ContainsFolded(std::string_view haystack, std::string_view needle) {
  if (needle.empty() || needle.size() > haystack.size()) return false;
  auto eq = [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b)); };
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(), eq) != haystack.end();
}

bool IsDecision(RecordType t) {
  return t != RecordType::kFragment && t != RecordType::kKeyGrant && t != RecordType::kAccessRecord &&
         t != RecordType::kCheckpoint;
}

}  // namespace

const RetentionRule& RuleForCase(const RetentionRules& rules, std::string_view close_reason,
                                 const std::vector<std::string>& bases, int64_t start_ms) {
  for (const RetentionRule& r : rules.rules)
    if (!close_reason.empty() && r.name == close_reason) return r;
  const RetentionRule* best = nullptr;
  for (const RetentionRule& r : rules.rules)
    if (std::any_of(bases.begin(), bases.end(), [&](const std::string& b) { return ContainsFolded(b, r.name); }))
      if (best == nullptr || LongerThan(r.period, best->period, start_ms)) best = &r;
  return best ? *best : rules.fallback;
}

const RetentionRule* LegalDutyFor(const RetentionRules& rules, const std::vector<std::string>& bases, int64_t start_ms) {
  const RetentionRule* best = nullptr;
  for (const RetentionRule& r : rules.rules)
    if (r.legal_duty && std::any_of(bases.begin(), bases.end(), [&](const std::string& b) { return ContainsFolded(b, r.name); }))
      if (best == nullptr || LongerThan(r.period, best->period, start_ms)) best = &r;
  if (best == nullptr && rules.fallback.legal_duty) best = &rules.fallback;
  return best;
}

std::vector<std::string> BasesOf(const CaseState& s, std::string_view org) {
  std::vector<std::string> out;
  for (const ConsentView& c : s.Consents(0))
    if (c.grant->grantee.v == org) out.push_back(c.grant->basis.v);
  if (auto closure = s.Closure(); closure && closure->by == org) out.push_back(closure->rule);
  return out;
}

RetentionPlan PlanRetention(const CaseState& s, const std::string& me, const RetentionRules& mine,
                            const std::vector<RetainedRecord>& held, int64_t now_ms) {
  RetentionPlan out;
  auto consider = [&](int64_t t) {
    if (t > now_ms && (!out.next_ms || t < *out.next_ms)) out.next_ms = t;
  };
  auto settle = [&](const RecordId& id, int64_t at) {
    if (at <= now_ms) out.due.push_back(id);
    else consider(at);
  };
  // Access-log copies follow their own period, closed or not.
  for (const RetainedRecord& r : held)
    if (r.type == RecordType::kAccessRecord) settle(r.id, AddPeriod(r.time_ms, mine.access_log));

  std::optional<ClosureView> closure = s.Closure();
  if (!closure) return out;
  const int64_t t = closure->time_ms;
  const int64_t own_end = AddPeriod(t, RuleForCase(mine, closure->reason, BasesOf(s, me), t).period);
  std::optional<int64_t> closer_end;
  if (auto p = ParsePeriod(closure->retention); p.ok()) closer_end = AddPeriod(t, *p);

  std::map<RecordId, int64_t> fragment_end;
  auto end_of = [&](const RetainedRecord& r) {
    if (r.author == me || r.author != closure->by || !closer_end) return own_end;
    return std::min(own_end, *closer_end);
  };
  for (const RetainedRecord& r : held)
    if (r.type == RecordType::kFragment) fragment_end[r.id] = end_of(r);
  int64_t case_end = INT64_MIN;
  std::vector<const RetainedRecord*> decisions;
  for (const RetainedRecord& r : held) {
    if (r.type == RecordType::kAccessRecord || r.type == RecordType::kCheckpoint) continue;
    int64_t at = end_of(r);
    if (r.type == RecordType::kKeyGrant)
      if (auto f = fragment_end.find(r.opens); f != fragment_end.end()) at = f->second;
    case_end = std::max(case_end, at);
    if (IsDecision(r.type)) decisions.push_back(&r);
    else settle(r.id, at);
  }
  if (case_end == INT64_MIN) case_end = own_end;
  out.case_end_ms = case_end;
  for (const RetainedRecord* r : decisions) settle(r->id, case_end);
  out.case_due = case_end <= now_ms;
  return out;
}

}  // namespace kring
