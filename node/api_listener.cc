// Admission, deadlines and worker lanes for the API's connections (see api_listener.h).
#include "node/api_listener.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace kring {

namespace {

using Clock = std::chrono::steady_clock;

int MillisUntil(Clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1000000));
}

// Waits until `fd` has `events` or `deadline` passes.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, MillisUntil(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

// A short answer written without waiting, for connections we will not serve.
void RefuseNow(int fd, int status, const char* reason, const std::string& message) {
  std::string body = "{\"error\":\"" + std::string(status == 503 ? "unavailable" : "http_error") +
                     "\",\"message\":\"" + message + "\"}";
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                    "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  ssize_t n = ::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)n;
}

void AddressOf(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ip.clear();
  port = -1;
  if (rc != 0) return;
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  }
  ip = buf;
}

// The Content-Length of a request whose headers are `head`, when a worker
// would read exactly that many body bytes after them; nullopt when the body
// is framed otherwise (chunked), or the length is missing, repeated or malformed
// (httplib then decides).
std::optional<size_t> ContentLengthOf(std::string_view head) {
  std::optional<size_t> length;
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    size_t start = pos + 2;
    size_t end = head.find("\r\n", start);
    if (end == std::string_view::npos) break;
    std::string_view line = head.substr(start, end - start);
    pos = end;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (name == "transfer-encoding") return std::nullopt;
    if (name != "content-length") continue;
    if (length) return std::nullopt;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.empty() || v.size() > 12) return std::nullopt;
    size_t n = 0;
    for (char ch : v) {
      if (ch < '0' || ch > '9') return std::nullopt;
      n = n * 10 + static_cast<size_t>(ch - '0');
    }
    length = n;
  }
  return length;
}

// Routes that must answer while every other worker is busy.
bool IsHealthRequest(const std::string& head) {
  for (const char* p : {"GET /v1/health ", "GET /v1/health?", "GET /metrics ", "GET /metrics?"})
    if (head.rfind(p, 0) == 0) return true;
  return false;
}

}  // namespace

// One client connection: its socket, the bytes read ahead of httplib (the
// headers admission collected), and the deadline of the request it is on.
struct ApiListener::Connection {
  int fd = -1;
  SSL* ssl = nullptr;        // with TLS: the session, its handshake run by admission
  bool handshake_done = false;
  short wait_for = POLLIN;   // what admission polls for (a handshake may need to write)
  std::string buffered;
  size_t head_end = 0;  // bytes of the current request's headers, once they are all in
  size_t need = 0;      // bytes of the current request admission waits for
  Clock::time_point deadline;
  size_t requests = 0;
  ~Connection() {
    if (ssl) {
      if (handshake_done && SSL_shutdown(ssl) < 0) ERR_clear_error();  // a close_notify if it fits, no waiting
      SSL_free(ssl);
      ERR_clear_error();
    }
    if (fd >= 0) {
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
    }
  }
  // Whether the current request is whole enough for a worker: its headers,
  // and its body when that is small (ApiLimits::max_prefetch_body).
  bool Ready() const { return head_end > 0 && buffered.size() >= need; }
  void NoteHeaders(size_t max_prefetch_body) {
    if (head_end > 0) return;
    size_t at = buffered.find("\r\n\r\n");
    if (at == std::string::npos) return;
    head_end = at + 4;
    auto body = ContentLengthOf(std::string_view(buffered).substr(0, head_end));
    need = head_end + (body && *body <= max_prefetch_body ? *body : 0);
  }
  // After an answer: what is buffered beyond it (pipelined) is the next request.
  void NextRequest() { head_end = need = 0; }
};

