// Applying the network roster and key rotations to a node: the CLI's network and keys commands and the running node's side of them.
#include "node/network.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <limits>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/primitives.h"
#include "node/log.h"
#include "node/node.h"
#include "protocol/card.h"
#include "protocol/record.h"

namespace kring {

namespace {

// Node state keys: "switch/<org>" holds a rotation statement until its switch time has been acted on.
constexpr const char* kSwitchPrefix = "switch/";
constexpr uint8_t kDone = 0;  // the value of a switch that has been acted on

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open " + dir + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError("cannot fsync " + dir);
  return Status::Ok();
}

Status EnsurePrivateDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::IOError("cannot create " + dir + ": " + std::strerror(errno));
  ::chmod(dir.c_str(), 0700);
  return Status::Ok();
}

// Keeps a copy of `id` in DATA/retired-keys/<tag>.key.
Status KeepRetired(const std::string& data_dir, const NodeIdentity& id, int64_t tag) {
  const std::string dir = RetiredKeysDir(data_dir);
  KRING_RETURN_IF_ERROR(EnsurePrivateDir(dir));
  Status st = WriteKeyFile(dir + "/" + std::to_string(tag) + ".key", id);
  if (!st.ok() && st.code() != Status::Code::kAlreadyExists) return st;
  return SyncDir(dir);
}

OrgKeys KeysOf(const PublicIdentity& id, int64_t from_ms, int64_t until_ms = OrgKeys::kForever) {
  OrgKeys k;
  k.org = id.org;
  k.sign_pk = id.sign_pk;
  k.box_pk = id.box_pk;
  k.transport_pk = id.transport_pk;
  k.from_ms = from_ms;
  k.until_ms = until_ms;
  return k;
}

// The keys the node holds for `org` now: its newest open key history entry, else `fallback`.
std::optional<OrgKeys> CurrentKeys(const std::vector<OrgKeys>& history, const std::string& org,
                                   const std::optional<OrgKeys>& fallback) {
  std::optional<OrgKeys> best;
  for (const OrgKeys& k : history)
    if (k.org == org && k.until_ms == OrgKeys::kForever && (!best || k.from_ms > best->from_ms)) best = k;
  return best ? best : fallback;
}

std::optional<OrgKeys> PartnerKeys(const std::vector<Partner>& partners, const std::string& org) {
  for (const Partner& p : partners)
    if (p.identity.org == org) return KeysOf(p.identity, 0);
  return std::nullopt;
}

}  // namespace

std::string RetiredKeysDir(const std::string& data_dir) { return data_dir + "/retired-keys"; }
std::string NextKeyFilePath(const std::string& data_dir) { return data_dir + "/node.key.next"; }

Result<Roster> CurrentRosterOf(Store& store) {
  auto bytes = store.CurrentRoster();
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return Status::NotFound("this node has joined no network (run 'kring-node network join')");
  auto r = DecodeRoster(**bytes);
  if (!r.ok()) return Status::Corruption("the stored roster does not decode: " + r.status().message());
  return r;
}

Result<Roster> FoundRoster(const std::string& network, std::vector<RosterMember> members,
                           const std::vector<std::string>& stewards, int threshold, int64_t now_ms) {
  Roster r;
  r.body.network.v = network;
  r.body.version = 1;
  r.body.issued_ms = now_ms;
  if (threshold < 1 || threshold > 255) return Status::InvalidArgument("the threshold must be between 1 and the number of stewards");
  r.body.threshold = static_cast<uint8_t>(threshold);
  std::sort(members.begin(), members.end(), [](const RosterMember& a, const RosterMember& b) { return a.org.v < b.org.v; });
  r.body.members.v = std::move(members);
  for (const std::string& s : stewards) r.body.stewards.v.push_back({s});
  Status shape = CheckRosterShape(r.body);
  if (!shape.ok()) return Status::InvalidArgument(shape.message());
  return r;
}

