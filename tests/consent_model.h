// A model of the admission rule for tests and the fuzzer: simulated nodes in one process receive random interleavings of honest and adversarial records.
//
// No sockets, no store: each simulated node keeps the records it admitted,
// its CaseState grown from them, and the fragments it holds (as facts). An
// injected clock and an injected source of choices drive everything. After
// every step CheckInvariants checks, for every node:
//   1. its grown state equals the state built from its admitted set, and two
//      nodes with the same set have the same state;
//   2. it holds no fragment outside what its organisation may read;
//   3. regie moved only by a handover from the organisation that held it;
//   4. a consent it has seen withdrawn stays withdrawn.
#pragma once

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "consent/admission.h"
#include "consent/case_state.h"

namespace kring::model {

constexpr int64_t kStart = 1'800'000'000'000;
const char* const kDomainsUsed[] = {"finances", "housing", "mental-health", "justice"};

struct Org {
  NodeIdentity id;
  std::string name() const { return id.pub.org; }
};

struct SimFragment {
  FragmentFacts facts;
};

struct SimNode {
  const Org* org = nullptr;
  CaseState state{CaseId{}};
  std::vector<ControlRecord> admitted;
  std::set<RecordId> have;
  std::map<RecordId, SimFragment> fragments;
  std::string regie;                      // regie as last seen
  std::set<RecordId> seen_withdrawn;      // consents seen withdrawn
};

std::string Fingerprint(const CaseState& s, int64_t now) {
  std::ostringstream out;
  RegieView r = s.Regie();
  out << r.org << "/" << r.person << "/" << (r.record ? ToHex(*r.record) : "-") << ";";
  for (const ConsentView& c : s.Consents(now))
    out << ToHex(c.id).substr(0, 8) << ConsentStatusName(c.status) << (c.withdrawn_by ? ToHex(*c.withdrawn_by).substr(0, 8) : "-") << ",";
  for (const RecordId& h : s.Heads()) out << ToHex(h).substr(0, 8) << " ";
  for (const std::string& o : s.Involved(now)) out << o << " ";
  return out.str();
}


class Model {
 public:
  // `next` gives the random choices (a seeded engine, or a fuzzer's bytes);
  // `check` hears every invariant checked, with its outcome.
  using Next = std::function<uint32_t()>;
  using CheckFn = std::function<void(bool ok, const char* invariant, const std::string& context)>;
  Model(uint8_t nonce, Next next, CheckFn check) : next_(std::move(next)), check_(std::move(check)) {
    // The same keys every run, so that a run is reproducible.
    static const std::vector<NodeIdentity> keys = [] {
      std::vector<NodeIdentity> k;
      for (const char* name : {"gemeente", "wijkteam", "zorg", "ggz"}) k.push_back(NodeIdentity::Generate(name, name));
      return k;
    }();
    for (const NodeIdentity& k : keys) orgs_.push_back(Org{k});
    for (const Org& o : orgs_) nodes_.push_back(SimNode{&o});
    CaseGenesis g;
    g.nonce.fill(nonce);
    g.h.case_id = CaseIdFor(orgs_[0].name(), g.nonce);
    g.h.author.v = orgs_[0].name();
    g.h.hlc = MakeHlc(static_cast<uint64_t>(now_), 0);
    case_id_ = g.h.case_id;
    for (SimNode& n : nodes_) n.state = CaseState(case_id_);
    auto rec = SignControl(g, orgs_[0].id);
    Check(rec.ok(), "the genesis signs", "set-up");
    Deliver(nodes_[0], *rec, orgs_[0].name());
    world_.push_back(*rec);
  }

  // One random step; returns what it was, for the failure message.
  std::string Step() {
    int kind = Pick(100);
    if (kind < 40) return DeliverRandom();
    if (kind < 62) return HonestWrite();
    if (kind < 72) return HonestFragment();
    if (kind < 80) {
      now_ += 1 + Pick(20 * 60 * 1000);
      return "time passes";
    }
    return Adversary();
  }

