// Multi-process consent tests: four organisations' nodes on loopback, the citizen's consent deciding what each holds.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include <zmq.hpp>

#include "crypto/identity.h"
#include "examples/cluster.h"
#include "protocol/messages.h"
#include "protocol/card.h"
#include "protocol/records.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

namespace {

const char* const kOrgs[] = {"gemeente", "wijkteam", "zorg", "woningcorporatie"};

// Four partner nodes, every pair connected, all running.
void StartNetwork(LocalCluster& c) {
  c.AddNode("gemeente", "Gemeente Deventer");
  c.AddNode("wijkteam", "Sociaal wijkteam");
  c.AddNode("zorg", "Zorgaanbieder De Linde");
  c.AddNode("woningcorporatie", "Woningcorporatie Ieder1");
  for (size_t i = 0; i < 4; ++i)
    for (size_t j = i + 1; j < 4; ++j) REQUIRE(c.Connect(kOrgs[i], kOrgs[j]));
  for (const char* org : kOrgs) REQUIRE(c.Start(org));
}

std::string ConsentStatus(LocalCluster& c, const std::string& org, const std::string& case_id, const std::string& consent) {
  auto r = c.Call(org, "GET", "/v1/cases/" + case_id + "/consents");
  if (r.status != 200) return "";
  for (auto& e : r.body["consents"])
    if (e["consent"] == consent) return e["status"];
  return "";
}

}  // namespace

TEST_CASE("a partner cannot write plan items outside its consent, not even by signing them itself") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"housing"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam"}, case_id));
  CHECK(Note(c, "wijkteam", case_id, "finances", "via de API").status == 403);
  c.Stop("wijkteam");

  auto me = kring::ReadKeyFile(c.node("wijkteam").data_dir + "/node.key");
  REQUIRE(me.ok());
  kring::PublicIdentity gemeente;
  auto card = kring::CardFromJson(c.node("gemeente").card);
  REQUIRE(card.ok());
  kring::FragmentDraft d;
  REQUIRE(kring::CaseIdFromHex(case_id, &d.case_id));
  d.kind = "note";
  d.domain = "finances";
  d.hlc = kring::MakeHlc(kring::HybridClock::SystemMillis(), 0);
  std::string text = R"({"text":"ingeschoven"})";
  d.body.assign(text.begin(), text.end());
  d.recipients = {*card};
  auto f = kring::SealFragment(d, *me);
  REQUIRE(f.ok());
  PushAs(c, "wijkteam", "gemeente", {kring::EncodeFragmentRecord(*f)});
  CHECK(LocalCluster::WaitFor([&] { return c.Log("gemeente").find("had no right to write") != std::string::npos; }, 5000));
  CHECK(PlanItems(c, "gemeente", case_id) == 0);
  CHECK(HeldFragments(c, "gemeente") == 0);
}

TEST_CASE("the housing corporation with consent for housing only holds and reads housing items and nothing else") {
  LocalCluster c(KRING_NODE_BINARY);
  StartNetwork(c);
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"*"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"daily-activities", "physical-health"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "woningcorporatie", {"housing"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg", "woningcorporatie"}, case_id));
  REQUIRE(Note(c, "gemeente", case_id, "housing", "huurachterstand besproken").status == 201);
  REQUIRE(Note(c, "gemeente", case_id, "finances", "schuldhulptraject gestart").status == 201);
  REQUIRE(Note(c, "wijkteam", case_id, "mental-health", "zorgen over somberheid").status == 201);
  REQUIRE(Note(c, "zorg", case_id, "daily-activities", "dagbesteding dinsdag").status == 201);
  REQUIRE(Note(c, "wijkteam", case_id, "housing", "woningaanpassing aangevraagd").status == 201);

  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 5; }, 5000));
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "woningcorporatie", case_id) == 2; }, 5000));
  CHECK(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) == 1; }, 5000));
  CHECK(PlanItems(c, "gemeente", case_id) == 5);  // the regie organisation reads everything
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // several reconciliation rounds
  CHECK(HeldFragmentDomains(c, "woningcorporatie") == std::vector<std::string>{"housing", "housing"});
  CHECK_FALSE(DatabaseContains(c, "woningcorporatie", "schuldhulptraject"));
  json corporation_plan = Plan(c, "woningcorporatie", case_id);
  for (auto& item : corporation_plan["items"]) CHECK(item["domain"] == "housing");
  // "That" information: it sees who is involved.
  auto cases = c.Call("woningcorporatie", "GET", "/v1/cases");
  REQUIRE(cases.body["cases"].size() == 1);
  CHECK(cases.body["cases"][0]["regie"] == "gemeente");
  CHECK(cases.body["cases"][0]["involved"].size() == 4);
}

