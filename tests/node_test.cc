// Multi-process tests: real kring-node processes on loopback, driven through their CLI and HTTP API.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>
#include <sstream>
#include <sys/stat.h>

#include "examples/cluster.h"
#include "node/node.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

namespace {

// Opens a case at `regie` and gives each of `grantees` consent for every domain.
std::string SharedCase(LocalCluster& c, const std::string& regie, const std::vector<std::string>& grantees) {
  std::string case_id = CreateCase(c, regie);
  REQUIRE(!case_id.empty());
  for (const std::string& g : grantees) REQUIRE(!Grant(c, regie, case_id, g, {"*"}).empty());
  return case_id;
}

int64_t Held(LocalCluster& c, const std::string& org) { return static_cast<int64_t>(HeldFragments(c, org)); }

}  // namespace

TEST_CASE("a plan item written at one node is verified, stored and readable at an organisation with consent") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  std::string case_id = SharedCase(c, "gemeente", {"wijkteam"});
  auto w = Note(c, "gemeente", case_id, "housing", "eerste gesprek gepland");
  REQUIRE(w.status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 5000));
  json item = Plan(c, "wijkteam", case_id)["items"][0];
  CHECK(item["version"] == w.body["version"]);
  CHECK(item["item"] == w.body["item"]);
  CHECK(item["author"] == "gemeente");
  CHECK(item["data"]["text"] == "eerste gesprek gepland");
  auto cases = c.Call("wijkteam", "GET", "/v1/cases");
  REQUIRE(cases.status == 200);
  REQUIRE(cases.body["cases"].size() == 1);
  CHECK(cases.body["cases"][0]["case"] == case_id);
  CHECK(cases.body["cases"][0]["regie"] == "gemeente");
  CHECK_FALSE(cases.body["cases"][0].contains("label"));  // the label stays on the creating node
}

TEST_CASE("a non-partner's CURVE key is refused and logged while partners keep syncing") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  c.AddNode("indringer", "Indringer");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  // The intruder trusts the municipality, but the municipality does not trust it.
  auto add = c.Cli({"peer", "add", "--data", c.node("indringer").data_dir, "--card", "-", "--endpoint",
                    c.node("gemeente").listen()}, c.node("gemeente").card);
  REQUIRE(add.exit_code == 0);
  for (const char* org : {"gemeente", "wijkteam", "indringer"}) REQUIRE(c.Start(org));
  CHECK(LocalCluster::WaitFor([&] { return c.Log("gemeente").find("refused connection") != std::string::npos; }, 5000));
  CHECK(c.Log("gemeente").find("is not a partner") != std::string::npos);
  std::string case_id = SharedCase(c, "gemeente", {"wijkteam"});
  REQUIRE(Note(c, "gemeente", case_id, "housing", "alleen voor het wijkteam").status == 201);
  CHECK(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 5000));
  // Connected: gemeente's own connection to wijkteam completed its handshake,
  // which may come a moment after wijkteam's reached gemeente.
  CHECK(LocalCluster::WaitFor([&] { return Connected(c, "gemeente", "wijkteam"); }, 5000));
  CHECK_FALSE(Connected(c, "indringer", "gemeente"));
  CHECK(Held(c, "indringer") == 0);
  CHECK(c.Running("gemeente"));
}

TEST_CASE("items written while the receiver is down arrive after it restarts") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("zorg", "Zorgaanbieder");
  REQUIRE(c.Connect("gemeente", "zorg"));
  REQUIRE(c.Start("gemeente"));
  std::string case_id = SharedCase(c, "gemeente", {"zorg"});
  for (int i = 0; i < 50; ++i) REQUIRE(Note(c, "gemeente", case_id, "housing", "bericht " + std::to_string(i)).status == 201);
  REQUIRE(c.Start("zorg"));
  CHECK(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) == 50; }, 10000));
  // And the other way round: the writer down, the reader up, then the writer back.
  c.Stop("zorg");
  for (int i = 0; i < 5; ++i) REQUIRE(Note(c, "gemeente", case_id, "housing", "later " + std::to_string(i)).status == 201);
  c.Stop("gemeente");
  REQUIRE(c.Start("zorg"));
  REQUIRE(c.Start("gemeente"));
  CHECK(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) == 55; }, 10000));
  CHECK(c.Log("zorg").find("stored") != std::string::npos);
}

