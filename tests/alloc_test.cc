// Proves that a length or count prefix from a peer never decides an allocation: global operator new is replaced to record the largest request during a decode.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "protocol/access_record.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "protocol/records.h"

namespace {

std::atomic<bool> g_recording{false};
std::atomic<size_t> g_largest{0};

void Record(size_t n) {
  if (!g_recording.load(std::memory_order_relaxed)) return;
  size_t prev = g_largest.load(std::memory_order_relaxed);
  while (n > prev && !g_largest.compare_exchange_weak(prev, n, std::memory_order_relaxed)) {
  }
}

void* Allocate(size_t n) {
  Record(n);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

void* AllocateAligned(size_t n, std::align_val_t al) {
  Record(n);
  void* p = nullptr;
  size_t a = static_cast<size_t>(al) < sizeof(void*) ? sizeof(void*) : static_cast<size_t>(al);
  if (::posix_memalign(&p, a, n == 0 ? 1 : n) != 0) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(size_t n) { return Allocate(n); }
void* operator new[](size_t n) { return Allocate(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try { return Allocate(n); } catch (...) { return nullptr; }
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  try { return Allocate(n); } catch (...) { return nullptr; }
}
void* operator new(size_t n, std::align_val_t al) { return AllocateAligned(n, al); }
void* operator new[](size_t n, std::align_val_t al) { return AllocateAligned(n, al); }
void* operator new(size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  try { return AllocateAligned(n, al); } catch (...) { return nullptr; }
}
void* operator new[](size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  try { return AllocateAligned(n, al); } catch (...) { return nullptr; }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace kring {
namespace {

constexpr size_t kAllowedBytes = 64 * 1024;

// Runs `decode` and returns the largest single allocation it made.
template <class F>
size_t LargestAllocationDuring(F&& decode) {
  g_largest = 0;
  g_recording = true;
  decode();
  g_recording = false;
  return g_largest;
}

void PutU8(Bytes& b, uint8_t v) { b.push_back(v); }
void PutU16(Bytes& b, uint16_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void SetU32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

Bytes FrameHeader(MessageType type) { return {kProtocolVersion, static_cast<uint8_t>(type)}; }

// A reconcile frame whose body length prefix says `claimed`, followed by `present` bytes.
Bytes ReconcileFrame(uint32_t claimed, size_t present) {
  Bytes f = FrameHeader(MessageType::kReconcile);
  f.insert(f.end(), 8, 0x11);  // session
  PutU8(f, 1);                 // initiator
  PutU32(f, claimed);
  f.insert(f.end(), present, 0xaa);
  return f;
}

// A valid, signed fragment record and the offset of its ciphertext length prefix.
struct SealedRecord {
  Bytes record;
  size_t ciphertext_len_at = 0;
};

SealedRecord MakeRecord() {
  NodeIdentity author = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  FragmentDraft d;
  d.case_id = NewCaseId();
  d.kind = "hulpvraag";
  d.body = Bytes(100, 'x');
  Result<Fragment> f = SealFragment(d, author);
  REQUIRE(f.ok());
  SealedRecord out;
  out.record = EncodeFragmentRecord(*f);
  out.ciphertext_len_at = 1 + Encode(f->header).size();
  return out;
}

void SetU16(Bytes& b, size_t at, uint16_t v) {
  for (int i = 0; i < 2; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// A valid, signed consent grant and the offsets of its counts.
struct SignedConsent {
  Bytes record;
  size_t parents_count_at = 0;
  size_t domains_count_at = 0;
  size_t purpose_len_at = 0;
};

SignedConsent MakeConsent() {
  NodeIdentity author = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  ConsentGrant c;
  c.h.case_id = NewCaseId();
  c.h.author.v = author.pub.org;
  c.h.parents.v = {Hash{}};
  c.grantee.v = "zorg-b";
  c.domains.v = {{"housing"}};
  c.purpose.v = "doel";
  c.basis.v = "grondslag";
  c.given_by.v = "burger";
  c.evidence_reference.v = "formulier";
  Result<ControlRecord> r = SignControl(c, author);
  REQUIRE(r.ok());
  SignedConsent out;
  out.record = EncodeControlRecord(*r);
  out.parents_count_at = 1 + Encode(c.h).size() - Encode(c.h.parents).size();
  out.domains_count_at = 1 + Encode(c.h).size() + Encode(c.grantee).size();
  out.purpose_len_at = out.domains_count_at + Encode(c.domains).size();
  return out;
}

// A valid, signed access record and the offsets of its items count and consent length.
struct SignedAccess {
  Bytes record;
  size_t items_count_at = 0;
  size_t consent_len_at = 0;
};

SignedAccess MakeAccess() {
  NodeIdentity author = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  AccessRecordBody b;
  b.case_id = NewCaseId();
  b.author.v = author.pub.org;
  b.action.v = "read";
  b.outcome.v = "success";
  b.actor_id.v = "medewerker-1";
  b.items.v = {{"item"}};
  b.consent.v = "consent";
  Result<AccessRecord> r = SignAccessRecord(b, author);
  REQUIRE(r.ok());
  SignedAccess out;
  out.record = EncodeAccessRecord(*r);
  out.consent_len_at = 1 + Encode(b).size() - Encode(b.consent).size();
  out.items_count_at = out.consent_len_at - Encode(b.items).size();
  return out;
}

}  // namespace

// Without this the tests below could pass with a probe that sees nothing.
TEST_CASE("the allocation probe sees the buffer a decode allocates for a large field") {
  const Bytes frame = ReconcileFrame(200 * 1024, 200 * 1024);
  Result<Message> m = Status::Corruption("not run");
  size_t largest = LargestAllocationDuring([&] { m = DecodeMessage(frame); });
  REQUIRE(m.ok());
  CHECK(largest >= 200 * 1024);
}

TEST_CASE("a message length prefix far beyond the bytes present is rejected without a large allocation") {
  Bytes frame;
  SUBCASE("reconcile body claiming 0xFFFFFFFF bytes") { frame = ReconcileFrame(0xFFFFFFFFu, 16); }
  SUBCASE("reconcile body claiming its maximum with 16 bytes present") {
    frame = ReconcileFrame(static_cast<uint32_t>(kMaxReconcileBytes), 16);
  }
  SUBCASE("push record claiming 0xFFFFFFFF bytes") {
    frame = FrameHeader(MessageType::kPush);
    PutU16(frame, 1);
    PutU32(frame, 0xFFFFFFFFu);
    frame.insert(frame.end(), 16, 0);
  }
  SUBCASE("push record claiming its maximum with 16 bytes present") {
    frame = FrameHeader(MessageType::kPush);
    PutU16(frame, 1);
    PutU32(frame, static_cast<uint32_t>(kMaxRecordBytes));
    frame.insert(frame.end(), 16, 0);
  }
  SUBCASE("push claiming the most records with 16 bytes present") {
    frame = FrameHeader(MessageType::kPush);
    PutU16(frame, static_cast<uint16_t>(kMaxRecordsPerPush));
    frame.insert(frame.end(), 16, 0);
  }
  SUBCASE("push claiming 0xFFFF records") {
    frame = FrameHeader(MessageType::kPush);
    PutU16(frame, 0xFFFF);
  }
  SUBCASE("want claiming the most ids with one present") {
    frame = FrameHeader(MessageType::kWant);
    PutU16(frame, static_cast<uint16_t>(kMaxIdsPerWant));
    frame.insert(frame.end(), kHashBytes, 0);
  }
  Result<Message> m = Message(PushMessage{});
  size_t largest = LargestAllocationDuring([&] { m = DecodeMessage(frame); });
  CHECK_FALSE(m.ok());
  CHECK(largest <= kAllowedBytes);
}

TEST_CASE("a fragment record length prefix far beyond the bytes present is rejected without a large allocation") {
  SealedRecord r = MakeRecord();
  Bytes record = r.record;
  SUBCASE("ciphertext claiming 0xFFFFFFFF bytes") { SetU32(record, r.ciphertext_len_at, 0xFFFFFFFFu); }
  SUBCASE("ciphertext claiming its maximum") {
    SetU32(record, r.ciphertext_len_at, static_cast<uint32_t>(kMaxCiphertextBytes));
  }
  SUBCASE("header claiming the most recipients with none present") {
    record = {static_cast<uint8_t>(RecordType::kFragment), kFragmentFormat};
    record.insert(record.end(), kCaseIdBytes, 0);
    PutU8(record, 2);
    record.insert(record.end(), {'a', 'b'});  // author
    PutU8(record, 1);
    PutU8(record, 'k');                          // kind
    PutU8(record, 0);                            // domain
    record.insert(record.end(), 8, 0);           // hlc
    PutU8(record, 0);                            // predecessors
    PutU8(record, static_cast<uint8_t>(kMaxRecipients));
  }
  Result<Fragment> f = Status::Corruption("not run");
  size_t largest = LargestAllocationDuring([&] { f = DecodeFragmentRecord(record); });
  CHECK_FALSE(f.ok());
  CHECK(largest <= kAllowedBytes);
}

// These records are a few hundred bytes. A decode that checks counts against
// the bytes left allocates only its error message (about 60 bytes) before it
// fails; one that trusted a count would reserve up to 32 KiB (1024 items),
// which kAllowedBytes would let through.
constexpr size_t kSmallRecordAllowedBytes = 256;

TEST_CASE("a control record count or length prefix beyond its limit or the bytes present is rejected without a large allocation") {
  const SignedConsent c = MakeConsent();
  Bytes record = c.record;
  SUBCASE("parents claiming 255") { record[c.parents_count_at] = 0xff; }
  SUBCASE("parents claiming their maximum with none present") {
    record[c.parents_count_at] = static_cast<uint8_t>(kMaxCausalParents);
    record.resize(c.parents_count_at + 1);
  }
  SUBCASE("domains claiming 255") { record[c.domains_count_at] = 0xff; }
  SUBCASE("domains claiming their maximum with none present") {
    record[c.domains_count_at] = static_cast<uint8_t>(kMaxConsentDomains);
    record.resize(c.domains_count_at + 1);
  }
  SUBCASE("purpose claiming 0xFFFF bytes") { SetU16(record, c.purpose_len_at, 0xFFFF); }
  SUBCASE("purpose claiming its maximum with 16 bytes present") {
    SetU16(record, c.purpose_len_at, static_cast<uint16_t>(kMaxPurposeBytes));
    record.resize(c.purpose_len_at + 2 + 16);
  }
  Result<ControlRecord> r = Status::Corruption("not run");
  size_t largest = LargestAllocationDuring([&] { r = DecodeControlRecord(record); });
  CHECK_FALSE(r.ok());
  CHECK(largest <= kSmallRecordAllowedBytes);
}

TEST_CASE("an access record count or length prefix beyond its limit or the bytes present is rejected without a large allocation") {
  const SignedAccess a = MakeAccess();
  Bytes record = a.record;
  SUBCASE("items claiming 0xFFFF") { SetU16(record, a.items_count_at, 0xFFFF); }
  SUBCASE("items claiming their maximum with 16 bytes present") {
    SetU16(record, a.items_count_at, static_cast<uint16_t>(kMaxAccessItems));
    record.resize(a.items_count_at + 2 + 16);
  }
  SUBCASE("consent claiming 0xFFFF bytes") { SetU16(record, a.consent_len_at, 0xFFFF); }
  SUBCASE("consent claiming its maximum with 16 bytes present") {
    SetU16(record, a.consent_len_at, 4096);
    record.resize(a.consent_len_at + 2 + 16);
  }
  Result<AccessRecord> r = Status::Corruption("not run");
  size_t largest = LargestAllocationDuring([&] { r = DecodeAccessRecord(record); });
  CHECK_FALSE(r.ok());
  CHECK(largest <= kSmallRecordAllowedBytes);
}

// A legitimate record may allocate more than a rejected one, but its largest
// list stays well under the bound every decode is held to.
TEST_CASE("decoding an access record with the most items allocates more than a rejected claim and less than the bound") {
  NodeIdentity author = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  AccessRecordBody b;
  b.author.v = author.pub.org;
  b.action.v = "read";
  b.outcome.v = "success";
  b.actor_id.v = "medewerker-1";
  b.items.v.assign(kMaxAccessItems, {std::string(1, 'x')});
  Result<AccessRecord> signed_record = SignAccessRecord(b, author);
  REQUIRE(signed_record.ok());
  const Bytes record = EncodeAccessRecord(*signed_record);
  Result<AccessRecord> r = Status::Corruption("not run");
  size_t largest = LargestAllocationDuring([&] { r = DecodeAccessRecord(record); });
  REQUIRE(r.ok());
  CHECK(largest > kSmallRecordAllowedBytes);  // the probe sees the items list a decode reserves
  CHECK(largest <= kAllowedBytes);
}

}  // namespace kring
