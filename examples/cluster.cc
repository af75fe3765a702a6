// Process, port and HTTP plumbing for LocalCluster.
#include "examples/cluster.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <httplib.h>

namespace kring {

namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "cluster: %s\n", what.c_str());
  std::exit(3);
}

std::vector<char*> Argv(const std::vector<std::string>& args) {
  std::vector<char*> out;
  for (const std::string& a : args) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input) {
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) || pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC)) Die("pipe failed");
  pid_t pid = fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    auto args = Argv(argv);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (!input.empty()) {
    ssize_t n = write(in_pipe[1], input.data(), input.size());
    (void)n;
  }
  close(in_pipe[1]);
  CommandResult r;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Die("cannot bind a probe socket");
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

LocalCluster::LocalCluster(std::string binary, int sync_interval_ms)
    : binary_(std::move(binary)), sync_interval_ms_(sync_interval_ms) {
  std::string tmpl = "/tmp/kring-cluster-XXXXXX";
  if (!mkdtemp(tmpl.data())) Die("mkdtemp failed");
  dir_ = tmpl;
  std::signal(SIGPIPE, SIG_IGN);
}

LocalCluster::~LocalCluster() {
  for (auto& [org, n] : nodes_) {
    if (n.pid > 0) Kill(org);
  }
  if (!std::getenv("KRING_KEEP_TEST_DIRS")) RunCommand({"/bin/rm", "-rf", dir_});
}

CommandResult LocalCluster::Cli(const std::vector<std::string>& args, const std::string& input) const {
  std::vector<std::string> argv = {binary_};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, input);
}

ClusterNode& LocalCluster::AddNode(const std::string& org, const std::string& name) {
  ClusterNode n;
  n.org = org;
  n.name = name;
  n.data_dir = dir_ + "/" + org;
  n.sync_port = FreePort();
  n.api_port = FreePort();
  n.log_path = dir_ + "/" + org + ".log";
  CommandResult init = Cli({"init", "--data", n.data_dir, "--org", org, "--name", name});
  if (init.exit_code != 0) Die("init " + org + " failed: " + init.err);
  n.card = init.out;
  CommandResult tok = Cli({"token", "--data", n.data_dir, "--client", "demo"});
  if (tok.exit_code != 0) Die("token for " + org + " failed: " + tok.err);
  n.token = tok.out.substr(0, tok.out.find('\n'));
  return nodes_[org] = n;
}

bool LocalCluster::Connect(const std::string& a, const std::string& b) {
  const ClusterNode& na = nodes_.at(a);
  const ClusterNode& nb = nodes_.at(b);
  CommandResult r1 = Cli({"peer", "add", "--data", na.data_dir, "--card", "-", "--endpoint", nb.listen()}, nb.card);
  CommandResult r2 = Cli({"peer", "add", "--data", nb.data_dir, "--card", "-", "--endpoint", na.listen()}, na.card);
  return r1.exit_code == 0 && r2.exit_code == 0;
}

bool LocalCluster::Start(const std::string& org, int timeout_ms) {
  ClusterNode& n = nodes_.at(org);
  if (n.pid > 0) return true;
  std::vector<std::string> args = {binary_, "run", "--data", n.data_dir, "--listen", n.listen(),
                                   "--api", "127.0.0.1:" + std::to_string(n.api_port),
                                   "--sync-interval-ms", std::to_string(sync_interval_ms_)};
  args.insert(args.end(), n.run_args.begin(), n.run_args.end());
  int log_fd = open(n.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  pid_t pid = fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(log_fd, 2);
    auto argv = Argv(args);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  n.pid = pid;
  return WaitFor([&] {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      n.pid = -1;
      return true;  // exited: stop waiting, report below
    }
    return Raw(org, "GET", "/v1/health", "", {}).status == 200;
  }, timeout_ms) && n.pid > 0;
}

int LocalCluster::Stop(const std::string& org) {
  ClusterNode& n = nodes_.at(org);
  if (n.pid <= 0) return -1;
  kill(n.pid, SIGTERM);
  int status = 0;
  waitpid(n.pid, &status, 0);
  n.pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void LocalCluster::Kill(const std::string& org) {
  ClusterNode& n = nodes_.at(org);
  if (n.pid <= 0) return;
  kill(n.pid, SIGKILL);
  int status = 0;
  waitpid(n.pid, &status, 0);
  n.pid = -1;
}

bool LocalCluster::Running(const std::string& org) const { return nodes_.at(org).pid > 0; }

HttpReply LocalCluster::Raw(const std::string& org, const std::string& method, const std::string& path,
                            const std::string& body, const std::map<std::string, std::string>& headers) const {
  const ClusterNode& n = nodes_.at(org);
  httplib::Client cli((n.tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(n.api_port));
  cli.enable_server_certificate_verification(false);
  cli.set_tcp_nodelay(true);
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(10, 0);
  httplib::Headers h;
  for (auto& [k, v] : headers) h.emplace(k, v);
  auto send = [&]() -> httplib::Result {
    if (method == "POST") return cli.Post(path, h, body, "application/json");
    if (method == "PUT") return cli.Put(path, h, body, "application/json");
    if (method == "DELETE") return cli.Delete(path, h, body, "application/json");
    return cli.Get(path, h);
  };
  httplib::Result res = send();
  HttpReply r;
  if (!res) return r;
  r.status = res->status;
  r.raw = res->body;
  r.body = nlohmann::json::parse(res->body, nullptr, false);
  return r;
}

HttpReply LocalCluster::Call(const std::string& org, const std::string& method, const std::string& path,
                             const std::optional<nlohmann::json>& body,
                             const std::map<std::string, std::string>& extra_headers) const {
  std::map<std::string, std::string> h = {{"Authorization", "Bearer " + nodes_.at(org).token},
                                          {"X-Kring-Actor", "demo-professional"},
                                          {"X-Kring-Actor-Name", "Demo Professional"},
                                          {"X-Kring-Role", "regisseur"}};
  for (auto& [k, v] : extra_headers) h[k] = v;
  return Raw(org, method, path, body ? body->dump() : "", h);
}

bool LocalCluster::WaitFor(const std::function<bool()>& pred, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string LocalCluster::Log(const std::string& org) const {
  std::ifstream in(nodes_.at(org).log_path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace kring
