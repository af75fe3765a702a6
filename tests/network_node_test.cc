// Issue 13 on real nodes: a network started from one signed roster, a member added and removed by stewards, keys rotated and replaced.
#include <doctest/doctest.h>

#include <chrono>
#include <dirent.h>
#include <fstream>
#include <thread>

#include "examples/cluster.h"
#include "protocol/card.h"
#include "protocol/fragment.h"
#include "protocol/roster.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

namespace {

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string CardFile(LocalCluster& c, const std::string& org) {
  std::string path = c.dir() + "/" + org + ".card";
  WriteFile(path, c.node(org).card);
  return path;
}

// Runs a CLI command that must succeed; returns its stdout.
std::string MustRun(LocalCluster& c, const std::vector<std::string>& args) {
  auto r = c.Cli(args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return r.out;
}

bool AllConnected(LocalCluster& c, const std::vector<std::string>& orgs) {
  for (const std::string& a : orgs)
    for (const std::string& b : orgs)
      if (a != b && !Connected(c, a, b)) return false;
  return true;
}

std::vector<std::string> PartnersOf(LocalCluster& c, const std::string& org) {
  auto list = json::parse(MustRun(c, {"peer", "list", "--data", c.node(org).data_dir, "--json"}));
  std::vector<std::string> out;
  for (auto& p : list) out.push_back(p["card"]["org"]);
  return out;
}

int RosterVersion(LocalCluster& c, const std::string& org) {
  auto r = c.Cli({"network", "show", "--data", c.node(org).data_dir, "--json"});
  if (r.exit_code != 0) return 0;
  return json::parse(r.out)["version"].get<int>();
}

kring::NodeIdentity KeysIn(const std::string& path) {
  auto k = kring::ReadKeyFile(path);
  REQUIRE_MESSAGE(k.ok(), k.status().ToString());
  return std::move(*k);
}

// The one key file in DATA/retired-keys (the keys before a rotation).
kring::NodeIdentity RetiredKeys(LocalCluster& c, const std::string& org) {
  std::string dir = c.node(org).data_dir + "/retired-keys";
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  std::string file;
  while (dirent* e = readdir(d))
    if (std::string(e->d_name).size() > 4 && std::string(e->d_name).find(".key") != std::string::npos) file = e->d_name;
  closedir(d);
  REQUIRE(!file.empty());
  return KeysIn(dir + "/" + file);
}

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A note fragment signed by `author` now, for `case_id`, sealed to `to`.
kring::Bytes NoteSignedBy(const kring::NodeIdentity& author, const std::string& case_id, const std::string& domain,
                          const std::vector<kring::PublicIdentity>& to) {
  kring::FragmentDraft d;
  REQUIRE(kring::CaseIdFromHex(case_id, &d.case_id));
  d.kind = "note";
  d.domain = domain;
  d.hlc = kring::MakeHlc(static_cast<uint64_t>(NowMillis()), 7);
  std::string text = R"({"text":"geschreven met een oude sleutel"})";
  d.body.assign(text.begin(), text.end());
  d.recipients = to;
  auto f = kring::SealFragment(d, author);
  REQUIRE(f.ok());
  return kring::EncodeFragmentRecord(*f);
}

kring::PublicIdentity CardOf(LocalCluster& c, const std::string& org) {
  auto pub = kring::ReadKeyFile(c.node(org).data_dir + "/node.key");
  REQUIRE(pub.ok());
  return pub->pub;
}

}  // namespace

TEST_CASE("issue 13: a network of four from one roster grows, shrinks, rotates keys and survives a stolen key") {
  LocalCluster c(KRING_NODE_BINARY);
  const std::vector<std::string> four = {"gemeente", "wijkteam", "zorg", "schuld"};
  for (const std::string& org : four) c.AddNode(org, "Org " + org);
  const std::string roster = c.dir() + "/roster-v1.json";
  {
    std::vector<std::string> args = {"network", "create", "--data", c.node("gemeente").data_dir, "--name", "Kenis Test",
                                      "--stewards", "gemeente,wijkteam,zorg", "--threshold", "2"};
    for (const std::string& org : four) {
      args.push_back("--member");
      args.push_back(CardFile(c, org) + "=" + c.node(org).listen());
    }
    WriteFile(roster, MustRun(c, args));
  }
  // Version 1 needs every founding steward: joining before all signed is refused.
  auto early = c.Cli({"network", "join", "--data", c.node("schuld").data_dir, "--file", roster});
  CHECK(early.exit_code != 0);
  CHECK(early.err.find("roster_threshold") != std::string::npos);
  MustRun(c, {"network", "sign", "--data", c.node("wijkteam").data_dir, "--file", roster});
  MustRun(c, {"network", "sign", "--data", c.node("zorg").data_dir, "--file", roster});
  for (const std::string& org : four) MustRun(c, {"network", "join", "--data", c.node(org).data_dir, "--file", roster});
  // The fingerprint people compare is in `network show`.
  auto show = MustRun(c, {"network", "show", "--data", c.node("schuld").data_dir});
  CHECK(show.find(kring::CardFingerprint(CardOf(c, "gemeente"))) != std::string::npos);

  for (const std::string& org : four) REQUIRE_MESSAGE(c.Start(org), c.Log(org));
  REQUIRE_MESSAGE(LocalCluster::WaitFor([&] { return AllConnected(c, four); }, 20000), c.Log("gemeente"));

  // Syncing without a single peer add.
  std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!case_id.empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"housing"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "schuld", {"finances"}).empty());
  REQUIRE(!Grant(c, "gemeente", case_id, "zorg", {"physical-health"}).empty());
  REQUIRE(Note(c, "gemeente", case_id, "housing", "huurachterstand besproken").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 10000));

  // --- a fifth member, by a proposal two stewards signed ---
  c.AddNode("huis", "Woningcorporatie");
  const std::string proposal = c.dir() + "/roster-v2.json";
  WriteFile(proposal, MustRun(c, {"network", "propose", "--data", c.node("gemeente").data_dir, "--add", CardFile(c, "huis"),
                                  "--endpoint", c.node("huis").listen()}));
  // Signed by one steward only: refused by the CLI and, pushed directly, by every node.
  auto weak = c.Cli({"network", "submit", "--data", c.node("gemeente").data_dir, "--file", proposal});
  CHECK(weak.exit_code != 0);
  CHECK(weak.err.find("roster_threshold") != std::string::npos);
  {
    auto r = kring::RosterFromJson(Slurp(proposal));
    REQUIRE(r.ok());
    PushAs(c, "gemeente", "zorg", {kring::EncodeRoster(*r)});
    CHECK(LocalCluster::WaitFor([&] { return Rejected(c, "zorg", "roster_threshold") >= 1; }, 5000));
    // A signature of a non-steward is refused as such.
    auto bad = *r;
    REQUIRE(kring::SignRoster(&bad, KeysIn(c.node("schuld").data_dir + "/node.key")).ok());
    PushAs(c, "schuld", "wijkteam", {kring::EncodeRoster(bad)});
    CHECK(LocalCluster::WaitFor([&] { return Rejected(c, "wijkteam", "roster_not_steward") >= 1; }, 5000));
    CHECK(RosterVersion(c, "zorg") == 1);
  }
  MustRun(c, {"network", "sign", "--data", c.node("wijkteam").data_dir, "--file", proposal});
  MustRun(c, {"network", "submit", "--data", c.node("gemeente").data_dir, "--file", proposal});
  MustRun(c, {"network", "join", "--data", c.node("huis").data_dir, "--file", proposal});
  REQUIRE(c.Start("huis"));
  std::vector<std::string> five = four;
  five.push_back("huis");
  REQUIRE_MESSAGE(LocalCluster::WaitFor([&] { return AllConnected(c, five); }, 20000), c.Log("zorg"));
  for (const std::string& org : five) CHECK(RosterVersion(c, org) == 2);

  // --- removing a member cuts it off everywhere ---
  const std::string removal = c.dir() + "/roster-v3.json";
  WriteFile(removal, MustRun(c, {"network", "propose", "--data", c.node("zorg").data_dir, "--remove", "schuld"}));
  MustRun(c, {"network", "sign", "--data", c.node("wijkteam").data_dir, "--file", removal});
  MustRun(c, {"network", "submit", "--data", c.node("wijkteam").data_dir, "--file", removal});
  const std::vector<std::string> rest = {"gemeente", "wijkteam", "zorg", "huis"};
  REQUIRE(LocalCluster::WaitFor([&] {
    for (const std::string& org : rest)
      if (RosterVersion(c, org) != 3) return false;
    return true;
  }, 15000));
  for (const std::string& org : rest) {
    auto partners = PartnersOf(c, org);
    CHECK(std::find(partners.begin(), partners.end(), "schuld") == partners.end());
  }
  {
    auto consents = c.Call("gemeente", "GET", "/v1/cases/" + case_id + "/consents");
    bool removed = false;
    for (auto& e : consents.body["consents"])
      if (e["grantee"] == "schuld") removed = e["grantee_status"] == "removed";
    CHECK_MESSAGE(removed, consents.body.dump());
    auto w = Note(c, "gemeente", case_id, "finances", "betalingsregeling");
    REQUIRE(w.status == 201);
    REQUIRE(w.body.contains("warnings"));
    CHECK(w.body["warnings"][0].get<std::string>().find("schuld") != std::string::npos);
  }

  // --- wijkteam rotates its keys: nothing stranded ---
  const kring::NodeIdentity wijkteam_old = KeysIn(c.node("wijkteam").data_dir + "/node.key");
  MustRun(c, {"keys", "rotate", "--data", c.node("wijkteam").data_dir, "--switch-after-s", "3"});
  REQUIRE_MESSAGE(LocalCluster::WaitFor([&] {
    auto now = CardOf(c, "wijkteam");
    return now.sign_pk != wijkteam_old.pub.sign_pk;
  }, 15000), c.Log("wijkteam"));
  c.node("wijkteam").card = kring::CardToJson(CardOf(c, "wijkteam"));  // what PushAs connects to
  REQUIRE_MESSAGE(LocalCluster::WaitFor([&] { return AllConnected(c, rest); }, 20000), (c.Log("wijkteam").substr(0, 20000) + std::string("\n---- gemeente\n") + c.Log("gemeente").substr(0, 20000)));
  // It still reads what it could read before (re-sealed to its new key) ...
  CHECK(PlanItems(c, "wijkteam", case_id) >= 1);
  // ... partners accept what it writes with its new key ...
  REQUIRE(Note(c, "wijkteam", case_id, "housing", "na de sleutelwissel").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "gemeente", case_id) == 3; }, 10000));
  // ... and refuse a fragment signed with its old key after the switch.
  PushAs(c, "wijkteam", "gemeente", {NoteSignedBy(wijkteam_old, case_id, "housing", {CardOf(c, "gemeente")})});
  CHECK_MESSAGE(LocalCluster::WaitFor([&] { return Rejected(c, "gemeente", "retired_key") >= 1; }, 5000),
                c.Raw("gemeente", "GET", "/metrics", "", {}).raw);

  // --- zorg's keys are stolen: two stewards replace them ---
  REQUIRE(c.Stop("zorg") == 0);
  const kring::NodeIdentity zorg_old = KeysIn(c.node("zorg").data_dir + "/node.key");
  const std::string zorg_new_card = c.dir() + "/zorg-new.card";
  WriteFile(zorg_new_card, MustRun(c, {"keys", "rotate", "--emergency", "--data", c.node("zorg").data_dir}));
  const std::string emergency = c.dir() + "/roster-v4.json";
  WriteFile(emergency, MustRun(c, {"network", "propose", "--data", c.node("gemeente").data_dir, "--replace-keys", zorg_new_card}));
  MustRun(c, {"network", "sign", "--data", c.node("wijkteam").data_dir, "--file", emergency});
  MustRun(c, {"network", "submit", "--data", c.node("gemeente").data_dir, "--file", emergency});
  c.node("zorg").card = Slurp(zorg_new_card);
  REQUIRE(c.Start("zorg"));
  REQUIRE_MESSAGE(LocalCluster::WaitFor([&] { return AllConnected(c, rest); }, 20000), c.Log("zorg"));
  REQUIRE(LocalCluster::WaitFor([&] { return RosterVersion(c, "zorg") == 4 && RosterVersion(c, "huis") == 4; }, 15000));
  // zorg still reads what was sealed to its old key (kept in retired-keys).
  REQUIRE(Note(c, "gemeente", case_id, "physical-health", "afspraak huisarts").status == 201);
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "zorg", case_id) >= 1; }, 10000));
  // What the thief signs with the stolen key from now on is refused everywhere.
  REQUIRE(!Grant(c, "gemeente", case_id, "wijkteam", {"physical-health"}).empty());
  REQUIRE(AwaitCase(c, "gemeente", {"wijkteam"}, case_id));
  auto stolen = NoteSignedBy(zorg_old, case_id, "physical-health", {CardOf(c, "gemeente"), CardOf(c, "wijkteam")});
  PushAs(c, "zorg", "wijkteam", {stolen});
  PushAs(c, "zorg", "gemeente", {stolen});
  CHECK_MESSAGE(LocalCluster::WaitFor([&] {
    return Rejected(c, "gemeente", "retired_key") >= 2 && Rejected(c, "wijkteam", "retired_key") >= 1;
  }, 15000), (c.Raw("wijkteam", "GET", "/metrics", "", {}).raw + c.Log("wijkteam").substr(c.Log("wijkteam").size() > 6000 ? c.Log("wijkteam").size() - 6000 : 0)));
}

