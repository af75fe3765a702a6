// The FHIR resources a real node serves (/fhir/metadata, CarePlan, Goal, Consent), checked by the fhir package's R4 validator.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

#include "examples/cluster.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

namespace {

const std::string kValidator = std::string(KRING_SOURCE_DIR) + "/tests/fhir/validate.js";

// Runs the R4 validator on `resources`, written to files; its exit code and output.
kring::CommandResult ValidateR4(LocalCluster& c, const std::vector<json>& resources) {
  std::vector<std::string> argv = {KRING_NODEJS, kValidator, "--own=https://fhir.gemeente-deventer.example/kring"};
  for (size_t i = 0; i < resources.size(); ++i) {
    std::string path = c.dir() + "/resource-" + std::to_string(i) + ".json";
    std::ofstream(path) << resources[i].dump(2);
    argv.push_back(path);
  }
  return kring::RunCommand(argv);
}

}  // namespace

TEST_CASE("the node's CapabilityStatement, CarePlan, Goal and Consent validate as FHIR R4, with Dutch narrative and the configured base URI") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  c.node("gemeente").run_args = {"--fhir-base-uri", "https://fhir.gemeente-deventer.example/kring"};
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  const std::string case_id = CreateCase(c, "gemeente");
  const std::string consent = Grant(c, "gemeente", case_id, "wijkteam", {"finances", "housing"}, "2030-01-01");
  REQUIRE(!consent.empty());
  auto goal = c.Call("gemeente", "POST", "/v1/cases/" + case_id + "/items",
                     json{{"kind", "goal"}, {"domain", "finances"},
                          {"data", {{"description", "Overzicht van alle schulden <en> achterstanden"}, {"status", "active"},
                                    {"target_date", "2027-03-01"}}}});
  REQUIRE(goal.status == 201);
  const std::string item = goal.body["item"];
  REQUIRE(c.Call("gemeente", "POST", "/v1/cases/" + case_id + "/items",
                 json{{"kind", "action"}, {"domain", "finances"},
                      {"data", {{"what", "Schuldeisers bellen"}, {"who", {{"type", "organisation"}, {"org", "wijkteam"}}},
                                {"status", "planned"}, {"goal", item}}}}).status == 201);

  auto metadata = c.Raw("gemeente", "GET", "/fhir/metadata", "", {});  // no token needed
  auto plan = c.Call("gemeente", "GET", "/fhir/CarePlan/" + case_id);
  auto goal_fhir = c.Call("gemeente", "GET", "/fhir/Goal/" + item);
  auto consent_fhir = c.Call("gemeente", "GET", "/fhir/Consent/" + consent);
  REQUIRE(metadata.status == 200);
  REQUIRE(plan.status == 200);
  REQUIRE(goal_fhir.status == 200);
  REQUIRE(consent_fhir.status == 200);
  CHECK(metadata.body["resourceType"] == "CapabilityStatement");
  CHECK(metadata.body["fhirVersion"] == "4.0.1");
  CHECK(goal_fhir.body["resourceType"] == "Goal");
  CHECK(goal_fhir.body["meta"]["versionId"] == goal.body["version"]);
  CHECK(goal_fhir.body["text"]["div"].get<std::string>().find("Doel: Overzicht van alle schulden &lt;en&gt;") != std::string::npos);
  CHECK(consent_fhir.body["resourceType"] == "Consent");
  CHECK(consent_fhir.body["status"] == "active");
  CHECK(consent_fhir.body["text"]["div"].get<std::string>().find("Toestemming voor wijkteam") != std::string::npos);
  CHECK(plan.body["meta"]["versionId"].is_string());
  CHECK(plan.body["meta"]["lastUpdated"].is_string());
  CHECK(plan.body["identifier"][0]["system"] == "https://fhir.gemeente-deventer.example/kring/NamingSystem/case");
  CHECK(plan.raw.find("https://kring.example") == std::string::npos);
  CHECK(plan.raw.find("Financi") != std::string::npos);  // Dutch displays

  // The plan's version changes with the plan.
  std::string before = plan.body["meta"]["versionId"];
  REQUIRE(Note(c, "gemeente", case_id, "", "Bellen op dinsdag").status == 201);
  CHECK(c.Call("gemeente", "GET", "/fhir/CarePlan/" + case_id).body["meta"]["versionId"] != before);

  REQUIRE(Withdraw(c, "gemeente", case_id, consent).status == 200);
  auto withdrawn = c.Call("gemeente", "GET", "/fhir/Consent/" + consent);
  REQUIRE(withdrawn.status == 200);
  CHECK(withdrawn.body["status"] == "inactive");
  CHECK(withdrawn.body["meta"]["versionId"] != consent);

  kring::CommandResult r = ValidateR4(c, {metadata.body, plan.body, goal_fhir.body, consent_fhir.body, withdrawn.body});
  CHECK_MESSAGE(r.exit_code == 0, r.out << r.err);

  // The validator is not a rubber stamp: it refuses a Consent without scope and a CarePlan with an unknown element.
  json broken_consent = consent_fhir.body;
  broken_consent.erase("scope");
  json broken_plan = plan.body;
  broken_plan["colour"] = "blue";
  CHECK(ValidateR4(c, {broken_consent}).exit_code != 0);
  CHECK(ValidateR4(c, {broken_plan}).exit_code != 0);

  CHECK(c.Call("gemeente", "GET", "/fhir/Goal/" + std::string(64, 'a')).status == 404);
  CHECK(c.Call("gemeente", "GET", "/fhir/Consent/" + std::string(64, 'a')).status == 404);
}
