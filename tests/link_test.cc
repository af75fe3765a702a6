// Connection diagnostics (issue 13): each partner's link state and cause in /v1/health, the log, peer list and metrics.
#include <doctest/doctest.h>

#include <cerrno>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zmq.h>

#include "examples/cluster.h"
#include "node/link_monitor.h"

namespace kring {
namespace {

using nlohmann::json;

// The partner entry for `peer` in `org`'s /v1/health (null when absent).
json PeerHealth(LocalCluster& c, const std::string& org, const std::string& peer) {
  auto h = c.Call(org, "GET", "/v1/health");
  for (const json& p : h.body["peers"])
    if (p["org"] == peer) return p;
  return nullptr;
}

bool StateIs(LocalCluster& c, const std::string& org, const std::string& peer, const std::string& state) {
  json p = PeerHealth(c, org, peer);
  return p.is_object() && p["state"] == state;
}

std::string HealthStatus(LocalCluster& c, const std::string& org) {
  return c.Call(org, "GET", "/v1/health").body["status"].get<std::string>();
}

// Occurrences of `needle` in the node's log.
size_t LogCount(LocalCluster& c, const std::string& org, const std::string& needle) {
  std::string log = c.Log(org);
  size_t n = 0;
  for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
  return n;
}

// Points `org`'s partner `peer` at `endpoint`: peer remove (when it is one) and peer add.
void SetEndpoint(LocalCluster& c, const std::string& org, const std::string& peer, const std::string& endpoint) {
  c.Cli({"peer", "remove", "--data", c.node(org).data_dir, "--org", peer});
  auto r = c.Cli({"peer", "add", "--data", c.node(org).data_dir, "--card", "-", "--endpoint", endpoint}, c.node(peer).card);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
}

}  // namespace

TEST_CASE("link diagnosis reads the socket events each failure produces") {
  const std::string ep = "tcp://partner.example:7400";
  SUBCASE("handshake with the pinned key: connected, and losing it is unreachable") {
    LinkDiagnosis d(ep, 5000);
    CHECK(d.state() == PeerState::kNeverConnected);
    CHECK_FALSE(d.OnEvent(ZMQ_EVENT_CONNECT_DELAYED, EINPROGRESS, 0));
    CHECK_FALSE(d.OnEvent(ZMQ_EVENT_CONNECTED, 15, 1));
    CHECK(d.OnEvent(ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 0, 2));
    CHECK(d.state() == PeerState::kConnected);
    CHECK(d.last_connected_ms() == 2);
    CHECK(d.OnEvent(ZMQ_EVENT_DISCONNECTED, 15, 3));
    CHECK(d.state() == PeerState::kUnreachable);
    CHECK(d.cause() == "connection lost");
  }
  SUBCASE("ZAP 400 is refused-by-partner, ZAP 300 a temporary refusal") {
    LinkDiagnosis d(ep, 5000);
    d.OnEvent(ZMQ_EVENT_CONNECT_DELAYED, EINPROGRESS, 0);
    d.OnEvent(ZMQ_EVENT_CONNECTED, 15, 0);
    CHECK(d.OnEvent(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400, 0));
    CHECK(d.state() == PeerState::kRefusedByPartner);
    CHECK(d.stalled());  // libzmq will not try again by itself
    CHECK_FALSE(d.OnEvent(ZMQ_EVENT_DISCONNECTED, 15, 0));  // follows every failed handshake
    CHECK_FALSE(d.OnEvent(ZMQ_EVENT_CONNECT_DELAYED, EINPROGRESS, 0));
    CHECK_FALSE(d.stalled());
    CHECK_FALSE(d.OnEvent(ZMQ_EVENT_CONNECT_RETRIED, 100, 0));
    CHECK_FALSE(d.OnEvent(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400, 0));  // the same again: no change
    CHECK(d.OnEvent(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 300, 0));
    CHECK(d.state() == PeerState::kUnreachable);
  }
  SUBCASE("a server that closes the CURVE handshake or speaks another protocol is wrong-key") {
    LinkDiagnosis d(ep, 5000);
    d.OnEvent(ZMQ_EVENT_CONNECT_DELAYED, EINPROGRESS, 0);
    CHECK(d.OnEvent(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, EPIPE, 0));
    CHECK(d.state() == PeerState::kWrongKey);
    CHECK(d.OnEvent(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, 0));
    CHECK(d.state() == PeerState::kWrongKey);
    CHECK(d.cause().find("cryptographic") != std::string::npos);
  }
  SUBCASE("a silent acceptor times the handshake out: unreachable") {
    LinkDiagnosis d(ep, 5000);
    d.OnEvent(ZMQ_EVENT_CONNECT_DELAYED, EINPROGRESS, 0);
    d.OnEvent(ZMQ_EVENT_CONNECTED, 15, 0);
    CHECK(d.OnEvent(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, EAGAIN, 5000));
    CHECK(d.state() == PeerState::kUnreachable);
    CHECK(d.cause().find("handshake timed out") != std::string::npos);
  }
  SUBCASE("refused at once, or closed after the connect timeout") {
    LinkDiagnosis d(ep, 5000);
    d.OnEvent(ZMQ_EVENT_CONNECT_DELAYED, EINPROGRESS, 1000);
    CHECK(d.OnEvent(ZMQ_EVENT_CLOSED, 15, 1001));
    CHECK(d.cause().find("connection refused") != std::string::npos);
    d.OnEvent(ZMQ_EVENT_CONNECT_RETRIED, 100, 1001);
    d.OnEvent(ZMQ_EVENT_CONNECT_DELAYED, EINPROGRESS, 2000);
    CHECK(d.OnEvent(ZMQ_EVENT_CLOSED, 15, 7000));
    CHECK(d.state() == PeerState::kUnreachable);
    CHECK(d.cause().find("timed out after 5 s") != std::string::npos);
  }
  SUBCASE("retries without a connect: the name does not resolve, or no route to a numeric address") {
    LinkDiagnosis d(ep, 5000);
    CHECK(d.OnEvent(ZMQ_EVENT_CONNECT_RETRIED, 100, 0));
    CHECK(d.state() == PeerState::kUnreachable);
    CHECK(d.cause() == "the name partner.example does not resolve (DNS)");
    LinkDiagnosis n("tcp://192.0.2.1:7400", 5000);
    CHECK(n.OnEvent(ZMQ_EVENT_CONNECT_RETRIED, 100, 0));
    CHECK(n.cause() == "no route to 192.0.2.1");
  }
}

TEST_CASE("a partner with nothing listening is unreachable (connection refused), degrades health, then connects") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  c.node("gemeente").run_args = {"--degraded-after-s", "1"};
  REQUIRE(c.Start("gemeente"));
  const std::string line = "partner wijkteam at " + c.node("wijkteam").listen() + ": unreachable: connection refused";
  REQUIRE(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "unreachable"); }, 15000));
  json p = PeerHealth(c, "gemeente", "wijkteam");
  CHECK(p["cause"].get<std::string>().find("connection refused") != std::string::npos);
  CHECK(p["connected"] == false);
  CHECK(p["last_connected"].is_null());
  CHECK(LocalCluster::WaitFor([&] { return HealthStatus(c, "gemeente") == "degraded"; }, 15000));
  CHECK(PeerHealth(c, "gemeente", "wijkteam")["degraded"] == true);
  CHECK(LogCount(c, "gemeente", line) == 1);  // once per change, not per retry
  CHECK(c.Log("gemeente").find("WARN") != std::string::npos);
  auto m = c.Raw("gemeente", "GET", "/metrics", "", {}).raw;
  CHECK(m.find("kring_peer_state{peer=\"wijkteam\",state=\"unreachable\"} 1\n") != std::string::npos);
  CHECK(m.find("kring_peer_state{peer=\"wijkteam\",state=\"connected\"} 0\n") != std::string::npos);
  CHECK(m.find("kring_node_degraded 1\n") != std::string::npos);
  auto list = c.Cli({"peer", "list", "--data", c.node("gemeente").data_dir});
  CHECK(list.out.find("unreachable") != std::string::npos);
  CHECK(list.out.find("connection refused") != std::string::npos);

  REQUIRE(c.Start("wijkteam"));
  REQUIRE(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "connected"); }, 15000));
  CHECK(LocalCluster::WaitFor([&] { return HealthStatus(c, "gemeente") == "ok"; }, 5000));
  p = PeerHealth(c, "gemeente", "wijkteam");
  CHECK(p["connected"] == true);
  CHECK(p["cause"].is_null());
  CHECK(p["last_connected"].is_string());
  CHECK(LogCount(c, "gemeente", "partner wijkteam at " + c.node("wijkteam").listen() + ": connected") == 1);
  m = c.Raw("gemeente", "GET", "/metrics", "", {}).raw;
  CHECK(m.find("kring_peer_state{peer=\"wijkteam\",state=\"connected\"} 1\n") != std::string::npos);
  CHECK(m.find("kring_node_degraded 0\n") != std::string::npos);
  CHECK(c.Cli({"peer", "list", "--data", c.node("gemeente").data_dir}).out.find("connected") != std::string::npos);

  // Losing it again is logged once, and health says so.
  c.Kill("wijkteam");
  CHECK(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "unreachable"); }, 15000));
  CHECK(LocalCluster::WaitFor([&] { return HealthStatus(c, "gemeente") == "degraded"; }, 15000));
}

