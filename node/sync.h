// Peer-to-peer sync over ZeroMQ CURVE: push new fragments to their recipients, repair gaps by set reconciliation.
//
// Sockets: one ROUTER bound on --listen (CURVE server) receives partners'
// requests; one DEALER per partner (CURVE client, pinned to the partner's
// transport key) sends ours and receives the replies. A ZAP handler admits
// only partners' transport keys, and because ZAP runs only at the handshake,
// every incoming message is checked again by its CURVE key (the User-Id
// metadata) against the current partner list. Never by ROUTER routing id:
// that only tells a partner's connections apart, so that only its newest is
// served (a newer one closes the older) and what one partner can make the
// node queue does not grow with the connections it opens. ZAP admits a
// partner's key for a few new connections at a time. Rejections are counted
// exactly and logged once per partner and reason per interval, with a summary.
//
// Each DEALER has a socket monitor (node/link_monitor.h): a partner's state
// (connected, refused-by-partner, unreachable, wrong-key) and its cause come
// from the handshake's outcome, and each change is logged once.
//
// Threading: Start() creates the sockets on the caller's thread and runs
// them on one sync thread; Announce() and the status calls are thread-safe.
// Received pushes are stored by ingest worker threads from one bounded
// queue per partner, in turn; the sync thread never waits for them (a
// partner's budget: node/sync.cc, docs/protocol.md "Receiving").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "crypto/identity.h"
#include "node/link_monitor.h"
#include "node/store.h"
#include "protocol/hlc.h"

namespace kring {

struct SyncOptions {
  std::string listen;                      // tcp://host:port
  int anti_entropy_interval_ms = 1000;     // how often each partner is reconciled
  // Called on the sync thread after the partner list changed (another
  // process added or removed a partner). Must not block.
  std::function<void()> on_partners_changed;
  // A partner whose link has not been connected for this long makes the
  // node "degraded" (PeerStatus::degraded, /v1/health).
  int64_t degraded_after_ms = 300000;
};

// node_state key under which a running node records its links' states (JSON:
// {"pid", "links": {org: {"state", "cause", "since_ms", "endpoint"}}}) for `peer list`.
inline constexpr const char* kLinkStatesKey = "link_states";

struct PeerStatus {
  std::string org;
  std::string display_name;
  std::string endpoint;
  // Our link to it (node/link_monitor.h): connected only when our DEALER
  // completed a CURVE handshake with the key on its card; otherwise why not.
  PeerState state = PeerState::kNeverConnected;
  std::string cause;           // what happened, for an operator; empty when connected
  int64_t state_since_ms = 0;  // when the state (or its cause) last changed
  int64_t last_connected_ms = 0;  // last completed handshake; 0: never
  bool connected = false;      // state == kConnected
  bool degraded = false;       // not connected for SyncOptions::degraded_after_ms or longer
  int64_t last_seen_ms = 0;    // last message from it, on either link; 0: never
  int64_t last_sync_ms = 0;    // last completed reconciliation; 0: never
};

struct SyncStats {
  uint64_t fragments_received = 0;  // records newly stored from peers
  uint64_t fragments_sent = 0;
  std::map<std::string, uint64_t> rejected;  // by reason
  // Pushes received and waiting to be stored, per partner (every partner, 0 included).
  std::map<std::string, uint64_t> ingest_queue_pushes;
  // Counted exactly where messages are handed to or taken from a ZeroMQ
  // socket (/metrics, docs/operations.md). Bytes are those of the kring
  // message frame (envelope and body: what crosses the wire inside CURVE);
  // a ROUTER's routing-id frame is local to libzmq and never sent, so it is
  // not counted: what one node counts as sent, its partner counts as received.
  uint64_t reconcile_sessions = 0;        // sessions this node started that completed
  uint64_t reconcile_round_trips = 0;     // of those sessions: one body sent and its reply
  uint64_t reconcile_bytes_sent = 0;      // reconcile messages, both roles
  uint64_t reconcile_bytes_received = 0;  // reconcile messages from partners, both roles
  uint64_t push_bytes_sent = 0;           // push messages (records and their framing)
  uint64_t push_records_sent = 0;         // records in those push messages
};

// Where records received from partners go: verified against the case's
// consent state and stored, or rejected with a reason.
//
// In two halves, so that a node can check one push while it stores the one
// before: Prepare and Commit may run on several threads at once; the
// SyncEngine commits each partner's pushes one at a time, in the order they
// arrived (pushes of different partners are independent).
class RecordSink {
 public:
  using RejectFn = std::function<void(const std::string& reason, const std::string& detail)>;
  struct Batch {
    virtual ~Batch() = default;
  };
  virtual ~RecordSink() = default;
  // Decoding and the checks that need no state (signatures, bodies).
  virtual std::unique_ptr<Batch> Prepare(const std::string& from, std::vector<Bytes> records, const RejectFn& reject) = 0;
  // Judges what passed against the cases' consent state and stores it.
  // Returns how many records were newly stored.
  virtual size_t Commit(std::unique_ptr<Batch> batch, const RejectFn& reject) = 0;
  // Both halves, for one batch.
  size_t Ingest(const std::string& from, std::vector<Bytes> records, const RejectFn& reject) {
    return Commit(Prepare(from, std::move(records), reject), reject);
  }
};

class SyncEngine {
 public:
  SyncEngine(std::shared_ptr<const NodeIdentity> keys, Store* store, RecordSink* sink, SyncOptions options);
  ~SyncEngine();
  SyncEngine(const SyncEngine&) = delete;
  SyncEngine& operator=(const SyncEngine&) = delete;

  // Binds the listen endpoint and starts the sync thread. IOError (with the
  // reason) if the endpoint is malformed or cannot be bound.
  Status Start();
  // Stops the thread and closes every socket. Idempotent.
  void Stop();

  // Queues a record this node just stored (or whose audience grew) to be
  // pushed to the partners in its audience.
  void Announce(const RecordId& id);

  // This node's keys changed (a rotation): the sync thread rebinds and reconnects with them.
  void Rekey(std::shared_ptr<const NodeIdentity> keys);
  // The partner list changed in this process (a roster adopted, a partner's
  // keys switched): the sync thread reloads it.
  void PartnersChanged();

  std::vector<PeerStatus> Peers() const;
  SyncStats Stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kring
