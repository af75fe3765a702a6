// DirectFill: Node::WriteItem's sealing and storing, batched and on several threads.
#include "bench/fill.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "plan/items.h"
#include "protocol/messages.h"

#include <sqlite3.h>

namespace kring::bench {

// ------------------------------------------------------------------ a VFS without fsync

namespace {

sqlite3_vfs* g_base_vfs = nullptr;
sqlite3_vfs g_unsynced_vfs;
// The base VFS gives different files different method tables (the database
// with locking, its WAL and journals without): a copy of each with xSync a no-op.
std::mutex g_methods_mu;
std::map<const sqlite3_io_methods*, std::unique_ptr<sqlite3_io_methods>> g_unsynced_methods;

int UnsyncedSync(sqlite3_file*, int) { return SQLITE_OK; }

int UnsyncedOpen(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  int rc = g_base_vfs->xOpen(g_base_vfs, name, f, flags, out_flags);
  if (f->pMethods != nullptr) {
    std::lock_guard lock(g_methods_mu);
    auto& copy = g_unsynced_methods[f->pMethods];
    if (!copy) {
      copy = std::make_unique<sqlite3_io_methods>(*f->pMethods);
      copy->xSync = UnsyncedSync;
    }
    f->pMethods = copy.get();
  }
  return rc;
}

}  // namespace

UnsyncedFill::UnsyncedFill() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_base_vfs = sqlite3_vfs_find(nullptr);
    g_unsynced_vfs = *g_base_vfs;
    g_unsynced_vfs.pNext = nullptr;
    g_unsynced_vfs.zName = "kring-bench-unsynced";
    g_unsynced_vfs.xOpen = UnsyncedOpen;
  });
  ok_ = g_base_vfs != nullptr && sqlite3_vfs_register(&g_unsynced_vfs, 1) == SQLITE_OK;
}

UnsyncedFill::~UnsyncedFill() {
  if (ok_) sqlite3_vfs_register(g_base_vfs, 1);  // the default again (ours stays registered for open connections)
}

Result<std::unique_ptr<DirectFill>> DirectFill::Open(const std::string& data_dir) {
  std::unique_ptr<DirectFill> f(new DirectFill());
  auto id = ReadKeyFile(KeyFilePath(data_dir));
  if (!id.ok()) return id.status();
  f->identity_ = std::make_unique<NodeIdentity>(*id);
  auto node = Node::Open(data_dir);
  if (!node.ok()) return node.status();
  f->node_ = std::move(*node);
  return f;
}

DirectFill::~DirectFill() = default;

Result<CaseId> DirectFill::CreateCase(const std::string& label) { return node_->CreateCase(label); }

Result<RecordId> DirectFill::Grant(const CaseId& c, const std::string& grantee, const std::vector<std::string>& domains) {
  ConsentInput in;
  in.grantee = grantee;
  in.domains = domains;
  in.purpose = "benchmark";
  in.basis = "Wmo 2015 art. 5.1.1";
  in.valid_from_ms = 1577836800000;  // 2020-01-01
  in.given_by = "burger";
  in.evidence_reference = "formulier-bench";
  return node_->RecordConsent(c, in);
}

namespace {

struct CaseTarget {
  CaseId id{};
  std::vector<PublicIdentity> recipients;  // readers other than the author, among partners
  std::vector<std::string> audience;       // CaseState::Readers
};

struct Sealed {
  FragmentId id{};
  size_t case_index = 0;
  HlcTimestamp hlc = 0;
  Bytes record;
};

}  // namespace

Result<size_t> DirectFill::MirrorCases(const std::vector<CaseId>& cases, const std::vector<Mirror>& mirrors) {
  const int64_t now = static_cast<int64_t>(HybridClock::SystemMillis());
  const std::string me = identity_->pub.org;
  std::vector<std::deque<Bytes>> kept(mirrors.size());  // the records' bytes, alive (and not moved) until stored
  std::vector<std::vector<RecordRow>> rows(mirrors.size());
  size_t copied = 0;
  auto flush = [&](bool last) -> Status {
    for (size_t m = 0; m < mirrors.size(); ++m) {
      if (rows[m].empty() || (!last && rows[m].size() < 1000)) continue;
      auto put = mirrors[m].store->PutRecords(rows[m], me, now);
      if (!put.ok()) return put.status();
      copied += put->size();
      rows[m].clear();
      kept[m].clear();
    }
    return Status::Ok();
  };
  for (const CaseId& c : cases) {
    auto records = node_->store().RecordsOfCase(c);
    if (!records.ok()) return records.status();
    for (StoredRecord& r : *records) {
      if (r.type == RecordType::kFragment) continue;  // WriteNotes mirrors the notes
      auto audience = node_->store().AudienceOf(r.id);
      if (!audience.ok()) return audience.status();
      auto control = DecodeControlRecord(r.record);
      if (!control.ok()) continue;  // not a control record of the case (an access record): stays here
      for (size_t m = 0; m < mirrors.size(); ++m) {
        if (std::find(audience->begin(), audience->end(), mirrors[m].org) == audience->end()) continue;
        kept[m].push_back(r.record);
        rows[m].push_back(RecordRow{r.id, r.type, c, control->header().author.v, "", "", r.hlc, kept[m].back(), *audience});
      }
    }
    if (Status st = flush(false); !st.ok()) return st;
  }
  if (Status st = flush(true); !st.ok()) return st;
  // Storing a consent marks its case due for a recompute; the receiving
  // node's ingest recomputes it at once and records when its decisions next
  // change: never, for these consents (no end date). Recorded here as that
  // recompute would, so that the partner does not decide every case again
  // before it serves (its first start still rechecks them in the background).
  for (const Mirror& m : mirrors)
    for (const CaseId& c : cases)
      if (Status st = m.store->SetNextChange(c, std::nullopt); !st.ok()) return st;
  return copied;
}

