// Multi-process plan tests: concurrent edits during a partition converge to the same visible conflict everywhere.
#include <doctest/doctest.h>

#include <chrono>
#include <set>
#include <thread>

#include "examples/cluster.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

namespace {

kring::HttpReply Goal(LocalCluster& c, const std::string& org, const std::string& case_id, const std::string& text,
                      const std::string& status, const std::vector<std::string>& supersedes = {}) {
  json body = {{"kind", "goal"}, {"domain", "finances"}, {"data", {{"description", text}, {"status", status}}}};
  if (!supersedes.empty()) body["supersedes"] = supersedes;
  return c.Call(org, "POST", "/v1/cases/" + case_id + "/items", body);
}

// Removes the partnership on both sides: a partition the nodes cannot bridge.
void Partition(LocalCluster& c, const std::string& a, const std::string& b) {
  REQUIRE(c.Cli({"peer", "remove", "--data", c.node(a).data_dir, "--org", b}).exit_code == 0);
  REQUIRE(c.Cli({"peer", "remove", "--data", c.node(b).data_dir, "--org", a}).exit_code == 0);
}

}  // namespace

TEST_CASE("two organisations editing the same goal while partitioned see the same conflict after healing, and a third edit resolves it") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"*"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam"}, case_id));
  auto created = Goal(c, "gemeente", case_id, "Schulden in beeld", "proposed");
  REQUIRE(created.status == 201);
  std::string v1 = created.body["version"];
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 5000));

  Partition(c, "gemeente", "wijkteam");
  auto a = Goal(c, "gemeente", case_id, "Schulden in beeld en betaalregeling", "active", {v1});
  auto b = Goal(c, "wijkteam", case_id, "Schulden in beeld via schuldhulp", "active", {v1});
  REQUIRE(a.status == 201);
  REQUIRE(b.status == 201);
  CHECK(a.body["item"] == created.body["item"]);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(Plan(c, "gemeente", case_id)["conflicts"] == 0);  // each side sees only its own edit

  REQUIRE(c.Connect("gemeente", "wijkteam"));  // heal
  auto conflicted = [&](const std::string& org) {
    json p = Plan(c, org, case_id);
    return p.is_object() && p["conflicts"] == 1 && p["items"].size() == 1 && p["items"][0]["conflicts"].size() == 1;
  };
  REQUIRE(LocalCluster::WaitFor([&] { return conflicted("gemeente") && conflicted("wijkteam"); }, 10000));
  json pg = Plan(c, "gemeente", case_id), pw = Plan(c, "wijkteam", case_id);
  CHECK(pg["items"] == pw["items"]);  // the same plan on both nodes, byte for byte where they overlap
  std::set<std::string> authors = {pg["items"][0]["author"], pg["items"][0]["conflicts"][0]["author"]};
  CHECK(authors == std::set<std::string>{"gemeente", "wijkteam"});

  // A third edit that supersedes both resolves the conflict everywhere.
  auto resolve = Goal(c, "wijkteam", case_id, "Schulden in beeld; betaalregeling via schuldhulp", "active",
                      {a.body["version"], b.body["version"]});
  REQUIRE(resolve.status == 201);
  auto resolved = [&](const std::string& org) {
    json p = Plan(c, org, case_id);
    return p.is_object() && p["conflicts"] == 0 && p["items"].size() == 1 &&
           p["items"][0]["version"] == resolve.body["version"];
  };
  CHECK(LocalCluster::WaitFor([&] { return resolved("gemeente") && resolved("wijkteam"); }, 5000));
  CHECK(Plan(c, "gemeente", case_id) == Plan(c, "wijkteam", case_id));
}

TEST_CASE("the regisseur changes only by the regie organisation, and a handover gives the new one the whole plan") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  c.AddNode("zorg", "Zorg");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Connect("gemeente", "zorg"));
  REQUIRE(c.Connect("wijkteam", "zorg"));
  for (const char* org : {"gemeente", "wijkteam", "zorg"}) REQUIRE(c.Start(org));
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"housing"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"finances"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg"}, case_id));
  REQUIRE(Note(c, "zorg", case_id, "finances", "budgetbeheer loopt").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "gemeente", case_id) == 1; }, 5000));
  CHECK(PlanItems(c, "wijkteam", case_id) == 0);  // housing only

  auto regisseur = [&](const std::string& org, const json& data) {
    return c.Call(org, "POST", "/v1/cases/" + case_id + "/items", json{{"kind", "regisseur"}, {"data", data}});
  };
  auto denied = regisseur("wijkteam", {{"org", "wijkteam"}, {"person", "Fatima El Amrani"}});
  CHECK(denied.status == 403);
  auto person = regisseur("gemeente", {{"org", "gemeente"}, {"person", "Joost de Wit"}});
  REQUIRE(person.status == 201);
  CHECK(LocalCluster::WaitFor([&] { return Plan(c, "wijkteam", case_id)["regisseur"]["person"] == "Joost de Wit"; }, 5000));
  auto handover = regisseur("gemeente", {{"org", "wijkteam"}, {"person", "Fatima El Amrani"}});
  REQUIRE(handover.status == 201);
  auto sees_all = [&] {
    json p = Plan(c, "wijkteam", case_id);
    return p.is_object() && p["regisseur"]["org"] == "wijkteam" && p["items"].size() == 1;
  };
  CHECK(LocalCluster::WaitFor(sees_all, 5000));
  CHECK(LocalCluster::WaitFor([&] { return Plan(c, "zorg", case_id)["regisseur"]["org"] == "wijkteam"; }, 5000));
  // The former regie organisation can no longer change the regisseur.
  CHECK(regisseur("gemeente", {{"org", "gemeente"}, {"person", "Joost de Wit"}}).status == 403);
}

TEST_CASE("the FHIR view of a plan is a CarePlan with its goals") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(Goal(c, "gemeente", case_id, "Schulden in beeld", "active").status == 201);
  auto r = c.Call("gemeente", "GET", "/fhir/CarePlan/" + case_id);
  REQUIRE(r.status == 200);
  CHECK(r.body["resourceType"] == "CarePlan");
  CHECK(r.body["id"] == case_id);
  CHECK(r.body["intent"] == "plan");
  CHECK(r.body["goal"].size() == 1);
  bool has_goal = false;
  for (auto& res : r.body["contained"]) has_goal = has_goal || res["resourceType"] == "Goal";
  CHECK(has_goal);
}
