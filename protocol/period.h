// Retention periods as ISO 8601 durations (P15Y, P6W, PT10S): a strict parser and calendar arithmetic in UTC.
//
// A period is what a law says ("15 years after the end of the service"), so
// years and months are calendar units, not a number of seconds: 15 years
// after 29 February lands on 28 February (the day is clamped to the month's
// last day), and leap seconds do not exist (Unix time). Grammar (docs/retention.md):
//   period = "P" [n "Y"] [n "M"] [n "W"] [n "D"] ["T" [n "H"] [n "M"] [n "S"]]
//   n      = 1*6DIGIT
// with at least one component, units in this order, each at most once, no
// fractions, no sign, and a "T" only when a time component follows. Every
// component may be combined (P1Y2W is allowed, although ISO 8601 keeps weeks
// apart). At most kMaxPeriodYears in total, so every sum stays far inside int64.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "crypto/status.h"

namespace kring {

inline constexpr size_t kMaxPeriodChars = 40;
inline constexpr int64_t kMaxPeriodYears = 200;

struct Period {
  int64_t years = 0;
  int64_t months = 0;
  int64_t weeks = 0;
  int64_t days = 0;
  int64_t hours = 0;
  int64_t minutes = 0;
  int64_t seconds = 0;
  bool operator==(const Period&) const = default;
};

// InvalidArgument naming what is wrong ("'P15' has a number without a unit").
Result<Period> ParsePeriod(std::string_view text);
// The canonical text: the units in grammar order, zero components left out ("P0D" for zero).
std::string FormatPeriod(const Period& p);
// `start_ms` (Unix milliseconds, UTC) plus `p`: years and months first on
// the calendar (the day clamped to the month's end), then weeks, days and
// the time components as fixed lengths.
int64_t AddPeriod(int64_t start_ms, const Period& p);
// Whether `a` ends later than `b` when both start at `start_ms`.
bool LongerThan(const Period& a, const Period& b, int64_t start_ms);

}  // namespace kring