TEST_CASE("after a withdrawal the withdrawn organisation purges what it held in scope within two seconds and gets nothing new") {
  LocalCluster c(KRING_NODE_BINARY);
  StartNetwork(c);
  std::string case_id = CreateCase(c, "gemeente");
  std::string housing = Grant(c, "gemeente", case_id, "woningcorporatie", {"housing"});
  REQUIRE(!housing.empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"*"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "woningcorporatie"}, case_id));
  REQUIRE(Note(c, "gemeente", case_id, "housing", "eerste huisbezoek").status == 201);
  REQUIRE(Note(c, "wijkteam", case_id, "housing", "tweede huisbezoek").status == 201);
  REQUIRE(Note(c, "woningcorporatie", case_id, "housing", "reparatie ingepland").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return HeldFragments(c, "woningcorporatie") == 3; }, 5000));

  auto w = Withdraw(c, "gemeente", case_id, housing);
  REQUIRE(w.status == 200);
  auto t0 = std::chrono::steady_clock::now();
  bool purged = LocalCluster::WaitFor([&] { return HeldFragments(c, "woningcorporatie") == 1; }, 2000);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(purged);
  MESSAGE("purge after withdrawal took " << took << " ms");
  // What it wrote itself stays; what others wrote is gone, from the files too.
  CHECK_FALSE(DatabaseContains(c, "woningcorporatie", "eerste huisbezoek"));
  CHECK(ConsentStatus(c, "gemeente", case_id, housing) == "withdrawn");
  CHECK(LocalCluster::WaitFor([&] { return ConsentStatus(c, "woningcorporatie", case_id, housing) == "withdrawn"; }, 2000));
  // The purge is in its access log.
  auto log = c.Call("woningcorporatie", "GET", "/v1/cases/" + case_id + "/access-log");
  bool logged = false;
  for (auto& e : log.body["entries"]) logged = logged || (e["action"] == "purge" && e["items"].size() == 2);
  CHECK(logged);

  // A fragment written afterwards never reaches it.
  REQUIRE(Note(c, "gemeente", case_id, "housing", "na intrekking geschreven").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 4; }, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  CHECK(HeldFragments(c, "woningcorporatie") == 1);
  CHECK_FALSE(DatabaseContains(c, "woningcorporatie", "na intrekking geschreven"));
  auto metrics = c.Raw("gemeente", "GET", "/metrics", "", {});
  CHECK(metrics.raw.find("kring_consent_withdrawals_processed_total 1") != std::string::npos);
}

TEST_CASE("a node offline during the withdrawal purges when it reconnects and meanwhile receives nothing new") {
  LocalCluster c(KRING_NODE_BINARY);
  StartNetwork(c);
  std::string case_id = CreateCase(c, "gemeente");
  std::string housing = Grant(c, "gemeente", case_id, "woningcorporatie", {"housing"});
  REQUIRE(Note(c, "gemeente", case_id, "housing", "voor de corporatie").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return HeldFragments(c, "woningcorporatie") == 1; }, 5000));
  c.Stop("woningcorporatie");
  REQUIRE(Withdraw(c, "gemeente", case_id, housing).status == 200);
  REQUIRE(Note(c, "gemeente", case_id, "housing", "geschreven terwijl de corporatie offline was").status == 201);
  CHECK(HeldFragments(c, "woningcorporatie") == 1);  // still its old copy, on disk
  REQUIRE(c.Start("woningcorporatie"));
  CHECK(LocalCluster::WaitFor([&] { return HeldFragments(c, "woningcorporatie") == 0; }, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  CHECK(HeldFragments(c, "woningcorporatie") == 0);
  CHECK_FALSE(DatabaseContains(c, "woningcorporatie", "offline was"));
}

TEST_CASE("a late grant gives the new organisation the history in scope") {
  LocalCluster c(KRING_NODE_BINARY);
  StartNetwork(c);
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"*"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam"}, case_id));
  REQUIRE(Note(c, "gemeente", case_id, "physical-health", "val in de badkamer").status == 201);
  REQUIRE(Note(c, "wijkteam", case_id, "physical-health", "fysiotherapie geadviseerd").status == 201);
  REQUIRE(Note(c, "wijkteam", case_id, "finances", "niet voor de zorg").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "gemeente", case_id) == 3; }, 5000));
  CHECK(HeldFragments(c, "zorg") == 0);
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"physical-health"}).empty());
  CHECK(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) == 2; }, 5000));
  json zorg_plan = Plan(c, "zorg", case_id);
  for (auto& item : zorg_plan["items"]) CHECK(item["domain"] == "physical-health");
  CHECK(HeldFragmentDomains(c, "zorg") == std::vector<std::string>{"physical-health", "physical-health"});
  CHECK(HeldRecordsOfType(c, "zorg", 6) >= 2);  // the re-sealed keys (author and regie may both re-seal)

  // Withdrawn again: the history and its keys go, and do not come back.
  std::string zorg_consent;
  json consents = c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/consents").body["consents"];
  for (auto& e : consents)
    if (e["grantee"] == "zorg") zorg_consent = e["consent"];
  REQUIRE(Withdraw(c, "gemeente", case_id, zorg_consent).status == 200);
  CHECK(LocalCluster::WaitFor([&] { return HeldFragments(c, "zorg") == 0 && HeldRecordsOfType(c, "zorg", 6) == 0; }, 3000));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(HeldFragments(c, "zorg") == 0);
  CHECK(HeldRecordsOfType(c, "zorg", 6) == 0);
}