TEST_CASE("a kill -9 of the writer right after an acknowledged write loses nothing") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  std::string case_id = SharedCase(c, "gemeente", {"wijkteam"});
  std::set<std::string> versions;
  for (int i = 0; i < 20; ++i) {
    auto w = Note(c, "gemeente", case_id, "housing", "afspraak " + std::to_string(i));
    REQUIRE(w.status == 201);
    versions.insert(w.body["version"].get<std::string>());
  }
  c.Kill("gemeente");
  REQUIRE(c.Start("gemeente"));
  json plan = Plan(c, "gemeente", case_id);
  REQUIRE(plan["items"].size() == versions.size());
  for (auto& item : plan["items"]) CHECK(versions.count(item["version"].get<std::string>()) == 1);
  // The acknowledged writes also reach the recipient, which was down all along.
  REQUIRE(c.Start("wijkteam"));
  CHECK(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == versions.size(); }, 10000));
}

TEST_CASE("neither node's database files hold plaintext of a plan item") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  std::string case_id = SharedCase(c, "gemeente", {"wijkteam"});
  const std::string secret = "Vertrouwelijk: zorgen over huiselijk geweld";
  REQUIRE(Note(c, "gemeente", case_id, "domestic-relations", secret).status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 5000));
  CHECK_FALSE(DatabaseContains(c, "gemeente", secret));
  CHECK_FALSE(DatabaseContains(c, "wijkteam", secret));
  c.Stop("gemeente");
  c.Stop("wijkteam");  // after a checkpoint too
  CHECK_FALSE(DatabaseContains(c, "gemeente", secret));
  CHECK_FALSE(DatabaseContains(c, "wijkteam", secret));
}

TEST_CASE("an organisation whose consent does not cover a domain receives nothing of it, not even ciphertext") {
  LocalCluster c(KRING_NODE_BINARY);
  for (const char* org : {"gemeente", "wijkteam", "zorg"}) c.AddNode(org, org);
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Connect("gemeente", "zorg"));
  REQUIRE(c.Connect("wijkteam", "zorg"));
  for (const char* org : {"gemeente", "wijkteam", "zorg"}) REQUIRE(c.Start(org));
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"*"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"daily-activities"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg"}, case_id));
  REQUIRE(Note(c, "gemeente", case_id, "finances", "niet voor de zorgaanbieder").status == 201);
  REQUIRE(Note(c, "wijkteam", case_id, "daily-activities", "voor allebei").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 2 && PlanItems(c, "zorg", case_id) == 1; }, 5000));
  // Several reconciliation rounds later it still holds just the one.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(HeldFragmentDomains(c, "zorg") == std::vector<std::string>{"daily-activities"});
  CHECK_FALSE(DatabaseContains(c, "zorg", "niet voor de zorgaanbieder"));
}

TEST_CASE("a removed partner is cut off at once, also on a live connection, without a restart") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("woningcorporatie", "Woningcorporatie");
  REQUIRE(c.Connect("gemeente", "woningcorporatie"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("woningcorporatie"));
  REQUIRE(LocalCluster::WaitFor([&] { return Connected(c, "woningcorporatie", "gemeente"); }, 5000));
  std::string case_id = SharedCase(c, "gemeente", {"woningcorporatie"});
  REQUIRE(Note(c, "gemeente", case_id, "housing", "voor de corporatie").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return Held(c, "woningcorporatie") == 1; }, 5000));

  // The corporation's IT team removes the municipality while both run.
  auto rm = c.Cli({"peer", "remove", "--data", c.node("woningcorporatie").data_dir, "--org", "gemeente"});
  REQUIRE(rm.exit_code == 0);
  // The municipality still trusts the corporation and keeps sending.
  REQUIRE(Note(c, "gemeente", case_id, "housing", "na verwijdering").status == 201);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(Held(c, "woningcorporatie") == 1);
  auto peers = c.Call("woningcorporatie", "GET", "/v1/health").body["peers"];
  CHECK(peers.empty());
  CHECK(c.Log("woningcorporatie").find("partner gemeente removed") != std::string::npos);

  // Adding it back is picked up without a restart too, and sync resumes.
  auto add = c.Cli({"peer", "add", "--data", c.node("woningcorporatie").data_dir, "--card", "-", "--endpoint",
                    c.node("gemeente").listen()}, c.node("gemeente").card);
  REQUIRE(add.exit_code == 0);
  CHECK(LocalCluster::WaitFor([&] { return Held(c, "woningcorporatie") == 2; }, 10000));
}

