// The Quick start demo: three organisations' nodes on loopback share one household's plan fragments, step by step.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "examples/citizen_device.h"
#include "examples/cluster.h"
#include "protocol/card.h"

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

// The professional at each organisation on whose behalf its case-management system calls the node.
std::map<std::string, std::string> ActorAt(const std::string& org) {
  if (org.rfind("gemeente", 0) == 0)
    return {{"X-Kring-Actor", "jdewit"}, {"X-Kring-Actor-Name", "Joost de Wit"}, {"X-Kring-Role", "regisseur"}};
  if (org.rfind("wijkteam", 0) == 0)
    return {{"X-Kring-Actor", "felamrani"}, {"X-Kring-Actor-Name", "Fatima El Amrani"}, {"X-Kring-Role", "wijkcoach"}};
  return {{"X-Kring-Actor", "mbakker"}, {"X-Kring-Actor-Name", "Marieke Bakker"}, {"X-Kring-Role", "begeleider"}};
}

kring::HttpReply Act(const LocalCluster& c, const std::string& org, const std::string& method, const std::string& path,
                     const std::optional<json>& body = std::nullopt) {
  return c.Call(org, method, path, body, ActorAt(org));
}

json PlanOf(const LocalCluster& c, const std::string& org, const std::string& case_id) {
  auto r = Act(c, org, "GET", "/v1/cases/" + case_id + "/plan");
  return r.status == 200 ? r.body : json::object();
}

