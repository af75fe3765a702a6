// Unit tests of the consent decision (consent/case_state.h): who may read, who holds regie, races, and order independence.
#include "consent/case_state.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace kring {
namespace {

constexpr int64_t kHour = 3600 * 1000;
constexpr int64_t kT0 = 1'700'000'000'000;  // when the case opens
constexpr int64_t kNow = kT0 + 24 * kHour;  // when most decisions are asked
constexpr int64_t kLongAgo = kT0 - 24 * kHour;

using Ids = std::vector<RecordId>;

// The organisations of these tests: the creator (first regie), three partners and an outsider.
struct Orgs {
  NodeIdentity gemeente = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  NodeIdentity zorg = NodeIdentity::Generate("zorg-b", "Zorgaanbieder B");
  NodeIdentity ggd = NodeIdentity::Generate("ggd-c", "GGD C");
  NodeIdentity woon = NodeIdentity::Generate("woon-d", "Woningcorporatie D");
  NodeIdentity mallory = NodeIdentity::Generate("mallory", "Mallory");

  std::vector<const NodeIdentity*> All() const { return {&gemeente, &zorg, &ggd, &woon, &mallory}; }
};
const Orgs& O() {
  static const Orgs orgs;
  return orgs;
}

// How a test record differs from the default: written after everything
// before it, with a consent valid since long ago and open-ended.
struct Opt {
  std::optional<Ids> parents = std::nullopt;  // default: the heads of everything so far
  int64_t from = kLongAgo;
  int64_t until = 0;
  std::optional<HlcTimestamp> hlc = std::nullopt;  // default: one millisecond after the previous record
};

// The control records of one case, signed for real, as nodes would write them.
class History {
 public:
  explicit History(const NodeIdentity& creator, uint8_t nonce = 1) {
    CaseGenesis g;
    g.nonce.fill(nonce);
    g.h.case_id = CaseIdFor(creator.pub.org, g.nonce);
    case_id = g.h.case_id;
    genesis = Add(g, creator, {});
  }

  RecordId Grant(const NodeIdentity& by, std::string grantee, std::vector<std::string> domains, Opt o = {}) {
    ConsentGrant c;
    c.grantee.v = std::move(grantee);
    std::sort(domains.begin(), domains.end());
    for (std::string& d : domains) c.domains.v.push_back({std::move(d)});
    c.purpose.v = "ondersteuning bij schulden";
    c.basis.v = "Wmo 2015 art. 5.1.1";
    c.valid_from_ms = o.from;
    c.valid_until_ms = o.until;
    c.given_by.v = "burger";
    c.evidence_reference.v = "formulier-2024-17";
    return Add(c, by, o);
  }
  RecordId Withdraw(const NodeIdentity& by, const RecordId& consent, Opt o = {}) {
    ConsentWithdrawal w;
    w.consent = consent;
    return Add(w, by, o);
  }
  RecordId HandOver(const NodeIdentity& by, std::string regie, Opt o = {}) {
    RegieChange r;
    r.regie.v = std::move(regie);
    r.person.v = "J. de Vries";
    return Add(r, by, o);
  }
  RecordId Close(const NodeIdentity& by, std::string reason = "goals-reached", Opt o = {}) {
    CaseClose c;
    c.reason.v = std::move(reason);
    c.rule.v = "Wmo 2015";
    c.retention.v = "P15Y";
    return Add(c, by, o);
  }
  RecordId Reopen(const NodeIdentity& by, Opt o = {}) {
    CaseReopen r;
    r.reason.v = "nieuwe hulpvraag";
    return Add(r, by, o);
  }
  RecordId GrantKey(const NodeIdentity& by, std::string grantee, Opt o = {}) {
    KeyGrant k;
    k.fragment = Hash{};
    k.fragment[0] = 7;
    k.grantee.v = std::move(grantee);
    return Add(k, by, o);
  }

  // Removes record `id` from the set and returns it: a record not yet
  // arrived, or one to offer to CheckNewRecord.
  ControlRecord Take(const RecordId& id) {
    auto it = std::find_if(records.begin(), records.end(), [&](const ControlRecord& r) { return r.Id() == id; });
    REQUIRE(it != records.end());
    ControlRecord r = *it;
    records.erase(it);
    return r;
  }

  CaseState State() const { return CaseState::Build(case_id, records); }

  // What a node that saw everything lists as parents: the records no other
  // lists (key grants are leaves nobody names).
  Ids Leaves() const {
    std::set<RecordId> named;
    for (const ControlRecord& r : records)
      if (!std::holds_alternative<KeyGrant>(r.body))
        for (const RecordId& p : r.header().parents.v) named.insert(p);
    Ids out;
    for (const ControlRecord& r : records)
      if (!std::holds_alternative<KeyGrant>(r.body) && !named.count(r.Id())) out.push_back(r.Id());
    return out;
  }

  CaseId case_id{};
  RecordId genesis{};
  std::vector<ControlRecord> records;

