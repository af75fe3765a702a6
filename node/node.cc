// Node set-up, ingesting partners' records, and recomputing a case after every change.
#include "node/node.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <sys/stat.h>

#include "crypto/primitives.h"
#include "node/log.h"
#include "plan/items.h"
#include "protocol/access_record.h"
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
  // An existing directory (say a fresh 0755 mount point) becomes the node's alone.
  if (::chmod(data_dir.c_str(), 0700) != 0)
    return Status::IOError("cannot make " + data_dir + " owner-only (chmod 700): " + std::strerror(errno));
  struct stat st {};
  if (::stat(KeyFilePath(data_dir).c_str(), &st) == 0)
    return Status::AlreadyExists(data_dir + " already holds a node (" + KeyFilePath(data_dir) + "); refusing to overwrite its keys");
  NodeIdentity id = NodeIdentity::Generate(org, display_name);
  KRING_RETURN_IF_ERROR(WriteKeyFile(KeyFilePath(data_dir), id));
  auto store = Store::Open(DatabasePath(data_dir));
  if (!store.ok()) return store.status();
  return id.pub;
}

Node::Node(NodeIdentity identity, std::unique_ptr<Store> store, WallClock wall)
    : identity_(std::move(identity)), store_(std::move(store)), wall_(wall), clock_(wall) {}

Node::~Node() { Stop(); }

Result<std::unique_ptr<Node>> Node::Open(const std::string& data_dir, WallClock wall) {
  InitSodium();
  auto id = ReadKeyFile(KeyFilePath(data_dir));
  if (!id.ok()) return id.status();
  auto store = Store::Open(DatabasePath(data_dir));
  if (!store.ok()) return store.status();
  std::unique_ptr<Node> node(new Node(std::move(*id), std::move(*store), std::move(wall)));
  // The clock must never go back past what this node wrote itself. Only
  // its own records count: a partner's timestamp (an access record's, say)
  // set in 2126 must not become every later record's time after a restart.
  // And not beyond the skew bound: records written while a bad floor held
  // must not keep the clock in the future either.
  auto own_hlc = node->store_->MaxOwnHlc(node->identity_.pub.org);
  if (!own_hlc.ok()) return own_hlc.status();
  const HlcTimestamp plausible = MakeHlc(node->wall_() + kMaxClockSkewMillis, 0);
  if (*own_hlc > plausible)
    KRING_LOG(kWarn, "clock", "this node's newest record is dated " << (HlcMillis(*own_hlc) - node->wall_()) / 60000
                                 << " minute(s) ahead of the wall clock; the clock resumes from the skew bound");
  node->clock_.SetFloor(std::min(*own_hlc, plausible));
  // Cases whose decisions changed while the node was down (a consent's
  // window opened or closed), or whose last recompute did not finish, are
  // decided afresh before anything is served; the rest wait on the timer.
  auto schedule = node->store_->CaseSchedule();
  if (!schedule.ok()) return schedule.status();
  std::lock_guard lock(node->mu_);
  const int64_t now = node->NowMs();
  size_t due = 0;
  for (const auto& [c, t] : *schedule) {
    if (t > now) {
      node->next_change_[c] = t;
      continue;
    }
    ++due;
    Status st = node->RecomputeLocked(c);
    if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(c) << ": " << st.ToString());
  }
  if (due > 0) KRING_LOG(kInfo, "consent", "rechecked who may read what in " << due << " case(s) changed while stopped");
  // Partners added while the node was down may be readers an author could
  // not seal to: recheck every case, after start-up, on the timer thread.
  auto digest = node->PartnersDigest();
  if (!digest.ok()) return digest.status();
  auto seen = node->store_->GetNodeState("partners_digest");
  if (!seen.ok()) return seen.status();
  if (!seen->has_value() || **seen != *digest) node->recompute_all_ = true;
  return node;
}

Result<Bytes> Node::PartnersDigest() {
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();
  Bytes all;  // org NUL sign_pk box_pk, per partner, sorted by org
  for (const Partner& p : *partners) {
    all.insert(all.end(), p.identity.org.begin(), p.identity.org.end());
    all.push_back(0);
    all.insert(all.end(), p.identity.sign_pk.begin(), p.identity.sign_pk.end());
    all.insert(all.end(), p.identity.box_pk.begin(), p.identity.box_pk.end());
  }
  Hash h = HashParts("kring/partners", {ByteSpan(all)});
  return Bytes(h.begin(), h.end());
}

Status Node::StartSync(SyncOptions sync) {
  // A partner added (again) may be a reader the author could not seal to:
  // recompute every case so authors and the regie organisation re-seal.
  sync.on_partners_changed = [this] {
    recompute_all_ = true;
    timer_cv_.notify_all();
  };
  sync_ = std::make_unique<SyncEngine>(identity_, store_.get(), this, std::move(sync));
  Status st = sync_->Start();
  if (!st.ok()) {
    sync_.reset();
    return st;
  }
  timer_ = std::thread([this] { TimerLoop(); });
  return st;
}

