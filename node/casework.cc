// The professional's operations on a case: open it, record and withdraw consent, write and read the plan.
#include <algorithm>
#include <map>
#include <set>

#include "crypto/primitives.h"
#include "node/log.h"
#include "node/node.h"
#include "plan/items.h"
#include "plan/merge.h"
#include "consent/admission.h"
#include "protocol/access_record.h"
#include "protocol/messages.h"

namespace kring {


Result<CaseId> Node::CreateCase(const std::string& label) {
  if (label.size() > 200) return Status::InvalidArgument("label is longer than 200 bytes");
  CaseGenesis g;
  RandomBytes(g.nonce);
  g.h.case_id = CaseIdFor(org_, g.nonce);
  g.h.author.v = org_;
  g.h.hlc = clock_.Now();
  auto lock = LockCase(g.h.case_id);
  KRING_RETURN_IF_ERROR(store_->CreateCase(g.h.case_id, label, NowMs()));
  CaseId id = g.h.case_id;
  auto rec = StoreOwnControl(std::move(g));
  if (!rec.ok()) return rec.status();
  KRING_RETURN_IF_ERROR(RecomputeLocked(id));
  return id;
}

// Who may record, withdraw or hand over is decided in consent/ alone: each
// record is signed and offered to CheckNewRecord, whose refusal (403) names the rule.
Result<RecordId> Node::RecordConsent(const CaseId& case_id, const ConsentInput& in) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  const std::string& me = org_;
  ConsentGrant c;
  c.h.case_id = case_id;
  c.h.author.v = me;
  c.h.hlc = clock_.Now();
  c.h.parents.v = ParentsFor(*state);
  c.grantee.v = in.grantee;
  std::vector<std::string> domains = in.domains;
  std::sort(domains.begin(), domains.end());
  domains.erase(std::unique(domains.begin(), domains.end()), domains.end());
  if (domains.empty()) return Status::InvalidArgument("'domains' must name at least one life domain or \"*\"");
  if (domains.size() > 1 && std::find(domains.begin(), domains.end(), "*") != domains.end())
    return Status::InvalidArgument("\"*\" (all domains) stands alone");
  for (const std::string& d : domains) {
    if (d != "*" && !IsLifeDomain(d)) return Status::InvalidArgument("unknown life domain '" + d + "'");
    c.domains.v.push_back({d});
  }
  if (in.purpose.empty() || in.purpose.size() > kMaxPurposeBytes) return Status::InvalidArgument("'purpose' is required, at most 1000 bytes");
  if (in.basis.empty() || in.basis.size() > kMaxBasisBytes) return Status::InvalidArgument("'basis' is required, at most 1000 bytes");
  if (in.given_by.empty() || in.given_by.size() > kMaxReferenceBytes) return Status::InvalidArgument("'given_by' is required, at most 200 bytes");
  if (in.evidence_reference.empty() || in.evidence_reference.size() > kMaxReferenceBytes)
    return Status::InvalidArgument("'evidence.reference' is required, at most 200 bytes");
  if (in.valid_until_ms != 0 && in.valid_until_ms <= in.valid_from_ms)
    return Status::InvalidArgument("'valid_until' must be after 'valid_from'");
  c.purpose.v = in.purpose;
  c.basis.v = in.basis;
  c.valid_from_ms = in.valid_from_ms;
  c.valid_until_ms = in.valid_until_ms;
  c.given_by.v = in.given_by;
  c.evidence_kind = 1;
  c.evidence_reference.v = in.evidence_reference;
  auto signed_rec = SignControl(c, *Keys());
  if (!signed_rec.ok()) return signed_rec.status();
  KRING_RETURN_IF_ERROR(state->CheckNewRecord(*signed_rec));
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();
  if (std::none_of(partners->begin(), partners->end(), [&](const Partner& p) { return p.identity.org == in.grantee; }))
    return Status::InvalidArgument("grantee '" + in.grantee + "' is not a partner of this node");
  auto id = StoreOwnControl(std::move(c));
  if (!id.ok()) return id.status();
  KRING_RETURN_IF_ERROR(RecomputeLocked(case_id));
  KRING_LOG(kInfo, "consent", "consent " << ToHex(*id).substr(0, 16) << " recorded for " << in.grantee << " in case "
                                         << CaseIdToHex(case_id));
  return id;
}