 private:
  template <class T>
  RecordId Add(T body, const NodeIdentity& by, const Opt& o) {
    body.h.case_id = case_id;
    body.h.author.v = by.pub.org;
    body.h.hlc = o.hlc ? *o.hlc : MakeHlc(kT0 + ++ticks_, 0);
    if constexpr (!std::is_same_v<T, CaseGenesis>) {
      Ids parents = o.parents ? *o.parents : Leaves();
      if (parents.size() > kMaxCausalParents) parents.resize(kMaxCausalParents);  // as a node does
      body.h.parents.v = parents;
    }
    auto r = SignControl(std::move(body), by);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    records.push_back(*r);
    return r->Id();
  }
  uint64_t ticks_ = 0;
};

bool Contains(const std::vector<RecordId>& v, const RecordId& id) { return std::find(v.begin(), v.end(), id) != v.end(); }
bool Contains(const std::vector<std::string>& v, std::string_view s) { return std::find(v.begin(), v.end(), s) != v.end(); }

// ---------------------------------------------------------------------------
// The read decision, one rule per row.

struct ReadRow {
  const char* rule;
  std::function<void(History&)> setup;  // the case starts with gemeente-a's genesis
  std::string org;                       // who asks
  std::string author;                    // the fragment's author
  std::string domain;                    // the fragment's domain
  int64_t now;
  bool expected;
};

TEST_CASE("an organisation reads a fragment exactly when it wrote it, holds regie, or has an active consent covering it") {
  const Orgs& o = O();
  auto none = [](History&) {};
  const std::vector<ReadRow> rows = {
      {"the author reads its own fragment without consent", none, "zorg-b", "zorg-b", "finances", kNow, true},
      {"the regie organisation reads every fragment", none, "gemeente-a", "zorg-b", "mental-health", kNow, true},
      {"an organisation without consent reads nothing", none, "ggd-c", "zorg-b", "finances", kNow, false},
      {"an organisation without consent does not read case-wide items either", none, "ggd-c", "zorg-b", "", kNow, false},
      {"a grantee reads a fragment in a domain its consent covers",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"finances", "housing"}); }, "zorg-b", "ggd-c", "housing", kNow, true},
      {"a grantee does not read a domain its consent does not cover",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"finances"}); }, "zorg-b", "ggd-c", "housing", kNow, false},
      {"a consent for '*' covers every domain",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"*"}); }, "zorg-b", "ggd-c", "justice", kNow, true},
      {"a fragment without a domain is covered by any active consent of the organisation",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"finances"}); }, "zorg-b", "ggd-c", "", kNow, true},
      {"another organisation's consent covers nothing for this one",
       [&](History& h) { h.Grant(o.gemeente, "ggd-c", {"*"}); }, "zorg-b", "woon-d", "finances", kNow, false},
      {"before valid_from the consent is pending and gives no access",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"*"}, {.from = kNow + 1}); }, "zorg-b", "ggd-c", "finances", kNow, false},
      {"from valid_from on the consent gives access",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"*"}, {.from = kNow}); }, "zorg-b", "ggd-c", "finances", kNow, true},
      {"the last millisecond before valid_until still gives access",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"*"}, {.until = kNow + 1}); }, "zorg-b", "ggd-c", "finances", kNow, true},
      {"at valid_until the consent has expired",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"*"}, {.until = kNow}); }, "zorg-b", "ggd-c", "finances", kNow, false},
      {"a consent withdrawn by the regie organisation gives no access",
       [&](History& h) { h.Withdraw(o.gemeente, h.Grant(o.gemeente, "zorg-b", {"*"})); }, "zorg-b", "ggd-c", "finances", kNow, false},
      {"a consent the grantee declined gives no access",
       [&](History& h) { h.Withdraw(o.zorg, h.Grant(o.gemeente, "zorg-b", {"*"})); }, "zorg-b", "ggd-c", "finances", kNow, false},
      {"a withdrawal by a third organisation (neither regie nor grantee) is ignored",
       [&](History& h) { h.Withdraw(o.ggd, h.Grant(o.gemeente, "zorg-b", {"*"})); }, "zorg-b", "ggd-c", "finances", kNow, true},
      {"a withdrawal naming a consent outside its causal past is ignored",
       [&](History& h) {
         RecordId g = h.Grant(o.gemeente, "zorg-b", {"*"});
         h.Withdraw(o.gemeente, g, {.parents = Ids{h.genesis}});
       },
       "zorg-b", "ggd-c", "finances", kNow, true},
      {"a consent recorded by an organisation without regie is ignored",
       [&](History& h) { h.Grant(o.zorg, "ggd-c", {"*"}); }, "ggd-c", "woon-d", "finances", kNow, false},
      {"an organisation cannot grant itself access (kept after handing regie over)",
       [&](History& h) {
         h.Grant(o.gemeente, "gemeente-a", {"*"});
         h.HandOver(o.gemeente, "zorg-b", {.parents = Ids{h.genesis}});  // nobody builds on a refused record
       },
       "gemeente-a", "ggd-c", "finances", kNow, false},
      {"a consent recorded after the fragment was written opens its history",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"finances"}, {.hlc = MakeHlc(kNow, 0)}); }, "zorg-b", "ggd-c",
       "finances", kNow, true},
      {"after a handover the new regie organisation reads every fragment",
       [&](History& h) { h.HandOver(o.gemeente, "zorg-b"); }, "zorg-b", "ggd-c", "mental-health", kNow, true},
      {"after a handover the old regie organisation reads no more",
       [&](History& h) { h.HandOver(o.gemeente, "zorg-b"); }, "gemeente-a", "ggd-c", "mental-health", kNow, false},
      {"after a handover the old regie organisation still reads what it wrote",
       [&](History& h) { h.HandOver(o.gemeente, "zorg-b"); }, "gemeente-a", "gemeente-a", "mental-health", kNow, true},
      {"after a handover the old regie organisation reads what a consent from the new regie covers",
       [&](History& h) {
         h.HandOver(o.gemeente, "zorg-b");
         h.Grant(o.zorg, "gemeente-a", {"finances"});
       },
       "gemeente-a", "ggd-c", "finances", kNow, true},
      {"consents recorded before a handover stay in force",
       [&](History& h) {
         h.Grant(o.gemeente, "ggd-c", {"finances"});
         h.HandOver(o.gemeente, "zorg-b");
       },
       "ggd-c", "woon-d", "finances", kNow, true},
      {"the new regie organisation may withdraw a consent its predecessor recorded",
       [&](History& h) {
         RecordId g = h.Grant(o.gemeente, "ggd-c", {"finances"});
         h.HandOver(o.gemeente, "zorg-b");
         h.Withdraw(o.zorg, g);
       },
       "ggd-c", "woon-d", "finances", kNow, false},
      {"the old regie organisation can no longer record consent",
       [&](History& h) {
         h.HandOver(o.gemeente, "zorg-b");
         h.Grant(o.gemeente, "ggd-c", {"*"});
       },
       "ggd-c", "woon-d", "finances", kNow, false},
      {"a handover written by an organisation without regie is ignored (it does not read)",
       [&](History& h) { h.HandOver(o.zorg, "zorg-b"); }, "zorg-b", "ggd-c", "finances", kNow, false},
      {"a handover written by an organisation without regie is ignored (the regie keeps reading)",
       [&](History& h) { h.HandOver(o.zorg, "zorg-b"); }, "gemeente-a", "ggd-c", "finances", kNow, true},
      {"of two handovers by one organisation that do not follow each other, the fork is refused: the first reads",
       [&](History& h) {
         h.HandOver(o.gemeente, "zorg-b", {.parents = Ids{h.genesis}, .hlc = MakeHlc(kT0 + 10, 0)});
         h.HandOver(o.gemeente, "ggd-c", {.parents = Ids{h.genesis}, .hlc = MakeHlc(kT0 + 20, 0)});
       },
       "zorg-b", "woon-d", "finances", kNow, true},
      {"of two handovers by one organisation that do not follow each other, the fork is refused: the second does not read",
       [&](History& h) {
         h.HandOver(o.gemeente, "zorg-b", {.parents = Ids{h.genesis}, .hlc = MakeHlc(kT0 + 10, 0)});
         h.HandOver(o.gemeente, "ggd-c", {.parents = Ids{h.genesis}, .hlc = MakeHlc(kT0 + 20, 0)});
       },
       "ggd-c", "woon-d", "finances", kNow, false},
      {"a grant concurrent with a withdrawal of an overlapping consent of the same grantee is withdrawn (tie)",
       [&](History& h) {
         RecordId g1 = h.Grant(o.gemeente, "zorg-b", {"*"});
         h.Withdraw(o.zorg, g1, {.parents = Ids{g1}});
         h.Grant(o.gemeente, "zorg-b", {"finances"}, {.parents = Ids{g1}});
       },
       "zorg-b", "ggd-c", "finances", kNow, false},
      {"a grant recorded after seeing the withdrawal is in force (the citizen re-grants)",
       [&](History& h) {
         RecordId g1 = h.Grant(o.gemeente, "zorg-b", {"*"});
         RecordId w = h.Withdraw(o.zorg, g1);
         h.Grant(o.gemeente, "zorg-b", {"finances"}, {.parents = Ids{w}});
       },
       "zorg-b", "ggd-c", "finances", kNow, true},
      {"a concurrent grant whose domains do not overlap the withdrawn consent stays in force",
       [&](History& h) {
         RecordId g1 = h.Grant(o.gemeente, "zorg-b", {"finances"});
         h.Withdraw(o.zorg, g1, {.parents = Ids{g1}});
         h.Grant(o.gemeente, "zorg-b", {"housing"}, {.parents = Ids{g1}});
       },
       "zorg-b", "ggd-c", "housing", kNow, true},
      {"a concurrent grant to another organisation is not touched by a withdrawal",
       [&](History& h) {
         RecordId g1 = h.Grant(o.gemeente, "zorg-b", {"*"});
         h.Withdraw(o.zorg, g1, {.parents = Ids{g1}});
         h.Grant(o.gemeente, "ggd-c", {"*"}, {.parents = Ids{g1}});
       },
       "ggd-c", "woon-d", "finances", kNow, true},
      {"a consent whose causal past is incomplete is pending and gives no access",
       [&](History& h) {
         RecordId gone = h.Grant(o.gemeente, "woon-d", {"housing"});
         h.Grant(o.gemeente, "zorg-b", {"*"}, {.parents = Ids{gone}});
         h.Take(gone);
       },
       "zorg-b", "ggd-c", "finances", kNow, false},
      {"a withdrawal whose causal past is incomplete has no effect yet",
       [&](History& h) {
         RecordId g = h.Grant(o.gemeente, "zorg-b", {"*"});
         RecordId gone = h.Grant(o.gemeente, "woon-d", {"housing"});
         h.Withdraw(o.gemeente, g, {.parents = Ids{gone}});
         h.Take(gone);
       },
       "zorg-b", "ggd-c", "finances", kNow, true},
      {"a record that does not descend from the genesis is ignored",
       [&](History& h) { h.Grant(o.gemeente, "zorg-b", {"*"}, {.parents = Ids{}}); }, "zorg-b", "ggd-c", "finances", kNow,
       false},
      {"a consent of another case is ignored",
       [&](History& h) {
         History other(O().gemeente, 2);
         other.Grant(O().gemeente, "zorg-b", {"*"});
         h.records.insert(h.records.end(), other.records.begin(), other.records.end());
       },
       "zorg-b", "ggd-c", "finances", kNow, false},
  };
  for (const ReadRow& row : rows) {
    INFO(std::string(row.rule));
    History h(o.gemeente);
    row.setup(h);
    CaseState s = h.State();
    FragmentFacts f{Hash{}, row.author, row.domain};
    CHECK(s.MayRead(row.org, f, row.now) == row.expected);
    // The other views of the same decision agree.
    CHECK(Contains(s.Readers(f, row.now), row.org) == row.expected);
    if (row.org != row.author && row.org != s.Regie().org) CHECK(s.ConsentFor(row.org, f, row.now).has_value() == row.expected);
  }
}