TEST_CASE("the API refuses calls without a valid token or without an actor") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  const std::string token = c.node("gemeente").token;
  std::map<std::string, std::string> actor = {{"X-Kring-Actor", "p123"}, {"X-Kring-Actor-Name", "P. de Vries"},
                                              {"X-Kring-Role", "casemanager"}};
  SUBCASE("no token") {
    auto r = c.Raw("gemeente", "GET", "/v1/cases", "", actor);
    CHECK(r.status == 401);
    CHECK(r.body["error"] == "unauthenticated");
  }
  SUBCASE("a wrong token") {
    auto h = actor;
    h["Authorization"] = "Bearer krt_0000";
    CHECK(c.Raw("gemeente", "GET", "/v1/cases", "", h).status == 401);
  }
  SUBCASE("no actor") {
    auto r = c.Raw("gemeente", "GET", "/v1/cases", "", {{"Authorization", "Bearer " + token}});
    CHECK(r.status == 400);
    CHECK(r.body["error"] == "missing_actor");
  }
  SUBCASE("a token revoked while the node runs") {
    auto h = actor;
    h["Authorization"] = "Bearer " + token;
    REQUIRE(c.Raw("gemeente", "GET", "/v1/cases", "", h).status == 200);
    REQUIRE(c.Cli({"token", "--data", c.node("gemeente").data_dir, "--revoke", "demo"}).exit_code == 0);
    CHECK(c.Raw("gemeente", "GET", "/v1/cases", "", h).status == 401);
  }
  SUBCASE("health needs no token") {
    auto r = c.Raw("gemeente", "GET", "/v1/health", "", {});
    CHECK(r.status == 200);
    CHECK(r.body["status"] == "ok");
    CHECK(r.body["org"] == "gemeente");
  }
}

TEST_CASE("malformed, oversized and invalid writes are refused with a JSON error and nothing stored") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  std::string case_id = CreateCase(c, "gemeente");
  std::string path = "/v1/cases/" + case_id + "/items";
  std::map<std::string, std::string> h = {{"Authorization", "Bearer " + c.node("gemeente").token},
                                          {"X-Kring-Actor", "p1"}, {"X-Kring-Actor-Name", "P"}, {"X-Kring-Role", "r"}};
  CHECK(c.Raw("gemeente", "POST", path, "{not json", h).body["error"] == "malformed_json");
  CHECK(c.Raw("gemeente", "POST", path, "[1,2]", h).status == 400);
  CHECK(c.Raw("gemeente", "POST", path, R"({"kind":7,"data":{}})", h).status == 400);
  CHECK(c.Raw("gemeente", "POST", path, R"({"kind":"note","data":{"text":"x"},"colour":"red"})", h).body["error"] == "unknown_field");
  CHECK(c.Raw("gemeente", "POST", path, R"({"kind":"recipe","data":{"text":"x"}})", h).status == 400);
  CHECK(c.Raw("gemeente", "POST", path, R"({"kind":"note","domain":"astrology","data":{"text":"x"}})", h).status == 400);
  CHECK(c.Raw("gemeente", "POST", path, R"({"kind":"note","data":{"text":7}})", h).status == 400);
  std::string huge = R"({"kind":"note","data":{"text":")" + std::string(600 * 1024, 'x') + "\"}}";
  CHECK(c.Raw("gemeente", "POST", path, huge, h).status == 413);
  CHECK(c.Raw("gemeente", "POST", "/v1/cases/00112233445566778899aabbccddeeff/items", R"({"kind":"note","data":{"text":"x"}})", h).status == 404);
  CHECK(c.Raw("gemeente", "POST", "/v1/cases/xyz/items", R"({"kind":"note","data":{"text":"x"}})", h).status == 400);
  CHECK(c.Raw("gemeente", "GET", "/v1/no-such-thing", "", h).status == 404);
  auto bad_actor = h;
  bad_actor["X-Kring-Actor"] = "\xff\xfe";
  CHECK(c.Raw("gemeente", "GET", "/v1/cases", "", bad_actor).status == 400);
  CHECK(Held(c, "gemeente") == 0);
  CHECK(PlanItems(c, "gemeente", case_id) == 0);
  CHECK(c.Running("gemeente"));
}