void Node::Stop() {
  {
    std::lock_guard lock(timer_mu_);
    stopping_ = true;
  }
  timer_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  if (sync_) sync_->Stop();
}

// Wakes when a consent's window opens or closes somewhere, and recomputes
// that case: expiry ends access without anyone acting.
void Node::TimerLoop() {
  std::unique_lock tl(timer_mu_);
  while (!stopping_) {
    timer_cv_.wait_for(tl, std::chrono::milliseconds(100));
    if (stopping_) break;
    tl.unlock();
    if (recompute_all_.exchange(false) && !SweepAllCases()) return;
    RecomputeDueCases();
    tl.lock();
  }
}

bool Node::Stopping() {
  std::lock_guard lock(timer_mu_);
  return stopping_;
}

void Node::RecomputeDueCases() {
  std::vector<CaseId> due;
  {
    std::lock_guard lock(mu_);
    int64_t now = NowMs();
    for (auto& [c, t] : next_change_)
      if (t <= now) due.push_back(c);
  }
  // One case at a time, so that API calls and pushes wait for one case at most.
  for (const CaseId& c : due) {
    std::lock_guard lock(mu_);
    Status st = RecomputeLocked(c);
    if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(c) << ": " << st.ToString());
  }
}

bool Node::SweepAllCases() {
  auto digest = PartnersDigest();  // before the sweep: a change during it triggers another
  auto cases = store_->CasesWithRecords();
  if (!digest.ok() || !cases.ok()) {
    KRING_LOG(kError, "store", "cannot list cases to recheck: " << (digest.ok() ? cases.status() : digest.status()).ToString());
    recompute_all_ = true;  // try again on the next tick
    return true;
  }
  KRING_LOG(kInfo, "consent", "partners changed; rechecking who may read what in " << cases->size() << " case(s)");
  auto last_due = std::chrono::steady_clock::now();
  for (const CaseId& c : *cases) {
    if (Stopping()) return false;
    {
      std::lock_guard lock(mu_);
      Status st = RecomputeLocked(c);  // a failure leaves the case due: the timer retries it
      if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(c) << ": " << st.ToString());
    }
    // Consents that end meanwhile are enforced meanwhile, not after the sweep.
    if (std::chrono::steady_clock::now() - last_due >= std::chrono::milliseconds(100)) {
      RecomputeDueCases();
      last_due = std::chrono::steady_clock::now();
    }
  }
  Status st = store_->SetNodeState("partners_digest", *digest);
  if (!st.ok()) KRING_LOG(kError, "store", "cannot record the partner set: " << st.ToString());
  KRING_LOG(kInfo, "consent", "rechecked " << cases->size() << " case(s) for the current partners");
  return true;
}

const SignPublicKey* Node::AuthorKey(const std::string& org, const std::vector<Partner>& partners) const {
  if (org == identity_.pub.org) return &identity_.pub.sign_pk;
  for (const Partner& p : partners)
    if (p.identity.org == org) return &p.identity.sign_pk;
  return nullptr;
}

Result<CaseState> Node::State(const CaseId& case_id) {
  std::lock_guard lock(mu_);
  return StateLocked(case_id);
}

Result<CaseState> Node::StateLocked(const CaseId& case_id) {
  if (auto it = state_cache_.find(case_id); it != state_cache_.end()) return it->second;
  // Key grants decide nothing about consent; keeping them out keeps the
  // state's cost independent of how many keys were re-sealed.
  std::vector<ControlRecord> controls;
  auto records = store_->DecisionRecordsOfCase(case_id);
  if (!records.ok()) return records.status();
  for (const StoredRecord& r : *records) {
    auto c = DecodeControlRecord(r.record);
    if (!c.ok()) return Status::Corruption("stored control record does not decode: " + c.status().message());
    controls.push_back(std::move(*c));
  }
  CaseState state = CaseState::Build(case_id, std::move(controls));
  if (!state.has_genesis()) return Status::NotFound("no case " + CaseIdToHex(case_id) + " on this node");
  if (state_cache_.size() >= kStateCacheCases) state_cache_.erase(state_cache_.begin());
  state_cache_.emplace(case_id, state);
  return state;
}

Status Node::ContentKeyFor(const Fragment& f, ContentKey* key) {
  if (const SealedKey* sealed = SealedKeyFor(f, identity_.pub.org)) return OpenContentKey(*sealed, identity_, key);
  auto grants = store_->RecordsOfCase(f.header.case_id, RecordType::kKeyGrant);
  if (!grants.ok()) return grants.status();
  FragmentId id = f.Id();
  for (const StoredRecord& r : *grants) {
    auto c = DecodeControlRecord(r.record);
    if (!c.ok()) continue;
    const auto& g = std::get<KeyGrant>(c->body);
    if (g.fragment == id && g.grantee.v == identity_.pub.org && OpenContentKey(g.sealed_key, identity_, key).ok())
      return Status::Ok();
  }
  return Status::PermissionDenied("no content key for this organisation");
}