TEST_CASE("a partner whose name does not resolve is unreachable with the DNS cause") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  SetEndpoint(c, "gemeente", "wijkteam", "tcp://kring.no-such-host.invalid:7400");  // .invalid never resolves (RFC 2606)
  REQUIRE(c.Start("gemeente"));
  REQUIRE(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "unreachable"); }, 30000));
  CHECK(PeerHealth(c, "gemeente", "wijkteam")["cause"] == "the name kring.no-such-host.invalid does not resolve (DNS)");
  CHECK(LogCount(c, "gemeente",
                 "partner wijkteam at tcp://kring.no-such-host.invalid:7400: unreachable: the name kring.no-such-host.invalid "
                 "does not resolve (DNS)") == 1);
}

TEST_CASE("a partner whose connect gets no answer is unreachable: timed out") {
  // A listening socket with a full accept queue: Linux drops further SYNs,
  // as a firewall that drops packets would.
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  REQUIRE(::listen(lfd, 0) == 0);
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    int f = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(f, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    fillers.push_back(f);
  }
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  SetEndpoint(c, "gemeente", "wijkteam", ep);
  REQUIRE(c.Start("gemeente"));
  // Until the connect times out, no attempt has finished: never-connected, no cause.
  json first = PeerHealth(c, "gemeente", "wijkteam");
  if (first["state"] != "unreachable") {
    CHECK(first["state"] == "never-connected");
    CHECK(first["cause"].is_null());
    CHECK(first["connected"] == false);
  }
  REQUIRE(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "unreachable"); }, 30000));
  std::string cause = PeerHealth(c, "gemeente", "wijkteam")["cause"];
  CHECK_MESSAGE(cause.find("connection timed out after 5 s") != std::string::npos, cause);
  CHECK(LogCount(c, "gemeente", "partner wijkteam at " + ep + ": unreachable: connection timed out") == 1);
  for (int f : fillers) ::close(f);
  ::close(lfd);
}

