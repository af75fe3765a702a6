// Admits a case's control records one at a time and answers who holds regie and who may read, write and hold what.
#include "consent/case_state.h"

#include <algorithm>
#include <map>
#include <set>

#include "crypto/primitives.h"

namespace kring {

namespace {

// A set of record indices. A record's ancestors all have smaller indices
// (admission order is causal), so a record's set has index/64 words: at the
// per-case cap that is 128 bytes a record.
using Bits = std::vector<uint64_t>;
bool Test(const Bits& b, size_t i) { return i / 64 < b.size() && ((b[i / 64] >> (i % 64)) & 1u) != 0; }
void Set(Bits& b, size_t i) {
  if (b.size() <= i / 64) b.resize(i / 64 + 1, 0);
  b[i / 64] |= uint64_t{1} << (i % 64);
}

std::string Short(const RecordId& id) { return ToHex(id).substr(0, 16); }

bool HasDomain(const ConsentGrant& c, std::string_view d) {
  return std::any_of(c.domains.v.begin(), c.domains.v.end(), [&](const auto& x) { return x.v == d; });
}

// An empty domain is a case-wide item: any consent of the organisation covers it.
bool Covers(const ConsentGrant& c, std::string_view domain) {
  return domain.empty() || HasDomain(c, "*") || HasDomain(c, domain);
}

bool Overlap(const ConsentGrant& a, const ConsentGrant& b) {
  if (HasDomain(a, "*") || HasDomain(b, "*")) return true;
  return std::any_of(a.domains.v.begin(), a.domains.v.end(), [&](const auto& d) { return HasDomain(b, d.v); });
}

Admission RefuseAs(Reject why, std::string detail) {
  return Admission{Admission::Kind::kRefused, why, std::move(detail)};
}
Admission WaitFor(std::string detail) {
  return Admission{Admission::Kind::kWaiting, Reject::kWaitingExpired, std::move(detail)};
}

}  // namespace

const char* ConsentStatusName(ConsentStatus s) {
  switch (s) {
    case ConsentStatus::kActive: return "active";
    case ConsentStatus::kWithdrawn: return "withdrawn";
    case ConsentStatus::kExpired: return "expired";
    case ConsentStatus::kPending: return "pending";
  }
  return "unknown";
}

struct CaseState::Rep {
  struct Node {
    std::shared_ptr<const ControlRecord> rec;
    RecordId id{};
    HlcTimestamp hlc = 0;
    int64_t time_ms = 0;
    Bits anc;  // ancestors
    std::vector<size_t> withdrawers;  // ConsentGrant only: the withdrawals that end it
  };
  // The causal past a record with given parents has.
  struct Context {
    Bits anc;
    HlcTimestamp max_hlc = 0;
    std::string regie;
  };

  CaseId case_id{};
  std::vector<Node> nodes;  // in admission order, which is a causal order
  std::map<RecordId, size_t> index;
  std::optional<size_t> genesis;
  std::string creator;
  std::map<std::string, size_t, std::less<>> last_of;   // author -> its latest record
  std::map<std::string, size_t, std::less<>> count_of;  // author -> records written
  std::vector<size_t> regie_changes;  // in causal (= chain) order
  std::vector<size_t> consents;       // in admission order
  std::vector<size_t> withdrawals;
  std::vector<size_t> citizen_keys;     // CitizenKey records, in admission order
  std::vector<size_t> key_revocations;  // CitizenKeyRevocation records
  std::vector<size_t> closures;         // CaseClose and CaseReopen records, in causal (= chain) order
  std::vector<size_t> erasures;         // ErasureRequest records
  std::set<size_t> heads;
  std::vector<RecordId> waiting, missing, refused;  // Build only

  const ControlRecord& Rec(size_t i) const { return *nodes[i].rec; }
  const ConsentGrant& Grant(size_t i) const { return std::get<ConsentGrant>(Rec(i).body); }

  // NotFound-like: a parent not admitted gives nullopt and names it in *why.
  std::optional<Context> ContextOf(const ControlHeader& h, std::string* why) const {
    Context ctx;
    for (const RecordId& p : h.parents.v) {
      auto it = index.find(p);
      if (it == index.end()) {
        *why = "parent " + Short(p) + " has not arrived: the record waits for its causal past";
        return std::nullopt;
      }
      const Node& n = nodes[it->second];
      if (ctx.anc.size() < n.anc.size()) ctx.anc.resize(n.anc.size(), 0);
      for (size_t w = 0; w < n.anc.size(); ++w) ctx.anc[w] |= n.anc[w];
      Set(ctx.anc, it->second);
      ctx.max_hlc = std::max(ctx.max_hlc, n.hlc);
    }
    ctx.regie = creator;
    for (auto it = regie_changes.rbegin(); it != regie_changes.rend(); ++it)
      if (Test(ctx.anc, *it)) {
        ctx.regie = std::get<RegieChange>(Rec(*it).body).regie.v;
        break;
      }
    return ctx;
  }

