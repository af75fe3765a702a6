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
  // The clock must never go back past what we already wrote or received.
  auto max_hlc = node->store_->MaxHlc();
  if (!max_hlc.ok()) return max_hlc.status();
  node->clock_.SetFloor(*max_hlc);
  // Consents may have expired while the node was down: decide every case afresh.
  auto cases = node->store_->CasesWithRecords();
  if (!cases.ok()) return cases.status();
  std::lock_guard lock(node->mu_);
  for (const CaseId& c : *cases) {
    Status st = node->RecomputeLocked(c);
    if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(c) << ": " << st.ToString());
  }
  return node;
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
    {
      std::lock_guard lock(mu_);
      int64_t now = NowMs();
      std::vector<CaseId> due;
      if (recompute_all_.exchange(false)) {
        auto cases = store_->CasesWithRecords();
        if (cases.ok()) due = *cases;
        KRING_LOG(kInfo, "consent", "partners changed; rechecking who may read what in " << due.size() << " case(s)");
      }
      for (auto& [c, t] : next_change_)
        if (t <= now && std::find(due.begin(), due.end(), c) == due.end()) due.push_back(c);
      for (const CaseId& c : due) {
        Status st = RecomputeLocked(c);
        if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(c) << ": " << st.ToString());
      }
    }
    tl.lock();
  }
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

Status Node::RecomputeLocked(const CaseId& case_id, const std::set<RecordId>* only) {
  // Until this pass completes, the case is due again: a failure (disk full,
  // a busy database) is retried by the timer instead of leaving stale audiences.
  next_change_[case_id] = 0;
  auto state_or = StateLocked(case_id);
  if (!state_or.ok()) {
    next_change_.erase(case_id);
    return state_or.status().code() == Status::Code::kNotFound ? Status::Ok() : state_or.status();
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
      if (only && !only->count(r.id)) continue;
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
    audiences.emplace_back(id, readers);
    // Late grant: the regie organisation or the author re-seals the content
    // key to readers the author did not seal it to.
    if (!regie && !mine) continue;
    for (const std::string& reader : readers) {
      if (reader == me || f.IsRecipient(reader) || granted.count({id, reader})) continue;
      auto partner = std::find_if(partners->begin(), partners->end(), [&](const Partner& p) { return p.identity.org == reader; });
      if (partner == partners->end()) continue;  // not our partner: someone else re-seals
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
      new_grants.push_back(std::move(g));
      granted.insert({id, reader});
    }
  }
  for (auto& [id, c] : controls) {
    if (only) break;  // new fragments change no control record's audience
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
      std::sort(audience.begin(), audience.end());
      audience.erase(std::unique(audience.begin(), audience.end()), audience.end());
      audiences.emplace_back(id, audience);
      continue;
    }
    audiences.emplace_back(id, state.ControlAudience(c, now));
  }

  // Which records gained an audience member: those must be pushed now.
  std::vector<RecordId> grown;
  for (auto& [id, orgs] : audiences) {
    auto before = store_->AudienceOf(id);
    if (!before.ok()) return before.status();
    for (const std::string& o : orgs)
      if (std::find(before->begin(), before->end(), o) == before->end()) {
        grown.push_back(id);
        break;
      }
  }
  KRING_RETURN_IF_ERROR(store_->SetAudiences(audiences));

  if (!purge.empty()) {
    auto n = store_->DeleteRecords(purge);
    if (!n.ok()) return n.status();
    KRING_LOG(kInfo, "consent", "purged " << purged_hex.size() << " fragment(s) of case " << CaseIdToHex(case_id)
                                          << " this organisation may no longer hold");
    LogSystemAccess("purge", case_id, purged_hex);
  }
  for (ControlBody& body : new_grants) {
    auto id = StoreOwnControl(std::move(body));
    if (!id.ok()) return id.status();
    KRING_LOG(kInfo, "consent", "re-sealed a content key for a late grant in case " << CaseIdToHex(case_id));
  }
  if (sync_)
    for (const RecordId& id : grown) sync_->Announce(id);

  auto next = state.NextChange(now);
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
  KRING_RETURN_IF_ERROR(store_->AppendAccess(e));
  if (!e->case_id) return Status::Ok();
  // The citizen asks the regie organisation who looked: send it a signed copy.
  auto state = StateLocked(*e->case_id);
  if (!state.ok()) return Status::Ok();  // a case this node takes no part in (a failed call)
  std::string regie = state->Regie().org;
  if (regie.empty() || regie == identity_.pub.org) return Status::Ok();
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
  RecordId id = rec->Id();
  Bytes bytes = EncodeAccessRecord(*rec);
  RecordRow row{id, RecordType::kAccessRecord, *e->case_id, identity_.pub.org, "", "", rec->body.hlc, bytes,
                {identity_.pub.org, regie}};
  auto added = store_->PutRecords({row}, identity_.pub.org, NowMs());
  if (!added.ok()) return added.status();
  if (sync_) sync_->Announce(id);
  return Status::Ok();
}

