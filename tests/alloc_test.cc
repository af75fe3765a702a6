// Proves that a length or count prefix from a peer never decides an allocation: global operator new is replaced to record the largest request during a decode.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "protocol/fragment.h"
#include "protocol/messages.h"

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

}  // namespace kring