TEST_CASE("the command line explains itself and refuses bad input clearly") {
  LocalCluster c(KRING_NODE_BINARY);
  for (auto args : std::vector<std::vector<std::string>>{{"--help"}, {"init", "--help"}, {"card", "--help"},
                                                         {"peer", "add", "--help"}, {"peer", "remove", "--help"},
                                                         {"peer", "list", "--help"}, {"token", "--help"}, {"run", "--help"}}) {
    auto r = c.Cli(args);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("--") != std::string::npos);
  }
  std::string dir = c.dir() + "/n";
  auto bad_org = c.Cli({"init", "--data", dir, "--org", "Gemeente Deventer!", "--name", "X"});
  CHECK(bad_org.exit_code != 0);
  CHECK(bad_org.err.find("[a-z0-9-]") != std::string::npos);
  CHECK(c.Cli({"init", "--data", dir, "--org", "gemeente", "--name", "G", "--colour", "red"}).exit_code != 0);
  auto init = c.Cli({"init", "--data", dir, "--org", "gemeente", "--name", "Gemeente"});
  REQUIRE(init.exit_code == 0);
  json card = json::parse(init.out);
  CHECK(card["org"] == "gemeente");
  CHECK(card["sign_key"].get<std::string>().size() == 64);
  struct stat st {};
  REQUIRE(stat((dir + "/node.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto again = c.Cli({"init", "--data", dir, "--org", "gemeente", "--name", "Gemeente"});
  CHECK(again.exit_code != 0);
  CHECK(again.err.find("refusing to overwrite") != std::string::npos);
  CHECK(json::parse(c.Cli({"card", "--data", dir}).out) == card);
  chmod((dir + "/node.key").c_str(), 0644);
  auto loose = c.Cli({"card", "--data", dir});
  CHECK(loose.exit_code != 0);
  CHECK(loose.err.find("chmod 600") != std::string::npos);
  chmod((dir + "/node.key").c_str(), 0600);
  auto bad_card = c.Cli({"peer", "add", "--data", dir, "--card", "-", "--endpoint", "tcp://127.0.0.1:1"}, "{\"org\":1}");
  CHECK(bad_card.exit_code != 0);
  CHECK(c.Cli({"run", "--data", dir, "--api", "nonsense"}).exit_code != 0);
  CHECK(c.Cli({"run", "--data", dir, "--api", "0.0.0.0:8080"}).err.find("loopback") != std::string::npos);
}

TEST_CASE("a node stops cleanly on SIGTERM and reports partner state in health") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  auto h = c.Call("gemeente", "GET", "/v1/health");
  REQUIRE(h.body["peers"].size() == 1);
  CHECK(h.body["peers"][0]["connected"] == false);
  CHECK(h.body["peers"][0]["last_sync"].is_null());
  REQUIRE(c.Start("wijkteam"));
  REQUIRE(LocalCluster::WaitFor([&] { return Connected(c, "gemeente", "wijkteam"); }, 5000));
  CHECK(LocalCluster::WaitFor([&] { return !c.Call("gemeente", "GET", "/v1/health").body["peers"][0]["last_sync"].is_null(); }, 5000));
  CHECK(c.Stop("gemeente") == 0);
  CHECK(c.Log("gemeente").find("stopped cleanly") != std::string::npos);
  CHECK(LocalCluster::WaitFor([&] { return !Connected(c, "wijkteam", "gemeente"); }, 10000));
}

TEST_CASE("every call that touches case data is in the node's access log, and audit verify checks the chain") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  std::string case_id = CreateCase(c, "gemeente");
  auto w = Note(c, "gemeente", case_id, "housing", "gespreksverslag");
  REQUIRE(w.status == 201);
  auto read = c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/plan", std::nullopt,
                     {{"X-Kring-Actor", "k.jansen"}, {"X-Kring-Actor-Name", "K. Jansen"}, {"X-Kring-Role", "wijkverpleegkundige"},
                      {"X-Kring-On-Behalf-Of", "team-noord"}});
  REQUIRE(read.status == 200);
  // A failed attempt is logged too.
  REQUIRE(c.Call("gemeente", "POST", "/v1/cases/" + case_id + "/items", json{{"kind", "BAD"}, {"data", {}}}).status == 400);
  auto log = c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/access-log");
  REQUIRE(log.status == 200);
  auto entries = log.body["entries"];
  REQUIRE(entries.size() == 4);  // create case, write, read, failed write (this read is logged after it answers)
  CHECK(entries[0]["action"] == "create");
  CHECK(entries[1]["action"] == "create");
  CHECK(entries[1]["items"][0] == w.body["version"]);
  json r = entries[2];
  CHECK(r["action"] == "read");
  CHECK(r["outcome"] == "success");
  CHECK(r["actor"]["id"] == "k.jansen");
  CHECK(r["actor"]["name"] == "K. Jansen");
  CHECK(r["actor"]["role"] == "wijkverpleegkundige");
  CHECK(r["actor"]["on_behalf_of"] == "team-noord");
  CHECK(r["organisation"] == "gemeente");
  CHECK(r["client"] == "demo");
  CHECK(r["items"][0] == w.body["version"]);
  CHECK(r["time"].get<std::string>().size() == 24);
  CHECK(entries[3]["outcome"] == "failure");
  // Filtering by period.
  CHECK(c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/access-log?from=2999-01-01").body["entries"].empty());
  CHECK(c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/access-log?to=yesterday").status == 400);
  // The chain verifies; altering an entry makes verify fail and name it.
  auto ok = c.Cli({"audit", "verify", "--data", c.node("gemeente").data_dir});
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("hash chain intact") != std::string::npos);
  auto tamper = kring::RunCommand({"/usr/bin/sqlite3", c.node("gemeente").data_dir + "/kring.db",
                                   "DROP TRIGGER access_log_no_update; UPDATE access_log SET actor_name='Iemand anders' WHERE seq=3;"});
  REQUIRE(tamper.exit_code == 0);
  auto bad = c.Cli({"audit", "verify", "--data", c.node("gemeente").data_dir});
  CHECK(bad.exit_code != 0);
  CHECK(bad.out.find("entry 3") != std::string::npos);
}

