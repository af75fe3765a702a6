// The node's local HTTP/JSON API for professionals' case-management systems (docs/api.md).
//
// Every call except /v1/health, /v1/openapi.yaml and /metrics needs a bearer token issued with
// `kring-node token` and the X-Kring-Actor headers naming the person the
// calling system acts for. Errors are {"error": code, "message": text}.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "crypto/sodium.h"
#include "crypto/status.h"
#include "plan/fhir.h"

namespace kring {

class Node;

inline constexpr size_t kMaxApiBodyBytes = 512 * 1024;
// Deepest nesting of arrays and objects a request body may have. Copying,
// validating and dumping a JSON value recurse once per level: the limit is
// what keeps a 263 KB body of brackets from overflowing a worker's stack.
inline constexpr int kMaxApiJsonDepth = 64;

// Whether no array or object in `text` nests deeper than `max_depth`.
// Counts brackets outside strings in one pass, without recursion; says
// nothing about whether `text` is valid JSON.
bool JsonNestingWithin(std::string_view text, int max_depth);

// A request body as every route reads it.
struct ApiBody {
  int status = 0;        // 0: parsed; otherwise the HTTP status to answer
  std::string error;     // the answer's error code, e.g. "too_deep"
  std::string message;
  nlohmann::json value;  // a JSON object when status is 0 ({} for an empty body)
};

// Checks a request body in a fixed order: media type (415), size (413),
// nesting depth before anything is parsed (400, names kMaxApiJsonDepth),
// syntax (400), a JSON object at the top (400). Never throws.
ApiBody ParseApiBody(std::string_view content_type, std::string_view body);

// A new random API token ("krt_" + 64 hex characters). Shown once; the node keeps only its hash.
std::string NewApiToken();
Hash HashApiToken(std::string_view token);

struct ApiOptions {
  std::string host = "127.0.0.1";
  int port = 7480;
  // PEM files; when both are set the API speaks HTTPS. Required for any
  // address beyond loopback.
  std::string tls_cert;
  std::string tls_key;
  // Where the FHIR code systems and identifiers live (`run --fhir-base-uri`).
  std::string fhir_base_uri = kDefaultFhirBaseUri;
};

// True for 127.0.0.0/8, ::1 and localhost.
bool IsLoopbackHost(const std::string& host);

class ApiListener;
// The listener an HTTP surface of the node (the API, the citizen's portal:
// `what`) serves on: refuses plain HTTP beyond loopback and half a TLS pair,
// checks the TLS files can be read and loads them.
Result<std::unique_ptr<ApiListener>> NewListener(const ApiOptions& options, const std::string& what);

class ApiServer {
 public:
  explicit ApiServer(Node* node);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds and serves on background threads. InvalidArgument for a
  // non-loopback host without TLS; IOError if it cannot bind.
  Status Start(const ApiOptions& options);
  void Stop();
  bool tls() const;

  // Serves the connection on `fd` (a connected stream socket) on the calling
  // thread with the routes, limits and deadlines of a started API, then
  // closes it. For the fuzzer and tests; needs no Start().
  void ServeSocket(int fd);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kring