Result<RecordId> Node::WithdrawConsent(const CaseId& case_id, const RecordId& consent) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  auto consents = state->Consents(NowMs());
  auto it = std::find_if(consents.begin(), consents.end(), [&](const ConsentView& v) { return v.id == consent; });
  if (it == consents.end() || !it->valid) return Status::NotFound("no consent " + ToHex(consent) + " in this case");
  const std::string& me = org_;
  if (it->status == ConsentStatus::kWithdrawn) return Status::Conflict("consent is already withdrawn");
  ConsentWithdrawal w;
  w.h.case_id = case_id;
  w.h.author.v = me;
  w.h.hlc = clock_.Now();
  w.h.parents.v = ParentsFor(*state);
  w.consent = consent;
  auto signed_rec = SignControl(w, *Keys());
  if (!signed_rec.ok()) return signed_rec.status();
  KRING_RETURN_IF_ERROR(state->CheckNewRecord(*signed_rec));
  auto id = StoreOwnControl(std::move(w));
  if (!id.ok()) return id.status();
  withdrawals_processed_.fetch_add(1);
  KRING_RETURN_IF_ERROR(RecomputeLocked(case_id));
  KRING_LOG(kInfo, "consent", "consent " << ToHex(consent).substr(0, 16) << " withdrawn in case " << CaseIdToHex(case_id)
                                         << "; nothing more is shared in its scope");
  return id;
}

