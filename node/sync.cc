// The sync thread: ZAP admission, per-message partner checks, push, reconciliation and want handling.
#include "node/sync.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zmq.hpp>
#include <zmq_addon.hpp>
#include <nlohmann/json.hpp>

#include "node/log.h"
#include "protocol/messages.h"
#include "protocol/reconcile.h"

namespace kring {

namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kZapDomain = "kring";
constexpr size_t kPushBudgetBytes = 3 * 1024 * 1024;  // stay well under kMaxFrameBytes
constexpr size_t kMaxServeBytes = 32 * 1024 * 1024;   // per want or reconciliation round
constexpr int kHeartbeatIvlMs = 1000;
constexpr int kHeartbeatTimeoutMs = 3000;
// A TCP connect to a partner that gets no answer is given up after this
// long (and reported as timed out); the OS default is minutes.
constexpr int kConnectTimeoutMs = 5000;
// libzmq gives up on a connection the partner's ZAP refused; we try again
// after this long, doubling up to the maximum (the partner may add our card).
constexpr int64_t kRetryRefusedMs = 1000;
constexpr int64_t kRetryRefusedMaxMs = 10000;
// A session needs about log16(n) rounds, plus one per 256 KiB of ids when a
// large backlog is deferred (a million missing records: ~130). Far beyond
// that is a peer that never settles.
constexpr int kMaxReconcileRounds = 1024;
// A record pushed to a partner because reconciliation found it missing is
// not pushed again for this long (both sides start sessions every interval,
// and a large backlog takes longer than one to arrive), sooner when the
// partner is seen to disconnect; at most this many are remembered.
constexpr int64_t kResendAfterMs = 10000;
constexpr size_t kMaxSentTracked = 262144;
// Received pushes wait in one queue per partner and are checked by
// kIngestWorkers threads, which take a push from each partner that has some,
// in turn, at most kIngestWorkersPerPartner of one partner's at once: two
// pushes of one partner are checked at once (one per core on the reference
// machine), and a worker is always free for another partner's push, so that a
// partner that sends as fast as it can gets its share and no more. Commit
// runs on several workers at once (Node locks per case); each partner's
// pushes are committed in the order they arrived.
constexpr int kIngestWorkers = 3;
constexpr size_t kIngestWorkersPerPartner = 2;
// A partner's budget (docs/protocol.md, "Receiving"). Its own connection (our
// DEALER to it: the records it pushes during our sessions) is read only while
// less than kPartnerReadBytes (and kPartnerReadPushes pushes) of it are
// queued: the rest waits in ZeroMQ and its TCP window, and its sending slows
// down. Our ROUTER is shared by every partner, so it is never left unread for
// one of them: a push on it is queued while less than kPartnerQueueBytes
// (kPartnerQueuePushes) of its sender's are, and dropped otherwise (counted as
// ingest_queue_full; pushes are never acknowledged, and reconciliation brings
// what was dropped again). What we queue for a partner is therefore at most
// kPartnerQueueBytes plus one frame. The gap between the two limits leaves
// room for what a partner running kring pushes unasked to our ROUTER
// (kUnaskedPushBytes per session, and its new records).
constexpr size_t kPartnerReadBytes = 2 * 1024 * 1024;
constexpr size_t kPartnerReadPushes = 16;
constexpr size_t kPartnerQueueBytes = 8 * 1024 * 1024;
constexpr size_t kPartnerQueuePushes = 64;
// What a node pushes to a partner's ROUTER as the initiator of a session
// (records the partner lacks), in all: well within what the partner queues
// beyond kPartnerReadBytes, also when it stores far slower than usual. The
// bulk of a large difference travels the other way, pushed by the partner as
// responder in its own sessions, on the connection it reads at its own pace.
constexpr size_t kUnaskedPushBytes = 1024 * 1024;
// How soon a reconciliation that could not be sent (no connection yet) is tried again.
constexpr int64_t kRetryConnectMs = 100;
// What one partner can make us hold for its connection to our ROUTER: we
// serve only its newest connection, and queue at most this many messages
// (kMaxFrameBytes each) to it and from it. ZeroMQ's high-water marks count
// messages, not bytes, and apply per connection: with 64 queued replies of
// 3 MiB, each connection a partner opened and never read could hold 192 MiB.
// When the reply queue is full, sending fails and serving stops until it drains.
constexpr int kRouterSndHwm = 8;
constexpr int kRouterRcvHwm = 4;
// Replaced connections remembered per partner, so that their messages are dropped.
constexpr size_t kMaxRetiredConnections = 64;
// A partner's key is admitted (ZAP) for at most kZapBurst new connections at
// once, then one per kZapRefillMs. A connection takes memory before it has
// sent a whole message (a frame in flight, up to kMaxFrameBytes), when
// ServeConnection cannot yet replace it; a node reconnects far less often.
constexpr double kZapBurst = 4;
constexpr int64_t kZapRefillMs = 2000;
// Rejections are counted exactly (kring_messages_rejected_total) but logged
// sparingly: per partner and reason, the first in each interval with its
// detail, the rest in one summary line per partner at the interval's end.
constexpr int64_t kRejectLogIntervalMs = 10000;

// "local-address|peer-address" of a TCP socket, or "" when it is none.
std::string ConnectionName(int fd) {
  if (fd < 0) return "";
  std::string out;
  for (bool peer : {false, true}) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                  : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    if (rc != 0) return "";
    char ip[INET6_ADDRSTRLEN] = {};
    int port = 0;
    if (addr.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
      port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
      port = ntohs(a->sin6_port);
    } else {
      return "";
    }
    out += std::string(ip) + ":" + std::to_string(port) + (peer ? "" : "|");
  }
  return out;
}

int64_t NowMs() { return static_cast<int64_t>(HybridClock::SystemMillis()); }

// Fills the outgoing sockets' CURVE and safety options shared by ROUTER and DEALER.
void SetCommonOptions(zmq::socket_t& s) {
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxFrameBytes));
  s.set(zmq::sockopt::linger, 0);
  // Messages are up to 4 MiB: a dozen or so queued per connection bound the
  // memory a partner's backlog takes; beyond that TCP's window holds the
  // sender. 16 pushes of 3 MiB outrun one reconciliation round's serving
  // (kMaxServeBytes), and cap what a partner that stops reading leaves
  // queued on our connection to it at 48 MiB.
  s.set(zmq::sockopt::sndhwm, 16);
  s.set(zmq::sockopt::rcvhwm, 16);
  s.set(zmq::sockopt::heartbeat_ivl, kHeartbeatIvlMs);
  s.set(zmq::sockopt::heartbeat_timeout, kHeartbeatTimeoutMs);
  s.set(zmq::sockopt::handshake_ivl, 5000);
}