TEST_CASE("metrics are served in Prometheus text format") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  std::string case_id = SharedCase(c, "gemeente", {"wijkteam"});
  REQUIRE(Note(c, "gemeente", case_id, "housing", "x").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 5000));
  REQUIRE(c.Raw("wijkteam", "GET", "/v1/cases", "", {}).status == 401);
  auto m = c.Raw("wijkteam", "GET", "/metrics", "", {});
  REQUIRE(m.status == 200);
  CHECK(m.raw.find("kring_fragments_stored ") != std::string::npos);
  CHECK(m.raw.find("kring_peers_connected 1\n") != std::string::npos);
  CHECK(m.raw.find("kring_peer_sync_lag_seconds{peer=\"gemeente\"}") != std::string::npos);
  CHECK(m.raw.find("kring_api_requests_total{status=\"401\"} 1\n") != std::string::npos);
  CHECK(m.raw.find("# TYPE kring_messages_rejected_total counter") != std::string::npos);
}

namespace {

// A counter or gauge without labels from a node's /metrics; -1 when absent.
double Metric(LocalCluster& c, const std::string& org, const std::string& name) {
  std::string raw = c.Raw(org, "GET", "/metrics", "", {}).raw;
  auto at = raw.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(raw.substr(at + name.size() + 2));
}

// The records (encoded) a node stored after row `after`, oldest first, from its database file.
std::vector<kring::Bytes> RecordsAfter(LocalCluster& c, const std::string& org, int64_t after, int64_t* last_row) {
  std::vector<kring::Bytes> out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2((c.node(org).data_dir + "/kring.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT rowid, record FROM records WHERE rowid > ? ORDER BY rowid", -1, &st, nullptr);
    sqlite3_bind_int64(st, 1, after);
    while (sqlite3_step(st) == SQLITE_ROW) {
      *last_row = sqlite3_column_int64(st, 0);
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 1));
      out.emplace_back(p, p + sqlite3_column_bytes(st, 1));
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("sync counts its reconciliation sessions, round trips and bytes, and its pushes, where they meet the socket") {
  // A ten-minute interval: each node starts one session when it first reaches
  // the other, then none, so that the counters can be compared at rest.
  LocalCluster c(KRING_NODE_BINARY, 600000);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  const std::vector<std::string> names = {"kring_reconcile_sessions_total",       "kring_reconcile_round_trips_total",
                                          "kring_reconcile_bytes_sent_total",     "kring_reconcile_bytes_received_total",
                                          "kring_push_bytes_sent_total",          "kring_push_records_sent_total"};
  for (const std::string& n : names) CHECK_MESSAGE(Metric(c, "gemeente", n) == 0, n);
  // Written while the wijkteam is down: nothing can be pushed, reconciliation brings them.
  std::string case_id = SharedCase(c, "gemeente", {"wijkteam"});
  for (int i = 0; i < 3; ++i) REQUIRE(Note(c, "gemeente", case_id, "housing", "notitie " + std::to_string(i)).status == 201);
  CHECK(Metric(c, "gemeente", "kring_push_records_sent_total") == 0);
  CHECK(Metric(c, "gemeente", "kring_push_bytes_sent_total") == 0);
  REQUIRE(c.Start("wijkteam"));
  REQUIRE(LocalCluster::WaitFor([&] { return Held(c, "wijkteam") == 3; }, 10000));
  // Both sessions (one started by each node) completed, and nothing moves any more.
  std::map<std::string, std::map<std::string, double>> at;
  auto sample = [&] {
    std::map<std::string, std::map<std::string, double>> m;
    for (const char* org : {"gemeente", "wijkteam"})
      for (const std::string& n : names) m[org][n] = Metric(c, org, n);
    return m;
  };
  REQUIRE(LocalCluster::WaitFor([&] {
    auto m = sample();
    bool done = m["gemeente"]["kring_reconcile_sessions_total"] >= 1 && m["wijkteam"]["kring_reconcile_sessions_total"] >= 1;
    bool still = m == at;
    at = m;
    if (!still) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return done && still;
  }, 20000));
  auto g = at["gemeente"];
  auto w = at["wijkteam"];
  CHECK(g["kring_reconcile_sessions_total"] == 1);
  CHECK(w["kring_reconcile_sessions_total"] == 1);
  CHECK(g["kring_reconcile_round_trips_total"] >= 1);
  CHECK(w["kring_reconcile_round_trips_total"] >= 1);
  // Each message counted once at each end: what one sent, the other received.
  CHECK(g["kring_reconcile_bytes_sent_total"] > 0);
  CHECK(w["kring_reconcile_bytes_sent_total"] > 0);
  CHECK(g["kring_reconcile_bytes_sent_total"] == w["kring_reconcile_bytes_received_total"]);
  CHECK(w["kring_reconcile_bytes_sent_total"] == g["kring_reconcile_bytes_received_total"]);
  // Every message of a round trip has at least kring's envelope (type, session, role, body length).
  const double round_trips = g["kring_reconcile_round_trips_total"] + w["kring_reconcile_round_trips_total"];
  CHECK(g["kring_reconcile_bytes_sent_total"] + w["kring_reconcile_bytes_sent_total"] >= 2 * round_trips * 10);
  // The gemeente pushed what the wijkteam lacked (the case's genesis, consent and the notes): at least those records' bytes.
  int64_t last_row = 0;
  auto held = RecordsAfter(c, "wijkteam", 0, &last_row);
  REQUIRE(held.size() >= 5);
  double held_bytes = 0;
  for (const auto& r : held) held_bytes += static_cast<double>(r.size());
  CHECK(g["kring_push_records_sent_total"] >= static_cast<double>(held.size()));
  CHECK(g["kring_push_bytes_sent_total"] > held_bytes);

  // A note written now is pushed at once: the push counters move by that
  // push exactly, the reconciliation counters not at all (no session is due).
  REQUIRE(Note(c, "gemeente", case_id, "housing", "nog een notitie").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return Held(c, "wijkteam") == 4; }, 10000));
  REQUIRE(LocalCluster::WaitFor([&] {
    auto m = sample();
    bool still = m == at;
    at = m;
    if (!still) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return still;
  }, 20000));
  auto fresh = RecordsAfter(c, "wijkteam", last_row, &last_row);
  REQUIRE(!fresh.empty());
  CHECK(at["gemeente"]["kring_reconcile_sessions_total"] == 1);
  CHECK(at["gemeente"]["kring_reconcile_bytes_sent_total"] == g["kring_reconcile_bytes_sent_total"]);
  CHECK(at["wijkteam"]["kring_reconcile_bytes_received_total"] == w["kring_reconcile_bytes_received_total"]);
  const double pushed = at["gemeente"]["kring_push_records_sent_total"] - g["kring_push_records_sent_total"];
  const double pushed_bytes = at["gemeente"]["kring_push_bytes_sent_total"] - g["kring_push_bytes_sent_total"];
  CHECK(pushed == static_cast<double>(fresh.size()));
  if (fresh.size() == 1) {
    // One record in one push message: its bytes as the message encodes them.
    kring::PushMessage push;
    push.records.v.push_back({fresh[0]});
    CHECK(pushed_bytes == static_cast<double>(kring::EncodeMessage(kring::Message(push)).size()));
  } else {
    CHECK(pushed_bytes > 0);
  }
}