  // Whether the case is closed in the causal past `anc`: the latest close or
  // reopen there is a close. Valid closures are totally ordered (each is
  // written by the regie organisation of its past, like regie changes).
  bool ClosedIn(const Bits& anc) const {
    for (auto it = closures.rbegin(); it != closures.rend(); ++it)
      if (Test(anc, *it)) return std::holds_alternative<CaseClose>(Rec(*it).body);
    return false;
  }

  // Whether citizen key record `k` is revoked by a revocation in `anc`.
  bool RevokedIn(const Bits& anc, size_t k) const {
    for (size_t r : key_revocations)
      if (Test(anc, r) && std::get<CitizenKeyRevocation>(Rec(r).body).key == nodes[k].id) return true;
    return false;
  }
  // The CitizenKey record `key`, when it is enrolled and not revoked in the causal past `anc`.
  std::optional<size_t> EnrolledIn(const Bits& anc, const RecordId& key) const {
    auto it = index.find(key);
    if (it == index.end() || !Test(anc, it->second) || !std::holds_alternative<CitizenKey>(Rec(it->second).body))
      return std::nullopt;
    if (RevokedIn(anc, it->second)) return std::nullopt;
    return it->second;
  }
  bool AnyEnrolledIn(const Bits& anc) const {
    return std::any_of(citizen_keys.begin(), citizen_keys.end(), [&](size_t k) { return Test(anc, k) && !RevokedIn(anc, k); });
  }
  // The citizen's signature on `r`: signed against exactly the record's
  // parents (else a replay), by a key enrolled in the record's causal past,
  // over the record's statement.
  std::optional<Admission> JudgeCitizen(const ControlRecord& r, const CitizenSignature& c, const Context& ctx) const;

  Admission Judge(const ControlRecord& r, const RecordId& id, std::optional<Context>* ctx_out) const;
  void Add(const ControlRecord& r, const RecordId& id, Context ctx);

