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
                                             int threads);

 private:
  DirectFill() = default;
  std::unique_ptr<Node> node_;
  std::unique_ptr<NodeIdentity> identity_;
};

}  // namespace kring::bench