TEST_CASE("the API binds beyond loopback only with TLS, and speaks HTTPS when given a certificate") {
  LocalCluster c(KRING_NODE_BINARY);
  auto& n = c.AddNode("gemeente", "Gemeente");
  std::string cert = c.dir() + "/api.crt", key = c.dir() + "/api.key";
  auto gen = kring::RunCommand({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                                "-out", cert, "-days", "1", "-subj", "/CN=localhost"});
  REQUIRE(gen.exit_code == 0);
  auto refused = c.Cli({"run", "--data", n.data_dir, "--listen", n.listen(), "--api", "0.0.0.0:" + std::to_string(n.api_port)});
  CHECK(refused.exit_code != 0);
  CHECK(refused.err.find("TLS") != std::string::npos);
  auto half = c.Cli({"run", "--data", n.data_dir, "--listen", n.listen(), "--tls-cert", cert});
  CHECK(half.exit_code != 0);
  n.run_args = {"--tls-cert", cert, "--tls-key", key};
  n.tls = true;
  REQUIRE(c.Start("gemeente"));
  auto h = c.Raw("gemeente", "GET", "/v1/health", "", {});
  CHECK(h.status == 200);
  CHECK(c.Log("gemeente").find("(TLS)") != std::string::npos);
  n.tls = false;  // plain HTTP to an HTTPS port gets no answer
  CHECK(c.Raw("gemeente", "GET", "/v1/health", "", {}).status != 200);
}

