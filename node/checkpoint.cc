// Signing checkpoints of the access log, keeping partners', and auditing the log against them.
#include "node/checkpoint.h"

#include <algorithm>
#include <ctime>
#include <set>

#include <nlohmann/json.hpp>

#include "node/log.h"
#include "node/node.h"

namespace kring {

namespace {

constexpr const char* kRestoresKey = "restores";  // node_state: JSON list of RestoreMarker

std::string Describe(const CheckpointSource& s) {
  const CheckpointBody& b = s.checkpoint.body;
  return "checkpoint " + std::to_string(b.entries) + " (signed " + FormatUtc(b.time_ms) + ", " + s.from + ")";
}

CheckpointRow RowOf(const Checkpoint& c, const std::string& holder) {
  CheckpointRow r;
  r.org = c.body.org.v;
  r.holder = holder;
  r.restores = c.body.restores;
  r.entries = static_cast<int64_t>(c.body.entries);
  r.head = c.body.head;
  r.time_ms = c.body.time_ms;
  r.hlc = c.body.hlc;
  r.record = EncodeCheckpoint(c);
  return r;
}

}  // namespace

std::string FormatUtc(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<std::vector<RestoreMarker>> RestoreMarkers(Store& store) {
  auto raw = store.GetNodeState(kRestoresKey);
  if (!raw.ok()) return raw.status();
  std::vector<RestoreMarker> out;
  if (!raw->has_value()) return out;
  nlohmann::json j = nlohmann::json::parse((*raw)->begin(), (*raw)->end(), nullptr, false);
  if (!j.is_array()) return Status::Corruption("node_state 'restores' is not a JSON list");
  for (const auto& m : j) {
    if (!m.is_object() || !m.contains("backup_time_ms") || !m["backup_time_ms"].is_number_integer() ||
        !m.contains("backup_entries") || !m["backup_entries"].is_number_integer() || !m.contains("restored_ms") ||
        !m["restored_ms"].is_number_integer())
      return Status::Corruption("node_state 'restores' holds a malformed entry");
    out.push_back({m["backup_time_ms"].get<int64_t>(), m["backup_entries"].get<int64_t>(), m["restored_ms"].get<int64_t>()});
  }
  return out;
}

Status AddRestoreMarker(Store& store, const RestoreMarker& m) {
  auto markers = RestoreMarkers(store);
  if (!markers.ok()) return markers.status();
  markers->push_back(m);
  return SetRestoreMarkers(store, *markers);
}

Status SetRestoreMarkers(Store& store, const std::vector<RestoreMarker>& markers) {
  nlohmann::json j = nlohmann::json::array();
  for (const RestoreMarker& r : markers)
    j.push_back({{"backup_time_ms", r.backup_time_ms}, {"backup_entries", r.backup_entries}, {"restored_ms", r.restored_ms}});
  std::string s = j.dump();
  return store.SetNodeState(kRestoresKey, ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

Result<Checkpoint> WriteCheckpoint(Store& store, const NodeIdentity& me, HlcTimestamp hlc, int64_t now_ms) {
  auto head = store.AccessLogHead();
  if (!head.ok()) return head.status();
  auto markers = RestoreMarkers(store);
  if (!markers.ok()) return markers.status();
  auto partners = store.ListPartners();
  if (!partners.ok()) return partners.status();
  CheckpointBody b;
  b.org.v = me.pub.org;
  b.hlc = hlc;
  b.time_ms = now_ms;
  b.restores = static_cast<uint32_t>(markers->size());
  b.entries = static_cast<uint64_t>(head->entries);
  b.head = head->head;
  auto cp = SignCheckpoint(std::move(b), me);
  if (!cp.ok()) return cp.status();
  CheckpointRow row = RowOf(*cp, me.pub.org);
  RecordRow transport{cp->Id(), RecordType::kCheckpoint, CaseId{}, me.pub.org, "", "", hlc, row.record, {me.pub.org}};
  for (const Partner& p : *partners) transport.audience.push_back(p.identity.org);
  KRING_RETURN_IF_ERROR(store.AddOwnCheckpoint(row, transport));
  return cp;
}

Result<CheckpointAudit> AuditAccessLog(Store& store, const PublicIdentity& me, const std::vector<CheckpointSource>& extra) {
  CheckpointAudit audit;
  auto chain = store.VerifyAccessLog();
  if (!chain.ok()) return chain.status();
  audit.chain = *chain;
  if (chain->first_broken_seq != 0) {
    audit.verdict = CheckpointAudit::Verdict::kBroken;
    audit.findings.push_back("access log BROKEN at entry " + std::to_string(chain->first_broken_seq) + ": " + chain->reason);
    return audit;  // checkpoints cannot be compared with a chain that does not hold together
  }
  auto markers = RestoreMarkers(store);
  if (!markers.ok()) return markers.status();
  const uint32_t epoch = static_cast<uint32_t>(markers->size());

  std::vector<CheckpointSource> sources;
  auto own = store.OwnCheckpoints();
  if (!own.ok()) return own.status();
  auto held = store.HeldCheckpoints(me.org);
  if (!held.ok()) return held.status();
  auto add = [&](const CheckpointRow& r, const std::string& from) -> Status {
    auto cp = DecodeCheckpoint(r.record);
    if (!cp.ok()) return Status::Corruption("a stored checkpoint (" + from + ") does not decode: " + cp.status().message());
    sources.push_back({std::move(*cp), from});
    return Status::Ok();
  };
  for (const CheckpointRow& r : *own) KRING_RETURN_IF_ERROR(add(r, "this node"));
  // The copy in the synced set (what partners hold) survives a deletion from own_checkpoints alone.
  auto synced = store.RecordsOfCase(CaseId{}, RecordType::kCheckpoint);
  if (!synced.ok()) return synced.status();
  for (const StoredRecord& r : *synced) {
    auto cp = DecodeCheckpoint(r.record);
    if (cp.ok() && cp->body.org.v == me.org) sources.push_back({std::move(*cp), "this node, as sent to partners"});
  }
  for (const CheckpointRow& r : *held) KRING_RETURN_IF_ERROR(add(r, "held by " + r.holder));
  sources.insert(sources.end(), extra.begin(), extra.end());

  {  // the same checkpoint from several sources is compared once, named by the first
    std::set<RecordId> seen;
    std::vector<CheckpointSource> unique;
    for (CheckpointSource& s : sources)
      if (seen.insert(s.checkpoint.Id()).second) unique.push_back(std::move(s));
    sources = std::move(unique);
  }
  std::vector<std::string> broken, gaps;
  const int64_t n = chain->entries;
  // The entries a declared restore kept of epoch k: the shortest backup
  // restored since (a later restore may go back further).
  auto kept_of_epoch = [&](uint32_t k) {
    int64_t kept = INT64_MAX;
    for (uint32_t j = k; j < epoch; ++j) kept = std::min(kept, (*markers)[j].backup_entries);
    return kept;
  };
  for (const CheckpointSource& s : sources) {
    const CheckpointBody& b = s.checkpoint.body;
    Status sig = b.org.v == me.org ? VerifyCheckpoint(s.checkpoint, me.sign_pk)
                                   : Status::Corruption("it is a checkpoint of " + b.org.v + ", not of " + me.org);
    if (!sig.ok()) {
      broken.push_back(s.from + ": not a valid checkpoint of this node: " + sig.message());
      continue;
    }
    ++audit.checkpoints;
    const auto entries = static_cast<int64_t>(b.entries);
    if (b.restores > epoch) {
      broken.push_back("access log restored or rewound without kring-node restore since " + Describe(s) + ": it counts " +
                       std::to_string(b.restores) + " restore(s), this database " + std::to_string(epoch));
      continue;
    }
    if (b.restores < epoch && entries > kept_of_epoch(b.restores)) {
      const RestoreMarker& m = (*markers)[b.restores];
      gaps.push_back("restored from a backup of " + FormatUtc(m.backup_time_ms) + " (on " + FormatUtc(m.restored_ms) +
                     "): entries after " + FormatUtc(m.backup_time_ms) + " are missing; " + Describe(s) +
                     " is ahead of the restored chain (" + std::to_string(kept_of_epoch(b.restores)) + " entries kept)");
      continue;
    }
    if (entries == 0) continue;
    // Entries removed past their retention period cannot be compared; the
    // anchor that replaced them (entry `expired`) still can.
    if (entries < chain->expired) continue;
    if (entries > n) {
      broken.push_back("access log rewritten or truncated since " + Describe(s) + ": it had " + std::to_string(entries) +
                       " entries, the chain now has " + std::to_string(n));
      continue;
    }
    auto at = store.AccessHashAt(entries);
    if (!at.ok()) return at.status();
    if (!at->has_value() || **at != b.head)
      broken.push_back("access log rewritten or truncated since " + Describe(s) + ": entry " + std::to_string(entries) +
                       " no longer has the hash it signed");
  }
  // A restore is reported even when no checkpoint ahead of it survives.
  if (gaps.empty())
    for (const RestoreMarker& m : *markers)
      gaps.push_back("restored from a backup of " + FormatUtc(m.backup_time_ms) + " (on " + FormatUtc(m.restored_ms) +
                     "): entries written after " + FormatUtc(m.backup_time_ms) + " may be missing (" +
                     std::to_string(m.backup_entries) + " entries kept)");
  std::sort(broken.begin(), broken.end());
  broken.erase(std::unique(broken.begin(), broken.end()), broken.end());
  std::sort(gaps.begin(), gaps.end());
  gaps.erase(std::unique(gaps.begin(), gaps.end()), gaps.end());
  audit.verdict = !broken.empty() ? CheckpointAudit::Verdict::kBroken
                  : !gaps.empty() ? CheckpointAudit::Verdict::kGap
                                  : CheckpointAudit::Verdict::kIntact;
  audit.findings = std::move(broken);
  audit.findings.insert(audit.findings.end(), gaps.begin(), gaps.end());
  return audit;
}

Reject CheckpointRejectReason(const Status& st) {
  switch (st.code()) {
    case Status::Code::kCorruption: return Reject::kBadRecord;
    case Status::Code::kUnauthenticated: return Reject::kUnknownAuthor;
    case Status::Code::kPermissionDenied: return Reject::kNotAddressed;
    case Status::Code::kConflict: return Reject::kRewoundLog;  // a partner's access log went back: alert on it
    case Status::Code::kInvalidArgument: return Reject::kBadRecord;
    default: return Reject::kStoreError;
  }
}

std::string CheckpointToJson(const CheckpointRow& c) {
  nlohmann::json j;
  j["org"] = c.org;
  j["holder"] = c.holder;
  j["restores"] = c.restores;
  j["entries"] = c.entries;
  j["time_ms"] = c.time_ms;
  j["record"] = ToHex(c.record);
  return j.dump();
}

Result<Checkpoint> CheckpointFromJson(const std::string& line) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object() || !j.contains("record") || !j["record"].is_string())
    return Status::InvalidArgument("not a checkpoint line (JSON with a \"record\")");
  const std::string hex = j["record"].get<std::string>();
  if (hex.size() % 2 != 0 || hex.size() / 2 > kCheckpointMaxBytes)
    return Status::InvalidArgument("checkpoint record has the wrong length");
  Bytes rec(hex.size() / 2);
  if (!FromHex(hex, rec)) return Status::InvalidArgument("checkpoint record is not hex");
  return DecodeCheckpoint(rec);
}

// --- the node's side ---

void Node::SetCheckpointPolicy(CheckpointPolicy policy) {
  std::lock_guard lock(checkpoint_mu_);
  checkpoint_policy_ = policy;
}

Status Node::CheckpointIfDue(bool stopping) {
  std::lock_guard lock(checkpoint_mu_);
  const int64_t now = NowMs();
  if (!stopping && now - last_checkpoint_check_ms_ < kCheckpointCheckMs) return Status::Ok();  // the timer ticks every 100 ms
  last_checkpoint_check_ms_ = now;
  if (!checkpoint_loaded_) {
    auto own = store_->OwnCheckpoints();
    if (!own.ok()) return own.status();
    last_checkpoint_ms_ = now;  // the interval runs from start-up when there is none yet
    if (!own->empty()) {
      last_checkpoint_entries_ = own->back().entries;
      last_checkpoint_ms_ = std::min(now, own->back().time_ms);
      last_checkpoint_restores_ = own->back().restores;
    }
    checkpoint_loaded_ = true;
  }
  auto head = store_->AccessLogHead();
  if (!head.ok()) return head.status();
  auto markers = RestoreMarkers(*store_);
  if (!markers.ok()) return markers.status();
  const bool restored = markers->size() != last_checkpoint_restores_;  // a restore is declared at once
  const int64_t grown = head->entries - last_checkpoint_entries_;
  const bool due = restored || (grown != 0 && (stopping || grown >= checkpoint_policy_.every_entries ||
                                               now - last_checkpoint_ms_ >= checkpoint_policy_.interval_ms));
  if (!due) return Status::Ok();
  auto cp = WriteCheckpoint(*store_, *Keys(), clock_.Now(), now);
  if (!cp.ok()) return cp.status();
  last_checkpoint_entries_ = static_cast<int64_t>(cp->body.entries);
  last_checkpoint_ms_ = now;
  last_checkpoint_restores_ = cp->body.restores;
  if (sync_) sync_->Announce(cp->Id());
  KRING_LOG(kDebug, "audit", "signed access-log checkpoint at entry " << cp->body.entries);
  return Status::Ok();
}

Status Node::IngestCheckpoint(const std::string& from, ByteSpan bytes) {
  auto cp = DecodeCheckpoint(bytes);
  if (!cp.ok()) return cp.status();
  const CheckpointBody& b = cp->body;
  const std::string& me = org_;
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();
  if (from == me) return Status::InvalidArgument("a checkpoint from this node itself");
  if (b.org.v != me && b.org.v != from)  // copies are kept of direct partners only: no relaying
    return Status::PermissionDenied("checkpoint of " + b.org.v + " relayed by " + from);
  auto pk = AuthorKey(b.org.v, static_cast<int64_t>(HlcMillis(b.hlc)), *partners);
  if (!pk || !AuthorKey(from, -1, *partners))
    return Status::Unauthenticated("checkpoint from '" + from + "', who is not a partner");
  KRING_RETURN_IF_ERROR(VerifyCheckpoint(*cp, *pk));
  if (!clock_.Plausible(b.hlc)) return Status::InvalidArgument("checkpoint hlc more than an hour ahead");

  // Compare with the one held and replace it as one step: pushes are
  // checked on several threads at once.
  std::lock_guard lock(checkpoint_mu_);
  auto held = store_->HeldCheckpoints(b.org.v);
  if (!held.ok()) return held.status();
  const CheckpointRow* prev = nullptr;
  for (const CheckpointRow& r : *held)
    if (r.holder == from) prev = &r;
  if (prev != nullptr && b.hlc <= prev->hlc) return Status::Ok();  // not newer: nothing to keep
  if (b.org.v == me)  // ours, handed back: evidence for audit verify, never synced again
    return store_->HoldCheckpoint(RowOf(*cp, from), std::nullopt, NowMs());
  // A partner's own: its log only grows, unless it declares a restore.
  if (prev != nullptr && b.restores == prev->restores) {
    if (static_cast<int64_t>(b.entries) < prev->entries)
      return Status::Conflict(from + "'s access log went back from " + std::to_string(prev->entries) + " to " +
                              std::to_string(b.entries) + " entries without a declared restore; keeping the earlier checkpoint");
    if (static_cast<int64_t>(b.entries) == prev->entries && b.head != prev->head)
      return Status::Conflict(from + "'s access log changed at entry " + std::to_string(b.entries) +
                              "; keeping the earlier checkpoint");
  }
  if (prev != nullptr && b.restores < prev->restores)
    return Status::Conflict(from + "'s checkpoint counts fewer restores than one held; keeping the earlier checkpoint");
  if (prev != nullptr && b.restores > prev->restores)
    KRING_LOG(kWarn, "audit", from << " restored its access log from a backup: " << prev->entries << " entries before, "
                                   << b.entries << " now");
  CheckpointRow row = RowOf(*cp, from);
  // Synced back to its author only (audience: us and it), never relayed.
  RecordRow transport{cp->Id(), RecordType::kCheckpoint, CaseId{}, b.org.v, "", "", b.hlc, row.record, {me, b.org.v}};
  return store_->HoldCheckpoint(row, transport, NowMs());
}

}  // namespace kring
