// Node set-up, ingesting partners' records, and recomputing a case after every change.
#include "node/node.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <set>
#include <sys/stat.h>

#include "crypto/primitives.h"
#include "node/api.h"
#include "node/checkpoint.h"
#include "node/log.h"
#include "plan/items.h"
#include "protocol/access_record.h"
#include "protocol/messages.h"
#include "protocol/record.h"
#include "consent/admission.h"

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
    : org_(identity.pub.org),
      keys_(std::make_shared<const NodeIdentity>(std::move(identity))),
      store_(std::move(store)),
      wall_(wall),
      clock_(wall) {}

Node::~Node() { Stop(); }

Result<std::unique_ptr<Node>> Node::Open(const std::string& data_dir, WallClock wall) {
  InitSodium();
  auto id = ReadKeyFile(KeyFilePath(data_dir));
  if (!id.ok()) return id.status();
  auto store = Store::Open(DatabasePath(data_dir));
  if (!store.ok()) return store.status();
  std::unique_ptr<Node> node(new Node(std::move(*id), std::move(*store), std::move(wall)));
  node->data_dir_ = data_dir;
  node->LoadRetiredKeys();
  node->ReloadKeyHistory();
  // A rotation of this node's keys whose switch time passed while it was stopped.
  node->SwitchDueKeys();
  // The clock must never go back past what this node wrote itself. Only
  // its own records count: a partner's timestamp (an access record's, say)
  // set in 2126 must not become every later record's time after a restart.
  // And not beyond the skew bound: records written while a bad floor held
  // must not keep the clock in the future either.
  auto own_hlc = node->store_->MaxOwnHlc(node->org_);
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
  const int64_t now = node->NowMs();
  size_t due = 0;
  for (const auto& [c, t] : *schedule) {
    if (t > now) {
      node->SetDue(c, t);
      continue;
    }
    ++due;
    auto lock = node->LockCase(c);
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
  auto unreadable = node->store_->CountUnreadable();
  if (!unreadable.ok()) return unreadable.status();
  node->unreadable_fragments_ = static_cast<uint64_t>(*unreadable);
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
    ReloadKeyHistory();  // `keys rotate` or `network submit` may have changed it
    ScheduleSwitch(0);   // ... and `keys rotate` stored a switch to act on
    recompute_all_ = true;
    timer_cv_.notify_all();
  };
  sync_ = std::make_unique<SyncEngine>(Keys(), store_.get(), this, std::move(sync));
  Status st = sync_->Start();
  if (!st.ok()) {
    sync_.reset();
    return st;
  }
  timer_ = std::thread([this] { TimerLoop(); });
  body_checks_ = std::thread([this] { BodyCheckLoop(); });
  return st;
}

void Node::Stop() {
  {
    std::lock_guard lock(timer_mu_);
    stopping_ = true;
  }
  timer_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  {
    std::lock_guard lock(body_mu_);
    body_stopping_ = true;
  }
  body_cv_.notify_all();
  if (body_checks_.joinable()) body_checks_.join();
  if (sync_) {  // a clean stop leaves a checkpoint of the log as it ends
    Status st = CheckpointIfDue(true);
    if (!st.ok()) KRING_LOG(kError, "audit", "cannot sign an access-log checkpoint: " << st.ToString());
    sync_->Stop();
  }
}

