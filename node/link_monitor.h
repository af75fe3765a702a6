// Why a link to a partner is (not) up: its DEALER's ZeroMQ socket events, read into one state and a cause a person can act on.
//
// The events are those of zmq_socket_monitor (libzmq 4.3; the versioned
// monitor is a draft API Debian does not build). What each case produces,
// found with real sockets:
//   handshake with the pinned key   CONNECT_DELAYED, CONNECTED, HANDSHAKE_SUCCEEDED
//   partner's ZAP refuses our key   ..., CONNECTED, HANDSHAKE_FAILED_AUTH (value: ZAP status, 400), DISCONNECTED
//   another key answers             ..., CONNECTED, HANDSHAKE_FAILED_NO_DETAIL (EPIPE/ECONNRESET: the
//                                   server cannot open our HELLO and closes), DISCONNECTED
//   not ZMTP/CURVE there            ..., CONNECTED, HANDSHAKE_FAILED_PROTOCOL (value: ZMQ_PROTOCOL_ERROR_*)
//   silent TCP acceptor             ..., CONNECTED, HANDSHAKE_FAILED_NO_DETAIL (EAGAIN, after handshake_ivl)
//   nothing listens                 CONNECT_DELAYED, CLOSED (at once), CONNECT_RETRIED
//   SYN dropped                     CONNECT_DELAYED, CLOSED (after ZMQ_CONNECT_TIMEOUT), CONNECT_RETRIED
//   name does not resolve           CONNECT_RETRIED only (resolution fails before a connect is started)
// After HANDSHAKE_FAILED_AUTH (and _PROTOCOL) libzmq 4.3 does not try again:
// see LinkDiagnosis::stalled().
// Thread-safety: a LinkMonitor belongs to one thread (the sync thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <zmq.hpp>

namespace kring {

enum class PeerState { kNeverConnected, kConnected, kRefusedByPartner, kUnreachable, kWrongKey };
inline constexpr PeerState kAllPeerStates[] = {PeerState::kNeverConnected, PeerState::kConnected,
                                               PeerState::kRefusedByPartner, PeerState::kUnreachable,
                                               PeerState::kWrongKey};

// "never-connected", "connected", "refused-by-partner", "unreachable", "wrong-key".
const char* PeerStateName(PeerState s);

// The state machine alone: socket events in, state and cause out. Pure, for tests.
class LinkDiagnosis {
 public:
  // `endpoint` is tcp://HOST:PORT; `connect_timeout_ms` the socket's ZMQ_CONNECT_TIMEOUT.
  LinkDiagnosis(std::string endpoint, int connect_timeout_ms);

  // One monitor event (ZMQ_EVENT_*, its value) seen at `now_ms`. Returns
  // true when the state or its cause changed.
  bool OnEvent(uint16_t event, uint32_t value, int64_t now_ms);

  PeerState state() const { return state_; }
  // What happened, in words for an operator; empty for never-connected.
  const std::string& cause() const { return cause_; }
  int64_t last_connected_ms() const { return last_connected_ms_; }  // 0: never
  // libzmq (4.3) does not reconnect after the partner's ZAP refused us
  // (HANDSHAKE_FAILED_AUTH) or a protocol error: true from such an event
  // until the next connect attempt. The owner reconnects the socket itself.
  bool stalled() const { return stalled_; }

 private:
  bool Set(PeerState s, std::string cause);

  std::string endpoint_;
  std::string host_;
  int connect_timeout_ms_;
  PeerState state_ = PeerState::kNeverConnected;
  std::string cause_;
  int64_t last_connected_ms_ = 0;
  int64_t delayed_at_ms_ = -1;  // CONNECT_DELAYED of the current attempt; -1: none since the last retry
  bool tcp_up_ = false;
  bool stalled_ = false;
};

// Monitors one DEALER: create it before the DEALER connects, destroy it
// before the DEALER is closed.
class LinkMonitor {
 public:
  LinkMonitor(zmq::context_t& ctx, zmq::socket_t& dealer, const std::string& endpoint, int connect_timeout_ms);
  ~LinkMonitor();
  LinkMonitor(const LinkMonitor&) = delete;
  LinkMonitor& operator=(const LinkMonitor&) = delete;

  // The socket to poll for ZMQ_POLLIN.
  zmq::socket_t& socket() { return pair_; }
  // Reads every pending event. Returns true when the state or cause changed.
  bool Drain(int64_t now_ms);
  const LinkDiagnosis& diagnosis() const { return diagnosis_; }

 private:
  zmq::socket_t* dealer_;
  zmq::socket_t pair_;
  LinkDiagnosis diagnosis_;
};

}  // namespace kring