bool ValidTcpEndpoint(const std::string& ep) {
  if (ep.rfind("tcp://", 0) != 0) return false;
  auto colon = ep.rfind(':');
  if (colon == std::string::npos || colon < 6 || colon + 1 >= ep.size()) return false;
  for (size_t i = colon + 1; i < ep.size(); ++i)
    if (ep[i] < '0' || ep[i] > '9') return false;
  return true;
}

}  // namespace

struct SyncEngine::Impl {
  // One reconciliation this node started with a partner.
  struct Session {
    uint64_t id = 0;
    int64_t last_activity_ms = 0;  // last message sent or answered
    int rounds = 0;
    uint64_t round_trips = 0;  // replies received and taken (kring_reconcile_round_trips_total when it completes)
    std::unique_ptr<Reconciler> reconciler;  // unbound: each message reads the partner's view afresh
    size_t unasked_left = kUnaskedPushBytes;  // what it may still push the partner unasked (its ROUTER)
  };

  struct PeerLink {
    Partner partner;
    std::string key_hex;  // transport key, as ZAP reports it in User-Id
    std::unique_ptr<zmq::socket_t> dealer;
    std::unique_ptr<LinkMonitor> monitor;  // after `dealer`: destroyed before it
    int64_t state_since_ms = 0;
    int64_t not_connected_since_ms = 0;    // start, or when the link was last lost
    int64_t reconnect_at_ms = 0;           // a stalled link's next attempt; 0: none due
    int64_t reconnect_backoff_ms = 0;
    int64_t last_seen_ms = 0;
    int64_t last_sync_ms = 0;
    bool reported_connected = false;
    std::optional<Session> session;
    // Ids pushed by reconciliation and when: see kResendAfterMs.
    std::map<Hash, int64_t> sent_recently;
    int64_t next_session_ms = 0;  // when to start the next reconciliation
    int64_t retry_ms = 0;         // current back-off while it cannot be sent
    int64_t next_prune_ms = 0;    // when to forget old sent_recently entries
    // Its connection to our ROUTER that we serve: the newest that spoke. The
    // socket and its addresses let us close it when a newer one replaces it.
    std::string live_rid;
    int live_fd = -1;
    std::string live_name;
    std::deque<std::string> retired_rids;  // replaced: their messages are dropped
  };

  Impl(std::shared_ptr<const NodeIdentity> keys, Store* store, RecordSink* sink, SyncOptions options)
      : keys(std::move(keys)), store(store), sink(sink), options(std::move(options)) {}

  std::shared_ptr<const NodeIdentity> keys;  // this node's; replaced only on the sync thread (Rekey)
  Store* store;
  RecordSink* sink;
  SyncOptions options;

  zmq::context_t ctx{1};
  zmq::socket_t zap{ctx, zmq::socket_type::rep};
  zmq::socket_t router{ctx, zmq::socket_type::router};
  int wake_fd = -1;
  std::thread thread;
  std::atomic<bool> stop{false};
  bool started = false;

  // Owned by the sync thread.
  std::map<std::string, PeerLink> peers;        // by org
  std::map<std::string, std::string> org_by_key;  // transport key hex -> org
  // The store's reconciliation index (one for all partners; the store's
  // commits keep it current). nullptr until the sync thread built it.
  ReconcileIndex* index = nullptr;
  // Sets of partners beyond ReconcileIndex::kMaxViews (see WithView).
  struct OverflowSet {
    uint64_t generation = 0;
    std::unique_ptr<ReconcileSet> set;
  };
  std::map<std::string, OverflowSet> overflow_sets;
  std::map<std::string, int64_t> refused_logged;  // key hex -> last log time
  struct ConnectionBudget {
    double tokens = kZapBurst;
    int64_t refilled_ms = 0;
  };
  std::map<std::string, ConnectionBudget> zap_budget;  // partner key hex -> its admissions

  // Rejections in the current log interval (see kRejectLogIntervalMs), by
  // (partner, reason): logged, or counted for the summary. Bounded by the
  // partners times the fixed set of reasons.
  std::mutex reject_log_mu;
  int64_t reject_window_start_ms = 0;
  std::set<std::pair<std::string, std::string>> reject_logged;
  std::map<std::string, std::map<std::string, uint64_t>> reject_unlogged;  // partner -> reason -> count

  // Pushes received and not yet stored, per partner (see kIngestWorkers and
  // kPartnerQueueBytes), committed for each partner in the order they
  // arrived (a consent before the fragments it admits; a record waiting for
  // its parents is retried with the same partner's next push).
  struct PartnerQueue {
    std::deque<std::vector<Bytes>> pushes;
    size_t bytes = 0;         // record bytes queued
    uint64_t next_seq = 0;    // given to the next push taken
    uint64_t commit_seq = 0;  // the push whose Commit is next
    size_t in_flight = 0;     // pushes taken and not yet committed
  };
  std::mutex ingest_mu;
  std::condition_variable ingest_cv;
  std::map<std::string, PartnerQueue> ingest_queues;  // by partner; an entry goes when empty and idle
  std::string ingest_last;                            // the partner a push was last taken from
  bool ingest_stop = false;
  std::vector<std::thread> ingest_workers;

  // Shared with other threads.
  std::mutex queue_mu;
  std::vector<RecordId> announced;
  std::shared_ptr<const NodeIdentity> next_keys;  // set by Rekey, taken by the sync thread
  bool partners_changed = false;                  // set by PartnersChanged
  mutable std::mutex status_mu;
  std::vector<PeerStatus> status_snapshot;
  SyncStats stats;

  // ---------------------------------------------------------------- setup