  void CheckInvariants(const std::string& step) {
    std::map<std::set<RecordId>, std::string> by_set;
    for (SimNode& n : nodes_) {
      const std::string at = step + " at " + n.org->name();
      CaseState built = CaseState::Build(case_id_, n.admitted);
      Check(Fingerprint(built, now_) == Fingerprint(n.state, now_), "1: the grown state equals the built state", at);
      Check(built.Refused().empty(), "1: every admitted record is admitted again when built", at);
      auto [it, fresh] = by_set.emplace(n.have, Fingerprint(n.state, now_));
      if (!fresh) Check(it->second == Fingerprint(n.state, now_), "1: the same set gives the same state", at);
      Purge(n);
      for (auto& [id, f] : n.fragments)
        Check(f.facts.author == n.org->name() || n.state.MayRead(n.org->name(), f.facts, now_),
              "2: no fragment held outside consent", at);
      if (!n.state.has_genesis()) continue;
      RegieView r = n.state.Regie();
      // Every handover this node admitted was written by the organisation
      // that held regie just before it (creator first), and the last names
      // the current holder: nobody regained regie without one.
      std::string holder = n.state.creator();
      for (const ControlRecord& c : n.admitted)
        if (const auto* g = std::get_if<RegieChange>(&c.body)) {
          Check(c.header().author.v == holder, "3: regie moves only by a handover from its holder", at);
          holder = g->regie.v;
        }
      Check(holder == r.org, "3: the last handover names the regie organisation", at);
      if (!n.regie.empty() && r.org != n.regie) ++regie_moves_;
      n.regie = r.org;
      for (const ConsentView& c : n.state.Consents(now_)) {
        if (c.status == ConsentStatus::kWithdrawn) n.seen_withdrawn.insert(c.id);
        else Check(!n.seen_withdrawn.count(c.id), "4: a withdrawn consent stays withdrawn", at);
      }
    }
  }

  size_t refused() const { return refused_; }
  size_t admitted() const { return admitted_; }
  size_t attacks() const { return attacks_; }
  size_t regie_moves() const { return regie_moves_; }
  const std::map<std::string, size_t>& reasons() const { return reasons_; }

 private:
  size_t Pick(size_t n) { return static_cast<size_t>(next_() % n); }
  void Check(bool ok, const char* invariant, const std::string& context) { check_(ok, invariant, context); }
  SimNode& NodeOf(const std::string& org) {
    return *std::find_if(nodes_.begin(), nodes_.end(), [&](const SimNode& n) { return n.org->name() == org; });
  }

  void Admitted(SimNode& n, const ControlRecord& r) {
    n.admitted.push_back(r);
    n.have.insert(r.Id());
    ++admitted_;
  }

  // Offers records to a node as a push: admitted in as many passes as admit
  // something, then each must be for the node, judged by the state holding
  // all of them (what node/ does, CommitCaseLocked).
  void DeliverPush(SimNode& n, std::vector<ControlRecord> push, const std::string& from) {
    Receipt at{n.org->name(), from, now_};
    const bool own = from == n.org->name();
    for (int round = 0; round < 2; ++round) {
      CaseState next = n.state;
      std::vector<ControlRecord> admitted, todo = push;
      for (bool progress = true; progress;) {
        progress = false;
        std::vector<ControlRecord> later;
        for (ControlRecord& r : todo) {
          if (n.have.count(r.Id()) || std::holds_alternative<KeyGrant>(r.body)) continue;
          Admission a = own ? next.Check(r) : JudgeDecision(next, r, at);
          if (a.kind == Admission::Kind::kWaiting) {
            later.push_back(r);
          } else if (a.kind == Admission::Kind::kRefused) {
            ++refused_;
            ++reasons_[RejectName(a.reason)];
          } else if (a.kind == Admission::Kind::kAdmitted) {
            Check(next.Admit(r).ok(), "an admissible record is admitted", "deliver");
            admitted.push_back(r);
            progress = true;
          }
        }
        todo = std::move(later);
      }
      std::vector<ControlRecord> addressed;
      for (ControlRecord& r : admitted) {
        if (auto no = AddressedTo(next, r, at); no && !own) {
          ++refused_;
          ++reasons_[RejectName(no->reason)];
        } else {
          addressed.push_back(r);
        }
      }
      if (addressed.size() == admitted.size()) {
        n.state = std::move(next);
        for (ControlRecord& r : admitted) Admitted(n, r);
        return;
      }
      push = std::move(addressed);
    }
  }
  void Deliver(SimNode& n, const ControlRecord& r, const std::string& from) { DeliverPush(n, {r}, from); }

  void DeliverFragment(SimNode& n, const SimFragment& f, const std::string& from) {
    if (n.fragments.count(f.facts.id) || !n.state.has_genesis()) return;
    Receipt at{n.org->name(), from, now_};
    if (auto r = JudgeFragment(n.state, f.facts, at)) {
      ++refused_;
      ++reasons_[RejectName(r->reason)];
      return;
    }
    n.fragments.emplace(f.facts.id, f);
  }

  void Purge(SimNode& n) {
    std::erase_if(n.fragments, [&](const auto& e) {
      return e.second.facts.author != n.org->name() && !n.state.MayRead(n.org->name(), e.second.facts, now_);
    });
  }