Result<ItemWritten> Node::WriteItem(const CaseId& case_id, const ItemInput& in) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  const std::string& me = org_;
  const int64_t now = NowMs();
  if (auto closed = state->Closure())
    return Status::Conflict("the case is closed (" + closed->reason + "): it takes no new items until the regie organisation (" +
                            closed->by + ") reopens it");

  if (in.kind == "regisseur") {
    if (!in.supersedes.empty()) return Status::InvalidArgument("a regisseur item names no versions to supersede");
    KRING_RETURN_IF_ERROR(ValidateItem(in.kind, in.domain, in.data));
    RegieChange r;
    r.h.case_id = case_id;
    r.h.author.v = me;
    r.h.hlc = clock_.Now();
    r.h.parents.v = ParentsFor(*state);
    r.regie.v = in.data.at("org").get<std::string>();
    r.person.v = in.data.at("person").get<std::string>();
    if (r.regie.v != me) {
      auto partners = store_->ListPartners();
      if (!partners.ok()) return partners.status();
      if (std::none_of(partners->begin(), partners->end(), [&](const Partner& p) { return p.identity.org == r.regie.v; }))
        return Status::InvalidArgument("regie can only be handed to a partner of this node");
    }
    auto signed_rec = SignControl(r, *Keys());
    if (!signed_rec.ok()) return signed_rec.status();
    KRING_RETURN_IF_ERROR(state->CheckNewRecord(*signed_rec));
    auto id = StoreOwnControl(std::move(r));
    if (!id.ok()) return id.status();
    KRING_RETURN_IF_ERROR(RecomputeLocked(case_id));
    return ItemWritten{*id, *id, false, ""};
  }

  KRING_RETURN_IF_ERROR(ValidateItem(in.kind, in.domain, in.data));
  if (in.supersedes.empty() && IsTombstone(in.data))
    return Status::InvalidArgument("a new item cannot be a deletion; delete an item by superseding its versions");
  FragmentDraft d;
  d.case_id = case_id;
  d.kind = in.kind;
  d.domain = in.domain;
  d.predecessors = in.supersedes;
  // An edit belongs to the item of the versions it supersedes; they must be
  // versions of one item of this case that we may read, of the same kind and domain.
  for (const FragmentId& p : in.supersedes) {
    auto rec = store_->GetRecord(p);
    if (!rec.ok()) return rec.status();
    if (!rec->has_value() || (*rec)->type != RecordType::kFragment)
      return Status::NotFound("version " + ToHex(p) + " is not held by this node");
    auto pf = DecodeFragmentRecord((*rec)->record);
    if (!pf.ok()) return pf.status();
    if (pf->header.case_id != case_id) return Status::InvalidArgument("a superseded version belongs to another case");
    if (pf->header.kind.v != in.kind || pf->header.domain.v != in.domain)
      return Status::InvalidArgument("an edit keeps the item's kind and domain (" + pf->header.kind.v + ", " +
                                     (pf->header.domain.v.empty() ? std::string("no domain") : pf->header.domain.v) + ")");
    FragmentId item = pf->ItemId();
    if (d.item != FragmentId{} && d.item != item) return Status::InvalidArgument("superseded versions belong to different items");
    d.item = item;
  }
  // If-Match: the writer saw the item as it is now, or nothing is written.
  if (!in.if_match.empty()) {
    if (in.supersedes.empty()) return Status::InvalidArgument("If-Match applies to an edit (an item with 'supersedes')");
    auto heads = ItemHeadsLocked(*state, case_id, d.item);
    if (!heads.ok()) return heads.status();
    if (in.if_match != "*" && in.if_match != ItemEtag(*heads))
      return Status::FailedPrecondition("the item changed since you read it (its ETag is now " + ItemEtag(*heads) +
                                        "); read it again and edit that");
  }
  FragmentFacts facts{FragmentId{}, me, in.domain, now};
  if (!state->MayWriteAt(me, in.domain, now))
    return Status::PermissionDenied("this organisation has no active consent for " +
                                    (in.domain.empty() ? std::string("this case") : "domain '" + in.domain + "'"));
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();
  for (const std::string& reader : state->Readers(facts, now)) {
    if (reader == me) continue;
    auto it = std::find_if(partners->begin(), partners->end(), [&](const Partner& p) { return p.identity.org == reader; });
    if (it == partners->end()) {
      KRING_LOG(kWarn, "plan", reader << " may read this item but is not our partner; the regie organisation re-seals it");
      continue;
    }
    d.recipients.push_back(it->identity);
  }
  std::string text = in.data.dump();
  d.body.assign(text.begin(), text.end());
  sodium_memzero(text.data(), text.size());
  d.hlc = clock_.Now();
  auto f = SealFragment(d, *Keys());
  sodium_memzero(d.body.data(), d.body.size());
  if (!f.ok()) return f.status();
  FragmentId id = f->Id();
  Bytes record = EncodeFragmentRecord(*f);
  facts = FactsOf(id, *f);
  std::set<std::string> partner_orgs;
  for (const Partner& p : *partners) partner_orgs.insert(p.identity.org);
  RecordRow row{id, RecordType::kFragment, case_id, me, in.kind, in.domain, f->header.hlc, record,
                Sendable(FragmentAudience(*state, facts, now), partner_orgs)};
  auto added = store_->PutRecords({row}, me, now);
  if (!added.ok()) return added.status();
  if (sync_) sync_->Announce(id);
  ItemWritten out{f->ItemId(), id, false, ToHex(id)};
  if (in.supersedes.empty()) return out;  // a new item: its one version is its head
  auto heads = ItemHeadsLocked(*state, case_id, out.item);
  if (heads.ok()) {  // the write is durable; only what the answer says about it is missing otherwise
    out.conflict = heads->size() > 1;
    out.etag = ItemEtag(*heads);
  }
  return out;
}

std::string ItemEtag(std::vector<FragmentId> heads) {
  std::sort(heads.begin(), heads.end());
  if (heads.size() == 1) return ToHex(heads[0]);
  Bytes all;
  for (const FragmentId& h : heads) all.insert(all.end(), h.begin(), h.end());
  return "c" + ToHex(HashParts("kring/item-etag/v1", {ByteSpan(all)})).substr(0, 63);
}

Result<std::vector<FragmentId>> Node::ItemHeadsLocked(const CaseState& state, const CaseId& case_id,
                                                      const FragmentId& item) {
  auto records = store_->RecordsOfCase(case_id, RecordType::kFragment);
  if (!records.ok()) return records.status();
  const std::string& me = org_;
  const int64_t now = NowMs();
  std::set<FragmentId> versions, superseded;
  for (const StoredRecord& r : *records) {
    auto f = DecodeFragmentRecord(r.record);
    if (!f.ok() || f->ItemId() != item) continue;
    if (f->header.author.v != me && !state.MayRead(me, FactsOf(r.id, *f), now)) continue;
    versions.insert(r.id);
    for (const FragmentId& p : f->header.predecessors.v) superseded.insert(p);
  }
  std::vector<FragmentId> heads;
  for (const FragmentId& v : versions)
    if (!superseded.count(v)) heads.push_back(v);
  return heads;
}

