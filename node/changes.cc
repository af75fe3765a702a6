// The change feed: what changed on this node, filtered by what this organisation may see now (consent/admission.h).
#include <map>

#include "consent/admission.h"
#include "node/log.h"
#include "node/node.h"
#include "protocol/record.h"

namespace kring {

Result<ChangePage> Node::Changes(int64_t after_seq, size_t limit) {
  ChangePage page;
  page.next_seq = after_seq;
  auto rows = store_->ChangesAfter(after_seq, kMaxChangesScanned);
  if (!rows.ok()) return rows.status();
  const std::string& me = org_;
  std::map<CaseId, std::optional<CaseState>> states;  // nullopt: this node takes no part in the case
  for (ChangeRow& row : *rows) {
    if (page.changes.size() >= limit) break;
    page.next_seq = row.seq;
    auto known = states.find(row.case_id);
    if (known == states.end()) {
      auto st = State(row.case_id);
      if (!st.ok() && st.status().code() != Status::Code::kNotFound) return st.status();
      known = states.emplace(row.case_id, st.ok() ? std::optional<CaseState>(std::move(*st)) : std::nullopt).first;
    }
    if (!known->second) continue;
    const CaseState& state = *known->second;
    const int64_t now = NowMs();
    Change c;
    c.seq = row.seq;
    c.time_ms = row.time_ms;
    c.case_id = row.case_id;
    c.kind = row.kind;
    if (row.kind == "purge") {
      // This node's own purge: the versions it no longer holds, for a system that kept copies.
      c.ids["versions"] = row.items;
      page.changes.push_back(std::move(c));
      continue;
    }
    // Every other change names a record; gone (purged) means no longer to be seen.
    auto rec = store_->GetRecord(row.ref);
    if (!rec.ok()) return rec.status();
    if (!rec->has_value()) continue;
    auto any = DecodeRecord((*rec)->record);
    if (!any.ok()) continue;
    if (auto* f = std::get_if<Fragment>(&*any)) {
      if (!MaySeeVersion(state, FactsOf(row.ref, *f), me, now)) continue;
      c.ids = {{"item", ToHex(f->ItemId())}, {"version", ToHex(row.ref)}, {"item_kind", f->header.kind.v}};
    } else if (auto* r = std::get_if<ControlRecord>(&*any)) {
      if (!MaySeeDecision(state, *r, me, now)) continue;
      if (std::holds_alternative<ConsentGrant>(r->body)) {
        c.ids["consent"] = ToHex(row.ref);
      } else if (auto* w = std::get_if<ConsentWithdrawal>(&r->body)) {
        c.ids["consent"] = ToHex(w->consent);
        c.ids["withdrawal"] = ToHex(row.ref);
      } else if (std::holds_alternative<RegieChange>(r->body) || std::holds_alternative<CaseClose>(r->body) ||
                 std::holds_alternative<CaseReopen>(r->body)) {
        c.ids["record"] = ToHex(row.ref);
      }
    } else {
      continue;
    }
    page.changes.push_back(std::move(c));
  }
  return page;
}

Status Node::RecordExpiriesLocked(const CaseState& state, int64_t now) {
  for (const ConsentView& v : state.Consents(now)) {
    if (v.status != ConsentStatus::kExpired) continue;
    auto seen = store_->HasChange("consent-expired", v.id);
    if (!seen.ok()) return seen.status();
    if (*seen) continue;
    ChangeRow row;
    row.time_ms = now;
    row.case_id = state.case_id();
    row.kind = "consent-expired";
    row.ref = v.id;
    KRING_RETURN_IF_ERROR(store_->AddChange(row));
  }
  return Status::Ok();
}

}  // namespace kring
