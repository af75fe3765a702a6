// A kring node: its identity, store, clock and sync engine, and the operations the local API offers.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/identity.h"
#include "node/store.h"
#include "node/sync.h"
#include "protocol/fragment.h"
#include "protocol/hlc.h"

namespace kring {

inline constexpr const char* kVersion = "0.1.0";

std::string KeyFilePath(const std::string& data_dir);
std::string DatabasePath(const std::string& data_dir);

// Creates a node's data directory (mode 0700), key file (0600) and database.
// AlreadyExists if DIR already holds a node: init never overwrites keys.
Result<PublicIdentity> InitNode(const std::string& data_dir, const std::string& org, const std::string& display_name);

// A fragment as this organisation can read it.
struct ReadableFragment {
  FragmentId id{};
  std::string author;
  std::string kind;
  std::string domain;
  HlcTimestamp hlc = 0;
  std::vector<FragmentId> predecessors;
  std::vector<std::string> recipients;
  Bytes body;  // plaintext; lives only in memory
};

struct FragmentWrite {
  CaseId case_id{};
  std::string kind;
  std::string domain;
  std::vector<std::string> recipients;  // partner orgs; the author is always included
  std::vector<FragmentId> predecessors;
  Bytes body;
};

class Node {
 public:
  // Loads DIR's key file and opens its database.
  static Result<std::unique_ptr<Node>> Open(const std::string& data_dir);
  ~Node();

  // Starts syncing with partners (binds `sync.listen`).
  Status StartSync(SyncOptions sync);
  void Stop();

  const PublicIdentity& identity() const { return identity_.pub; }
  Store& store() { return *store_; }
  SyncEngine* sync() { return sync_.get(); }

  Result<CaseId> CreateCase(const std::string& label);
  // Encrypts, signs and durably stores a fragment, then queues it for its
  // recipients. NotFound for an unknown case; InvalidArgument for a
  // recipient that is not a partner or a bad kind, domain or size.
  Result<FragmentId> WriteFragment(const FragmentWrite& w);
  // The fragments of a case this organisation can decrypt, oldest first.
  Result<std::vector<ReadableFragment>> ReadFragments(const CaseId& case_id);

 private:
  Node(NodeIdentity identity, std::unique_ptr<Store> store);
  NodeIdentity identity_;
  std::unique_ptr<Store> store_;
  HybridClock clock_;
  std::unique_ptr<SyncEngine> sync_;
};

}  // namespace kring