TEST_CASE("records an author was not allowed to write are listed as invalid and change nothing") {
  const Orgs& o = O();
  History h(o.gemeente);
  RecordId ok = h.Grant(o.gemeente, "zorg-b", {"*"});
  // Each follows only what was admitted: nobody builds on a refused record.
  RecordId by_non_regie = h.Grant(o.zorg, "ggd-c", {"*"}, {.parents = Ids{ok}});
  RecordId self_grant = h.Grant(o.gemeente, "gemeente-a", {"*"}, {.parents = Ids{ok}});
  RecordId third_withdrawal = h.Withdraw(o.ggd, ok, {.parents = Ids{ok}});
  RecordId takeover = h.HandOver(o.zorg, "zorg-b", {.parents = Ids{ok}});
  RecordId rootless = h.Grant(o.gemeente, "woon-d", {"*"}, {.parents = Ids{}});
  CaseState s = h.State();
  Ids invalid = s.Refused();
  CHECK(invalid.size() == 5);
  for (const RecordId& id : {by_non_regie, self_grant, third_withdrawal, takeover, rootless}) CHECK(Contains(invalid, id));
  CHECK_FALSE(Contains(invalid, ok));
  CHECK(s.Regie().org == "gemeente-a");
  CHECK(s.Involved(kNow) == std::vector<std::string>{"gemeente-a", "zorg-b"});
  // Only admitted records make the state: the refused grants are not there.
  auto consents = s.Consents(kNow);
  REQUIRE(consents.size() == 1);
  CHECK(consents[0].id == ok);
  CHECK(consents[0].status == ConsentStatus::kActive);
}