void Node::LateGrantsLocked(const CaseId& case_id, const CaseState& state, const FragmentId& id, const Fragment& f,
                            const std::vector<std::string>& readers, const std::vector<Partner>& partners,
                            std::set<std::pair<FragmentId, std::string>>* granted, std::vector<ControlBody>* out) {
  const std::string& me = identity_.pub.org;
  for (const std::string& reader : readers) {
    if (reader == me || f.IsRecipient(reader) || granted->count({id, reader})) continue;
    auto partner = std::find_if(partners.begin(), partners.end(), [&](const Partner& p) { return p.identity.org == reader; });
    if (partner == partners.end()) continue;  // not our partner: someone else re-seals
    ContentKey key;
    if (!ContentKeyFor(f, &key).ok()) continue;
    KeyGrant g;
    g.h.case_id = case_id;
    g.h.author.v = me;
    g.h.hlc = clock_.Now();
    auto heads = state.Heads();
    g.h.parents.v.assign(heads.begin(), heads.begin() + std::min(heads.size(), kMaxCausalParents));
    g.fragment = id;
    g.grantee.v = reader;
    g.sealed_key = SealKey(key, partner->identity.box_pk);
    out->push_back(std::move(g));
    granted->insert({id, reader});
  }
}

Status Node::StoreGrantsLocked(const CaseId& case_id, std::vector<ControlBody> grants) {
  for (ControlBody& body : grants) {
    auto id = StoreOwnControl(std::move(body));
    if (!id.ok()) return id.status();
    KRING_LOG(kInfo, "consent", "re-sealed a content key for a late grant in case " << CaseIdToHex(case_id));
  }
  return Status::Ok();
}

Status Node::RecomputeLocked(const CaseId& case_id) {
  // Until this pass completes, the case is due again: a failure (disk full,
  // a busy database) is retried by the timer instead of leaving stale
  // audiences (and after a crash, the stored schedule still says due).
  next_change_[case_id] = 0;
  auto state_or = StateLocked(case_id);
  if (!state_or.ok()) {
    if (state_or.status().code() != Status::Code::kNotFound) return state_or.status();
    next_change_.erase(case_id);
    return store_->SetNextChange(case_id, std::nullopt);
  }
  const CaseState& state = *state_or;
  const std::string& me = identity_.pub.org;
  const int64_t now = NowMs();
  auto records = store_->RecordsOfCase(case_id);
  if (!records.ok()) return records.status();
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();

  // Decode everything once.
  std::map<FragmentId, Fragment> fragments;
  std::vector<std::pair<RecordId, ControlRecord>> controls;
  std::set<std::pair<FragmentId, std::string>> granted;  // (fragment, grantee) with a key grant held
  for (const StoredRecord& r : *records) {
    if (r.type == RecordType::kFragment) {
      auto f = DecodeFragmentRecord(r.record);
      if (f.ok()) fragments.emplace(r.id, std::move(*f));
    } else if (IsControlType(r.type)) {
      auto c = DecodeControlRecord(r.record);
      if (!c.ok()) continue;
      if (auto* g = std::get_if<KeyGrant>(&c->body)) granted.insert({g->fragment, g->grantee.v});
      controls.emplace_back(r.id, std::move(*c));
    }
  }

  std::vector<std::pair<RecordId, std::vector<std::string>>> audiences;
  std::vector<RecordId> purge;
  std::vector<std::string> purged_hex;
  std::vector<ControlBody> new_grants;
  const bool regie = state.Regie().org == me;
  for (auto& [id, f] : fragments) {
    FragmentFacts facts{id, f.header.author.v, f.header.domain.v};
    std::vector<std::string> readers = state.Readers(facts, now);
    bool mine = f.header.author.v == me;
    if (!mine && !std::binary_search(readers.begin(), readers.end(), me)) {
      purge.push_back(id);
      purged_hex.push_back(ToHex(id));
      continue;
    }
    // Late grant: the regie organisation or the author re-seals the content
    // key to readers the author did not seal it to.
    if (regie || mine) LateGrantsLocked(case_id, state, id, f, readers, *partners, &granted, &new_grants);
    audiences.emplace_back(id, std::move(readers));
  }
  for (auto& [id, c] : controls) {
    if (auto* g = std::get_if<KeyGrant>(&c.body)) {
      // A key grant goes to its grantee only while the grantee may read the
      // fragment; a grantee drops grants to fragments it no longer holds.
      auto f = fragments.find(g->fragment);
      bool held = f != fragments.end() && std::find(purge.begin(), purge.end(), g->fragment) == purge.end();
      if (!held && g->grantee.v == me) {
        purge.push_back(id);
        continue;
      }
      std::vector<std::string> audience = {g->h.author.v};
      if (held && state.MayRead(g->grantee.v, FragmentFacts{g->fragment, f->second.header.author.v,
                                                             f->second.header.domain.v}, now))
        audience.push_back(g->grantee.v);
      audiences.emplace_back(id, audience);
      continue;
    }
    audiences.emplace_back(id, state.ControlAudience(c, now));
  }

  // Written only where they changed; what gained a member is sent now.
  auto grown = store_->SetAudiences(audiences);
  if (!grown.ok()) return grown.status();

  if (!purge.empty()) {
    auto n = store_->DeleteRecords(purge);
    if (!n.ok()) return n.status();
    if (!purged_hex.empty()) {
      KRING_LOG(kInfo, "consent", "purged " << purged_hex.size() << " fragment(s) of case " << CaseIdToHex(case_id)
                                            << " this organisation may no longer hold");
      LogSystemAccess("purge", case_id, purged_hex);
    } else {
      KRING_LOG(kDebug, "consent", "dropped " << purge.size() << " key grant(s) to fragments not held in case "
                                              << CaseIdToHex(case_id));
    }
  }
  KRING_RETURN_IF_ERROR(StoreGrantsLocked(case_id, std::move(new_grants)));
  if (sync_)
    for (const RecordId& id : *grown) sync_->Announce(id);

  auto next = state.NextChange(now);
  KRING_RETURN_IF_ERROR(store_->SetNextChange(case_id, next));
  if (next) next_change_[case_id] = *next;
  else next_change_.erase(case_id);
  return Status::Ok();
}

