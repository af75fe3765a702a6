// Retention: which of an organisation's rules applies to a case, and when each record a node holds of a closed case must be destroyed.
//
// Pure, like the rest of consent/: the node passes its rules, what it holds
// and the time, and destroys what the answer names (docs/retention.md).
//
// The rules, for a node of organisation `me` holding records of a case
// closed at time T (the CaseClose record's time) by organisation C, whose
// close record carries C's period P_C for what C wrote:
//   - own(me): the period of the rule of `me` that applies to the case
//     (RuleForCase): a rule named exactly as the close reason, else the
//     longest rule whose name occurs in a legal basis this organisation has
//     in the case, else the default;
//   - a record `me` wrote:        destroyed at T + own(me);
//   - a record C wrote (me != C): at min(T + own(me), T + P_C): never later
//     than the author's own limit, earlier when `me` has no reason to keep it;
//   - a record another organisation wrote: at T + own(me) (that author's
//     rule does not travel; docs/retention.md says why this is the bound);
//   - a key grant: with the fragment it opens, when held;
//   - the decision records (the consent state) together, at the latest time
//     of any record of the case held, so the state is never half gone;
//   - access-log copies (records of other organisations' access logs): at
//     their own time + the access-log period, whether the case is closed or not.
// A reopen stops the clock: nothing is due in an open case but access-log copies.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "consent/case_state.h"
#include "protocol/period.h"

namespace kring {

inline constexpr size_t kMaxRetentionRules = 64;

struct RetentionRule {
  std::string name;          // a legal basis or kind of service ("Wmo 2015", "Jeugdwet"), a close reason, or "default"
  Period period;
  bool legal_duty = false;   // the law obliges the organisation to keep it: it survives an erasure request
};

// An organisation's retention rules (the node's configuration).
struct RetentionRules {
  RetentionRule fallback{"default", Period{.years = 15}, false};
  std::vector<RetentionRule> rules;           // at most kMaxRetentionRules, names unique
  Period access_log{.years = 5};              // NEN 7513 access-log entries
};

// The rule of `rules` that applies to a case: the rule named exactly as
// `close_reason`; else, of the rules whose name occurs (ASCII case-insensitive)
// in one of `bases`, the one that ends last from `start_ms`; else the fallback.
const RetentionRule& RuleForCase(const RetentionRules& rules, std::string_view close_reason,
                                 const std::vector<std::string>& bases, int64_t start_ms);

// The rule that obliges an organisation to keep what it wrote in a case
// despite the citizen's erasure request: of the rules marked as a legal duty
// whose name occurs in one of `bases`, the longest from `start_ms`; else the
// fallback when it is marked so; nullptr when none.
const RetentionRule* LegalDutyFor(const RetentionRules& rules, const std::vector<std::string>& bases, int64_t start_ms);

// The legal bases `org` has in a case: of every consent granted to it, and,
// for the organisation that closed it, the name of the rule it closed under.
std::vector<std::string> BasesOf(const CaseState& s, std::string_view org);

// A record a node holds, as retention needs it.
struct RetainedRecord {
  RecordId id{};
  RecordType type = RecordType::kFragment;
  std::string author;
  int64_t time_ms = 0;     // the record's own time (its hlc)
  RecordId opens{};        // key grants: the fragment whose key it holds
};

struct RetentionPlan {
  std::vector<RecordId> due;           // destroy now
  bool case_due = false;               // every record of the case but access-log copies is due
  std::optional<int64_t> next_ms;      // when the next record becomes due; nullopt: none while nothing changes
  std::optional<int64_t> case_end_ms;  // closed cases: when the last of it goes
};

RetentionPlan PlanRetention(const CaseState& s, const std::string& me, const RetentionRules& mine,
                            const std::vector<RetainedRecord>& held, int64_t now_ms);

}  // namespace kring