  Status Bind() {
    if (!ValidTcpEndpoint(options.listen))
      return Status::InvalidArgument("listen endpoint '" + options.listen + "' is not tcp://HOST:PORT");
    try {
      zap.set(zmq::sockopt::linger, 0);
      zap.bind(kZapEndpoint);  // must exist before any CURVE handshake
      SetCommonOptions(router);
      router.set(zmq::sockopt::curve_server, 1);
      router.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(keys->transport_sk.data(), keys->transport_sk.size()));
      router.set(zmq::sockopt::zap_domain, kZapDomain);
      router.set(zmq::sockopt::router_mandatory, 1);
      router.set(zmq::sockopt::sndhwm, kRouterSndHwm);
      router.set(zmq::sockopt::rcvhwm, kRouterRcvHwm);
      router.bind(options.listen);
    } catch (const zmq::error_t& e) {
      return Status::IOError("cannot listen on " + options.listen + ": " + e.what());
    }
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) return Status::IOError("cannot create eventfd");
    ReloadPartners();
    return Status::Ok();
  }

  void Wake() {
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd, &one, sizeof one);
    (void)n;
  }

  // Brings `peers` in line with the partner table; called at start and
  // whenever another process changed the database.
  void ReloadPartners() {
    auto list = store->ListPartners();
    if (!list.ok()) {
      KRING_LOG(kError, "sync", "cannot read partners: " << list.status().ToString());
      return;
    }
    std::set<std::string> current;
    for (const Partner& p : *list) {
      current.insert(p.identity.org);
      auto it = peers.find(p.identity.org);
      if (it != peers.end() && it->second.partner.endpoint == p.endpoint &&
          it->second.partner.identity.transport_pk == p.identity.transport_pk &&
          it->second.partner.identity.sign_pk == p.identity.sign_pk) {
        continue;
      }
      if (it != peers.end()) peers.erase(it);
      PeerLink link;
      link.partner = p;
      link.key_hex = ToHex(p.identity.transport_pk);
      try {
        link.dealer = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
        SetCommonOptions(*link.dealer);
        link.dealer->set(zmq::sockopt::immediate, 1);
        link.dealer->set(zmq::sockopt::reconnect_ivl, 100);
        link.dealer->set(zmq::sockopt::reconnect_ivl_max, 2000);
        link.dealer->set(zmq::sockopt::connect_timeout, kConnectTimeoutMs);
        link.dealer->set(zmq::sockopt::curve_serverkey,
                         zmq::const_buffer(p.identity.transport_pk.data(), p.identity.transport_pk.size()));
        link.dealer->set(zmq::sockopt::curve_publickey,
                         zmq::const_buffer(keys->pub.transport_pk.data(), keys->pub.transport_pk.size()));
        link.dealer->set(zmq::sockopt::curve_secretkey, zmq::const_buffer(keys->transport_sk.data(), keys->transport_sk.size()));
        link.monitor = std::make_unique<LinkMonitor>(ctx, *link.dealer, p.endpoint, kConnectTimeoutMs);
        link.dealer->connect(p.endpoint);
      } catch (const zmq::error_t& e) {
        KRING_LOG(kError, "sync", "cannot connect to partner " << p.identity.org << " at " << p.endpoint << ": " << e.what());
        continue;
      }
      KRING_LOG(kInfo, "sync", "partner " << p.identity.org << " (" << p.identity.display_name << ") at " << p.endpoint);
      link.state_since_ms = link.not_connected_since_ms = NowMs();
      peers.emplace(p.identity.org, std::move(link));
    }
    for (auto it = peers.begin(); it != peers.end();) {
      if (current.count(it->first) == 0) {
        KRING_LOG(kInfo, "sync", "partner " << it->first << " removed: connection closed, its messages refused from now on");
        it = peers.erase(it);
      } else {
        ++it;
      }
    }
    org_by_key.clear();
    for (auto& [org, link] : peers) org_by_key[link.key_hex] = org;
    if (index) index->SetPartners(std::vector<std::string>(current.begin(), current.end()));
    PublishStatus();
  }

  void RefreshPartnersIfChanged() {
    std::shared_ptr<const NodeIdentity> rekey;
    bool changed_here = false;
    {
      std::lock_guard lock(queue_mu);
      rekey.swap(next_keys);
      std::swap(changed_here, partners_changed);
    }
    if (rekey) {
      ApplyKeys(std::move(rekey));
      changed_here = true;
    }
    const bool changed_elsewhere = store->ChangedByOthers();
    if (!changed_here && !changed_elsewhere) return;
    overflow_sets.clear();
    if (changed_elsewhere && index) {
      // Another process may have stored records (a roster, a rotation): the
      // index saw only this process's commits.
      Status st = store->RebuildReconcileIndex();
      if (!st.ok()) KRING_LOG(kError, "store", "cannot rebuild the reconciliation index: " << st.ToString());
    }
    ReloadPartners();
    if (changed_elsewhere && options.on_partners_changed) options.on_partners_changed();
  }

  // This node's keys changed (a rotation's switch time came): listen and
  // connect with the new transport key from now on.
  void ApplyKeys(std::shared_ptr<const NodeIdentity> fresh) {
    keys = std::move(fresh);
    try {
      router.unbind(options.listen);
    } catch (const zmq::error_t& e) {
      KRING_LOG(kWarn, "sync", "cannot stop listening with the old transport key: " << e.what());
    }
    router.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(keys->transport_sk.data(), keys->transport_sk.size()));
    // ZeroMQ closes the old listener on its I/O thread: the port is free a moment later.
    for (int attempt = 0;; ++attempt) {
      try {
        router.bind(options.listen);
        break;
      } catch (const zmq::error_t& e) {
        if (e.num() != EADDRINUSE || attempt >= 200) {
          KRING_LOG(kError, "sync", "cannot listen with the new transport key on " << options.listen << ": " << e.what());
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    peers.clear();  // every link reconnects with the new client key
    KRING_LOG(kInfo, "sync", "now listening and connecting with this node's new transport key");
  }

  // ---------------------------------------------------------------- ZAP

  void HandleZap() {
    std::vector<zmq::message_t> req;
    if (!zmq::recv_multipart(zap, std::back_inserter(req), zmq::recv_flags::dontwait)) return;
    auto reply = [&](const std::string& code, const std::string& text, const std::string& user) {
      std::array<zmq::const_buffer, 6> frames = {
          zmq::str_buffer("1.0"),
          zmq::buffer(req.size() > 1 ? req[1].data() : nullptr, req.size() > 1 ? req[1].size() : 0),
          zmq::buffer(code), zmq::buffer(text), zmq::buffer(user), zmq::const_buffer(nullptr, 0)};
      zmq::send_multipart(zap, frames);
    };
    if (req.size() < 7 || req[0].to_string_view() != "1.0" || req[5].to_string_view() != "CURVE" ||
        req[6].size() != kBoxPublicKeyBytes) {
      reply("400", "unsupported mechanism", "");
      return;
    }
    std::string address = req[3].to_string();
    std::string key_hex = ToHex(ByteSpan(static_cast<const uint8_t*>(req[6].data()), req[6].size()));
    RefreshPartnersIfChanged();
    auto it = org_by_key.find(key_hex);
    if (it == org_by_key.end()) {
      CountRejected("not_a_partner");
      int64_t now = NowMs();
      if (refused_logged.size() > 10000) refused_logged.clear();  // strangers must not grow our memory
      int64_t& last = refused_logged[key_hex];
      if (now - last > 60000) {  // one line a minute per key: a retrying stranger must not flood the log
        KRING_LOG(kWarn, "sync", "refused connection from " << address << ": CURVE key " << key_hex.substr(0, 16)
                                                         << "... is not a partner's key");
        last = now;
      }
      reply("400", "not a partner", "");
      return;
    }
    ConnectionBudget& budget = zap_budget[key_hex];  // partners' keys only: bounded
    int64_t now = NowMs();
    budget.tokens = std::min(kZapBurst, budget.tokens + static_cast<double>(now - budget.refilled_ms) / kZapRefillMs);
    budget.refilled_ms = now;
    if (budget.tokens < 1) {
      Reject(it->second, "too_many_connections", "refused a new connection from " + address + ": more than " +
                                                     std::to_string(static_cast<int>(kZapBurst)) + " in a short time");
      reply("300", "too many connections", "");  // temporary: the partner's node reports it as such
      return;
    }
    budget.tokens -= 1;
    KRING_LOG(kDebug, "sync", "admitted " << it->second << " from " << address);
    reply("200", "OK", key_hex);
  }

  // ---------------------------------------------------------------- sending

  // Counts a message handed to a socket (SyncStats: the kring frame's bytes).
  void CountSent(const Message& m, size_t bytes) {
    std::lock_guard lock(status_mu);
    if (std::holds_alternative<ReconcileMessage>(m)) {
      stats.reconcile_bytes_sent += bytes;
    } else if (const auto* push = std::get_if<PushMessage>(&m)) {
      stats.push_bytes_sent += bytes;
      stats.push_records_sent += push->records.v.size();
    }
  }

  void CountReconcileReceived(size_t bytes) {
    std::lock_guard lock(status_mu);
    stats.reconcile_bytes_received += bytes;
  }

  bool SendDealer(PeerLink& link, const Message& m) {
    Bytes frame = EncodeMessage(m);
    try {
      if (!link.dealer->send(zmq::buffer(frame), zmq::send_flags::dontwait).has_value()) return false;
      CountSent(m, frame.size());
      return true;
    } catch (const zmq::error_t& e) {
      KRING_LOG(kWarn, "sync", "send to " << link.partner.identity.org << " failed: " << e.what());
      return false;
    }
  }

  bool SendRouter(const zmq::message_t& routing_id, const Message& m) {
    Bytes frame = EncodeMessage(m);
    try {
      zmq::message_t rid(routing_id.data(), routing_id.size());
      if (!router.send(rid, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
      if (!router.send(zmq::buffer(frame), zmq::send_flags::dontwait).has_value()) return false;
      CountSent(m, frame.size());  // the routing-id frame stays in libzmq: not counted
      return true;
    } catch (const zmq::error_t& e) {
      // EHOSTUNREACH: the peer went away between its request and our reply.
      KRING_LOG(kDebug, "sync", "reply dropped: " << e.what());
      return false;
    }
  }

  // Splits records into Push messages under the frame budget and hands each
  // to `send`, in order, until one cannot be sent (not connected, or its
  // queue is full). Returns how many records went: the first ones.
  template <class SendFn>
  size_t SendRecords(std::vector<Bytes>& records, SendFn send) {
    size_t sent = 0;
    bool failed = false;
    PushMessage push;
    size_t bytes = 0;
    auto flush = [&]() {
      if (push.records.v.empty() || failed) return;
      size_t n = push.records.v.size();
      if (send(Message(std::move(push)))) sent += n;
      else failed = true;
      push = PushMessage();
      bytes = 0;
    };
    for (Bytes& r : records) {
      if (push.records.v.size() == kMaxRecordsPerPush || bytes + r.size() > kPushBudgetBytes) flush();
      if (failed) break;
      bytes += r.size() + 8;
      push.records.v.push_back(BoundedBytes<kMaxRecordBytes>{std::move(r)});
    }
    flush();
    std::lock_guard lock(status_mu);
    stats.fragments_sent += sent;
    return sent;
  }

  // Sends `org` the records with these ids that it may hold, each once, a
  // push at a time, control records first and each kind oldest first (the
  // order the receiver can accept them in), and at most kMaxServeBytes per
  // request: what a peer asks for never decides how much we hold in memory
  // or queue.
  // With `link`, records pushed to it by reconciliation in the last
  // kResendAfterMs are left out (they are on their way), and what is sent
  // is remembered.
  template <class SendFn>
  size_t ServeRecords(const std::vector<Hash>& ids, const std::string& org, SendFn send, PeerLink* link = nullptr,
                      size_t max_bytes = kMaxServeBytes, size_t* budget_left = nullptr) {
    const std::vector<Hash>* todo = &ids;
    std::vector<Hash> fresh;
    int64_t now = NowMs();
    if (link) {
      for (const Hash& id : ids) {
        auto it = link->sent_recently.find(id);
        if (it == link->sent_recently.end() || now - it->second >= kResendAfterMs) fresh.push_back(id);
      }
      todo = &fresh;
    }
    std::vector<RecordId> served;
    auto records = store->RecordsForPeer(*todo, org, max_bytes, &served, keys->pub.org);
    if (!records.ok()) {
      KRING_LOG(kError, "store", "cannot read records for " << org << ": " << records.status().ToString());
      return 0;
    }
    std::vector<size_t> sizes;
    if (budget_left)
      for (const Bytes& r : *records) sizes.push_back(r.size());
    size_t sent = SendRecords(*records, send);
    if (budget_left) {
      // What did not fit (RecordsForPeer stops before max_bytes) waits for a later session.
      size_t bytes = 0;
      for (size_t i = 0; i < sent; ++i) bytes += sizes[i];
      *budget_left = sent < sizes.size() || bytes >= *budget_left ? 0 : *budget_left - bytes;
    }
    if (link)
      for (size_t i = 0; i < sent && i < served.size(); ++i)
        if (link->sent_recently.size() < kMaxSentTracked) link->sent_recently[served[i]] = now;
    return sent;
  }

  void PushAnnounced() {
    std::vector<RecordId> ids;
    {
      std::lock_guard lock(queue_mu);
      ids.swap(announced);
    }
    if (ids.empty()) return;
    std::map<std::string, std::vector<Bytes>> per_peer;
    for (const RecordId& id : ids) {
      auto audience = store->AudienceOf(id);
      if (!audience.ok() || audience->empty()) continue;
      auto rec = store->GetRecord(id);
      if (!rec.ok() || !rec->has_value()) continue;
      for (const std::string& org : *audience) {
        if (org == keys->pub.org || peers.count(org) == 0) continue;
        per_peer[org].push_back((*rec)->record);
      }
    }
    for (auto& [org, records] : per_peer) {
      PeerLink& link = peers.at(org);
      size_t n = records.size();
      size_t sent = SendRecords(records, [&](const Message& m) { return SendDealer(link, m); });
      if (sent < n)
        KRING_LOG(kInfo, "sync", org << " not reachable now: " << (n - sent) << " record(s) will follow by reconciliation");
      else
        KRING_LOG(kDebug, "sync", "pushed " << sent << " record(s) to " << org);
    }
  }

  // ---------------------------------------------------------------- receiving

  void CountRejected(const std::string& reason, uint64_t n = 1) {
    std::lock_guard lock(status_mu);
    stats.rejected[reason] += n;
  }

  // Called from the sync thread and the ingest workers.
  // `n`: how many records the rejection is of (a push dropped whole counts each).
  void Reject(const std::string& from, const std::string& reason, const std::string& detail, uint64_t n = 1) {
    CountRejected(reason, n);
    {
      std::lock_guard lock(reject_log_mu);
      if (!reject_logged.insert({from, reason}).second) {
        reject_unlogged[from][reason] += n;
        return;
      }
    }
    KRING_LOG(kWarn, "sync", "rejected message from " << from << ": " << detail
                                                     << " (" << reason << "; more like it are summed up every "
                                                     << kRejectLogIntervalMs / 1000 << " s)");
  }

  // At the end of each interval, one line per partner for what was not logged.
  void SummariseRejections(int64_t now) {
    std::map<std::string, std::map<std::string, uint64_t>> unlogged;
    {
      std::lock_guard lock(reject_log_mu);
      if (now - reject_window_start_ms < kRejectLogIntervalMs) return;
      reject_window_start_ms = now;
      reject_logged.clear();
      unlogged.swap(reject_unlogged);
    }
    for (const auto& [from, reasons] : unlogged) {
      uint64_t total = 0;
      std::string parts;
      for (const auto& [reason, n] : reasons) {
        total += n;
        parts += (parts.empty() ? "" : ", ") + std::to_string(n) + " " + reason;
      }
      KRING_LOG(kWarn, "sync", "rejected " << total << " more message(s) or record(s) from " << from << " in the last "
                                           << kRejectLogIntervalMs / 1000 << " s: " << parts);
    }
  }

  // Decides whether a message from `org` on ROUTER connection `rid` is
  // served. A partner's newest connection replaces its older ones: their
  // state is dropped and their TCP connection closed, so that the memory a
  // partner can make us hold does not grow with the connections it opens.
  bool ServeConnection(const std::string& org, const zmq::message_t& rid_frame, const zmq::message_t& msg) {
    auto it = peers.find(org);
    if (it == peers.end()) return false;
    PeerLink& link = it->second;
    std::string rid(static_cast<const char*>(rid_frame.data()), rid_frame.size());
    if (rid == link.live_rid) return true;
    if (std::find(link.retired_rids.begin(), link.retired_rids.end(), rid) != link.retired_rids.end()) {
      Reject(org, "replaced_connection", "message on a connection replaced by a newer one; dropped");
      return false;
    }
    // ZMQ_SRCFD is deprecated but kept by libzmq 4.3: the one way to reach
    // the TCP connection behind a ROUTER routing id.
    int fd = zmq_msg_get(msg.handle(), ZMQ_SRCFD);
    if (!link.live_rid.empty()) {
      // The fd may have been closed and reused by another connection since:
      // close it only while it still joins the same two addresses.
      const bool still_open = link.live_fd >= 0 && link.live_fd != fd && !link.live_name.empty() &&
                              ConnectionName(link.live_fd) == link.live_name;
      link.retired_rids.push_back(std::move(link.live_rid));
      if (link.retired_rids.size() > kMaxRetiredConnections) link.retired_rids.pop_front();
      if (still_open) {
        ::shutdown(link.live_fd, SHUT_RDWR);
        Reject(org, "replaced_connection", "a newer connection replaces the one served until now; the older is closed");
      } else {
        // The usual case: the partner reconnected after the old one was gone.
        KRING_LOG(kDebug, "sync", "partner " << org << " reconnected");
      }
    }
    link.live_rid = std::move(rid);
    link.live_fd = fd;
    link.live_name = ConnectionName(fd);
    return true;
  }

  // Reads a link's socket events; logs and publishes a change of its state,
  // once: which partner, which endpoint, what happened.
  void OnLinkEvents(PeerLink& link) {
    int64_t now = NowMs();
    const bool was_connected = link.monitor->diagnosis().state() == PeerState::kConnected;
    const bool changed = link.monitor->Drain(now);
    const LinkDiagnosis& d = link.monitor->diagnosis();
    if (d.stalled() && link.reconnect_at_ms == 0) {
      link.reconnect_backoff_ms = std::min(link.reconnect_backoff_ms == 0 ? kRetryRefusedMs : 2 * link.reconnect_backoff_ms,
                                           kRetryRefusedMaxMs);
      link.reconnect_at_ms = now + link.reconnect_backoff_ms;
    }
    if (d.state() == PeerState::kConnected) link.reconnect_backoff_ms = 0;
    if (!changed) return;
    const std::string& org = link.partner.identity.org;
    link.state_since_ms = now;
    if (d.state() == PeerState::kConnected) {
      KRING_LOG(kInfo, "sync", "partner " << org << " at " << link.partner.endpoint
                                          << ": connected (handshake with the key on its card)");
    } else {
      if (was_connected) link.not_connected_since_ms = now;
      KRING_LOG(kWarn, "sync", "partner " << org << " at " << link.partner.endpoint << ": " << PeerStateName(d.state())
                                          << ": " << d.cause());
    }
    PublishStatus();
    SaveLinkStates();
  }

  // The links' states for `kring-node peer list`, which runs in another process.
  void SaveLinkStates() {
    nlohmann::json links = nlohmann::json::object();
    for (auto& [org, link] : peers) {
      const LinkDiagnosis& d = link.monitor->diagnosis();
      links[org] = {{"state", PeerStateName(d.state())}, {"cause", d.cause()}, {"since_ms", link.state_since_ms},
                    {"endpoint", link.partner.endpoint}};
    }
    std::string text = nlohmann::json{{"pid", static_cast<int64_t>(::getpid())}, {"links", links}}.dump();
    Status st = store->SetNodeState(kLinkStatesKey, ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    if (!st.ok()) KRING_LOG(kWarn, "store", "cannot record the partners' link states: " << st.ToString());
  }

  void MarkSeen(const std::string& org) {
    auto it = peers.find(org);
    if (it == peers.end()) return;
    it->second.last_seen_ms = NowMs();
    if (!it->second.reported_connected) {
      it->second.reported_connected = true;
      KRING_LOG(kDebug, "sync", "partner " << org << " heard from");  // the link's state is logged by OnLinkEvents
      PublishStatus();
    }
  }

  static size_t RecordBytes(const std::vector<Bytes>& records) {
    size_t n = 0;
    for (const Bytes& r : records) n += r.size();
    return n;
  }

  // Whether our DEALER to `org` may be read: less than kPartnerReadBytes of it queued.
  bool MayRead(const std::string& org) {
    std::lock_guard lock(ingest_mu);
    auto it = ingest_queues.find(org);
    return it == ingest_queues.end() ||
           (it->second.bytes < kPartnerReadBytes && it->second.pushes.size() < kPartnerReadPushes);
  }

  // Queues a push from `from` for the ingest workers, unless `from` is over
  // its budget (kPartnerQueueBytes): then it is dropped and counted. Never waits.
  void HandlePush(const std::string& from, PushMessage& push) {
    if (push.records.v.empty()) return;
    std::vector<Bytes> records;
    records.reserve(push.records.v.size());
    for (auto& r : push.records.v) records.push_back(std::move(r.v));
    {
      std::lock_guard lock(ingest_mu);
      if (ingest_stop) return;
      PartnerQueue& q = ingest_queues[from];
      if (q.bytes < kPartnerQueueBytes && q.pushes.size() < kPartnerQueuePushes) {
        q.bytes += RecordBytes(records);
        q.pushes.push_back(std::move(records));
        ingest_cv.notify_all();
        return;
      }
    }
    Reject(from, "ingest_queue_full",
           "a push of " + std::to_string(records.size()) + " record(s) while " + std::to_string(kPartnerQueueBytes >> 20) +
               " MiB of this partner's are waiting to be stored; dropped (reconciliation brings them again)",
           records.size());
  }

  // The next partner after the last served that has a push waiting and a
  // worker to spare, or end(). REQUIRES: ingest_mu held.
  std::map<std::string, PartnerQueue>::iterator NextPartnerLocked() {
    auto ready = [](const PartnerQueue& q) { return !q.pushes.empty() && q.in_flight < kIngestWorkersPerPartner; };
    auto start = ingest_queues.upper_bound(ingest_last);
    for (auto it = start; it != ingest_queues.end(); ++it)
      if (ready(it->second)) return it;
    for (auto it = ingest_queues.begin(); it != start; ++it)
      if (ready(it->second)) return it;
    return ingest_queues.end();
  }

  void IngestWorker() {
    for (;;) {
      std::string from;
      std::vector<Bytes> records;
      uint64_t seq = 0;
      bool room = false;  // the partner's connection may be read again
      {
        std::unique_lock lock(ingest_mu);
        std::map<std::string, PartnerQueue>::iterator it;
        ingest_cv.wait(lock, [&] { return ingest_stop || (it = NextPartnerLocked()) != ingest_queues.end(); });
        if (ingest_stop) return;
        from = it->first;
        PartnerQueue& q = it->second;
        const bool was_full = q.bytes >= kPartnerReadBytes || q.pushes.size() >= kPartnerReadPushes;
        records = std::move(q.pushes.front());
        q.pushes.pop_front();
        q.bytes -= RecordBytes(records);
        seq = q.next_seq++;
        ++q.in_flight;
        ingest_last = from;
        room = was_full && q.bytes < kPartnerReadBytes && q.pushes.size() < kPartnerReadPushes;
      }
      if (room) Wake();
      auto reject = [&](const std::string& reason, const std::string& detail) { Reject(from, reason, detail); };
      auto batch = sink->Prepare(from, std::move(records), reject);
      {
        // The entry stays while a push of it is in flight.
        std::unique_lock lock(ingest_mu);
        ingest_cv.wait(lock, [&] { return ingest_stop || ingest_queues.at(from).commit_seq == seq; });
        if (ingest_stop) return;
      }
      size_t added = sink->Commit(std::move(batch), reject);
      {
        std::lock_guard lock(ingest_mu);
        PartnerQueue& q = ingest_queues.at(from);
        ++q.commit_seq;
        --q.in_flight;
        if (q.in_flight == 0 && q.pushes.empty()) ingest_queues.erase(from);
        ingest_cv.notify_all();
      }
      if (added > 0) {
        KRING_LOG(kInfo, "sync", "stored " << added << " new record(s) from " << from);
        std::lock_guard lock(status_mu);
        stats.fragments_received += added;
      }
    }
  }

  // Pushes queued per partner, for /metrics.
  std::map<std::string, uint64_t> QueuedPushes() {
    std::lock_guard lock(ingest_mu);
    std::map<std::string, uint64_t> out;
    for (auto& [org, q] : ingest_queues) out[org] = q.pushes.size();
    return out;
  }

  void StartIngest() {
    ingest_stop = false;
    ingest_queues.clear();
    for (int i = 0; i < kIngestWorkers; ++i) ingest_workers.emplace_back([this] { IngestWorker(); });
  }

  void StopIngest() {
    {
      std::lock_guard lock(ingest_mu);
      ingest_stop = true;
    }
    ingest_cv.notify_all();
    for (std::thread& t : ingest_workers) t.join();
    ingest_workers.clear();
    // Not stored, not acknowledged: reconciliation brings them again.
    std::lock_guard lock(ingest_mu);
    ingest_queues.clear();
  }

  // Builds the reconciliation index from the database, once, on the sync
  // thread (so that the API is up meanwhile); commits keep it current after.
  void EnableIndex() {
    if (index) return;
    int64_t t0 = NowMs();
    Status st = store->EnableReconcileIndex(keys->pub.org);
    if (!st.ok()) {
      KRING_LOG(kError, "store", "cannot build the reconciliation index: " << st.ToString());
      return;
    }
    index = store->reconcile_index();
    std::vector<std::string> orgs;
    for (const auto& [org, link] : peers) orgs.push_back(org);
    index->SetPartners(orgs);
    auto lock = index->ReadLock();
    KRING_LOG(kInfo, "sync", "reconciliation index: " << index->items() << " record(s), "
                                 << index->MemoryBytes() / 1024 << " KiB, built in " << (NowMs() - t0) << " ms");
  }

  // Runs `fn` with `org`'s view of the index, read-locked: one consistent
  // state of its set for one message. A partner beyond the index's
  // kMaxViews gets a set read from the database instead, kept until the
  // store changes. False (fn not run) when neither is to be had.
  template <class Fn>
  bool WithView(const std::string& org, Fn fn) {
    if (!index) return false;
    {
      auto lock = index->ReadLock();
      std::optional<ReconcileIndex::View> view = index->ViewFor(org);
      if (view) {
        fn(*view);
        return true;
      }
    }  // unlocked: the store's commits take mu_, then the index's lock
    OverflowSet& o = overflow_sets[org];
    uint64_t gen = store->generation();
    if (!o.set || o.generation != gen) {
      auto items = store->ItemsFor(org, keys->pub.org);
      if (!items.ok()) {
        KRING_LOG(kError, "store", "cannot list items for " << org << ": " << items.status().ToString());
        return false;
      }
      o = OverflowSet{gen, std::make_unique<ReconcileSet>(std::move(*items))};
    }
    fn(*o.set);
    return true;
  }

  // A request from a partner, arriving on our ROUTER.
  void HandleRouterMessage() {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
    if (frames.size() != 2) {
      Reject("unknown", "malformed_frames", "expected 2 frames, got " + std::to_string(frames.size()));
      return;
    }
    std::string key_hex;
    try {
      key_hex = frames[1].gets("User-Id");
    } catch (const zmq::error_t&) {
    }
    RefreshPartnersIfChanged();
    auto who = org_by_key.find(key_hex);
    if (who == org_by_key.end()) {
      Reject("former partner", "not_a_partner", "message from a key that is no longer a partner's; dropped");
      return;
    }
    const std::string org = who->second;
    if (!ServeConnection(org, frames[0], frames[1])) return;
    auto msg = DecodeMessage(ByteSpan(static_cast<const uint8_t*>(frames[1].data()), frames[1].size()));
    if (!msg.ok()) {
      Reject(org, "undecodable_message", msg.status().message());
      return;
    }
    MarkSeen(org);
    if (auto* push = std::get_if<PushMessage>(&*msg)) {
      HandlePush(org, *push);
    } else if (auto* want = std::get_if<WantMessage>(&*msg)) {
      ServeRecords(want->ids.v, org, [&](const Message& m) { return SendRouter(frames[0], m); });
    } else if (auto* rec = std::get_if<ReconcileMessage>(&*msg)) {
      CountReconcileReceived(frames[1].size());
      if (rec->initiator != 1) {
        Reject(org, "unexpected_message", "reconcile reply on the request socket");
        return;
      }
      std::vector<Hash> push;  // ours that the partner lacks: pushed unasked
      Result<Bytes> reply = Status::FailedPrecondition("no reconciliation index");
      if (!WithView(org, [&](const ReconcileSource& view) { reply = Respond(view, rec->session, rec->body.v, &push); }))
        return;
      if (!reply.ok()) {
        Reject(org, "bad_reconcile", reply.status().message());
        return;
      }
      ReconcileMessage out;
      out.session = rec->session;
      out.initiator = 0;
      out.body.v = std::move(*reply);
      SendRouter(frames[0], Message(std::move(out)));
      if (!push.empty()) {
        auto link = peers.find(org);
        size_t sent = ServeRecords(push, org, [&](const Message& m) { return SendRouter(frames[0], m); },
                                   link == peers.end() ? nullptr : &link->second);
        KRING_LOG(kInfo, "sync", "reconciliation by " << org << ": sent " << sent << " fragment(s) it missed");
      }
    }
  }

  // A reply from partner `org`, arriving on our DEALER to it.
  void HandleDealerMessage(PeerLink& link) {
    zmq::message_t frame;
    if (!link.dealer->recv(frame, zmq::recv_flags::dontwait)) return;
    const std::string& org = link.partner.identity.org;
    auto msg = DecodeMessage(ByteSpan(static_cast<const uint8_t*>(frame.data()), frame.size()));
    if (!msg.ok()) {
      Reject(org, "undecodable_message", msg.status().message());
      return;
    }
    MarkSeen(org);
    if (auto* push = std::get_if<PushMessage>(&*msg)) {
      HandlePush(org, *push);
    } else if (auto* rec = std::get_if<ReconcileMessage>(&*msg)) {
      CountReconcileReceived(frame.size());
      if (rec->initiator != 0 || !link.session || link.session->id != rec->session) return;  // stale reply
      link.session->last_activity_ms = NowMs();
      std::vector<Hash> have, need;
      Result<std::optional<Bytes>> next = Status::FailedPrecondition("no reconciliation index");
      if (!WithView(org, [&](const ReconcileSource& view) {
            next = link.session->reconciler->Continue(view, rec->body.v, &have, &need);
          })) {
        link.session.reset();
        return;
      }
      if (!next.ok()) {
        Reject(org, "bad_reconcile", next.status().message());
        link.session.reset();
        return;
      }
      ++link.session->round_trips;
      if (!have.empty()) {
        // To its ROUTER, which it cannot leave unread: within its budget (kUnaskedPushBytes).
        size_t sent = 0;
        if (link.session->unasked_left > 0)
          sent = ServeRecords(have, org, [&](const Message& m) { return SendDealer(link, m); }, &link,
                              link.session->unasked_left, &link.session->unasked_left);
        KRING_LOG(kInfo, "sync", "reconciliation with " << org << ": sent " << sent << " fragment(s) it missed");
      }
      // The partner pushes what we lack as it finds it (Respond's *push): nothing to ask for.
      if (!need.empty())
        KRING_LOG(kInfo, "sync", "reconciliation with " << org << ": " << need.size() << " fragment(s) we missed are being pushed");
      if (next->has_value() && ++link.session->rounds > kMaxReconcileRounds) {
        // A peer that never agrees must not keep us busy: start afresh next tick.
        Reject(org, "reconcile_too_long", "reconciliation did not settle in " + std::to_string(kMaxReconcileRounds) + " rounds");
        link.session.reset();
      } else if (next->has_value()) {
        ReconcileMessage out;
        out.session = link.session->id;
        out.initiator = 1;
        out.body.v = std::move(**next);
        if (!SendDealer(link, Message(std::move(out)))) link.session.reset();
      } else {
        {
          std::lock_guard lock(status_mu);
          ++stats.reconcile_sessions;
          stats.reconcile_round_trips += link.session->round_trips;
        }
        link.session.reset();
        link.last_sync_ms = NowMs();
        PublishStatus();
      }
    } else {
      Reject(org, "unexpected_message", "want on the reply socket");
    }
  }

  // ---------------------------------------------------------------- timers

  void Tick() {
    int64_t now = NowMs();
    SummariseRejections(now);
    int64_t stale = std::max<int64_t>(5000, 5LL * options.anti_entropy_interval_ms);
    for (auto& [org, link] : peers) {
      if (link.reconnect_at_ms != 0 && now >= link.reconnect_at_ms) {
        link.reconnect_at_ms = 0;
        try {
          link.dealer->disconnect(link.partner.endpoint);
          link.dealer->connect(link.partner.endpoint);
        } catch (const zmq::error_t& e) {
          KRING_LOG(kWarn, "sync", "cannot reconnect to partner " << org << " at " << link.partner.endpoint << ": " << e.what());
        }
      }
      if (now >= link.next_prune_ms) {
        std::erase_if(link.sent_recently, [&](const auto& w) { return now - w.second >= kResendAfterMs; });
        link.next_prune_ms = now + 1000;
      }
      if (link.reported_connected && now - link.last_seen_ms > stale) {
        link.reported_connected = false;
        link.sent_recently.clear();  // what was sent may be lost with the connection
        KRING_LOG(kDebug, "sync", "partner " << org << " silent for " << (now - link.last_seen_ms) / 1000 << " s");
      }
      if (link.session && now - link.session->last_activity_ms < stale) continue;
      if (now < link.next_session_ms) continue;
      link.session.reset();
      if (!(link.dealer->get(zmq::sockopt::events) & ZMQ_POLLOUT)) {
        // Not connected (or its queue is full): no set to build yet. Try
        // again soon, backing off to the interval, so that a node that
        // starts or comes back catches up at once.
        link.retry_ms = std::min<int64_t>(link.retry_ms == 0 ? kRetryConnectMs : 2 * link.retry_ms,
                                          options.anti_entropy_interval_ms);
        link.next_session_ms = now + link.retry_ms;
        continue;
      }
      link.retry_ms = 0;
      Session s;
      RandomBytes(std::span<uint8_t>(reinterpret_cast<uint8_t*>(&s.id), sizeof s.id));
      s.last_activity_ms = now;
      s.reconciler = std::make_unique<Reconciler>(s.id);  // the random session id salts it
      ReconcileMessage m;
      m.session = s.id;
      m.initiator = 1;
      if (!WithView(org, [&](const ReconcileSource& view) { m.body.v = s.reconciler->Initiate(view); })) continue;
      link.session = std::move(s);
      link.next_session_ms = now + options.anti_entropy_interval_ms;
      if (!SendDealer(link, Message(std::move(m)))) link.session.reset();
    }
    PublishStatus();
  }

  void PublishStatus() {
    int64_t now = NowMs();
    std::vector<PeerStatus> snap;
    for (auto& [org, link] : peers) {
      PeerStatus s;
      s.org = org;
      s.display_name = link.partner.identity.display_name;
      s.endpoint = link.partner.endpoint;
      s.last_seen_ms = link.last_seen_ms;
      s.last_sync_ms = link.last_sync_ms;
      const LinkDiagnosis& d = link.monitor->diagnosis();
      s.state = d.state();
      s.cause = d.cause();
      s.state_since_ms = link.state_since_ms;
      s.last_connected_ms = d.last_connected_ms();
      s.connected = d.state() == PeerState::kConnected;
      s.degraded = !s.connected && now - link.not_connected_since_ms >= options.degraded_after_ms;
      snap.push_back(std::move(s));
    }
    std::lock_guard lock(status_mu);
    status_snapshot = std::move(snap);
  }

  // ---------------------------------------------------------------- loop

  void Loop() {
    EnableIndex();
    int64_t next_tick = NowMs();
    while (!stop.load()) {
      std::vector<zmq::pollitem_t> items;
      items.push_back({zap.handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({router.handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({nullptr, wake_fd, ZMQ_POLLIN, 0});
      std::vector<PeerLink*> links;
      std::vector<std::string> link_orgs;  // to find each link again: a reload below may destroy it
      for (auto& [org, link] : peers) {
        // A partner whose pushes fill its queue is not read until the workers take some.
        items.push_back({link.dealer->handle(), 0, static_cast<short>(MayRead(org) ? ZMQ_POLLIN : 0), 0});
        links.push_back(&link);
        link_orgs.push_back(org);
      }
      for (PeerLink* link : links) items.push_back({link->monitor->socket().handle(), 0, ZMQ_POLLIN, 0});
      int64_t timeout = std::clamp<int64_t>(next_tick - NowMs(), 0, 200);
      try {
        zmq::poll(items, std::chrono::milliseconds(timeout));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        KRING_LOG(kError, "sync", "poll failed: " << e.what());
        break;
      }
      if (items[0].revents & ZMQ_POLLIN) HandleZap();
      if (items[2].revents & ZMQ_POLLIN) {
        uint64_t v;
        ssize_t n = ::read(wake_fd, &v, sizeof v);
        (void)n;
      }
      for (size_t i = 0; i < links.size(); ++i)
        if (items[3 + links.size() + i].revents & ZMQ_POLLIN) OnLinkEvents(*links[i]);
      // Partner changes first, so a removed partner is not served below.
      RefreshPartnersIfChanged();
      if (items[1].revents & ZMQ_POLLIN) {
        for (int i = 0; i < 256 && (router.get(zmq::sockopt::events) & ZMQ_POLLIN); ++i) HandleRouterMessage();
      }
      for (size_t i = 0; i < links.size(); ++i) {
        if (!(items[3 + i].revents & ZMQ_POLLIN)) continue;
        // The link may have been removed by a reload above (never dereference it before this check).
        auto it = peers.find(link_orgs[i]);
        if (it == peers.end() || &it->second != links[i]) continue;
        for (int k = 0; k < 256 && MayRead(link_orgs[i]) && (links[i]->dealer->get(zmq::sockopt::events) & ZMQ_POLLIN); ++k)
          HandleDealerMessage(*links[i]);
      }
      PushAnnounced();
      if (NowMs() >= next_tick) {
        Tick();
        next_tick = NowMs() + std::min<int64_t>(kRetryConnectMs, options.anti_entropy_interval_ms);
      }
    }
  }
};

SyncEngine::SyncEngine(std::shared_ptr<const NodeIdentity> keys, Store* store, RecordSink* sink, SyncOptions options)
    : impl_(std::make_unique<Impl>(std::move(keys), store, sink, std::move(options))) {}

void SyncEngine::Rekey(std::shared_ptr<const NodeIdentity> keys) {
  {
    std::lock_guard lock(impl_->queue_mu);
    impl_->next_keys = std::move(keys);
  }
  impl_->Wake();
}

void SyncEngine::PartnersChanged() {
  {
    std::lock_guard lock(impl_->queue_mu);
    impl_->partners_changed = true;
  }
  impl_->Wake();
}

SyncEngine::~SyncEngine() { Stop(); }

Status SyncEngine::Start() {
  KRING_RETURN_IF_ERROR(impl_->Bind());
  impl_->started = true;
  impl_->StartIngest();
  impl_->thread = std::thread([this] { impl_->Loop(); });
  return Status::Ok();
}

void SyncEngine::Stop() {
  if (!impl_->started) return;
  impl_->started = false;
  impl_->stop = true;
  impl_->Wake();
  impl_->StopIngest();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->peers.clear();
  impl_->router.close();
  impl_->zap.close();
  if (impl_->wake_fd >= 0) ::close(impl_->wake_fd);
  impl_->wake_fd = -1;
}

void SyncEngine::Announce(const RecordId& id) {
  {
    std::lock_guard lock(impl_->queue_mu);
    impl_->announced.push_back(id);
  }
  impl_->Wake();
}

std::vector<PeerStatus> SyncEngine::Peers() const {
  std::lock_guard lock(impl_->status_mu);
  return impl_->status_snapshot;
}

SyncStats SyncEngine::Stats() const {
  std::map<std::string, uint64_t> queued = impl_->QueuedPushes();
  std::lock_guard lock(impl_->status_mu);
  SyncStats out = impl_->stats;
  for (const PeerStatus& p : impl_->status_snapshot) out.ingest_queue_pushes[p.org] = 0;
  for (auto& [org, n] : queued) out.ingest_queue_pushes[org] = n;
  return out;
}

}  // namespace kring