TEST_CASE("an expired consent ends access without anyone acting") {
  LocalCluster c(KRING_NODE_BINARY);
  StartNetwork(c);
  std::string case_id = CreateCase(c, "gemeente");
  std::string consent = Grant(c, "gemeente", case_id, "zorg", {"*"}, IsoAfterSeconds(3));
  REQUIRE(!consent.empty());
  REQUIRE(Note(c, "gemeente", case_id, "basic-adl", "hulp bij wassen").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) == 1; }, 3000));
  CHECK(ConsentStatus(c, "zorg", case_id, consent) == "active");
  CHECK(LocalCluster::WaitFor([&] { return HeldFragments(c, "zorg") == 0; }, 6000));
  CHECK(ConsentStatus(c, "gemeente", case_id, consent) == "expired");
  REQUIRE(Note(c, "gemeente", case_id, "basic-adl", "na afloop").status == 201);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  CHECK(HeldFragments(c, "zorg") == 0);
}

TEST_CASE("a consent that expires while the grantee's node is stopped is enforced before that node serves anything") {
  LocalCluster c(KRING_NODE_BINARY);
  StartNetwork(c);
  std::string case_id = CreateCase(c, "gemeente");
  std::string consent = Grant(c, "gemeente", case_id, "zorg", {"*"}, IsoAfterSeconds(3));
  REQUIRE(!consent.empty());
  REQUIRE(Note(c, "gemeente", case_id, "basic-adl", "hulp bij wassen").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return HeldFragments(c, "zorg") == 1; }, 3000));
  c.Stop("zorg");
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  // At start-up the stored schedule says the case is due: it is decided
  // afresh before the API answers, so the first look finds nothing.
  REQUIRE(c.Start("zorg"));
  CHECK(HeldFragments(c, "zorg") == 0);
  CHECK(PlanItems(c, "zorg", case_id) == 0);
}

TEST_CASE("a non-regie organisation cannot record or withdraw consent, for itself or others") {
  LocalCluster c(KRING_NODE_BINARY);
  StartNetwork(c);
  std::string case_id = CreateCase(c, "gemeente");
  std::string wijk = Grant(c, "gemeente", case_id, "wijkteam", {"*"});
  std::string zorg = Grant(c, "gemeente", case_id, "zorg", {"daily-activities"});
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg"}, case_id));
  auto self = GrantReply(c, "wijkteam", case_id, "zorg", {"*"});
  CHECK(self.status == 403);
  CHECK(self.body["error"] == "forbidden");
  CHECK(GrantReply(c, "gemeente", case_id, "gemeente", {"*"}).status == 403);  // nobody grants itself
  CHECK(Withdraw(c, "wijkteam", case_id, zorg).status == 403);
  // A grantee may decline its own consent.
  CHECK(Withdraw(c, "wijkteam", case_id, wijk).status == 200);
  CHECK(LocalCluster::WaitFor([&] { return ConsentStatus(c, "gemeente", case_id, wijk) == "withdrawn"; }, 5000));
}