// What httplib reads from and writes to: the buffered bytes first, then the
// socket, never past the request's deadline. Reads no more than asked, so
// a pipelined next request stays in the socket for admission.
class ApiListener::DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(Connection& c, int write_deadline_ms) : c_(c), write_ms_(write_deadline_ms) {}

  bool is_readable() const override {
    return !c_.buffered.empty() || (c_.ssl && SSL_pending(c_.ssl) > 0) || WaitFor(c_.fd, POLLIN, c_.deadline);
  }
  bool is_writable() const override { return WaitFor(c_.fd, POLLOUT, WriteDeadline()); }

  ssize_t read(char* ptr, size_t size) override {
    if (!c_.buffered.empty()) {
      size_t n = std::min(size, c_.buffered.size());
      std::memcpy(ptr, c_.buffered.data(), n);
      c_.buffered.erase(0, n);
      return static_cast<ssize_t>(n);
    }
    if (c_.ssl) return TlsRead(ptr, size);
    for (;;) {
      if (!WaitFor(c_.fd, POLLIN, c_.deadline)) {
        timed_out_ = true;
        return -1;
      }
      // 0 is the end of the stream to httplib: a spurious wake-up must not look like one.
      ssize_t n = ::recv(c_.fd, ptr, size, MSG_DONTWAIT);
      if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return n;
    }
  }

  ssize_t TlsRead(char* ptr, size_t size) {
    int want = static_cast<int>(std::min<size_t>(size, 1 << 30));
    for (;;) {
      ERR_clear_error();
      int n = SSL_read(c_.ssl, ptr, want);
      if (n > 0) return n;
      int err = SSL_get_error(c_.ssl, n);
      short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
      if (ev == 0) return err == SSL_ERROR_ZERO_RETURN ? 0 : -1;
      if (!WaitFor(c_.fd, ev, c_.deadline)) {
        timed_out_ = true;
        return -1;
      }
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (c_.ssl) {
      for (;;) {
        ERR_clear_error();
        int n = SSL_write(c_.ssl, ptr, static_cast<int>(std::min<size_t>(size, 1 << 30)));
        if (n > 0) return n;
        int err = SSL_get_error(c_.ssl, n);
        short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (ev == 0 || !WaitFor(c_.fd, ev, WriteDeadline())) return -1;
      }
    }
    size_t done = 0;
    while (done < size) {
      if (!WaitFor(c_.fd, POLLOUT, WriteDeadline())) return -1;
      ssize_t n = ::send(c_.fd, ptr + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return -1;
      }
      done += static_cast<size_t>(n);
    }
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { AddressOf(c_.fd, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { AddressOf(c_.fd, false, ip, port); }
  socket_t socket() const override { return c_.fd; }

  bool timed_out() const { return timed_out_; }

 private:
  // The answer's deadline starts with its first byte: handling time is not
  // the client's to spend, writing time is.
  Clock::time_point WriteDeadline() const {
    if (!write_started_) {
      write_started_ = true;
      write_deadline_ = Clock::now() + std::chrono::milliseconds(write_ms_);
    }
    return write_deadline_;
  }

  Connection& c_;
  int write_ms_;
  bool timed_out_ = false;
  mutable bool write_started_ = false;
  mutable Clock::time_point write_deadline_;
};

struct ApiListener::Impl {
  ApiListener* self;
  ApiLimits limits;

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<Connection>> incoming;  // from the accept thread to admission
  std::deque<std::unique_ptr<Connection>> work;       // complete headers, for the workers
  std::deque<std::unique_ptr<Connection>> health;     // complete headers, for the health worker
  bool stopping = false;
  std::set<int> serving;  // sockets a worker is on: Stop() cuts them short
  std::atomic<size_t> open{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> timed_out{0};

  SSL_CTX* tls = nullptr;  // set by UseTls before any connection
  int wake_fd = -1;
  std::thread admission;
  std::vector<std::thread> threads;
  bool started = false;

  Impl(ApiListener* s, ApiLimits l) : self(s), limits(l) {}

  void StartThreads() {
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    admission = std::thread([this] { AdmissionLoop(); });
    for (int i = 0; i < limits.workers; ++i) threads.emplace_back([this] { WorkerLoop(&work); });
    threads.emplace_back([this] { WorkerLoop(&health); });
    started = true;
  }

  void Wake() {
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd, &one, sizeof one);
    (void)n;
  }

  // Takes a connection in (accepted, or back after an answer), or refuses it.
  void Admit(std::unique_ptr<Connection> c) {
    c->deadline = Clock::now() + std::chrono::milliseconds(limits.request_deadline_ms);
    {
      std::lock_guard lock(mu);
      if (stopping) return;  // closed by the destructor
      incoming.push_back(std::move(c));
    }
    Wake();
  }

  void Close(std::unique_ptr<Connection> c) {
    c.reset();
    open.fetch_sub(1);
  }

  static constexpr ssize_t kWouldBlock = -2;

  // One non-blocking read: bytes, 0 at the end of the stream, kWouldBlock
  // (with TLS, `wait_for` says for what), or -1 on an error.
  ssize_t Receive(Connection& c, char* buf, size_t want) {
    if (!c.ssl) {
      ssize_t n = ::recv(c.fd, buf, want, MSG_DONTWAIT);
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? kWouldBlock : n;
    }
    ERR_clear_error();
    int n = SSL_read(c.ssl, buf, static_cast<int>(want));
    return n > 0 ? n : TlsWait(c, n);
  }

  // What a failed TLS call means: wait (for `wait_for`), the end, or an error.
  static ssize_t TlsWait(Connection& c, int rc) {
    int err = SSL_get_error(c.ssl, rc);
    if (err == SSL_ERROR_WANT_READ) return kWouldBlock;
    if (err == SSL_ERROR_WANT_WRITE) {
      c.wait_for = POLLOUT;
      return kWouldBlock;
    }
    return err == SSL_ERROR_ZERO_RETURN ? 0 : -1;
  }

  void RefuseHeaders(Connection& c) {
    std::string message = "request headers are larger than " + std::to_string(limits.max_header_bytes) + " bytes";
    if (!c.ssl) return RefuseNow(c.fd, 431, "Request Header Fields Too Large", message);
    std::string body = "{\"error\":\"http_error\",\"message\":\"" + message + "\"}";
    std::string out = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
                      "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    ERR_clear_error();
    SSL_write(c.ssl, out.data(), static_cast<int>(out.size()));
  }

  // Reads what has arrived of `c`'s current request (after the TLS
  // handshake, with TLS): its headers, and a small body whole, so that a
  // client sending either slowly holds no worker. True while the connection
  // stays open (c.Ready() says whether the request is whole enough); false
  // when it is to be closed: closed by the client before its headers were
  // in, an error, or headers too large (answered 431).
  bool ReadAhead(Connection& c) {
    c.wait_for = POLLIN;
    if (c.ssl && !c.handshake_done) {
      ERR_clear_error();
      int rc = SSL_accept(c.ssl);
      if (rc != 1) return TlsWait(c, rc) == kWouldBlock;
      c.handshake_done = true;
    }
    char buf[4096];
    for (;;) {
      c.NoteHeaders(limits.max_prefetch_body);
      if (c.Ready()) return true;
      size_t want = sizeof buf;
      if (c.head_end == 0) {
        if (c.buffered.size() >= limits.max_header_bytes) {
          RefuseHeaders(c);
          return false;
        }
        want = std::min(want, limits.max_header_bytes - c.buffered.size());
      } else {
        want = std::min(want, c.need - c.buffered.size());
      }
      ssize_t n = Receive(c, buf, want);
      if (n == kWouldBlock) return true;
      if (n == 0 && c.head_end > 0) {
        c.need = c.buffered.size();  // a truncated body: the worker answers it
        return true;
      }
      if (n <= 0) return false;
      c.buffered.append(buf, static_cast<size_t>(n));
    }
  }

  void Dispatch(std::unique_ptr<Connection> c) {
    bool to_health = IsHealthRequest(c->buffered);
    {
      std::lock_guard lock(mu);
      auto& q = to_health ? health : work;
      if (q.size() < limits.max_queued) {
        q.push_back(std::move(c));
        cv.notify_all();
        return;
      }
    }
    refused.fetch_add(1);
    RefuseNow(c->fd, 503, "Service Unavailable", "the API is busy; try again shortly");
    Close(std::move(c));
  }

  void AdmissionLoop() {
    std::vector<std::unique_ptr<Connection>> waiting;
    std::vector<pollfd> fds;
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (stopping) break;
        for (auto& c : incoming) waiting.push_back(std::move(c));
        incoming.clear();
      }
      // Bytes already buffered (a pipelined request) may hold a whole request.
      Clock::time_point now = Clock::now();
      Clock::time_point next = now + std::chrono::seconds(1);
      std::vector<std::unique_ptr<Connection>> keep;
      for (auto& c : waiting) {
        c->NoteHeaders(limits.max_prefetch_body);
        // Decrypted bytes OpenSSL holds (a pipelined request in the record
        // the worker read) never make the socket readable: take them now.
        if (c->ssl && c->handshake_done && !c->Ready() && SSL_pending(c->ssl) > 0 && !ReadAhead(*c)) {
          Close(std::move(c));
          continue;
        }
        if (c->Ready()) {
          Dispatch(std::move(c));
        } else if (c->deadline <= now) {
          timed_out.fetch_add(1);
          Close(std::move(c));
        } else {
          next = std::min(next, c->deadline);
          keep.push_back(std::move(c));
        }
      }
      waiting = std::move(keep);
      fds.assign(1, pollfd{wake_fd, POLLIN, 0});
      for (auto& c : waiting) fds.push_back(pollfd{c->fd, c->wait_for, 0});
      int n = ::poll(fds.data(), fds.size(), MillisUntil(next));
      if (n < 0 && errno != EINTR) break;
      if (fds[0].revents & POLLIN) {
        uint64_t v;
        ssize_t r = ::read(wake_fd, &v, sizeof v);
        (void)r;
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLOUT | POLLHUP | POLLERR))) continue;
        auto& c = waiting[i - 1];
        if (!ReadAhead(*c)) Close(std::move(c));
      }
      std::erase_if(waiting, [](const auto& c) { return c == nullptr; });
    }
    for (auto& c : waiting) Close(std::move(c));
  }

  void WorkerLoop(std::deque<std::unique_ptr<Connection>>* queue) {
    for (;;) {
      std::unique_ptr<Connection> c;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stopping || !queue->empty(); });
        if (stopping) return;
        c = std::move(queue->front());
        queue->pop_front();
        serving.insert(c->fd);
      }
      bool last = ++c->requests >= limits.max_requests_per_connection;
      bool again = self->ServeOneRequest(*c, last) && !last;
      {
        std::lock_guard lock(mu);
        serving.erase(c->fd);
      }
      c->NextRequest();
      if (again) Admit(std::move(c));
      else Close(std::move(c));
    }
  }

  void Stop() {
    {
      std::lock_guard lock(mu);
      if (!started) return;
      started = false;
      stopping = true;
      // A worker waiting for a slow body would hold up the stop by up to
      // the deadline: end those reads now (the fds stay open until the
      // worker closes them, so none can be reused meanwhile).
      for (int fd : serving) ::shutdown(fd, SHUT_RDWR);
    }
    cv.notify_all();
    Wake();
    if (admission.joinable()) admission.join();
    for (std::thread& t : threads) t.join();
    threads.clear();
    std::lock_guard lock(mu);
    for (auto* q : {&work, &health})
      while (!q->empty()) {
        Close(std::move(q->front()));
        q->pop_front();
      }
    for (auto& c : incoming) Close(std::move(c));
    incoming.clear();
    if (wake_fd >= 0) ::close(wake_fd);
    wake_fd = -1;
  }
};