Result<Roster> ProposeRoster(const Roster& current, const RosterChange& change, const std::vector<OrgKeys>& history,
                             int64_t now_ms) {
  Roster next;
  next.body = current.body;
  next.body.version = current.body.version + 1;
  next.body.previous = current.Id();
  next.body.issued_ms = std::max(now_ms, current.body.issued_ms + 1);
  auto& members = next.body.members.v;
  // Rotations this node knows of and the current version does not show yet.
  for (RosterMember& m : members) {
    auto k = CurrentKeys(history, m.org.v, std::nullopt);
    if (k && (k->sign_pk != m.sign_pk || k->transport_pk != m.transport_pk)) {
      m.sign_pk = k->sign_pk;
      m.box_pk = k->box_pk;
      m.transport_pk = k->transport_pk;
      m.keys_from_ms = k->from_ms;
    }
  }
  if (change.add) {
    if (next.body.Member(change.add->org.v)) return Status::AlreadyExists(change.add->org.v + " is already a member");
    members.push_back(*change.add);
  }
  if (change.remove) {
    auto it = std::find_if(members.begin(), members.end(), [&](const RosterMember& m) { return m.org.v == *change.remove; });
    if (it == members.end()) return Status::NotFound(*change.remove + " is not a member");
    members.erase(it);
    auto& st = next.body.stewards.v;
    st.erase(std::remove_if(st.begin(), st.end(), [&](const auto& s) { return s.v == *change.remove; }), st.end());
    if (next.body.threshold > st.size())
      return Status::InvalidArgument("removing " + *change.remove + " leaves fewer stewards than the threshold; set --stewards and --threshold too");
  }
  if (change.set_endpoint) {
    bool found = false;
    for (RosterMember& m : members)
      if (m.org.v == change.set_endpoint->first) {
        m.endpoint.v = change.set_endpoint->second;
        found = true;
      }
    if (!found) return Status::NotFound(change.set_endpoint->first + " is not a member");
  }
  if (change.replace_keys) {
    bool found = false;
    for (RosterMember& m : members)
      if (m.org.v == change.replace_keys->org) {
        m.sign_pk = change.replace_keys->sign_pk;
        m.box_pk = change.replace_keys->box_pk;
        m.transport_pk = change.replace_keys->transport_pk;
        m.keys_from_ms = next.body.issued_ms;
        found = true;
      }
    if (!found) return Status::NotFound(change.replace_keys->org + " is not a member");
  }
  if (change.stewards) {
    next.body.stewards.v.clear();
    for (const std::string& s : *change.stewards) next.body.stewards.v.push_back({s});
  }
  if (change.threshold) {
    if (*change.threshold < 1 || *change.threshold > 255) return Status::InvalidArgument("the threshold must be at least 1");
    next.body.threshold = static_cast<uint8_t>(*change.threshold);
  }
  std::sort(members.begin(), members.end(), [](const RosterMember& a, const RosterMember& b) { return a.org.v < b.org.v; });
  Status shape = CheckRosterShape(next.body);
  if (!shape.ok()) return Status::InvalidArgument(shape.message());
  return next;
}