TEST_CASE("consents are listed by (hlc, id) with their status and the withdrawal that ended them") {
  const Orgs& o = O();
  History h(o.gemeente);
  RecordId a = h.Grant(o.gemeente, "zorg-b", {"finances"});
  RecordId b = h.Grant(o.gemeente, "ggd-c", {"*"}, {.from = kNow + kHour});
  RecordId c = h.Grant(o.gemeente, "woon-d", {"housing"}, {.until = kNow - 1});
  RecordId w = h.Withdraw(o.gemeente, a);
  auto v = h.State().Consents(kNow);
  REQUIRE(v.size() == 3);
  CHECK(v[0].id == a);
  CHECK(v[0].status == ConsentStatus::kWithdrawn);
  CHECK(v[0].withdrawn_by == w);
  CHECK(v[0].grant->grantee.v == "zorg-b");
  CHECK(v[1].id == b);
  CHECK(v[1].status == ConsentStatus::kPending);
  CHECK_FALSE(v[1].withdrawn_by.has_value());
  CHECK(v[2].id == c);
  CHECK(v[2].status == ConsentStatus::kExpired);
  CHECK(std::string(ConsentStatusName(ConsentStatus::kActive)) == "active");
  CHECK(std::string(ConsentStatusName(ConsentStatus::kWithdrawn)) == "withdrawn");
  CHECK(std::string(ConsentStatusName(ConsentStatus::kExpired)) == "expired");
  CHECK(std::string(ConsentStatusName(ConsentStatus::kPending)) == "pending");
}

TEST_CASE("a withdrawal racing a grant names itself as what ended the grant") {
  const Orgs& o = O();
  History h(o.gemeente);
  RecordId g1 = h.Grant(o.gemeente, "zorg-b", {"finances", "housing"});
  RecordId w = h.Withdraw(o.zorg, g1, {.parents = Ids{g1}});
  RecordId g2 = h.Grant(o.gemeente, "zorg-b", {"housing", "justice"}, {.parents = Ids{g1}});
  CaseState s = h.State();
  auto v = s.Consents(kNow);
  REQUIRE(v.size() == 2);
  CHECK(v[1].id == g2);
  CHECK(v[1].status == ConsentStatus::kWithdrawn);
  CHECK(v[1].withdrawn_by == w);
  CHECK(s.Involved(kNow) == std::vector<std::string>{"gemeente-a"});
  // Both the grant and the withdrawal are heads: the next record sees both.
  CHECK(s.Heads() == [&] { Ids x{w, g2}; std::sort(x.begin(), x.end()); return x; }());
}

// ---------------------------------------------------------------------------
// Regie.

TEST_CASE("the creator holds regie until it hands it over, and the handover names the person") {
  const Orgs& o = O();
  History h(o.gemeente);
  CaseState before = h.State();
  CHECK(before.has_genesis());
  CHECK(before.creator() == "gemeente-a");
  CHECK(before.Regie().org == "gemeente-a");
  CHECK(before.Regie().person.empty());
  CHECK_FALSE(before.Regie().record.has_value());
  RecordId r = h.HandOver(o.gemeente, "zorg-b");
  RegieView v = h.State().Regie();
  CHECK(v.org == "zorg-b");
  CHECK(v.person == "J. de Vries");
  CHECK(v.record == r);
  CHECK_FALSE(v.conflict);
  CHECK(h.State().creator() == "gemeente-a");
}

TEST_CASE("issue 10: a former regie organisation cannot take regie back by choosing a stale causal past") {
  const Orgs& o = O();
  History h(o.gemeente);
  RecordId before = h.Grant(o.gemeente, "ggd-c", {"finances"});
  RecordId handover = h.HandOver(o.gemeente, "zorg-b");
  RecordId newer = h.Grant(o.zorg, "ggd-c", {"mental-health"});
  CaseState s = h.State();
  REQUIRE(s.Regie().org == "zorg-b");
  SUBCASE("a regie change naming only records from before its own handover") {
    ControlRecord back = h.Take(h.HandOver(o.gemeente, "gemeente-a", {.parents = Ids{before}, .hlc = MakeHlc(kNow, 0)}));
    Admission a = s.Check(back);
    CHECK(a.kind == Admission::Kind::kRefused);
    CHECK(a.reason == Reject::kForkedChain);
    CaseState t = s;
    CHECK_FALSE(t.Admit(back).ok());
    CHECK(t.Regie().org == "zorg-b");
  }
  SUBCASE("a withdrawal naming a stale past cannot end the current regie organisation's newer consent") {
    ControlRecord w = h.Take(h.Withdraw(o.gemeente, before, {.parents = Ids{before}, .hlc = MakeHlc(kNow, 0)}));
    CHECK(s.Check(w).reason == Reject::kForkedChain);
    auto v = s.Consents(kNow);
    CHECK(std::all_of(v.begin(), v.end(), [](const ConsentView& c) { return c.status == ConsentStatus::kActive; }));
  }
  SUBCASE("the former regie organisation following its own chain is simply no longer regie") {
    ControlRecord back = h.Take(h.HandOver(o.gemeente, "gemeente-a"));
    CHECK(s.Check(back).reason == Reject::kForgedRecord);
  }
  SUBCASE("whatever order a set with a fork arrives in, the fork never becomes regie on a node that saw the handover") {
    ControlRecord back = h.Take(h.HandOver(o.gemeente, "gemeente-a", {.parents = Ids{before}, .hlc = MakeHlc(kNow, 0)}));
    std::vector<ControlRecord> with = h.records;
    with.push_back(back);
    CaseState b = CaseState::Build(h.case_id, with);
    CHECK(b.Regie().org == "zorg-b");
    CHECK(Contains(b.Refused(), back.Id()));
  }
  CHECK(s.Contains(newer));
  CHECK(s.Contains(handover));
}