TEST_CASE("peers reject a consent record forged by a partner that does not hold regie") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  std::string case_id = CreateCase(c, "gemeente");
  std::string wijk = Grant(c, "gemeente", case_id, "wijkteam", {"housing"});
  REQUIRE(LocalCluster::WaitFor([&] { return ConsentStatus(c, "wijkteam", case_id, wijk) == "active"; }, 5000));
  c.Stop("wijkteam");

  // The district team's own keys, used by someone who bypasses its API: a
  // consent for everything, signed properly, pushed straight to the municipality.
  auto me = kring::ReadKeyFile(c.node("wijkteam").data_dir + "/node.key");
  REQUIRE(me.ok());
  kring::CaseId cid;
  REQUIRE(kring::CaseIdFromHex(case_id, &cid));
  kring::RecordId parent;
  REQUIRE(kring::FromHex(wijk, parent));
  kring::ConsentGrant forged;
  forged.h.case_id = cid;
  forged.h.author.v = "wijkteam";
  forged.h.hlc = kring::MakeHlc(kring::HybridClock::SystemMillis(), 0);
  forged.h.parents.v = {parent};
  forged.grantee.v = "wijkteam-vriend";
  forged.domains.v = {{"*"}};
  forged.purpose.v = "alles";
  forged.basis.v = "geen";
  forged.valid_from_ms = 0;
  forged.given_by.v = "niemand";
  forged.evidence_reference.v = "vervalst";
  auto rec = kring::SignControl(forged, *me);
  REQUIRE(rec.ok());
  PushAs(c, "wijkteam", "gemeente", {kring::EncodeControlRecord(*rec)});

  CHECK(LocalCluster::WaitFor([&] { return c.Log("gemeente").find("only the regie organisation (gemeente) may record consent, not wijkteam") != std::string::npos; }, 5000));
  auto consents = c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/consents").body["consents"];
  CHECK(consents.size() == 1);
  auto metrics = c.Raw("gemeente", "GET", "/metrics", "", {});
  CHECK(metrics.raw.find("kring_messages_rejected_total{reason=\"forged_record\"} 1") != std::string::npos);
  CHECK(c.Running("gemeente"));
}

TEST_CASE("a read at the care provider shows in the regie organisation's access log within two seconds") {
  LocalCluster c(KRING_NODE_BINARY);
  StartNetwork(c);
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"daily-activities"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"*"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"zorg", "wijkteam"}, case_id));
  REQUIRE(Note(c, "gemeente", case_id, "daily-activities", "dagbesteding").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) == 1; }, 5000));

  auto read = c.Call("zorg", "GET", "/v1/cases/" + case_id + "/plan", std::nullopt,
                     {{"X-Kring-Actor", "m.bakker"}, {"X-Kring-Actor-Name", "M. Bakker"}, {"X-Kring-Role", "begeleider"}});
  REQUIRE(read.status == 200);
  auto t0 = std::chrono::steady_clock::now();
  json seen;
  bool arrived = LocalCluster::WaitFor([&] {
    auto log = c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/access-log");
    for (auto& e : log.body["entries"])
      if (e["organisation"] == "zorg" && e["actor"]["id"] == "m.bakker") {
        seen = e;
        return true;
      }
    return false;
  }, 2000);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(arrived);
  MESSAGE("access entry reached the regie organisation after " << took << " ms");
  CHECK(seen["action"] == "read");
  CHECK(seen["outcome"] == "success");
  CHECK(seen["actor"]["name"] == "M. Bakker");
  CHECK(seen["actor"]["role"] == "begeleider");
  CHECK(seen["client"] == "demo");
  CHECK(seen["time"].get<std::string>().size() == 24);
  CHECK(seen["items"].size() == 1);
  CHECK(seen["consent"].get<std::string>().size() == 64);

  // Other organisations see only their own entries.
  auto own = c.Call("wijkteam", "GET", "/v1/cases/" + case_id + "/access-log");
  for (auto& e : own.body["entries"]) CHECK(e["organisation"] == "wijkteam");
  // The care provider's own log verifies; altering one entry breaks it and names it.
  c.Stop("zorg");
  auto ok = c.Cli({"audit", "verify", "--data", c.node("zorg").data_dir});
  CHECK(ok.exit_code == 0);
  auto tamper = kring::RunCommand({"/usr/bin/sqlite3", c.node("zorg").data_dir + "/kring.db",
                                   "DROP TRIGGER access_log_no_update; UPDATE access_log SET actor_role='directeur' "
                                   "WHERE actor_id='m.bakker';"});
  REQUIRE(tamper.exit_code == 0);
  auto bad = c.Cli({"audit", "verify", "--data", c.node("zorg").data_dir});
  CHECK(bad.exit_code != 0);
  CHECK(bad.out.find("BROKEN at entry") != std::string::npos);
}