size_t ItemCount(const LocalCluster& c, const std::string& org, const std::string& case_id) {
  json p = PlanOf(c, org, case_id);
  return p.contains("items") ? p["items"].size() : 0;
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
  const int portal_port = kring::FreePort();
  c.node(gemeente).run_args = {"--portal", "127.0.0.1:" + std::to_string(portal_port)};
  c.AddNode(wijkteam, "Sociaal wijkteam Deventer");
  c.AddNode(zorg, "Zorgaanbieder De Linde");
  for (const char* org : {"gemeente-deventer", "wijkteam-deventer", "zorg-de-linde"}) {
    auto card = kring::CardFromJson(c.node(org).card);
    Check(card.ok(), std::string(org) + " printed a valid identity card");
    std::printf("    %-20s fingerprint %s, sync on %s\n", org, kring::CardFingerprint(*card).c_str(),
                c.node(org).listen().c_str());
  }

  Step("They found a network from one signed roster (no peer add per pair): stewards gemeente and wijkteam, k = 2");
  {
    const std::string roster = c.dir() + "/roster.json";
    std::vector<std::string> args = {"network", "create", "--data", c.node(gemeente).data_dir, "--name",
                                      "Kenis Deventer", "--stewards", gemeente + "," + wijkteam, "--threshold", "2"};
    for (const std::string& org : {gemeente, wijkteam, zorg}) {
      const std::string card_file = c.dir() + "/" + org + ".card";
      FILE* f = std::fopen(card_file.c_str(), "w");
      Check(f != nullptr, "card file written");
      std::fputs(c.node(org).card.c_str(), f);
      std::fclose(f);
      args.push_back("--member");
      args.push_back(card_file + "=" + c.node(org).listen());
    }
    auto created = c.Cli(args);
    Check(created.exit_code == 0, "kring-node network create wrote version 1 (signed by gemeente)");
    FILE* f = std::fopen(roster.c_str(), "w");
    Check(f != nullptr, "roster file written");
    std::fputs(created.out.c_str(), f);
    std::fclose(f);
    Check(c.Cli({"network", "sign", "--data", c.node(wijkteam).data_dir, "--file", roster}).exit_code == 0,
          "the wijkteam steward compared the fingerprints and signed it");
    for (const std::string& org : {gemeente, wijkteam, zorg})
      Check(c.Cli({"network", "join", "--data", c.node(org).data_dir, "--file", roster}).exit_code == 0,
            org + " joined: the other members are its partners");
  }

  Step("The three nodes start as separate processes");
  for (const std::string& org : {gemeente, wijkteam, zorg}) Check(c.Start(org), org + " answers /v1/health");
  bool all_connected = LocalCluster::WaitFor([&] {
    for (const std::string& org : {gemeente, wijkteam, zorg}) {
      auto h = Act(c, org, "GET", "/v1/health");
      if (h.status != 200) return false;
      for (auto& p : h.body["peers"]) if (!p["connected"].get<bool>()) return false;
    }
    return true;
  }, 10000);
  Check(all_connected, "every node reports both partners connected (CURVE, partner keys only)");

  Step("The municipality opens a case for a household (a random id: no BSN, no name on the wire) and holds regie");
  auto created = Act(c, gemeente, "POST", "/v1/cases", json{{"label", "Huishouden J. (dossier 2026-114)"}});
  Check(created.status == 201, "case created");
  std::string case_id = created.body.value("case", "");
  std::printf("    case id %s; the label stays on the municipality's node\n", case_id.c_str());

  Step("The citizen consents: the district team may see the whole plan, the care provider only daily activities");
  auto consent = [&](const std::string& grantee, const json& domains, const std::string& purpose) {
    return Act(c, gemeente, "POST", "/v1/cases/" + case_id + "/consents",
                  json{{"grantee", grantee}, {"domains", domains}, {"purpose", purpose},
                       {"basis", "Wmo 2015 art. 5.1.1; toestemming burger"}, {"valid_from", "2026-01-01"},
                       {"given_by", "burger"}, {"evidence", {{"kind", "attested"}, {"reference", "toestemmingsformulier 2026-114"}}}});
  };
  auto wijk_consent = consent(wijkteam, {"*"}, "integrale ondersteuning door het wijkteam");
  auto zorg_consent = consent(zorg, {"daily-activities"}, "dagbesteding");
  Check(wijk_consent.status == 201 && zorg_consent.status == 201, "two consents recorded by the regie organisation, signed");
  std::string zorg_consent_id = zorg_consent.body.value("consent", "");

  Step("The municipality writes a goal about finances");
  const std::string goal_text = "Schulden in beeld en een betaalregeling voor de huur";
  auto goal = Act(c, gemeente, "POST", "/v1/cases/" + case_id + "/items",
                     json{{"kind", "goal"}, {"domain", "finances"},
                          {"data", {{"description", goal_text}, {"status", "active"}, {"target_date", "2027-03-01"}}}});
  Check(goal.status == 201, "goal signed, encrypted to the organisations consent allows, stored");

  Step("The district team receives it, verifies who wrote it, and decrypts it");
  bool got_goal = LocalCluster::WaitFor([&] { return ItemCount(c, wijkteam, case_id) == 1; }, 5000);
  Check(got_goal, "the district team's plan shows 1 item");
  if (got_goal) {
    json item = PlanOf(c, wijkteam, case_id)["items"][0];
    std::printf("    author %s, kind %s, domain %s: \"%s\"\n", item["author"].get<std::string>().c_str(),
                item["kind"].get<std::string>().c_str(), item["domain"].get<std::string>().c_str(),
                item["data"]["description"].get<std::string>().c_str());
    Check(item["author"] == gemeente && item["data"]["description"] == goal_text, "author verified, text decrypted intact");
  }

  Step("The district team plans an action on daily activities with the care provider");
  const std::string action_text = "Dagbesteding twee ochtenden per week";
  auto action = Act(c, wijkteam, "POST", "/v1/cases/" + case_id + "/items",
                       json{{"kind", "action"}, {"domain", "daily-activities"},
                            {"data", {{"what", action_text}, {"who", {{"type", "organisation"}, {"org", zorg}}}, {"due_date", "2026-12-01"}, {"status", "planned"}}}});
  Check(action.status == 201, "action written");
  bool spread = LocalCluster::WaitFor([&] {
    return ItemCount(c, gemeente, case_id) == 2 && ItemCount(c, zorg, case_id) == 1;
  }, 5000);
  Check(spread, "the municipality's plan now shows 2 items, the care provider's 1");

  Step("What each organisation's plan shows");
  for (const std::string& org : {gemeente, wijkteam, zorg}) {
    json plan = PlanOf(c, org, case_id);
    std::printf("    %-20s regisseur %s; %zu item(s):", org.c_str(), plan["regisseur"]["org"].get<std::string>().c_str(),
                plan["items"].size());
    for (auto& f : plan["items"]) std::printf(" %s/%s", f["kind"].get<std::string>().c_str(), f["domain"].get<std::string>().c_str());
    std::printf("\n");
  }

  Step("The care provider's consent does not cover finances: it holds nothing of the goal, readable or not");
  Check(!OnDisk(c, zorg, goal_text), "the goal's text appears nowhere in the care provider's database files");
  Check(Act(c, zorg, "GET", "/v1/health").body.value("fragments", -1) == 1, "the care provider's database holds exactly 1 fragment");

  Step("No plaintext on disk anywhere: plan items are stored encrypted");
  for (const std::string& org : {gemeente, wijkteam, zorg})
    Check(!OnDisk(c, org, goal_text) && !OnDisk(c, org, action_text), org + "'s database files hold no item text");

  Step("The citizen withdraws the care provider's consent; its node purges what it held");
  auto withdrawn = Act(c, gemeente, "POST", "/v1/cases/" + case_id + "/consents/" + zorg_consent_id + "/withdraw");
  Check(withdrawn.status == 200, "consent withdrawn at the regie organisation");
  bool purged = LocalCluster::WaitFor([&] {
    return Act(c, zorg, "GET", "/v1/health").body.value("fragments", -1) == 0;
  }, 2000);
  Check(purged, "within 2 seconds the care provider's node holds nothing of the plan");
  Check(!OnDisk(c, zorg, action_text), "the action's ciphertext is gone from its database files");

  Step("The citizen asks who looked at their plan: the access log (NEN 7513)");
  kring::HttpReply log;
  bool purge_logged = LocalCluster::WaitFor([&] {
    log = Act(c, gemeente, "GET", "/v1/cases/" + case_id + "/access-log");
    for (auto& e : log.body["entries"])
      if (e["action"] == "purge" && e["organisation"] == zorg) return true;
    return false;
  }, 3000);
  Check(log.status == 200 && !log.body["entries"].empty(), "the municipality's access log lists every call, at every organisation");
  Check(purge_logged, "including the care provider's purge, reported to the regie organisation");
  for (auto& e : log.body["entries"])
    std::printf("    %s %-16s %-8s by %s (%s) at %s\n", e["time"].get<std::string>().c_str(), e["action"].get<std::string>().c_str(),
                e["outcome"].get<std::string>().c_str(), e["actor"]["name"].get<std::string>().c_str(),
                e["actor"]["role"].get<std::string>().c_str(), e["organisation"].get<std::string>().c_str());

  Step("The regisseur gives the household a one-time code for the citizen's portal");
  auto invite = Act(c, gemeente, "POST", "/v1/cases/" + case_id + "/citizen-invitations", json{{"given_by", "burger"}});
  Check(invite.status == 201, "a code to write on paper, valid 7 days, stored only as a hash");
  const std::string code = invite.body.value("code", "");
  std::printf("    code %s (until %s); portal http://127.0.0.1:%d/\n", code.c_str(),
              invite.body.value("expires", "").c_str(), portal_port);

  Step("The citizen types the code in the portal; the device makes its own key and proves it holds it");
  kring::CitizenDevice phone(portal_port);  // signs with libsodium where a browser uses Web Crypto
  auto enrolled = phone.Enrol(code);
  Check(enrolled.status == 201, "the municipality's node binds the device key to the case in a signed record");
  Check(phone.Enrol(code).status == 409, "the same code does not work twice");
  Check(Act(c, gemeente, "POST", "/v1/cases/" + case_id + "/consents",
            json{{"grantee", zorg}, {"domains", {"daily-activities"}}, {"purpose", "dagbesteding"},
                 {"basis", "Wmo 2015 art. 5.1.1"}, {"valid_from", "2026-01-01"}, {"given_by", "burger"},
                 {"evidence", {{"kind", "attested"}, {"reference", "formulier"}}}}).status == 403,
        "from now on the municipality cannot grant consent without the citizen (403)");

  Step("The citizen gives the care provider consent again, signed on the device, in the portal");
  auto given = phone.SignDraft("/api/toestemmingen/concept",
                               json{{"organisatie", zorg}, {"levensgebieden", {"daily-activities"}}, {"doel", "dagbesteding"}});
  Check(given.status == 201, "the portal relays the consent the citizen signed; every node checks the signature");
  Check(LocalCluster::WaitFor([&] { return ItemCount(c, zorg, case_id) == 1; }, 10000),
        "the care provider sees the action on daily activities again");

  Step("The citizen withdraws it in the portal; the care provider's node purges again");
  std::string citizen_consent;
  const kring::HttpReply listed = phone.Get("/api/toestemmingen");  // kept: the loop reads into it
  for (auto& t : listed.body["toestemmingen"])
    if (t["organisatie"] == zorg && t["status"] == "active") citizen_consent = t["id"].get<std::string>();
  auto dropped = phone.SignDraft("/api/toestemmingen/" + citizen_consent + "/intrekken/concept", json::object());
  Check(dropped.status == 201, "the withdrawal the citizen signed is recorded");
  Check(LocalCluster::WaitFor([&] { return Act(c, zorg, "GET", "/v1/health").body.value("fragments", -1) == 0; }, 10000),
        "the care provider's node holds nothing of the plan");
  auto looked = phone.Get("/api/logboek");
  Check(looked.status == 200 && !looked.body["regels"].empty(), "the citizen sees in the portal who looked, network-wide");

  Step("What the care provider's case-management system saw, following the change feed instead of polling");
  // One call per page, logged as a system access of the client system, not as a professional's read.
  std::vector<json> feed;
  std::string since;
  for (int page = 0; page < 50; ++page) {
    auto r = c.Call(zorg, "GET", "/v1/changes?limit=100" + (since.empty() ? "" : "&since=" + since));
    if (r.status != 200) break;
    for (auto& e : r.body["changes"]) feed.push_back(e);
    since = r.body["cursor"].get<std::string>();
    if (r.body["changes"].empty()) break;
  }
  bool withdrawal_seen = false, purge_seen = false;
  for (const json& e : feed) {
    withdrawal_seen = withdrawal_seen || e["change"] == "consent-withdrawn";
    purge_seen = purge_seen || e["change"] == "purge";
    std::string what = e.contains("item_kind")  ? e["item_kind"].get<std::string>() + " " + e["item"].get<std::string>().substr(0, 12)
                       : e.contains("consent")  ? "consent " + e["consent"].get<std::string>().substr(0, 12)
                       : e.contains("versions") ? std::to_string(e["versions"].size()) + " version(s)"
                                                : std::string("case ") + e["case"].get<std::string>().substr(0, 12);
    std::printf("    %s %-18s %s\n", e["time"].get<std::string>().c_str(), e["change"].get<std::string>().c_str(), what.c_str());
  }
  Check(!feed.empty() && withdrawal_seen && purge_seen,
        "ids, kinds and times only: the consents given and withdrawn, and the purges that followed");
  Check(json(feed).dump().find("dagbesteding") == std::string::npos, "no plan content in the feed");

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