TEST_CASE("regie changes are totally ordered: only the holder named by the previous one writes the next") {
  const Orgs& o = O();
  History h(o.gemeente);
  h.HandOver(o.gemeente, "zorg-b");
  h.HandOver(o.zorg, "ggd-c");
  RecordId last = h.HandOver(o.ggd, "ggd-c");
  CaseState s = h.State();
  CHECK(s.Regie().org == "ggd-c");
  CHECK(s.Regie().record == last);
  CHECK_FALSE(s.Regie().conflict);
  CHECK(s.RegieAt(kT0 - 1).empty());
  CHECK(s.RegieAt(kT0 + 1) == "gemeente-a");
  CHECK(s.RegieAt(kNow) == "ggd-c");
}

// ---------------------------------------------------------------------------
// Order independence.

// Every decision a node could ask, as one comparable text.
std::string Fingerprint(const CaseState& s, const std::vector<ControlRecord>& records) {
  std::ostringstream out;
  RegieView r = s.Regie();
  out << "regie " << r.org << "/" << r.person << "/" << (r.record ? ToHex(*r.record) : "-") << "/" << r.conflict;
  out << "\n";
  for (int64_t t : {kNow - 3 * kHour, kNow - 1, kNow, kNow + kHour, kNow + 3 * kHour, kNow + 9 * kHour}) {
    out << "t" << t << "\n";
    for (const ConsentView& v : s.Consents(t))
      out << " consent " << ToHex(v.id) << " " << v.valid << " " << ConsentStatusName(v.status) << " "
          << (v.withdrawn_by ? ToHex(*v.withdrawn_by) : "-") << "\n";
    for (const std::string& org : s.Involved(t)) out << " involved " << org << "\n";
    for (const char* author : {"zorg-b", "ggd-c"})
      for (const char* domain : {"", "finances", "housing", "justice"}) {
        FragmentFacts f{Hash{}, author, domain};
        out << " readers " << author << "/" << domain << ":";
        for (const std::string& org : s.Readers(f, t)) out << " " << org;
        for (const NodeIdentity* org : O().All()) {
          auto c = s.ConsentFor(org->pub.org, f, t);
          out << " " << s.MayRead(org->pub.org, f, t) << (c ? ToHex(*c).substr(0, 8) : "");
        }
        out << "\n";
      }
    for (const ControlRecord& rec : records) {
      out << " audience " << ToHex(rec.Id()).substr(0, 8) << ":";
      for (const std::string& org : s.ControlAudience(rec, t)) out << " " << org;
      out << "\n";
    }
    auto next = s.NextChange(t);
    out << " next " << (next ? std::to_string(*next) : "-") << "\n";
  }
  for (const auto& [name, ids] : {std::pair{"heads", s.Heads()}, std::pair{"pending", s.Waiting()},
                                  std::pair{"invalid", s.Refused()}, std::pair{"missing", s.Missing()}}) {
    out << name << ":";
    for (const RecordId& id : ids) out << " " << ToHex(id).substr(0, 8);
    out << "\n";
  }
  return out.str();
}

// A random history as several nodes with partial views would write it: each
// record follows a random part of what exists; authors are mostly, not always,
// the regie organisation of the moment.
History RandomHistory(std::mt19937& rng, int ops) {
  const Orgs& o = O();
  const auto orgs = o.All();
  History h(o.gemeente);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  for (int i = 0; i < ops; ++i) {
    std::vector<RecordId> candidates;
    for (const ControlRecord& r : h.records)
      if (!std::holds_alternative<KeyGrant>(r.body)) candidates.push_back(r.Id());
    Opt opt;
    opt.hlc = MakeHlc(kT0 + 10 + static_cast<uint64_t>(i), 0);
    const CaseState now = h.State();
    const std::string regie = now.Regie().org;
    const NodeIdentity* author = orgs[pick(orgs.size())];
    if (pick(10) < 6)
      for (const NodeIdentity* org : orgs)
        if (org->pub.org == regie) author = org;
    if (pick(2) == 0) {
      // A partial view: some records, and (mostly, as an honest node) the
      // author's own last one; without it the record is a fork.
      Ids parents;
      for (size_t k = 1 + pick(3); k > 0; --k) {
        RecordId p = candidates[pick(candidates.size())];
        if (!Contains(parents, p)) parents.push_back(p);
      }
      if (auto last = now.LastOf(author->pub.org); last && pick(10) < 8 && !Contains(parents, *last))
        parents.push_back(*last);
      opt.parents = parents;
    }
    std::string other = orgs[pick(orgs.size())]->pub.org;
    switch (pick(10)) {
      case 0: case 1: case 2: case 3: {
        static const std::vector<std::vector<std::string>> kDomains = {
            {"*"}, {"finances"}, {"housing"}, {"finances", "housing"}, {"justice"}};
        opt.from = kNow + (static_cast<int64_t>(pick(5)) - 2) * kHour;
        opt.until = pick(2) ? 0 : opt.from + (1 + static_cast<int64_t>(pick(4))) * kHour;
        h.Grant(*author, other, kDomains[pick(kDomains.size())], opt);
        break;
      }
      case 4: case 5: case 6: {
        std::vector<const ControlRecord*> grants;
        for (const ControlRecord& r : h.records)
          if (std::holds_alternative<ConsentGrant>(r.body)) grants.push_back(&r);
        if (grants.empty()) break;
        const ControlRecord& g = *grants[pick(grants.size())];
        RecordId gid = g.Id();
        if (pick(5) < 2)
          for (const NodeIdentity* org : orgs)
            if (org->pub.org == std::get<ConsentGrant>(g.body).grantee.v) author = org;
        if (opt.parents && !Contains(*opt.parents, gid) && opt.parents->size() < kMaxCausalParents) opt.parents->push_back(gid);
        h.Withdraw(*author, gid, opt);
        break;
      }
      case 7: case 8:
        h.HandOver(*author, other, opt);
        break;
      default:
        h.GrantKey(*author, other, opt);
        break;
    }
  }
  return h;
}

