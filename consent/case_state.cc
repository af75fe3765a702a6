// Builds a case's consent state from the set of its control records and answers who may read and hold what.
#include "consent/case_state.h"

#include <algorithm>
#include <map>
#include <set>

namespace kring {

namespace {

enum class Verdict { kPending, kValid, kInvalid };

// A set of record indices; ancestors fit in n bits, so the closure over a
// case of a few hundred records stays small and O(n^2 / 64).
using Bits = std::vector<uint64_t>;
bool Test(const Bits& b, size_t i) { return i / 64 < b.size() && ((b[i / 64] >> (i % 64)) & 1u) != 0; }
void Set(Bits& b, size_t i) { b[i / 64] |= uint64_t{1} << (i % 64); }

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
    ControlRecord rec;
    RecordId id{};
    std::vector<size_t> parents;  // indices of the parents present
    bool missing_parent = false;
    Verdict verdict = Verdict::kPending;
    Status why;                      // when invalid
    Bits anc;                        // ancestors; only when not pending
    std::vector<size_t> regie_tops;  // valid RegieChanges latest in anc ∪ {self}
    std::string regie_as_of;
    std::optional<size_t> withdrawn_by;  // ConsentGrant only
  };

  // The causal past a record with given parents would have.
  struct Context {
    Bits anc;
    std::vector<size_t> regie_heads;  // latest valid RegieChanges among anc; winner = largest index
    std::string regie;
  };

  CaseId case_id{};
  std::vector<Node> nodes;  // sorted by (hlc, id): index order is the tie-break order
  std::map<RecordId, size_t> index;
  std::optional<size_t> genesis;
  std::string creator;
  std::vector<RecordId> missing;
  std::vector<size_t> regie_heads;  // current, winner first
  std::string regie;
  std::vector<size_t> consents;  // non-pending ConsentGrants, in index order
  std::vector<RecordId> heads, pending, invalid;

  const ConsentGrant& Grant(size_t i) const { return std::get<ConsentGrant>(nodes[i].rec.body); }
  bool Decided(size_t i) const { return nodes[i].verdict != Verdict::kPending; }

  Context ContextOf(const std::vector<size_t>& parents) const;
  // NotFound when a parent is absent or pending; else the context in *ctx.
  Status ContextOfIds(const std::vector<RecordId>& parents, Context* ctx) const;
  Status Judge(const ControlRecord& r, const RecordId& id, const Context& ctx) const;
  ConsentStatus StatusOf(size_t consent, int64_t now_ms) const;
  bool ActiveFor(size_t consent, int64_t now_ms) const {
    return nodes[consent].verdict == Verdict::kValid && StatusOf(consent, now_ms) == ConsentStatus::kActive;
  }
};

CaseState::Rep::Context CaseState::Rep::ContextOf(const std::vector<size_t>& parents) const {
  Context ctx;
  ctx.anc.assign((nodes.size() + 63) / 64, 0);
  std::vector<size_t> tops;
  for (size_t p : parents) {
    for (size_t w = 0; w < ctx.anc.size(); ++w) ctx.anc[w] |= nodes[p].anc[w];
    Set(ctx.anc, p);
    tops.insert(tops.end(), nodes[p].regie_tops.begin(), nodes[p].regie_tops.end());
  }
  std::sort(tops.begin(), tops.end());
  tops.erase(std::unique(tops.begin(), tops.end()), tops.end());
  // Of the parents' latest RegieChanges, those no other of them saw.
  for (size_t c : tops)
    if (std::none_of(tops.begin(), tops.end(), [&](size_t d) { return d != c && Test(nodes[d].anc, c); }))
      ctx.regie_heads.push_back(c);
  ctx.regie = ctx.regie_heads.empty() ? creator : std::get<RegieChange>(nodes[ctx.regie_heads.back()].rec.body).regie.v;
  return ctx;
}

Status CaseState::Rep::ContextOfIds(const std::vector<RecordId>& parents, Context* ctx) const {
  std::vector<size_t> idx;
  for (const RecordId& p : parents) {
    auto it = index.find(p);
    if (it == index.end()) return Status::NotFound("parent " + Short(p) + " is not known: the record waits for its causal past");
    if (!Decided(it->second))
      return Status::NotFound("parent " + Short(p) + " still waits for its causal past, and so would the record");
    idx.push_back(it->second);
  }
  *ctx = ContextOf(idx);
  return Status::Ok();
}

