// Unit tests of the admission rule's pure functions (consent/admission.h) with an injected time: fragments, key grants, access records, recompute.
#include "consent/admission.h"

#include <doctest/doctest.h>

#include <algorithm>

namespace kring {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;
constexpr int64_t kMin = 60 * 1000;

struct Case {
  NodeIdentity gemeente = NodeIdentity::Generate("gemeente", "Gemeente");
  NodeIdentity zorg = NodeIdentity::Generate("zorg", "Zorg");
  NodeIdentity ggz = NodeIdentity::Generate("ggz", "GGZ");
  CaseState state{CaseId{}};
  std::vector<ControlRecord> records;
  uint64_t tick = 0;

  Case() {
    CaseGenesis g;
    g.nonce.fill(3);
    g.h.case_id = CaseIdFor("gemeente", g.nonce);
    state = CaseState(g.h.case_id);
    Add(g, gemeente, kT0);
  }
  template <class Body>
  ControlRecord Sign(Body b, const NodeIdentity& by, int64_t at_ms) {
    b.h.case_id = state.case_id();
    b.h.author.v = by.pub.org;
    b.h.hlc = MakeHlc(static_cast<uint64_t>(at_ms), static_cast<uint16_t>(++tick));
    if constexpr (!std::is_same_v<Body, CaseGenesis>) b.h.parents.v = state.Heads();
    auto r = SignControl(std::move(b), by);
    REQUIRE(r.ok());
    return *r;
  }
  template <class Body>
  RecordId Add(Body b, const NodeIdentity& by, int64_t at_ms) {
    ControlRecord r = Sign(std::move(b), by, at_ms);
    REQUIRE(state.Admit(r).ok());
    records.push_back(r);
    return r.Id();
  }
  RecordId Grant(const std::string& grantee, const std::string& domain, int64_t at_ms, int64_t until = 0) {
    ConsentGrant c;
    c.grantee.v = grantee;
    c.domains.v = {{domain}};
    c.purpose.v = "p";
    c.basis.v = "b";
    c.given_by.v = "burger";
    c.evidence_reference.v = "f";
    c.valid_from_ms = kT0 - 1000;
    c.valid_until_ms = until;
    return Add(c, gemeente, at_ms);
  }
  RecordId Withdraw(const RecordId& consent, int64_t at_ms) {
    ConsentWithdrawal w;
    w.consent = consent;
    return Add(w, gemeente, at_ms);
  }
};

FragmentFacts Fact(const std::string& author, const std::string& domain, int64_t at_ms, uint8_t n = 1) {
  FragmentFacts f;
  f.id[0] = n;
  f.author = author;
  f.domain = domain;
  f.time_ms = at_ms;
  return f;
}

TEST_CASE("a fragment counts only if its author had the right to write in its domain at the time it claims") {
  Case c;
  RecordId g = c.Grant("zorg", "housing", kT0 + kMin);
  c.Withdraw(g, kT0 + 60 * kMin);
  Receipt regie{"gemeente", "zorg", kT0 + 61 * kMin};
  // Written while the consent ran, arriving a minute after the withdrawal: fine.
  CHECK_FALSE(JudgeFragment(c.state, Fact("zorg", "housing", kT0 + 59 * kMin), regie).has_value());
  // Another domain, or a time before the grant or after the withdrawal: no right.
  CHECK(JudgeFragment(c.state, Fact("zorg", "finances", kT0 + 30 * kMin), regie)->reason == Reject::kForgedRecord);
  CHECK(JudgeFragment(c.state, Fact("zorg", "housing", kT0 + kMin / 2), regie)->reason == Reject::kForgedRecord);
  CHECK(JudgeFragment(c.state, Fact("zorg", "housing", kT0 + 60 * kMin + 1), regie)->reason == Reject::kForgedRecord);
}

TEST_CASE("an author that lost its right can be held to a claimed time only within the late-write window") {
  Case c;
  RecordId g = c.Grant("zorg", "housing", kT0 + kMin);
  c.Withdraw(g, kT0 + 60 * kMin);
  FragmentFacts f = Fact("zorg", "housing", kT0 + 59 * kMin);
  const int64_t late = f.time_ms + kLateWriteWindowMs + 1;
  SUBCASE("sent by the author itself, too late") {
    CHECK(JudgeFragment(c.state, f, Receipt{"gemeente", "zorg", late})->reason == Reject::kLateWrite);
  }
  SUBCASE("passed on by a partner that accepted it in time") {
    CHECK_FALSE(JudgeFragment(c.state, f, Receipt{"gemeente", "ggz", late}).has_value());
  }
  SUBCASE("the author's own node stops offering it when the window closes, the others do not") {
    auto open = FragmentAudience(c.state, f, f.time_ms + kLateWriteWindowMs);
    auto closed = FragmentAudience(c.state, f, late);
    CHECK(std::find(open.begin(), open.end(), "zorg") != open.end());
    CHECK(std::find(closed.begin(), closed.end(), "zorg") == closed.end());
    CHECK(std::find(closed.begin(), closed.end(), "gemeente") != closed.end());
  }
  SUBCASE("a regie organisation that handed regie over is held the same way") {
    RegieChange r;
    r.regie.v = "ggz";
    r.person.v = "P";
    c.Add(r, c.gemeente, kT0 + 70 * kMin);
    FragmentFacts own = Fact("gemeente", "finances", kT0 + 69 * kMin, 2);
    CHECK_FALSE(JudgeFragment(c.state, own, Receipt{"ggz", "gemeente", kT0 + 71 * kMin}).has_value());
    CHECK(JudgeFragment(c.state, own, Receipt{"ggz", "gemeente", kT0 + 69 * kMin + kLateWriteWindowMs + 1})->reason ==
          Reject::kLateWrite);
  }
}

TEST_CASE("a fragment the receiver may not hold, or from the future, is refused") {
  Case c;
  c.Grant("zorg", "housing", kT0 + kMin);
  CHECK(JudgeFragment(c.state, Fact("gemeente", "finances", kT0 + 2 * kMin), Receipt{"zorg", "gemeente", kT0 + 3 * kMin})
            ->reason == Reject::kNotAddressed);
  CHECK(JudgeFragment(c.state, Fact("gemeente", "housing", kT0 + 3 * 60 * kMin), Receipt{"zorg", "gemeente", kT0 + 3 * kMin})
            ->reason == Reject::kClockSkew);
  CHECK(CheckTime(MakeHlc(uint64_t{1} << 47, 0), kT0).has_value());
  CHECK_FALSE(CheckTime(MakeHlc(kT0 + 59 * kMin, 0), kT0).has_value());
}

TEST_CASE("a control record is for an organisation only when the state with it says so") {
  Case c;
  ControlRecord genesis = c.records.front();
  CaseState empty(c.state.case_id());
  Receipt zorg{"zorg", "gemeente", kT0 + 2 * kMin};
  REQUIRE(JudgeDecision(empty, genesis, zorg).kind == Admission::Kind::kAdmitted);
  REQUIRE(empty.Admit(genesis).ok());
  CHECK(AddressedTo(empty, genesis, zorg)->reason == Reject::kNotAddressed);
  c.Grant("zorg", "housing", kT0 + kMin);
  CHECK_FALSE(AddressedTo(c.state, genesis, zorg).has_value());
}

TEST_CASE("a node keeps one key grant per fragment and author, only for itself and a fragment it holds") {
  Case c;
  c.Grant("zorg", "housing", kT0 + kMin);
  FragmentFacts f = Fact("ggz", "housing", kT0 + 2 * kMin);
  KeyGrant k;
  k.fragment = f.id;
  k.grantee.v = "zorg";
  ControlRecord by_regie = c.Sign(k, c.gemeente, kT0 + 3 * kMin);
  Receipt at{"zorg", "gemeente", kT0 + 4 * kMin};
  CHECK(JudgeKeyGrant(c.state, by_regie, &f, 0, at).ok());
  CHECK(JudgeKeyGrant(c.state, by_regie, &f, 1, at).reason == Reject::kKeyGrantFull);
  CHECK(JudgeKeyGrant(c.state, by_regie, nullptr, 0, at).reason == Reject::kNotAddressed);
  CHECK(JudgeKeyGrant(c.state, by_regie, &f, 0, Receipt{"ggz", "gemeente", at.now_ms}).reason == Reject::kNotAddressed);
  ControlRecord by_stranger = c.Sign(k, c.zorg, kT0 + 3 * kMin);
  CHECK(JudgeKeyGrant(c.state, by_stranger, &f, 0, at).reason == Reject::kForgedRecord);
}

TEST_CASE("access records go only to the regie organisation, from organisations that took part") {
  Case c;
  c.Grant("zorg", "housing", kT0 + kMin);
  AccessRecordBody b;
  b.case_id = c.state.case_id();
  b.author.v = "zorg";
  b.hlc = MakeHlc(kT0 + 2 * kMin, 0);
  CHECK_FALSE(JudgeAccessRecord(c.state, b, Receipt{"gemeente", "zorg", kT0 + 3 * kMin}).has_value());
  CHECK(JudgeAccessRecord(c.state, b, Receipt{"zorg", "gemeente", kT0 + 3 * kMin})->reason == Reject::kNotAddressed);
  b.author.v = "ggz";
  CHECK(JudgeAccessRecord(c.state, b, Receipt{"gemeente", "ggz", kT0 + 3 * kMin})->reason == Reject::kNotAddressed);
  b.author.v = "zorg";
  b.hlc = MakeHlc(kT0 + 300 * kMin, 0);
  CHECK(JudgeAccessRecord(c.state, b, Receipt{"gemeente", "zorg", kT0 + 3 * kMin})->reason == Reject::kClockSkew);
}

TEST_CASE("recompute purges what the node may no longer hold, re-seals for late readers, and wakes when a window closes") {
  Case c;
  RecordId g = c.Grant("zorg", "housing", kT0 + kMin);
  HeldRecord mine;
  mine.id[0] = 1;
  mine.fragment = Fact("zorg", "housing", kT0 + 2 * kMin, 1);
  mine.recipients = {"gemeente", "zorg"};
  HeldRecord theirs;
  theirs.id[0] = 2;
  theirs.fragment = Fact("gemeente", "housing", kT0 + 3 * kMin, 2);
  theirs.recipients = {"gemeente"};  // written before zorg could be sealed to
  std::vector<HeldRecord> held = {mine, theirs};
  std::set<std::string> partners = {"gemeente", "zorg", "ggz"};

  CaseChanges at_regie = Recompute(c.state, "gemeente", held, partners, kT0 + 4 * kMin);
  CHECK(at_regie.key_grants == std::vector<std::pair<RecordId, std::string>>{{theirs.id, "zorg"}});
  CHECK(at_regie.purge.empty());

  c.Withdraw(g, kT0 + 10 * kMin);
  CaseChanges at_zorg = Recompute(c.state, "zorg", held, partners, kT0 + 11 * kMin);
  CHECK(at_zorg.purged_fragments == std::vector<RecordId>{theirs.id});
  // Its own fragment stays, and its audience keeps zorg until the window closes.
  auto audience = std::find_if(at_zorg.audiences.begin(), at_zorg.audiences.end(),
                               [&](const auto& a) { return a.first == mine.id; });
  REQUIRE(audience != at_zorg.audiences.end());
  CHECK(std::find(audience->second.begin(), audience->second.end(), "zorg") != audience->second.end());
  REQUIRE(at_zorg.next_change.has_value());
  CHECK(*at_zorg.next_change == mine.fragment.time_ms + kLateWriteWindowMs + 1);
}

}  // namespace
}  // namespace kring
