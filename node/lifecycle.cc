// The end of a case: closing and reopening, the retention sweep, legal holds, and the export before destruction.
#include <algorithm>
#include <set>

#include "consent/retention.h"
#include "node/log.h"
#include "node/node.h"
#include "node/retention.h"
#include "plan/merge.h"
#include "protocol/access_record.h"
#include "protocol/record.h"

namespace kring {

namespace {

std::string CloseReasonsList() {
  std::string out;
  for (const char* r : kCloseReasons) out += (out.empty() ? "" : ", ") + std::string(r);
  return out;
}

}  // namespace

Result<RecordId> Node::CloseCase(const CaseId& case_id, const std::string& reason, const std::string& basis) {
  if (!IsCloseReason(reason)) return Status::InvalidArgument("'reason' must be one of: " + CloseReasonsList());
  if (basis.size() > kMaxBasisBytes || !IsPrintableText(basis))
    return Status::InvalidArgument("'basis' must be printable text of at most 1000 bytes");
  auto rules = LoadRetention(*store_);
  if (!rules.ok()) return rules.status();
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  const std::string& me = org_;
  std::vector<std::string> bases = BasesOf(*state, me);
  if (!basis.empty()) bases.push_back(basis);
  const RetentionRule& rule = RuleForCase(*rules, reason, bases, NowMs());
  CaseClose c;
  c.h.case_id = case_id;
  c.h.author.v = me;
  c.h.hlc = clock_.Now();
  c.h.parents.v = ParentsFor(*state);
  c.reason.v = reason;
  c.rule.v = rule.name;
  c.retention.v = FormatPeriod(rule.period);
  auto signed_rec = SignControl(c, *Keys());
  if (!signed_rec.ok()) return signed_rec.status();
  KRING_RETURN_IF_ERROR(state->CheckNewRecord(*signed_rec));
  auto id = StoreOwnControl(std::move(c));
  if (!id.ok()) return id.status();
  KRING_RETURN_IF_ERROR(RecomputeLocked(case_id));
  KRING_LOG(kInfo, "retention", "case " << CaseIdToHex(case_id) << " closed (" << reason << "); what this organisation wrote is kept "
                                         << FormatPeriod(rule.period) << " by rule '" << rule.name << "'");
  return id;
}

Result<RecordId> Node::ReopenCase(const CaseId& case_id, const std::string& reason) {
  if (reason.size() > kMaxReferenceBytes || !IsPrintableText(reason))
    return Status::InvalidArgument("'reason' must be printable text of at most 200 bytes");
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  CaseReopen r;
  r.h.case_id = case_id;
  r.h.author.v = org_;
  r.h.hlc = clock_.Now();
  r.h.parents.v = ParentsFor(*state);
  r.reason.v = reason;
  auto signed_rec = SignControl(r, *Keys());
  if (!signed_rec.ok()) return signed_rec.status();
  KRING_RETURN_IF_ERROR(state->CheckNewRecord(*signed_rec));
  auto id = StoreOwnControl(std::move(r));
  if (!id.ok()) return id.status();
  KRING_RETURN_IF_ERROR(RecomputeLocked(case_id));
  KRING_LOG(kInfo, "retention", "case " << CaseIdToHex(case_id) << " reopened; its retention clock stops");
  return id;
}

Result<RecordId> Node::RequestErasure(const CaseId& case_id, const std::string& reference) {
  if (reference.empty() || reference.size() > kMaxReferenceBytes || !IsPrintableText(reference))
    return Status::InvalidArgument("'reference' is required: what you acted on (the citizen's letter), printable, at most 200 bytes, never a BSN");
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  ErasureRequest e;
  e.h.case_id = case_id;
  e.h.author.v = org_;
  e.h.hlc = clock_.Now();
  e.h.parents.v = ParentsFor(*state);
  e.reference.v = reference;
  auto signed_rec = SignControl(e, *Keys());
  if (!signed_rec.ok()) return signed_rec.status();
  KRING_RETURN_IF_ERROR(state->CheckNewRecord(*signed_rec));
  auto id = StoreOwnControl(std::move(e));
  if (!id.ok()) return id.status();
  KRING_LOG(kInfo, "retention", "erasure request " << ToHex(*id).substr(0, 16) << " recorded in case " << CaseIdToHex(case_id));
  KRING_RETURN_IF_ERROR(RecomputeLocked(case_id));  // erases here and answers
  return id;
}

Status Node::EraseOnRequestLocked(const CaseState& state) {
  std::vector<ErasureRequestView> requests = state.ErasureRequests();
  if (requests.empty()) return Status::Ok();
  const CaseId& case_id = state.case_id();
  const std::string& me = org_;
  auto records = store_->RecordsOfCase(case_id);
  if (!records.ok()) return records.status();
  std::set<RecordId> answered;
  for (const StoredRecord& r : *records)
    if (r.type == RecordType::kErasureAnswer)
      if (auto c = DecodeControlRecord(r.record); c.ok() && c->header().author.v == me)
        answered.insert(std::get<ErasureAnswer>(c->body).request);
  for (const ErasureRequestView& req : requests) {
    if (answered.count(req.id)) continue;
    auto rules = LoadRetention(*store_);
    if (!rules.ok()) return rules.status();
    const RetentionRule* duty = LegalDutyFor(*rules, BasesOf(state, me), NowMs());
    // Plan content goes: fragments (what this organisation wrote only when
    // no legal duty keeps it) and the key grants of what goes. The consent
    // records, erasure records and access-log copies stay until the sweep:
    // they hold no plan content and prove what happened.
    std::vector<RecordId> erase;
    std::set<RecordId> kept_fragments;
    uint32_t kept = 0;
    for (const StoredRecord& r : *records) {
      if (r.type != RecordType::kFragment) continue;
      auto f = DecodeFragmentRecord(r.record);
      if (!f.ok()) continue;
      if (duty != nullptr && f->header.author.v == me) {
        kept_fragments.insert(r.id);
        ++kept;
      } else {
        erase.push_back(r.id);
      }
    }
    for (const StoredRecord& r : *records) {
      if (r.type != RecordType::kKeyGrant) continue;
      auto c = DecodeControlRecord(r.record);
      if (c.ok() && !kept_fragments.count(std::get<KeyGrant>(c->body).fragment)) erase.push_back(r.id);
    }
    if (duty == nullptr) KRING_RETURN_IF_ERROR(store_->ForgetCaseLabel(case_id));
    size_t erased = 0;
    if (!erase.empty()) {
      auto n = store_->DestroyRecords(case_id, erase, false, NowMs());
      if (!n.ok()) return n.status();
      erased = *n;
      wal_pending_ = true;  // DestroyRecords truncated the WAL unless a reader held it up: the sweep makes sure
    }
    ErasureAnswer a;
    a.h.case_id = case_id;
    a.h.author.v = me;
    a.h.hlc = clock_.Now();
    a.h.parents.v = ParentsFor(state);
    a.request = req.id;
    a.erased = static_cast<uint32_t>(erased);
    a.kept = kept;
    if (duty != nullptr && kept > 0) {
      a.rule.v = duty->name;
      a.why.v = "kept by a legal duty to keep (" + duty->name + ", " + FormatPeriod(duty->period) +
                " after the case closed); destroyed by the retention sweep when that ends";
    } else {
      a.why.v = "erased everything this organisation held of the plan; the consent records and the access log stay "
                "until their retention period ends";
    }
    auto id = StoreOwnControl(std::move(a));
    if (!id.ok()) return id.status();
    KRING_LOG(kInfo, "retention", "erasure request " << ToHex(req.id).substr(0, 16) << " in case " << CaseIdToHex(case_id)
                                                     << ": erased " << erased << " record(s), kept " << kept
                                                     << (duty && kept ? " by legal duty '" + duty->name + "'" : std::string()));
    LogSystemAccess("purge", case_id, {"erasure:" + ToHex(req.id), "erased:" + std::to_string(erased), "kept:" + std::to_string(kept)});
  }
  return Status::Ok();
}

Result<nlohmann::json> Node::ErasureStatus(const CaseId& case_id) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  auto records = store_->RecordsOfCase(case_id, RecordType::kErasureAnswer);
  if (!records.ok()) return records.status();
  std::set<std::string> involved;
  if (!state->creator().empty()) involved.insert(state->creator());
  involved.insert(state->Regie().org);
  for (const ConsentView& c : state->Consents(0)) involved.insert(c.grant->grantee.v);
  nlohmann::json list = nlohmann::json::array();
  for (const ErasureRequestView& req : state->ErasureRequests()) {
    nlohmann::json answers = nlohmann::json::array();
    std::set<std::string> waiting = involved;
    for (const StoredRecord& r : *records) {
      auto c = DecodeControlRecord(r.record);
      if (!c.ok()) continue;
      const auto& a = std::get<ErasureAnswer>(c->body);
      if (a.request != req.id) continue;
      waiting.erase(a.h.author.v);
      answers.push_back({{"organisation", a.h.author.v}, {"answer", ToHex(r.id)},
                         {"answered", IsoTimeMillis(HlcMillis(a.h.hlc))}, {"erased", a.erased}, {"kept", a.kept},
                         {"rule", a.rule.v}, {"why", a.why.v}});
    }
    nlohmann::json e = {{"request", ToHex(req.id)}, {"recorded", IsoTimeMillis(static_cast<uint64_t>(req.time_ms))},
                        {"by", req.by}, {"reference", req.reference}, {"answers", answers}};
    // Only the regie organisation receives every answer.
    if (state->Regie().org == org_ && !waiting.empty())
      e["waiting_for"] = std::vector<std::string>(waiting.begin(), waiting.end());
    list.push_back(std::move(e));
  }
  return nlohmann::json{{"case", CaseIdToHex(case_id)}, {"requests", list}};
}