Status CaseState::Rep::Judge(const ControlRecord& r, const RecordId& id, const Context& ctx) const {
  const ControlHeader& h = r.header();
  const std::string& author = h.author.v;
  if (h.case_id != case_id) return Status::InvalidArgument("the record belongs to another case");
  if (const auto* g = std::get_if<CaseGenesis>(&r.body)) {
    if (CaseIdFor(author, g->nonce) != case_id) return Status::PermissionDenied("the case id is not bound to the genesis author");
    if (!h.parents.v.empty()) return Status::InvalidArgument("a case genesis has no parents");
    if (genesis && nodes[*genesis].id != id) return Status::Conflict("the case already has a genesis");
    return Status::Ok();
  }
  if (h.parents.v.empty()) return Status::InvalidArgument("a record other than the genesis names its causal parents");
  if (!genesis || !Test(ctx.anc, *genesis)) return Status::InvalidArgument("the record does not descend from the case genesis");

  if (const auto* c = std::get_if<ConsentGrant>(&r.body)) {
    if (author != ctx.regie)
      return Status::PermissionDenied("only the regie organisation (" + ctx.regie + ") may record consent, not " + author);
    if (c->grantee.v == author) return Status::PermissionDenied("an organisation cannot grant itself access");
    return Status::Ok();
  }
  if (const auto* w = std::get_if<ConsentWithdrawal>(&r.body)) {
    auto it = index.find(w->consent);
    if (it == index.end() || !Test(ctx.anc, it->second))
      return Status::InvalidArgument("the withdrawal names consent " + Short(w->consent) + ", which is not in its causal past");
    const Node& n = nodes[it->second];
    if (!std::holds_alternative<ConsentGrant>(n.rec.body))
      return Status::InvalidArgument("the withdrawal names record " + Short(w->consent) + ", which is not a consent");
    if (n.verdict != Verdict::kValid)
      return Status::InvalidArgument("the withdrawal names consent " + Short(w->consent) + ", which is not valid");
    const std::string& grantee = Grant(it->second).grantee.v;
    if (author != ctx.regie && author != grantee)
      return Status::PermissionDenied("only the regie organisation (" + ctx.regie + ") or the grantee (" + grantee +
                                      ") may withdraw this consent, not " + author);
    return Status::Ok();
  }
  if (std::holds_alternative<RegieChange>(r.body)) {
    if (author != ctx.regie)
      return Status::PermissionDenied("only the regie organisation (" + ctx.regie + ") may hand over regie, not " + author);
    return Status::Ok();
  }
  return Status::Ok();  // KeyGrant: its author's authority needs the fragment (CheckKeyGrant)
}

ConsentStatus CaseState::Rep::StatusOf(size_t i, int64_t now_ms) const {
  const ConsentGrant& c = Grant(i);
  if (nodes[i].withdrawn_by) return ConsentStatus::kWithdrawn;
  if (now_ms < c.valid_from_ms) return ConsentStatus::kPending;
  if (c.valid_until_ms != 0 && now_ms >= c.valid_until_ms) return ConsentStatus::kExpired;
  return ConsentStatus::kActive;
}

CaseState::CaseState(std::shared_ptr<const Rep> rep) : rep_(std::move(rep)) {}