size_t Node::Ingest(const std::string& from, std::vector<Bytes>& records, const RejectFn& reject) {
  std::lock_guard lock(mu_);
  auto partners = store_->ListPartners();
  if (!partners.ok()) {
    KRING_LOG(kError, "store", "cannot read partners: " << partners.status().ToString());
    return 0;
  }
  const std::string& me = identity_.pub.org;
  const int64_t now = NowMs();
  size_t added = 0;
  std::set<CaseId> touched;                        // control records changed: full recompute
  std::map<CaseId, std::set<RecordId>> new_fragments;  // only fragments arrived

  // Control records first: a fragment's admission depends on them.
  std::map<CaseId, std::vector<std::pair<ControlRecord, Bytes*>>> controls;
  std::vector<std::pair<Fragment, Bytes*>> fragments;
  std::vector<std::pair<AccessRecord, Bytes*>> access;
  for (Bytes& bytes : records) {
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
      fragments.emplace_back(std::move(*f), &bytes);
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
    if (!clock_.Plausible(h.hlc)) {
      reject("clock_skew", "record timestamp lies more than an hour in the future");
      continue;
    }
    controls[h.case_id].emplace_back(std::move(*c), &bytes);
  }

  std::map<FragmentId, std::string> pushed_authors;  // fragments in this push, for their key grants
  for (auto& [f, bytes] : fragments) pushed_authors[f.Id()] = f.header.author.v;
  for (auto& [case_id, list] : controls) {
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

  std::map<CaseId, Result<CaseState>> states;  // one decision per case for the whole push
  std::vector<RecordRow> fragment_rows;
  for (auto& [f, bytes] : fragments) {
    const FragmentHeader& h = f.header;
    const SignPublicKey* pk = AuthorKey(h.author.v, *partners);
    if (pk == nullptr) {
      reject("unknown_author", "fragment by '" + h.author.v + "', who is not a partner");
      continue;
    }
    Status st = VerifyFragment(f, *pk);
    if (!st.ok()) {
      reject("bad_fragment", "fragment by " + h.author.v + ": " + st.message());
      continue;
    }
    FragmentId id = f.Id();
    auto cached = states.find(h.case_id);
    if (cached == states.end()) cached = states.emplace(h.case_id, StateLocked(h.case_id)).first;
    const Result<CaseState>& state = cached->second;
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
          pf->ItemId() != f.ItemId())
        consistent = false;
    }
    if (!consistent) {
      reject("invalid_item", "fragment " + ToHex(id).substr(0, 16) + " edits a version of another case, item, kind or domain");
      continue;
    }
    ContentKey key;
    Status key_st = ContentKeyFor(f, &key);
    if (key_st.ok()) {
      auto body = DecryptFragment(f, key);
      if (!body.ok()) {
        reject("bad_fragment", "fragment " + ToHex(id).substr(0, 16) + " does not decrypt: " + body.status().message());
        continue;
      }
      nlohmann::json data = nlohmann::json::parse(body->begin(), body->end(), nullptr, false);
      sodium_memzero(body->data(), body->size());
      Status valid = ValidateFragmentItem(h.kind.v, h.domain.v, data);
      if (valid.ok() && h.predecessors.v.empty() && IsTombstone(data))
        valid = Status::InvalidArgument("a new item cannot be a deletion");
      if (!valid.ok()) {
        reject("invalid_item", "fragment " + ToHex(id).substr(0, 16) + ": " + valid.message());
        continue;
      }
    }
    fragment_rows.push_back(RecordRow{id, RecordType::kFragment, h.case_id, h.author.v, h.kind.v, h.domain.v, h.hlc,
                                      *bytes, state->Readers(facts, now)});
  }
  // One transaction (one fsync) for all fragments of the push.
  if (!fragment_rows.empty()) {
    auto ids = store_->PutRecords(fragment_rows, from, now);
    if (!ids.ok()) {
      KRING_LOG(kError, "store", "cannot store fragments from " << from << ": " << ids.status().ToString());
    } else {
      added += ids->size();
      for (const RecordRow& r : fragment_rows) {
        clock_.Observe(r.hlc);
        if (std::find(ids->begin(), ids->end(), r.id) != ids->end()) new_fragments[r.case_id].insert(r.id);
      }
    }
  }

  // Access-log entries of other organisations: only for the regie organisation.
  for (auto& [a, bytes] : access) {
    const AccessRecordBody& b = a.body;
    const SignPublicKey* pk = AuthorKey(b.author.v, *partners);
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

  for (const CaseId& c : touched) {
    Status st = RecomputeLocked(c);
    if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(c) << ": " << st.ToString());
  }
  for (auto& [c, ids] : new_fragments) {
    if (touched.count(c)) continue;
    Status st = RecomputeLocked(c, &ids);  // late key grants for what just arrived
    if (!st.ok()) KRING_LOG(kError, "case", "cannot recompute case " << CaseIdToHex(c) << ": " << st.ToString());
  }
  return added;
}

}  // namespace kring