Status Node::PutHold(const CaseId& case_id, const std::string& reason) {
  if (reason.empty() || reason.size() > kMaxReferenceBytes || !IsPrintableText(reason))
    return Status::InvalidArgument("'reason' is required: printable text of at most 200 bytes");
  auto lock = LockCase(case_id);
  auto known = store_->CaseKnown(case_id);
  if (!known.ok()) return known.status();
  if (!*known) return Status::NotFound("no case " + CaseIdToHex(case_id) + " on this node");
  KRING_RETURN_IF_ERROR(store_->SetHold(case_id, LegalHold{NowMs(), reason}));
  KRING_LOG(kInfo, "retention", "legal hold on case " << CaseIdToHex(case_id) << ": its sweep is suspended");
  return Status::Ok();
}

Status Node::LiftHold(const CaseId& case_id) {
  auto lock = LockCase(case_id);
  KRING_RETURN_IF_ERROR(store_->SetHold(case_id, std::nullopt));
  KRING_LOG(kInfo, "retention", "legal hold on case " << CaseIdToHex(case_id) << " lifted");
  return Status::Ok();
}

Result<std::optional<LegalHold>> Node::HoldOf(const CaseId& case_id) { return store_->HoldOf(case_id); }

void Node::SetSweepInterval(int64_t interval_ms) {
  std::lock_guard lock(sweep_mu_);
  sweep_interval_ms_ = interval_ms;
}

