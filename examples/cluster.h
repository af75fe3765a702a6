// Runs real kring-node processes on loopback: for the Quick start demo, the multi-process tests and the benchmark.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <nlohmann/json.hpp>

namespace kring {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `argv` to completion, capturing stdout and stderr; `input` goes to stdin.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input = "");

// A loopback TCP port nothing listens on right now.
int FreePort();

struct HttpReply {
  int status = 0;  // 0: no connection
  nlohmann::json body;
  std::string raw;
};

struct ClusterNode {
  std::string org;
  std::string name;
  std::string data_dir;
  int sync_port = 0;
  int api_port = 0;
  std::string token;  // API token of the "demo" client system
  std::string card;   // identity card JSON
  pid_t pid = -1;
  std::string log_path;
  std::vector<std::string> run_args;  // extra flags for `kring-node run`
  bool tls = false;                   // the API speaks HTTPS (self-signed: not verified)

  std::string listen() const { return "tcp://127.0.0.1:" + std::to_string(sync_port); }
};

// Owns a temporary directory with one data directory per node. Kills every
// node it started when destroyed. Not thread-safe.
class LocalCluster {
 public:
  // `binary`: path of kring-node. `sync_interval_ms` is passed to every node.
  explicit LocalCluster(std::string binary, int sync_interval_ms = 250);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // `kring-node init` and `token`; aborts the test program on failure.
  ClusterNode& AddNode(const std::string& org, const std::string& name);
  ClusterNode& node(const std::string& org) { return nodes_.at(org); }
  const std::string& dir() const { return dir_; }

  // `peer add` of b's card on a, and of a's card on b.
  bool Connect(const std::string& a, const std::string& b);

  // Starts `kring-node run` and waits until /v1/health answers.
  bool Start(const std::string& org, int timeout_ms = 10000);
  // SIGTERM and wait; returns the exit status (0 when it stopped cleanly).
  int Stop(const std::string& org);
  // SIGKILL and wait: a crash.
  void Kill(const std::string& org);
  bool Running(const std::string& org) const;

  // Runs kring-node with `args`.
  CommandResult Cli(const std::vector<std::string>& args, const std::string& input = "") const;

  // An API call on `org`'s node as the demo client system and a professional.
  HttpReply Call(const std::string& org, const std::string& method, const std::string& path,
                 const std::optional<nlohmann::json>& body = std::nullopt,
                 const std::map<std::string, std::string>& extra_headers = {}) const;
  // A raw request (no default headers) for tests of authentication and limits.
  HttpReply Raw(const std::string& org, const std::string& method, const std::string& path, const std::string& body,
                const std::map<std::string, std::string>& headers) const;

  // Polls `pred` every 20 ms until it is true or `timeout_ms` passes.
  static bool WaitFor(const std::function<bool()>& pred, int timeout_ms);

  // The node's log so far (its stderr).
  std::string Log(const std::string& org) const;

 private:
  std::string binary_;
  int sync_interval_ms_;
  std::string dir_;
  std::map<std::string, ClusterNode> nodes_;
};

}  // namespace kring