TEST_CASE("a partner that has not added this node refuses it: refused-by-partner, until it adds the card") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  SetEndpoint(c, "gemeente", "wijkteam", c.node("wijkteam").listen());  // one way only
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  REQUIRE(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "refused-by-partner"); }, 15000));
  CHECK(PeerHealth(c, "gemeente", "wijkteam")["cause"].get<std::string>().find("ZAP status 400") != std::string::npos);
  CHECK(LogCount(c, "gemeente", "partner wijkteam at " + c.node("wijkteam").listen() +
                                    ": refused-by-partner: the partner's node refused this node's key (ZAP status 400)") == 1);
  CHECK(c.Cli({"peer", "list", "--data", c.node("gemeente").data_dir}).out.find("refused-by-partner") != std::string::npos);
  auto listed = json::parse(c.Cli({"peer", "list", "--data", c.node("gemeente").data_dir, "--json"}).out);
  CHECK(listed[0]["state"] == "refused-by-partner");

  // The partner adds our card: the link comes up without a restart.
  SetEndpoint(c, "wijkteam", "gemeente", c.node("gemeente").listen());
  CHECK(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "connected"); }, 15000));
  CHECK(LocalCluster::WaitFor([&] { return StateIs(c, "wijkteam", "gemeente", "connected"); }, 15000));
}

TEST_CASE("a node answering at the partner's endpoint with another key is wrong-key, until the endpoint is fixed") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  c.AddNode("zorg", "Zorg");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Connect("gemeente", "zorg"));
  // gemeente's entry for wijkteam names zorg's address: zorg answers, with zorg's key.
  SetEndpoint(c, "gemeente", "wijkteam", c.node("zorg").listen());
  REQUIRE(c.Start("zorg"));
  REQUIRE(c.Start("wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "wrong-key"); }, 15000));
  // wijkteam still reaches gemeente: that must not make gemeente's link to wijkteam "connected".
  CHECK(LocalCluster::WaitFor([&] { return StateIs(c, "wijkteam", "gemeente", "connected"); }, 15000));
  CHECK(StateIs(c, "gemeente", "wijkteam", "wrong-key"));
  CHECK(PeerHealth(c, "gemeente", "wijkteam")["connected"] == false);
  CHECK(StateIs(c, "gemeente", "zorg", "connected"));
  CHECK(LogCount(c, "gemeente", "partner wijkteam at " + c.node("zorg").listen() + ": wrong-key: ") == 1);

  SetEndpoint(c, "gemeente", "wijkteam", c.node("wijkteam").listen());
  CHECK(LocalCluster::WaitFor([&] { return StateIs(c, "gemeente", "wijkteam", "connected"); }, 15000));
  CHECK(LogCount(c, "gemeente", "partner wijkteam at " + c.node("wijkteam").listen() + ": connected") == 1);
}

}  // namespace kring