Result<RecordId> Node::StoreOwnControl(ControlBody body) {
  auto rec = SignControl(std::move(body), identity_);
  if (!rec.ok()) return rec.status();
  RecordId id = rec->Id();
  const ControlHeader& h = rec->header();
  Bytes bytes = EncodeControlRecord(*rec);
  std::vector<std::string> audience = {identity_.pub.org};
  if (auto* g = std::get_if<KeyGrant>(&rec->body)) audience.push_back(g->grantee.v);
  RecordRow row{id, rec->type(), h.case_id, h.author.v, "", "", h.hlc, bytes, audience};
  auto added = store_->PutRecords({row}, identity_.pub.org, NowMs());
  state_cache_.erase(h.case_id);  // even on failure: the store may hold it
  if (!added.ok()) return added.status();
  if (sync_) sync_->Announce(id);
  return id;
}

void Node::LogSystemAccess(const char* action, const CaseId& case_id, std::vector<std::string> items) {
  AccessEntry e;
  RandomBytes(e.event_id);
  e.time_ms = NowMs();
  e.action = action;
  e.outcome = "success";
  e.actor_id = "kring-node";
  e.actor_name = "kring-node (automatic)";
  e.actor_role = "system";
  e.organisation = identity_.pub.org;
  e.client_system = "kring-node";
  e.case_id = case_id;
  e.items = std::move(items);
  Status st = AppendAccessLocked(&e);
  if (!st.ok()) KRING_LOG(kError, "audit", "cannot write the access log: " << st.ToString());
}

Status Node::AppendAccess(AccessEntry* e) {
  std::lock_guard lock(mu_);
  return AppendAccessLocked(e);
}

Status Node::AppendAccessLocked(AccessEntry* e) {
  // The citizen asks the regie organisation who looked: it gets a signed
  // copy, stored (for sending) in the same transaction as the entry.
  std::vector<RecordRow> copies;
  Bytes bytes;
  std::optional<RecordId> copy_id;
  if (e->case_id) {
    auto state = StateLocked(*e->case_id);  // not ok: a case this node takes no part in (a failed call)
    std::string regie = state.ok() ? state->Regie().org : "";
    if (!regie.empty() && regie != identity_.pub.org) {
      AccessRecordBody b;
      b.case_id = *e->case_id;
      b.author.v = identity_.pub.org;
      b.hlc = clock_.Now();
      b.event_id = e->event_id;
      b.time_ms = e->time_ms;
      b.action.v = e->action;
      b.outcome.v = e->outcome;
      b.actor_id.v = e->actor_id;
      b.actor_name.v = e->actor_name;
      b.actor_role.v = e->actor_role;
      b.on_behalf_of.v = e->on_behalf_of;
      b.client.v = e->client_system;
      for (const std::string& item : e->items)
        if (b.items.v.size() < kMaxAccessItems) b.items.v.push_back({item.substr(0, 64)});
      b.consent.v = e->consent.substr(0, 4096);
      auto rec = SignAccessRecord(std::move(b), identity_);
      if (!rec.ok()) return rec.status();
      copy_id = rec->Id();
      bytes = EncodeAccessRecord(*rec);
      copies.push_back(RecordRow{*copy_id, RecordType::kAccessRecord, *e->case_id, identity_.pub.org, "", "",
                                 rec->body.hlc, bytes, {identity_.pub.org, regie}});
    }
  }
  KRING_RETURN_IF_ERROR(store_->AppendAccess(e, copies));
  if (sync_ && copy_id) sync_->Announce(*copy_id);
  return Status::Ok();
}