Result<RosterOutcome> AdoptRoster(Store& store, const std::string& me, const Roster& r, const std::string& from,
                                  int64_t now_ms) {
  RosterOutcome out;
  auto current_bytes = store.CurrentRoster();
  if (!current_bytes.ok()) return current_bytes.status();
  auto partners = store.ListPartners();
  if (!partners.ok()) return partners.status();
  auto history = store.KeyHistory();
  if (!history.ok()) return history.status();
  std::optional<Roster> current;
  if (current_bytes->has_value()) {
    auto c = DecodeRoster(**current_bytes);
    if (!c.ok()) return Status::Corruption("the stored roster does not decode: " + c.status().message());
    current = std::move(*c);
  }
  if (current) {
    if (r.body.version <= current->body.version) {
      // The same version again is no news; another one at that number is a fork.
      if (r.body.version == current->body.version && r.Id() == current->Id()) return out;
      if (r.body.version < current->body.version) return out;  // an older version, already followed
    }
    auto keys = [&](const std::string& org) {
      std::vector<SignPublicKey> ks;
      if (const RosterMember* m = current->body.Member(org)) ks.push_back(m->sign_pk);
      if (auto k = CurrentKeys(*history, org, std::nullopt)) ks.push_back(k->sign_pk);
      return ks;
    };
    out.refusal = JudgeRosterNext(*current, r, keys);
  } else {
    out.refusal = JudgeRosterAlone(r, me);
  }
  if (out.refusal) return out;

  RosterAdoption a;
  a.version = r.body.version;
  a.received_from = from;
  const Bytes bytes = EncodeRoster(r);
  a.row = RecordRow{r.Id(), RecordType::kRoster, CaseId{}, "", "", "", MakeHlc(static_cast<uint64_t>(r.body.issued_ms), 0),
                    ByteSpan(bytes), {}};
  std::set<std::string> now_members;
  for (const RosterMember& m : r.body.members.v) {
    now_members.insert(m.org.v);
    a.row.audience.push_back(m.org.v);
    if (m.org.v == me) continue;
    Partner p;
    p.identity = m.Identity();
    p.endpoint = m.endpoint.v;
    p.added_ms = now_ms;
    p.from_roster = true;
    a.members.push_back(p);
    if (!PartnerKeys(*partners, m.org.v)) out.added.push_back(m.org.v);
  }
  if (current) {
    for (const RosterMember& m : current->body.members.v)
      if (!now_members.count(m.org.v) && m.org.v != me) a.removed.push_back(m.org.v);
  }
  out.removed = a.removed;
  a.keys = RosterKeyChanges(r.body, [&](const std::string& org) -> std::optional<OrgKeys> {
    std::optional<OrgKeys> fallback;
    if (current) {
      if (const RosterMember* m = current->body.Member(org)) fallback = KeysOf(m->Identity(), m->keys_from_ms);
    }
    if (!fallback) fallback = PartnerKeys(*partners, org);
    auto k = CurrentKeys(*history, org, fallback);
    // A member new to this node: its keys from the roster are its first.
    return k;
  });
  for (const OrgKeys& k : a.keys)
    if (k.until_ms != OrgKeys::kForever && std::find(out.rekeyed.begin(), out.rekeyed.end(), k.org) == out.rekeyed.end())
      out.rekeyed.push_back(k.org);
  KRING_RETURN_IF_ERROR(store.AdoptRoster(a, now_ms));
  out.adopted = true;
  return out;
}

Result<KeyRotation> RotateKeys(const std::string& data_dir, int64_t switch_after_ms, int64_t now_ms) {
  InitSodium();
  struct stat st {};
  if (::stat(NextKeyFilePath(data_dir).c_str(), &st) == 0)
    return Status::Conflict("a key rotation is already pending (" + NextKeyFilePath(data_dir) +
                                      " exists): the node switches to those keys once it runs past the switch time; start it, then rotate again");
  auto old_id = ReadKeyFile(KeyFilePath(data_dir));
  if (!old_id.ok()) return old_id.status();
  auto store = Store::Open(DatabasePath(data_dir));
  if (!store.ok()) return store.status();
  NodeIdentity fresh = NodeIdentity::Generate(old_id->pub.org, old_id->pub.display_name);
  const int64_t switch_ms = now_ms + std::max<int64_t>(switch_after_ms, 0);
  auto max_hlc = (*store)->MaxHlc();
  if (!max_hlc.ok()) return max_hlc.status();
  const HlcTimestamp hlc = std::max<HlcTimestamp>(*max_hlc + 1, MakeHlc(static_cast<uint64_t>(now_ms), 0));
  auto rot = SignKeyRotation(*old_id, fresh, hlc, switch_ms);
  if (!rot.ok()) return rot.status();
  KRING_RETURN_IF_ERROR(KeepRetired(data_dir, *old_id, switch_ms));
  KRING_RETURN_IF_ERROR(WriteKeyFile(NextKeyFilePath(data_dir), fresh));

  auto partners = (*store)->ListPartners();
  if (!partners.ok()) return partners.status();
  auto history = (*store)->KeyHistory();
  if (!history.ok()) return history.status();
  const std::string& org = old_id->pub.org;
  auto known = CurrentKeys(*history, org, KeysOf(old_id->pub, 0));
  std::vector<OrgKeys> keys = {KeysOf(old_id->pub, known->from_ms, switch_ms), KeysOf(fresh.pub, switch_ms)};
  const Bytes bytes = EncodeKeyRotation(*rot);
  RecordRow row{rot->Id(), RecordType::kKeyRotation, CaseId{}, org, "", "", hlc, ByteSpan(bytes), {org}};
  for (const Partner& p : *partners) row.audience.push_back(p.identity.org);
  KRING_RETURN_IF_ERROR((*store)->PutKeyHistory(keys, row, org, now_ms));
  KRING_RETURN_IF_ERROR((*store)->SetNodeState(kSwitchPrefix + org, bytes));
  return rot;
}