CaseState CaseState::Build(CaseId case_id, std::vector<ControlRecord> records) {
  auto rep = std::make_shared<Rep>();
  rep->case_id = case_id;

  // The set: this case's records, once each, in (hlc, id) order.
  std::map<RecordId, ControlRecord> unique;
  for (ControlRecord& r : records)
    if (r.header().case_id == case_id) {
      RecordId id = r.Id();
      unique.try_emplace(id, std::move(r));
    }
  auto& nodes = rep->nodes;
  nodes.reserve(unique.size());
  for (auto& [id, r] : unique) {
    Rep::Node n;
    n.id = id;
    n.rec = std::move(r);
    nodes.push_back(std::move(n));
  }
  std::sort(nodes.begin(), nodes.end(), [](const Rep::Node& a, const Rep::Node& b) {
    return std::pair(a.rec.header().hlc, a.id) < std::pair(b.rec.header().hlc, b.id);
  });
  const size_t n = nodes.size();
  for (size_t i = 0; i < n; ++i) rep->index.emplace(nodes[i].id, i);

  // The genesis: bound to its author, no parents; the smallest id should the
  // creator ever have signed two.
  for (size_t i = 0; i < n; ++i)
    if (const auto* g = std::get_if<CaseGenesis>(&nodes[i].rec.body))
      if (CaseIdFor(g->h.author.v, g->nonce) == case_id && g->h.parents.v.empty() &&
          (!rep->genesis || nodes[i].id < nodes[*rep->genesis].id))
        rep->genesis = i;
  if (rep->genesis) rep->creator = nodes[*rep->genesis].rec.header().author.v;

  // Judge in causal order (Kahn): a record's verdict needs its ancestors'.
  std::set<RecordId> missing;
  std::vector<std::vector<size_t>> children(n);
  std::vector<size_t> waiting(n, 0);
  for (size_t i = 0; i < n; ++i) {
    for (const RecordId& p : nodes[i].rec.header().parents.v) {
      auto it = rep->index.find(p);
      if (it == rep->index.end()) {
        nodes[i].missing_parent = true;
        missing.insert(p);
      } else if (std::find(nodes[i].parents.begin(), nodes[i].parents.end(), it->second) == nodes[i].parents.end()) {
        nodes[i].parents.push_back(it->second);
        children[it->second].push_back(i);
        ++waiting[i];
      }
    }
  }
  std::vector<size_t> ready;
  for (size_t i = 0; i < n; ++i)
    if (waiting[i] == 0) ready.push_back(i);
  while (!ready.empty()) {
    size_t i = ready.back();
    ready.pop_back();
    Rep::Node& node = nodes[i];
    bool complete = !node.missing_parent &&
                    std::all_of(node.parents.begin(), node.parents.end(), [&](size_t p) { return rep->Decided(p); });
    if (complete) {
      Rep::Context ctx = rep->ContextOf(node.parents);
      node.why = rep->Judge(node.rec, node.id, ctx);
      node.verdict = node.why.ok() ? Verdict::kValid : Verdict::kInvalid;
      node.regie_as_of = ctx.regie;
      node.anc = std::move(ctx.anc);
      if (node.verdict == Verdict::kValid && std::holds_alternative<RegieChange>(node.rec.body))
        node.regie_tops = {i};
      else
        node.regie_tops = std::move(ctx.regie_heads);
    }
    for (size_t c : children[i])
      if (--waiting[c] == 0) ready.push_back(c);
  }
  // Whatever was never reached lies on a cycle of ids, which only a hash
  // collision could make: it stays pending.
  rep->missing.assign(missing.begin(), missing.end());

  // Current regie: the valid RegieChanges no other valid one saw.
  std::vector<size_t> changes, withdrawals;
  for (size_t i = 0; i < n; ++i) {
    if (nodes[i].verdict != Verdict::kValid) continue;
    if (std::holds_alternative<RegieChange>(nodes[i].rec.body)) changes.push_back(i);
    if (std::holds_alternative<ConsentWithdrawal>(nodes[i].rec.body)) withdrawals.push_back(i);
  }
  for (size_t c : changes)
    if (std::none_of(changes.begin(), changes.end(), [&](size_t d) { return Test(nodes[d].anc, c); }))
      rep->regie_heads.push_back(c);
  std::sort(rep->regie_heads.rbegin(), rep->regie_heads.rend());
  rep->regie = rep->regie_heads.empty() ? rep->creator
                                        : std::get<RegieChange>(nodes[rep->regie_heads.front()].rec.body).regie.v;

  // Consents and the withdrawals that end them.
  for (size_t i = 0; i < n; ++i) {
    if (!rep->Decided(i) || !std::holds_alternative<ConsentGrant>(nodes[i].rec.body)) continue;
    rep->consents.push_back(i);
    const ConsentGrant& c = rep->Grant(i);
    for (size_t w : withdrawals)
      if (std::get<ConsentWithdrawal>(nodes[w].rec.body).consent == nodes[i].id) {
        nodes[i].withdrawn_by = w;
        break;
      }
    if (nodes[i].withdrawn_by) continue;
    for (size_t w : withdrawals) {
      size_t other = rep->index.at(std::get<ConsentWithdrawal>(nodes[w].rec.body).consent);
      const ConsentGrant& o = rep->Grant(other);
      bool concurrent = !Test(nodes[w].anc, i) && !Test(nodes[i].anc, w);
      if (concurrent && o.grantee.v == c.grantee.v && Overlap(o, c)) {
        nodes[i].withdrawn_by = w;  // a withdrawal wins the tie
        break;
      }
    }
  }

  // Heads, pending, invalid.
  auto is_head_candidate = [&](size_t i) {
    return nodes[i].verdict == Verdict::kValid && !std::holds_alternative<KeyGrant>(nodes[i].rec.body);
  };
  for (size_t i = 0; i < n; ++i) {
    if (nodes[i].verdict == Verdict::kPending) rep->pending.push_back(nodes[i].id);
    if (nodes[i].verdict == Verdict::kInvalid) rep->invalid.push_back(nodes[i].id);
    if (!is_head_candidate(i)) continue;
    bool seen = false;
    for (size_t j = 0; j < n && !seen; ++j) seen = j != i && is_head_candidate(j) && Test(nodes[j].anc, i);
    if (!seen) rep->heads.push_back(nodes[i].id);
  }
  std::sort(rep->heads.begin(), rep->heads.end());
  std::sort(rep->pending.begin(), rep->pending.end());
  std::sort(rep->invalid.begin(), rep->invalid.end());
  return CaseState(std::move(rep));
}

