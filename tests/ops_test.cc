// Running kring-node as a service (issue 14): the configuration file and its precedence, and the shipped alert rules.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>

#include <httplib.h>
#include <yaml-cpp/yaml.h>

#include "examples/cluster.h"

namespace kring {
namespace {

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Whether something answers HTTP on the loopback port.
bool Answers(int port) {
  httplib::Client cli("http://127.0.0.1:" + std::to_string(port));
  cli.set_connection_timeout(2);
  auto r = cli.Get("/portaal.css");
  return r && r->status == 200;
}

// Sets an environment variable for the nodes started in this scope.
struct ScopedEnv {
  ScopedEnv(const char* name, const std::string& value) : name(name) { ::setenv(name, value.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name); }
  const char* name;
};

}  // namespace

TEST_CASE("run takes its options from --config, KRING_* variables win over the file, flags over both") {
  LocalCluster c(KRING_NODE_BINARY);
  ClusterNode& n = c.AddNode("gemeente", "Gemeente");
  const int file_port = FreePort(), env_port = FreePort(), flag_port = FreePort();
  const std::string config = c.dir() + "/kring.toml";
  WriteFile(config, "# test\ndata = \"" + n.data_dir + "\"\n\n[run]\nportal = \"127.0.0.1:" + std::to_string(file_port) +
                        "\"\nsync-interval-ms = 300\n\n[peer.list]\njson = true\n");

  SUBCASE("the file") {
    n.run_args = {"--config", config};
    REQUIRE(c.Start("gemeente"));
    CHECK(Answers(file_port));
  }
  SUBCASE("the environment over the file") {
    ScopedEnv env("KRING_PORTAL", "127.0.0.1:" + std::to_string(env_port));
    n.run_args = {"--config", config};
    REQUIRE(c.Start("gemeente"));
    CHECK(Answers(env_port));
    CHECK_FALSE(Answers(file_port));
  }
  SUBCASE("a flag over the environment and the file; KRING_CONFIG names the file") {
    ScopedEnv file("KRING_CONFIG", config);
    ScopedEnv env("KRING_PORTAL", "127.0.0.1:" + std::to_string(env_port));
    n.run_args = {"--portal", "127.0.0.1:" + std::to_string(flag_port)};
    REQUIRE(c.Start("gemeente"));
    CHECK(Answers(flag_port));
    CHECK_FALSE(Answers(env_port));
    CHECK_FALSE(Answers(file_port));
  }
  SUBCASE("other commands take data from the file, or from KRING_DATA") {
    auto listed = c.Cli({"peer", "list", "--config", config});
    CHECK_MESSAGE(listed.exit_code == 0, listed.err);
    CHECK(listed.out == "[]\n");  // [peer.list] json = true
    ScopedEnv data("KRING_DATA", n.data_dir);
    CHECK(c.Cli({"card"}).out.find("\"gemeente\"") != std::string::npos);
    CHECK(c.Cli({"peer", "list", "--config", config, "--data", "/nonexistent"}).exit_code != 0);  // the flag wins
  }
  SUBCASE("a wrong value or an unknown key is refused, whichever way it comes") {
    ScopedEnv env("KRING_SYNC_INTERVAL_MS", "10");
    auto bad = c.Cli({"run", "--config", config});
    CHECK(bad.exit_code != 0);
    CHECK(bad.err.find("--sync-interval-ms") != std::string::npos);
    WriteFile(config, "data = \"" + n.data_dir + "\"\n[run]\nlisten-on = \"tcp://127.0.0.1:1\"\n");
    auto typo = c.Cli({"run", "--config", config});
    CHECK(typo.exit_code != 0);
    CHECK(typo.err.find("listen-on") != std::string::npos);
    CHECK(c.Cli({"card", "--config", c.dir() + "/missing.toml"}).exit_code != 0);
  }
}

TEST_CASE("the shipped example configuration is read by run") {
  LocalCluster c(KRING_NODE_BINARY);
  ClusterNode& n = c.AddNode("gemeente", "Gemeente");
  // Its data, listen and api are the production ones; the cluster's flags replace them.
  n.run_args = {"--config", std::string(KRING_SOURCE_DIR) + "/packaging/kring.toml"};
  REQUIRE(c.Start("gemeente"));
  CHECK(c.Call("gemeente", "GET", "/v1/health").body["status"] == "ok");
}

TEST_CASE("every metric the shipped alert rules use is served by a running node") {
  YAML::Node rules = YAML::LoadFile(std::string(KRING_SOURCE_DIR) + "/packaging/kring-alerts.yml");
  std::set<std::string> used;
  size_t alerts = 0;
  for (const YAML::Node& group : rules["groups"]) {
    for (const YAML::Node& rule : group["rules"]) {
      ++alerts;
      INFO(rule["alert"].as<std::string>());
      CHECK(rule["labels"]["severity"].IsScalar());
      CHECK(rule["annotations"]["summary"].IsScalar());
      CHECK(rule["annotations"]["description"].IsScalar());
      std::string expr = rule["expr"].as<std::string>();
      static const std::regex metric("kring_[a-z_]+");
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), metric); it != std::sregex_iterator(); ++it)
        used.insert(it->str());
    }
  }
  CHECK(alerts >= 8);
  REQUIRE(used.size() >= 8);
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  std::string metrics = c.Raw("gemeente", "GET", "/metrics", "", {}).raw;
  for (const std::string& m : used) CHECK_MESSAGE(metrics.find("# TYPE " + m + " ") != std::string::npos, m);
}

}  // namespace kring