  bool Withdrawn(size_t c) const { return !nodes[c].withdrawers.empty(); }
  // When a withdrawal ended consent c: the earliest of its withdrawals' times.
  int64_t WithdrawnAt(size_t c) const {
    int64_t t = INT64_MAX;
    for (size_t w : nodes[c].withdrawers) t = std::min(t, nodes[w].time_ms);
    return t;
  }
  ConsentStatus StatusOf(size_t c, int64_t now_ms) const {
    const ConsentGrant& g = Grant(c);
    if (Withdrawn(c)) return ConsentStatus::kWithdrawn;
    if (now_ms < g.valid_from_ms) return ConsentStatus::kPending;
    if (g.valid_until_ms != 0 && now_ms >= g.valid_until_ms) return ConsentStatus::kExpired;
    return ConsentStatus::kActive;
  }
  bool Active(size_t c, int64_t now_ms) const { return StatusOf(c, now_ms) == ConsentStatus::kActive; }
  bool CoveredAt(size_t c, int64_t t) const {
    const ConsentGrant& g = Grant(c);
    if (t < std::max(g.valid_from_ms, nodes[c].time_ms)) return false;
    if (g.valid_until_ms != 0 && t >= g.valid_until_ms) return false;
    return !Withdrawn(c) || t < WithdrawnAt(c);
  }
  // Consents in (hlc, id) order: the order ConsentFor picks by.
  std::vector<size_t> ConsentsByTime() const {
    std::vector<size_t> out = consents;
    std::sort(out.begin(), out.end(), [&](size_t a, size_t b) {
      return std::pair(nodes[a].hlc, nodes[a].id) < std::pair(nodes[b].hlc, nodes[b].id);
    });
    return out;
  }
};

std::optional<Admission> CaseState::Rep::JudgeCitizen(const ControlRecord& r, const CitizenSignature& c,
                                                      const Context& ctx) const {
  if (c.heads != HeadsDigest(r.header().parents.v))
    return RefuseAs(Reject::kCitizenReplay, "the citizen signed this statement for another moment of the case: "
                                            "its view of the case is not the record's causal past");
  std::optional<size_t> k = EnrolledIn(ctx.anc, c.key);
  if (!k)
    return RefuseAs(Reject::kCitizenSignature, "signed with citizen key " + Short(c.key) +
                                                   ", which is not enrolled in this case (unknown, revoked or of another case)");
  Result<std::string> statement = CitizenStatement(r);
  if (!statement.ok() ||
      !VerifyPure(ByteSpan(reinterpret_cast<const uint8_t*>(statement->data()), statement->size()), c.signature,
                  std::get<CitizenKey>(Rec(*k).body).key))
    return RefuseAs(Reject::kCitizenSignature, "the citizen's signature does not verify with citizen key " + Short(c.key));
  return std::nullopt;
}

Admission CaseState::Rep::Judge(const ControlRecord& r, const RecordId& id, std::optional<Context>* ctx_out) const {
  const ControlHeader& h = r.header();
  const std::string& author = h.author.v;
  if (std::holds_alternative<KeyGrant>(r.body))
    return RefuseAs(Reject::kBadRecord, "a key grant decides nothing about consent");
  if (std::holds_alternative<ErasureAnswer>(r.body))
    return RefuseAs(Reject::kBadRecord, "an erasure answer decides nothing about consent");
  if (h.case_id != case_id) return RefuseAs(Reject::kBadRecord, "the record belongs to another case");
  if (index.count(id)) return Admission{Admission::Kind::kDuplicate, Reject::kBadRecord, ""};
  if (const auto* g = std::get_if<CaseGenesis>(&r.body)) {
    if (CaseIdFor(author, g->nonce) != case_id)
      return RefuseAs(Reject::kForgedRecord, "the case id is not bound to the genesis author");
    if (!h.parents.v.empty()) return RefuseAs(Reject::kBadRecord, "a case genesis has no parents");
    if (genesis) return RefuseAs(Reject::kForgedRecord, "the case already has a genesis");
    *ctx_out = Context{};
    return Admission{Admission::Kind::kAdmitted, Reject::kBadRecord, ""};
  }
  if (h.parents.v.empty()) return RefuseAs(Reject::kBadRecord, "a record other than the genesis names its causal parents");
  if (!genesis) return WaitFor("the case's genesis has not arrived");
  std::string why;
  std::optional<Context> ctx = ContextOf(h, &why);
  if (!ctx) return WaitFor(why);
  if (h.hlc <= ctx->max_hlc)
    return RefuseAs(Reject::kClockSkew, "its time is not after the records it follows");
  if (auto last = last_of.find(author); last != last_of.end() && !Test(ctx->anc, last->second))
    return RefuseAs(Reject::kForkedChain, author + " signed a record that does not follow its own record " +
                                             Short(nodes[last->second].id) + " in this case");
  if (nodes.size() >= kMaxDecisionRecordsPerCase)
    return RefuseAs(Reject::kCaseFull, "the case holds the most control records allowed (" +
                                          std::to_string(kMaxDecisionRecordsPerCase) + ")");
  if (auto n = count_of.find(author); n != count_of.end() && n->second >= kMaxDecisionRecordsPerAuthor)
    return RefuseAs(Reject::kAuthorFull, author + " wrote the most control records allowed in one case (" +
                                            std::to_string(kMaxDecisionRecordsPerAuthor) + ")");

  const bool closed = ClosedIn(ctx->anc);
  if (closed && (std::holds_alternative<ConsentGrant>(r.body) || std::holds_alternative<CitizenKey>(r.body) ||
                 std::holds_alternative<RegieChange>(r.body)))
    return RefuseAs(Reject::kCaseClosed, "the case is closed: no new consent, citizen key or regie change until the "
                                         "regie organisation reopens it");
  if (std::holds_alternative<CaseClose>(r.body) || std::holds_alternative<CaseReopen>(r.body)) {
    const bool close = std::holds_alternative<CaseClose>(r.body);
    if (author != ctx->regie)
      return RefuseAs(Reject::kForgedRecord, "only the regie organisation (" + ctx->regie + ") may " +
                                                 (close ? "close" : "reopen") + " the case, not " + author);
    if (close && closed) return RefuseAs(Reject::kCaseClosed, "the case is closed already");
    if (!close && !closed) return RefuseAs(Reject::kCaseClosed, "the case is not closed: there is nothing to reopen");
  } else if (std::holds_alternative<ErasureRequest>(r.body)) {
    if (author != ctx->regie)
      return RefuseAs(Reject::kForgedRecord, "only the regie organisation (" + ctx->regie + ") may record an erasure request, not " + author);
    if (!closed) return RefuseAs(Reject::kCaseClosed, "the case is open: close it before recording the citizen's erasure request");
  } else if (const auto* c = std::get_if<ConsentGrant>(&r.body)) {
    if (author != ctx->regie)
      return RefuseAs(Reject::kForgedRecord, "only the regie organisation (" + ctx->regie + ") may record consent, not " + author);
    if (c->grantee.v == author) return RefuseAs(Reject::kForgedRecord, "an organisation cannot grant itself access");
    if (c->evidence_kind == kEvidenceCitizenSigned) {
      if (auto refused = JudgeCitizen(r, c->citizen, *ctx)) return *refused;
    } else if (AnyEnrolledIn(ctx->anc)) {
      return RefuseAs(Reject::kCitizenRequired, "the citizen holds an enrolled key in this case: only consent the citizen "
                                                "signed can be granted (narrowing and withdrawal stay open)");
    }
  } else if (const auto* cw = std::get_if<ConsentWithdrawal>(&r.body); cw && cw->citizen_signed()) {
    // The authority is the citizen's signature; any organisation involved in
    // the case may relay it, and is the record's author.
    auto it = index.find(cw->consent);
    if (it == index.end() || !Test(ctx->anc, it->second) || !std::holds_alternative<ConsentGrant>(Rec(it->second).body))
      return RefuseAs(Reject::kForgedRecord, "the withdrawal names " + Short(cw->consent) + ", which is not a consent in its causal past");
    bool involved = author == ctx->regie || std::any_of(consents.begin(), consents.end(), [&](size_t ci) {
      return Test(ctx->anc, ci) && Grant(ci).grantee.v == author;
    });
    if (!involved)
      return RefuseAs(Reject::kForgedRecord, author + " takes no part in the case and cannot relay the citizen's withdrawal");
    if (auto refused = JudgeCitizen(r, cw->citizen, *ctx)) return *refused;
  } else if (const auto* k = std::get_if<CitizenKey>(&r.body)) {
    if (author != ctx->regie)
      return RefuseAs(Reject::kForgedRecord, "only the regie organisation (" + ctx->regie + ") may enrol a citizen key, not " + author);
    for (size_t e : citizen_keys) {
      if (!Test(ctx->anc, e)) continue;
      const CitizenKey& other = std::get<CitizenKey>(Rec(e).body);
      if (other.invitation == k->invitation)
        return RefuseAs(Reject::kInvitationUsed, "the invitation was used already (citizen key " + Short(nodes[e].id) + ")");
      if (other.key == k->key && !RevokedIn(ctx->anc, e))
        return RefuseAs(Reject::kForgedRecord, "this citizen key is enrolled already (" + Short(nodes[e].id) + ")");
    }
  } else if (const auto* v = std::get_if<CitizenKeyRevocation>(&r.body)) {
    if (author != ctx->regie)
      return RefuseAs(Reject::kForgedRecord, "only the regie organisation (" + ctx->regie + ") may record a revocation of a citizen key, not " + author);
    if (!EnrolledIn(ctx->anc, v->key))
      return RefuseAs(Reject::kForgedRecord, "the revocation names " + Short(v->key) + ", which is no enrolled citizen key in its causal past");
    if (v->evidence_kind == kEvidenceCitizenSigned)
      if (auto refused = JudgeCitizen(r, v->citizen, *ctx)) return *refused;
  } else if (const auto* w = std::get_if<ConsentWithdrawal>(&r.body)) {
    auto it = index.find(w->consent);
    if (it == index.end() || !Test(ctx->anc, it->second))
      return RefuseAs(Reject::kForgedRecord, "the withdrawal names " + Short(w->consent) + ", which is not in its causal past");
    if (!std::holds_alternative<ConsentGrant>(Rec(it->second).body))
      return RefuseAs(Reject::kForgedRecord, "the withdrawal names record " + Short(w->consent) + ", which is not a consent");
    const std::string& grantee = Grant(it->second).grantee.v;
    if (author != ctx->regie && author != grantee)
      return RefuseAs(Reject::kForgedRecord, "only the regie organisation (" + ctx->regie + ") or the grantee (" + grantee +
                                                ") may withdraw this consent, not " + author);
  } else if (std::holds_alternative<RegieChange>(r.body)) {
    if (author != ctx->regie)
      return RefuseAs(Reject::kForgedRecord, "only the regie organisation (" + ctx->regie + ") may hand over regie, not " + author);
  }
  *ctx_out = std::move(ctx);
  return Admission{Admission::Kind::kAdmitted, Reject::kBadRecord, ""};
}

void CaseState::Rep::Add(const ControlRecord& r, const RecordId& id, Context ctx) {
  const size_t i = nodes.size();
  Node n;
  n.rec = std::make_shared<const ControlRecord>(r);
  n.id = id;
  n.hlc = r.header().hlc;
  n.time_ms = static_cast<int64_t>(HlcMillis(n.hlc));
  n.anc = std::move(ctx.anc);
  nodes.push_back(std::move(n));
  index.emplace(id, i);
  const std::string& author = r.header().author.v;
  last_of[author] = i;
  ++count_of[author];
  for (const RecordId& p : r.header().parents.v) heads.erase(index.at(p));
  heads.insert(i);

  if (std::holds_alternative<CaseGenesis>(r.body)) {
    genesis = i;
    creator = author;
  } else if (std::holds_alternative<RegieChange>(r.body)) {
    regie_changes.push_back(i);
  } else if (std::holds_alternative<CitizenKey>(r.body)) {
    citizen_keys.push_back(i);
  } else if (std::holds_alternative<CitizenKeyRevocation>(r.body)) {
    key_revocations.push_back(i);
  } else if (std::holds_alternative<CaseClose>(r.body) || std::holds_alternative<CaseReopen>(r.body)) {
    closures.push_back(i);
  } else if (std::holds_alternative<ErasureRequest>(r.body)) {
    erasures.push_back(i);
  } else if (const auto* c = std::get_if<ConsentGrant>(&r.body)) {
    consents.push_back(i);
    // A withdrawal already admitted that this grant did not see, of an
    // overlapping consent of the same grantee, ends it too (tie).
    for (size_t w : withdrawals) {
      size_t other = index.at(std::get<ConsentWithdrawal>(Rec(w).body).consent);
      if (!Test(nodes[i].anc, w) && Grant(other).grantee.v == c->grantee.v && Overlap(Grant(other), *c))
        nodes[i].withdrawers.push_back(w);
    }
  } else if (const auto* w = std::get_if<ConsentWithdrawal>(&r.body)) {
    withdrawals.push_back(i);
    size_t named = index.at(w->consent);
    const ConsentGrant& g = Grant(named);
    for (size_t c : consents) {
      bool ends = c == named ||
                  (!Test(nodes[i].anc, c) && Grant(c).grantee.v == g.grantee.v && Overlap(Grant(c), g));
      if (ends) nodes[c].withdrawers.push_back(i);
    }
  }
}

CaseState::CaseState(CaseId case_id) : rep_(std::make_shared<Rep>()) { rep_->case_id = case_id; }

CaseState::Rep& CaseState::Mutable() {
  if (rep_.use_count() > 1) rep_ = std::make_shared<Rep>(*rep_);
  return *rep_;
}

CaseState CaseState::Build(CaseId case_id, std::vector<ControlRecord> records) {
  CaseState s(case_id);
  std::map<std::pair<HlcTimestamp, RecordId>, ControlRecord> todo;  // (hlc, id) order: causal for valid records
  for (ControlRecord& r : records)
    if (r.header().case_id == case_id && !std::holds_alternative<KeyGrant>(r.body) &&
        !std::holds_alternative<ErasureAnswer>(r.body)) {
      RecordId id = r.Id();
      todo.try_emplace({r.header().hlc, id}, std::move(r));
    }
  std::vector<RecordId> refused;
  for (bool progress = true; progress && !todo.empty();) {
    progress = false;
    for (auto it = todo.begin(); it != todo.end();) {
      Admission a = s.Admit(it->second);
      if (a.kind == Admission::Kind::kWaiting) {
        ++it;
        continue;
      }
      if (a.kind == Admission::Kind::kRefused) refused.push_back(it->first.second);
      else progress = true;
      it = todo.erase(it);
    }
  }
  Rep& rep = s.Mutable();
  std::set<RecordId> waiting_ids, missing;
  for (auto& [key, r] : todo) waiting_ids.insert(key.second);
  for (auto& [key, r] : todo)
    for (const RecordId& p : r.header().parents.v)
      if (!rep.index.count(p) && !waiting_ids.count(p)) missing.insert(p);
  rep.waiting.assign(waiting_ids.begin(), waiting_ids.end());
  rep.missing.assign(missing.begin(), missing.end());
  std::sort(refused.begin(), refused.end());
  rep.refused = std::move(refused);
  return s;
}

Admission CaseState::Admit(const ControlRecord& r) {
  RecordId id = r.Id();
  std::optional<Rep::Context> ctx;
  Admission a = rep_->Judge(r, id, &ctx);
  if (a.kind == Admission::Kind::kAdmitted) Mutable().Add(r, id, std::move(*ctx));
  return a;
}

Admission CaseState::Check(const ControlRecord& r) const {
  std::optional<Rep::Context> ctx;
  return rep_->Judge(r, r.Id(), &ctx);
}

Status CaseState::CheckNewRecord(const ControlRecord& r) const {
  Admission a = Check(r);
  switch (a.kind) {
    case Admission::Kind::kAdmitted:
    case Admission::Kind::kDuplicate: return Status::Ok();
    case Admission::Kind::kWaiting: return Status::NotFound(a.detail);
    case Admission::Kind::kRefused: break;
  }
  if (a.reason == Reject::kForgedRecord && std::holds_alternative<CaseGenesis>(r.body) && rep_->genesis)
    return Status::Conflict(a.detail);
  if (a.reason == Reject::kInvitationUsed || a.reason == Reject::kCaseClosed) return Status::Conflict(a.detail);
  if (a.reason == Reject::kForgedRecord || a.reason == Reject::kForkedChain || a.reason == Reject::kCitizenRequired ||
      a.reason == Reject::kCitizenSignature || a.reason == Reject::kCitizenReplay)
    return Status::PermissionDenied(a.detail);
  return Status::InvalidArgument(a.detail);
}

Admission CaseState::CheckKeyGrant(const ControlRecord& r, std::string_view fragment_author) const {
  const auto* k = std::get_if<KeyGrant>(&r.body);
  if (k == nullptr) return RefuseAs(Reject::kBadRecord, "the record is not a key grant");
  const ControlHeader& h = r.header();
  if (h.case_id != rep_->case_id) return RefuseAs(Reject::kBadRecord, "the key grant belongs to another case");
  if (!rep_->genesis) return WaitFor("the case's genesis has not arrived");
  if (h.parents.v.empty()) return RefuseAs(Reject::kBadRecord, "a key grant names its causal parents");
  std::string why;
  auto ctx = rep_->ContextOf(h, &why);
  if (!ctx) return WaitFor(why);
  if (h.hlc <= ctx->max_hlc) return RefuseAs(Reject::kClockSkew, "its time is not after the records it follows");
  const std::string& author = h.author.v;
  if (author != ctx->regie && author != fragment_author)
    return RefuseAs(Reject::kForgedRecord, "only the regie organisation (" + ctx->regie + ") or the fragment's author (" +
                                              std::string(fragment_author) + ") may hand out its key, not " + author);
  return Admission{Admission::Kind::kAdmitted, Reject::kBadRecord, ""};
}

const CaseId& CaseState::case_id() const { return rep_->case_id; }
bool CaseState::has_genesis() const { return rep_->genesis.has_value(); }
const std::string& CaseState::creator() const { return rep_->creator; }
size_t CaseState::size() const { return rep_->nodes.size(); }
bool CaseState::Contains(const RecordId& id) const { return rep_->index.count(id) > 0; }

RegieView CaseState::Regie() const {
  RegieView v;
  v.org = rep_->creator;
  if (rep_->regie_changes.empty()) return v;
  const Rep::Node& last = rep_->nodes[rep_->regie_changes.back()];
  const auto& change = std::get<RegieChange>(last.rec->body);
  v.org = change.regie.v;
  v.person = change.person.v;
  v.record = last.id;
  return v;
}

std::string CaseState::RegieAt(int64_t t_ms) const {
  if (!rep_->genesis || t_ms < rep_->nodes[*rep_->genesis].time_ms) return "";
  std::string holder = rep_->creator;
  for (size_t i : rep_->regie_changes) {
    if (rep_->nodes[i].time_ms > t_ms) break;
    holder = std::get<RegieChange>(rep_->Rec(i).body).regie.v;
  }
  return holder;
}

std::vector<ConsentView> CaseState::Consents(int64_t now_ms) const {
  std::vector<ConsentView> out;
  for (size_t i : rep_->ConsentsByTime()) {
    const Rep::Node& n = rep_->nodes[i];
    ConsentView v;
    v.id = n.id;
    v.grant = std::shared_ptr<const ConsentGrant>(n.rec, &std::get<ConsentGrant>(n.rec->body));  // aliasing
    v.status = rep_->StatusOf(i, now_ms);
    if (!n.withdrawers.empty()) {
      // The one naming it, else the earliest by (hlc, id): the same on every node.
      std::vector<size_t> w = n.withdrawers;
      std::sort(w.begin(), w.end(), [&](size_t a, size_t b) {
        bool na = std::get<ConsentWithdrawal>(rep_->Rec(a).body).consent == n.id;
        bool nb = std::get<ConsentWithdrawal>(rep_->Rec(b).body).consent == n.id;
        if (na != nb) return na;
        return std::pair(rep_->nodes[a].hlc, rep_->nodes[a].id) < std::pair(rep_->nodes[b].hlc, rep_->nodes[b].id);
      });
      v.withdrawn_by = rep_->nodes[w.front()].id;
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::optional<RecordId> CaseState::ConsentFor(std::string_view org, const FragmentFacts& f, int64_t now_ms) const {
  for (size_t i : rep_->ConsentsByTime()) {
    const ConsentGrant& c = rep_->Grant(i);
    if (c.grantee.v == org && Covers(c, f.domain) && rep_->Active(i, now_ms)) return rep_->nodes[i].id;
  }
  return std::nullopt;
}

bool CaseState::MayRead(std::string_view org, const FragmentFacts& f, int64_t now_ms) const {
  if (org.empty()) return false;
  if (org == f.author || org == Regie().org) return true;
  for (size_t i : rep_->consents) {
    const ConsentGrant& c = rep_->Grant(i);
    if (c.grantee.v == org && Covers(c, f.domain) && rep_->Active(i, now_ms)) return true;
  }
  return false;
}

std::vector<std::string> CaseState::Readers(const FragmentFacts& f, int64_t now_ms) const {
  std::set<std::string> out;
  if (!f.author.empty()) out.insert(f.author);
  std::string regie = Regie().org;
  if (!regie.empty()) out.insert(regie);
  for (size_t i : rep_->consents) {
    const ConsentGrant& c = rep_->Grant(i);
    if (Covers(c, f.domain) && rep_->Active(i, now_ms)) out.insert(c.grantee.v);
  }
  return {out.begin(), out.end()};
}

bool CaseState::MayWriteAt(std::string_view org, std::string_view domain, int64_t t_ms) const {
  if (org.empty()) return false;
  if (RegieAt(t_ms) == org) return true;
  for (size_t i : rep_->consents) {
    const ConsentGrant& c = rep_->Grant(i);
    if (c.grantee.v == org && Covers(c, domain) && rep_->CoveredAt(i, t_ms)) return true;
  }
  return false;
}

std::vector<std::string> CaseState::Involved(int64_t now_ms) const {
  std::set<std::string> out;
  std::string regie = Regie().org;
  if (!regie.empty()) out.insert(regie);
  for (size_t i : rep_->consents)
    if (rep_->Active(i, now_ms)) out.insert(rep_->Grant(i).grantee.v);
  return {out.begin(), out.end()};
}

bool CaseState::EverInvolved(std::string_view org) const {
  if (org.empty()) return false;
  if (org == rep_->creator) return true;
  for (size_t i : rep_->regie_changes)
    if (std::get<RegieChange>(rep_->Rec(i).body).regie.v == org) return true;
  for (size_t i : rep_->consents)
    if (rep_->Grant(i).grantee.v == org) return true;
  return false;
}

std::vector<std::string> CaseState::ControlAudience(const ControlRecord& r, int64_t now_ms) const {
  std::set<std::string> out;
  out.insert(r.header().author.v);
  if (const auto* k = std::get_if<KeyGrant>(&r.body)) {
    out.insert(k->grantee.v);
    return {out.begin(), out.end()};
  }
  if (std::holds_alternative<ErasureAnswer>(r.body)) {  // for the regie organisation alone
    if (std::string regie = Regie().org; !regie.empty()) out.insert(regie);
    return {out.begin(), out.end()};
  }
  for (std::string& o : Involved(now_ms)) out.insert(std::move(o));
  if (const auto* c = std::get_if<ConsentGrant>(&r.body)) out.insert(c->grantee.v);
  if (const auto* w = std::get_if<ConsentWithdrawal>(&r.body)) {
    auto it = rep_->index.find(w->consent);
    if (it != rep_->index.end())
      if (const auto* c = std::get_if<ConsentGrant>(&rep_->Rec(it->second).body)) out.insert(c->grantee.v);
  }
  if (const auto* g = std::get_if<RegieChange>(&r.body)) out.insert(g->regie.v);
  return {out.begin(), out.end()};
}

std::optional<ClosureView> CaseState::Closure() const {
  if (rep_->closures.empty()) return std::nullopt;
  const Rep::Node& n = rep_->nodes[rep_->closures.back()];
  const auto* c = std::get_if<CaseClose>(&n.rec->body);
  if (c == nullptr) return std::nullopt;
  return ClosureView{n.id, c->h.author.v, c->reason.v, c->rule.v, c->retention.v, n.time_ms};
}

bool CaseState::ClosedAt(int64_t t_ms) const {
  bool closed = false;
  for (size_t i : rep_->closures) {  // causal order: their times only go up
    if (rep_->nodes[i].time_ms > t_ms) break;
    closed = std::holds_alternative<CaseClose>(rep_->Rec(i).body);
  }
  return closed;
}

std::vector<ErasureRequestView> CaseState::ErasureRequests() const {
  std::vector<ErasureRequestView> out;
  for (size_t i : rep_->erasures) {
    const auto& e = std::get<ErasureRequest>(rep_->Rec(i).body);
    out.push_back(ErasureRequestView{rep_->nodes[i].id, e.h.author.v, e.reference.v, rep_->nodes[i].time_ms});
  }
  return out;
}

std::optional<Admission> CaseState::CheckErasureAnswer(const ControlRecord& r) const {
  const auto* a = std::get_if<ErasureAnswer>(&r.body);
  if (a == nullptr) return RefuseAs(Reject::kBadRecord, "not an erasure answer");
  if (r.header().case_id != rep_->case_id) return RefuseAs(Reject::kBadRecord, "the answer belongs to another case");
  auto it = rep_->index.find(a->request);
  if (it == rep_->index.end()) return WaitFor("the erasure request it answers has not arrived");
  if (!std::holds_alternative<ErasureRequest>(rep_->Rec(it->second).body))
    return RefuseAs(Reject::kForgedRecord, "the answer names " + Short(a->request) + ", which is not an erasure request");
  if (!EverInvolved(r.header().author.v))
    return RefuseAs(Reject::kNotAddressed, "an erasure answer by " + r.header().author.v + ", which takes no part in the case");
  return std::nullopt;
}

std::vector<CitizenKeyView> CaseState::CitizenKeys() const {
  std::vector<CitizenKeyView> out;
  Bits all;
  for (size_t i = 0; i < rep_->nodes.size(); ++i) Set(all, i);
  for (size_t k : rep_->citizen_keys) {
    const Rep::Node& n = rep_->nodes[k];
    const CitizenKey& c = std::get<CitizenKey>(n.rec->body);
    CitizenKeyView v{n.id, c.key, c.given_by.v, c.invitation, n.time_ms, std::nullopt};
    for (size_t r : rep_->key_revocations)
      if (std::get<CitizenKeyRevocation>(rep_->Rec(r).body).key == n.id) v.revoked_by = rep_->nodes[r].id;
    out.push_back(std::move(v));
  }
  return out;
}

bool CaseState::HasCitizenKey() const {
  Bits all;
  for (size_t i = 0; i < rep_->nodes.size(); ++i) Set(all, i);
  return rep_->AnyEnrolledIn(all);
}

bool CaseState::InvitationUsed(const Hash& invitation) const {
  return std::any_of(rep_->citizen_keys.begin(), rep_->citizen_keys.end(), [&](size_t k) {
    return std::get<CitizenKey>(rep_->Rec(k).body).invitation == invitation;
  });
}

std::vector<RecordId> CaseState::Heads() const {
  std::vector<RecordId> out;
  for (size_t i : rep_->heads) out.push_back(rep_->nodes[i].id);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<RecordId> CaseState::LastOf(std::string_view org) const {
  auto it = rep_->last_of.find(org);
  if (it == rep_->last_of.end()) return std::nullopt;
  return rep_->nodes[it->second].id;
}

std::vector<RecordId> CaseState::Waiting() const { return rep_->waiting; }
std::vector<RecordId> CaseState::Missing() const { return rep_->missing; }
std::vector<RecordId> CaseState::Refused() const { return rep_->refused; }

std::optional<int64_t> CaseState::NextChange(int64_t now_ms) const {
  std::optional<int64_t> next;
  auto consider = [&](int64_t t) {
    if (t > now_ms && (!next || t < *next)) next = t;
  };
  for (size_t i : rep_->consents) {
    if (rep_->Withdrawn(i)) continue;
    const ConsentGrant& c = rep_->Grant(i);
    consider(c.valid_from_ms);
    if (c.valid_until_ms != 0) consider(c.valid_until_ms);
  }
  return next;
}

}  // namespace kring