  std::string DeliverRandom() {
    SimNode& to = nodes_[Pick(nodes_.size())];
    // A sender that holds something `to` lacks and may hold.
    SimNode& from = nodes_[Pick(nodes_.size())];
    if (&from == &to) return "no delivery";
    // As reconciliation does: every decision record the receiver lacks and may hold, oldest first.
    std::vector<ControlRecord> push;
    for (const ControlRecord& r : from.admitted) {
      if (to.have.count(r.Id())) continue;
      auto audience = from.state.ControlAudience(r, now_);
      if (std::binary_search(audience.begin(), audience.end(), to.org->name()) &&
          std::binary_search(audience.begin(), audience.end(), from.org->name()))
        push.push_back(r);
    }
    if (!push.empty()) {
      size_t n = push.size();
      DeliverPush(to, std::move(push), from.org->name());
      return "deliver " + std::to_string(n) + " control record(s) " + from.org->name() + " -> " + to.org->name();
    }
    for (auto& [id, f] : from.fragments) {
      if (to.fragments.count(id)) continue;
      auto audience = FragmentAudience(from.state, f.facts, now_);
      if (!std::binary_search(audience.begin(), audience.end(), from.org->name()) ||
          !std::binary_search(audience.begin(), audience.end(), to.org->name()))
        continue;
      DeliverFragment(to, f, from.org->name());
      return "deliver fragment " + from.org->name() + " -> " + to.org->name();
    }
    return "nothing to deliver";
  }

  template <class Body>
  std::optional<ControlRecord> Sign(Body body, const Org& by, std::vector<RecordId> parents, int64_t at_ms) {
    body.h.case_id = case_id_;
    body.h.author.v = by.name();
    body.h.hlc = MakeHlc(static_cast<uint64_t>(at_ms), static_cast<uint16_t>(++counter_));
    if (parents.size() > kMaxCausalParents) parents.resize(kMaxCausalParents);
    body.h.parents.v = std::move(parents);
    auto r = SignControl(std::move(body), by.id);
    if (!r.ok()) return std::nullopt;
    return *r;
  }

  ConsentGrant RandomGrant() {
    ConsentGrant c;
    c.grantee.v = orgs_[1 + Pick(orgs_.size() - 1)].name();
    std::set<std::string> d;
    if (Pick(4) == 0) d.insert("*");
    else
      for (size_t k = 1 + Pick(2); k > 0; --k) d.insert(kDomainsUsed[Pick(4)]);
    for (const std::string& x : d) c.domains.v.push_back({x});
    c.purpose.v = "ondersteuning";
    c.basis.v = "Wmo 2015 art. 5.1.1";
    c.valid_from_ms = kStart - 1000;
    c.valid_until_ms = Pick(4) == 0 ? now_ + 1 + static_cast<int64_t>(Pick(60 * 60 * 1000)) : 0;
    c.given_by.v = "burger";
    c.evidence_reference.v = "formulier";
    return c;
  }

  // An honest organisation writes what its node allows, following its heads.
  std::string HonestWrite() {
    SimNode& n = nodes_[Pick(nodes_.size())];
    if (!n.state.has_genesis()) return "no case yet";
    const std::string me = n.org->name();
    std::optional<ControlRecord> r;
    std::string what;
    int64_t t = std::max<int64_t>(now_, MaxTime(n) + 1);
    if (n.state.Regie().org == me) {
      switch (Pick(4)) {
        case 0: case 1: {
          ConsentGrant c = RandomGrant();
          if (c.grantee.v == me) return "no self grant";
          r = Sign(c, *n.org, n.state.Heads(), t);
          what = "grant to " + c.grantee.v;
          break;
        }
        case 2: {
          auto consents = n.state.Consents(now_);
          if (consents.empty()) return "nothing to withdraw";
          ConsentWithdrawal w;
          w.consent = consents[Pick(consents.size())].id;
          r = Sign(w, *n.org, n.state.Heads(), t);
          what = "withdrawal";
          break;
        }
        default: {
          RegieChange c;
          c.regie.v = orgs_[Pick(orgs_.size())].name();
          c.person.v = "J. Jansen";
          r = Sign(c, *n.org, n.state.Heads(), t);
          what = "handover to " + c.regie.v;
        }
      }
    } else {
      auto consents = n.state.Consents(now_);
      std::erase_if(consents, [&](const ConsentView& c) { return c.grant->grantee.v != me || c.status != ConsentStatus::kActive; });
      if (consents.empty() || Pick(3) != 0) return "nothing to write";
      ConsentWithdrawal w;
      w.consent = consents.front().id;
      r = Sign(w, *n.org, n.state.Heads(), t);
      what = "decline";
    }
    if (!r) return "unsigned";
    Deliver(n, *r, me);
    world_.push_back(*r);
    return me + " writes " + what;
  }

