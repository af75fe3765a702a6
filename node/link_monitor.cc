// Reads a partner link's socket events into never-connected, connected, refused-by-partner, unreachable or wrong-key.
#include "node/link_monitor.h"

#include <atomic>
#include <cerrno>
#include <cstring>

#include <arpa/inet.h>

namespace kring {

const char* PeerStateName(PeerState s) {
  switch (s) {
    case PeerState::kNeverConnected: return "never-connected";
    case PeerState::kConnected: return "connected";
    case PeerState::kRefusedByPartner: return "refused-by-partner";
    case PeerState::kUnreachable: return "unreachable";
    case PeerState::kWrongKey: return "wrong-key";
  }
  return "unknown";
}

namespace {

// "tcp://host:port" -> "host" (brackets of an IPv6 literal removed).
std::string HostOf(const std::string& endpoint) {
  std::string rest = endpoint.rfind("tcp://", 0) == 0 ? endpoint.substr(6) : endpoint;
  auto colon = rest.rfind(':');
  std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

bool IsNumericAddress(const std::string& host) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

LinkDiagnosis::LinkDiagnosis(std::string endpoint, int connect_timeout_ms)
    : endpoint_(std::move(endpoint)), host_(HostOf(endpoint_)), connect_timeout_ms_(connect_timeout_ms) {}

bool LinkDiagnosis::Set(PeerState s, std::string cause) {
  if (s == state_ && cause == cause_) return false;
  state_ = s;
  cause_ = std::move(cause);
  return true;
}

bool LinkDiagnosis::OnEvent(uint16_t event, uint32_t value, int64_t now_ms) {
  switch (event) {
    case ZMQ_EVENT_CONNECT_DELAYED:
      delayed_at_ms_ = now_ms;
      stalled_ = false;
      return false;
    case ZMQ_EVENT_CONNECTED:
      tcp_up_ = true;
      return false;
    case ZMQ_EVENT_CLOSED: {
      // A connect that failed before TCP came up: at once is a refusal,
      // after the connect timeout a dropped SYN.
      if (tcp_up_ || delayed_at_ms_ < 0) return false;
      const int64_t waited = now_ms - delayed_at_ms_;
      if (waited >= connect_timeout_ms_ / 2)
        return Set(PeerState::kUnreachable, "connection timed out after " + std::to_string((waited + 500) / 1000) +
                                                " s: no answer from " + host_ + " (host down, or a firewall drops it)");
      return Set(PeerState::kUnreachable, "connection refused: nothing listens at " + endpoint_.substr(6));
    }
    case ZMQ_EVENT_CONNECT_RETRIED: {
      // No connect was started since the last retry: the address could not
      // even be formed.
      const bool no_attempt = delayed_at_ms_ < 0 && !tcp_up_;
      stalled_ = false;
      delayed_at_ms_ = -1;
      tcp_up_ = false;
      if (!no_attempt) return false;
      if (IsNumericAddress(host_)) return Set(PeerState::kUnreachable, "no route to " + host_);
      return Set(PeerState::kUnreachable, "the name " + host_ + " does not resolve (DNS)");
    }
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
      last_connected_ms_ = now_ms;
      return Set(PeerState::kConnected, "");
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
      stalled_ = true;
      // The partner's ZAP handler answered: 400 is a refusal of our key, 300
      // a temporary one (kring's limit on new connections).
      if (value == 300)
        return Set(PeerState::kUnreachable, "the partner's node turned a new connection away for now (too many at once)");
      return Set(PeerState::kRefusedByPartner,
                 "the partner's node refused this node's key (ZAP status " + std::to_string(value) +
                     "): it has not added this node's card, or holds an old one");
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      stalled_ = true;
      if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        return Set(PeerState::kWrongKey, "the encrypted handshake failed: the node there does not hold the key on the "
                                         "partner's card (ZMTP cryptographic error)");
      return Set(PeerState::kWrongKey, "something answers there, but not as a kring node with the key on the partner's "
                                       "card (ZMTP protocol error " + Hex(value) + ")");
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      if (value == EAGAIN || value == ETIMEDOUT)
        return Set(PeerState::kUnreachable, "handshake timed out: something accepts connections at " +
                                                endpoint_.substr(6) + " but does not answer as a kring node");
      // A CURVE server that cannot open our HELLO (sealed to the key we
      // pinned) closes the connection without a word.
      return Set(PeerState::kWrongKey, "the node there closed the encrypted handshake: it does not hold the key on the "
                                       "partner's card (another node at this endpoint, or the partner has new keys)");
    case ZMQ_EVENT_DISCONNECTED:
      tcp_up_ = false;
      if (state_ == PeerState::kConnected) return Set(PeerState::kUnreachable, "connection lost");
      return false;
    default:
      return false;
  }
}

namespace {
std::atomic<uint64_t> monitor_counter{0};
}

LinkMonitor::LinkMonitor(zmq::context_t& ctx, zmq::socket_t& dealer, const std::string& endpoint,
                         int connect_timeout_ms)
    : dealer_(&dealer), pair_(ctx, zmq::socket_type::pair), diagnosis_(endpoint, connect_timeout_ms) {
  const std::string address = "inproc://kring-link-monitor-" + std::to_string(++monitor_counter);
  constexpr int kEvents = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_DELAYED | ZMQ_EVENT_CONNECT_RETRIED |
                          ZMQ_EVENT_CLOSED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                          ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                          ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  if (zmq_socket_monitor(dealer.handle(), address.c_str(), kEvents) != 0) throw zmq::error_t();
  pair_.set(zmq::sockopt::linger, 0);
  pair_.connect(address);
}

LinkMonitor::~LinkMonitor() {
  zmq_socket_monitor(dealer_->handle(), nullptr, 0);
  pair_.close();
}

bool LinkMonitor::Drain(int64_t now_ms) {
  bool changed = false;
  for (;;) {
    // Each event is two frames: 6 bytes (event u16, value u32, native
    // order) and the endpoint.
    zmq::message_t head;
    if (!pair_.recv(head, zmq::recv_flags::dontwait)) break;
    uint16_t event = 0;
    uint32_t value = 0;
    if (head.size() >= 6) {
      std::memcpy(&event, head.data(), 2);
      std::memcpy(&value, static_cast<const char*>(head.data()) + 2, 4);
    }
    while (head.more()) {
      zmq::message_t rest;
      if (!pair_.recv(rest, zmq::recv_flags::dontwait)) break;
      head.swap(rest);
    }
    if (diagnosis_.OnEvent(event, value, now_ms)) changed = true;
  }
  return changed;
}

}  // namespace kring
