// Node set-up and the case and fragment operations behind the local API.
#include "node/node.h"

#include <cerrno>
#include <cstring>
#include <sys/stat.h>

#include "node/log.h"
#include "protocol/messages.h"

namespace kring {

std::string KeyFilePath(const std::string& data_dir) { return data_dir + "/node.key"; }
std::string DatabasePath(const std::string& data_dir) { return data_dir + "/kring.db"; }

Result<PublicIdentity> InitNode(const std::string& data_dir, const std::string& org, const std::string& display_name) {
  if (!IsValidOrgSlug(org)) return Status::InvalidArgument("--org '" + org + "' must match [a-z0-9-]{2,64}");
  if (!IsValidDisplayName(display_name))
    return Status::InvalidArgument("--name must be 1 to 128 characters without control characters");
  if (::mkdir(data_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Status::IOError("cannot create " + data_dir + ": " + std::strerror(errno));
  struct stat st {};
  if (::stat(KeyFilePath(data_dir).c_str(), &st) == 0)
    return Status::AlreadyExists(data_dir + " already holds a node (" + KeyFilePath(data_dir) + "); refusing to overwrite its keys");
  NodeIdentity id = NodeIdentity::Generate(org, display_name);
  KRING_RETURN_IF_ERROR(WriteKeyFile(KeyFilePath(data_dir), id));
  auto store = Store::Open(DatabasePath(data_dir));
  if (!store.ok()) return store.status();
  return id.pub;
}

Node::Node(NodeIdentity identity, std::unique_ptr<Store> store)
    : identity_(std::move(identity)), store_(std::move(store)), clock_(&HybridClock::SystemMillis) {}

Node::~Node() { Stop(); }

Result<std::unique_ptr<Node>> Node::Open(const std::string& data_dir) {
  InitSodium();
  auto id = ReadKeyFile(KeyFilePath(data_dir));
  if (!id.ok()) return id.status();
  auto store = Store::Open(DatabasePath(data_dir));
  if (!store.ok()) return store.status();
  std::unique_ptr<Node> node(new Node(std::move(*id), std::move(*store)));
  // The clock must never go back past what we already wrote or received.
  auto max_hlc = node->store_->MaxHlc();
  if (!max_hlc.ok()) return max_hlc.status();
  node->clock_.Observe(*max_hlc);
  return node;
}

Status Node::StartSync(SyncOptions sync) {
  sync_ = std::make_unique<SyncEngine>(identity_, store_.get(), &clock_, std::move(sync));
  Status st = sync_->Start();
  if (!st.ok()) sync_.reset();
  return st;
}

void Node::Stop() {
  if (sync_) sync_->Stop();
}

Result<CaseId> Node::CreateCase(const std::string& label) {
  if (label.size() > 200) return Status::InvalidArgument("label is longer than 200 bytes");
  CaseId id = NewCaseId();
  KRING_RETURN_IF_ERROR(store_->CreateCase(id, label, static_cast<int64_t>(HybridClock::SystemMillis())));
  return id;
}

Result<FragmentId> Node::WriteFragment(const FragmentWrite& w) {
  auto known = store_->CaseKnown(w.case_id);
  if (!known.ok()) return known.status();
  if (!*known) return Status::NotFound("no case " + CaseIdToHex(w.case_id) + " on this node");
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();
  FragmentDraft d;
  d.case_id = w.case_id;
  d.kind = w.kind;
  d.domain = w.domain;
  d.predecessors = w.predecessors;
  // An edit belongs to the item of the versions it supersedes, which must be
  // one item of this case that this node holds.
  for (const FragmentId& p : w.predecessors) {
    auto rec = store_->GetRecord(p);
    if (!rec.ok()) return rec.status();
    if (!rec->has_value()) return Status::InvalidArgument("predecessor " + ToHex(p).substr(0, 16) + "... is not held by this node");
    auto pf = DecodeFragmentRecord((*rec)->record);
    if (!pf.ok()) return pf.status();
    if (pf->header.case_id != w.case_id) return Status::InvalidArgument("a predecessor belongs to another case");
    FragmentId item = pf->ItemId();
    if (d.item != FragmentId{} && d.item != item) return Status::InvalidArgument("predecessors belong to different items");
    d.item = item;
  }
  d.body = w.body;
  for (const std::string& org : w.recipients) {
    if (org == identity_.pub.org) continue;
    auto it = std::find_if(partners->begin(), partners->end(), [&](const Partner& p) { return p.identity.org == org; });
    if (it == partners->end()) return Status::InvalidArgument("recipient '" + org + "' is not a partner of this node");
    d.recipients.push_back(it->identity);
  }
  d.hlc = clock_.Now();
  auto f = SealFragment(d, identity_);
  if (!f.ok()) return f.status();
  FragmentId id = f->Id();
  Bytes record = EncodeFragmentRecord(*f);
  auto put = store_->PutFragment(*f, id, record, identity_.pub.org, static_cast<int64_t>(HybridClock::SystemMillis()));
  if (!put.ok()) return put.status();
  if (sync_) sync_->Announce(id);
  return id;
}

Result<std::vector<ReadableFragment>> Node::ReadFragments(const CaseId& case_id) {
  auto records = store_->RecordsOfCase(case_id);
  if (!records.ok()) return records.status();
  std::vector<ReadableFragment> out;
  for (const StoredRecord& r : *records) {
    auto f = DecodeFragmentRecord(r.record);
    if (!f.ok()) {
      KRING_LOG(kError, "store", "stored record " << ToHex(r.id).substr(0, 16) << " does not decode: " << f.status().message());
      continue;
    }
    auto body = OpenFragment(*f, identity_);
    if (!body.ok()) continue;  // held for forwarding only, or not ours to read
    ReadableFragment rf;
    rf.id = r.id;
    rf.author = f->header.author.v;
    rf.kind = f->header.kind.v;
    rf.domain = f->header.domain.v;
    rf.hlc = f->header.hlc;
    rf.predecessors = f->header.predecessors.v;
    for (const Recipient& rc : f->header.recipients.v) rf.recipients.push_back(rc.org.v);
    rf.body = std::move(*body);
    out.push_back(std::move(rf));
  }
  return out;
}

}  // namespace kring
