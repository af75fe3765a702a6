// The Quick start demo: three organisations' nodes on loopback share one household's plan fragments, step by step.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "examples/cluster.h"

using kring::LocalCluster;
using nlohmann::json;

namespace {

int failures = 0;

void Step(const std::string& text) { std::printf("\n==> %s\n", text.c_str()); }

void Check(bool ok, const std::string& what) {
  std::printf("    [%s] %s\n", ok ? " ok " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True when `needle` occurs in any of the node's database files (main, WAL).
bool OnDisk(const LocalCluster& c, const std::string& org, const std::string& needle) {
  const std::string base = const_cast<LocalCluster&>(c).node(org).data_dir + "/kring.db";
  for (const char* suffix : {"", "-wal", "-shm"})
    if (ReadFile(base + suffix).find(needle) != std::string::npos) return true;
  return false;
}

json Fragments(const LocalCluster& c, const std::string& org, const std::string& case_id) {
  auto r = c.Call(org, "GET", "/v1/cases/" + case_id + "/fragments");
  if (r.status != 200) return json::array();
  return r.body["fragments"];
}

}  // namespace

int main(int argc, char** argv) {
  std::string binary = KRING_NODE_BINARY;
  if (argc == 3 && std::strcmp(argv[1], "--node") == 0) binary = argv[2];
  else if (argc != 1) {
    std::fprintf(stderr, "usage: kring-demo [--node PATH-TO-kring-node]\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("kring demo: one household, one plan, shared between three organisations without a central server.\n");

  LocalCluster c(binary, 250);
  const std::string gemeente = "gemeente-deventer", wijkteam = "wijkteam-deventer", zorg = "zorg-de-linde";

  Step("Each organisation initialises its own node (keys stay on its own machine)");
  c.AddNode(gemeente, "Gemeente Deventer");
  c.AddNode(wijkteam, "Sociaal wijkteam Deventer");
  c.AddNode(zorg, "Zorgaanbieder De Linde");
  for (const char* org : {"gemeente-deventer", "wijkteam-deventer", "zorg-de-linde"}) {
    json card = json::parse(c.node(org).card);
    std::printf("    %-20s identity card: sign key %.16s..., sync on %s\n", org,
                card["sign_key"].get<std::string>().c_str(), c.node(org).listen().c_str());
  }

  Step("IT teams exchange identity cards: every pair trusts each other");
  Check(c.Connect(gemeente, wijkteam) && c.Connect(gemeente, zorg) && c.Connect(wijkteam, zorg),
        "three 'kring-node peer add' pairs succeeded");

  Step("The three nodes start as separate processes");
  for (const std::string& org : {gemeente, wijkteam, zorg}) Check(c.Start(org), org + " answers /v1/health");
  bool all_connected = LocalCluster::WaitFor([&] {
    for (const std::string& org : {gemeente, wijkteam, zorg}) {
      auto h = c.Call(org, "GET", "/v1/health");
      if (h.status != 200) return false;
      for (auto& p : h.body["peers"]) if (!p["connected"].get<bool>()) return false;
    }
    return true;
  }, 10000);
  Check(all_connected, "every node reports both partners connected (CURVE, partner keys only)");

  Step("The municipality opens a case for a household (a random id: no BSN, no name on the wire)");
  auto created = c.Call(gemeente, "POST", "/v1/cases", json{{"label", "Huishouden J. (dossier 2026-114)"}});
  Check(created.status == 201, "case created");
  std::string case_id = created.body.value("case", "");
  std::printf("    case id %s; the label stays on the municipality's node\n", case_id.c_str());

  Step("The municipality writes a goal about finances, addressed to the district team only");
  const std::string goal_text = "Schulden in beeld en een betaalregeling voor de huur";
  auto goal = c.Call(gemeente, "POST", "/v1/cases/" + case_id + "/fragments",
                     json{{"kind", "goal"}, {"domain", "finances"}, {"recipients", {wijkteam}},
                          {"body", {{"description", goal_text}, {"status", "active"}}}});
  Check(goal.status == 201, "goal fragment signed, encrypted and stored");

  Step("The district team receives it, verifies who wrote it, and decrypts it");
  bool got_goal = LocalCluster::WaitFor([&] { return Fragments(c, wijkteam, case_id).size() == 1; }, 5000);
  Check(got_goal, "district team reads 1 fragment");
  if (got_goal) {
    json f = Fragments(c, wijkteam, case_id)[0];
    std::printf("    author %s, kind %s, domain %s: \"%s\"\n", f["author"].get<std::string>().c_str(),
                f["kind"].get<std::string>().c_str(), f["domain"].get<std::string>().c_str(),
                f["body"]["description"].get<std::string>().c_str());
    Check(f["author"] == gemeente && f["body"]["description"] == goal_text, "author verified, text decrypted intact");
  }

  Step("The district team plans an action on daily activities, for the municipality and the care provider");
  const std::string action_text = "Dagbesteding twee ochtenden per week, start 1 december";
  auto action = c.Call(wijkteam, "POST", "/v1/cases/" + case_id + "/fragments",
                       json{{"kind", "action"}, {"domain", "daily-activities"}, {"recipients", {gemeente, zorg}},
                            {"body", {{"what", action_text}, {"who", zorg}}}});
  Check(action.status == 201, "action fragment written");
  bool spread = LocalCluster::WaitFor([&] {
    return Fragments(c, gemeente, case_id).size() == 2 && Fragments(c, zorg, case_id).size() == 1;
  }, 5000);
  Check(spread, "the municipality now reads 2 fragments, the care provider 1");

  Step("What each node holds and can read");
  for (const std::string& org : {gemeente, wijkteam, zorg}) {
    json fs = Fragments(c, org, case_id);
    std::printf("    %-20s reads %zu fragment(s):", org.c_str(), fs.size());
    for (auto& f : fs) std::printf(" %s/%s", f["kind"].get<std::string>().c_str(), f["domain"].get<std::string>().c_str());
    std::printf("\n");
  }

  Step("The care provider was not addressed by the goal: it holds nothing of it, readable or not");
  json zorg_fs = Fragments(c, zorg, case_id);
  bool only_action = zorg_fs.size() == 1 && zorg_fs[0]["kind"] == "action";
  Check(only_action, "care provider's API shows only the action");
  auto zorg_health = c.Call(zorg, "GET", "/v1/health");
  Check(zorg_health.body.value("fragments", -1) == 1, "care provider's database holds exactly 1 fragment");
  Check(!OnDisk(c, zorg, goal_text), "the goal's text appears nowhere in the care provider's database files");

  Step("No plaintext on disk anywhere: fragment bodies are stored encrypted");
  for (const std::string& org : {gemeente, wijkteam, zorg}) {
    Check(!OnDisk(c, org, goal_text) && !OnDisk(c, org, action_text), org + "'s database files hold no fragment text");
  }

  Step("Stopping the nodes");
  for (const std::string& org : {gemeente, wijkteam, zorg}) Check(c.Stop(org) == 0, org + " stopped cleanly on SIGTERM");

  if (failures == 0) {
    std::printf("\nkring demo: all steps checked out.\n");
    return 0;
  }
  std::printf("\nkring demo: %d check(s) failed. Node logs are in %s (set KRING_KEEP_TEST_DIRS=1 to keep them).\n",
              failures, c.dir().c_str());
  for (const std::string& org : {gemeente, wijkteam, zorg}) std::printf("--- %s log ---\n%s", org.c_str(), c.Log(org).c_str());
  return 1;
}