Result<ItemRead> Node::ReadItem(const CaseId& case_id, const FragmentId& item) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  const std::string& me = org_;
  const int64_t now = NowMs();
  auto records = store_->RecordsOfCase(case_id, RecordType::kFragment);
  if (!records.ok()) return records.status();
  ItemRead out;
  std::set<std::string> consents;
  std::vector<ItemVersion> versions;
  for (const StoredRecord& r : *records) {
    auto f = DecodeFragmentRecord(r.record);
    if (!f.ok() || f->ItemId() != item) continue;
    FragmentFacts facts = FactsOf(r.id, *f);
    if (f->header.author.v != me && !state->MayRead(me, facts, now)) continue;
    BodyRead body = ReadBody(*f, r.id);  // an unreadable version is listed in the plan's `unreadable`
    if (body.outcome == BodyRead::Outcome::kUnreadable) NoteUnreadable(r.id, *f, body.reason);
    if (body.outcome != BodyRead::Outcome::kOk) continue;
    ItemVersion v;
    v.version = r.id;
    v.item = item;
    v.author = f->header.author.v;
    v.kind = f->header.kind.v;
    v.domain = f->header.domain.v;
    v.hlc = f->header.hlc;
    v.supersedes = f->header.predecessors.v;
    v.data = std::move(body.data);
    if (auto c = state->ConsentFor(me, facts, now)) consents.insert(ToHex(*c));
    versions.push_back(std::move(v));
  }
  if (versions.empty()) return Status::NotFound("this organisation may read no version of item " + ToHex(item));
  std::sort(versions.begin(), versions.end(), [](const ItemVersion& a, const ItemVersion& b) {
    return a.hlc != b.hlc ? a.hlc < b.hlc : a.version < b.version;
  });
  nlohmann::json history = nlohmann::json::array();
  std::vector<FragmentId> heads;
  std::set<FragmentId> superseded;
  for (const ItemVersion& v : versions)
    for (const FragmentId& p : v.supersedes) superseded.insert(p);
  for (const ItemVersion& v : versions) {
    nlohmann::json sup = nlohmann::json::array();
    for (const FragmentId& p : v.supersedes) sup.push_back(ToHex(p));
    history.push_back({{"version", ToHex(v.version)}, {"author", v.author}, {"created", IsoTimeMillis(HlcMillis(v.hlc))},
                       {"supersedes", sup}, {"data", v.data}});
    out.versions.push_back(ToHex(v.version));
    if (!superseded.count(v.version)) heads.push_back(v.version);
  }
  const std::string kind = versions.front().kind, domain = versions.front().domain;
  RegieView regie = state->Regie();
  nlohmann::json merged = MergePlan(case_id, RegieInput{regie.org, regie.person, regie.conflict}, std::move(versions));
  nlohmann::json current = nullptr;
  for (const nlohmann::json& i : merged["items"])
    if (i.value("item", "") == ToHex(item)) current = i;
  out.etag = ItemEtag(heads);
  out.item = {{"case", CaseIdToHex(case_id)}, {"item", ToHex(item)}, {"kind", kind},
              {"domain", domain.empty() ? nlohmann::json(nullptr) : nlohmann::json(domain)},
              {"deleted", current.is_null()}, {"current", current}, {"history", history}, {"etag", out.etag}};
  out.consents.assign(consents.begin(), consents.end());
  return out;
}