TEST_CASE("the decisions depend on the set of records, not on their order or duplicates") {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    History h = RandomHistory(rng, 40);
    // Half of the histories lose one record on the way: its descendants wait.
    if (seed % 2 == 0) h.Take(h.records[1 + rng() % (h.records.size() - 1)].Id());
    History other(O().gemeente, 9);
    other.Grant(O().gemeente, "zorg-b", {"*"});
    const std::vector<ControlRecord> base = h.records;
    const std::string expected = Fingerprint(CaseState::Build(h.case_id, base), base);
    for (int round = 0; round < 8; ++round) {
      std::vector<ControlRecord> shuffled = base;
      for (int d = 0; d < 5; ++d) shuffled.push_back(base[rng() % base.size()]);
      shuffled.insert(shuffled.end(), other.records.begin(), other.records.end());
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      CHECK(Fingerprint(CaseState::Build(h.case_id, shuffled), base) == expected);
    }
  }
}

TEST_CASE("a random history exercises every verdict") {
  // Guards the property test above against testing only trivial histories.
  size_t valid_grants = 0, invalid = 0, withdrawn = 0, ties = 0;
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    std::mt19937 rng(seed);
    History h = RandomHistory(rng, 40);
    CaseState s = h.State();
    invalid += s.Refused().size();
    for (const ConsentView& v : s.Consents(kNow)) {
      valid_grants += v.valid;
      withdrawn += v.valid && v.status == ConsentStatus::kWithdrawn;
      if (v.withdrawn_by) {
        const ControlRecord& w = *std::find_if(h.records.begin(), h.records.end(),
                                               [&](const ControlRecord& r) { return r.Id() == *v.withdrawn_by; });
        ties += std::get<ConsentWithdrawal>(w.body).consent != v.id;
      }
    }
  }
  MESSAGE("valid grants " << valid_grants << ", invalid " << invalid << ", withdrawn " << withdrawn << " (" << ties << " by a tie)"
                           );
  CHECK(valid_grants > 10);
  CHECK(invalid > 20);
  CHECK(withdrawn > 5);
}

TEST_CASE("CheckNewRecord gives the verdict Build gives the record once added") {
  for (uint32_t seed = 100; seed < 106; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    History h = RandomHistory(rng, 40);
    CaseState all = h.State();
    for (size_t i = 1; i < h.records.size(); ++i) {
      const ControlRecord& r = h.records[i];
      std::vector<ControlRecord> before(h.records.begin(), h.records.begin() + static_cast<ptrdiff_t>(i));
      Status fresh = CaseState::Build(h.case_id, before).CheckNewRecord(r);
      CHECK(fresh.ok() == all.Contains(r.Id()));
    }
  }
}

// ---------------------------------------------------------------------------
// CheckNewRecord: the API's 403 and a peer's forged record.

TEST_CASE("CheckNewRecord refuses what the author may not write and names the rule") {
  const Orgs& o = O();
  History h(o.gemeente);
  RecordId g = h.Grant(o.gemeente, "zorg-b", {"*"});
  CaseState s = h.State();

  SUBCASE("a consent recorded by an organisation without regie") {
    Status st = s.CheckNewRecord(h.Take(h.Grant(o.zorg, "ggd-c", {"*"})));
    CHECK(st.code() == Status::Code::kPermissionDenied);
    CHECK(st.message().find("regie") != std::string::npos);
  }
  SUBCASE("the regie organisation granting itself access") {
    Status st = s.CheckNewRecord(h.Take(h.Grant(o.gemeente, "gemeente-a", {"*"})));
    CHECK(st.code() == Status::Code::kPermissionDenied);
    CHECK(st.message().find("itself") != std::string::npos);
  }
  SUBCASE("the grantee declining its consent is allowed") {
    CHECK(s.CheckNewRecord(h.Take(h.Withdraw(o.zorg, g))).ok());
  }
  SUBCASE("the regie organisation withdrawing a consent is allowed") {
    CHECK(s.CheckNewRecord(h.Take(h.Withdraw(o.gemeente, g))).ok());
  }
  SUBCASE("a third organisation withdrawing someone's consent") {
    Status st = s.CheckNewRecord(h.Take(h.Withdraw(o.ggd, g)));
    CHECK(st.code() == Status::Code::kPermissionDenied);
  }
  SUBCASE("a handover by an organisation without regie") {
    Status st = s.CheckNewRecord(h.Take(h.HandOver(o.zorg, "zorg-b")));
    CHECK(st.code() == Status::Code::kPermissionDenied);
  }
  SUBCASE("a handover by the regie organisation is allowed") {
    CHECK(s.CheckNewRecord(h.Take(h.HandOver(o.gemeente, "zorg-b"))).ok());
  }
  SUBCASE("a record whose parent is unknown would wait") {
    RecordId gone = h.Grant(o.gemeente, "ggd-c", {"*"});
    ControlRecord r = h.Take(h.Grant(o.gemeente, "woon-d", {"*"}, {.parents = Ids{gone}}));
    h.Take(gone);
    CHECK(h.State().CheckNewRecord(r).code() == Status::Code::kNotFound);
  }
  SUBCASE("a second genesis for the case") {
    CaseGenesis g2;
    g2.nonce.fill(1);
    g2.h.case_id = h.case_id;
    g2.h.author.v = "gemeente-a";
    g2.h.hlc = MakeHlc(kT0 + 99, 0);
    auto r = SignControl(g2, o.gemeente);
    REQUIRE(r.ok());
    CHECK(s.CheckNewRecord(*r).code() == Status::Code::kConflict);
  }
  SUBCASE("a record of another case") {
    History other(o.gemeente, 3);
    CHECK(s.CheckNewRecord(other.records[0]).code() == Status::Code::kInvalidArgument);
  }
  SUBCASE("a record already in the set gets its verdict") {
    CHECK(s.CheckNewRecord(h.records[1]).ok());
  }
}

