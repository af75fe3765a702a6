// Regression tests of issue 10 on real nodes: records a partner signs with its real keys to rewind, back-date, flood or loop a case.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <chrono>
#include <fstream>
#include <thread>

#include "consent/case_state.h"
#include "examples/cluster.h"
#include "node/store.h"
#include "protocol/records.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

namespace {

// The consent state a node holds for a case, read from its database (also
// while it runs: WAL readers do not disturb it).
kring::CaseState StoredState(LocalCluster& c, const std::string& org, const std::string& case_hex) {
  kring::CaseId id;
  REQUIRE(kring::CaseIdFromHex(case_hex, &id));
  auto store = kring::Store::Open(c.node(org).data_dir + "/kring.db");
  REQUIRE(store.ok());
  auto rows = (*store)->DecisionRecordsOfCase(id);
  REQUIRE(rows.ok());
  std::vector<kring::ControlRecord> records;
  for (const auto& r : *rows)
    if (auto d = kring::DecodeControlRecord(r.record); d.ok()) records.push_back(*d);
  return kring::CaseState::Build(id, records);
}

std::string RegieAt(LocalCluster& c, const std::string& org, const std::string& case_id) {
  auto r = c.Call(org, "GET", "/v1/cases");
  for (auto& e : r.body["cases"])
    if (e["case"] == case_id) return e["regie"];
  return "";
}

kring::NodeIdentity Keys(LocalCluster& c, const std::string& org) {
  auto k = kring::ReadKeyFile(c.node(org).data_dir + "/node.key");
  REQUIRE(k.ok());
  return *k;
}

template <class Body>
kring::Bytes Signed(Body body, const kring::NodeIdentity& by, const std::string& case_hex,
                    std::vector<kring::RecordId> parents, uint64_t millis) {
  REQUIRE(kring::CaseIdFromHex(case_hex, &body.h.case_id));
  body.h.author.v = by.pub.org;
  static uint16_t counter = 0;
  body.h.hlc = kring::MakeHlc(millis, ++counter);
  body.h.parents.v = std::move(parents);
  auto rec = kring::SignControl(std::move(body), by);
  REQUIRE_MESSAGE(rec.ok(), rec.status().ToString());
  return kring::EncodeControlRecord(*rec);
}

uint64_t Now() { return kring::HybridClock::SystemMillis(); }

size_t ConsentCount(LocalCluster& c, const std::string& org, const std::string& case_id, const std::string& status) {
  size_t n = 0;
  auto reply = c.Call(org, "GET", "/v1/cases/" + case_id + "/consents");
  for (auto& e : reply.body["consents"]) n += e["status"] == status;
  return n;
}

size_t CountLines(const std::string& log, const std::string& needle) {
  size_t n = 0;
  for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
  return n;
}

long RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

void StartThree(LocalCluster& c) {
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  c.AddNode("zorg", "Zorg");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Connect("gemeente", "zorg"));
  REQUIRE(c.Connect("wijkteam", "zorg"));
  for (const char* org : {"gemeente", "wijkteam", "zorg"}) REQUIRE(c.Start(org));
}

}  // namespace