Result<PublicIdentity> ReplaceKeysNow(const std::string& data_dir, int64_t now_ms) {
  InitSodium();
  auto old_id = ReadKeyFile(KeyFilePath(data_dir));
  if (!old_id.ok()) return old_id.status();
  NodeIdentity fresh = NodeIdentity::Generate(old_id->pub.org, old_id->pub.display_name);
  KRING_RETURN_IF_ERROR(KeepRetired(data_dir, *old_id, now_ms));
  const std::string tmp = KeyFilePath(data_dir) + ".new";
  ::unlink(tmp.c_str());
  KRING_RETURN_IF_ERROR(WriteKeyFile(tmp, fresh));
  if (::rename(tmp.c_str(), KeyFilePath(data_dir).c_str()) != 0)
    return Status::IOError("cannot replace " + KeyFilePath(data_dir) + ": " + std::strerror(errno));
  KRING_RETURN_IF_ERROR(SyncDir(data_dir));
  return fresh.pub;
}

// ---------------------------------------------------------------- the running node

void Node::ReloadKeyHistory() {
  auto history = store_->KeyHistory();
  if (!history.ok()) {
    KRING_LOG(kError, "store", "cannot read the key history: " << history.status().ToString());
    return;
  }
  auto map = std::make_shared<std::map<std::string, std::vector<OrgKeys>>>();
  for (OrgKeys& k : *history) (*map)[k.org].push_back(std::move(k));
  std::lock_guard lock(keys_mu_);
  key_history_ = std::move(map);
}

void Node::LoadRetiredKeys() {
  std::vector<std::shared_ptr<const NodeIdentity>> found;
  const std::string dir = RetiredKeysDir(data_dir_);
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.size() < 5 || name.substr(name.size() - 4) != ".key") continue;
      auto id = ReadKeyFile(dir + "/" + name);
      if (!id.ok()) {
        KRING_LOG(kWarn, "keys", "cannot read retired key file " << dir << "/" << name << ": " << id.status().ToString());
        continue;
      }
      found.push_back(std::make_shared<const NodeIdentity>(std::move(*id)));
    }
    ::closedir(d);
  }
  std::lock_guard lock(keys_mu_);
  retired_keys_ = std::move(found);
}

std::vector<OrgKeys> Node::KeyHistoryOf(const std::string& org) {
  std::lock_guard lock(keys_mu_);
  if (!key_history_) return {};
  auto it = key_history_->find(org);
  return it == key_history_->end() ? std::vector<OrgKeys>() : it->second;
}

std::set<std::string> Node::RemovedMembers() {
  std::set<std::string> out;
  auto removed = store_->RemovedMembers();
  if (removed.ok())
    for (const auto& [org, version] : *removed) out.insert(org);
  return out;
}

