// Hybrid logical clock implementation.
#include "protocol/hlc.h"

#include <chrono>

namespace kring {

HybridClock::HybridClock(WallClock wall) : wall_(std::move(wall)) {}

uint64_t HybridClock::SystemMillis() {
  using namespace std::chrono;
  return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

HlcTimestamp HybridClock::Now() {
  std::lock_guard lock(mu_);
  HlcTimestamp wall = MakeHlc(wall_(), 0);
  last_ = wall > last_ ? wall : last_ + 1;
  return last_;
}

bool HybridClock::Plausible(HlcTimestamp remote) const { return HlcMillis(remote) <= wall_() + kMaxClockSkewMillis; }

void HybridClock::SetFloor(HlcTimestamp floor) {
  std::lock_guard lock(mu_);
  if (floor > last_) last_ = floor;
}

bool HybridClock::Observe(HlcTimestamp remote) {
  std::lock_guard lock(mu_);
  if (HlcMillis(remote) > wall_() + kMaxClockSkewMillis) return false;
  if (remote > last_) last_ = remote;
  return true;
}

}  // namespace kring