TEST_CASE("issue 10 (1): a former regie organisation cannot take regie back or withdraw with a stale causal past") {
  LocalCluster c(KRING_NODE_BINARY);
  StartThree(c);
  std::string case_id = CreateCase(c, "gemeente");
  std::string wijk = Grant(c, "gemeente", case_id, "wijkteam", {"*"});
  std::string zorg_housing = Grant(c, "gemeente", case_id, "zorg", {"housing"});
  REQUIRE(!wijk.empty());
  REQUIRE(!zorg_housing.empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg"}, case_id));
  // Regie goes to the district team, which then grants the care provider mental health.
  auto handover = c.Call("gemeente", "POST", "/v1/cases/" + case_id + "/items",
                         json{{"kind", "regisseur"}, {"data", {{"org", "wijkteam"}, {"person", "Sanne Bos"}}}});
  REQUIRE(handover.status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return RegieAt(c, "wijkteam", case_id) == "wijkteam" &&
                                             RegieAt(c, "zorg", case_id) == "wijkteam"; }, 5000));
  std::string zorg_mental = Grant(c, "wijkteam", case_id, "zorg", {"mental-health"});
  REQUIRE(!zorg_mental.empty());
  REQUIRE(Note(c, "wijkteam", case_id, "mental-health", "na de overdracht").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) == 1; }, 5000));

  // The former regie organisation signs records that follow only what it
  // knew before its own handover.
  kring::NodeIdentity gemeente = Keys(c, "gemeente");
  kring::RecordId before;
  REQUIRE(kring::FromHex(zorg_housing, before));
  kring::RegieChange back;
  back.regie.v = "gemeente";
  back.person.v = "A. Terug";
  kring::ConsentWithdrawal w;
  REQUIRE(kring::FromHex(zorg_housing, w.consent));
  std::vector<kring::Bytes> forged = {Signed(back, gemeente, case_id, {before}, Now()),
                                      Signed(w, gemeente, case_id, {before}, Now())};
  PushAs(c, "gemeente", "wijkteam", forged);
  PushAs(c, "gemeente", "zorg", forged);

  REQUIRE(LocalCluster::WaitFor([&] { return Rejected(c, "wijkteam", "forked_chain") >= 2 &&
                                             Rejected(c, "zorg", "forked_chain") >= 2; }, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a reconciliation round
  for (const char* org : {"gemeente", "wijkteam", "zorg"}) CHECK(RegieAt(c, org, case_id) == "wijkteam");
  // The real regie organisation still acts as one; the care provider keeps
  // both consents and the goal; the former regie organisation got no key.
  CHECK(c.Call("wijkteam", "POST", "/v1/cases/" + case_id + "/items",
               json{{"kind", "regisseur"}, {"data", {{"org", "wijkteam"}, {"person", "Piet Dam"}}}}).status == 201);
  auto consents = c.Call("zorg", "GET", "/v1/cases/" + case_id + "/consents").body["consents"];
  for (auto& e : consents) CHECK(e["status"] == "active");
  CHECK(PlanItems(c, "zorg", case_id) == 1);
  CHECK(PlanItems(c, "gemeente", case_id) == 0);
  CHECK(c.Log("wijkteam").find("gemeente signed two histories of case") != std::string::npos);
  // The regie organisation sees who forked, with the record.
  auto forks = c.Call("wijkteam", "GET", "/v1/cases/" + case_id + "/consents").body["forks"];
  REQUIRE(forks.size() == 1);
  CHECK(forks[0]["org"] == "gemeente");
  CHECK(c.Call("zorg", "GET", "/v1/cases/" + case_id + "/consents").body.count("forks") == 0);
}

TEST_CASE("issue 10 (2): after its consent expired a partner cannot back-date fragments into the time it had it") {
  LocalCluster c(KRING_NODE_BINARY);
  StartThree(c);
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"*"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"housing"}, IsoAfterSeconds(2)).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg"}, case_id));
  bool expired = LocalCluster::WaitFor([&] { return ConsentCount(c, "gemeente", case_id, "expired") == 1; }, 8000);
  REQUIRE_MESSAGE(expired, c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/consents").body.dump());

  kring::NodeIdentity wijkteam = Keys(c, "wijkteam");
  auto gemeente_card = kring::CardFromJson(c.node("gemeente").card);
  auto zorg_card = kring::CardFromJson(c.node("zorg").card);
  REQUIRE(gemeente_card.ok());
  REQUIRE(zorg_card.ok());
  std::vector<kring::Bytes> pushed;
  for (uint64_t ago : {uint64_t{60'000}, uint64_t{3'000}, uint64_t{5} * 365 * 24 * 3600 * 1000}) {
    kring::FragmentDraft d;
    REQUIRE(kring::CaseIdFromHex(case_id, &d.case_id));
    d.kind = "note";
    d.domain = "housing";
    d.hlc = kring::MakeHlc(Now() - ago, 0);
    std::string text = R"({"text":"achteraf gedateerd"})";
    d.body.assign(text.begin(), text.end());
    d.recipients = {*gemeente_card, *zorg_card};
    auto f = kring::SealFragment(d, wijkteam);
    REQUIRE(f.ok());
    pushed.push_back(kring::EncodeFragmentRecord(*f));
  }
  PushAs(c, "wijkteam", "gemeente", pushed);
  PushAs(c, "wijkteam", "zorg", pushed);
  // Within the time it had consent (the one within the window but after
  // the expiry is refused as written without a right; the old ones as late).
  REQUIRE(LocalCluster::WaitFor([&] {
    return Rejected(c, "gemeente", "late_write") + Rejected(c, "gemeente", "forged_record") >= 3 &&
           Rejected(c, "zorg", "late_write") + Rejected(c, "zorg", "forged_record") >= 3;
  }, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(PlanItems(c, "gemeente", case_id) == 0);
  CHECK(PlanItems(c, "zorg", case_id) == 0);
  CHECK(HeldFragments(c, "gemeente") == 0);
}

TEST_CASE("issue 10 (3): records waiting for parents that never arrive are neither stored nor forwarded") {
  LocalCluster c(KRING_NODE_BINARY);
  StartThree(c);
  std::string case_id = CreateCase(c, "wijkteam");
  REQUIRE(!Grant(c, "wijkteam", case_id, "gemeente", {"*"}).empty());
  REQUIRE(!Grant(c, "wijkteam", case_id, "zorg", {"*"}).empty());
  REQUIRE(AwaitCase(c, "wijkteam", {"gemeente", "zorg"}, case_id));
  const int before_gemeente = HeldRecordsOfType(c, "gemeente", -1);
  const int before_zorg = HeldRecordsOfType(c, "zorg", -1);

  kring::NodeIdentity wijkteam = Keys(c, "wijkteam");
  std::vector<kring::Bytes> orphans;
  for (int i = 0; i < 2048; ++i) {
    kring::RecordId invented{};
    invented[0] = static_cast<uint8_t>(i);
    invented[1] = static_cast<uint8_t>(i >> 8);
    invented[2] = 0xEE;
    kring::ConsentGrant g;
    g.grantee.v = "zorg";
    g.domains.v = {{"*"}};
    g.purpose.v = "x";
    g.basis.v = "x";
    g.given_by.v = "x";
    g.evidence_reference.v = "x";
    orphans.push_back(Signed(g, wijkteam, case_id, {invented}, Now()));
  }
  std::vector<std::vector<kring::Bytes>> orphan_pushes;
  for (size_t i = 0; i < orphans.size(); i += 512)
    orphan_pushes.emplace_back(orphans.begin() + i, orphans.begin() + std::min(orphans.size(), i + 512));
  PushesAs(c, "wijkteam", "gemeente", orphan_pushes);
  REQUIRE(LocalCluster::WaitFor([&] { return Rejected(c, "gemeente", "waiting_cap") > 0; }, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // reconciliation rounds
  CHECK(HeldRecordsOfType(c, "gemeente", -1) == before_gemeente);
  CHECK(HeldRecordsOfType(c, "zorg", -1) == before_zorg);
  MESSAGE("2048 records with invented parents: " << Rejected(c, "gemeente", "waiting_cap")
                                                 << " refused past the buffer, none stored or forwarded");
}

TEST_CASE("issue 10 (4): a partner flooding a case with valid consents stops at the caps, and other cases stay fast") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  // The flooding partner holds regie of a case it shares with the municipality.
  std::string flooded = CreateCase(c, "wijkteam");
  REQUIRE(!Grant(c, "wijkteam", flooded, "gemeente", {"*"}).empty());
  REQUIRE(AwaitCase(c, "wijkteam", {"gemeente"}, flooded));
  // An unrelated case at the municipality, read throughout.
  std::string other = CreateCase(c, "gemeente");
  REQUIRE(Note(c, "gemeente", other, "finances", "los van de vloed").status == 201);

  kring::NodeIdentity wijkteam = Keys(c, "wijkteam");
  kring::CaseState state = StoredState(c, "wijkteam", flooded);
  std::vector<kring::RecordId> parents = state.Heads();
  uint64_t t = Now();
  std::vector<std::vector<kring::Bytes>> pushes;
  for (int p = 0; p < 6; ++p) {
    std::vector<kring::Bytes> push;
    for (int i = 0; i < 200; ++i) {
      kring::ConsentGrant g;
      g.grantee.v = "org-" + std::to_string(p * 200 + i);
      g.domains.v = {{"finances"}};
      g.purpose.v = "vloed";
      g.basis.v = "geen";
      g.given_by.v = "niemand";
      g.evidence_reference.v = "x";
      kring::Bytes b = Signed(g, wijkteam, flooded, parents, ++t);
      auto d = kring::DecodeControlRecord(b);
      REQUIRE(d.ok());
      parents = {d->Id()};  // each follows the previous: a valid chain
      push.push_back(std::move(b));
    }
    pushes.push_back(std::move(push));
  }
  std::atomic<bool> flooding{true};
  std::vector<double> reads_ms;
  std::thread reader([&] {
    while (flooding) {
      auto start = std::chrono::steady_clock::now();
      auto r = c.Call("gemeente", "GET", "/v1/cases/" + other + "/plan");
      reads_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      CHECK(r.status == 200);
    }
  });
  auto start = std::chrono::steady_clock::now();
  PushesAs(c, "wijkteam", "gemeente", pushes);
  // The 256th grant after the genesis' own... each author writes at most
  // 256 records; the first past the cap is refused, and every later one
  // follows a refused record: it waits (a bounded buffer) and is refused.
  bool capped = LocalCluster::WaitFor([&] {
    return Rejected(c, "gemeente", "author_cap") == 1 &&
           Rejected(c, "gemeente", "waiting_cap") >= 1200 - 256 - 1 - 256;
  }, 20000);
  double flood_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  flooding = false;
  reader.join();
  CHECK(capped);
  kring::CaseState after = StoredState(c, "gemeente", flooded);
  CHECK(after.size() <= kring::kMaxDecisionRecordsPerAuthor + 1);  // the genesis is the creator's too
  std::sort(reads_ms.begin(), reads_ms.end());
  double p99 = reads_ms.empty() ? 0 : reads_ms[std::min(reads_ms.size() - 1, reads_ms.size() * 99 / 100)];
  MESSAGE("1,200 valid grants in 6 pushes: " << after.size() << " admitted (author cap "
          << kring::kMaxDecisionRecordsPerAuthor << "), " << Rejected(c, "gemeente", "author_cap")
          << " refused at the cap and " << Rejected(c, "gemeente", "waiting_cap")
          << " past the waiting buffer; all handled in " << flood_ms << " ms (" << flood_ms / 6 << " ms a push); RSS "
          << RssKb(c.node("gemeente").pid) / 1024 << " MB; " << reads_ms.size()
          << " plan reads of another case meanwhile, p99 " << p99 << " ms");
  CHECK(c.Running("gemeente"));
}

TEST_CASE("issue 10 (5): a flood of key grants for a fragment keeps one per author, and plan reads stay fast") {
  LocalCluster c(KRING_NODE_BINARY);
  StartThree(c);
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"*"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"*"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg"}, case_id));
  std::vector<std::string> versions;
  for (int i = 0; i < 10; ++i) {
    auto r = Note(c, "wijkteam", case_id, "finances", "notitie " + std::to_string(i));
    REQUIRE(r.status == 201);
    versions.push_back(r.body["version"]);
  }
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) == 10; }, 5000));
  const int grants_before = HeldRecordsOfType(c, "zorg", static_cast<int>(kring::RecordType::kKeyGrant));

  kring::NodeIdentity wijkteam = Keys(c, "wijkteam");
  kring::CaseState state = StoredState(c, "wijkteam", case_id);
  std::vector<kring::Bytes> junk;
  uint64_t t = Now();
  for (const std::string& v : versions)
    for (int i = 0; i < 200; ++i) {
      kring::KeyGrant g;
      REQUIRE(kring::FromHex(v, g.fragment));
      g.grantee.v = "zorg";
      g.sealed_key[0] = static_cast<uint8_t>(i);
      junk.push_back(Signed(g, wijkteam, case_id, state.Heads(), ++t));
    }
  std::vector<std::vector<kring::Bytes>> junk_pushes;
  for (size_t i = 0; i < junk.size(); i += 500)
    junk_pushes.emplace_back(junk.begin() + i, junk.begin() + std::min(junk.size(), i + 500));
  PushesAs(c, "wijkteam", "zorg", junk_pushes);
  REQUIRE(LocalCluster::WaitFor([&] { return Rejected(c, "zorg", "key_grant_cap") >= 1990 - grants_before; }, 10000));
  const int grants_after = HeldRecordsOfType(c, "zorg", static_cast<int>(kring::RecordType::kKeyGrant));
  CHECK(grants_after <= 10);
  auto start = std::chrono::steady_clock::now();
  CHECK(PlanItems(c, "zorg", case_id) == 10);
  double read_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("2,000 junk key grants on 10 fragments: " << grants_after << " kept, "
          << Rejected(c, "zorg", "key_grant_cap") << " refused; a plan read then took " << read_ms << " ms");
}

