// Unit tests of the roster chain rule and key history (consent/network.h) and the roster's encodings (protocol/roster.h).
#include <doctest/doctest.h>

#include "consent/network.h"
#include "protocol/card.h"
#include "protocol/roster.h"

using namespace kring;

namespace {

struct Net {
  std::vector<NodeIdentity> ids;
  Net() {
    for (const char* org : {"gemeente", "wijkteam", "zorg", "schuld"}) ids.push_back(NodeIdentity::Generate(org, org));
  }
  const NodeIdentity& id(const std::string& org) const {
    for (const auto& i : ids)
      if (i.pub.org == org) return i;
    FAIL("no such org");
    return ids[0];
  }
  RosterMember Member(const NodeIdentity& i) const {
    RosterMember m;
    m.org.v = i.pub.org;
    m.name.v = i.pub.display_name;
    m.sign_pk = i.pub.sign_pk;
    m.box_pk = i.pub.box_pk;
    m.transport_pk = i.pub.transport_pk;
    m.endpoint.v = "tcp://" + i.pub.org + ".example:7400";
    return m;
  }
  // Version 1: all four members, stewards gemeente, wijkteam, zorg; k = 2; unsigned.
  Roster V1() const {
    Roster r;
    r.body.network.v = "Kenis Noord";
    r.body.issued_ms = 1'800'000'000'000;
    r.body.threshold = 2;
    for (const auto& i : ids) r.body.members.v.push_back(Member(i));
    for (const char* s : {"gemeente", "wijkteam", "zorg"}) r.body.stewards.v.push_back({s});
    return r;
  }
  Roster Next(const Roster& cur) const {
    Roster r;
    r.body = cur.body;
    r.body.version = cur.body.version + 1;
    r.body.previous = cur.Id();
    r.body.issued_ms = cur.body.issued_ms + 1000;
    return r;
  }
  void Sign(Roster* r, std::initializer_list<const char*> orgs) const {
    for (const char* o : orgs) REQUIRE(SignRoster(r, id(o)).ok());
  }
  StewardKeys Keys(const Roster& cur) const {
    return [cur](const std::string& org) {
      std::vector<SignPublicKey> ks;
      if (const RosterMember* m = cur.body.Member(org)) ks.push_back(m->sign_pk);
      return ks;
    };
  }
};

Reject ReasonOf(const std::optional<Refusal>& r) {
  REQUIRE(r.has_value());
  return r->reason;
}

}  // namespace

TEST_CASE("roster: version 1 needs every founding steward") {
  Net n;
  Roster v1 = n.V1();
  n.Sign(&v1, {"gemeente", "wijkteam"});
  CHECK(ReasonOf(JudgeRosterAlone(v1, "schuld")) == Reject::kRosterThreshold);
  n.Sign(&v1, {"zorg"});
  CHECK_FALSE(JudgeRosterAlone(v1, "schuld").has_value());
  // A member not listed cannot join with it.
  CHECK(ReasonOf(JudgeRosterAlone(v1, "huis")) == Reject::kNotAddressed);
  // A signature by a member that is no steward spoils version 1.
  Roster extra = v1;
  n.Sign(&extra, {"schuld"});
  CHECK(ReasonOf(JudgeRosterAlone(extra, "gemeente")) == Reject::kRosterNotSteward);
  // A signature over other content does not count.
  Roster changed = v1;
  changed.body.members.v[0].endpoint.v = "tcp://elsewhere:1";
  CHECK(ReasonOf(JudgeRosterAlone(changed, "gemeente")) == Reject::kRosterThreshold);
}

TEST_CASE("roster: the next version needs k signatures of the current stewards") {
  Net n;
  Roster v1 = n.V1();
  n.Sign(&v1, {"gemeente", "wijkteam", "zorg"});
  Roster v2 = n.Next(v1);
  v2.body.members.v.pop_back();  // schuld leaves
  n.Sign(&v2, {"gemeente"});
  CHECK(ReasonOf(JudgeRosterNext(v1, v2, n.Keys(v1))) == Reject::kRosterThreshold);  // k - 1
  n.Sign(&v2, {"zorg"});
  CHECK_FALSE(JudgeRosterNext(v1, v2, n.Keys(v1)).has_value());  // exactly k
  n.Sign(&v2, {"wijkteam"});
  CHECK_FALSE(JudgeRosterNext(v1, v2, n.Keys(v1)).has_value());  // more than k
  // A non-steward's signature (schuld was a member, not a steward) is refused as such.
  Roster odd = n.Next(v1);
  n.Sign(&odd, {"gemeente", "zorg", "schuld"});
  CHECK(ReasonOf(JudgeRosterNext(v1, odd, n.Keys(v1))) == Reject::kRosterNotSteward);
  // A steward's signature made with another key does not verify.
  Roster forged = n.Next(v1);
  n.Sign(&forged, {"gemeente"});
  NodeIdentity impostor = NodeIdentity::Generate("zorg", "zorg");
  REQUIRE(SignRoster(&forged, impostor).ok());
  CHECK(ReasonOf(JudgeRosterNext(v1, forged, n.Keys(v1))) == Reject::kRosterThreshold);
}