TEST_CASE("kring-node --version names the version, /metrics carries kring_build_info, and KRING_LOG_FORMAT=json logs one object a line") {
  LocalCluster c(KRING_NODE_BINARY);
  auto v = c.Cli({"--version"});
  CHECK(v.exit_code == 0);
  CHECK(v.out.find(std::string("kring-node ") + kring::kVersion) != std::string::npos);
  CHECK(c.Cli({"--help"}).out.find("--version") != std::string::npos);

  ::setenv("KRING_LOG_FORMAT", "json", 1);
  c.AddNode("gemeente", "Gemeente");
  bool started = c.Start("gemeente");
  ::unsetenv("KRING_LOG_FORMAT");
  REQUIRE(started);
  CHECK(c.Raw("gemeente", "GET", "/metrics", "", {}).raw.find(std::string("kring_build_info{version=\"") + kring::kVersion +
                                                               "\"} 1") != std::string::npos);
  REQUIRE(c.Stop("gemeente") == 0);
  std::istringstream log(c.Log("gemeente"));
  std::string line;
  size_t lines = 0;
  while (std::getline(log, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    INFO(line);
    REQUIRE(j.is_object());
    CHECK(j["time"].is_string());
    CHECK((j["level"] == "info" || j["level"] == "warn" || j["level"] == "error" || j["level"] == "debug"));
    CHECK(j["component"].is_string());
    CHECK(j["message"].is_string());
    ++lines;
  }
  CHECK(lines >= 2);  // running as ..., stopped cleanly

  ::setenv("KRING_LOG_FORMAT", "xml", 1);
  auto bad = c.Cli({"--version"});
  ::unsetenv("KRING_LOG_FORMAT");
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("KRING_LOG_FORMAT must be text or json") != std::string::npos);
}

TEST_CASE("INFO log lines name the client system, never the professional") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!case_id.empty());
  REQUIRE(Note(c, "gemeente", case_id, "housing", "een notitie").status == 201);
  std::string log = c.Log("gemeente");
  CHECK(log.find("opened case " + case_id) != std::string::npos);
  CHECK(log.find("wrote an item (kind note)") != std::string::npos);
  CHECK(log.find("demo-professional") == std::string::npos);
  CHECK(log.find("Demo Professional") == std::string::npos);
}
