// Status and Result<T>: the one error type for everything that can fail on peer, user or disk input.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace kring {

// A Status is either ok or carries a code and a short, specific message
// meant for a log line or an API error. Cheap to copy when ok.
class Status {
 public:
  enum class Code {
    kOk,
    kInvalidArgument,   // caller's input is wrong (bad flag, bad JSON, bad slug)
    kCorruption,        // bytes from a peer or disk do not decode or verify
    kNotFound,
    kAlreadyExists,
    kPermissionDenied,  // the caller or peer may not do this
    kUnauthenticated,   // no or bad credentials
    kIOError,           // the operating system or SQLite failed
    kResourceExhausted, // a size or count limit was hit
    kConflict,          // the request conflicts with stored state
    kFailedPrecondition, // a condition the caller set (If-Match) no longer holds
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status Unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Status Conflict(std::string m) { return {Code::kConflict, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // A stable lower-case name of the code, e.g. "corruption"; used in logs,
  // metrics labels and API error bodies.
  const char* CodeName() const;
  std::string ToString() const;

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T> holds a T or a non-ok Status.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}                       // NOLINT: implicit on purpose
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kring

// Returns early with the status of `expr` when it is not ok.
#define KRING_RETURN_IF_ERROR(expr)          \
  do {                                       \
    ::kring::Status kring_status_ = (expr);  \
    if (!kring_status_.ok()) return kring_status_; \
  } while (0)