void Node::SweepIfDue() {
  {
    std::lock_guard lock(sweep_mu_);
    if (sweep_interval_ms_ <= 0) return;
    if (last_sweep_ms_ != 0 && NowMs() - last_sweep_ms_ < sweep_interval_ms_) return;
    last_sweep_ms_ = NowMs();
  }
  auto report = SweepRetention();
  if (!report.ok()) KRING_LOG(kError, "retention", "the retention sweep failed (retried next interval): " << report.status().ToString());
}

Result<Node::SweepReport> Node::SweepRetention() {
  auto rules = LoadRetention(*store_);
  if (!rules.ok()) return rules.status();
  auto cases = store_->CasesWithRecords();
  if (!cases.ok()) return cases.status();
  const std::string& me = org_;
  SweepReport report;
  std::set<CaseId> held_cases;
  for (const CaseId& c : *cases) {
    auto lock = LockCase(c);
    const int64_t now = NowMs();
    auto hold = store_->HoldOf(c);
    if (!hold.ok()) return hold.status();
    auto state_or = StateLocked(c);
    if (!state_or.ok() && state_or.status().code() != Status::Code::kNotFound) return state_or.status();
    if (hold->has_value()) {
      held_cases.insert(c);
      if (state_or.ok() && state_or->Closure()) ++report.cases_held;
      continue;
    }
    // Without a genesis (only access-log copies left): only their own period counts.
    CaseState state = state_or.ok() ? *state_or : CaseState(c);
    auto records = store_->RecordsOfCase(c);
    if (!records.ok()) return records.status();
    std::vector<RetainedRecord> held;
    std::map<RecordId, RecordType> types;
    for (const StoredRecord& r : *records) {
      auto any = DecodeRecord(r.record);
      if (!any.ok()) continue;
      RetainedRecord x;
      x.id = r.id;
      x.type = r.type;
      x.time_ms = static_cast<int64_t>(HlcMillis(r.hlc));
      if (auto* f = std::get_if<Fragment>(&*any)) {
        x.author = f->header.author.v;
      } else if (auto* a = std::get_if<AccessRecord>(&*any)) {
        x.author = a->body.author.v;
        x.time_ms = a->body.time_ms;
      } else if (auto* k = std::get_if<ControlRecord>(&*any)) {
        x.author = k->header().author.v;
        if (auto* g = std::get_if<KeyGrant>(&k->body)) x.opens = g->fragment;
      } else {
        continue;  // checkpoints belong to no case
      }
      types[x.id] = x.type;
      held.push_back(std::move(x));
    }
    RetentionPlan plan = PlanRetention(state, me, *rules, held, now);
    std::vector<RecordId> ids = plan.due;
    if (plan.case_due) {
      // The whole case goes; access-log copies not yet due stay until theirs.
      for (const RetainedRecord& r : held)
        if (r.type != RecordType::kAccessRecord && std::find(ids.begin(), ids.end(), r.id) == ids.end()) ids.push_back(r.id);
    }
    if (ids.empty() && !plan.case_due) continue;
    auto n = store_->DestroyRecords(c, ids, plan.case_due, now);
    if (!n.ok()) return n.status();
    ForgetState(c);
    size_t fragments = 0;
    for (const RecordId& id : ids)
      if (types[id] == RecordType::kFragment) ++fragments;
    report.records_destroyed += *n;
    report.fragments_destroyed += fragments;
    if (plan.case_due) {
      ++report.cases_destroyed;
      SetDue(c, std::nullopt);
    }
    KRING_LOG(kInfo, "retention", "destroyed " << *n << " record(s) (" << fragments << " fragment(s)) of case " << CaseIdToHex(c)
                                               << (plan.case_due ? ", and the case itself (label, key grants, audiences)" : "")
                                               << " past their retention period");
    std::vector<std::string> items = {"destroyed:" + std::to_string(*n)};
    for (const RecordId& id : ids) items.push_back(ToHex(id));
    LogSystemAccess("purge", c, std::move(items));
  }

  // The node's own access log: each entry its own period, whatever its case;
  // a held case's entries stop the cut (the chain is cut at its start only).
  const Period access_period = rules->access_log;
  const int64_t now = NowMs();
  auto expired = store_->ExpireAccessLog(
      [&](int64_t time_ms, const std::optional<CaseId>& c) {
        return AddPeriod(time_ms, access_period) <= now && !(c && held_cases.count(*c));
      },
      now);
  if (!expired.ok()) return expired.status();
  report.access_entries_expired = *expired;
  if (*expired > 0) {
    auto anchor = store_->AccessLogAnchor();
    if (!anchor.ok()) return anchor.status();
    KRING_LOG(kInfo, "retention", "removed " << *expired << " access-log entries older than " << FormatPeriod(access_period)
                                             << "; the chain now starts after entry " << anchor->upto_seq);
    // The cut itself is an entry of the chain, so the signed checkpoints
    // after it vouch for where the chain starts and with which hash.
    AccessEntry e;
    RandomBytes(e.event_id);
    e.time_ms = now;
    e.action = "purge";
    e.outcome = "success";
    e.actor_id = "kring-node";
    e.actor_name = "kring-node (automatic)";
    e.actor_role = "system";
    e.organisation = me;
    e.client_system = "kring-node";
    e.items = {"access-log-expired:" + std::to_string(*expired), "anchor:" + std::to_string(anchor->upto_seq) + ":" + ToHex(anchor->hash)};
    KRING_RETURN_IF_ERROR(AppendAccess(&e));
  }
  // Nothing of what went may stay in the WAL: if a reader (another process)
  // held the checkpoint up, a later sweep completes it. Only then: a
  // checkpoint takes locks other processes (the CLI) would wait for.
  if (report.records_destroyed > 0 || report.access_entries_expired > 0) wal_pending_ = true;
  if (wal_pending_.load()) {
    if (Status st = store_->TruncateWal(); !st.ok()) return st;
    wal_pending_ = false;
  }
  if (report.records_destroyed > 0 || report.access_entries_expired > 0 || report.cases_held > 0)
    KRING_LOG(kInfo, "retention", "sweep: " << report.cases_destroyed << " case(s) and " << report.records_destroyed
                                            << " record(s) destroyed, " << report.access_entries_expired
                                            << " access-log entries removed, " << report.cases_held << " closed case(s) on legal hold");
  return report;
}

