// The API's connection handling: a request reaches a worker only with its headers complete, within an overall deadline.
//
// httplib gives each connection a worker thread that blocks in recv() with a
// per-recv timeout, so a client sending one byte every few seconds holds a
// worker forever, and a handful of such clients stop the API (slowloris).
// ApiListener takes each connection over from httplib's accept loop:
//
//  1. admission: one thread polls every open connection and collects its
//     request headers; a connection whose headers are not complete within
//     ApiLimits::request_deadline_ms of it being accepted (or of its
//     previous answer) is closed. Waiting costs a buffer, not a thread.
//     A body up to ApiLimits::max_prefetch_body (with a Content-Length) is
//     collected too (most of the API's bodies are a few KiB).
//  2. a worker reads the rest of the body, runs httplib's routing and writes
//     the answer, with every read bounded by the same deadline and the
//     answer by ApiLimits::write_deadline_ms.
//  3. GET /v1/health and GET /metrics go to their own worker, so they answer
//     while every other worker is busy.
//
// At most ApiLimits::max_connections are open at once and at most
// ApiLimits::max_queued wait for a worker; beyond that a new connection gets
// 503 at once. With UseTls(), admission also runs the TLS handshake, within
// the same deadline, and collects the decrypted headers.
//
// Thread-safety: configure routes before listen_after_bind(); Shutdown()
// after stop(), from the thread that owns the listener.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>

#include <httplib.h>

#include "crypto/status.h"

namespace kring {

struct ApiLimits {
  int request_deadline_ms = 10000;  // a request's headers and body, from accept or the previous answer
  int write_deadline_ms = 10000;    // writing one answer
  size_t max_header_bytes = 16 * 1024;
  size_t max_prefetch_body = 64 * 1024;  // a body up to this is read whole before a worker takes it
  size_t max_connections = 256;     // open at once, however far along
  size_t max_queued = 64;           // complete headers waiting for a worker
  int workers = 4;
  size_t max_requests_per_connection = 100;
};

struct ApiListenerStats {
  uint64_t refused = 0;    // answered 503: too many connections or workers busy
  uint64_t timed_out = 0;  // closed: the request did not arrive within its deadline
};

class ApiListener : public httplib::Server {
 public:
  explicit ApiListener(ApiLimits limits = {});
  ~ApiListener() override;

  // Speaks HTTPS with this certificate chain and key (PEM files), TLS 1.2 or
  // newer, no renegotiation. Call before listen_after_bind(). InvalidArgument
  // when the files do not load or do not match.
  Status UseTls(const std::string& cert_chain_file, const std::string& key_file);

  // httplib listens with a backlog of 5: a burst of new connections beyond
  // that waits for SYN retransmits (1 s, then 3 s, ...). Call after
  // bind_to_port(); Linux applies a second listen() to the bound socket.
  void RaiseListenBacklog(int backlog);

  // Serves the connection on `fd` (a connected stream socket) on the calling
  // thread, request after request, with the same deadlines, then closes it.
  // For the fuzzer and tests: no admission thread is needed.
  void ServeSocket(int fd);

  // Closes every connection still open and joins the threads. Call after
  // stop() and after listen_after_bind() returned. Idempotent.
  void Shutdown();

  ApiListenerStats Stats() const;

 private:
  struct Impl;
  struct Connection;
  class DeadlineStream;
  // Called on httplib's accept thread (our task queue runs it inline): hands
  // the socket to admission and returns at once.
  bool process_and_close_socket(socket_t sock) override;
  // One request on `c`; false when the connection is to be closed.
  bool ServeOneRequest(Connection& c, bool last);

  std::unique_ptr<Impl> impl_;
};

}  // namespace kring