TEST_CASE("issue 10 (6): after a withdrawal sender and receiver agree on what the withdrawn node holds: no endless pushing") {
  LocalCluster c(KRING_NODE_BINARY);
  StartThree(c);
  std::string case_id = CreateCase(c, "gemeente");
  std::string wijk = Grant(c, "gemeente", case_id, "wijkteam", {"*"});
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"*"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg"}, case_id));
  REQUIRE(Note(c, "wijkteam", case_id, "finances", "van het wijkteam").status == 201);
  REQUIRE(Note(c, "gemeente", case_id, "housing", "van de gemeente").status == 201);
  REQUIRE(Note(c, "zorg", case_id, "housing", "van de zorg").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 3; }, 5000));
  REQUIRE(Withdraw(c, "gemeente", case_id, wijk).status == 200);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // settle
  std::map<std::string, size_t> before;
  for (const char* org : {"gemeente", "wijkteam", "zorg"}) before[org] = c.Log(org).size();
  std::this_thread::sleep_for(std::chrono::milliseconds(6000));  // six reconciliation rounds
  size_t info_lines = 0;
  for (const char* org : {"gemeente", "wijkteam", "zorg"}) {
    std::string tail = c.Log(org).substr(before[org]);
    CHECK_MESSAGE(CountLines(tail, "missed") == 0, org << " kept reconciling: " << tail.substr(0, 400));
    info_lines += CountLines(tail, " INFO ");
  }
  MESSAGE("steady state after a withdrawal: " << info_lines << " INFO line(s) in 6 s on three nodes");
  CHECK(info_lines == 0);
}
