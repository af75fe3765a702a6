// Multi-process tests of backup, restore and access-log checkpoints on real kring-node processes (issue 11).
#include <doctest/doctest.h>

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