Node::GranteeDirectory Node::Grantees() {
  GranteeDirectory d;
  d.me = org_;
  if (auto p = store_->ListPartners(); p.ok())
    for (const Partner& x : *p) d.partners.insert(x.identity.org);
  d.removed = RemovedMembers();
  return d;
}

std::string Node::GranteeDirectory::Status(const std::string& org) const {
  if (org == me || partners.count(org)) return "partner";
  return removed.count(org) ? "removed" : "not-a-partner";
}

void Node::IngestRoster(const std::string& from, const Roster& r, ByteSpan /*bytes*/, const RejectFn& reject) {
  std::lock_guard lock(network_mu_);  // one adoption at a time
  // A node joins a network only by its operator's `network join`: a partner
  // cannot make it adopt a roster of the partner's choosing.
  auto held = store_->CurrentRoster();
  if (held.ok() && !held->has_value()) {
    reject(RejectName(Reject::kNotAddressed), "roster of '" + r.body.network.v + "' from " + from +
                                                  ", but this node has joined no network (only 'network join' does that)");
    return;
  }
  auto outcome = AdoptRoster(*store_, org_, r, from, NowMs());
  if (!outcome.ok()) {
    reject(RejectName(Reject::kStoreError), "cannot adopt roster version " + std::to_string(r.body.version) + ": " +
                                                outcome.status().ToString());
    return;
  }
  if (outcome->refusal) {
    reject(RejectName(outcome->refusal->reason), "roster version " + std::to_string(r.body.version) + " of '" +
                                                     r.body.network.v + "' from " + from + ": " + outcome->refusal->detail);
    return;
  }
  if (!outcome->adopted) return;
  OnRosterAdopted(r, *outcome);
}

void Node::OnRosterAdopted(const Roster& r, const RosterOutcome& o) {
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? std::string("none") : s;
  };
  KRING_LOG(kInfo, "network", "adopted version " << r.body.version << " of the roster of '" << r.body.network.v << "': "
                                                 << r.body.members.v.size() << " member(s); added " << join(o.added)
                                                 << "; removed " << join(o.removed) << "; new keys for " << join(o.rekeyed));
  ReloadKeyHistory();
  if (sync_) {
    sync_->PartnersChanged();
    sync_->Announce(r.Id());
  }
  recompute_all_ = true;  // partners came or went: who may hold what changes
  timer_cv_.notify_all();
}

// Who holds a rotation statement of `org`, as consent/network.h decides.
static std::vector<std::string> RotationAudience(const std::string& me, const std::string& org, const std::vector<Partner>& partners) {
  std::vector<NetworkPeer> peers;
  peers.reserve(partners.size());
  for (const Partner& p : partners) peers.push_back({p.identity.org, p.from_roster});
  return RotationHolders(me, org, peers);
}

void Node::ScheduleSwitch(int64_t at_ms) {
  int64_t cur = next_switch_ms_.load();
  while (at_ms < cur && !next_switch_ms_.compare_exchange_weak(cur, at_ms)) {
  }
}

void Node::ShareRotationsWithPartners() {
  auto ids = store_->IdsOfType(RecordType::kKeyRotation);
  auto partners = store_->ListPartners();
  if (!ids.ok() || !partners.ok() || ids->empty()) return;
  std::vector<std::pair<RecordId, std::vector<std::string>>> audiences;
  for (const RecordId& id : *ids) {
    auto rec = store_->GetRecord(id);
    if (!rec.ok() || !rec->has_value()) continue;
    auto r = DecodeKeyRotation((*rec)->record);
    if (!r.ok()) continue;
    audiences.emplace_back(id, RotationAudience(org_, r->body.org.v, *partners));
  }
  auto gained = store_->SetAudiences(audiences);
  if (!gained.ok()) {
    KRING_LOG(kError, "store", "cannot share key rotations with partners: " << gained.status().ToString());
    return;
  }
  if (sync_)
    for (const RecordId& id : *gained) sync_->Announce(id);
}

