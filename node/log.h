// Log lines for a sysadmin: UTC time, level, component, message; one line each, to stderr.
#pragma once

#include <sstream>
#include <string>

namespace kring {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// Messages below this level are dropped. Set once at start-up (KRING_LOG=debug).
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

// Text (default): "2026-11-29T07:21:12.345Z INFO  sync: message". JSON: one
// object a line, {"time","level","component","message"}, for log shippers
// (KRING_LOG_FORMAT=json). Set once at start-up.
enum class LogFormat { kText, kJson };
void SetLogFormat(LogFormat format);

// Writes "2026-11-23T19:20:01.123Z INFO  sync: message" to stderr atomically.
// Control characters in `message` are escaped, so peer-supplied text cannot
// forge log lines.
void LogLine(LogLevel level, const char* component, const std::string& message);

}  // namespace kring

#define KRING_LOG(level, component, expr)                              \
  do {                                                                 \
    if (::kring::LogLevel::level >= ::kring::GetLogLevel()) {          \
      std::ostringstream kring_log_os_;                                \
      kring_log_os_ << expr;                                           \
      ::kring::LogLine(::kring::LogLevel::level, component, kring_log_os_.str()); \
    }                                                                  \
  } while (0)
