// Deferred body checks: a received fragment's body is opened and validated after it is stored, never on receipt.
//
// Receipt checks what the sync needs (decoding, id, signature, the author's
// right to write, the audience). Opening the content key, decrypting and
// validating the body happen here: in a background lane at low CPU priority
// that follows the change feed (so it resumes where it was after a crash),
// and again whenever the plan is read. A body that does not open or validate
// is kept and shown as unreadable, counted and logged once; it is never dropped.
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "crypto/primitives.h"
#include "node/api.h"
#include "node/log.h"
#include "node/node.h"
#include "plan/items.h"

namespace kring {

Node::BodyRead Node::ReadBody(const Fragment& f, const FragmentId& id) {
  BodyRead out;
  ContentKey key;
  if (!ContentKeyFor(f, &key, &id).ok()) {
    // Sealed to this organisation but no key of it opens it: unreadable for
    // good. Not sealed to it: a late key grant may still come (not an error).
    if (SealedKeyFor(f, org_) != nullptr) {
      out.outcome = BodyRead::Outcome::kUnreadable;
      out.reason = "content-key";
    }
    return out;
  }
  auto body = DecryptFragment(f, key);
  sodium_memzero(key.data(), key.size());
  if (!body.ok()) {
    out.outcome = BodyRead::Outcome::kUnreadable;
    out.reason = "decrypt";
    return out;
  }
  // Parsing a partner's body is bounded like an API body: no recursion deeper
  // than the API allows (copying and validating recurse per level).
  std::string_view text(reinterpret_cast<const char*>(body->data()), body->size());
  nlohmann::json data = JsonNestingWithin(text, kMaxApiJsonDepth)
                            ? nlohmann::json::parse(body->begin(), body->end(), nullptr, false)
                            : nlohmann::json(nlohmann::json::value_t::discarded);
  sodium_memzero(body->data(), body->size());
  const FragmentHeader& h = f.header;
  bool valid = !data.is_discarded() && ValidateFragmentItem(h.kind.v, h.domain.v, data).ok() &&
               !(h.predecessors.v.empty() && IsTombstone(data));  // a new item cannot be a deletion
  if (!valid) {
    out.outcome = BodyRead::Outcome::kUnreadable;
    out.reason = "invalid";
    return out;
  }
  out.outcome = BodyRead::Outcome::kOk;
  out.data = std::move(data);
  return out;
}

void Node::NoteUnreadable(const FragmentId& id, const Fragment& f, const std::string& reason) {
  auto added = store_->MarkUnreadable(UnreadableFragment{id, f.header.case_id, reason, NowMs()});
  if (!added.ok()) {
    KRING_LOG(kError, "store", "cannot record an unreadable fragment: " << added.status().ToString());
    return;
  }
  if (!*added) return;  // known already (or purged meanwhile)
  unreadable_fragments_.fetch_add(1);
  // Ids, organisation, kind and reason only: never anything of the body.
  KRING_LOG(kWarn, "plan", "fragment " << ToHex(id).substr(0, 16) << " (" << f.header.kind.v << ") by " << f.header.author.v
                                       << " in case " << CaseIdToHex(f.header.case_id) << " is unreadable (" << reason
                                       << "); it is kept, synced as usual and shown as unreadable in the plan");
}

void Node::WakeBodyChecks() {
  {
    std::lock_guard lock(body_mu_);
    body_pending_ = true;
  }
  body_cv_.notify_one();
}

void Node::CheckStoredBody(const FragmentId& id) {
  auto rec = store_->GetRecord(id);
  if (!rec.ok() || !rec->has_value() || (*rec)->type != RecordType::kFragment) return;  // purged meanwhile
  auto f = DecodeFragmentRecord((*rec)->record);
  if (!f.ok()) return;
  if (f->header.author.v == org_) return;  // validated when written here
  BodyRead r = ReadBody(*f, id);
  if (r.outcome == BodyRead::Outcome::kUnreadable) NoteUnreadable(id, *f, r.reason);
}

void Node::BodyCheckLoop() {
  // Low priority: the lane uses CPU that ingest and the API leave over.
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
  constexpr size_t kBatch = 256;
  constexpr auto kIdle = std::chrono::milliseconds(1000);
  auto cursor = store_->BodyCheckCursor();
  int64_t upto = cursor.ok() ? *cursor : 0;
  if (!cursor.ok()) KRING_LOG(kError, "store", "cannot read the body-check position: " << cursor.status().ToString());
  int64_t saved = upto;
  auto stopping = [&] {
    std::lock_guard lock(body_mu_);
    return body_stopping_;
  };
  auto save = [&] {
    if (upto == saved) return;
    Status st = store_->SetBodyCheckCursor(upto);
    if (!st.ok()) KRING_LOG(kError, "store", "cannot record the body-check position: " << st.ToString());
    else saved = upto;
  };
  while (!stopping()) {
    auto batch = store_->FragmentsStoredAfter(upto, kBatch);
    if (!batch.ok()) KRING_LOG(kError, "store", "cannot read stored fragments: " << batch.status().ToString());
    bool waited = false;
    if (batch.ok()) {
      for (const StoredFragmentRef& ref : *batch) {
        // Not before the configured delay after it was stored.
        const int64_t due = ref.time_ms + body_check_delay_ms_.load();
        if (NowMs() < due) {
          std::unique_lock lock(body_mu_);
          body_cv_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(due - NowMs(), 1000)),
                            [&] { return body_stopping_; });
          waited = true;
          break;
        }
        CheckStoredBody(ref.id);
        upto = ref.seq;
        if (stopping()) break;
      }
    }
    // The position is kept once per batch, not per fragment: after a crash
    // the lane checks again what it checked since (recording is idempotent).
    save();
    if (waited || (batch.ok() && batch->size() == kBatch)) continue;
    std::unique_lock lock(body_mu_);
    body_cv_.wait_for(lock, kIdle, [&] { return body_stopping_ || body_pending_; });
    body_pending_ = false;
  }
  save();
}

}  // namespace kring
