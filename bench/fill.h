// Filling a stopped node's database quickly, with exactly what the node itself would have written.
//
// The node is opened in the benchmark process (Node::Open, the node's own
// code). Cases and consents go through Node::CreateCase and
// Node::RecordConsent. Notes are written as Node::WriteItem writes a new
// item: the body sealed with a fresh content key to the readers the case's
// consent state names (SealFragment), signed with the node's key, stored
// with Store::PutRecords with the same audience, and the hybrid clock
// strictly increasing above every stored record. The differences from API
// writes: notes are stored up to 1000 per transaction instead of one, sealing
// runs on several threads, and no access-log entries are written (an API
// write adds one). Sync is not running: the node's process announces nothing,
// partners learn of these records by reconciliation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "crypto/identity.h"
#include "node/node.h"

namespace kring::bench {

// While one is alive, SQLite databases opened in this process (the default
// VFS) skip fsync: a fill is set-up, not a measured write, and its durability
// does not matter (the node processes that use the files later read them
// through the page cache). Connections opened meanwhile keep skipping it.
class UnsyncedFill {
 public:
  UnsyncedFill();
  ~UnsyncedFill();
  UnsyncedFill(const UnsyncedFill&) = delete;
  UnsyncedFill& operator=(const UnsyncedFill&) = delete;
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
};

// Another node's store, written alongside this one: what partner `org`'s node
// would hold after catching up (its process stopped while it is written).
struct Mirror {
  Store* store = nullptr;
  std::string org;
};

class DirectFill {
 public:
  // REQUIRES: no kring-node process runs on `data_dir`.
  static Result<std::unique_ptr<DirectFill>> Open(const std::string& data_dir);
  ~DirectFill();

  Node& node() { return *node_; }
  Result<CaseId> CreateCase(const std::string& label);
  // A consent from this (regie) node to `grantee` for `domains`, valid from 2020.
  Result<RecordId> Grant(const CaseId& c, const std::string& grantee, const std::vector<std::string>& domains);

  // Writes `count` notes of `body_bytes` bytes of JSON each, spread over
  // `cases` uniformly at random, without a life domain. Returns their ids.
  Result<std::vector<FragmentId>> WriteNotes(const std::vector<CaseId>& cases, size_t count, size_t body_bytes,
                                             int threads, const std::vector<Mirror>& mirrors = {});

  // Stores in each mirror the records of `cases` this node holds (genesis,
  // consents: what CreateCase and Grant wrote) that the mirror's organisation
  // may hold, with the audience stored here. WriteNotes with the same
  // mirrors then stores the notes in them too, each batch in every mirror
  // (one thread each) after this node. Not the receiving node's ingest: the
  // cases are marked decided (no consent ends), as its ingest would leave
  // them; its first start rechecks every case and its audiences in the
  // background (partners changed). Returns the records copied in all.
  Result<size_t> MirrorCases(const std::vector<CaseId>& cases, const std::vector<Mirror>& mirrors);

 private:
  DirectFill() = default;
  std::unique_ptr<Node> node_;
  std::unique_ptr<NodeIdentity> identity_;
};

}  // namespace kring::bench