// What can be checked of a fragment without the node's state: its author's
// key, signature, kind and domain, and (when sealed to us) its body. Run on
// several threads for a large push.
struct Node::FragmentCheck {
  Fragment f;
  Bytes* bytes = nullptr;
  FragmentId id{};
  const char* reason = nullptr;  // the first failure, in the order receivers report them
  std::string detail;
  bool body_checked = false;     // the body was opened and judged here
  const char* body_reason = nullptr;
  std::string body_detail;
};

void Node::CheckFragmentAlone(FragmentCheck& c, const std::vector<Partner>& partners) const {
  const FragmentHeader& h = c.f.header;
  const SignPublicKey* pk = AuthorKey(h.author.v, partners);
  if (pk == nullptr) {
    c.reason = "unknown_author";
    c.detail = "fragment by '" + h.author.v + "', who is not a partner";
    return;
  }
  Status st = VerifyFragmentWithId(c.f, c.id, *pk);
  if (!st.ok()) {
    c.reason = "bad_fragment";
    c.detail = "fragment by " + h.author.v + ": " + st.message();
    return;
  }
  const SealedKey* sealed = SealedKeyFor(c.f, identity_.pub.org);
  if (sealed == nullptr) return;  // perhaps through a key grant: judged under the lock
  ContentKey key;
  if (!OpenContentKey(*sealed, identity_, &key).ok()) return;
  JudgeBody(c, key);
}

void Node::JudgeBody(FragmentCheck& c, const ContentKey& key) {
  const FragmentHeader& h = c.f.header;
  c.body_checked = true;
  auto body = DecryptFragment(c.f, key);
  if (!body.ok()) {
    c.body_reason = "bad_fragment";
    c.body_detail = "fragment " + ToHex(c.id).substr(0, 16) + " does not decrypt: " + body.status().message();
    return;
  }
  nlohmann::json data = nlohmann::json::parse(body->begin(), body->end(), nullptr, false);
  sodium_memzero(body->data(), body->size());
  Status valid = ValidateFragmentItem(h.kind.v, h.domain.v, data);
  if (valid.ok() && h.predecessors.v.empty() && IsTombstone(data))
    valid = Status::InvalidArgument("a new item cannot be a deletion");
  if (!valid.ok()) {
    c.body_reason = "invalid_item";
    c.body_detail = "fragment " + ToHex(c.id).substr(0, 16) + ": " + valid.message();
  }
}

// A push between Prepare and Commit.
struct Node::IngestBatch : RecordSink::Batch {
  std::string from;
  std::vector<Bytes> records;  // the others point into these
  std::vector<Partner> partners;
  std::map<CaseId, std::vector<std::pair<ControlRecord, Bytes*>>> controls;
  std::vector<FragmentCheck> fragments;
  std::vector<std::pair<AccessRecord, Bytes*>> access;
};

