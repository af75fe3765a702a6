// The citizen's portal: a Dutch web site served by the node itself where the household sees its plan, decides who sees what, and sees who looked (docs/citizen.md).
//
// Everything is served from the binary (node/portal/, compiled in): no CDN,
// Content-Security-Policy default-src 'self'. There are no passwords: a
// device enrols with a one-time code by proving it holds an Ed25519 key made
// in the browser (Web Crypto, not extractable), and every session starts with
// a challenge that key signs. The session cookie is HttpOnly and
// SameSite=Strict (and Secure under TLS). Every consent or withdrawal is
// signed by the citizen's key in the browser; the node only relays it.
//
// Thread-safety: Start and Stop from one thread; requests are served on
// the server's own threads.
#pragma once

#include <memory>
#include <string>

#include "crypto/status.h"
#include "node/api.h"

namespace kring {

class Node;

// Wrong enrolment codes allowed per client address in one minute; beyond it the portal asks to wait.
inline constexpr int kMaxWrongCodesPerMinute = 5;
// A portal session ends after this long without a request.
inline constexpr int64_t kPortalSessionIdleMs = 15 * 60 * 1000;
// A login challenge is valid this long, once.
inline constexpr int64_t kPortalChallengeMs = 2 * 60 * 1000;

class PortalServer {
 public:
  explicit PortalServer(Node* node);
  ~PortalServer();
  PortalServer(const PortalServer&) = delete;
  PortalServer& operator=(const PortalServer&) = delete;

  // Binds and serves on background threads. The same rule as the API: a
  // non-loopback host only with TLS (InvalidArgument), IOError if it cannot bind.
  Status Start(const ApiOptions& options);
  void Stop();
  bool tls() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kring
