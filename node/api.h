// The node's local HTTP/JSON API for professionals' case-management systems (docs/api.md).
//
// Every call except /v1/health, /v1/openapi.yaml and /metrics needs a bearer token issued with
// `kring-node token` and the X-Kring-Actor headers naming the person the
// calling system acts for. Errors are {"error": code, "message": text}.
#pragma once

#include <memory>
#include <string>

#include "crypto/sodium.h"
#include "crypto/status.h"

namespace kring {

class Node;

inline constexpr size_t kMaxApiBodyBytes = 512 * 1024;

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
};

// True for 127.0.0.0/8, ::1 and localhost.
bool IsLoopbackHost(const std::string& host);

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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kring