Result<PlanRead> Node::ReadPlan(const CaseId& case_id) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  const std::string& me = org_;
  const int64_t now = NowMs();
  auto records = store_->RecordsOfCase(case_id, RecordType::kFragment);
  if (!records.ok()) return records.status();
  PlanRead out;
  std::set<std::string> consents;
  std::vector<ItemVersion> versions;
  // Fragments whose body did not open or validate: the background lane's
  // findings, and what this read finds. Shown by their header, never dropped.
  std::map<FragmentId, std::string> known_unreadable;
  if (auto u = store_->UnreadableOfCase(case_id); u.ok())
    for (const UnreadableFragment& x : *u) known_unreadable.emplace(x.id, x.reason);
  nlohmann::json unreadable = nlohmann::json::array();
  for (const StoredRecord& r : *records) {
    auto f = DecodeFragmentRecord(r.record);
    if (!f.ok()) continue;
    FragmentFacts facts = FactsOf(r.id, *f);
    if (f->header.author.v != me && !state->MayRead(me, facts, now)) continue;
    BodyRead body;
    if (auto k = known_unreadable.find(r.id); k != known_unreadable.end()) {
      body.outcome = BodyRead::Outcome::kUnreadable;
      body.reason = k->second;
    } else {
      body = ReadBody(*f, r.id);  // kNoKey: a late grant's key has not arrived yet
      if (body.outcome == BodyRead::Outcome::kUnreadable) NoteUnreadable(r.id, *f, body.reason);
    }
    if (body.outcome == BodyRead::Outcome::kUnreadable) {
      const FragmentHeader& h = f->header;
      unreadable.push_back({{"version", ToHex(r.id)}, {"item", ToHex(f->ItemId())}, {"author", h.author.v},
                            {"kind", h.kind.v},
                            {"domain", h.domain.v},
                            {"created", IsoTimeMillis(HlcMillis(h.hlc))}, {"reason", body.reason}});
      continue;
    }
    if (body.outcome != BodyRead::Outcome::kOk) continue;
    ItemVersion v;
    v.version = r.id;
    v.item = f->ItemId();
    v.author = f->header.author.v;
    v.kind = f->header.kind.v;
    v.domain = f->header.domain.v;
    v.hlc = f->header.hlc;
    v.supersedes = f->header.predecessors.v;
    v.data = std::move(body.data);
    if (auto c = state->ConsentFor(me, facts, now)) consents.insert(ToHex(*c));
    versions.push_back(std::move(v));
  }
  RegieView regie = state->Regie();
  out.plan = MergePlan(case_id, RegieInput{regie.org, regie.person, regie.conflict}, std::move(versions));
  if (!unreadable.empty()) out.plan["unreadable"] = std::move(unreadable);  // like `forks`: only when there are some
  out.plan["status"] = PlanStatusOf(state->Closure());
  out.plan["closed"] = ClosureToJson(state->Closure());
  // The access log names what was shown: each item's version and its conflicts.
  for (const nlohmann::json& item : out.plan["items"]) {
    out.versions.push_back(item["version"].get<std::string>());
    for (const nlohmann::json& c : item["conflicts"]) out.versions.push_back(c["version"].get<std::string>());
  }
  out.consents.assign(consents.begin(), consents.end());
  return out;
}

}  // namespace kring

namespace kring {

Result<std::vector<AccessEntry>> Node::AccessLogOf(const CaseId& case_id, int64_t from_ms, int64_t to_ms) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  auto own = store_->AccessOfCase(case_id, from_ms, to_ms);
  if (!own.ok()) return own.status();
  std::vector<AccessEntry> out = std::move(*own);
  if (state->Regie().org == org_) {
    auto records = store_->RecordsOfCase(case_id, RecordType::kAccessRecord);
    if (!records.ok()) return records.status();
    for (const StoredRecord& r : *records) {
      auto a = DecodeAccessRecord(r.record);
      if (!a.ok() || a->body.author.v == org_) continue;
      const AccessRecordBody& b = a->body;
      if (b.time_ms < from_ms || b.time_ms >= to_ms) continue;
      AccessEntry e;
      e.event_id = b.event_id;
      e.time_ms = b.time_ms;
      e.action = b.action.v;
      e.outcome = b.outcome.v;
      e.actor_id = b.actor_id.v;
      e.actor_name = b.actor_name.v;
      e.actor_role = b.actor_role.v;
      e.on_behalf_of = b.on_behalf_of.v;
      e.organisation = b.author.v;
      e.client_system = b.client.v;
      e.case_id = b.case_id;
      for (auto& i : b.items.v) e.items.push_back(i.v);
      e.consent = b.consent.v;
      out.push_back(std::move(e));
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const AccessEntry& a, const AccessEntry& b) { return a.time_ms < b.time_ms; });
  return out;
}

}  // namespace kring