std::unique_ptr<RecordSink::Batch> Node::Prepare(const std::string& from, std::vector<Bytes> records_in,
                                                 const RejectFn& reject) {
  auto batch = std::make_unique<IngestBatch>();
  batch->from = from;
  batch->records = std::move(records_in);
  auto partners_or = store_->ListPartners();
  if (!partners_or.ok()) {
    KRING_LOG(kError, "store", "cannot read partners: " << partners_or.status().ToString());
    batch->records.clear();
    return batch;
  }
  batch->partners = std::move(*partners_or);
  const std::vector<Partner>* partners = &batch->partners;
  auto& controls = batch->controls;
  auto& fragments = batch->fragments;
  auto& access = batch->access;

  // Control records first: a fragment's admission depends on them.
  for (Bytes& bytes : batch->records) {
    if (bytes.empty()) {
      reject("undecodable_record", "empty record");
      continue;
    }
    if (bytes[0] == static_cast<uint8_t>(RecordType::kAccessRecord)) {
      auto a = DecodeAccessRecord(bytes);
      if (!a.ok()) {
        reject("undecodable_record", "undecodable access record: " + a.status().message());
        continue;
      }
      access.emplace_back(std::move(*a), &bytes);
      continue;
    }
    if (bytes[0] == static_cast<uint8_t>(RecordType::kFragment)) {
      auto f = DecodeFragmentRecord(bytes);
      if (!f.ok()) {
        reject("undecodable_record", "undecodable fragment: " + f.status().message());
        continue;
      }
      FragmentCheck& c = fragments.emplace_back();
      c.id = f->Id();
      c.f = std::move(*f);
      c.bytes = &bytes;
      continue;
    }
    auto c = DecodeControlRecord(bytes);
    if (!c.ok()) {
      reject("undecodable_record", "undecodable record: " + c.status().message());
      continue;
    }
    const ControlHeader& h = c->header();
    const SignPublicKey* pk = AuthorKey(h.author.v, *partners);
    if (pk == nullptr) {
      reject("unknown_author", "record by '" + h.author.v + "', who is not a partner");
      continue;
    }
    Status st = VerifyControl(*c, *pk);
    if (!st.ok()) {
      reject("bad_record", "record by " + h.author.v + ": " + st.message());
      continue;
    }
    controls[h.case_id].emplace_back(std::move(*c), &bytes);
  }

  // Copies of what we already hold (a record pushed and also asked for,
  // or sent twice in one push) cost a lookup, not a verification.
  {
    std::vector<RecordId> ids;
    for (const FragmentCheck& c : fragments) ids.push_back(c.id);
    auto held = store_->Contains(ids);
    std::set<RecordId> seen;
    std::vector<FragmentCheck> fresh;
    for (size_t i = 0; i < fragments.size(); ++i)
      if (!(held.ok() && (*held)[i]) && seen.insert(fragments[i].id).second) fresh.push_back(std::move(fragments[i]));
    fragments = std::move(fresh);
  }
  // The costly checks (signature, opening the key, the body) need no state:
  // outside the lock, so API calls and the previous push's Commit go on.
  for (FragmentCheck& c : fragments) CheckFragmentAlone(c, *partners);
  return batch;
}