TEST_CASE("a key grant may come from the regie organisation or the fragment's author only") {
  const Orgs& o = O();
  History h(o.gemeente);
  h.Grant(o.gemeente, "zorg-b", {"*"});
  RecordId by_regie = h.GrantKey(o.gemeente, "zorg-b");
  RecordId by_author = h.GrantKey(o.ggd, "zorg-b");
  CaseState s = h.State();
  auto record = [&](const RecordId& id) {
    return *std::find_if(h.records.begin(), h.records.end(), [&](const ControlRecord& r) { return r.Id() == id; });
  };
  CHECK(s.CheckKeyGrant(record(by_regie), "woon-d").ok());
  CHECK(s.CheckKeyGrant(record(by_author), "ggd-c").ok());
  CHECK(s.CheckKeyGrant(record(by_author), "woon-d").reason == Reject::kForgedRecord);
  CHECK(s.CheckKeyGrant(h.records[0], "woon-d").reason == Reject::kBadRecord);
  // Build cannot see the fragment: a key grant is never invalid for its author alone.
  CHECK(s.Refused().empty());
  // Key grants are leaves: nobody else holds them, so nothing may name them as parent.
  CHECK_FALSE(Contains(s.Heads(), by_regie));
  CHECK_FALSE(Contains(s.Heads(), by_author));
  CHECK(s.Heads() == Ids{h.records[1].Id()});
}

// ---------------------------------------------------------------------------
// Who may hold control records, causal bookkeeping, timers.

TEST_CASE("a withdrawn grantee still receives the withdrawal, and nothing after it") {
  const Orgs& o = O();
  History h(o.gemeente);
  RecordId g = h.Grant(o.gemeente, "zorg-b", {"*"});
  h.Grant(o.gemeente, "ggd-c", {"finances"});
  RecordId w = h.Withdraw(o.gemeente, g);
  RecordId later = h.Grant(o.gemeente, "woon-d", {"housing"});
  CaseState s = h.State();
  auto find = [&](const RecordId& id) {
    return *std::find_if(h.records.begin(), h.records.end(), [&](const ControlRecord& r) { return r.Id() == id; });
  };
  CHECK(s.ControlAudience(find(w), kNow) == std::vector<std::string>{"gemeente-a", "ggd-c", "woon-d", "zorg-b"});
  CHECK(s.ControlAudience(find(later), kNow) == std::vector<std::string>{"gemeente-a", "ggd-c", "woon-d"});
  CHECK(s.Involved(kNow) == std::vector<std::string>{"gemeente-a", "ggd-c", "woon-d"});
}

TEST_CASE("control records go to the involved organisations and a key grant only to its grantee and author") {
  const Orgs& o = O();
  History h(o.gemeente);
  h.Grant(o.gemeente, "zorg-b", {"*"});
  RecordId pending = h.Grant(o.gemeente, "ggd-c", {"*"}, {.from = kNow + kHour});
  RecordId handover = h.HandOver(o.gemeente, "woon-d");
  RecordId key = h.GrantKey(o.zorg, "ggd-c");
  CaseState s = h.State();
  auto find = [&](const RecordId& id) {
    return *std::find_if(h.records.begin(), h.records.end(), [&](const ControlRecord& r) { return r.Id() == id; });
  };
  // A grantee whose consent has not started holds its own consent, not the rest of the case.
  CHECK(s.ControlAudience(find(pending), kNow) == std::vector<std::string>{"gemeente-a", "ggd-c", "woon-d", "zorg-b"});
  CHECK(s.ControlAudience(h.records[0], kNow) == std::vector<std::string>{"gemeente-a", "woon-d", "zorg-b"});
  CHECK(s.ControlAudience(h.records[0], kNow + kHour) ==
        std::vector<std::string>{"gemeente-a", "ggd-c", "woon-d", "zorg-b"});
  CHECK(s.ControlAudience(find(handover), kNow) == std::vector<std::string>{"gemeente-a", "woon-d", "zorg-b"});
  CHECK(s.ControlAudience(find(key), kNow) == std::vector<std::string>{"ggd-c", "zorg-b"});
}

TEST_CASE("records waiting for missing ancestors are reported with the ids to ask for") {
  const Orgs& o = O();
  History h(o.gemeente);
  RecordId a = h.Grant(o.gemeente, "zorg-b", {"*"});
  RecordId b = h.Grant(o.gemeente, "ggd-c", {"*"});
  RecordId c = h.Withdraw(o.gemeente, a);
  h.Take(b);
  CaseState s = h.State();
  CHECK(s.Waiting() == Ids{c});
  CHECK(s.Missing() == Ids{b});
  CHECK(s.Heads() == Ids{a});
  CHECK(s.Refused().empty());
  CHECK(s.MayRead("zorg-b", {Hash{}, "ggd-c", "finances"}, kNow));

  SUBCASE("without the genesis nothing is decided") {
    History bare(o.gemeente);
    bare.Grant(o.gemeente, "zorg-b", {"*"});
    bare.Take(bare.genesis);
    CaseState n = bare.State();
    CHECK_FALSE(n.has_genesis());
    CHECK(n.Regie().org.empty());
    CHECK(n.Waiting().size() == 1);
    CHECK(n.Missing() == Ids{bare.genesis});
    CHECK_FALSE(n.MayRead("zorg-b", {Hash{}, "ggd-c", "finances"}, kNow));
    CHECK(n.Readers({Hash{}, "ggd-c", "finances"}, kNow) == std::vector<std::string>{"ggd-c"});
  }
}

TEST_CASE("the heads are the parents of the next record") {
  const Orgs& o = O();
  History h(o.gemeente);
  CHECK(h.State().Heads() == Ids{h.genesis});
  RecordId a = h.Grant(o.gemeente, "zorg-b", {"*"});
  CHECK(h.State().Heads() == Ids{a});
  // The grantee declines while the regie organisation grants another: two heads.
  RecordId w = h.Withdraw(o.zorg, a, {.parents = Ids{a}});
  RecordId b = h.Grant(o.gemeente, "ggd-c", {"*"}, {.parents = Ids{a}});
  CHECK(h.State().Contains(w));
  Ids both{w, b};
  std::sort(both.begin(), both.end());
  CHECK(h.State().Heads() == both);
  // An invalid record is no head: nobody honest builds on it.
  h.Grant(o.mallory, "mallory", {"*"});
  CHECK(h.State().Heads() == both);
}