void Node::IngestRotation(const std::string& from, const KeyRotation& r, ByteSpan bytes, const RejectFn& reject) {
  std::lock_guard lock(network_mu_);
  const std::string& org = r.body.org.v;
  // Held already: no news, and not passed on again (partners hand it back
  // to each other in reconciliation).
  if (auto held = store_->Contains({r.Id()}); held.ok() && (*held)[0]) return;
  auto partners = store_->ListPartners();
  if (!partners.ok()) {
    reject(RejectName(Reject::kStoreError), "cannot read partners: " + partners.status().ToString());
    return;
  }
  std::optional<OrgKeys> fallback = org == org_ ? std::nullopt : PartnerKeys(*partners, org);
  if (!fallback && org != org_) {
    reject(RejectName(Reject::kUnknownAuthor), "key rotation of '" + org + "', who is not a partner");
    return;
  }
  const std::vector<OrgKeys> history = KeyHistoryOf(org);
  std::optional<OrgKeys> current = CurrentKeys(history, org, fallback);
  bool duplicate = false;
  if (auto refusal = JudgeKeyRotation(r, current, &duplicate)) {
    if (org == org_ && refusal->reason == Reject::kRotationStale) return;  // our own, already applied here
    reject(RejectName(refusal->reason), "key rotation of " + org + " from " + from + ": " + refusal->detail);
    return;
  }
  std::vector<OrgKeys> keys;
  PublicIdentity old_keys, new_keys;
  old_keys.org = new_keys.org = org;
  old_keys.sign_pk = r.body.old_sign_pk;
  old_keys.box_pk = r.body.old_box_pk;
  old_keys.transport_pk = r.body.old_transport_pk;
  new_keys.sign_pk = r.body.new_sign_pk;
  new_keys.box_pk = r.body.new_box_pk;
  new_keys.transport_pk = r.body.new_transport_pk;
  if (duplicate) {
    // Known from a roster already: learn when the old key stopped counting.
    keys = {KeysOf(old_keys, 0, r.body.switch_ms)};
  } else {
    keys = {KeysOf(old_keys, current->from_ms, r.body.switch_ms), KeysOf(new_keys, r.body.switch_ms)};
  }
  RecordRow row{r.Id(), RecordType::kKeyRotation, CaseId{}, org, "", "", r.body.hlc, bytes,
                 RotationAudience(org_, org, *partners)};
  if (Status st = store_->PutKeyHistory(keys, row, from, NowMs()); !st.ok()) {
    reject(RejectName(Reject::kStoreError), "cannot store key rotation of " + org + ": " + st.ToString());
    return;
  }
  if (!duplicate) {
    if (Status st = store_->SetNodeState(kSwitchPrefix + org, bytes); !st.ok())
      KRING_LOG(kError, "store", "cannot schedule the key switch of " << org << ": " << st.ToString());
    ScheduleSwitch(r.body.switch_ms);
    KRING_LOG(kInfo, "network", "partner " << org << " rotates its keys (new fingerprint "
                                           << CardFingerprint(new_keys) << "); they take over in "
                                           << std::max<int64_t>(0, r.body.switch_ms - NowMs()) / 1000 << " s");
  }
  ReloadKeyHistory();
  if (sync_) sync_->Announce(r.Id());
  timer_cv_.notify_all();
}