// Wakes when a consent's window opens or closes somewhere, and recomputes
// that case: expiry ends access without anyone acting.
void Node::TimerLoop() {
  std::unique_lock tl(timer_mu_);
  while (!stopping_) {
    timer_cv_.wait_for(tl, std::chrono::milliseconds(100));
    if (stopping_) break;
    tl.unlock();
    SwitchDueKeys();
    if (recompute_all_.exchange(false) && !SweepAllCases()) return;
    RecomputeDueCases();
    SweepIfDue();
    if (Status st = CheckpointIfDue(false); !st.ok())
      KRING_LOG(kError, "audit", "cannot sign an access-log checkpoint: " << st.ToString());
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
    std::lock_guard meta(meta_mu_);
    int64_t now = NowMs();
    for (auto& [c, t] : next_change_)
      if (t <= now) due.push_back(c);
  }
  // One case at a time, so that API calls and pushes wait for one case at most.
  for (const CaseId& c : due) {
    auto lock = LockCase(c);
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
  ShareRotationsWithPartners();
  auto last_due = std::chrono::steady_clock::now();
  for (const CaseId& c : *cases) {
    if (Stopping()) return false;
    {
      auto lock = LockCase(c);
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

std::optional<SignPublicKey> Node::AuthorKey(const std::string& org, int64_t at_ms,
                                             const std::vector<Partner>& partners) const {
  std::optional<SignPublicKey> current;
  if (org == org_) {
    current = Keys()->pub.sign_pk;
  } else {
    for (const Partner& p : partners)
      if (p.identity.org == org) current = p.identity.sign_pk;
  }
  if (!current || at_ms < 0) return current;
  std::shared_ptr<const std::map<std::string, std::vector<OrgKeys>>> history;
  {
    std::lock_guard lock(keys_mu_);
    history = key_history_;
  }
  auto it = history ? history->find(org) : decltype(history->end()){};
  if (!history || it == history->end()) return current;  // no rotation known: the pinned key
  if (const OrgKeys* k = KeysAt(it->second, at_ms)) return k->sign_pk;
  // Before the first key this node knows of (it learnt the org from a later
  // roster): the oldest known key, which a record then must verify with.
  if (at_ms < it->second.front().from_ms) return it->second.front().sign_pk;
  return std::nullopt;
}

Reject Node::SignatureRefusal(const std::string& org, int64_t at_ms,
                              const std::function<bool(const SignPublicKey&)>& verifies, Reject otherwise) const {
  std::shared_ptr<const std::map<std::string, std::vector<OrgKeys>>> history;
  {
    std::lock_guard lock(keys_mu_);
    history = key_history_;
  }
  if (!history) return otherwise;
  auto it = history->find(org);
  if (it == history->end()) return otherwise;
  for (const OrgKeys& k : it->second)
    if (k.until_ms <= at_ms && verifies(k.sign_pk)) return Reject::kRetiredKey;
  return otherwise;
}

Result<CaseState> Node::State(const CaseId& case_id) {
  auto lock = LockCase(case_id);
  return StateLocked(case_id);
}

Result<CaseState> Node::StateLocked(const CaseId& case_id) {
  {
    std::lock_guard meta(meta_mu_);
    if (auto it = state_cache_.find(case_id); it != state_cache_.end()) return it->second;
  }
  // Key grants decide nothing about consent: the state holds only the
  // decision records, at most kMaxDecisionRecordsPerCase of them.
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
  CacheState(state);
  return state;
}

void Node::CacheState(const CaseState& state) {
  std::lock_guard meta(meta_mu_);
  if (state_cache_.size() >= kStateCacheCases && !state_cache_.count(state.case_id()))
    state_cache_.erase(state_cache_.begin());
  state_cache_.insert_or_assign(state.case_id(), state);
}

void Node::ForgetState(const CaseId& case_id) {
  std::lock_guard meta(meta_mu_);
  state_cache_.erase(case_id);
}

void Node::SetDue(const CaseId& case_id, std::optional<int64_t> at) {
  std::lock_guard meta(meta_mu_);
  if (at) next_change_[case_id] = *at;
  else next_change_.erase(case_id);
}

std::unique_lock<std::mutex> Node::LockCase(const CaseId& case_id) {
  size_t stripe = 0;
  for (uint8_t b : case_id) stripe = stripe * 31 + b;
  return std::unique_lock<std::mutex>(case_mu_[stripe % kCaseStripes]);
}

Status Node::ContentKeyFor(const Fragment& f, ContentKey* key, const FragmentId* known_id) {
  auto me = Keys();
  const FragmentId id = known_id ? *known_id : f.Id();
  // Re-sealed to our current key after a rotation of our own keys.
  if (auto resealed = store_->Resealed(id); resealed.ok() && resealed->has_value() &&
                                            OpenSealedKey(**resealed, me->pub.box_pk, me->box_sk, key).ok())
    return Status::Ok();
  std::vector<std::shared_ptr<const NodeIdentity>> keys = {me};
  {
    std::lock_guard lock(keys_mu_);
    keys.insert(keys.end(), retired_keys_.begin(), retired_keys_.end());
  }
  if (const SealedKey* sealed = SealedKeyFor(f, org_)) {
    for (const auto& k : keys)
      if (OpenContentKey(*sealed, *k, key).ok()) return Status::Ok();
  }
  auto grants = store_->RecordsOfCase(f.header.case_id, RecordType::kKeyGrant);
  if (!grants.ok()) return grants.status();
  for (const StoredRecord& r : *grants) {
    auto c = DecodeControlRecord(r.record);
    if (!c.ok()) continue;
    const auto& g = std::get<KeyGrant>(c->body);
    if (g.fragment != id || g.grantee.v != org_) continue;
    for (const auto& k : keys)
      if (OpenContentKey(g.sealed_key, *k, key).ok()) return Status::Ok();
  }
  return Status::PermissionDenied("no content key for this organisation");
}

Status Node::SealGrantsLocked(const CaseState& state, const std::vector<std::pair<RecordId, std::string>>& wanted,
                              const std::map<RecordId, Fragment>& fragments) {
  if (wanted.empty()) return Status::Ok();
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();
  for (const auto& want : wanted) {
    const RecordId& id = want.first;
    const std::string& reader = want.second;  // not a structured binding: clang 14 cannot capture those
    auto f = fragments.find(id);
    auto partner = std::find_if(partners->begin(), partners->end(), [&](const Partner& p) { return p.identity.org == reader; });
    if (f == fragments.end() || partner == partners->end()) continue;
    ContentKey key;
    if (!ContentKeyFor(f->second, &key).ok()) continue;  // a key this node was never given
    KeyGrant g;
    g.h.case_id = state.case_id();
    g.h.author.v = org_;
    g.h.hlc = clock_.Now();
    g.h.parents.v = ParentsFor(state);
    g.fragment = id;
    g.grantee.v = reader;
    g.sealed_key = SealKey(key, partner->identity.box_pk);
    auto rec = StoreOwnControl(std::move(g));
    if (!rec.ok()) return rec.status();
    KRING_LOG(kDebug, "consent", "re-sealed a content key for " << reader << " in case " << CaseIdToHex(state.case_id()));
  }
  return Status::Ok();
}

std::vector<RecordId> Node::ParentsFor(const CaseState& state) const {
  std::vector<RecordId> heads = state.Heads();
  if (heads.size() <= kMaxCausalParents) return heads;
  // More heads than a record can name: keep the one that ends our own chain
  // (an honest record always follows its author's previous one), then the rest.
  std::vector<RecordId> out;
  if (auto mine = state.LastOf(org_))
    if (std::binary_search(heads.begin(), heads.end(), *mine)) out.push_back(*mine);
  for (const RecordId& h : heads)
    if (out.size() < kMaxCausalParents && (out.empty() || h != out.front())) out.push_back(h);
  return out;
}

Status Node::RecomputeLocked(const CaseId& case_id) {
  // Until this pass completes, the case is due again: a failure (disk full,
  // a busy database) is retried by the timer instead of leaving stale
  // audiences (and after a crash, the stored schedule still says due).
  SetDue(case_id, 0);
  auto state_or = StateLocked(case_id);
  if (!state_or.ok()) {
    if (state_or.status().code() != Status::Code::kNotFound) return state_or.status();
    SetDue(case_id, std::nullopt);
    return store_->SetNextChange(case_id, std::nullopt);
  }
  const CaseState& state = *state_or;
  // A citizen's erasure request this node has not answered yet: erase first,
  // so that what follows works on what is left (node/lifecycle.cc).
  KRING_RETURN_IF_ERROR(EraseOnRequestLocked(state));
  const int64_t now = NowMs();
  auto records = store_->RecordsOfCase(case_id);
  if (!records.ok()) return records.status();
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();
  std::set<std::string> partner_orgs;
  for (const Partner& p : *partners) partner_orgs.insert(p.identity.org);

  // Decode once; ask consent/ what follows; apply.
  std::map<RecordId, Fragment> fragments;
  std::vector<ControlRecord> controls;
  controls.reserve(records->size());
  std::vector<HeldRecord> held;
  std::vector<RecordId> not_admitted;  // decision records the state refuses (stored by an older version)
  for (const StoredRecord& r : *records) {
    auto any = DecodeRecord(r.record);
    if (!any.ok()) continue;
    if (auto* f = std::get_if<Fragment>(&*any)) {
      HeldRecord h;
      h.id = r.id;
      h.fragment = FactsOf(r.id, *f);
      for (const Recipient& rc : f->header.recipients.v) h.recipients.push_back(rc.org.v);
      held.push_back(std::move(h));
      fragments.emplace(r.id, std::move(*f));
    } else if (auto* c = std::get_if<ControlRecord>(&*any)) {
      if (!std::holds_alternative<KeyGrant>(c->body) && !std::holds_alternative<ErasureAnswer>(c->body) &&
          !state.Contains(r.id)) {
        not_admitted.push_back(r.id);
        continue;
      }
      controls.push_back(std::move(*c));
    }
  }
  // `held` points into `controls`: filled once controls stops growing.
  for (size_t i = 0; i < controls.size(); ++i) {
    HeldRecord h;
    h.id = controls[i].Id();
    h.type = controls[i].type();
    h.control = &controls[i];
    held.push_back(std::move(h));
  }
  CaseChanges changes = Recompute(state, org_, held, partner_orgs, now);
  for (auto& [id, audience] : changes.audiences) audience = Sendable(std::move(audience), partner_orgs);

  auto grown = store_->SetAudiences(changes.audiences);
  if (!grown.ok()) return grown.status();
  std::vector<RecordId> purge = std::move(changes.purge);
  purge.insert(purge.end(), not_admitted.begin(), not_admitted.end());
  if (!purge.empty()) {
    auto n = store_->DeleteRecords(purge);
    if (!n.ok()) return n.status();
    if (!changes.purged_fragments.empty()) {
      KRING_LOG(kInfo, "consent", "purged " << changes.purged_fragments.size() << " fragment(s) of case "
                                            << CaseIdToHex(case_id) << " this organisation may no longer hold");
      std::vector<std::string> hex;
      for (const RecordId& id : changes.purged_fragments) hex.push_back(ToHex(id));
      LogSystemAccess("purge", case_id, hex);
      ChangeRow purged;  // for the change feed: which versions a system that kept copies must drop
      purged.time_ms = now;
      purged.case_id = case_id;
      purged.kind = "purge";
      RandomBytes(purged.ref);
      purged.items = std::move(hex);
      KRING_RETURN_IF_ERROR(store_->AddChange(purged));
    }
    if (purge.size() > changes.purged_fragments.size())
      KRING_LOG(kDebug, "consent", "dropped " << purge.size() - changes.purged_fragments.size()
                                              << " key grant(s) or unadmitted record(s) in case " << CaseIdToHex(case_id));
  }
  KRING_RETURN_IF_ERROR(SealGrantsLocked(state, changes.key_grants, fragments));
  if (sync_)
    for (const RecordId& id : *grown) sync_->Announce(id);

  KRING_RETURN_IF_ERROR(RecordExpiriesLocked(state, now));
  KRING_RETURN_IF_ERROR(store_->SetNextChange(case_id, changes.next_change));
  SetDue(case_id, changes.next_change);
  return Status::Ok();
}

void Node::RememberFork(const CaseState& state, const ControlRecord& r) {
  const std::string& author = r.header().author.v;
  std::string key = "fork/" + CaseIdToHex(r.header().case_id) + "/" + author;
  auto seen = store_->GetNodeState(key);
  if (!seen.ok() || seen->has_value()) return;  // one piece of evidence per (case, author) is enough
  auto last = state.LastOf(author);
  std::string value = ToHex(r.Id()) + " " + (last ? ToHex(*last) : std::string(64, '0')) + " " + std::to_string(NowMs());
  Status st = store_->SetNodeState(key, ByteSpan(reinterpret_cast<const uint8_t*>(value.data()), value.size()));
  if (!st.ok()) KRING_LOG(kError, "store", "cannot keep evidence of a fork: " << st.ToString());
  KRING_LOG(kWarn, "consent", author << " signed two histories of case " << CaseIdToHex(r.header().case_id)
                                     << ": its record " << ToHex(r.Id()).substr(0, 16)
                                     << " does not follow its own record " << (last ? ToHex(*last).substr(0, 16) : "-"));
}

Result<std::vector<Node::Fork>> Node::ForksOf(const CaseId& case_id) {
  auto rows = store_->NodeStateWithPrefix("fork/" + CaseIdToHex(case_id) + "/");
  if (!rows.ok()) return rows.status();
  std::vector<Fork> out;
  for (auto& [key, value] : *rows) {
    Fork f;
    f.org = key.substr(key.rfind('/') + 1);
    std::string text(value.begin(), value.end());
    if (text.size() < 130 || !FromHex(text.substr(0, 64), f.record) || !FromHex(text.substr(65, 64), f.follows_not)) continue;
    f.seen_ms = std::atoll(text.c_str() + 130);
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<std::string> Node::Sendable(std::vector<std::string> audience, const std::set<std::string>& partners) const {
  std::erase_if(audience, [&](const std::string& o) { return o != org_ && !partners.count(o); });
  return audience;
}

FragmentFacts Node::FactsOf(const FragmentId& id, const Fragment& f) {
  return FragmentFacts{id, f.header.author.v, f.header.domain.v, static_cast<int64_t>(HlcMillis(f.header.hlc))};
}

Result<RecordId> Node::StoreOwnControl(ControlBody body) {
  auto rec = SignControl(std::move(body), *Keys());
  if (!rec.ok()) return rec.status();
  RecordId id = rec->Id();
  const ControlHeader& h = rec->header();
  Bytes bytes = EncodeControlRecord(*rec);
  std::vector<std::string> audience = {org_};
  if (auto* g = std::get_if<KeyGrant>(&rec->body)) audience.push_back(g->grantee.v);
  if (std::holds_alternative<ErasureAnswer>(rec->body))
    if (auto state = StateLocked(h.case_id); state.ok() && state->Regie().org != org_)
      audience.push_back(state->Regie().org);
  RecordRow row{id, rec->type(), h.case_id, h.author.v, "", "", h.hlc, bytes, audience};
  auto added = store_->PutRecords({row}, org_, NowMs());
  if (!added.ok()) {
    ForgetState(h.case_id);  // the store may hold it after all: read it back next time
    return added.status();
  }
  if (!std::holds_alternative<KeyGrant>(rec->body) && !std::holds_alternative<ErasureAnswer>(rec->body)) {
    // The state grows by the record; it is not rebuilt.
    auto state = StateLocked(h.case_id);
    CaseState grown = state.ok() ? *state : CaseState(h.case_id);
    if (grown.Admit(*rec).ok()) CacheState(grown);
    else ForgetState(h.case_id);
  }
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
  e.organisation = org_;
  e.client_system = "kring-node";
  e.case_id = case_id;
  e.items = std::move(items);
  Status st = AppendAccessLocked(&e);
  if (!st.ok()) KRING_LOG(kError, "audit", "cannot write the access log: " << st.ToString());
}

Status Node::AppendAccess(AccessEntry* e) {
  if (!e->case_id) return AppendAccessLocked(e);
  auto lock = LockCase(*e->case_id);
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
    if (!regie.empty() && regie != org_) {
      AccessRecordBody b;
      b.case_id = *e->case_id;
      b.author.v = org_;
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
      auto rec = SignAccessRecord(std::move(b), *Keys());
      if (!rec.ok()) return rec.status();
      copy_id = rec->Id();
      bytes = EncodeAccessRecord(*rec);
      copies.push_back(RecordRow{*copy_id, RecordType::kAccessRecord, *e->case_id, org_, "", "",
                                 rec->body.hlc, bytes, {org_, regie}});
    }
  }
  KRING_RETURN_IF_ERROR(store_->AppendAccess(e, copies));
  if (sync_ && copy_id) sync_->Announce(*copy_id);
  return Status::Ok();
}

// What can be checked of a fragment without the node's state: its author's
// key and signature. Run outside the case locks, so API calls and the
// previous push's Commit go on. The body is not opened on receipt: the
// background lane (node/body_check.cc) and plan reads do that.
struct Node::FragmentCheck {
  Fragment f;
  Bytes* bytes = nullptr;
  FragmentId id{};
  std::optional<Refusal> refusal;  // the first failure, in the order receivers report them
};

void Node::CheckFragmentAlone(FragmentCheck& c, const std::vector<Partner>& partners) const {
  const FragmentHeader& h = c.f.header;
  const int64_t at = static_cast<int64_t>(HlcMillis(h.hlc));
  auto verifies = [&](const SignPublicKey& k) { return VerifyFragmentWithId(c.f, c.id, k).ok(); };
  auto pk = AuthorKey(h.author.v, at, partners);
  if (!pk) {
    c.refusal = AuthorKey(h.author.v, -1, partners)
                    ? Refusal{SignatureRefusal(h.author.v, at, verifies, Reject::kBadFragment),
                              "fragment by " + h.author.v + " dated when no key of it this node knows was valid"}
                    : Refusal{Reject::kUnknownAuthor, "fragment by '" + h.author.v + "', who is not a partner"};
    return;
  }
  Status st = VerifyFragmentWithId(c.f, c.id, *pk);
  if (!st.ok()) {
    c.refusal = Refusal{SignatureRefusal(h.author.v, at, verifies, Reject::kBadFragment),
                        "fragment by " + h.author.v + ": " + st.message()};
  }
}

// What a push brings to one case.
struct Node::CaseWork {
  std::vector<std::pair<ControlRecord, Bytes>> controls;  // decision records and key grants
  std::vector<FragmentCheck> fragments;
  std::vector<std::pair<AccessRecord, Bytes*>> access;
  std::deque<Bytes> kept;  // bytes of accepted control records, while rows point at them
};

// A push between Prepare and Commit, sorted by case.
struct Node::IngestBatch : RecordSink::Batch {
  std::string from;
  std::vector<Bytes> records;  // the others point into these
  std::shared_ptr<const std::vector<Partner>> partners;  // the snapshot Prepare judged by
  std::map<CaseId, CaseWork> cases;
};

std::unique_ptr<RecordSink::Batch> Node::Prepare(const std::string& from, std::vector<Bytes> records_in,
                                                 const RejectFn& reject) {
  auto batch = std::make_unique<IngestBatch>();
  batch->from = from;
  batch->records = std::move(records_in);
  // The partners' snapshot: no lock another worker's commit holds.
  auto partners_or = store_->Partners();
  if (!partners_or.ok()) {
    KRING_LOG(kError, "store", "cannot read partners: " << partners_or.status().ToString());
    batch->records.clear();
    batch->partners = std::make_shared<const std::vector<Partner>>();
    return batch;
  }
  batch->partners = std::move(*partners_or);
  const std::vector<Partner>& partners = *batch->partners;
  auto refuse = [&](Reject why, const std::string& detail) { reject(RejectName(why), detail); };

  // Decode once; check what needs no state (signatures).
  std::vector<FragmentCheck*> fragments;
  for (Bytes& bytes : batch->records) {
    auto any = DecodeRecord(bytes);
    if (!any.ok()) {
      refuse(Reject::kUndecodable, any.status().message());
      continue;
    }
    if (auto* f = std::get_if<Fragment>(&*any)) {
      FragmentCheck& c = batch->cases[f->header.case_id].fragments.emplace_back();
      c.id = f->Id();
      c.f = std::move(*f);
      c.bytes = &bytes;
      continue;
    }
    if (auto* r = std::get_if<Roster>(&*any)) {
      IngestRoster(from, *r, bytes, reject);
      continue;
    }
    if (auto* r = std::get_if<KeyRotation>(&*any)) {
      IngestRotation(from, *r, bytes, reject);
      continue;
    }
    if (std::holds_alternative<Checkpoint>(*any)) {
      // Not of a case: kept per organisation (node/checkpoint.cc).
      if (Status st = IngestCheckpoint(from, bytes); !st.ok()) refuse(CheckpointRejectReason(st), st.message());
      continue;
    }
    if (auto* a = std::get_if<AccessRecord>(&*any)) {
      const int64_t at = static_cast<int64_t>(HlcMillis(a->body.hlc));
      auto verifies = [&](const SignPublicKey& k) { return VerifyAccessRecord(*a, k).ok(); };
      auto pk = AuthorKey(a->body.author.v, at, partners);
      if (!AuthorKey(a->body.author.v, -1, partners)) {
        refuse(Reject::kUnknownAuthor, "access record by '" + a->body.author.v + "', who is not a partner");
        continue;
      }
      if (Status st = pk ? VerifyAccessRecord(*a, *pk) : Status::Corruption("no key valid at its time"); !st.ok()) {
        refuse(SignatureRefusal(a->body.author.v, at, verifies, Reject::kBadRecord),
               "access record by " + a->body.author.v + ": " + st.message());
        continue;
      }
      CaseId c = a->body.case_id;
      batch->cases[c].access.emplace_back(std::move(*a), &bytes);
      continue;
    }
    auto& c = std::get<ControlRecord>(*any);
    const ControlHeader& h = c.header();
    const int64_t at = static_cast<int64_t>(HlcMillis(h.hlc));
    auto verifies = [&](const SignPublicKey& k) { return VerifyControl(c, k).ok(); };
    auto pk = AuthorKey(h.author.v, at, partners);
    if (!AuthorKey(h.author.v, -1, partners)) {
      refuse(Reject::kUnknownAuthor, "record by '" + h.author.v + "', who is not a partner");
      continue;
    }
    if (Status st = pk ? VerifyControl(c, *pk) : Status::Corruption("no key valid at its time"); !st.ok()) {
      refuse(SignatureRefusal(h.author.v, at, verifies, Reject::kBadRecord), "record by " + h.author.v + ": " + st.message());
      continue;
    }
    CaseId case_id = h.case_id;
    batch->cases[case_id].controls.emplace_back(std::move(c), bytes);
  }
  // Copies of fragments we already hold cost a lookup (on the store's read
  // connection: never behind another worker's commit), not a verification.
  for (auto& [case_id, work] : batch->cases) {
    std::vector<RecordId> ids;
    for (const FragmentCheck& c : work.fragments) ids.push_back(c.id);
    auto held = store_->Contains(ids);
    std::set<RecordId> seen;
    std::vector<FragmentCheck> fresh;
    for (size_t i = 0; i < work.fragments.size(); ++i)
      if (!(held.ok() && (*held)[i]) && seen.insert(work.fragments[i].id).second)
        fresh.push_back(std::move(work.fragments[i]));
    work.fragments = std::move(fresh);
    for (FragmentCheck& c : work.fragments) CheckFragmentAlone(c, partners);
  }
  return batch;
}

void Node::Wait(const std::string& from, ControlRecord c, Bytes bytes, const RejectFn& reject) {
  std::lock_guard meta(meta_mu_);
  Waiting& w = waiting_[from];
  if (w.records.size() >= kMaxWaitingRecords || w.bytes + bytes.size() > kMaxWaitingBytes) {
    reject(RejectName(Reject::kWaitingFull), "record by " + c.header().author.v + " waits for records that have not arrived, "
                                             "and " + from + "'s buffer of such records is full");
    return;
  }
  w.bytes += bytes.size();
  w.records.push_back(WaitingRecord{std::move(c), std::move(bytes), NowMs()});
}

void Node::TakeWaiting(const std::string& from, IngestBatch* batch, const RejectFn& reject) {
  std::vector<WaitingRecord> mine;
  {
    std::lock_guard meta(meta_mu_);
    auto it = waiting_.find(from);
    if (it == waiting_.end()) return;
    mine = std::move(it->second.records);
    waiting_.erase(it);
  }
  const int64_t now = NowMs();
  for (WaitingRecord& w : mine) {
    if (now - w.since_ms > kWaitingMs) {
      reject(RejectName(Reject::kWaitingExpired), "record by " + w.record.header().author.v + " waited " +
                                                      std::to_string(kWaitingMs / 1000) + " s for records that never came");
      continue;
    }
    CaseId c = w.record.header().case_id;
    // Earlier than what this push brings: its parents may be in the push.
    auto& controls = batch->cases[c].controls;
    controls.insert(controls.begin(), {std::move(w.record), std::move(w.bytes)});
  }
}

bool Node::NeedsResealing(const CaseState& state, const std::map<FragmentId, const FragmentCheck*>& fragments,
                          const std::set<std::string>& partners, int64_t now) const {
  const std::string& me = org_;
  const bool regie = state.Regie().org == me;
  for (auto& [id, c] : fragments) {
    if (!regie && c->f.header.author.v != me) continue;
    for (const std::string& reader : state.Readers(FactsOf(id, c->f), now))
      if (reader != me && partners.count(reader) && !c->f.IsRecipient(reader)) return true;
  }
  return false;
}

size_t Node::Commit(std::unique_ptr<Batch> batch_in, const RejectFn& reject) {
  auto* batch = static_cast<IngestBatch*>(batch_in.get());
  const std::string& from = batch->from;
  TakeWaiting(from, batch, reject);
  auto refuse = [&](Reject why, const std::string& detail) { reject(RejectName(why), detail); };
  // A partner removed or re-keyed since Prepare is no longer trusted.
  auto current_or = store_->Partners();
  if (!current_or.ok()) {
    KRING_LOG(kError, "store", "cannot read partners: " << current_or.status().ToString());
    return 0;
  }
  const std::vector<Partner>& current = **current_or;
  auto still_trusted = [&](const std::string& author) {
    auto then = AuthorKey(author, -1, *batch->partners);
    auto now_key = AuthorKey(author, -1, current);
    if (then && now_key && *then == *now_key) return true;
    refuse(Reject::kUnknownAuthor, "record by '" + author + "', who is no longer a partner");
    return false;
  };
  std::set<std::string> partner_orgs;
  for (const Partner& p : current) partner_orgs.insert(p.identity.org);
  size_t added = 0;
  for (auto& [case_id, work] : batch->cases) {
    auto lock = LockCase(case_id);  // one case at a time: other cases' calls go on
    added += CommitCaseLocked(case_id, work, from, partner_orgs, still_trusted, reject);
  }
  return added;
}

size_t Node::CommitCaseLocked(const CaseId& case_id, CaseWork& work, const std::string& from,
                              const std::set<std::string>& partners,
                              const std::function<bool(const std::string&)>& still_trusted, const RejectFn& reject) {
  auto refuse = [&](Reject why, const std::string& detail) { reject(RejectName(why), detail); };
  const std::string& me = org_;
  const int64_t now = NowMs();
  const Receipt at{me, from, now};
  // A case or record this node destroyed under its retention rules is not
  // taken in again from a partner that still holds a copy.
  if (auto gone = store_->CaseDestroyed(case_id); !gone.ok() || *gone) {
    if (gone.ok())
      refuse(Reject::kDestroyed, "records of case " + CaseIdToHex(case_id) + ", which this node destroyed under its retention rules");
    return 0;
  }
  {
    std::vector<RecordId> ids;
    for (const FragmentCheck& f : work.fragments) ids.push_back(f.id);
    if (!ids.empty()) {
      auto destroyed = store_->Destroyed(ids);
      if (destroyed.ok() && std::find(destroyed->begin(), destroyed->end(), true) != destroyed->end()) {
        std::vector<FragmentCheck> keep;
        for (size_t i = 0; i < ids.size(); ++i) {
          if ((*destroyed)[i]) refuse(Reject::kDestroyed, "fragment " + ToHex(ids[i]).substr(0, 16) + ", which this node destroyed under its retention rules");
          else keep.push_back(std::move(work.fragments[i]));
        }
        work.fragments = std::move(keep);
      }
    }
  }
  auto known = StateLocked(case_id);
  if (!known.ok() && known.status().code() != Status::Code::kNotFound) {
    KRING_LOG(kError, "store", "cannot read case " << CaseIdToHex(case_id) << ": " << known.status().ToString());
    return 0;
  }
  CaseState state = known.ok() ? *known : CaseState(case_id);
  std::vector<RecordRow> rows;
  bool decided = false;  // a decision record admitted: audiences, purges and key grants follow

  // Decision records, in as many passes as admit something: a push may
  // carry a record before its parent. Then each must be for us, judged by
  // the state with all of them; if some are not, admit the others again.
  std::vector<std::pair<ControlRecord, Bytes>> grants, answers, todo;
  for (auto& c : work.controls) {
    if (!still_trusted(c.first.header().author.v)) continue;
    (std::holds_alternative<KeyGrant>(c.first.body)        ? grants
     : std::holds_alternative<ErasureAnswer>(c.first.body) ? answers
                                                          : todo)
        .push_back(std::move(c));
  }
  std::sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) { return a.first.header().hlc < b.first.header().hlc; });
  std::vector<std::pair<ControlRecord, Bytes>> admitted;
  for (int round = 0; round < 2; ++round) {
    CaseState next = state;
    admitted.clear();
    for (bool progress = true; progress;) {
      progress = false;
      std::vector<std::pair<ControlRecord, Bytes>> later;
      for (auto& [c, bytes] : todo) {
        Admission a = JudgeDecision(next, c, at);
        if (a.kind == Admission::Kind::kWaiting) {
          later.emplace_back(std::move(c), std::move(bytes));
          continue;
        }
        if (a.kind == Admission::Kind::kDuplicate) continue;
        if (a.kind == Admission::Kind::kRefused) {
          refuse(a.reason, "record " + ToHex(c.Id()).substr(0, 16) + " by " + c.header().author.v + ": " + a.detail);
          if (a.reason == Reject::kForkedChain) RememberFork(next, c);
          continue;
        }
        next.Admit(c);
        progress = true;
        admitted.emplace_back(std::move(c), std::move(bytes));
      }
      todo = std::move(later);
    }
    bool all_for_us = true;
    for (auto it = admitted.begin(); it != admitted.end();) {
      if (auto r = AddressedTo(next, it->first, at)) {
        refuse(r->reason, r->detail);
        it = admitted.erase(it);
        all_for_us = false;
      } else {
        ++it;
      }
    }
    if (all_for_us) {
      state = std::move(next);
      break;
    }
    // Admit the rest again without what was not for us; what followed it waits.
    todo.insert(todo.begin(), std::make_move_iterator(admitted.begin()), std::make_move_iterator(admitted.end()));
    admitted.clear();
    if (round == 1) todo.clear();
  }
  for (auto& [c, bytes] : admitted) {
    decided = true;
    const ControlHeader& h = c.header();
    work.kept.push_back(std::move(bytes));
    rows.push_back(RecordRow{c.Id(), c.type(), case_id, h.author.v, "", "", h.hlc, work.kept.back(),
                             state.ControlAudience(c, now)});
  }
  for (auto& [c, bytes] : todo) Wait(from, std::move(c), std::move(bytes), reject);
  if (!state.has_genesis()) {
    for (const FragmentCheck& f : work.fragments)
      refuse(Reject::kUnknownCase, "fragment " + ToHex(f.id).substr(0, 16) + " of a case this node takes no part in");
    for (auto& [c, bytes] : grants) refuse(Reject::kUnknownCase, "key grant of a case this node takes no part in");
    for (auto& [c, bytes] : answers) refuse(Reject::kUnknownCase, "erasure answer of a case this node takes no part in");
    for (auto& [a, bytes] : work.access) refuse(Reject::kUnknownCase, "access record of a case this node takes no part in");
    return 0;
  }

  // Fragments, judged by the state the push's decision records made.
  std::map<FragmentId, const FragmentCheck*> accepted;
  for (FragmentCheck& c : work.fragments) {
    const FragmentHeader& h = c.f.header;
    const std::string id = ToHex(c.id).substr(0, 16);
    if (c.refusal) {
      refuse(c.refusal->reason, c.refusal->detail);
      continue;
    }
    if (!still_trusted(h.author.v)) continue;
    if (Status st = CheckFragmentHeader(h.kind.v, h.domain.v); !st.ok()) {
      refuse(Reject::kInvalidItem, "fragment " + id + ": " + st.message());
      continue;
    }
    FragmentFacts facts = FactsOf(c.id, c.f);
    if (auto r = JudgeFragment(state, facts, at)) {
      refuse(r->reason, r->detail);
      continue;
    }
    bool consistent = true;
    for (const FragmentId& p : h.predecessors.v) {
      auto prev = store_->GetRecord(p);
      if (!prev.ok() || !prev->has_value() || (*prev)->type != RecordType::kFragment) continue;  // not here (yet)
      auto pf = DecodeFragmentRecord((*prev)->record);
      if (pf.ok() && !CheckEdit(c.f, *pf).ok()) consistent = false;
    }
    if (!consistent) {
      refuse(Reject::kInvalidItem, "fragment " + id + " edits a version of another case, item, kind or domain");
      continue;
    }
    // The body is not opened here: the background lane checks it, and a
    // body that does not open or validate is shown as unreadable, not dropped.
    rows.push_back(RecordRow{c.id, RecordType::kFragment, case_id, h.author.v, h.kind.v, h.domain.v, h.hlc, *c.bytes,
                             FragmentAudience(state, facts, now)});
    accepted.emplace(c.id, &c);
  }

  // Key grants: only for this node, to a fragment it holds or receives now,
  // at most kMaxKeyGrantsPerFragment each.
  if (!grants.empty()) {
    std::map<std::pair<FragmentId, std::string>, size_t> held;  // (fragment, author) -> grants for us
    if (auto stored = store_->RecordsOfCase(case_id, RecordType::kKeyGrant); stored.ok())
      for (const StoredRecord& r : *stored)
        if (auto kg = DecodeControlRecord(r.record); kg.ok())
          if (const auto* g = std::get_if<KeyGrant>(&kg->body); g && g->grantee.v == me)
            ++held[{g->fragment, kg->header().author.v}];
    for (auto& [c, bytes] : grants) {
      const auto& g = std::get<KeyGrant>(c.body);
      std::optional<FragmentFacts> facts;
      if (auto it = accepted.find(g.fragment); it != accepted.end()) {
        facts = FactsOf(g.fragment, it->second->f);
      } else if (auto f = store_->GetRecord(g.fragment); f.ok() && f->has_value() && (*f)->type == RecordType::kFragment) {
        if (auto fd = DecodeFragmentRecord((*f)->record); fd.ok()) facts = FactsOf(g.fragment, *fd);
      }
      auto& count = held[{g.fragment, c.header().author.v}];
      Admission a = JudgeKeyGrant(state, c, facts ? &*facts : nullptr, count, at);
      if (a.kind == Admission::Kind::kWaiting) {
        Wait(from, std::move(c), std::move(bytes), reject);
        continue;
      }
      if (!a.ok()) {
        refuse(a.reason, "key grant by " + c.header().author.v + ": " + a.detail);
        continue;
      }
      ++count;
      const ControlHeader& h = c.header();
      work.kept.push_back(std::move(bytes));
      rows.push_back(RecordRow{c.Id(), c.type(), case_id, h.author.v, "", "", h.hlc, work.kept.back(),
                               KeyGrantAudience(state, g, h, *facts, now)});
    }
  }

  // Answers to the citizen's erasure requests: for the regie organisation.
  for (auto& [c, bytes] : answers) {
    if (auto t = CheckTime(c.header().hlc, now)) {
      refuse(t->reason, "erasure answer by " + c.header().author.v + ": " + t->detail);
      continue;
    }
    if (auto a = state.CheckErasureAnswer(c)) {
      if (a->kind == Admission::Kind::kWaiting) Wait(from, std::move(c), std::move(bytes), reject);
      else refuse(a->reason, "erasure answer by " + c.header().author.v + ": " + a->detail);
      continue;
    }
    if (auto r = AddressedTo(state, c, at)) {
      refuse(r->reason, r->detail);
      continue;
    }
    const ControlHeader& h = c.header();
    work.kept.push_back(std::move(bytes));
    rows.push_back(RecordRow{c.Id(), c.type(), case_id, h.author.v, "", "", h.hlc, work.kept.back(), state.ControlAudience(c, now)});
  }

  // Access-log entries of other organisations: only for the regie organisation.
  for (auto& [a, bytes] : work.access) {
    const AccessRecordBody& b = a.body;
    if (!still_trusted(b.author.v)) continue;
    if (auto r = JudgeAccessRecord(state, b, at)) {
      refuse(r->reason, r->detail);
      continue;
    }
    rows.push_back(RecordRow{a.Id(), RecordType::kAccessRecord, case_id, b.author.v, "", "", b.hlc, *bytes, {me, b.author.v}});
  }

  // One transaction (one fsync) for everything the push brings to the case.
  if (rows.empty()) return 0;
  for (RecordRow& r : rows) r.audience = Sendable(std::move(r.audience), partners);
  auto ids = store_->PutRecords(rows, from, now);
  if (!ids.ok()) {
    ForgetState(case_id);
    KRING_LOG(kError, "store", "cannot store records from " << from << ": " << ids.status().ToString());
    return 0;
  }
  if (!accepted.empty()) WakeBodyChecks();
  if (decided) CacheState(state);
  for (const RecordRow& r : rows) {
    clock_.Observe(r.hlc);  // only what we accepted moves our clock
    if (r.type == RecordType::kConsentWithdrawal) withdrawals_processed_.fetch_add(1);
  }
  if (decided) {
    Status st = RecomputeLocked(case_id);
    if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(case_id) << ": " << st.ToString());
  } else if (!accepted.empty() && NeedsResealing(state, accepted, partners, now)) {
    // New fragments only: re-seal for readers the author could not seal to,
    // when this organisation holds regie or wrote them.
    std::vector<HeldRecord> held;
    std::map<RecordId, Fragment> fresh;
    std::vector<ControlRecord> grants_held;
    if (auto stored = store_->RecordsOfCase(case_id, RecordType::kKeyGrant); stored.ok())
      for (const StoredRecord& r : *stored)
        if (auto kg = DecodeControlRecord(r.record); kg.ok()) grants_held.push_back(std::move(*kg));
    for (auto& [id, c] : accepted) {
      HeldRecord h;
      h.id = id;
      h.fragment = FactsOf(id, c->f);
      for (const Recipient& rc : c->f.header.recipients.v) h.recipients.push_back(rc.org.v);
      held.push_back(std::move(h));
      fresh.emplace(id, c->f);
    }
    for (const ControlRecord& g : grants_held) {
      HeldRecord h;
      h.type = RecordType::kKeyGrant;
      h.control = &g;
      held.push_back(std::move(h));
    }
    std::set<std::string> partners;
    if (auto p = store_->ListPartners(); p.ok())
      for (const Partner& x : *p) partners.insert(x.identity.org);
    CaseChanges changes = Recompute(state, me, held, partners, now);
    Status st = SealGrantsLocked(state, changes.key_grants, fresh);
    if (!st.ok()) {
      SetDue(case_id, 0);  // the timer's recompute re-seals
      KRING_LOG(kError, "case", "cannot re-seal in case " << CaseIdToHex(case_id) << ": " << st.ToString());
    }
  }
  return ids->size();
}

}  // namespace kring