TEST_CASE("NextChange returns the next valid_from or valid_until of a consent in force") {
  const Orgs& o = O();
  History h(o.gemeente);
  h.Grant(o.gemeente, "zorg-b", {"*"}, {.from = kNow + kHour, .until = kNow + 5 * kHour});
  h.Grant(o.gemeente, "ggd-c", {"*"}, {.from = kNow - kHour, .until = kNow + 3 * kHour});
  RecordId gone = h.Grant(o.gemeente, "woon-d", {"*"}, {.from = kNow + 30 * 60 * 1000});
  h.Withdraw(o.gemeente, gone);
  CaseState s = h.State();
  FragmentFacts f{Hash{}, "gemeente-a", "finances"};
  CHECK(s.NextChange(kNow) == kNow + kHour);
  CHECK(s.Readers(f, kNow) == std::vector<std::string>{"gemeente-a", "ggd-c"});
  CHECK(s.NextChange(kNow + kHour) == kNow + 3 * kHour);
  CHECK(s.Readers(f, kNow + kHour) == std::vector<std::string>{"gemeente-a", "ggd-c", "zorg-b"});
  CHECK(s.NextChange(kNow + 3 * kHour) == kNow + 5 * kHour);
  CHECK(s.Readers(f, kNow + 3 * kHour) == std::vector<std::string>{"gemeente-a", "zorg-b"});
  CHECK_FALSE(s.NextChange(kNow + 5 * kHour).has_value());
  CHECK(s.Readers(f, kNow + 5 * kHour) == std::vector<std::string>{"gemeente-a"});
}

TEST_CASE("consent views and copies of a state outlive the state they came from") {
  const Orgs& o = O();
  History h(o.gemeente);
  h.Grant(o.gemeente, "zorg-b", {"finances"});
  std::vector<ConsentView> views = h.State().Consents(kNow);  // the state is gone after this line
  REQUIRE(views.size() == 1);
  CHECK(views[0].grant->grantee.v == "zorg-b");
  std::optional<CaseState> copy;
  {
    CaseState s = h.State();
    copy = s;
  }
  CHECK(copy->MayRead("zorg-b", {Hash{}, "ggd-c", "finances"}, kNow));
  CHECK(copy->Consents(kNow)[0].grant->grantee.v == "zorg-b");
}

// ---------------------------------------------------------------------------
// Closing and reopening (issue 16; docs/retention.md).

Admission Offer(History& h, const RecordId& id) {
  ControlRecord r = h.Take(id);
  return h.State().Check(r);
}

TEST_CASE("issue 16: only the regie organisation closes a case, and a closed case refuses consent, citizen keys and regie changes") {
  History h(O().gemeente);
  RecordId c = h.Grant(O().gemeente, "zorg-b", {"housing"});

  SUBCASE("a partner with consent cannot close it") {
    Admission a = Offer(h, h.Close(O().zorg));
    CHECK(a.kind == Admission::Kind::kRefused);
    CHECK(a.reason == Reject::kForgedRecord);
  }
  SUBCASE("the regie organisation closes it: closed from the close's time on, not before") {
    RecordId close = h.Close(O().gemeente, "moved");
    CaseState s = h.State();
    REQUIRE(s.Closure());
    CHECK(s.Closure()->id == close);
    CHECK(s.Closure()->reason == "moved");
    CHECK(s.Closure()->retention == "P15Y");
    CHECK(s.ClosedAt(s.Closure()->time_ms));
    CHECK_FALSE(s.ClosedAt(s.Closure()->time_ms - 1));
    // Reads stay as they were: consent is not withdrawn by closing.
    CHECK(s.MayRead("zorg-b", FragmentFacts{Hash{}, "gemeente-a", "housing", kT0}, kNow));
  }
  SUBCASE("after the close: a grant, a citizen key enrolment's grant and a regie change are refused as case_closed") {
    h.Close(O().gemeente);
    Admission grant = Offer(h, h.Grant(O().gemeente, "ggd-c", {"finances"}));
    CHECK(grant.reason == Reject::kCaseClosed);
    Admission regie = Offer(h, h.HandOver(O().gemeente, "zorg-b"));
    CHECK(regie.reason == Reject::kCaseClosed);
    Admission again = Offer(h, h.Close(O().gemeente));
    CHECK(again.reason == Reject::kCaseClosed);
    CHECK(h.State().CheckNewRecord(h.Take(h.Grant(O().gemeente, "ggd-c", {"finances"}))).code() == Status::Code::kConflict);
  }
  SUBCASE("a withdrawal stays open in a closed case") {
    h.Close(O().gemeente);
    Admission w = Offer(h, h.Withdraw(O().zorg, c));
    CHECK(w.ok());
  }
  SUBCASE("a reopen by the regie organisation opens it again; a reopen of an open case is refused") {
    Admission open_reopen = Offer(h, h.Reopen(O().gemeente));
    CHECK(open_reopen.reason == Reject::kCaseClosed);
    h.Close(O().gemeente);
    RecordId reopen = h.Reopen(O().gemeente);
    CaseState s = h.State();
    CHECK(s.Contains(reopen));
    CHECK_FALSE(s.Closure());
    CHECK(h.State().Check(h.Take(h.Grant(O().gemeente, "ggd-c", {"finances"}))).ok());
  }
  SUBCASE("a regie organisation that handed over cannot close any more; the new one can") {
    h.HandOver(O().gemeente, "zorg-b");
    CHECK(Offer(h, h.Close(O().gemeente)).reason == Reject::kForgedRecord);
    CHECK(h.State().Check(h.Take(h.Close(O().zorg))).ok());
  }
}

TEST_CASE("issue 16: closes and reopens give the same state in any order of arrival") {
  History h(O().gemeente);
  h.Grant(O().gemeente, "zorg-b", {"*"});
  h.Close(O().gemeente);
  h.Reopen(O().gemeente);
  RecordId last = h.Close(O().gemeente, "declined");
  std::vector<ControlRecord> records = h.records;
  std::mt19937 rng(16);
  for (int i = 0; i < 20; ++i) {
    std::shuffle(records.begin(), records.end(), rng);
    CaseState s = CaseState::Build(h.case_id, records);
    REQUIRE(s.Closure());
    CHECK(s.Closure()->id == last);
    CHECK(s.size() == records.size());
  }
}

}  // namespace
}  // namespace kring