Result<std::vector<FragmentId>> DirectFill::WriteNotes(const std::vector<CaseId>& cases, size_t count, size_t body_bytes,
                                                       int threads, const std::vector<Mirror>& mirrors) {
  if (cases.empty()) return Status::InvalidArgument("notes need at least one case");
  const std::string me = identity_->pub.org;
  const int64_t now = static_cast<int64_t>(HybridClock::SystemMillis());
  auto partners = node_->store().ListPartners();
  if (!partners.ok()) return partners.status();

  // What WriteItem computes per write depends only on the case's consent
  // state, which notes do not change: compute it once per case.
  std::vector<CaseTarget> targets;
  for (const CaseId& c : cases) {
    auto state = node_->State(c);
    if (!state.ok()) return state.status();
    CaseTarget t;
    t.id = c;
    FragmentFacts facts{FragmentId{}, me, ""};
    t.audience = state->Readers(facts, now);
    for (const std::string& reader : t.audience) {
      if (reader == me) continue;
      auto it = std::find_if(partners->begin(), partners->end(), [&](const Partner& p) { return p.identity.org == reader; });
      if (it != partners->end()) t.recipients.push_back(it->identity);
    }
    targets.push_back(std::move(t));
  }

  // The hybrid clock as the node would run it: strictly above everything stored.
  auto max_hlc = node_->store().MaxHlc();
  if (!max_hlc.ok()) return max_hlc.status();
  const HlcTimestamp hlc0 = std::max<HlcTimestamp>(*max_hlc + 1, MakeHlc(static_cast<uint64_t>(now), 0));

  std::vector<uint32_t> case_of(count);
  std::mt19937_64 rng(12345);
  for (size_t i = 0; i < count; ++i) case_of[i] = static_cast<uint32_t>(rng() % targets.size());

  // {"text":"..."} is 11 bytes of JSON around the text; a note holds at most kMaxLongText characters.
  std::string text(std::min(kMaxLongText, body_bytes > 12 ? body_bytes - 11 : 1), 'x');
  constexpr size_t kChunk = 1000;
  const size_t chunks = (count + kChunk - 1) / kChunk;
  std::atomic<size_t> next_chunk{0};
  std::mutex mu;
  std::condition_variable cv;
  std::map<size_t, std::vector<Sealed>> ready;
  Status worker_error = Status::Ok();
  size_t stored_upto = 0;  // chunks stored, for back-pressure

  auto worker = [&]() {
    for (;;) {
      size_t k = next_chunk.fetch_add(1);
      if (k >= chunks) return;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return k < stored_upto + 8 || !worker_error.ok(); });  // at most 8 chunks in memory
        if (!worker_error.ok()) return;
      }
      std::vector<Sealed> out;
      for (size_t i = k * kChunk; i < std::min(count, (k + 1) * kChunk); ++i) {
        const CaseTarget& t = targets[case_of[i]];
        FragmentDraft d;
        d.case_id = t.id;
        d.kind = "note";
        d.recipients = t.recipients;
        std::string body = nlohmann::json{{"text", text}}.dump();
        d.body.assign(body.begin(), body.end());
        d.hlc = hlc0 + i;
        auto f = SealFragment(d, *identity_);
        if (!f.ok()) {
          std::lock_guard lock(mu);
          worker_error = f.status();
          cv.notify_all();
          return;
        }
        out.push_back(Sealed{f->Id(), case_of[i], d.hlc, EncodeFragmentRecord(*f)});
      }
      std::lock_guard lock(mu);
      ready.emplace(k, std::move(out));
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(worker);

  std::vector<FragmentId> ids;
  ids.reserve(count);
  Status result = Status::Ok();
  for (size_t k = 0; k < chunks && result.ok(); ++k) {
    std::vector<Sealed> batch;
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return ready.count(k) || !worker_error.ok(); });
      if (!worker_error.ok()) {
        result = worker_error;
        break;
      }
      batch = std::move(ready[k]);
      ready.erase(k);
    }
    std::vector<RecordRow> rows;
    rows.reserve(batch.size());
    for (const Sealed& s : batch) {
      const CaseTarget& t = targets[s.case_index];
      rows.push_back(RecordRow{s.id, RecordType::kFragment, t.id, me, "note", "", s.hlc, s.record, t.audience});
      ids.push_back(s.id);
    }
    auto added = node_->store().PutRecords(rows, me, now);
    if (!added.ok()) result = added.status();
    if (result.ok() && !mirrors.empty()) {
      // The same rows in every mirror whose organisation may hold them, one thread per mirror.
      std::vector<Status> mirrored(mirrors.size(), Status::Ok());
      std::vector<std::thread> writers;
      for (size_t m = 0; m < mirrors.size(); ++m)
        writers.emplace_back([&, m] {
          std::vector<RecordRow> theirs;
          for (const RecordRow& row : rows)
            if (std::find(row.audience.begin(), row.audience.end(), mirrors[m].org) != row.audience.end())
              theirs.push_back(row);
          if (theirs.empty()) return;
          auto put = mirrors[m].store->PutRecords(theirs, me, now);
          if (!put.ok()) mirrored[m] = put.status();
        });
      for (auto& w : writers) w.join();
      for (const Status& st : mirrored)
        if (!st.ok()) result = st;
    }
    std::lock_guard lock(mu);
    stored_upto = k + 1;
    if (!result.ok()) worker_error = result;
    cv.notify_all();
  }
  for (auto& t : pool) t.join();
  if (!result.ok()) return result;
  return ids;
}

}  // namespace kring::bench