void Node::SwitchDueKeys() {
  // Read the pending switches only when one is due (or another process may have added one).
  const int64_t now = NowMs();
  if (now < next_switch_ms_.load()) return;
  next_switch_ms_ = std::numeric_limits<int64_t>::max();
  auto pending = store_->NodeStateWithPrefix(kSwitchPrefix);
  if (!pending.ok()) {
    next_switch_ms_ = now + 1000;  // try again in a second
    return;
  }
  bool reload_history = false;
  for (const auto& [key, bytes] : *pending) {
    if (bytes.size() <= 1) continue;  // done (kDone)
    auto r = DecodeKeyRotation(bytes);
    if (!r.ok()) continue;
    if (r->body.switch_ms > now) {
      ScheduleSwitch(r->body.switch_ms);
      continue;
    }
    std::lock_guard lock(network_mu_);
    const std::string& org = r->body.org.v;
    PublicIdentity fresh;
    fresh.org = org;
    fresh.sign_pk = r->body.new_sign_pk;
    fresh.box_pk = r->body.new_box_pk;
    fresh.transport_pk = r->body.new_transport_pk;
    if (org == org_) {
      if (Status st = SwitchOwnKeys(*r); !st.ok()) {
        KRING_LOG(kError, "keys", "cannot switch to this node's new keys: " << st.ToString());
        ScheduleSwitch(now + 1000);
        continue;
      }
    } else {
      if (Status st = store_->SetPartnerKeys(fresh); !st.ok()) {
        KRING_LOG(kError, "store", "cannot pin the new keys of " << org << ": " << st.ToString());
        ScheduleSwitch(now + 1000);
        continue;
      }
      KRING_LOG(kInfo, "network", "partner " << org << " now speaks with its new keys (fingerprint " << CardFingerprint(fresh) << ")");
      if (sync_) sync_->PartnersChanged();
    }
    if (Status st = store_->SetNodeState(key, Bytes{kDone}); !st.ok())
      KRING_LOG(kError, "store", "cannot record the key switch of " << org << " as done: " << st.ToString());
    reload_history = true;
  }
  if (reload_history) ReloadKeyHistory();
}

Status Node::SwitchOwnKeys(const KeyRotation& r) {
  const std::string next_path = NextKeyFilePath(data_dir_);
  auto fresh = ReadKeyFile(next_path);
  if (!fresh.ok()) {
    // Already switched (the key file is the new one) after a crash in between.
    if (Keys()->pub.sign_pk == r.body.new_sign_pk) return Status::Ok();
    return fresh.status();
  }
  if (fresh->pub.sign_pk != r.body.new_sign_pk || fresh->pub.transport_pk != r.body.new_transport_pk)
    return Status::Corruption(next_path + " does not hold the keys the rotation statement names");
  std::shared_ptr<const NodeIdentity> old = Keys();
  auto next = std::make_shared<const NodeIdentity>(std::move(*fresh));
  // Re-seal every content key this node can open to its new box key, so
  // nothing it could read depends on the old key.
  auto ids = store_->IdsOfType(RecordType::kFragment);
  if (!ids.ok()) return ids.status();
  std::vector<std::pair<RecordId, SealedKey>> resealed;
  for (const RecordId& id : *ids) {
    auto rec = store_->GetRecord(id);
    if (!rec.ok() || !rec->has_value()) continue;
    auto f = DecodeFragmentRecord((*rec)->record);
    if (!f.ok()) continue;
    ContentKey key;
    if (!ContentKeyFor(*f, &key).ok()) continue;
    resealed.emplace_back(id, SealKey(key, next->pub.box_pk));
  }
  KRING_RETURN_IF_ERROR(store_->PutResealed(resealed));
  if (::rename(next_path.c_str(), KeyFilePath(data_dir_).c_str()) != 0)
    return Status::IOError("cannot install the new key file: " + std::string(std::strerror(errno)));
  KRING_RETURN_IF_ERROR(SyncDir(data_dir_));
  {
    std::lock_guard lock(keys_mu_);
    retired_keys_.push_back(old);
    keys_ = next;
  }
  if (sync_) sync_->Rekey(next);
  KRING_LOG(kInfo, "keys", "this node now signs, seals and connects with its new keys (fingerprint "
                               << CardFingerprint(next->pub) << "); re-sealed " << resealed.size()
                               << " content key(s) to the new key");
  return Status::Ok();
}

}  // namespace kring