TEST_CASE("issue 13: fingerprints are printed where people compare them") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  auto card = c.Cli({"card", "--data", c.node("gemeente").data_dir});
  REQUIRE(card.exit_code == 0);
  auto pub = kring::CardFromJson(card.out);
  REQUIRE(pub.ok());
  const std::string fp = kring::CardFingerprint(*pub);
  CHECK(fp.size() == 8 * 4 + 7);
  CHECK(card.err.find(fp) != std::string::npos);
  auto add = c.Cli({"peer", "add", "--data", c.node("wijkteam").data_dir, "--card", CardFile(c, "gemeente"), "--endpoint",
                    c.node("gemeente").listen()});
  REQUIRE(add.exit_code == 0);
  CHECK(add.err.find(fp) != std::string::npos);
  auto list = c.Cli({"peer", "list", "--data", c.node("wijkteam").data_dir});
  CHECK(list.out.find(fp) != std::string::npos);
}

TEST_CASE("issue 13: a partner cannot make a node join a network of its choosing") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  // wijkteam founds a network of its own with gemeente in it, steward alone.
  const std::string roster = c.dir() + "/roster.json";
  WriteFile(roster, MustRun(c, {"network", "create", "--data", c.node("wijkteam").data_dir, "--name", "Eigen net",
                                "--stewards", "wijkteam", "--threshold", "1", "--endpoint", c.node("wijkteam").listen(),
                                "--member", CardFile(c, "gemeente") + "=" + c.node("gemeente").listen()}));
  REQUIRE(c.Start("gemeente"));
  auto r = kring::RosterFromJson(Slurp(roster));
  REQUIRE(r.ok());
  PushAs(c, "wijkteam", "gemeente", {kring::EncodeRoster(*r)});
  CHECK(LocalCluster::WaitFor([&] { return Rejected(c, "gemeente", "not_addressed") >= 1; }, 5000));
  CHECK(RosterVersion(c, "gemeente") == 0);
}