namespace {
// Runs each accepted socket's task on the accept thread: it only hands the
// socket to admission, which never blocks.
class InlineQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};
}  // namespace

ApiListener::ApiListener(ApiLimits limits) : impl_(std::make_unique<Impl>(this, limits)) {
  new_task_queue = [] { return new InlineQueue(); };
  impl_->StartThreads();
}

ApiListener::~ApiListener() {
  Shutdown();
  if (impl_->tls) SSL_CTX_free(impl_->tls);
}

Status ApiListener::UseTls(const std::string& cert_chain_file, const std::string& key_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return Status::IOError("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // SSL_write may be retried with a buffer that moved (httplib's strings).
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_chain_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return Status::InvalidArgument("TLS certificate or key is not usable (PEM, matching pair?)");
  }
  if (impl_->tls) SSL_CTX_free(impl_->tls);
  impl_->tls = ctx;
  return Status::Ok();
}

void ApiListener::Shutdown() { impl_->Stop(); }

void ApiListener::RaiseListenBacklog(int backlog) {
  if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, backlog);
}

ApiListenerStats ApiListener::Stats() const { return {impl_->refused.load(), impl_->timed_out.load()}; }

bool ApiListener::process_and_close_socket(socket_t sock) {
  auto c = std::make_unique<Connection>();
  c->fd = sock;
  // httplib sets this in the socket handling we replace: it writes headers
  // and body separately, and without it a keep-alive client waits ~40 ms on
  // Nagle and delayed ACKs for every answer.
  int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (impl_->tls) {
    // OpenSSL on a non-blocking socket: every wait is our poll, with our deadline.
    ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
    c->ssl = SSL_new(impl_->tls);
    if (!c->ssl || SSL_set_fd(c->ssl, sock) != 1) return false;  // c closes the socket
  }
  if (impl_->open.fetch_add(1) >= impl_->limits.max_connections) {
    impl_->refused.fetch_add(1);
    RefuseNow(sock, 503, "Service Unavailable", "too many open connections; try again shortly");
    impl_->Close(std::move(c));
    return false;
  }
  impl_->Admit(std::move(c));
  return true;
}

bool ApiListener::ServeOneRequest(Connection& c, bool last) {
  DeadlineStream stream(c, impl_->limits.write_deadline_ms);
  bool connection_closed = false;
  bool ok = process_request(stream, last || !is_running(), connection_closed, nullptr);
  if (stream.timed_out()) impl_->timed_out.fetch_add(1);
  return ok && !connection_closed && !stream.timed_out();
}

void ApiListener::ServeSocket(int fd) {
  Connection c;
  c.fd = fd;
  for (;;) {
    c.deadline = Clock::now() + std::chrono::milliseconds(impl_->limits.request_deadline_ms);
    c.NoteHeaders(impl_->limits.max_prefetch_body);
    while (!c.Ready()) {
      if (!WaitFor(fd, c.wait_for, c.deadline) || !impl_->ReadAhead(c)) return;
    }
    bool last = ++c.requests >= impl_->limits.max_requests_per_connection;
    if (!ServeOneRequest(c, last) || last) return;
    c.NextRequest();
  }
}

}  // namespace kring
