// Hybrid logical clock: 48 bits of Unix milliseconds and 16 bits of counter, monotonic per node.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

namespace kring {

using HlcTimestamp = uint64_t;

inline constexpr uint64_t HlcMillis(HlcTimestamp t) { return t >> 16; }
inline constexpr HlcTimestamp MakeHlc(uint64_t millis, uint16_t counter) { return (millis << 16) | counter; }

// A timestamp from a peer more than this far ahead of our wall clock is not
// adopted (a broken or hostile clock must not drag ours into the future).
inline constexpr uint64_t kMaxClockSkewMillis = 60ull * 60 * 1000;

// Thread-safe. The wall clock is passed in so tests can drive time.
class HybridClock {
 public:
  using WallClock = std::function<uint64_t()>;  // Unix milliseconds
  explicit HybridClock(WallClock wall);

  // A timestamp greater than every one returned or observed before.
  HlcTimestamp Now();
  // Advances past `remote` when it is plausible (not beyond the skew bound).
  // Returns false, leaving the clock as it was, when it is not.
  bool Observe(HlcTimestamp remote);
  // Whether `remote` is within the skew bound; adopts nothing.
  bool Plausible(HlcTimestamp remote) const;
  // Never return a timestamp at or below `floor` (what this node already
  // stored), even when the wall clock stepped back further than the skew bound.
  void SetFloor(HlcTimestamp floor);

  static uint64_t SystemMillis();

 private:
  WallClock wall_;
  std::mutex mu_;
  HlcTimestamp last_ = 0;
};

}  // namespace kring
