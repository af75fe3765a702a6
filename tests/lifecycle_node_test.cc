// Issue 16 with real node processes on loopback: retention rules set with the CLI on running nodes, the sweep, and the export command.
#include <doctest/doctest.h>

#include "examples/cluster.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

TEST_CASE("issue 16: kring-node retention changes a running node's rules, its sweep destroys a closed case by them, "
          "and kring-node export gives the case before that") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  for (const char* org : {"gemeente", "wijkteam"}) c.node(org).run_args = {"--sweep-interval-s", "1"};
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  const std::string gem = c.node("gemeente").data_dir, wijk = c.node("wijkteam").data_dir;

  // Periods are checked strictly; nothing is saved when one is wrong.
  auto bad = c.Cli({"retention", "--data", gem, "--default", "15 jaar"});
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("does not start with P") != std::string::npos);
  auto bad_basis = c.Cli({"retention", "--data", gem, "--basis", "Wmo 2015"});
  CHECK(bad_basis.exit_code == 1);
  CHECK(bad_basis.err.find("TEXT=PERIOD") != std::string::npos);
  auto set = c.Cli({"retention", "--data", gem, "--default", "P15Y", "--basis", "Wmo 2015=P15Y", "--duty", "Jeugdwet=P20Y",
                    "--access-log", "P5Y"});
  REQUIRE(set.exit_code == 0);
  json printed = json::parse(set.out);
  CHECK(printed["default"] == "P15Y");
  CHECK(printed["rules"].size() == 2);
  CHECK(printed["rules"][1]["legal_duty"] == true);

  std::string case_id = CreateCase(c, "gemeente", "huishouden Jansen");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"finances"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam"}, case_id));
  REQUIRE(Note(c, "gemeente", case_id, "finances", "afspraak bij de schuldhulp").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 10000));

  auto closed = c.Call("gemeente", "POST", "/v1/cases/" + case_id + "/close", json{{"reason", "goals-reached"}, {"basis", "Wmo 2015"}});
  REQUIRE(closed.status == 200);
  CHECK(closed.body["closed"]["retention"]["rule"] == "Wmo 2015");
  CHECK(closed.body["closed"]["retention"]["period"] == "P15Y");
  REQUIRE(LocalCluster::WaitFor([&] { return Plan(c, "wijkteam", case_id).value("status", "") == "completed"; }, 10000));

  // The export, from the command line while the node runs.
  auto exported = c.Cli({"export", "--data", gem, "--case", case_id});
  REQUIRE(exported.exit_code == 0);
  json doc = json::parse(exported.out);
  CHECK(doc["case"] == case_id);
  CHECK(doc["plan"]["items"].size() == 1);
  CHECK(doc["consents"].size() == 1);
  CHECK(doc["access_log"].size() > 0);
  CHECK(c.Cli({"export", "--data", gem, "--case", "0123456789abcdef0123456789abcdef"}).exit_code == 1);

  // A short rule on the running wijkteam node: its next sweep destroys its copy; the gemeente keeps the case.
  REQUIRE(c.Cli({"retention", "--data", wijk, "--default", "PT1S"}).exit_code == 0);
  CHECK(LocalCluster::WaitFor([&] { return c.Call("wijkteam", "GET", "/v1/cases/" + case_id + "/plan").status == 404; }, 15000));
  CHECK(HeldFragments(c, "wijkteam") == 0);
  CHECK(c.Log("wijkteam").find("destroyed") != std::string::npos);
  CHECK(PlanItems(c, "gemeente", case_id) == 1);
  // The gemeente's node offers its copies again; the wijkteam refuses them.
  CHECK(LocalCluster::WaitFor([&] { return Rejected(c, "wijkteam", "destroyed") > 0; }, 10000));
  CHECK(HeldFragments(c, "wijkteam") == 0);

  REQUIRE(c.Cli({"retention", "--data", gem, "--default", "PT1S", "--basis", "Wmo 2015=PT2S"}).exit_code == 0);
  CHECK(LocalCluster::WaitFor([&] { return c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/plan").status == 404; }, 15000));
  CHECK(HeldFragments(c, "gemeente") == 0);
  CHECK(c.Stop("gemeente") == 0);
  auto audit = c.Cli({"audit", "verify", "--data", gem});
  CHECK_MESSAGE(audit.exit_code == 0, audit.out);
}

TEST_CASE("issue 16: the citizen's erasure request erases on every node and the answers reach the regie organisation") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  c.AddNode("zorg", "Zorg");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Connect("gemeente", "zorg"));
  REQUIRE(c.Connect("wijkteam", "zorg"));
  for (const char* org : {"gemeente", "wijkteam", "zorg"}) REQUIRE(c.Start(org));
  // The care provider must keep its own file by law (a rule marked as a legal duty).
  REQUIRE(c.Cli({"retention", "--data", c.node("zorg").data_dir, "--duty", "Wmo 2015=P15Y"}).exit_code == 0);
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"finances"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"finances"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam", "zorg"}, case_id));
  REQUIRE(Note(c, "gemeente", case_id, "finances", "van de gemeente").status == 201);
  REQUIRE(Note(c, "wijkteam", case_id, "finances", "van het wijkteam").status == 201);
  REQUIRE(Note(c, "zorg", case_id, "finances", "van de zorg").status == 201);
  for (const char* org : {"gemeente", "wijkteam", "zorg"})
    REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, org, case_id) == 3; }, 10000));

  const std::string path = "/v1/cases/" + case_id + "/erasure-requests";
  CHECK(c.Call("gemeente", "POST", path, json{{"reference", "brief"}}).status == 409);  // close first
  REQUIRE(c.Call("gemeente", "POST", "/v1/cases/" + case_id + "/close", json{{"reason", "withdrawn-request"}}).status == 200);
  auto recorded = c.Call("gemeente", "POST", path, json{{"reference", "brief van de burger van 3 maart"}});
  REQUIRE(recorded.status == 201);
  CHECK(recorded.body["request"]["answers"].size() == 1);  // its own, at once

  json answers;
  CHECK(LocalCluster::WaitFor([&] {
    auto r = c.Call("gemeente", "GET", path);
    if (r.status != 200 || r.body["requests"].size() != 1) return false;
    answers = r.body["requests"][0]["answers"];
    return answers.size() == 3 && !r.body["requests"][0].contains("waiting_for");
  }, 15000));
  for (const auto& a : answers) {
    INFO(a.dump());
    CHECK(a["kept"] == (a["organisation"] == "zorg" ? 1 : 0));
  }
  CHECK(HeldFragments(c, "gemeente") == 0);
  CHECK(HeldFragments(c, "wijkteam") == 0);
  CHECK(HeldFragments(c, "zorg") == 1);
  CHECK(c.Call("wijkteam", "GET", path).body["requests"][0]["answers"].size() == 1);
}