size_t Node::Commit(std::unique_ptr<Batch> batch_in, const RejectFn& reject) {
  auto* batch = static_cast<IngestBatch*>(batch_in.get());
  const std::string& from = batch->from;
  const std::vector<Partner>* partners = &batch->partners;
  auto& controls = batch->controls;
  auto& fragments = batch->fragments;
  auto& access = batch->access;
  const std::string& me = identity_.pub.org;
  size_t added = 0;

  std::lock_guard lock(mu_);
  // A partner removed or re-keyed since Prepare is no longer trusted.
  auto current = store_->ListPartners();
  if (!current.ok()) {
    KRING_LOG(kError, "store", "cannot read partners: " << current.status().ToString());
    return 0;
  }
  auto still_trusted = [&](const std::string& author) {
    const SignPublicKey* then = AuthorKey(author, batch->partners);
    const SignPublicKey* now_key = AuthorKey(author, *current);
    if (then != nullptr && now_key != nullptr && *then == *now_key) return true;
    reject("unknown_author", "record by '" + author + "', who is no longer a partner");
    return false;
  };
  partners = &*current;
  const int64_t now = NowMs();
  std::set<CaseId> touched;  // control records stored: full recompute

  std::map<FragmentId, std::string> pushed_authors;  // fragments in this push, for their key grants
  for (FragmentCheck& c : fragments)
    if (!c.reason) pushed_authors[c.id] = c.f.header.author.v;
  for (auto& [case_id, list] : controls) {
    std::erase_if(list, [&](const std::pair<ControlRecord, Bytes*>& c) {
      if (!still_trusted(c.first.header().author.v)) return true;
      if (clock_.Plausible(c.first.header().hlc)) return false;
      reject("clock_skew", "record timestamp lies more than an hour in the future");
      return true;
    });
    // Judge the new records against everything known of the case, them included.
    std::vector<ControlRecord> all;
    auto stored = store_->DecisionRecordsOfCase(case_id);
    if (!stored.ok()) continue;
    for (const StoredRecord& r : *stored)
      if (auto c = DecodeControlRecord(r.record); c.ok()) all.push_back(std::move(*c));
    for (auto& [c, bytes] : list)
      if (c.type() != RecordType::kKeyGrant) all.push_back(c);
    CaseState state = CaseState::Build(case_id, all);
    auto invalid = state.Invalid();
    std::vector<RecordRow> rows;
    for (auto& [c, bytes] : list) {
      RecordId id = c.Id();
      if (auto* g = std::get_if<KeyGrant>(&c.body)) {
        // Only keys for us, to fragments we hold or receive now, from the
        // fragment's author or the regie organisation: nothing else is stored.
        std::string fragment_author;
        if (auto f = store_->GetRecord(g->fragment); f.ok() && f->has_value()) {
          if (auto fd = DecodeFragmentRecord((*f)->record); fd.ok()) fragment_author = fd->header.author.v;
        } else if (auto it = pushed_authors.find(g->fragment); it != pushed_authors.end()) {
          fragment_author = it->second;
        }
        if (g->grantee.v != me || fragment_author.empty()) {
          reject("not_addressed", "key grant for " + g->grantee.v + " to a fragment this node does not hold");
          continue;
        }
        Status ok = state.CheckKeyGrant(c, fragment_author);
        if (!ok.ok()) {
          reject("forged_record", "key grant by " + c.header().author.v + ": " + ok.message());
          continue;
        }
      } else if (std::find(invalid.begin(), invalid.end(), id) != invalid.end()) {
        reject("forged_record", "record by " + c.header().author.v + " that it may not write: " +
                                    state.CheckNewRecord(c).message());
        continue;
      }
      auto audience = state.ControlAudience(c, now);
      if (!std::binary_search(audience.begin(), audience.end(), me)) {
        reject("not_addressed", "control record " + ToHex(id).substr(0, 16) + " is not for " + me);
        continue;
      }
      const ControlHeader& h = c.header();
      rows.push_back(RecordRow{id, c.type(), case_id, h.author.v, "", "", h.hlc, *bytes, audience});
    }
    auto ids = store_->PutRecords(rows, from, now);
    state_cache_.erase(case_id);
    if (!ids.ok()) {
      KRING_LOG(kError, "store", "cannot store records from " << from << ": " << ids.status().ToString());
      continue;
    }
    added += ids->size();
    if (!ids->empty()) touched.insert(case_id);
    for (const RecordRow& r : rows) clock_.Observe(r.hlc);  // only what we accepted moves our clock
    for (const RecordRow& r : rows)
      if (r.type == RecordType::kConsentWithdrawal && std::find(ids->begin(), ids->end(), r.id) != ids->end())
        withdrawals_processed_.fetch_add(1);
  }
  std::vector<RecordRow> fragment_rows;
  std::vector<const FragmentCheck*> accepted;
  for (FragmentCheck& c : fragments) {
    const FragmentHeader& h = c.f.header;
    if (c.reason) {
      reject(c.reason, c.detail);
      continue;
    }
    if (!still_trusted(h.author.v)) continue;
    const FragmentId& id = c.id;
    auto state = StateLocked(h.case_id);
    if (!state.ok()) {
      reject("unknown_case", "fragment " + ToHex(id).substr(0, 16) + " of a case this node takes no part in");
      continue;
    }
    FragmentFacts facts{id, h.author.v, h.domain.v};
    // The author must have been allowed to write it: the regie organisation,
    // or an organisation whose consent covered the domain when it wrote.
    // (The creator held regie first; a later former regie organisation's
    // fragments pass only through its consent: see docs/consent.md.)
    if (h.author.v != me && h.author.v != state->Regie().org && h.author.v != state->creator() &&
        !state->ConsentFor(h.author.v, facts, static_cast<int64_t>(HlcMillis(h.hlc)))) {
      reject("forged_record", "fragment " + ToHex(id).substr(0, 16) + " by " + h.author.v +
                                  ", which has no consent to write in " + (h.domain.v.empty() ? "this case" : h.domain.v));
      continue;
    }
    if (h.author.v != me && !state->MayRead(me, facts, now)) {
      reject("not_addressed", "fragment " + ToHex(id).substr(0, 16) + " is outside what " + me + " may read");
      continue;
    }
    if (!clock_.Plausible(h.hlc)) {
      reject("clock_skew", "fragment timestamp lies more than an hour in the future");
      continue;
    }
    // The header must name a plan kind and a domain that fits it; the body
    // must be a valid item of that kind (judged once we can open it).
    if (!IsFragmentKind(h.kind.v) || (!h.domain.v.empty() && !IsLifeDomain(h.domain.v)) ||
        (DomainRuleOf(h.kind.v) == DomainRule::kRequired && h.domain.v.empty()) ||
        (DomainRuleOf(h.kind.v) == DomainRule::kForbidden && !h.domain.v.empty())) {
      reject("invalid_item", "fragment " + ToHex(id).substr(0, 16) + " has kind '" + h.kind.v + "' and domain '" +
                                 h.domain.v + "', which do not make a plan item");
      continue;
    }
    // An edit keeps its item's kind and domain and stays within its case and item.
    bool consistent = true;
    for (const FragmentId& p : h.predecessors.v) {
      auto prev = store_->GetRecord(p);
      if (!prev.ok() || !prev->has_value() || (*prev)->type != RecordType::kFragment) continue;  // not here (yet)
      auto pf = DecodeFragmentRecord((*prev)->record);
      if (!pf.ok()) continue;
      if (pf->header.case_id != h.case_id || pf->header.kind.v != h.kind.v || pf->header.domain.v != h.domain.v ||
          pf->ItemId() != c.f.ItemId())
        consistent = false;
    }
    if (!consistent) {
      reject("invalid_item", "fragment " + ToHex(id).substr(0, 16) + " edits a version of another case, item, kind or domain");
      continue;
    }
    if (!c.body_checked) {
      // Not sealed to us: perhaps a key grant we hold opens it.
      ContentKey key;
      if (ContentKeyFor(c.f, &key).ok()) JudgeBody(c, key);
    }
    if (c.body_reason) {
      reject(c.body_reason, c.body_detail);
      continue;
    }
    fragment_rows.push_back(RecordRow{id, RecordType::kFragment, h.case_id, h.author.v, h.kind.v, h.domain.v, h.hlc,
                                      *c.bytes, state->Readers(facts, now)});
    accepted.push_back(&c);
  }
  // One transaction (one fsync) for all fragments of the push. Their
  // audiences are stored with them: no recompute needed.
  if (!fragment_rows.empty()) {
    auto ids = store_->PutRecords(fragment_rows, from, now);
    if (!ids.ok()) {
      KRING_LOG(kError, "store", "cannot store fragments from " << from << ": " << ids.status().ToString());
    } else {
      added += ids->size();
      std::set<RecordId> fresh(ids->begin(), ids->end());
      // The regie organisation (and an author, sent back its own fragment)
      // re-seals keys for readers the author could not seal to.
      std::map<CaseId, std::set<std::pair<FragmentId, std::string>>> granted;
      for (size_t i = 0; i < fragment_rows.size(); ++i) {
        const RecordRow& r = fragment_rows[i];
        clock_.Observe(r.hlc);
        if (!fresh.count(r.id)) continue;
        const Fragment& f = accepted[i]->f;
        if (touched.count(r.case_id)) continue;  // the full recompute below re-seals
        auto state = StateLocked(r.case_id);
        if (!state.ok() || (state->Regie().org != me && f.header.author.v != me)) continue;
        bool unsealed = std::any_of(r.audience.begin(), r.audience.end(), [&](const std::string& o) {
          return o != me && !f.IsRecipient(o);
        });
        if (!unsealed) continue;
        auto g = granted.find(r.case_id);
        if (g == granted.end()) {
          g = granted.emplace(r.case_id, std::set<std::pair<FragmentId, std::string>>{}).first;
          auto grants = store_->RecordsOfCase(r.case_id, RecordType::kKeyGrant);
          if (grants.ok())
            for (const StoredRecord& gr : *grants)
              if (auto kg = DecodeControlRecord(gr.record); kg.ok())
                g->second.insert({std::get<KeyGrant>(kg->body).fragment, std::get<KeyGrant>(kg->body).grantee.v});
        }
        std::vector<ControlBody> new_grants;
        LateGrantsLocked(r.case_id, *state, r.id, f, r.audience, *partners, &g->second, &new_grants);
        Status st = StoreGrantsLocked(r.case_id, std::move(new_grants));
        if (!st.ok()) {
          next_change_[r.case_id] = 0;  // the timer's recompute re-seals
          KRING_LOG(kError, "case", "cannot re-seal in case " << CaseIdToHex(r.case_id) << ": " << st.ToString());
        }
      }
    }
  }

  // Control records change audiences, purge, re-seal: after the fragments
  // of the push are stored (a key grant arrives with its fragment; the
  // fragments were judged by the new state already).
  for (const CaseId& c : touched) {
    Status st = RecomputeLocked(c);
    if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(c) << ": " << st.ToString());
  }

  // Access-log entries of other organisations: only for the regie organisation.
  for (auto& [a, bytes] : access) {
    const AccessRecordBody& b = a.body;
    const SignPublicKey* pk = AuthorKey(b.author.v, *partners);  // verified here, with the current keys
    if (pk == nullptr) {
      reject("unknown_author", "access record by '" + b.author.v + "', who is not a partner");
      continue;
    }
    Status st = VerifyAccessRecord(a, *pk);
    if (!st.ok()) {
      reject("bad_record", "access record by " + b.author.v + ": " + st.message());
      continue;
    }
    auto state = StateLocked(b.case_id);
    if (!state.ok() || state->Regie().org != me) {
      reject("not_addressed", "access record for a case " + me + " does not hold regie of");
      continue;
    }
    // Only organisations that take or took part in the case log accesses to it.
    auto consents = state->Consents(now);
    bool took_part = b.author.v == state->creator() ||
                     std::any_of(consents.begin(), consents.end(), [&](const ConsentView& v) {
                       return v.valid && v.grant->grantee.v == b.author.v;
                     });
    if (!took_part) {
      reject("not_addressed", "access record by " + b.author.v + ", which takes no part in the case");
      continue;
    }
    RecordRow row{a.Id(), RecordType::kAccessRecord, b.case_id, b.author.v, "", "", b.hlc, *bytes, {me, b.author.v}};
    auto ids = store_->PutRecords({row}, from, now);
    if (ids.ok()) added += ids->size();
  }
  return added;
}

}  // namespace kring