TEST_CASE("roster: skips, replays, forks and other networks are refused") {
  Net n;
  Roster v1 = n.V1();
  n.Sign(&v1, {"gemeente", "wijkteam", "zorg"});
  Roster v2 = n.Next(v1);
  n.Sign(&v2, {"gemeente", "zorg"});
  Roster v3 = n.Next(v2);
  n.Sign(&v3, {"gemeente", "zorg"});
  CHECK(ReasonOf(JudgeRosterNext(v1, v3, n.Keys(v1))) == Reject::kRosterSkip);
  CHECK(ReasonOf(JudgeRosterNext(v2, v1, n.Keys(v2))) == Reject::kRosterReplay);
  CHECK(ReasonOf(JudgeRosterNext(v2, v2, n.Keys(v2))) == Reject::kRosterReplay);
  // A second version 2 that does not follow the version held (another history).
  Roster other_v1 = n.V1();
  other_v1.body.issued_ms += 5;
  n.Sign(&other_v1, {"gemeente", "wijkteam", "zorg"});
  Roster fork = n.Next(other_v1);
  n.Sign(&fork, {"gemeente", "zorg"});
  CHECK(ReasonOf(JudgeRosterNext(v1, fork, n.Keys(v1))) == Reject::kRosterFork);
  Roster elsewhere = n.Next(v1);
  elsewhere.body.network.v = "Kenis Zuid";
  n.Sign(&elsewhere, {"gemeente", "zorg"});
  CHECK(ReasonOf(JudgeRosterNext(v1, elsewhere, n.Keys(v1))) == Reject::kRosterFork);
}

TEST_CASE("roster: shape and threshold edges") {
  Net n;
  Roster r = n.V1();
  r.body.threshold = 3;  // = stewards: allowed
  CHECK(CheckRosterShape(r.body).ok());
  r.body.threshold = 4;
  CHECK_FALSE(CheckRosterShape(r.body).ok());
  r.body.threshold = 0;
  CHECK_FALSE(CheckRosterShape(r.body).ok());
  r = n.V1();
  r.body.stewards.v.push_back({"huis"});  // not a member
  CHECK_FALSE(CheckRosterShape(r.body).ok());
  r = n.V1();
  r.body.members.v.push_back(r.body.members.v[0]);  // twice
  CHECK_FALSE(CheckRosterShape(r.body).ok());
  r = n.V1();
  r.body.members.v[1].endpoint.v = "http://x:1";
  CHECK_FALSE(CheckRosterShape(r.body).ok());
  r = n.V1();
  r.body.version = 2;  // but previous is zeros
  CHECK_FALSE(CheckRosterShape(r.body).ok());
}

TEST_CASE("roster: wire and JSON forms round-trip, and a signature survives the JSON form") {
  Net n;
  Roster v1 = n.V1();
  n.Sign(&v1, {"gemeente", "wijkteam", "zorg"});
  Bytes wire = EncodeRoster(v1);
  auto back = DecodeRoster(wire);
  REQUIRE(back.ok());
  CHECK(EncodeRoster(*back) == wire);
  auto json = RosterFromJson(RosterToJson(v1));
  REQUIRE(json.ok());
  CHECK(json->Id() == v1.Id());
  CHECK_FALSE(JudgeRosterAlone(*json, "zorg").has_value());
  CHECK_FALSE(DecodeRoster(Bytes(wire.begin(), wire.end() - 1)).ok());
  CHECK_FALSE(RosterFromJson("{\"kring_roster\":1}").ok());
  CHECK_FALSE(RosterFromJson("not json").ok());
}

TEST_CASE("key history: an emergency rotation by the roster ends the old keys where the new begin") {
  Net n;
  Roster v1 = n.V1();
  Roster v2 = n.Next(v1);
  NodeIdentity fresh = NodeIdentity::Generate("zorg", "zorg");
  for (RosterMember& m : v2.body.members.v)
    if (m.org.v == "zorg") {
      m.sign_pk = fresh.pub.sign_pk;
      m.box_pk = fresh.pub.box_pk;
      m.transport_pk = fresh.pub.transport_pk;
      m.keys_from_ms = v2.body.issued_ms;
    }
  auto known = [&](const std::string& org) -> std::optional<OrgKeys> {
    const RosterMember* m = v1.body.Member(org);
    OrgKeys k;
    k.org = org;
    k.sign_pk = m->sign_pk;
    k.box_pk = m->box_pk;
    k.transport_pk = m->transport_pk;
    return k;
  };
  auto changes = RosterKeyChanges(v2.body, known);
  REQUIRE(changes.size() == 2);
  CHECK(changes[0].sign_pk == n.id("zorg").pub.sign_pk);
  CHECK(changes[0].until_ms == v2.body.issued_ms);
  CHECK(changes[1].sign_pk == fresh.pub.sign_pk);
  CHECK(changes[1].from_ms == v2.body.issued_ms);
  CHECK(KeysAt(changes, v2.body.issued_ms - 1)->sign_pk == n.id("zorg").pub.sign_pk);
  CHECK(KeysAt(changes, v2.body.issued_ms)->sign_pk == fresh.pub.sign_pk);
}