Result<nlohmann::json> Node::ExportCase(const CaseId& case_id) {
  auto plan = ReadPlan(case_id);
  if (!plan.ok()) return plan.status();
  auto state = State(case_id);
  if (!state.ok()) return state.status();
  auto log = AccessLogOf(case_id, 0, INT64_MAX);
  if (!log.ok()) return log.status();
  auto hold = HoldOf(case_id);
  if (!hold.ok()) return hold.status();
  const int64_t now = NowMs();
  nlohmann::json consents = nlohmann::json::array();
  const GranteeDirectory grantees = Grantees();
  for (const ConsentView& v : state->Consents(now)) {
    consents.push_back(ConsentToJson(v));
    consents.back()["grantee_status"] = grantees.Status(v.grant->grantee.v);
  }
  nlohmann::json entries = nlohmann::json::array();
  for (const AccessEntry& e : *log) entries.push_back(AccessEntryToJson(e));
  RegieView regie = state->Regie();
  nlohmann::json out = {{"format", "kring-export/1"},
                        {"case", CaseIdToHex(case_id)},
                        {"organisation", org_},
                        {"exported", IsoTimeMillis(static_cast<uint64_t>(now))},
                        {"regie", {{"org", regie.org}, {"person", regie.person}}},
                        {"closed", ClosureToJson(state->Closure())},
                        {"hold", hold->has_value() ? nlohmann::json{{"since", IsoTimeMillis(static_cast<uint64_t>((*hold)->since_ms))},
                                                                   {"reason", (*hold)->reason}}
                                                   : nlohmann::json(nullptr)},
                        {"plan", plan->plan},
                        {"consents", consents},
                        {"access_log", entries}};
  return out;
}

