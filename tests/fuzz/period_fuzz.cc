// libFuzzer target: ParsePeriod on arbitrary text; an accepted period prints to a canonical form that parses to the same period, and adding it never goes back in time.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/period.h"

namespace {
[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "period_fuzz: %s\n", why);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kring;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto p = ParsePeriod(text);
  if (!p.ok()) {
    if (p.status().message().empty()) Fail("refusal without a reason");
    return 0;
  }
  if (size > kMaxPeriodChars) Fail("accepted a period longer than the limit");
  std::string canonical = FormatPeriod(*p);
  auto again = ParsePeriod(canonical);
  if (!again.ok() || !(*again == *p)) Fail("the canonical form does not parse to the same period");
  if (FormatPeriod(*again) != canonical) Fail("the canonical form is not stable");
  // Unix times from 1970 to 2200, in either direction of a leap day.
  for (int64_t start : {int64_t{0}, int64_t{951'782'400'000}, int64_t{1'709'164'800'000}, int64_t{7'258'118'400'000}})
    if (AddPeriod(start, *p) < start) Fail("adding a period went back in time");
  return 0;
}
