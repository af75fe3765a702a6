// Multi-process tests of backup, restore and access-log checkpoints on real kring-node processes (issue 11).
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "examples/cluster.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using namespace kring::steps;

TEST_CASE("issue 11: a token revoked after a backup gives 401 after restore, and audit verify reports the gap") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  const std::string dir = c.node("gemeente").data_dir;
  const std::string file = c.dir() + "/gemeente.backup";
  REQUIRE(c.Start("gemeente"));
  REQUIRE(!CreateCase(c, "gemeente").empty());

  // Taken while the node runs.
  auto backup = c.Cli({"backup", "--data", dir, "--to", file});
  INFO(backup.err);
  REQUIRE(backup.exit_code == 0);
  struct stat sb {};
  REQUIRE(::stat(file.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0600);
  CHECK(c.Cli({"backup", "--data", dir, "--to", file}).exit_code != 0);  // never overwrites

  REQUIRE(!CreateCase(c, "gemeente").empty());  // logged after the backup: lost by the restore
  REQUIRE(c.Cli({"token", "--data", dir, "--revoke", "demo"}).exit_code == 0);
  CHECK(c.Call("gemeente", "GET", "/v1/cases").status == 401);

  auto refused = c.Cli({"restore", "--from", file, "--data", dir});
  CHECK(refused.exit_code != 0);
  CHECK(refused.err.find("is the node running?") != std::string::npos);
  REQUIRE(c.Stop("gemeente") == 0);
  // The clean stop signed a checkpoint of the whole log (2 cases created and logged).
  auto own = c.Cli({"audit", "checkpoints", "--data", dir, "--org", "gemeente"});
  REQUIRE(own.exit_code == 0);
  CHECK(nlohmann::json::parse(own.out)["entries"].get<int64_t>() >= 2);

  auto restored = c.Cli({"restore", "--from", file, "--data", dir});
  INFO(restored.err);
  REQUIRE(restored.exit_code == 0);
  CHECK(restored.err.find("1 API token(s) revoked") != std::string::npos);
  REQUIRE(c.Start("gemeente"));
  CHECK(c.Call("gemeente", "GET", "/v1/cases").status == 401);  // the revocation did not come back to life

  auto verify = c.Cli({"audit", "verify", "--data", dir});
  CHECK(verify.exit_code == 2);
  CHECK(verify.out.find("restored from a backup of") != std::string::npos);
  CHECK(verify.out.find("intact,") != std::string::npos);  // the chain itself holds
  CHECK(verify.out.find("INCOMPLETE") != std::string::npos);

  SUBCASE("the operator issues a new token") {
    auto t = c.Cli({"token", "--data", dir, "--client", "demo"});
    REQUIRE(t.exit_code == 0);
    std::string token = t.out.substr(0, t.out.find('\n'));
    auto r = c.Raw("gemeente", "GET", "/v1/cases", "",
                   {{"Authorization", "Bearer " + token}, {"X-Kring-Actor", "p1"}, {"X-Kring-Actor-Name", "P"},
                    {"X-Kring-Role", "casemanager"}});
    CHECK(r.status == 200);
  }
}

TEST_CASE("the command line explains backup, restore and audit, and refuses bad input clearly") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  const std::string dir = c.node("gemeente").data_dir;
  for (auto args : std::vector<std::vector<std::string>>{{"backup", "--help"}, {"restore", "--help"},
                                                          {"audit", "verify", "--help"}, {"audit", "checkpoints", "--help"}}) {
    auto r = c.Cli(args);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("--data") != std::string::npos);
  }
  CHECK(c.Cli({"backup", "--data", dir}).exit_code != 0);  // no --to
  auto missing = c.Cli({"restore", "--from", c.dir() + "/nothing", "--data", dir});
  CHECK(missing.exit_code != 0);
  auto junk = c.Cli({"audit", "verify", "--data", dir, "--checkpoint", dir + "/node.key"});
  CHECK(junk.exit_code == 1);
  CHECK(junk.err.find("not a checkpoint line") != std::string::npos);
}

TEST_CASE("issue 11: audit verify --against-partners names the partner whose copy shows a log put back by hand") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  const std::string dir = c.node("gemeente").data_dir;
  const std::string file = c.dir() + "/raw.db";
  REQUIRE(!CreateCase(c, "gemeente").empty());
  REQUIRE(c.Cli({"backup", "--data", dir, "--to", file}).exit_code == 0);  // a plain SQLite copy
  REQUIRE(!CreateCase(c, "gemeente").empty());
  REQUIRE(!CreateCase(c, "gemeente").empty());
  REQUIRE(c.Cli({"audit", "sign-checkpoint", "--data", dir}).exit_code == 0);
  // The partner keeps the newest checkpoint of the municipality's log.
  REQUIRE(LocalCluster::WaitFor([&] {
    auto held = c.Cli({"audit", "checkpoints", "--data", c.node("wijkteam").data_dir, "--org", "gemeente"});
    return held.exit_code == 0 && !held.out.empty() && nlohmann::json::parse(held.out)["entries"].get<int64_t>() >= 3;
  }, 10000));
  auto healthy = c.Cli({"audit", "verify", "--data", dir, "--against-partners"});
  CHECK(healthy.exit_code == 0);
  CHECK(healthy.out.find("none differs") != std::string::npos);

  // Someone puts the older database back by hand, bypassing restore.
  REQUIRE(c.Stop("gemeente") == 0);
  for (const char* suffix : {"-wal", "-shm"}) std::remove((dir + "/kring.db" + suffix).c_str());
  {
    std::ifstream in(file, std::ios::binary);
    std::ofstream out(dir + "/kring.db", std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  }
  REQUIRE(::chmod((dir + "/kring.db").c_str(), 0600) == 0);
  REQUIRE(c.Start("gemeente"));
  // Reconciliation hands the partner's copy back; verify names it.
  bool named = LocalCluster::WaitFor([&] {
    auto v = c.Cli({"audit", "verify", "--data", dir, "--against-partners"});
    return v.exit_code == 1 && v.out.find("wijkteam handed back") != std::string::npos;
  }, 15000);
  auto v = c.Cli({"audit", "verify", "--data", dir, "--against-partners"});
  INFO(v.out);
  CHECK(named);
}