const CaseId& CaseState::case_id() const { return rep_->case_id; }
bool CaseState::has_genesis() const { return rep_->genesis.has_value(); }
const std::string& CaseState::creator() const { return rep_->creator; }

RegieView CaseState::Regie() const {
  RegieView v;
  v.org = rep_->regie;
  if (rep_->regie_heads.empty()) return v;
  const Rep::Node& winner = rep_->nodes[rep_->regie_heads.front()];
  v.person = std::get<RegieChange>(winner.rec.body).person.v;
  v.record = winner.id;
  v.conflict = rep_->regie_heads.size() > 1;
  if (v.conflict)
    for (size_t i : rep_->regie_heads) v.contenders.push_back(rep_->nodes[i].id);
  return v;
}

std::vector<ConsentView> CaseState::Consents(int64_t now_ms) const {
  std::vector<ConsentView> out;
  for (size_t i : rep_->consents) {
    const Rep::Node& n = rep_->nodes[i];
    ConsentView v;
    v.id = n.id;
    v.grant = std::shared_ptr<const ConsentGrant>(rep_, &rep_->Grant(i));  // aliasing: keeps rep_ alive
    v.valid = n.verdict == Verdict::kValid;
    v.status = rep_->StatusOf(i, now_ms);
    if (n.withdrawn_by) v.withdrawn_by = rep_->nodes[*n.withdrawn_by].id;
    out.push_back(std::move(v));
  }
  return out;
}

std::optional<RecordId> CaseState::ConsentFor(std::string_view org, const FragmentFacts& f, int64_t now_ms) const {
  for (size_t i : rep_->consents) {
    const ConsentGrant& c = rep_->Grant(i);
    if (c.grantee.v == org && Covers(c, f.domain) && rep_->ActiveFor(i, now_ms)) return rep_->nodes[i].id;
  }
  return std::nullopt;
}

bool CaseState::MayRead(std::string_view org, const FragmentFacts& f, int64_t now_ms) const {
  if (org.empty()) return false;
  return org == f.author || org == rep_->regie || ConsentFor(org, f, now_ms).has_value();
}

std::vector<std::string> CaseState::Readers(const FragmentFacts& f, int64_t now_ms) const {
  std::set<std::string> out;
  if (!f.author.empty()) out.insert(f.author);
  if (!rep_->regie.empty()) out.insert(rep_->regie);
  for (size_t i : rep_->consents) {
    const ConsentGrant& c = rep_->Grant(i);
    if (Covers(c, f.domain) && rep_->ActiveFor(i, now_ms)) out.insert(c.grantee.v);
  }
  return {out.begin(), out.end()};
}