TEST_CASE("key rotation: signed by both keys, from the current keys only") {
  NodeIdentity old_id = NodeIdentity::Generate("wijkteam", "Wijkteam");
  NodeIdentity new_id = NodeIdentity::Generate("wijkteam", "Wijkteam");
  auto rot = SignKeyRotation(old_id, new_id, MakeHlc(1'800'000'000'000ull, 0), 1'800'000'030'000);
  REQUIRE(rot.ok());
  auto back = DecodeKeyRotation(EncodeKeyRotation(*rot));
  REQUIRE(back.ok());
  CHECK(back->Id() == rot->Id());
  OrgKeys current;
  current.org = "wijkteam";
  current.sign_pk = old_id.pub.sign_pk;
  current.box_pk = old_id.pub.box_pk;
  current.transport_pk = old_id.pub.transport_pk;
  bool duplicate = true;
  CHECK_FALSE(JudgeKeyRotation(*rot, current, &duplicate).has_value());
  CHECK_FALSE(duplicate);
  // Applied already: the same statement again is no news.
  OrgKeys after = current;
  after.sign_pk = new_id.pub.sign_pk;
  after.transport_pk = new_id.pub.transport_pk;
  CHECK_FALSE(JudgeKeyRotation(*rot, after, &duplicate).has_value());
  CHECK(duplicate);
  // From keys that are not the current ones (a replay after a later rotation).
  OrgKeys other = current;
  other.sign_pk = NodeIdentity::Generate("wijkteam", "x").pub.sign_pk;
  CHECK(ReasonOf(JudgeKeyRotation(*rot, other, &duplicate)) == Reject::kRotationStale);
  // Tampered: the new key's signature no longer verifies.
  KeyRotation bad = *rot;
  bad.body.switch_ms += 1;
  CHECK(ReasonOf(JudgeKeyRotation(bad, current, &duplicate)) == Reject::kRotationInvalid);
  CHECK_FALSE(SignKeyRotation(old_id, NodeIdentity::Generate("zorg", "z"), 1, 2).ok());
}

TEST_CASE("fingerprint: 8 groups of 4 digits, the same for the same keys, different for others") {
  NodeIdentity a = NodeIdentity::Generate("gemeente", "Gemeente");
  std::string fp = CardFingerprint(a.pub);
  REQUIRE(fp.size() == 39);
  for (size_t i = 0; i < fp.size(); ++i) {
    if (i % 5 == 4) CHECK(fp[i] == ' ');
    else CHECK((fp[i] >= '0' && fp[i] <= '9'));
  }
  PublicIdentity renamed = a.pub;
  renamed.display_name = "Gemeente (nieuw)";
  CHECK(CardFingerprint(renamed) == fp);
  PublicIdentity other = a.pub;
  other.org = "gemeente-b";
  CHECK(CardFingerprint(other) != fp);
}

TEST_CASE("rotation holders: own keys to every partner, a member's to fellow members, a bilateral partner's to itself") {
  const std::vector<NetworkPeer> partners = {{"gemeente", true}, {"zorg", true}, {"schuldhulp", false}, {"wonen", false}};
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  CHECK(sorted(RotationHolders("wijkteam", "wijkteam", partners)) ==
        std::vector<std::string>{"gemeente", "schuldhulp", "wijkteam", "wonen", "zorg"});
  // gemeente is a roster member: fellow members know it; the bilateral partners do not.
  CHECK(sorted(RotationHolders("wijkteam", "gemeente", partners)) == std::vector<std::string>{"gemeente", "wijkteam", "zorg"});
  // schuldhulp is only our bilateral partner: the statement goes back to it alone.
  CHECK(sorted(RotationHolders("wijkteam", "schuldhulp", partners)) == std::vector<std::string>{"schuldhulp", "wijkteam"});
  // An organisation that is no partner of ours: we keep it, nobody else gets it.
  CHECK(RotationHolders("wijkteam", "elders", partners) == std::vector<std::string>{"wijkteam"});
}
