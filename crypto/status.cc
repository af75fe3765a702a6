// Names and formatting for Status codes.
#include "crypto/status.h"

namespace kring {

const char* Status::CodeName() const {
  switch (code_) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kCorruption: return "corruption";
    case Code::kNotFound: return "not_found";
    case Code::kAlreadyExists: return "already_exists";
    case Code::kPermissionDenied: return "permission_denied";
    case Code::kUnauthenticated: return "unauthenticated";
    case Code::kIOError: return "io_error";
    case Code::kResourceExhausted: return "resource_exhausted";
    case Code::kConflict: return "conflict";
    case Code::kFailedPrecondition: return "failed_precondition";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName()) + ": " + message_;
}

}  // namespace kring