std::vector<std::string> CaseState::Involved(int64_t now_ms) const {
  std::set<std::string> out;
  if (!rep_->regie.empty()) out.insert(rep_->regie);
  for (size_t i : rep_->consents)
    if (rep_->ActiveFor(i, now_ms)) out.insert(rep_->Grant(i).grantee.v);
  return {out.begin(), out.end()};
}

std::vector<std::string> CaseState::ControlAudience(const ControlRecord& r, int64_t now_ms) const {
  std::set<std::string> out;
  out.insert(r.header().author.v);
  if (const auto* k = std::get_if<KeyGrant>(&r.body)) {
    out.insert(k->grantee.v);
    return {out.begin(), out.end()};
  }
  for (std::string& o : Involved(now_ms)) out.insert(std::move(o));
  if (const auto* c = std::get_if<ConsentGrant>(&r.body)) out.insert(c->grantee.v);
  if (const auto* w = std::get_if<ConsentWithdrawal>(&r.body)) {
    auto it = rep_->index.find(w->consent);
    if (it != rep_->index.end())
      if (const auto* c = std::get_if<ConsentGrant>(&rep_->nodes[it->second].rec.body)) out.insert(c->grantee.v);
  }
  if (const auto* g = std::get_if<RegieChange>(&r.body)) out.insert(g->regie.v);
  return {out.begin(), out.end()};
}

Status CaseState::CheckNewRecord(const ControlRecord& r) const {
  RecordId id = r.Id();
  if (r.header().case_id != rep_->case_id) return Status::InvalidArgument("the record belongs to another case");
  if (auto it = rep_->index.find(id); it != rep_->index.end()) {
    const Rep::Node& n = rep_->nodes[it->second];
    if (n.verdict == Verdict::kPending) return Status::NotFound("the record waits for its causal past");
    return n.why;
  }
  Rep::Context ctx;
  KRING_RETURN_IF_ERROR(rep_->ContextOfIds(r.header().parents.v, &ctx));
  return rep_->Judge(r, id, ctx);
}

Status CaseState::CheckKeyGrant(const ControlRecord& r, std::string_view fragment_author) const {
  KRING_RETURN_IF_ERROR(CheckNewRecord(r));
  if (!std::holds_alternative<KeyGrant>(r.body)) return Status::InvalidArgument("the record is not a key grant");
  std::string regie;
  if (auto it = rep_->index.find(r.Id()); it != rep_->index.end()) {
    regie = rep_->nodes[it->second].regie_as_of;
  } else {
    Rep::Context ctx;
    KRING_RETURN_IF_ERROR(rep_->ContextOfIds(r.header().parents.v, &ctx));
    regie = ctx.regie;
  }
  const std::string& author = r.header().author.v;
  if (author != regie && author != fragment_author)
    return Status::PermissionDenied("only the regie organisation (" + regie + ") or the fragment's author (" +
                                    std::string(fragment_author) + ") may hand out its key, not " + author);
  return Status::Ok();
}

std::vector<RecordId> CaseState::Pending() const { return rep_->pending; }
std::vector<RecordId> CaseState::Missing() const { return rep_->missing; }
std::vector<RecordId> CaseState::Invalid() const { return rep_->invalid; }
std::vector<RecordId> CaseState::Heads() const { return rep_->heads; }

std::optional<int64_t> CaseState::NextChange(int64_t now_ms) const {
  std::optional<int64_t> next;
  auto consider = [&](int64_t t) {
    if (t > now_ms && (!next || t < *next)) next = t;
  };
  for (size_t i : rep_->consents) {
    const Rep::Node& n = rep_->nodes[i];
    if (n.verdict != Verdict::kValid || n.withdrawn_by) continue;
    const ConsentGrant& c = rep_->Grant(i);
    consider(c.valid_from_ms);
    if (c.valid_until_ms != 0) consider(c.valid_until_ms);
  }
  return next;
}

}  // namespace kring