nlohmann::json ClosureToJson(const std::optional<ClosureView>& c) {
  if (!c) return nullptr;
  return {{"reason", c->reason}, {"since", IsoTimeMillis(static_cast<uint64_t>(c->time_ms))}, {"by", c->by},
          {"record", ToHex(c->id)}, {"retention", {{"rule", c->rule}, {"period", c->retention}}}};
}

const char* PlanStatusOf(const std::optional<ClosureView>& c) {
  if (!c) return "active";
  return c->reason == "goals-reached" ? "completed" : "revoked";
}

nlohmann::json ConsentToJson(const ConsentView& v) {
  const ConsentGrant& g = *v.grant;
  nlohmann::json domains = nlohmann::json::array();
  for (auto& d : g.domains.v) domains.push_back(d.v);
  auto iso = [](int64_t ms) { return IsoTimeMillis(static_cast<uint64_t>(ms)); };
  nlohmann::json e = {{"consent", ToHex(v.id)}, {"grantee", g.grantee.v}, {"domains", domains}, {"purpose", g.purpose.v},
                      {"basis", g.basis.v}, {"valid_from", iso(g.valid_from_ms)},
                      {"valid_until", g.valid_until_ms ? nlohmann::json(iso(g.valid_until_ms)) : nlohmann::json(nullptr)},
                      {"given_by", g.given_by.v},
                      {"evidence", g.evidence_kind == kEvidenceCitizenSigned
                                       ? nlohmann::json{{"kind", "citizen-signed"}, {"reference", g.evidence_reference.v},
                                                        {"citizen_key", ToHex(g.citizen.key)}}
                                       : nlohmann::json{{"kind", "attested"}, {"reference", g.evidence_reference.v}}},
                      {"recorded_by", g.h.author.v}, {"recorded", iso(static_cast<int64_t>(HlcMillis(g.h.hlc)))},
                      {"status", ConsentStatusName(v.status)}};
  if (v.withdrawn_by) e["withdrawn_by"] = ToHex(*v.withdrawn_by);
  return e;
}

nlohmann::json AccessEntryToJson(const AccessEntry& e) {
  nlohmann::json actor = {{"id", e.actor_id}, {"name", e.actor_name}, {"role", e.actor_role}};
  if (!e.on_behalf_of.empty()) actor["on_behalf_of"] = e.on_behalf_of;
  nlohmann::json j = {{"event", ToHex(e.event_id)}, {"time", IsoTimeMillis(static_cast<uint64_t>(e.time_ms))},
                      {"action", e.action}, {"outcome", e.outcome}, {"actor", actor}, {"organisation", e.organisation},
                      {"client", e.client_system}, {"items", e.items}};
  if (!e.consent.empty()) j["consent"] = e.consent;
  return j;
}

}  // namespace kring
