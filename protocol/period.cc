// Parses and adds ISO 8601 retention periods (see period.h for the grammar).
#include "protocol/period.h"

#include <cctype>

namespace kring {

namespace {

// Days since 1970-01-01 of a civil date, and back (H. Hinnant's algorithms).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, int64_t* m, int64_t* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp + (mp < 10 ? 3 : -9);
  *y = yoe + era * 400 + (*m <= 2);
}

bool Leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int64_t DaysIn(int64_t y, int64_t m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && Leap(y) ? 29 : kDays[m - 1];
}

constexpr int64_t kDayMs = 86'400'000;

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

}  // namespace

Result<Period> ParsePeriod(std::string_view text) {
  const std::string quoted = "'" + std::string(text.substr(0, kMaxPeriodChars)) + "'";
  if (text.empty()) return Status::InvalidArgument("a period is empty; write an ISO 8601 duration such as P15Y");
  if (text.size() > kMaxPeriodChars) return Status::InvalidArgument("a period is longer than 40 characters");
  if (text[0] != 'P') return Status::InvalidArgument(quoted + " does not start with P (ISO 8601 duration, e.g. P15Y, P6W, PT10S)");
  Period p;
  // Units in the order they may appear; `rank` only goes up.
  struct Unit {
    char c;
    bool time;
    int64_t Period::*field;
  };
  static const Unit kUnits[] = {{'Y', false, &Period::years},  {'M', false, &Period::months},
                                {'W', false, &Period::weeks},  {'D', false, &Period::days},
                                {'H', true, &Period::hours},   {'M', true, &Period::minutes},
                                {'S', true, &Period::seconds}};
  size_t rank = 0;
  bool in_time = false, any = false, time_any = false;
  size_t i = 1;
  while (i < text.size()) {
    if (text[i] == 'T') {
      if (in_time) return Status::InvalidArgument(quoted + " has a second T");
      in_time = true;
      while (rank < std::size(kUnits) && !kUnits[rank].time) ++rank;
      ++i;
      continue;
    }
    size_t start = i;
    int64_t n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (i - start >= 6) return Status::InvalidArgument(quoted + " has a number of more than 6 digits");
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    if (i == start) return Status::InvalidArgument(quoted + " has '" + std::string(1, text[i]) + "' where a number belongs");
    if (i == text.size()) return Status::InvalidArgument(quoted + " has a number without a unit");
    const char u = text[i++];
    if (u == '.' || u == ',') return Status::InvalidArgument(quoted + " has a fraction; write whole units (P18M, not P1.5Y)");
    size_t k = rank;
    while (k < std::size(kUnits) && !(kUnits[k].c == u && kUnits[k].time == in_time)) ++k;
    if (k == std::size(kUnits))
      return Status::InvalidArgument(quoted + " has unit '" + std::string(1, u) + "' out of place (order: Y M W D, then T H M S)");
    p.*(kUnits[k].field) = n;
    rank = k + 1;
    any = true;
    if (in_time) time_any = true;
  }
  if (in_time && !time_any) return Status::InvalidArgument(quoted + " has a T without hours, minutes or seconds after it");
  if (!any) return Status::InvalidArgument(quoted + " names no amount of time");
  // The total in years, roughly, bounds every later sum.
  const int64_t approx_days = p.years * 366 + p.months * 31 + p.weeks * 7 + p.days + p.hours / 24 + p.minutes / 1440 +
                              p.seconds / 86400;
  if (approx_days > kMaxPeriodYears * 366)
    return Status::InvalidArgument(quoted + " is longer than " + std::to_string(kMaxPeriodYears) + " years");
  return p;
}

std::string FormatPeriod(const Period& p) {
  std::string out = "P";
  auto add = [&](int64_t n, char u) {
    if (n != 0) out += std::to_string(n) + u;
  };
  add(p.years, 'Y');
  add(p.months, 'M');
  add(p.weeks, 'W');
  add(p.days, 'D');
  if (p.hours || p.minutes || p.seconds) {
    out += 'T';
    add(p.hours, 'H');
    add(p.minutes, 'M');
    add(p.seconds, 'S');
  }
  if (out == "P") out = "P0D";
  return out;
}

int64_t AddPeriod(int64_t start_ms, const Period& p) {
  const int64_t day = FloorDiv(start_ms, kDayMs);
  const int64_t in_day = start_ms - day * kDayMs;
  int64_t y, m, d;
  CivilFromDays(day, &y, &m, &d);
  const int64_t months = (y * 12 + (m - 1)) + p.years * 12 + p.months;
  y = FloorDiv(months, 12);
  m = months - y * 12 + 1;
  d = std::min(d, DaysIn(y, m));
  const int64_t days = DaysFromCivil(y, m, d) + p.weeks * 7 + p.days;
  return days * kDayMs + in_day + ((p.hours * 60 + p.minutes) * 60 + p.seconds) * 1000;
}

bool LongerThan(const Period& a, const Period& b, int64_t start_ms) {
  return AddPeriod(start_ms, a) > AddPeriod(start_ms, b);
}

}  // namespace kring