  std::string HonestFragment() {
    SimNode& n = nodes_[Pick(nodes_.size())];
    if (!n.state.has_genesis()) return "no case yet";
    std::string domain = kDomainsUsed[Pick(4)];
    if (!n.state.MayWriteAt(n.org->name(), domain, now_)) return "may not write";
    SimFragment f;
    f.facts.author = n.org->name();
    f.facts.domain = domain;
    f.facts.time_ms = now_;
    f.facts.id = Hash{};
    uint64_t k = ++counter_;
    std::memcpy(f.facts.id.data(), &k, sizeof k);
    n.fragments.emplace(f.facts.id, f);
    return n.org->name() + " writes a fragment in " + domain;
  }

  int64_t MaxTime(const SimNode& n) const {
    int64_t t = 0;
    for (const ControlRecord& r : n.admitted) t = std::max<int64_t>(t, static_cast<int64_t>(HlcMillis(r.header().hlc)));
    return t;
  }

  // Records an organisation with real keys but bad intent sends.
  std::string Adversary() {
    ++attacks_;
    const Org& bad = orgs_[Pick(orgs_.size())];
    SimNode& victim = nodes_[Pick(nodes_.size())];
    if (&victim.org->id == &bad.id || !victim.state.has_genesis()) return "no attack";
    switch (Pick(6)) {
      case 0: {  // a stale causal past: a regie change or withdrawal following an old subset
        std::vector<RecordId> past;
        for (const ControlRecord& r : world_)
          if (Pick(3) == 0 && past.size() < 3) past.push_back(r.Id());
        if (past.empty()) past.push_back(world_.front().Id());
        std::optional<ControlRecord> r;
        if (Pick(2) == 0) {
          RegieChange c;
          c.regie.v = bad.name();
          c.person.v = "X";
          r = Sign(c, bad, past, now_);
        } else {
          auto consents = victim.state.Consents(now_);
          if (consents.empty()) return "no attack";
          ConsentWithdrawal w;
          w.consent = consents[Pick(consents.size())].id;
          r = Sign(w, bad, past, now_);
        }
        if (!r) return "no attack";
        Deliver(victim, *r, bad.name());
        world_.push_back(*r);
        return bad.name() + " sends a record with a stale past to " + victim.org->name();
      }
      case 1: {  // back-dated fragment
        SimFragment f;
        f.facts.author = bad.name();
        f.facts.domain = kDomainsUsed[Pick(4)];
        f.facts.time_ms = now_ - static_cast<int64_t>(Pick(5) == 0 ? 5LL * 365 * 24 * 3600 * 1000 : 1 + Pick(3 * 3600 * 1000));
        uint64_t k = ++counter_;
        std::memcpy(f.facts.id.data(), &k, sizeof k);
        DeliverFragment(victim, f, bad.name());
        return bad.name() + " sends a back-dated fragment to " + victim.org->name();
      }
      case 2: {  // replay of an old record
        const ControlRecord& r = world_[Pick(world_.size())];
        Deliver(victim, r, bad.name());
        return "replay to " + victim.org->name();
      }
      case 3: {  // invented parents
        Hash invented{};
        uint64_t k = ++counter_;
        std::memcpy(invented.data(), &k, sizeof k);
        ConsentGrant c = RandomGrant();
        auto r = Sign(c, bad, {invented}, now_);
        if (r) Deliver(victim, *r, bad.name());
        return "a record with invented parents";
      }
      case 4: {  // a flood of grants on the author's own chain (caps)
        int before = static_cast<int>(victim.admitted.size());
        for (int i = 0; i < 20; ++i) {
          ConsentGrant c = RandomGrant();
          std::vector<RecordId> parents = victim.state.Heads();
          auto r = Sign(c, bad, parents, std::max<int64_t>(now_, MaxTime(victim) + 1));
          if (!r) break;
          Deliver(victim, *r, bad.name());
          world_.push_back(*r);
        }
        return "a flood of grants by " + bad.name() + " (" + std::to_string(victim.admitted.size() - before) + " admitted)";
      }
      default: {  // a record dated far in the future
        ConsentGrant c = RandomGrant();
        auto r = Sign(c, bad, victim.state.Heads(), now_ + 3 * 3600 * 1000);
        if (r) Deliver(victim, *r, bad.name());
        return "a record from the future";
      }
    }
  }

  Next next_;
  CheckFn check_;
  std::vector<Org> orgs_;
  std::vector<SimNode> nodes_;
  std::vector<ControlRecord> world_;  // everything anyone ever signed
  CaseId case_id_{};
  int64_t now_ = kStart;
  uint64_t counter_ = 0;
  size_t refused_ = 0, admitted_ = 0, attacks_ = 0, regie_moves_ = 0;
  std::map<std::string, size_t> reasons_;
};

}  // namespace kring::model
